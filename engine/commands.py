"""The command table: each command a run accepts, defined once.

A :class:`Spec` holds everything about one command: its word (``cifar-tui ctl RUN
WORD``, and ``{"command": WORD}`` on the control channel), how its arguments are
parsed from words and from a channel message, its handler (applied by the trainer
between two steps, through :class:`Steering`), the event that confirms it, whether
it works under torchrun, and what a UI needs to offer it (keys, labels). Adding a
command is one :class:`Spec` in :data:`TABLE`, its handler, and its command class in
:mod:`engine.events`.

A refusal is an event, :class:`engine.events.CommandRefused` (the command's word and
a code), never a sentence to parse: :func:`confirms` decides from types and codes.

For a UI (the dashboard's bindings, the command palette, ``ctl``'s help)::

    for spec in TABLE:                 # in a fixed order
        spec.word, spec.args           # "mixup", "on|off|auto"
        spec.label, spec.description   # "Mixup", "Switch mixup on or off ..."
        spec.torchrun                  # False: refused under torchrun
        for key in spec.keys:          # Key(key, action, label, description, command, show)
            key.command                # the command this key sends, or None when the
                                       # UI decides it (m: mixup on or off, from its state)
    KEYS                               # every Key of the table, in order; two commands may
                                       # share a key (p: pause or resume, as the run's state
                                       # says), told apart by their action
    USAGE                              # "pause, resume, ... or lr PEAK|xFACTOR"
    parse_words(["lr", "x0.5"])        # -> SetLearningRate(factor=0.5); ValueError: one line
    spec_for(command)                  # the Spec of a command object
    describe(run_name, command, event) # one line for the event that confirmed it
    markers(events)                    # Marker(epoch, step, label): each steering action
                                       # at the global step where it took effect (plots)

No torch here: the CLI and the dashboards import it cheaply.
"""

from __future__ import annotations

import json
import math
import queue
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional

from . import events as ev

REMOTE_STOP_REASON = "stopped from another terminal"
MIXUP_WORDS = {"on": True, "off": False, "auto": None}
LR_FACTOR_RANGE = (1e-3, 1e3)  # a factor outside this is refused as absurd
LR_PEAK_MAX = 100.0  # as TrainConfig refuses --lr above it


@dataclass(frozen=True)
class ChannelNotice(ev.Command):
    """Not a user command: the control channel's thread asks the trainer to emit a
    ``Warning`` (events are emitted from the training thread only, in order)."""

    message: str


@dataclass(frozen=True)
class Key:
    """A key that sends a command in a dashboard (and its palette entry)."""

    key: str
    action: str  # the UI's action name
    label: str  # short, for the footer
    description: str  # a sentence, for the tooltip and the palette
    command: Optional[ev.Command] = None  # None: the UI picks the command (a toggle)
    show: bool = True  # in the footer


@dataclass(frozen=True)
class Spec:
    word: str
    type: type
    label: str
    description: str
    parse: Callable[[list[str]], ev.Command]  # ctl's words after the command's word
    to_wire: Callable[[Any], dict]  # the message's fields besides "command"
    from_wire: Callable[[dict], ev.Command]  # ValueError for a bad message
    handle: Callable[["Steering", Any], None]
    confirmed: Callable[[Any, ev.Event], bool]  # does this event show it took effect?
    said: Callable[[str, Any, ev.Event], str]  # one line for that event (ctl)
    args: str = ""
    fields: tuple[str, ...] = ()  # the message's fields besides "command"
    torchrun: bool = True
    resume_hint: str = ""  # under torchrun: the flag of a resume that does it instead
    keys: tuple[Key, ...] = field(default=())


# ------------------------------------------------------------------ parsing


def _no_args(make: Callable[[], ev.Command], word: str) -> Callable[[list[str]], ev.Command]:
    def parse(rest: list[str]) -> ev.Command:
        if rest:
            raise ValueError(f"{word} takes no value (got {' '.join(rest)!r})")
        return make()

    return parse


def _parse_mixup(rest: list[str]) -> ev.Command:
    if len(rest) != 1 or rest[0].lower() not in MIXUP_WORDS:
        raise ValueError("mixup needs one of: on, off, auto (auto: back to the schedule)")
    return ev.SetMixup(on=MIXUP_WORDS[rest[0].lower()])


def _mixup_from_wire(data: dict) -> ev.Command:
    if "on" not in data or not (data["on"] is None or isinstance(data["on"], bool)):
        raise ValueError('a mixup message without "on": true, false or null')
    return ev.SetMixup(on=data["on"])


def lr_problem(cmd: ev.SetLearningRate) -> Optional[str]:
    """Why ``cmd`` cannot be applied whatever the run (None: it can)."""
    if (cmd.peak is None) == (cmd.factor is None):
        return "lr takes a peak learning rate or a factor (lr 0.05, lr x0.5), not both"
    value = cmd.peak if cmd.peak is not None else cmd.factor
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
        return f"lr takes a positive, finite number (got {value!r:.40})"
    if cmd.peak is not None and cmd.peak > LR_PEAK_MAX:
        return f"a peak learning rate of {cmd.peak:g} is far too large; use at most {LR_PEAK_MAX:g}"
    lo, hi = LR_FACTOR_RANGE
    if cmd.factor is not None and not lo <= cmd.factor <= hi:
        return f"a factor of {cmd.factor:g} is absurd; use one from {lo:g} to {hi:g}"
    return None


def _parse_lr(rest: list[str]) -> ev.Command:
    usage = "lr needs one value: a peak learning rate (lr 0.05) or a factor (lr x0.5)"
    if len(rest) != 1:
        raise ValueError(usage)
    text = rest[0].lower()
    factor = text.startswith(("x", "*"))
    try:
        value = float(text[1:] if factor else text)
    except ValueError:
        raise ValueError(usage) from None
    cmd = ev.SetLearningRate(factor=value) if factor else ev.SetLearningRate(peak=value)
    problem = lr_problem(cmd)
    if problem:
        raise ValueError(problem)
    return cmd


def _lr_from_wire(data: dict) -> ev.Command:
    fields = [k for k in ("peak", "factor") if data.get(k) is not None]
    if len(fields) != 1:
        raise ValueError('an lr message needs one of "peak" or "factor"')
    value = data[fields[0]]
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise ValueError(f"an lr message whose {fields[0]} is not a finite number")
    return ev.SetLearningRate(**{fields[0]: float(value)})


def _lr_to_wire(cmd: ev.SetLearningRate) -> dict:
    return {"peak": cmd.peak} if cmd.peak is not None else {"factor": cmd.factor}


# ----------------------------------------------------------------- handlers


def _pause(st: "Steering", cmd: ev.Pause) -> None:
    if not st.paused:
        st.paused = True
        st.set_state("paused", "paused by request")


def _resume(st: "Steering", cmd: ev.Resume) -> None:
    if st.paused:
        st.paused = False
        st.set_state("running", "resumed by request")


def _stop(st: "Steering", cmd: ev.Stop) -> None:
    if not st.stopping:
        st.stopping, st.stop_save, st.paused = True, cmd.save, False
        if cmd.reason:
            st.stop_reason = str(cmd.reason)[:200]
        st.stop_outcome = cmd.outcome if cmd.outcome in ("stopped", "pruned") else "stopped"
        st.set_state("stopping", "stop requested" + (", saving a checkpoint" if cmd.save else ""))


def _save(st: "Steering", cmd: ev.SaveCheckpoint) -> None:
    st.save_now()


def _mixup(st: "Steering", cmd: ev.SetMixup) -> None:
    st.record.mixup_override = cmd.on
    st.mixup = st.mixup_scheduled if cmd.on is None else cmd.on
    st.emit(ev.MixupChanged(epoch=st.record.epoch, on=st.mixup, source="schedule" if cmd.on is None else "user",
                            step=st.record.global_step))


def _lr(st: "Steering", cmd: ev.SetLearningRate) -> None:
    problem = lr_problem(cmd)
    scale = st.record.lr_scale
    if problem is None:
        scale = cmd.peak / st.base_lr if cmd.peak is not None else scale * cmd.factor
        peak = st.base_lr * scale
        if not (math.isfinite(peak) and 0 < peak <= LR_PEAK_MAX):
            problem = f"that would make the peak learning rate {peak:g}; it must be above 0 and at most {LR_PEAK_MAX:g}"
    if problem is not None:
        st.refuse(cmd, "bad_value", problem)
        return
    st.record.lr_scale = scale
    st.emit(ev.LrChanged(epoch=st.record.epoch, step=st.record.global_step, scale=scale,
                         peak_lr=st.base_lr * scale, lr=st.lr_now() if st.lr_now else 0.0, source="user"))


# ------------------------------------------------------------ confirmations


def _state_is(state: str) -> Callable[[Any, ev.Event], bool]:
    return lambda cmd, e: isinstance(e, ev.StateChanged) and e.state == state


def _mixup_confirmed(cmd: ev.SetMixup, e: ev.Event) -> bool:
    wanted = "schedule" if cmd.on is None else "user"
    return isinstance(e, ev.MixupChanged) and e.source == wanted and (cmd.on is None or e.on == cmd.on)


def _mixup_said(name: str, cmd: ev.SetMixup, e: ev.MixupChanged) -> str:
    if e.source == "schedule":
        return f"mixup in {name} follows the schedule again (now {'on' if e.on else 'off'})"
    return f"mixup {'on' if e.on else 'off'} in {name} from epoch {e.epoch} (your override)"


def _lr_said(name: str, cmd: ev.SetLearningRate, e: ev.LrChanged) -> str:
    return f"learning rate of {name}: peak {e.peak_lr:.4g} (x{e.scale:.4g} the schedule) from step {e.step + 1}"


TABLE: tuple[Spec, ...] = (
    Spec("pause", ev.Pause, "Pause", "Pause training (between two steps)",
         _no_args(ev.Pause, "pause"), lambda c: {}, lambda d: ev.Pause(), _pause, _state_is("paused"),
         lambda name, c, e: f"paused {name} (resume with: cifar-tui ctl {name} resume)", torchrun=False,
         keys=(Key("p", "pause", "Pause", "Pause training (between two steps)", ev.Pause()),)),
    Spec("resume", ev.Resume, "Resume", "Resume training",
         _no_args(ev.Resume, "resume"), lambda c: {}, lambda d: ev.Resume(), _resume, _state_is("running"),
         lambda name, c, e: f"resumed {name}",
         keys=(Key("p", "resume", "Resume", "Resume training", ev.Resume()),)),
    Spec("stop", ev.Stop, "Stop", "Stop training and save a checkpoint",
         _no_args(lambda: ev.Stop(save=True), "stop"), lambda c: {},
         lambda d: ev.Stop(save=True, reason=REMOTE_STOP_REASON), _stop, lambda c, e: False,
         lambda name, c, e: f"{name}: done",
         keys=(Key("x", "stop", "Stop", "Stop training and save a checkpoint; the app stays open",
                   ev.Stop(save=True)),)),
    Spec("save", ev.SaveCheckpoint, "Save", "Save a checkpoint now",
         _no_args(ev.SaveCheckpoint, "save"), lambda c: {}, lambda d: ev.SaveCheckpoint(), _save,
         lambda c, e: isinstance(e, ev.CheckpointSaved) and e.kind == "manual",
         lambda name, c, e: f"saved {e.path}",
         keys=(Key("s", "save", "Save", "Save a checkpoint now", ev.SaveCheckpoint()),)),
    Spec("mixup", ev.SetMixup, "Mixup", "Switch mixup on or off (overrides the schedule), or back to the schedule",
         _parse_mixup, lambda c: {"on": c.on}, _mixup_from_wire, _mixup, _mixup_confirmed, _mixup_said,
         args="on|off|auto", fields=("on",), torchrun=False, resume_hint=" with --mixup or --no-mixup",
         keys=(Key("m", "toggle_mixup", "Mixup", "Switch mixup on or off (overrides the schedule)"),
               Key("M", "mixup_schedule", "Mixup: schedule", "Let the schedule decide mixup again",
                   ev.SetMixup(on=None), show=False))),
    Spec("lr", ev.SetLearningRate, "Learning rate",
         "Set the schedule's peak learning rate (lr 0.05) or scale it (lr x0.5); the schedule keeps its shape",
         _parse_lr, _lr_to_wire, _lr_from_wire, _lr, lambda c, e: isinstance(e, ev.LrChanged), _lr_said,
         args="PEAK|xFACTOR", fields=("peak", "factor"), torchrun=False, resume_hint=" with --lr",
         keys=(Key("[", "lr_halve", "LR /2", "Halve the learning rate (the schedule keeps its shape)",
                   ev.SetLearningRate(factor=0.5)),
               Key("]", "lr_double", "LR x2", "Double the learning rate (the schedule keeps its shape)",
                   ev.SetLearningRate(factor=2.0)))),
)
BY_WORD: dict[str, Spec] = {spec.word: spec for spec in TABLE}
BY_TYPE: dict[type, Spec] = {spec.type: spec for spec in TABLE}
KEYS: tuple[Key, ...] = tuple(k for spec in TABLE for k in spec.keys)
WORDS: tuple[str, ...] = tuple(BY_WORD)


def _usage(sep: str, last: str) -> str:
    parts = [f"{s.word} {s.args}".strip() for s in TABLE]
    return sep.join(parts[:-1]) + last + parts[-1]


USAGE = _usage(", ", ", or ")  # "pause, resume, stop, save, mixup on|off|auto, or lr PEAK|xFACTOR"
SHORT_USAGE = "|".join(s.word for s in TABLE)  # "pause|resume|stop|save|mixup|lr"


def spec_for(command: ev.Command) -> Spec:
    spec = BY_TYPE.get(type(command))
    if spec is None:
        raise ValueError(f"{type(command).__name__} is not a command of the table")
    return spec


def parse_words(words: list[str]) -> ev.Command:
    """The command that ``cifar-tui ctl RUN WORDS...`` names. ValueError: one line."""
    if not words:
        raise ValueError(f"say what to do: {USAGE}")
    spec = BY_WORD.get(words[0].lower())
    if spec is None:
        raise ValueError(f"unknown command {words[0]!r}; use {USAGE}")
    return spec.parse(list(words[1:]))


def torchrun_refusal(spec: Spec, world: Optional[int] = None) -> str:
    """The one sentence for a command refused under torchrun."""
    n = f" ({world} processes)" if world else ""
    return (f"{spec.word} is not available under torchrun{n}: every process would have to agree; "
            f"stop the run and resume it{spec.resume_hint or ' with --resume'}")


# --------------------------------------------------------------- the wire


def encode(command: ev.Command) -> bytes:
    """The control channel's line for ``command`` (JSON, finite numbers only)."""
    spec = BY_TYPE.get(type(command))
    if spec is None:
        raise ValueError(f"{type(command).__name__} cannot be sent to another process")
    message = {"command": spec.word, **spec.to_wire(command)}
    return (json.dumps(message, separators=(",", ":"), allow_nan=False) + "\n").encode()


def decode(raw: bytes) -> ev.Command:
    """The command a channel line carries. ValueError says what is wrong with it."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ValueError("a message that is not JSON") from None
    if not isinstance(data, dict):
        raise ValueError("a message that is not a JSON object")
    word = data.get("command")
    spec = BY_WORD.get(word) if isinstance(word, str) else None
    if spec is None:
        raise ValueError(f"an unknown command {str(word)[:40]!r}")
    allowed = {"command", *spec.fields}
    extra = sorted(str(k) for k in data if k not in allowed)
    if extra:
        raise ValueError(f"a {spec.word} message with an unknown field {extra[0][:40]!r}")
    return spec.from_wire(data)



# ---------------------------------------------------------- confirmations


def confirms(command: ev.Command, event: ev.Event) -> Optional[bool]:
    """Does ``event`` show that ``command`` took effect (True), or that it cannot (False:
    refused, or the run ended first)? None: neither."""
    if isinstance(event, ev.RunFinished):
        return isinstance(command, ev.Stop) and event.outcome != "failed"
    spec = spec_for(command)
    if isinstance(event, ev.CommandRefused):
        return False if event.command == spec.word else None
    return True if spec.confirmed(command, event) else None


def describe(name: str, command: ev.Command, event: ev.Event) -> str:
    """One line saying that ``event`` confirmed ``command`` in run ``name``."""
    if isinstance(event, ev.RunFinished):
        where = f"; last checkpoint {event.last_checkpoint}" if event.last_checkpoint else ""
        if event.outcome == "completed":
            return f"{name} completed before the stop ({event.reason}){where}"
        return f"{name} {event.reason}{where}"
    return spec_for(command).said(name, command, event)


# ------------------------------------------------------------------ markers


@dataclass(frozen=True)
class Marker:
    """A steering action at the global step where it took effect (for plots and exports)."""

    epoch: int
    step: int
    label: str


def markers(events: Iterable[ev.Event]) -> list[Marker]:
    """The steering actions among ``events`` (a run's, in order): pause, resume, stop,
    mixup switched by the user, an lr change, a manual save; each at its global step."""
    out: list[Marker] = []
    state = None
    for e in events:
        if isinstance(e, ev.StateChanged):
            if e.state in ("paused", "stopping") or (e.state == "running" and state == "paused"):
                out.append(Marker(e.epoch, e.step, {"paused": "pause", "stopping": "stop"}.get(e.state, "resume")))
            state = e.state
        elif isinstance(e, ev.MixupChanged):
            out.append(Marker(e.epoch, e.step, "mixup " + ("auto" if e.source == "schedule" else
                                                           "on" if e.on else "off")))
        elif isinstance(e, ev.LrChanged):
            out.append(Marker(e.epoch, e.step, f"lr {e.peak_lr:.4g}"))
        elif isinstance(e, ev.CheckpointSaved) and e.kind == "manual":
            out.append(Marker(e.epoch + 1, e.global_step, "save"))  # (epoch: the epochs done)
    return out


# ----------------------------------------------------------------- steering


class Steering:
    """The run's steerable state and the one door commands come through, on the training
    thread, between two steps. ``record`` is the run's progress (what a checkpoint keeps:
    ``epoch``, ``global_step``, ``mixup_override``, ``lr_scale``)."""

    def __init__(self, record: Any, emit: Callable[[ev.Event], None], set_state: Callable[[str, str], None], *,
                 distributed: bool = False, base_lr: float = 1.0) -> None:
        self.record = record
        self.emit = emit
        self.set_state = set_state
        self.distributed = distributed
        self.base_lr = base_lr
        self.paused = False
        self.stopping = False
        self.stop_save = True
        self.stop_reason = "stopped by request"
        self.stop_outcome = "stopped"  # or "pruned"
        self.mixup = False  # the epoch's mixup, as commands leave it
        self.mixup_scheduled = False  # what the schedule wants this epoch
        self.save_now: Callable[[], None] = lambda: None
        self.lr_now: Optional[Callable[[], float]] = None  # the next step's lr (for LrChanged)

    def begin_epoch(self, scheduled: bool) -> bool:
        """The epoch's mixup: the schedule's, unless the user overrode it."""
        self.mixup_scheduled = scheduled
        override = self.record.mixup_override
        self.mixup = scheduled if override is None else override
        return self.mixup

    def refuse(self, command: ev.Command, code: str, message: str) -> None:
        self.emit(ev.CommandRefused(message=message, command=spec_for(command).word, code=code))

    def apply(self, command: ev.Command) -> None:
        if isinstance(command, ChannelNotice):  # a bad message from another process
            self.emit(ev.Warning(message=command.message))
            return
        spec = BY_TYPE.get(type(command))
        if spec is None:
            return
        if self.distributed and not spec.torchrun:
            self.refuse(command, "torchrun", torchrun_refusal(spec))
            return
        spec.handle(self, command)

    def drain(self, commands: "queue.Queue[ev.Command]") -> None:
        """Apply the queued commands; while paused, wait for more (until resumed or stopped)."""
        while True:
            waiting = self.paused and not self.stopping
            try:
                command = commands.get(timeout=0.2) if waiting else commands.get_nowait()
            except queue.Empty:
                if waiting:
                    continue
                return
            self.apply(command)


def stop_requested(commands: "queue.Queue[ev.Command]") -> bool:
    """Before training starts (data loading can be long): is a Stop queued? The other
    commands stay queued, in order."""
    keep, stop = [], False
    while True:
        try:
            command = commands.get_nowait()
        except queue.Empty:
            break
        if isinstance(command, ev.Stop):
            stop = True
        else:
            keep.append(command)
    for command in keep:
        commands.put(command)
    return stop
