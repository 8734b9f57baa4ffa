"""What the dashboard knows about a run, built only from engine events.

:class:`RunState` folds a stream of :mod:`engine.events` into the numbers the
status panel shows, the series the plots draw and the lines the event log
prints. It is plain Python (no Textual, no torch), so it is cheap to test and the
same code serves a live run, a watched ``metrics.jsonl`` and a fixed replay.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Optional

from engine import events as ev
from engine.commands import markers
from engine.events import ACTIVE_STATES

from .formatting import data_progress_text, fmt_pct

# How strongly images/s is smoothed for the ETA.
SPEED_EMA = 0.3

STEERING = (ev.StateChanged, ev.MixupChanged, ev.LrChanged, ev.CheckpointSaved)  # what markers() reads


@dataclass(frozen=True)
class Mark:
    """A steering action on the plots: at ``x`` (in epochs, as the plots' x axis), ``label``."""

    x: float
    label: str


@dataclass
class LogLine:
    time: float
    text: str
    style: str = ""


class RunState:
    """The dashboard's model of one run. Feed it events with :meth:`apply`."""

    def __init__(self, clock: Callable[[], float] = time.time):
        self.clock = clock
        self.run_id = ""
        self.run_dir = ""
        self.device = ""
        self.params: Optional[int] = None
        self.config: dict = {}
        self.train_size = 0
        self.val_size = 0
        self.steps_per_epoch = 0
        self.epochs = 0  # planned
        self.start_epoch = 0
        self.epoch = 0  # the epoch in progress (1-based), 0 before the first
        self.epochs_done = 0
        self.global_step = 0
        self.images_per_s: Optional[float] = None
        self._speed: Optional[float] = None
        self.lr: Optional[float] = None
        self.lr_scale = 1.0  # the user's scale on the schedule (LrChanged)
        self.mixup: Optional[bool] = None
        self.mixup_source: str = "schedule"
        self.best_val_acc: Optional[float] = None
        self.best_epoch: Optional[int] = None
        self.state = ev.STARTING
        self.reason = ""
        self.outcome: Optional[str] = None  # from RunFinished: completed | stopped | failed
        self.finished: Optional[ev.RunFinished] = None
        self.failure: Optional[str] = None
        self.started_at: Optional[float] = None
        self.ended_at: Optional[float] = None
        self.last_event_at: Optional[float] = None
        self.events_seen = 0
        self.loading: Optional[ev.DataProgress] = None  # data being decoded before the run starts
        self._eta_at: Optional[tuple[float, float]] = None  # (seconds left, when) at the last step event
        # plot series; x is in (fractional) epochs so steps and epochs share an axis
        self.step_x: list[float] = []
        self.step_loss: list[float] = []  # the mean loss over each report's window (raw: the plot smooths)
        self.step_lr: list[float] = []
        self.history: list[ev.EpochDone] = []  # the run's epoch records, one per epoch
        self.marks: list[Mark] = []  # each steering action where it took effect (engine.commands.markers)
        self._steering: list[ev.Event] = []
        self._marked = 0  # how many of markers(self._steering) are in self.marks
        # what changed since the owner last looked
        self.plots_dirty = False
        self.state_dirty = False
        self._log: list[LogLine] = []
        self._loss_prev: tuple[int, int, float] = (0, 0, 0.0)  # epoch, step_in_epoch, running mean
        self._new_epoch = False  # the next step report is an epoch's first (its window is not counted for speed)

    # ------------------------------------------------------------------ derived
    @property
    def batch_size(self) -> int:
        bs = int(self.config.get("batch_size") or 0)
        if self.train_size and bs:
            return min(bs, self.train_size)
        return bs

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.epochs

    @property
    def progress(self) -> float:
        """How far the run is, in epochs (fractional mid-epoch)."""
        return max(self.step_x[-1] if self.step_x else 0.0, float(self.epochs_done))

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    def elapsed(self) -> Optional[float]:
        if self.started_at is None:
            return None
        end = self.ended_at if self.ended_at is not None else self.clock()
        return max(0.0, end - self.started_at)

    def eta(self) -> Optional[float]:
        """Seconds left at the recent speed, or None when unknown / not running. Between two
        step events it counts down with the clock (never below zero)."""
        if self.state not in ("running",) or not self._speed or not self.batch_size or not self.total_steps:
            return None
        if self._eta_at is None:
            remaining = max(0, self.total_steps - self.global_step)
            return remaining * self.batch_size / self._speed
        left, at = self._eta_at
        now = self.clock()
        if self.started_at is not None:  # whole seconds, in step with Elapsed (one redraw a second, not two)
            passed = math.floor(now - self.started_at) - math.floor(at - self.started_at)
        else:
            passed = now - at
        return max(0.0, left - max(0.0, passed))

    def _reset_eta(self, at: float) -> None:
        """The estimate from the last step event, counted down from ``at`` on."""
        if not self._speed or not self.batch_size or not self.total_steps:
            self._eta_at = None
            return
        remaining = max(0, self.total_steps - self.global_step)
        self._eta_at = (remaining * self.batch_size / self._speed, at)

    def take_log(self) -> list[LogLine]:
        out, self._log = self._log, []
        return out

    def note(self, text: str, style: str = "dim", at: Optional[float] = None) -> None:
        """Add a line of the UI's own to the log (not from an engine event)."""
        self._log.append(LogLine(self.clock() if at is None else at, text, style))

    # -------------------------------------------------------------------- apply
    def apply_all(self, events: Iterable[ev.Event]) -> int:
        n = 0
        for e in events:
            self.apply(e)
            n += 1
        return n

    def apply(self, e: ev.Event) -> None:
        self.events_seen += 1
        self.last_event_at = e.time
        log = self._log.append
        if isinstance(e, STEERING) and not (isinstance(e, ev.CheckpointSaved) and e.kind != "manual"):
            self._mark(e)
        if isinstance(e, ev.StepDone):
            self._on_step(e)
        elif isinstance(e, ev.EpochDone):
            self._on_epoch_done(e)
        elif isinstance(e, ev.EpochStarted):
            self.epoch = e.epoch
            self.epochs = e.epochs or self.epochs
            if e.steps and not self.steps_per_epoch:
                self.steps_per_epoch = e.steps
            self.mixup, self.mixup_source = e.mixup, e.mixup_source
            self.state_dirty = True
        elif isinstance(e, ev.RunStarted):
            self._on_run_started(e)
        elif isinstance(e, ev.StateChanged):
            self._on_state(e)
        elif isinstance(e, ev.CheckpointSaved):
            name = e.path.replace("\\", "/").rsplit("/", 1)[-1]
            if e.kind in ("manual", "stop") and self.epoch > e.epoch:
                what = f"saved {name} (during epoch {self.epoch}"  # e.epoch counts finished epochs
            else:
                what = f"saved {name} (epoch {e.epoch}"
            if e.val_acc is not None:
                what += f", val {fmt_pct(e.val_acc)}"
            log(LogLine(e.time, what + ")", "green"))
        elif isinstance(e, ev.MixupChanged):
            self.mixup, self.mixup_source = e.on, e.source
            who = "by you" if e.source == "user" else "by the schedule"
            log(LogLine(e.time, f"mixup {'on' if e.on else 'off'} {who} (epoch {e.epoch})", "cyan"))
            self.state_dirty = True
        elif isinstance(e, ev.LrChanged):
            self.lr_scale = e.scale
            if e.lr and math.isfinite(e.lr):
                self.lr = e.lr  # the next step's, as the run confirms it
            who = "by you" if e.source == "user" else f"({e.source})"
            log(LogLine(e.time, f"learning rate: peak {e.peak_lr:.4g} (x{e.scale:.4g} the schedule) {who}, "
                        f"from step {e.step + 1}", "cyan"))
            self.state_dirty = True
        elif isinstance(e, ev.Compiled) and e.ok:
            log(LogLine(e.time, f"compiled the training step in {e.seconds:.1f} s ({e.backend}, {e.mode})", "dim"))
        elif isinstance(e, ev.Warning):
            log(LogLine(e.time, f"warning: {e.message}", "yellow"))
        elif isinstance(e, ev.Failed):
            self.failure = e.message
            log(LogLine(e.time, f"failed: {e.message}", "bold red"))
        elif isinstance(e, ev.DataProgress):
            self._on_data_progress(e)
        elif isinstance(e, ev.RunFinished):
            self._on_finished(e)

    def _mark(self, e: ev.Event) -> None:
        """Markers for a steering event (engine.commands.markers reads the run's steering events
        in order), placed at the global step where it took effect, or where the run was then
        for an event from a file written before events carried their step."""
        self._steering.append(e)
        found = markers(self._steering)
        for m in found[self._marked:]:
            x = m.step / self.steps_per_epoch if m.step and self.steps_per_epoch else self.progress
            self.marks.append(Mark(x, m.label))
            self.plots_dirty = True
        self._marked = len(found)

    def _on_data_progress(self, e: ev.DataProgress) -> None:
        first = self.loading is None or self.loading.message != e.message
        done = bool(e.total) and e.done >= e.total
        self.loading = None if done else e
        if first and not done:
            self._log.append(LogLine(e.time, e.message, "dim"))
        if done:
            self._log.append(LogLine(e.time, data_progress_text(e), "dim"))
        self.state_dirty = True

    def _on_finished(self, e: ev.RunFinished) -> None:
        self.finished, self.outcome = e, e.outcome
        if self.state in ACTIVE_STATES or self.state == ev.INTERRUPTED:
            self.state = ev.state_of_outcome(e.outcome)
            self.reason = e.reason
        self.ended_at = self.ended_at or e.time
        if e.save_error:
            self._log.append(LogLine(e.time, f"the last checkpoint was not written: {e.save_error}", "bold red"))
        elif e.outcome in ("stopped", "pruned") and e.last_checkpoint:
            name = e.last_checkpoint.replace("\\", "/").rsplit("/", 1)[-1]
            self._log.append(LogLine(e.time, f"stopped; {name} holds the run so far (resume it to continue)", "bold"))
        self.state_dirty = True

    def mark_interrupted(self) -> None:
        """The writer of a watched run is gone without a final event (killed, or its
        terminal closed): the run is not running, whatever its last state said."""
        if self.state == ev.INTERRUPTED or self.finished is not None:
            return
        self.state = ev.INTERRUPTED
        self.reason = "its process ended without finishing the run"
        self.ended_at = self.last_event_at or self.clock()
        self.state_dirty = True
        where = self.run_dir or "RUN_FOLDER"
        self._log.append(LogLine(self.clock(), "the run's process is gone (killed, or its terminal closed); "
                                 f"continue it with: cifar-tui train --resume {where}", "bold red"))

    def _on_run_started(self, e: ev.RunStarted) -> None:
        resumed = self.started_at is not None or e.start_epoch > 0
        self.run_id = e.run_id or self.run_id
        self.run_dir = e.run_dir
        self.device = e.device
        self.params = e.params
        self.config = dict(e.config or {})
        self.train_size, self.val_size = e.train_size, e.val_size
        self.steps_per_epoch = e.steps_per_epoch or self.steps_per_epoch
        self.epochs = int(self.config.get("epochs") or self.epochs)
        self.start_epoch = e.start_epoch
        self.epoch = e.start_epoch
        self.epochs_done = e.start_epoch
        self.global_step = e.start_epoch * self.steps_per_epoch
        self.started_at = e.time
        self.ended_at = None
        self.failure = None
        self.outcome, self.finished = None, None
        self._speed = None
        self._eta_at = None
        self.images_per_s = None
        self.loading = None
        # a resumed run continues from its checkpoint: drop what came after it
        if resumed:
            self.history = [h for h in self.history if h.epoch <= e.start_epoch]
            keep = [i for i, x in enumerate(self.step_x) if x <= e.start_epoch + 1e-9]
            self.step_x = [self.step_x[i] for i in keep]
            self.step_loss = [self.step_loss[i] for i in keep]
            self.step_lr = [self.step_lr[i] for i in keep]
            self.marks = [m for m in self.marks if m.x <= e.start_epoch + 1e-9]
            self.best_val_acc = max((h.val_acc for h in self.history if h.val_acc is not None), default=None)
            self.best_epoch = next((h.epoch for h in self.history if h.val_acc == self.best_val_acc), None)
        self._loss_prev = (0, 0, 0.0)
        self._new_epoch = False
        self.plots_dirty = self.state_dirty = True
        if e.resumed_from:
            text = f"run {self.run_id} resumed from {e.resumed_from} after epoch {e.start_epoch}"
        else:
            text = f"run {self.run_id} started on {e.device}"
        self._log.append(LogLine(e.time, f"{text}: {e.params:,} params, {e.train_size:,} train / {e.val_size:,} val images", "bold"))

    def _on_state(self, e: ev.StateChanged) -> None:
        self.state, self.reason = e.state, e.reason
        if self._eta_at is not None:  # the countdown stops while paused
            left, at = self._eta_at
            if e.state == "paused":
                self._eta_at = (max(0.0, left - max(0.0, e.time - at)), e.time)
            elif e.state == "running":
                self._eta_at = (left, e.time)
        if e.state in ("finished", "failed"):
            self.ended_at = e.time
        if e.state == "failed" and e.reason:
            self.failure = e.reason
        self.state_dirty = True
        if e.state == "failed" and self.failure and self._log and self._log[-1].text.endswith(self.failure):
            return  # the Failed event just said it
        text = f"state: {e.state}" + (f" ({e.reason})" if e.reason else "")
        style = {"failed": "bold red", "finished": "bold green", "paused": "yellow", "stopping": "yellow"}.get(e.state, "")
        self._log.append(LogLine(e.time, text, style))

    def _on_step(self, e: ev.StepDone) -> None:
        spe = e.steps_per_epoch or self.steps_per_epoch
        if e.steps_per_epoch and not self.steps_per_epoch:
            self.steps_per_epoch = e.steps_per_epoch
        self.epoch = e.epoch
        self.global_step = e.step
        self.lr = e.lr
        first_of_epoch, self._new_epoch = self._new_epoch, False
        # an epoch's first report: its window may hold the pause between epochs (validation,
        # checkpoints), which is not training speed; the speed so far stands
        counted = not (first_of_epoch and self._speed is not None)
        if counted and e.images_per_s and math.isfinite(e.images_per_s) and e.images_per_s > 0:
            self.images_per_s = e.images_per_s
            self._speed = e.images_per_s if self._speed is None else self._speed + SPEED_EMA * (e.images_per_s - self._speed)
        # StepDone.loss is the running mean over the epoch so far; recover the mean
        # over just the steps since the previous report (the loss plot smooths it).
        n = e.step_in_epoch
        prev_epoch, prev_n, prev_mean = self._loss_prev
        if prev_epoch != e.epoch or n <= prev_n:
            prev_n, prev_mean = 0, 0.0
        window = (e.loss * n - prev_mean * prev_n) / (n - prev_n) if n > prev_n else e.loss
        if not math.isfinite(window):
            window = e.loss
        self._loss_prev = (e.epoch, n, e.loss)
        if math.isfinite(window):
            x = (e.epoch - 1) + (n / spe if spe and n else 1.0)
            self.step_x.append(x)
            self.step_loss.append(max(0.0, window))
            self.step_lr.append(e.lr)
            self.plots_dirty = True
        self._reset_eta(e.time)
        self.state_dirty = True

    def _on_epoch_done(self, e: ev.EpochDone) -> None:
        self.history = [h for h in self.history if h.epoch < e.epoch]
        self.history.append(e)
        self.epochs_done = e.epoch
        self._new_epoch = True
        if e.best_val_acc is not None:
            self.best_val_acc, self.best_epoch = e.best_val_acc, e.best_epoch
        elif e.val_acc is not None and (self.best_val_acc is None or e.val_acc > self.best_val_acc):
            self.best_val_acc, self.best_epoch = e.val_acc, e.epoch
        if self.steps_per_epoch:
            self.global_step = max(self.global_step, e.epoch * self.steps_per_epoch)
        self.plots_dirty = self.state_dirty = True


# ------------------------------------------------------------------ formatting


def fmt_duration(seconds: Optional[float]) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m {s:02d}s"
    h, m = divmod(m, 60)
    if h < 48:
        return f"{h}h {m:02d}m"
    d, h = divmod(h, 24)
    return f"{d}d {h:02d}h"


def fmt_lr(lr: Optional[float]) -> str:
    if lr is None:
        return "-"
    if lr == 0:
        return "0"
    return f"{lr:.4f}" if lr >= 1e-3 else f"{lr:.2e}"


def fmt_clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t))
