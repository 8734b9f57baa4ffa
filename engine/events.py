"""The engine's whole public protocol: events it emits and commands it accepts.

Events flow engine -> listeners (the dashboard, the headless renderer, the
metrics file, tests). Commands flow listeners -> engine and are applied between
training steps, never in the middle of one. Every command's effect shows up as
an event, so a listener displays state from events, not from what it asked for.

Everything here is a frozen dataclass of plain, JSON-serialisable fields, and
this module imports nothing heavy (no torch), so a UI can import it cheaply.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

# --------------------------------------------------------------------------- events

# ------------------------------------------------------------ run states: one vocabulary
#
# State: what a live run is doing (StateChanged). A listener adds two words of its own:
# "starting" (before the run's first state) and "interrupted" (its writer is gone without
# a final RunFinished). Outcome: how a run ended (RunFinished). RunStatus: a run in the
# catalogue (engine.runs): its outcome once it ended, else running or interrupted.
State = Literal["running", "paused", "stopping", "finished", "failed"]
STATES: tuple[str, ...] = ("running", "paused", "stopping", "finished", "failed")
STARTING, INTERRUPTED = "starting", "interrupted"
ACTIVE_STATES: tuple[str, ...] = (STARTING, "running", "paused", "stopping")  # a run still going
ENDED_STATES: tuple[str, ...] = ("finished", "failed", INTERRUPTED)
# pruned: stopped by a sweep's pruner (engine.sweep), with a checkpoint, like stopped
Outcome = Literal["completed", "stopped", "pruned", "failed"]
OUTCOMES: tuple[str, ...] = ("completed", "stopped", "pruned", "failed")
# damaged: a file of the run folder cannot be read (a FIFO, a device, a link, too large or
# too deep, not JSON); the reason names it. The other runs list as ever.
DAMAGED = "damaged"
RunStatus = Literal["running", "completed", "stopped", "pruned", "failed", "interrupted", "damaged"]
RUN_STATUSES: tuple[str, ...] = ("running", *OUTCOMES, INTERRUPTED, DAMAGED)
RESUMABLE_STATUSES: tuple[str, ...] = ("stopped", "pruned", INTERRUPTED)  # ended before its planned epochs


def status_of_outcome(outcome: object) -> RunStatus:
    """The catalogue status of a run that ended with ``outcome`` (an unknown word: failed)."""
    return outcome if outcome in OUTCOMES else "failed"  # type: ignore[return-value]


def state_of_outcome(outcome: object) -> State:
    """The live state a run is in once it ended with ``outcome``."""
    return "failed" if status_of_outcome(outcome) == "failed" else "finished"


MixupSource = Literal["schedule", "user"]
CheckpointKind = Literal["last", "best", "epoch", "manual", "stop"]
CHECKPOINT_KINDS: tuple[str, ...] = ("last", "best", "epoch", "manual", "stop")
# why a command was refused (CommandRefused.code): not under torchrun, a checkpoint that
# could not be written, a value outside what the command takes
REFUSAL_CODES: tuple[str, ...] = ("torchrun", "save_failed", "bad_value")


@dataclass(frozen=True)
class Event:
    """Base class. ``time`` is the wall-clock time (seconds since the epoch)."""

    time: float = field(default_factory=time.time, kw_only=True)


@dataclass(frozen=True)
class RunStarted(Event):
    config: dict
    run_dir: str
    device: str
    params: int
    run_id: str = ""
    train_size: int = 0
    val_size: int = 0
    steps_per_epoch: int = 0
    start_epoch: int = 0  # epochs already done (non-zero when resuming)
    resumed_from: Optional[str] = None
    classes: tuple = ()


@dataclass(frozen=True)
class EpochStarted(Event):
    epoch: int  # 1-based
    epochs: int
    steps: int
    mixup: bool
    mixup_source: MixupSource = "schedule"


@dataclass(frozen=True)
class StepDone(Event):
    """Emitted every ``log_every`` steps (and at the end of an epoch), not every step.

    ``loss`` and ``train_acc`` are the running means over the epoch so far;
    ``step`` is the global step (1-based), ``step_in_epoch`` the step within it.
    """

    epoch: int
    step: int
    loss: float
    lr: float
    images_per_s: float
    step_in_epoch: int = 0
    steps_per_epoch: int = 0
    train_acc: float = 0.0
    # the running accuracy on each image's larger share (its own label when mixup is off, so
    # then equal to ``train_acc``; with mixup ``train_acc`` is the accuracy on mixed images).
    # None: not recorded (files written before it)
    train_acc_major: Optional[float] = None


@dataclass(frozen=True)
class EpochDone(Event):
    """One finished epoch: the run's one epoch record. The trainer's history, the run's
    checkpoints (as :func:`epoch_record_to_dict`), the export and the dashboard all hold
    these; :func:`epoch_record_from_dict` reads one back (also the history dicts of
    checkpoints written before the record was this event)."""

    epoch: int
    train_loss: float
    train_acc: float
    val_loss: Optional[float]
    val_acc: Optional[float]
    seconds: float
    lr: float = 0.0
    mixup: bool = False
    best_val_acc: Optional[float] = None
    best_epoch: Optional[int] = None
    # of ``seconds``, those spent validating (None: not recorded, files written before it)
    val_seconds: Optional[float] = None
    # as StepDone's: the accuracy on each image's larger share (None: files written before it)
    train_acc_major: Optional[float] = None


@dataclass(frozen=True)
class Compiled(Event):
    """torch.compile built the training step, before the first timed step (so compile time
    is in no epoch's ``seconds``): once per run (and per resume), after ``RunStarted``.

    ``shapes``: the input shapes warmed up (one, or two with progressive resizing);
    ``ok`` False: compiling failed (``message`` says why) and the run trains eagerly.
    """

    seconds: float
    backend: str
    mode: str = "default"
    shapes: int = 1
    ok: bool = True
    message: str = ""


@dataclass(frozen=True)
class MixupChanged(Event):
    """Mixup was switched (by the schedule at an epoch start, or by the user), taking effect
    from global step ``step + 1`` on (``step``: the steps done when it changed; 0 in files
    written before it was recorded)."""

    epoch: int
    on: bool
    source: MixupSource
    step: int = 0


@dataclass(frozen=True)
class LrChanged(Event):
    """The learning rate was steered (:class:`SetLearningRate`): from global step ``step + 1``
    on, the schedule is multiplied by ``scale``, so its peak is ``peak_lr`` (the config's
    ``lr`` times ``scale``). ``lr`` is the rate of the next step."""

    epoch: int
    step: int
    scale: float
    peak_lr: float
    lr: float = 0.0
    source: str = "user"


@dataclass(frozen=True)
class CheckpointSaved(Event):
    path: str
    epoch: int
    val_acc: Optional[float]
    kind: CheckpointKind = "last"
    step_in_epoch: int = 0  # > 0: saved part-way through epoch ``epoch + 1``
    global_step: int = 0


@dataclass(frozen=True)
class StateChanged(Event):
    """The run's state changed after ``step`` global steps, during epoch ``epoch`` (both 0
    in files written before they were recorded, and before training starts)."""

    state: State
    reason: str = ""
    epoch: int = 0
    step: int = 0


@dataclass(frozen=True)
class Warning(Event):  # noqa: A001 - the protocol's name; shadows the builtin only here
    message: str


@dataclass(frozen=True)
class CommandRefused(Warning):
    """A command that cannot take effect: ``command`` is its word in the command table
    (:mod:`engine.commands`), ``code`` why, as data (:data:`REFUSAL_CODES`); ``message``
    says it in a sentence for people. A kind of :class:`Warning`, so a listener that
    shows warnings shows refusals too. Build it with keywords."""

    command: str = ""
    code: str = ""


@dataclass(frozen=True)
class Failed(Event):
    message: str


@dataclass(frozen=True)
class DataProgress(Event):
    """Slow data preparation before the run starts (decoding a folder or zip of images the
    first time), at most a few times a second: ``done`` of ``total`` items so far.
    ``message`` says what is happening, e.g. "decoding 50,000 images once, cached for next time"."""

    message: str
    done: int = 0
    total: int = 0


@dataclass(frozen=True)
class RunFinished(Event):
    """The run's last event, always (also written as the last line of ``metrics.jsonl``).

    ``outcome`` is data: completed (every planned epoch), stopped (by a command or a
    signal), failed (an error; ``reason`` says which). ``last_checkpoint`` is the latest
    checkpoint written (None if none was); ``save_error`` is set when the last attempt
    to write a checkpoint failed, so the run's end is not on disk.
    """

    outcome: Outcome
    reason: str = ""
    last_checkpoint: Optional[str] = None
    save_error: Optional[str] = None
    best_checkpoint: Optional[str] = None
    epochs_done: int = 0
    global_step: int = 0


EVENT_TYPES: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (
        RunStarted,
        EpochStarted,
        StepDone,
        EpochDone,
        Compiled,
        MixupChanged,
        LrChanged,
        CheckpointSaved,
        StateChanged,
        Warning,
        CommandRefused,
        Failed,
        DataProgress,
        RunFinished,
    )
}


def event_to_dict(event: Event) -> dict[str, Any]:
    """A JSON-ready dict: ``{"event": "StepDone", "time": ..., <fields>}``."""
    data = {"event": type(event).__name__}
    for f in dataclasses.fields(event):
        value = getattr(event, f.name)
        if isinstance(value, tuple):
            value = list(value)
        data[f.name] = value
    return data


# What a JSON value may be for each annotation used above (checked when reading events
# back from a file another process wrote: a damaged or hostile line is refused whole).
_NUM = (int, float)
_CHECKS: dict[str, Any] = {
    "float": lambda v: isinstance(v, _NUM) and not isinstance(v, bool),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
    "bool": lambda v: isinstance(v, bool),
    "dict": lambda v: isinstance(v, dict),
    "tuple": lambda v: isinstance(v, (list, tuple)),
    "State": lambda v: v in STATES,
    "MixupSource": lambda v: v in ("schedule", "user"),
    "Outcome": lambda v: v in OUTCOMES,
    "CheckpointKind": lambda v: v in CHECKPOINT_KINDS,
}


# Bounds on the numbers of an event read back (a value outside is absurd, the event skipped).
# Clock times and durations are finite (a year-5000 clock time is not one); counts of epochs
# and steps stay within what a run can reach. Losses, accuracies and rates may be anything a
# float holds (a diverged run logs NaN or inf): whoever shows them copes.
MAX_TIME = 1e11  # seconds since 1970: the year 5138
MAX_EPOCHS = 1_000_000  # (--epochs allows 100,000)
MAX_COUNT = 10**15  # steps, images, parameters
_FINITE_FIELDS = ("time", "seconds", "val_seconds", "images_per_s")
_EPOCH_FIELDS = ("epoch", "epochs", "start_epoch", "best_epoch", "epochs_done")


def _bounded(name: str, value: Any) -> bool:
    """Is a number of the right type also within its field's bounds?"""
    if isinstance(value, bool) or not isinstance(value, _NUM):
        return True
    if name in _FINITE_FIELDS:
        return math.isfinite(value) and 0 <= value <= MAX_TIME
    if isinstance(value, int):
        return 0 <= value <= (MAX_EPOCHS if name in _EPOCH_FIELDS else MAX_COUNT)
    return True


def _value_ok(annotation: str, value: Any) -> bool:
    if annotation.startswith("Optional[") and annotation.endswith("]"):
        return value is None or _value_ok(annotation[9:-1], value)
    check = _CHECKS.get(annotation)
    return True if check is None else bool(check(value))


def event_from_dict(data: dict[str, Any]) -> Event:
    """Inverse of :func:`event_to_dict`. Unknown keys are ignored (forward compatible).

    Raises ``ValueError`` for an unknown event name, a missing field, a field of the
    wrong type (``"loss": "abc"``), or an absurd one (a clock time of 1e300 or NaN, an
    epoch of 10**13, a ``RunStarted`` whose config says ``"epochs": "many"``): the one
    check of an event read back from a file, before anyone shows it.
    """
    name = data.get("event")
    cls = EVENT_TYPES.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ValueError(f"unknown event {name!r}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        if not _value_ok(str(f.type), value) or not _bounded(f.name, value):
            raise ValueError(f"{name}.{f.name}: unexpected value {_shown(value)}")
        kwargs[f.name] = value
    if cls is RunStarted and isinstance(kwargs.get("config"), dict):
        from .config import recorded_config_problem

        if (problem := recorded_config_problem(kwargs["config"])) is not None:
            raise ValueError(f"{name}.config: {problem}")
    if "classes" in kwargs and isinstance(kwargs["classes"], list):
        kwargs["classes"] = tuple(str(c) for c in kwargs["classes"])
    try:
        return cls(**kwargs)
    except TypeError as e:  # a required field is missing
        raise ValueError(f"{name}: {e}") from None


def _shown(value: Any) -> str:
    try:
        return f"{value!r:.40}"
    except ValueError:  # an int with more digits than Python prints
        return "a number too large to print"


def epoch_record_to_dict(record: EpochDone) -> dict[str, Any]:
    """An epoch record as plain values (for a checkpoint, loaded with ``weights_only``)."""
    data = event_to_dict(record)
    del data["event"]
    return data


def epoch_record_from_dict(data: dict[str, Any]) -> EpochDone:
    """An epoch record from :func:`epoch_record_to_dict`, from an ``EpochDone`` line of
    ``metrics.jsonl``, or from a history dict of an older checkpoint (no ``time``: 0).
    Raises ``ValueError`` when a field is missing or of the wrong type."""
    if not isinstance(data, dict):
        raise ValueError(f"an epoch record is a dict (got {type(data).__name__})")
    event = event_from_dict({"time": 0.0, **data, "event": "EpochDone"})
    assert isinstance(event, EpochDone)
    return event


def event_to_json(event: Event) -> str:
    return json.dumps(event_to_dict(event), allow_nan=True, separators=(",", ":"))


# ------------------------------------------------------------------------- commands


@dataclass(frozen=True)
class Command:
    pass


@dataclass(frozen=True)
class SetMixup(Command):
    """Force mixup on or off from now on; ``on=None`` gives control back to the schedule."""

    on: Optional[bool]


@dataclass(frozen=True)
class Pause(Command):
    pass


@dataclass(frozen=True)
class Resume(Command):
    pass


@dataclass(frozen=True)
class Stop(Command):
    """Stop training (saving a checkpoint first unless ``save`` is False). ``reason`` says
    who stopped it, e.g. "stopped because the terminal closed (SIGHUP)"."""

    save: bool = True
    reason: Optional[str] = None
    outcome: Outcome = "stopped"  # how the run will be said to have ended ("pruned" for a sweep's pruner)


@dataclass(frozen=True)
class SaveCheckpoint(Command):
    pass


@dataclass(frozen=True)
class SetLearningRate(Command):
    """Steer the learning rate from the next step on: ``peak`` sets the schedule's peak (an
    absolute lr, the config's ``lr`` as it would be), ``factor`` multiplies the current one.
    Exactly one of them. The schedule keeps its shape; its values are scaled."""

    peak: Optional[float] = None
    factor: Optional[float] = None
