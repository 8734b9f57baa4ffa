"""Headless training: the engine's events rendered as rich progress bars.

The trainer runs in a background thread; this (main) thread drains its events
from a queue and draws them, and turns Ctrl+C / SIGTERM into a graceful
``Stop(save=True)``. A second Ctrl+C quits at once. The terminal closing (SIGHUP) is a
stop with a checkpoint too: output then goes to /dev/null (:class:`TerminalStream`).
"""

from __future__ import annotations

import queue
import signal
import sys
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

from .console import pct_cell as _pct
from .console import styled
from .cliargs import one_line
from .exitcodes import EXIT_FAILED, EXIT_OK, exit_for_signal
from .formatting import data_progress_text
from .signals import HEADLESS_SIGNALS, StopSignals, stop_command, to_dev_null
from .summary import print_summary


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
        to_dev_null((1, 2))
        try:
            self._stream.flush()  # what was buffered goes to /dev/null now
        except (OSError, ValueError):
            pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _num(v: Optional[float], fmt: str = ".4f") -> str:
    return "n/a" if v is None else format(v, fmt)


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
        self.params: Optional[int] = None
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
            acc = _pct(e.train_acc)
            if e.mixup:  # the accuracy on mixed images, and on each image's larger share where recorded
                major = "" if e.train_acc_major is None else f" larger share {_pct(e.train_acc_major)}"
                acc = f"acc (mixed) {acc}{major}"
            self.say(f"epoch {e.epoch:>3}/{self.epochs}  train {e.train_loss:.4f} {acc}  "
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
            self.say(("warning: ", "yellow"), one_line(e.message))
        elif isinstance(e, ev.StateChanged) and e.state == "stopping":
            self.say((e.reason, "yellow"))
        elif isinstance(e, ev.DataProgress) and e.total and e.done >= e.total:
            self.console.print(styled((data_progress_text(e), "dim")), soft_wrap=True)
        elif isinstance(e, ev.RunFinished):
            self.finished = e

    def _on_started(self, e: ev.RunStarted) -> None:
        self.run_dir = e.run_dir
        self.params = e.params
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
        self.say(("epoch summaries: train loss acc (mixed: on mixed images) | validation loss acc | learning rate | mixup | seconds", "dim"))
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
        print_summary(self.console, self.finished, self.run_dir, self.best, params=self.params)


class _QuietRenderer(HeadlessRenderer):
    """For ranks other than 0 under torchrun: only warnings and failures, no progress."""

    def handle(self, e: ev.Event) -> None:
        if isinstance(e, ev.Warning):
            self.console.print(f"warning: {one_line(e.message)}", markup=False)
        elif isinstance(e, ev.RunFinished):
            self.finished = e

    def summary(self) -> None:
        if self.finished is not None and self.finished.outcome == "failed":
            self.console.print(f"error: {one_line(self.finished.reason)}", markup=False)


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
        signalled["code"] = exit_for_signal(signum)
        trainer.send(stop_command(signum))
        console.print(styled(("stopping: saving a checkpoint (press Ctrl+C again to quit at once)...", "yellow")))

    with StopSignals(on_signal, HEADLESS_SIGNALS, enabled=install_signals):
        status = console.status("loading data...")
        if not rank:
            status.start()
        try:
            _drain(trainer, events, renderer, status)
        except KeyboardInterrupt:
            status.stop()
            renderer.close()
            console.print(styled(("interrupted: quit without waiting for a checkpoint", "red")))
            if trainer.alive:
                # The training thread is mid-step inside torch; leaving through the interpreter's
                # normal shutdown would abort in C++. Checkpoints on disk are complete (atomic writes).
                import os

                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(130)
            return 130
        finally:
            status.stop()
    renderer.close()
    renderer.summary()
    return exit_code(renderer.finished or trainer.result, signalled.get("code"))


def _drain(trainer: Any, events: "queue.Queue[ev.Event]", renderer: HeadlessRenderer, status: Any) -> None:
    """Draw the trainer's events until its thread has ended and the queue is empty."""
    trainer.start()
    while True:
        try:
            e = events.get(timeout=0.1)
        except queue.Empty:
            if not trainer.alive and events.empty():
                return
            continue
        if isinstance(e, (ev.RunStarted, ev.Failed)):
            status.stop()
        elif isinstance(e, ev.DataProgress):
            status.update(Text(data_progress_text(e)))
        renderer.handle(e)


