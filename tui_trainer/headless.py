"""Headless training: the engine's events rendered as rich progress bars.

The trainer runs in a background thread; this (main) thread drains its events
from a queue and draws them, and turns Ctrl+C / SIGTERM into a graceful
``Stop(save=True)``. A second Ctrl+C quits at once. The terminal closing (SIGHUP) is a
stop with a checkpoint too: output then goes to /dev/null (:class:`TerminalStream`).
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

from rich.text import Text

from engine import events as ev

from .exitcodes import EXIT_FAILED, EXIT_OK
from .formatting import STATUS_STYLE, data_progress_text, fmt_pct, format_size

# Signals that stop a foreground run gracefully (a checkpoint first), and what the run says.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
STOP_REASONS = {
    signal.SIGINT: "stopped by Ctrl+C (SIGINT)",
    signal.SIGTERM: "stopped by SIGTERM",
    signal.SIGHUP: "stopped because the terminal closed (SIGHUP)",
}


class TerminalStream:
    """The console's output, made to survive the terminal going away (SIGHUP, a closed
    SSH connection). A write to a hung-up terminal fails (EIO); the first failure points
    stdout and stderr at /dev/null, so the run goes on to save its checkpoint and finish
    instead of dying on a print."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.gone = False

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except (OSError, ValueError):
            self._hang_up()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except (OSError, ValueError):
            self._hang_up()

    def _hang_up(self) -> None:
        if self.gone:
            return
        self.gone = True
        import os

        try:
            null = os.open(os.devnull, os.O_WRONLY)
            for fd in (1, 2):
                os.dup2(null, fd)
            os.close(null)
            self._stream.flush()  # what was buffered goes to /dev/null now
        except (OSError, ValueError):
            pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _pct(v: Optional[float]) -> str:
    """A percentage in a fixed width, for columns of numbers."""
    return f"{fmt_pct(v, 2, missing='n/a'):>6}"


def _num(v: Optional[float], fmt: str = ".4f") -> str:
    return "n/a" if v is None else format(v, fmt)


def styled(*parts: str | tuple[str, str]) -> Text:
    """A line from plain strings and (string, style) pairs. Strings are never parsed as
    markup: paths, class names and messages from files may hold ``[`` and ``]``."""
    return Text.assemble(*parts)


class HeadlessRenderer:
    """Draws events on a rich console. Call :meth:`handle` from one thread only."""

    def __init__(self, console: Optional[Console] = None):
        self.console = console or Console(stderr=False, highlight=False)
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}", style="bold", markup=False),
            BarColumn(bar_width=24),
            MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}", markup=False),
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
        self.finished: Optional[ev.RunFinished] = None
        self.started = False

    def say(self, *parts: str | tuple[str, str]) -> None:
        self.progress.console.print(styled(*parts), soft_wrap=True)

    # -------------------------------------------------------------------------------
    def handle(self, e: ev.Event) -> None:
        if isinstance(e, ev.RunStarted):
            self._on_started(e)
        elif isinstance(e, ev.EpochStarted):
            p = self.progress
            if self.epoch_task is not None:
                p.remove_task(self.epoch_task)
            mix = ("mixup on" if e.mixup else "mixup off") + (" (user)" if e.mixup_source == "user" else "")
            self.epoch_task = p.add_task(f"epoch {e.epoch}/{e.epochs}", total=e.steps, stats=mix)
        elif isinstance(e, ev.StepDone):
            stats = f"loss {e.loss:.3f} acc {100 * e.train_acc:4.1f}% {e.images_per_s:,.0f} img/s"
            if self.epoch_task is not None:
                self.progress.update(self.epoch_task, completed=e.step_in_epoch, stats=stats)
            if self.run_task is not None:
                done = (e.epoch - 1 - self.start_epoch) * self.steps_per_epoch + e.step_in_epoch
                self.progress.update(self.run_task, completed=done)
        elif isinstance(e, ev.EpochDone):
            self.say(f"epoch {e.epoch:>3}/{self.epochs}  train {e.train_loss:.4f} {_pct(e.train_acc)}  "
                     f"val {_num(e.val_loss)} {_pct(e.val_acc)}  lr {e.lr:.2e}  "
                     f"mixup {'on ' if e.mixup else 'off'} {e.seconds:6.1f}s")
        elif isinstance(e, ev.CheckpointSaved):
            if e.kind == "best":
                self.best = e
            elif e.kind == "manual":
                self.say(("saved ", "green"), e.path)
        elif isinstance(e, ev.Compiled) and e.ok:
            self.say(f"compiled the training step in {e.seconds:.1f} s ({e.backend}, mode {e.mode})")
        elif isinstance(e, ev.MixupChanged):
            self.say(f"mixup {'on' if e.on else 'off'} ({e.source})")
        elif isinstance(e, ev.Warning):
            self.say(("warning: ", "yellow"), e.message)
        elif isinstance(e, ev.StateChanged) and e.state == "stopping":
            self.say((e.reason, "yellow"))
        elif isinstance(e, ev.DataProgress) and e.total and e.done >= e.total:
            self.console.print(styled((data_progress_text(e), "dim")), soft_wrap=True)
        elif isinstance(e, ev.RunFinished):
            self.finished = e

    def _on_started(self, e: ev.RunStarted) -> None:
        self.run_dir = e.run_dir
        self.epochs = int(e.config.get("epochs", 0))
        self.start_epoch = e.start_epoch
        self.steps_per_epoch = e.steps_per_epoch
        cfg = e.config
        self.say(("resuming" if e.resumed_from else "training", "bold"),
                 f" {e.run_id}: SEResNet width {cfg.get('width')} ({e.params:,} parameters) on {e.device}; "
                 f"data {cfg.get('data')} ({e.train_size:,} train / {e.val_size:,} val images); preset {cfg.get('preset')}, "
                 f"{self.epochs} epoch{'s' if self.epochs != 1 else ''}, batch {cfg.get('batch_size')}, lr {cfg.get('lr')}")
        if e.resumed_from:
            self.say(f"  from {e.resumed_from} (epoch {e.start_epoch} done)")
        self.say(f"  run folder: {e.run_dir}")
        self.say(("epoch summaries: train loss acc | validation loss acc | learning rate | mixup | seconds", "dim"))
        if not self.started:
            self.progress.start()
            self.started = True
        total = max(1, (self.epochs - self.start_epoch) * self.steps_per_epoch)
        self.run_task = self.progress.add_task("total", total=total, stats="steps, all epochs")

    def close(self) -> None:
        if self.started:
            self.progress.stop()
            self.started = False

    def summary(self) -> None:
        """After the run: what happened, where things are, how to go on."""
        c, f = self.console, self.finished
        if f is None:
            return
        if f.outcome == "failed":
            c.print(styled(("error: ", "bold red"), f.reason), soft_wrap=True)
        if self.run_dir:
            c.print(styled(f"run folder:      {self.run_dir}"), soft_wrap=True)
        if self.best is not None:
            c.print(styled(f"best checkpoint: {self.best.path}  (val acc {_pct(self.best.val_acc).strip()} "
                           f"at epoch {self.best.epoch})"), soft_wrap=True)
        if f.save_error:
            c.print(styled(("error: ", "bold red"), f"training ended but its last checkpoint was not written: {f.save_error}"),
                    soft_wrap=True)
        elif f.outcome == "stopped" and f.last_checkpoint and self.run_dir:
            c.print(styled(f"{f.reason}; saved in {f.last_checkpoint}"), soft_wrap=True)
            c.print(styled(f"continue with: cifar-tui --no-ui train --resume {self.run_dir}"), soft_wrap=True)
        elif f.last_checkpoint and self.best is None:
            c.print(styled(f"last checkpoint: {f.last_checkpoint}"), soft_wrap=True)


class _QuietRenderer(HeadlessRenderer):
    """For ranks other than 0 under torchrun: only warnings and failures, no progress."""

    def handle(self, e: ev.Event) -> None:
        if isinstance(e, ev.Warning):
            self.console.print(f"warning: {e.message}", markup=False)
        elif isinstance(e, ev.RunFinished):
            self.finished = e

    def summary(self) -> None:
        if self.finished is not None and self.finished.outcome == "failed":
            self.console.print(f"error: {self.finished.reason}", markup=False)


def exit_code(finished: Optional[ev.RunFinished], signalled: Optional[int]) -> int:
    """0 completed (or stopped by a command), 1 failed or the last checkpoint not written,
    128 + the signal number when a signal stopped it after saving."""
    if finished is None or finished.outcome == "failed" or finished.save_error:
        return EXIT_FAILED
    if finished.outcome == "stopped" and signalled:
        return signalled
    return EXIT_OK


def run_headless(config=None, resume: Optional[str] = None, resume_overrides: Optional[dict[str, Any]] = None,
                 console: Optional[Console] = None, install_signals: bool = True,
                 run_dir: Optional[str] = None) -> int:
    """Train with rich progress. Returns the exit code (see :func:`exit_code`). ``run_dir``:
    train in this run folder (a detached run's, chosen by its parent)."""
    from engine.distributed import torchrun_env

    import sys

    console = console or Console(file=TerminalStream(sys.stdout), highlight=False, soft_wrap=True)
    rank = (torchrun_env() or {}).get("rank", 0)
    if rank:  # under torchrun only rank 0 draws; the others report problems only
        console = Console(file=TerminalStream(sys.stderr), highlight=False, soft_wrap=True, force_terminal=False)
    with console.status("loading torch and the data..."):
        from engine.trainer import Trainer

    events: "queue.Queue[ev.Event]" = queue.Queue()
    trainer = Trainer(config, listeners=[events.put], resume=resume, resume_overrides=resume_overrides, run_dir=run_dir)
    renderer = HeadlessRenderer(console) if not rank else _QuietRenderer(console)
    signalled: dict[str, int] = {}

    def on_signal(signum, frame):  # runs in the main thread, between bytecodes
        if signalled:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt  # a second Ctrl+C: quit at once
            return  # a repeated hang-up or SIGTERM: the stop is under way
        signalled["code"] = 128 + signum
        trainer.send(ev.Stop(save=True, reason=STOP_REASONS.get(signum, "stopped by a signal")))
        console.print(styled(("stopping: saving a checkpoint (press Ctrl+C again to quit at once)...", "yellow")))

    old = {}
    if install_signals and threading.current_thread() is threading.main_thread():
        for sig in STOP_SIGNALS:
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
            if isinstance(e, (ev.RunStarted, ev.Failed)):
                status.stop()
            elif isinstance(e, ev.DataProgress):
                status.update(Text(data_progress_text(e)))
            renderer.handle(e)
    except KeyboardInterrupt:
        status.stop()
        renderer.close()
        console.print(styled(("interrupted: quit without waiting for a checkpoint", "red")))
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
    return exit_code(renderer.finished or trainer.result, signalled.get("code"))


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
    console.print(styled((f"{_pct(result['accuracy']).strip()}", "bold"),
                         f" accuracy, loss {result['loss']:.4f} on {result['images']:,} images of {result['data_source']} "
                         f"(checkpoint {result['checkpoint']}, epoch {result.get('epoch')})"), soft_wrap=True)
    for note in result.get("notes", []):
        console.print(styled(f"note: {note}"))
    per = Table(title="per-class accuracy", show_edge=False)
    per.add_column("class")
    per.add_column("accuracy", justify="right")
    per.add_column("images", justify="right")
    cm = result["confusion_matrix"]
    for i, c in enumerate(classes):
        per.add_row(Text(c), _pct(result["per_class_accuracy"][i]).strip(), f"{sum(cm[i]):,}")
    console.print(per)
    grid = Table(title="confusion matrix (rows: true class, columns: predicted)", show_edge=False, padding=(0, 1))
    grid.add_column("")
    for c in classes:
        grid.add_column(Text(c[:5]), justify="right")
    for i, c in enumerate(classes):
        total = max(1, sum(cm[i]))
        cells = [Text(str(v), style="bold green" if i == j else ("red" if v / total > 0.05 else "dim"))
                 for j, v in enumerate(cm[i])]
        grid.add_row(Text(c[:10]), *cells)
    console.print(grid)


def render_predictions(console: Console, names: list, probs, classes: list, top_k: int,
                       ids: Optional[list[int]] = None) -> None:
    """A table of the top classes per image; ``ids``: each image's position in the input
    (images that could not be decoded have none), default 0, 1, 2..."""
    from rich.table import Table

    k = min(top_k, probs.shape[1])
    top_p, top_i = probs.topk(k, dim=1)
    table = Table(show_edge=False)
    table.add_column("ID", justify="right")
    table.add_column("input", overflow="fold")
    for r in range(k):
        table.add_column(f"#{r + 1}")
    for i, name in enumerate(names):
        table.add_row(str(ids[i] if ids is not None else i), Text(str(name)),
                      *[Text(f"{classes[int(c)]} {100 * float(p):.1f}%") for p, c in zip(top_p[i], top_i[i])])
    console.print(table)


def render_runs(console: Console, runs: list, root) -> None:
    """Runs and their checkpoints as a table (a list of :class:`engine.runs.RunSummary`)."""
    from rich import box
    from rich.table import Table

    if not runs:
        console.print(styled(f"no runs in {root} yet; start one with: cifar-tui --no-ui train --data synthetic --preset tiny"))
        return
    piped = not console.is_terminal
    table = Table(title=Text(f"runs in {root}"), box=box.SIMPLE_HEAD, padding=(0, 1), title_justify="left")
    table.add_column("run", no_wrap=True, overflow="fold" if piped else "ellipsis")
    table.add_column("status", no_wrap=True)
    table.add_column("data", overflow="ellipsis", no_wrap=True, max_width=None if piped else 14)
    table.add_column("checkpoint", overflow="ellipsis", no_wrap=True)
    table.add_column("ep", justify="right", no_wrap=True)
    table.add_column("val", justify="right", no_wrap=True)
    table.add_column("test", justify="right", no_wrap=True)
    table.add_column("size", justify="right", no_wrap=True)
    for run in runs:
        data = run.data or ""
        if not piped:
            data = Path(data).name if "/" in data or "\\" in data else data
        ckpts = run.checkpoints or (None,)
        for i, c in enumerate(ckpts):
            first = i == 0
            test = ""
            if c is not None and c.test_acc is not None:
                test = _pct(c.test_acc).strip()
            elif c is not None and c.test_stale:
                test = "stale"
            table.add_row(
                Text(run.run_id) if first else "",
                Text(run.status, style=STATUS_STYLE.get(run.status, "")) if first else "",
                Text(data) if first else "",
                Text(c.name) if c else Text("(no checkpoints)", style="dim"),
                "" if c is None or c.epoch is None else f"{c.epoch}{'+' if c.step_in_epoch else ''}",
                _pct(c.val_acc).strip() if c is not None and c.val_acc is not None else "",
                Text(test, style="dim" if test == "stale" else ""),
                format_size(c.size) if c else "",
                end_section=i == len(ckpts) - 1,
            )
    console.print(table)
