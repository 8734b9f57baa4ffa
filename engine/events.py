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
import time
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

# --------------------------------------------------------------------------- events

State = Literal["running", "paused", "stopping", "finished", "failed"]
MixupSource = Literal["schedule", "user"]


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


@dataclass(frozen=True)
class EpochDone(Event):
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


@dataclass(frozen=True)
class MixupChanged(Event):
    """Mixup was switched (by the schedule at an epoch start, or by the user)."""

    epoch: int
    on: bool
    source: MixupSource


@dataclass(frozen=True)
class CheckpointSaved(Event):
    path: str
    epoch: int
    val_acc: Optional[float]
    kind: str = "last"  # last | best | epoch | manual | stop
    step_in_epoch: int = 0  # > 0: saved part-way through epoch ``epoch + 1``
    global_step: int = 0


@dataclass(frozen=True)
class StateChanged(Event):
    state: State
    reason: str = ""


@dataclass(frozen=True)
class Warning(Event):  # noqa: A001 - the protocol's name; shadows the builtin only here
    message: str


@dataclass(frozen=True)
class Failed(Event):
    message: str


EVENT_TYPES: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (
        RunStarted,
        EpochStarted,
        StepDone,
        EpochDone,
        MixupChanged,
        CheckpointSaved,
        StateChanged,
        Warning,
        Failed,
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


def event_from_dict(data: dict[str, Any]) -> Event:
    """Inverse of :func:`event_to_dict`. Unknown keys are ignored (forward compatible).

    Raises ``ValueError`` for an unknown event name.
    """
    name = data.get("event")
    cls = EVENT_TYPES.get(name)  # type: ignore[arg-type]
    if cls is None:
        raise ValueError(f"unknown event {name!r}")
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {k: v for k, v in data.items() if k in names}
    if "classes" in kwargs and isinstance(kwargs["classes"], list):
        kwargs["classes"] = tuple(kwargs["classes"])
    return cls(**kwargs)


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
    save: bool = True


@dataclass(frozen=True)
class SaveCheckpoint(Command):
    pass
