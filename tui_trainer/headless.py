"""Headless training: the engine's events rendered as rich progress bars.

The trainer runs in a background thread; this (main) thread drains its events
from a queue and draws them, and turns Ctrl+C / SIGTERM into a graceful
``Stop(save=True)``. A second Ctrl+C quits at once.
"""

from __future__ import annotations

import queue
from pathlib import Path
import signal
import threading
from typing import Any, Optional

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from engine import events as ev

from .formatting import format_size


def _pct(v: Optional[float]) -> str:
    return "  n/a" if v is None else f"{100 * v:5.2f}%"


def _num(v: Optional[float], fmt: str = ".4f") -> str:
    return "n/a" if v is None else format(v, fmt)


class HeadlessRenderer:
    """Draws events on a rich console. Call :meth:`handle` from one thread only."""

    def __init__(self, console: Optional[Console] = None):
        self.console = console or Console(stderr=False, highlight=False)
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(bar_width=24),
            MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        self.run_task = None
        self.epoch_task = None
        self.epochs = 0
        self.start_epoch = 0
        self.steps_per_epoch = 0
        self.run_dir: Optional[str] = None
        self.best: Optional[ev.CheckpointSaved] = None
        self.best_acc: Optional[float] = None
        self.best_epoch: Optional[int] = None
        self.failed: Optional[str] = None
        self.final_state: Optional[ev.StateChanged] = None
        self.started = False
        self.last_checkpoint: Optional[str] = None

    # -------------------------------------------------------------------------------
    def handle(self, e: ev.Event) -> None:
        p, c = self.progress, self.console
        if isinstance(e, ev.RunStarted):
            self.run_dir = e.run_dir
            self.epochs = int(e.config.get("epochs", 0))
            self.start_epoch = e.start_epoch
            self.steps_per_epoch = e.steps_per_epoch
            cfg = e.config
            what = "resuming" if e.resumed_from else "training"
            c.print(
                f"[bold]{what}[/] {e.run_id}: SEResNet width {cfg.get('width')} ({e.params:,} parameters) on {e.device}; "
                f"data {cfg.get('data')} ({e.train_size:,} train / {e.val_size:,} val images); preset {cfg.get('preset')}, "
                f"{self.epochs} epochs, batch {cfg.get('batch_size')}, lr {cfg.get('lr')}",
                soft_wrap=True,
            )
            if e.resumed_from:
                c.print(f"  from {e.resumed_from} (epoch {e.start_epoch} done)")
            c.print(f"  run folder: {e.run_dir}", soft_wrap=True)
            c.print("[dim]epoch summaries: train loss acc | validation loss acc | learning rate | mixup | seconds[/]")
            if not self.started:
                p.start()
                self.started = True
            total = max(1, (self.epochs - self.start_epoch) * self.steps_per_epoch)
            self.run_task = p.add_task("run  ", total=total, stats="steps")
        elif isinstance(e, ev.EpochStarted):
            if self.epoch_task is not None:
                p.remove_task(self.epoch_task)
            mix = "mixup on" if e.mixup else "mixup off"
            if e.mixup_source == "user":
                mix += " (user)"
            self.epoch_task = p.add_task(f"epoch {e.epoch}/{e.epochs}", total=e.steps, stats=mix)
        elif isinstance(e, ev.StepDone):
            stats = f"loss {e.loss:.3f} acc {100 * e.train_acc:4.1f}% {e.images_per_s:,.0f} img/s"
            if self.epoch_task is not None:
                p.update(self.epoch_task, completed=e.step_in_epoch, stats=stats)
            if self.run_task is not None:
                done = (e.epoch - 1 - self.start_epoch) * self.steps_per_epoch + e.step_in_epoch
                p.update(self.run_task, completed=done)
        elif isinstance(e, ev.EpochDone):
            self.best_acc, self.best_epoch = e.best_val_acc, e.best_epoch
            p.console.print(
                f"epoch {e.epoch:>3}/{self.epochs}  train {e.train_loss:.4f} {_pct(e.train_acc)}  "
                f"val {_num(e.val_loss)} {_pct(e.val_acc)}  lr {e.lr:.2e}  "
                f"mixup {'on ' if e.mixup else 'off'} {e.seconds:6.1f}s",
                soft_wrap=True,
            )
        elif isinstance(e, ev.CheckpointSaved):
            self.last_checkpoint = e.path
            if e.kind == "best":
                self.best = e
            elif e.kind in ("manual", "stop"):
                p.console.print(f"[green]saved[/] {e.path}")
        elif isinstance(e, ev.MixupChanged):
            p.console.print(f"mixup {'on' if e.on else 'off'} ({e.source})")
        elif isinstance(e, ev.Warning):
            p.console.print(f"[yellow]warning:[/] {e.message}", markup=True, highlight=False)
        elif isinstance(e, ev.Failed):
            self.failed = e.message
        elif isinstance(e, ev.StateChanged):
            if e.state in ("stopping",):
                p.console.print(f"[yellow]{e.reason}[/]")
            if e.state in ("finished", "failed"):
                self.final_state = e

    def close(self) -> None:
        if self.started:
            self.progress.stop()
            self.started = False

    def summary(self) -> None:
        c = self.console
        if self.failed:
            c.print(f"[bold red]error:[/] {self.failed}", highlight=False)
        if self.run_dir:
            c.print(f"run folder:      {self.run_dir}")
        if self.best is not None:
            c.print(f"best checkpoint: {self.best.path}  (val acc {_pct(self.best.val_acc).strip()} at epoch {self.best.epoch})")
        elif self.last_checkpoint:
            c.print(f"last checkpoint: {self.last_checkpoint}")
        st = self.final_state
        if st is not None and st.state == "finished" and st.reason.startswith("stopped") and self.run_dir:
            last = Path(self.run_dir) / "checkpoints" / "last.pt"
            if last.exists():
                c.print(f"{st.reason}; saved in {last}", soft_wrap=True)
                c.print(f"continue with: cifar-tui --no-ui train --resume {self.run_dir}", soft_wrap=True)


def _torchrun_rank() -> int:
    import os

    try:
        return int(os.environ.get("RANK", "0")) if "WORLD_SIZE" in os.environ else 0
    except ValueError:
        return 0


class _QuietRenderer(HeadlessRenderer):
    """For ranks other than 0 under torchrun: only warnings and failures, no progress."""

    def handle(self, e: ev.Event) -> None:
        if isinstance(e, ev.Failed):
            self.failed = e.message
        elif isinstance(e, ev.Warning):
            self.console.print(f"warning: {e.message}", markup=False)

    def summary(self) -> None:
        if self.failed:
            self.console.print(f"error: {self.failed}", markup=False)


def run_headless(config=None, resume: Optional[str] = None, resume_overrides: Optional[dict[str, Any]] = None,
                 console: Optional[Console] = None, install_signals: bool = True) -> int:
    """Train with rich progress. Returns the exit code: 0 done, 1 failed, 130/143 stopped by a signal."""
    console = console or Console(highlight=False, soft_wrap=True)
    rank = _torchrun_rank()
    if rank:  # under torchrun only rank 0 draws; the others report problems only
        console = Console(highlight=False, soft_wrap=True, stderr=True, force_terminal=False)
    with console.status("loading torch and the data..."):
        from engine.trainer import Trainer

    events: "queue.Queue[ev.Event]" = queue.Queue()
    trainer = Trainer(config, listeners=[events.put], resume=resume, resume_overrides=resume_overrides)
    renderer = HeadlessRenderer(console) if not rank else _QuietRenderer(console)
    signalled: dict[str, int] = {}

    def on_signal(signum, frame):  # runs in the main thread, between bytecodes
        if signalled:
            raise KeyboardInterrupt  # second signal: quit at once
        signalled["code"] = 128 + signum
        trainer.send(ev.Stop(save=True))
        console.print("[yellow]stopping: saving a checkpoint (press Ctrl+C again to quit at once)...[/]")

    old = {}
    if install_signals and threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            old[sig] = signal.signal(sig, on_signal)
    status = console.status("loading data...")
    if not rank:
        status.start()
    try:
        trainer.start()
        while True:
            try:
                e = events.get(timeout=0.1)
            except queue.Empty:
                if not trainer.alive and events.empty():
                    break
                continue
            if isinstance(e, ev.RunStarted) or isinstance(e, ev.Failed):
                status.stop()
            renderer.handle(e)
    except KeyboardInterrupt:
        status.stop()
        renderer.close()
        console.print("[red]interrupted: quit without waiting for a checkpoint[/]")
        if trainer.alive:
            # The training thread is mid-step inside torch; leaving through the interpreter's
            # normal shutdown would abort in C++. Checkpoints on disk are complete (atomic writes).
            import os
            import sys

            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(130)
        return 130
    finally:
        status.stop()
        for sig, handler in old.items():
            signal.signal(sig, handler)
    renderer.close()
    renderer.summary()
    if trainer.exit_state == "failed":
        return 1
    if trainer.last_save_error:
        console.print(f"[bold red]error:[/] training ended but its last checkpoint was not written: {trainer.last_save_error}",
                      highlight=False)
        return 1
    if trainer.exit_state == "stopped":
        return signalled.get("code", 0)
    return 0


# ------------------------------------------------------------ eval / predict / runs


class progress_callback:
    """Context manager giving a ``(done, total)`` callback that drives a rich progress bar."""

    def __init__(self, console: Console, label: str, enabled: bool = True):
        self.console, self.label, self.enabled = console, label, enabled
        self.progress: Optional[Progress] = None
        self.task = None

    def __enter__(self):
        if not self.enabled:
            return None
        self.progress = Progress(TextColumn(self.label), BarColumn(bar_width=30), MofNCompleteColumn(),
                                 TimeRemainingColumn(), console=self.console, transient=True)
        self.progress.start()

        def cb(done: int, total: int) -> None:
            if self.task is None:
                self.task = self.progress.add_task(self.label, total=total)
            self.progress.update(self.task, completed=done)

        return cb

    def __exit__(self, *exc):
        if self.progress is not None:
            self.progress.stop()
        return False


def render_eval(console: Console, result: dict) -> None:
    from rich.table import Table

    classes = result.get("classes") or [str(i) for i in range(len(result["per_class_accuracy"]))]
    console.print(
        f"[bold]{_pct(result['accuracy']).strip()}[/] accuracy, loss {result['loss']:.4f} on {result['images']:,} images "
        f"of {result['data_source']} (checkpoint {result['checkpoint']}, epoch {result.get('epoch')})",
        soft_wrap=True,
    )
    for note in result.get("notes", []):
        console.print(f"note: {note}")
    per = Table(title="per-class accuracy", show_edge=False)
    per.add_column("class")
    per.add_column("accuracy", justify="right")
    per.add_column("images", justify="right")
    cm = result["confusion_matrix"]
    for i, c in enumerate(classes):
        per.add_row(c, _pct(result["per_class_accuracy"][i]).strip(), f"{sum(cm[i]):,}")
    console.print(per)
    grid = Table(title="confusion matrix (rows: true class, columns: predicted)", show_edge=False, padding=(0, 1))
    grid.add_column("")
    for c in classes:
        grid.add_column(c[:5], justify="right")
    for i, c in enumerate(classes):
        total = max(1, sum(cm[i]))
        cells = []
        for j, v in enumerate(cm[i]):
            style = "bold green" if i == j else ("red" if v / total > 0.05 else "dim")
            cells.append(f"[{style}]{v}[/]")
        grid.add_row(c[:10], *cells)
    console.print(grid)


def render_predictions(console: Console, names: list, probs, classes: list, top_k: int) -> None:
    from rich.table import Table

    k = min(top_k, probs.shape[1])
    top_p, top_i = probs.topk(k, dim=1)
    table = Table(show_edge=False)
    table.add_column("ID", justify="right")
    table.add_column("input", overflow="fold")
    for r in range(k):
        table.add_column(f"#{r + 1}")
    for i, name in enumerate(names):
        table.add_row(str(i), str(name), *[f"{classes[int(c)]} {100 * float(p):.1f}%" for p, c in zip(top_p[i], top_i[i])])
    console.print(table)


def render_runs(console: Console, runs: list, root) -> None:
    from rich.table import Table

    if not runs:
        console.print(f"no runs in {root} yet; start one with: cifar-tui --no-ui train --data synthetic --preset tiny")
        return
    from rich import box

    table = Table(title=f"runs in {root} (run ids end with the preset)", box=box.SIMPLE_HEAD, padding=(0, 1),
                  title_justify="left")
    table.add_column("run", no_wrap=True)
    table.add_column("data", overflow="ellipsis", no_wrap=True, max_width=18)
    table.add_column("checkpoint", overflow="ellipsis", no_wrap=True, max_width=16)
    table.add_column("ep", justify="right", min_width=3, no_wrap=True)
    table.add_column("val", justify="right", min_width=6, no_wrap=True)
    table.add_column("test", justify="right", min_width=6, no_wrap=True)
    table.add_column("size", justify="right", no_wrap=True, min_width=5)
    for run in runs:
        data = str(run.get("data") or "")
        if len(data) > 18:
            data = "…" + data[-17:]
        ckpts = run["checkpoints"] or [None]
        for i, c in enumerate(ckpts):
            first = i == 0
            table.add_row(
                run["run_id"] if first else "",
                data if first else "",
                c["name"] if c else "(no checkpoints)",
                "" if not c or c["epoch"] is None else str(c["epoch"]),
                _pct(c["val_acc"]).strip() if c and c["val_acc"] is not None else "",
                _pct(c["test_acc"]).strip() if c and c["test_acc"] is not None else "",
                format_size(c["size"]) if c else "",
                end_section=i == len(ckpts) - 1,
            )
    console.print(table)
