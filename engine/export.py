"""A run's history out of its run folder: one row per epoch (CSV), and TensorBoard scalars.

The history is read from the run's ``metrics.jsonl`` (the engine's own events), so
it covers every epoch of every start of the run. A run resumed from an earlier
checkpoint continues from there: the epochs it trained again replace the ones
recorded before, as the dashboard shows them.

Reading and the CSV import no torch; the TensorBoard export needs the optional
``tensorboard`` package (``pip install 'cifar-tui[tensorboard]'``).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import events as ev
from .commands import Marker, markers
from .files import atomic_write_text
from .rundir import RunDir
from .outputs import check_output_dir
from .safeio import UnreadableFile

EPOCH_COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "mixup", "seconds")
TENSORBOARD_MISSING = ("the TensorBoard export needs the tensorboard package; "
                       "install it with: pip install 'cifar-tui[tensorboard]'")


class ExportError(Exception):
    """A one-line message for the user (nothing to export, a file that cannot be written...)."""


@dataclass
class StepRow:
    step: int  # global step (1-based)
    epoch: int
    loss: float  # the running mean over the epoch so far (as StepDone reports it)
    lr: float
    images_per_s: float
    time: float


@dataclass
class RunHistory:
    run_id: str
    path: str
    config: dict[str, Any]
    epochs: list[ev.EpochDone] = field(default_factory=list)  # the epoch records, in order
    steps: list[StepRow] = field(default_factory=list)
    bad_lines: int = 0  # lines of metrics.jsonl that could not be read
    markers: list[Marker] = field(default_factory=list)  # steering actions, at their global steps


def read_history(run_dir: str | Path) -> RunHistory:
    """The epochs and logged steps of a run folder, in order, as the run stands now."""
    run = RunDir(run_dir)
    if not run.metrics_path.exists() and not run.metrics_path.is_symlink():
        raise ExportError(f"{run.path}: not a run folder (no metrics.jsonl); give a run folder or a run id")
    try:
        raw, bad = run.read_metrics()  # bounded: over-long lines and NUL runs skipped and counted
    except UnreadableFile as e:
        raise ExportError(f"{e}; the run's history cannot be read") from None
    info = run.read_config()
    config = info.get("config") if isinstance(info.get("config"), dict) else {}
    h = RunHistory(run.run_id, str(run.path), dict(config), bad_lines=bad)
    events = []
    for d in raw:
        try:
            e = ev.event_from_dict(d)
        except ValueError:
            h.bad_lines += 1
            continue
        _fold(h, e)
        events.append(e)
    h.markers = steering_markers(events)
    return h


def steering_markers(events: list[ev.Event]) -> list[Marker]:
    """The steering actions of a run's events (:func:`engine.commands.markers`), as the run
    stands now: a start from an earlier checkpoint drops those of the epochs it retrains."""
    out: list[Marker] = []
    segment: list[ev.Event] = []
    for e in events:
        if isinstance(e, ev.RunStarted):
            out = [m for m in out + markers(segment) if m.epoch <= e.start_epoch]
            segment = []
        segment.append(e)
    return out + markers(segment)


def _markers_cell(h: RunHistory, epoch: int) -> str:
    """The steering actions of ``epoch``: ``label@step``, separated by "; "."""
    return "; ".join(f"{m.label}@{m.step}" for m in h.markers if m.epoch == epoch)


def _fold(h: RunHistory, e: ev.Event) -> None:
    if isinstance(e, ev.RunStarted):
        if e.config:
            h.config = dict(e.config)
        # a start from an earlier checkpoint: what came after it is replaced
        h.epochs = [r for r in h.epochs if r.epoch <= e.start_epoch]
        h.steps = [s for s in h.steps if s.epoch <= e.start_epoch]
    elif isinstance(e, ev.EpochDone):
        h.epochs = [r for r in h.epochs if r.epoch < e.epoch]
        h.epochs.append(e)
    elif isinstance(e, ev.StepDone):
        h.steps = [s for s in h.steps if s.step < e.step]
        h.steps.append(StepRow(e.step, e.epoch, e.loss, e.lr, e.images_per_s, e.time))


def _cell(v: Any) -> Any:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    if isinstance(v, bool):
        return int(v)
    return v


def epochs_csv(h: RunHistory) -> str:
    """One row per epoch under the header of :data:`EPOCH_COLUMNS` and ``markers`` (mixup as
    1/0, a missing validation value as an empty cell; markers: the epoch's steering actions,
    e.g. ``pause@120; lr 0.05@130``)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(EPOCH_COLUMNS + ("markers",))
    for r in h.epochs:
        w.writerow([_cell(getattr(r, name)) for name in EPOCH_COLUMNS] + [_markers_cell(h, r.epoch)])
    return buf.getvalue()


def is_history_csv(head: bytes) -> bool:
    """Does a file start with the header :func:`epochs_csv` writes (an export may replace it)?"""
    return head.startswith(",".join(EPOCH_COLUMNS).encode())


def write_csv(h: RunHistory, path: str | Path) -> int:
    """Write :func:`epochs_csv` to ``path`` atomically (checked first by the caller with
    :func:`engine.outputs.check_output`); returns the number of rows."""
    try:
        atomic_write_text(Path(path), epochs_csv(h))
    except OSError as e:
        raise ExportError(f"cannot write {path} ({e.strerror or e})") from None
    return len(h.epochs)


def write_tensorboard(h: RunHistory, logdir: str | Path) -> Path:
    """Write the run's scalars as a TensorBoard event file under ``logdir/<run id>``:
    per epoch ``loss/train``, ``loss/val``, ``accuracy/train``, ``accuracy/val``,
    ``epoch/lr``, ``epoch/mixup``, ``epoch/seconds`` (step = epoch), and per logged
    step ``step/loss_running_mean``, ``step/lr``, ``step/images_per_s`` (step = global
    step), and a text entry ``steering`` per steering action (step = its global step).
    Raises :class:`ExportError` when the tensorboard package is missing, and
    :class:`engine.outputs.OutputRefused` for a folder it must not write."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ExportError(TENSORBOARD_MISSING) from None
    target = check_output_dir(logdir, h.run_id, what="--tensorboard")  # inside logdir, never through a link
    try:
        target.mkdir(parents=True, exist_ok=True)
        writer = SummaryWriter(log_dir=str(target))
    except OSError as e:
        raise ExportError(f"cannot write to {target} ({e.strerror or e})") from None
    try:
        for r in h.epochs:
            scalars = {"loss/train": r.train_loss, "loss/val": r.val_loss, "accuracy/train": r.train_acc,
                       "accuracy/val": r.val_acc, "epoch/lr": r.lr, "epoch/mixup": float(r.mixup),
                       "epoch/seconds": r.seconds}
            for tag, v in scalars.items():
                if v is not None and math.isfinite(v):
                    writer.add_scalar(tag, v, r.epoch, walltime=r.time)
        for s in h.steps:
            for tag, v in (("step/loss_running_mean", s.loss), ("step/lr", s.lr), ("step/images_per_s", s.images_per_s)):
                if math.isfinite(v):
                    writer.add_scalar(tag, v, s.step, walltime=s.time)
        for m in h.markers:
            writer.add_text("steering", f"{m.label} (epoch {m.epoch})", m.step)
    finally:
        writer.close()
    return target
