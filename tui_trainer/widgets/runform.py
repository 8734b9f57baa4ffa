"""The new-run form: data, preset, epochs, width, batch size, learning rate, subset,
validation size, mixup and the network's shape (with its live parameter count, FLOPs,
activation memory and budget line), checked before a run starts.

Used by the start screen and, prefilled from a run's settings, by the browser's
"new run" dialog. Messages name the form's fields ("Epochs must be..."), not the
command line's flags. When the form is valid it posts :class:`RunForm.Submitted`
with the :class:`~engine.config.TrainConfig`.
"""

from __future__ import annotations

import re
from typing import Any, Optional

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Button, Input, Label, Select, Static, Switch

from engine.config import DEFAULT_PRESET, PRESETS, ConfigError, TrainConfig, make_config
from engine.data import check_source
from engine.shape import DEFAULT_MAX_PARAMS, NetShape, ShapeError

from .shapefields import SHAPE_FIELD_IDS, ShapeFields

# the command line's names of settings -> the form's
FIELD_NAMES = {
    "--data": "Data", "--preset": "Preset", "--epochs": "Epochs", "--width": "Width", "--batch-size": "Batch",
    "--lr": "LR", "--subset": "Subset", "--val-size": "Val size", "--mixup": "Mixup",
    "--blocks": "Blocks", "--channels": "Channels", "--strides": "Strides", "--stem-channels": "Stem channels",
    "--se": "SE", "--se-reduction": "SE reduction", "--max-params": "Max params",
}
FIELD_IDS = {"Data": "f-data", "Epochs": "f-epochs", "Width": "f-width", "Batch": "f-batch", "LR": "f-lr",
             "Subset": "f-subset", "Val size": "f-val", **SHAPE_FIELD_IDS}
# a flag followed by a word's end; the longest first, so that --se-reduction is not read as --se
_FLAG = re.compile("(?:" + "|".join(re.escape(f) for f in sorted(FIELD_NAMES, key=len, reverse=True)) + r")\b")


class FormError(ConfigError):
    """A setting the form refuses; ``field`` is the form field's label."""

    def __init__(self, message: str, field: Optional[str] = None) -> None:
        super().__init__(message)
        self.field = field


def in_form_words(message: str) -> tuple[str, Optional[str]]:
    """A config error in the form's words: ("--epochs must be..." -> "Epochs must be..."), and
    the field it is about (the first one named)."""
    found = _FLAG.search(message)
    return _FLAG.sub(lambda m: FIELD_NAMES[m.group(0)], message), FIELD_NAMES[found.group(0)] if found else None


def _number(text: str, field: str, kind: type, *, blank: Any = "required", hint: str = "") -> Any:
    text = text.strip().replace(",", "").replace("_", "")
    if not text:
        if blank == "required":
            raise FormError(f"{field} is empty; {hint}", field)
        return blank
    try:
        return kind(text)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise FormError(f"{field} must be {what} ({hint}); got {text!r}", field) from None


def check_data(data: str) -> str:
    """Refuse a data source the engine would refuse before a run is started (a missing
    path, a file no format reads...), in the engine's words; the full check happens when
    the data is loaded."""
    problem = check_source(data)
    if problem is not None:
        message, field = in_form_words(problem)
        raise FormError(message, field or "Data")
    return data.strip()


def parse_form(values: dict[str, Any], runs_dir: Optional[str], base: Optional[TrainConfig] = None,
               keep: Optional[dict[str, Any]] = None) -> TrainConfig:
    """A validated TrainConfig from the form's values (text, the preset's name, mixup as a
    bool); settings the form does not show come from the preset, or from ``base`` (a run
    whose settings prefill the form: its seed, device, checkpoint and log cadence), or
    from ``keep`` (a sweep trial's settings: the form's fields win over them)."""
    preset = values.get("preset")
    if not isinstance(preset, str) or preset not in PRESETS:
        raise FormError(f"Preset: choose one of {', '.join(PRESETS)}", "Preset")
    data = check_data(str(values.get("data", "")))
    kw: dict[str, Any] = dict(
        data=data,
        epochs=_number(values["epochs"], "Epochs", int, hint="at least 1"),
        width=_number(values["width"], "Width", float, hint="1.0 is the report's network, 0.25 a quick one"),
        batch_size=_number(values["batch"], "Batch", int, hint="images per step, e.g. 128"),
        lr=_number(values["lr"], "LR", float, hint="the peak learning rate, e.g. 0.1"),
        subset=_number(values["subset"], "Subset", int, blank=None, hint="blank for all images"),
        val_size=_number(values["val"], "Val size", int, blank=None, hint="blank for 5,000 or 10% of a small set"),
        mixup=bool(values.get("mixup")),
        runs_dir=runs_dir,
        **parse_shape(values),
    )
    if base is not None:
        kw.update(seed=base.seed, device=base.device, save_every=base.save_every, log_every=base.log_every,
                  log_seconds=base.log_seconds)
        for key in ("blocks", "channels", "strides", "stem_channels", "se", "se_reduction", "max_params"):
            kw.setdefault(key, getattr(base, key))  # (the base run's shape where the values do not give one)
    try:
        return make_config(preset, **{**(keep or {}), **kw})
    except ConfigError as e:
        message, field = in_form_words(str(e))
        raise FormError(message, field) from None


def parse_shape(values: dict[str, Any]) -> dict[str, Any]:
    """The config's shape settings from the form's text (blocks, channels and strides stay
    text such as "4,3,2,3": the config reads and checks them); a setting missing from
    ``values`` is left out (the preset's, or the base run's). Raises :class:`FormError`."""
    out: dict[str, Any] = {}
    for key, name in (("blocks", "Blocks"), ("channels", "Channels"), ("strides", "Strides")):
        if key in values:
            text = str(values[key]).strip()
            if not text:
                raise FormError(f"{name} is empty; give one number per stage, separated by commas", name)
            out[key] = text
    for key, setting, name, hint in (("stem", "stem_channels", "Stem channels", "e.g. 64"),
                                     ("se_reduction", "se_reduction", "SE reduction", "e.g. 16")):
        if key in values:
            out[setting] = _number(str(values[key]), name, int, hint=hint)
    if "se" in values:
        out["se"] = values["se"]
    if "max_params" in values:
        out["max_params"] = _number(str(values["max_params"]), "Max params", int, blank=None,
                                    hint="a parameter budget such as 5,000,000, or blank for none")
    return out


def shape_summary(values: dict[str, Any]) -> tuple[NetShape, dict[str, Any]]:
    """The network the form's values describe and its :meth:`NetShape.summary` against the
    budget (Max params, or 5,000,000 when blank): arithmetic, no torch. Raises :class:`FormError`."""
    kw = parse_shape(values)
    max_params = kw.pop("max_params", None)
    kw["width"] = _number(str(values.get("width", "")), "Width", float, hint="1.0 is the report's network")
    try:
        shape = NetShape.parse(**kw)
    except ShapeError as e:
        message, field = in_form_words(str(e))
        raise FormError(message, field) from None
    return shape, shape.summary(max_params if max_params and max_params > 0 else DEFAULT_MAX_PARAMS)


def _text(v: Any) -> str:
    return "" if v is None else str(v)


# tab and shift+tab between a form's fields, checked before the focused field sees the key
# (see RunForm): for every form that keys may be sent to faster than the app handles them
FIELD_TABS = [
    Binding("tab", "app.focus_next", "Next field", show=False, priority=True),
    Binding("shift+tab", "app.focus_previous", "Previous field", show=False, priority=True),
]


class RunForm(Widget):
    """The form. ``base``: a config to prefill it with (else the default preset's).

    Tab and shift+tab are priority bindings here: Textual checks them before it hands a key
    to the focused field, so keys sent faster than the app handles them (a paste into the
    terminal, tmux send-keys, a script) land in the field the tabs lead to. A plain binding
    is only checked once the field has passed the key back up, by which time the keys after
    it have gone to the field before.
    """

    BINDINGS = FIELD_TABS

    DEFAULT_CSS = """
    RunForm {  /* compact, one line per row */
        height: auto;
        border: round $primary;
        border-title-color: $text;
        padding: 0 1;
    }
    RunForm #form-grid {
        height: auto;
        grid-size: 6;
        grid-columns: 8 1fr 8 1fr 8 1fr;
        grid-rows: 1;
        grid-gutter: 0 1;
    }
    RunForm #f-data { column-span: 3; }
    RunForm #f-preset { column-span: 1; }
    RunForm Label { width: 100%; height: 1; }
    RunForm Input.-invalid { background: $error 30%; }
    RunForm #form-last { height: 1; }
    RunForm #form-last .form-label { width: 9; }
    RunForm Switch { height: 1; border: none; padding: 0; width: auto; }
    RunForm Switch:focus { border: none; }  /* (over Switch:focus: a one-line switch keeps no border) */
    RunForm #f-mixup-state { width: 1fr; padding: 0 1; }
    RunForm #f-detach-label { width: auto; padding: 0 1 0 0; }
    RunForm #f-detach-state { width: 5; padding: 0 1; }
    RunForm #f-start { width: auto; min-width: 16; }
    RunForm #f-preset-note { height: 1; color: $text-muted; }
    RunForm #form-error { color: $error; height: auto; }
    """

    class Submitted(Message):
        def __init__(self, form: "RunForm", config: TrainConfig, detach: bool = False) -> None:
            super().__init__()
            self.form = form
            self.config = config
            self.detach = detach  # train in a background process of its own (the start screen's switch)

    def __init__(self, runs_dir: Optional[str] = None, base: Optional[TrainConfig] = None,
                 button: str = "Start training", *, detach_switch: bool = False, shape_open: bool = False,
                 keep: Optional[dict[str, Any]] = None, id: Optional[str] = None) -> None:  # noqa: A002
        super().__init__(id=id)
        self.shape_open = shape_open  # the network's fields shown (else only its title and figures)
        self.keep = keep  # settings kept where the form has no field (parse_form)
        self.detach_switch = detach_switch
        self.runs_dir = runs_dir
        self.base = base
        self.button_label = button
        self.error_field: Optional[str] = None

    def compose(self) -> ComposeResult:
        b = self.base
        preset = b.preset if b is not None and b.preset in PRESETS else DEFAULT_PRESET
        # a new run is designed under the course's budget (cleared: no limit); a run's own settings are its own
        p = b.to_dict() if b is not None else {**TrainConfig().to_dict(), **PRESETS[preset], "subset": None,
                                               "val_size": None, "max_params": DEFAULT_MAX_PARAMS}
        with Grid(id="form-grid"):
            yield Label("Data")
            yield Input(value=b.data if b is not None else "cifar10", placeholder="cifar10, synthetic or a path",
                        id="f-data", compact=True)
            yield Label("Preset")
            yield Select([(n, n) for n in PRESETS], value=preset, allow_blank=False, id="f-preset", compact=True)
            for label, wid, key, placeholder in (
                ("Epochs", "f-epochs", "epochs", ""), ("Width", "f-width", "width", ""),
                ("Batch", "f-batch", "batch_size", ""), ("LR", "f-lr", "lr", ""),
                ("Subset", "f-subset", "subset", "all"), ("Val size", "f-val", "val_size", "auto"),
            ):
                yield Label(label)
                yield Input(value=_text(p.get(key)), placeholder=placeholder, id=wid, compact=True)
        yield ShapeFields(p, expanded=self.shape_open, id="f-network")
        with Horizontal(id="form-last"):
            yield Label("Mixup", classes="form-label")
            yield Switch(value=bool(p.get("mixup")), id="f-mixup")
            yield Label("", id="f-mixup-state")
            if self.detach_switch:
                yield Label("Detach", id="f-detach-label")
                yield Switch(value=False, id="f-detach", tooltip="Train in a background process of its own: it "
                             "survives closing the app, the terminal or the SSH session; the dashboard attaches to it")
                yield Label("off", id="f-detach-state")
            yield Button(self.button_label, variant="primary", id="f-start", compact=True)
        yield Static("", id="f-preset-note")
        yield Static("", id="form-error")

    def on_mount(self) -> None:
        self.query_one("#form-error").add_class("-hidden")
        self._show_mixup(self.query_one("#f-mixup", Switch).value)
        self._show_note(self.query_one("#f-preset", Select).value)
        self.show_figures()

    # ------------------------------------------------------------------ events
    @on(Select.Changed, "#f-preset")
    def _preset_changed(self, event: Select.Changed) -> None:
        p = PRESETS.get(event.value) if isinstance(event.value, str) else None
        self._show_note(event.value)
        if p is None or (self.base is not None and event.value == self.base.preset):
            return
        for wid, key in (("f-epochs", "epochs"), ("f-width", "width"), ("f-batch", "batch_size"), ("f-lr", "lr")):
            self.query_one(f"#{wid}", Input).value = _text(p[key])
        self.query_one("#f-mixup", Switch).value = bool(p["mixup"])

    @on(Switch.Changed, "#f-mixup")
    def _mixup_changed(self, event: Switch.Changed) -> None:
        self._show_mixup(event.value)

    @on(Switch.Changed, "#f-detach")
    def _detach_changed(self, event: Switch.Changed) -> None:
        self.query_one("#f-detach-state", Label).update("on" if event.value else "off")

    def _show_mixup(self, on: bool) -> None:
        self.query_one("#f-mixup-state", Label).update("on" if on else "off")

    def _show_note(self, preset: Any) -> None:
        note = PRESETS[preset].summary if isinstance(preset, str) and preset in PRESETS else ""
        self.query_one("#f-preset-note", Static).update(Text(f"{preset}: {note}" if note else "", style="dim"))

    def show_figures(self) -> None:
        """The network's figures and budget line for the fields as they are now."""
        shape = self.query_one(ShapeFields)
        try:
            net, summary = shape_summary(self.values())
        except FormError as e:
            shape.show(None, problem=str(e))
            return
        shape.show(summary, net.describe())

    @on(Select.Changed, "#f-se")
    @on(Input.Changed)
    def _recheck(self, event: Input.Changed | Select.Changed) -> None:
        """The figures follow the fields; while an error is shown, check again as the user
        types: it goes once fixed (and follows the first problem left, without taking the
        cursor away)."""
        self.show_figures()
        if self.error_field is None and not self.error:
            return
        try:
            self.read()
        except FormError as e:
            self.show_error(str(e), e.field, focus=False)
            return
        self.show_error("")

    @on(Button.Pressed, "#f-start")
    @on(Input.Submitted)
    def submit(self) -> None:
        try:
            config = self.read()
        except FormError as e:
            self.show_error(str(e), e.field)
            return
        self.show_error("")
        detach = self.detach_switch and self.query_one("#f-detach", Switch).value
        self.post_message(self.Submitted(self, config, detach))

    # -------------------------------------------------------------------- api
    def values(self) -> dict[str, Any]:
        q = self.query_one
        return {
            "data": q("#f-data", Input).value, "preset": q("#f-preset", Select).value,
            "epochs": q("#f-epochs", Input).value, "width": q("#f-width", Input).value,
            "batch": q("#f-batch", Input).value, "lr": q("#f-lr", Input).value,
            "subset": q("#f-subset", Input).value, "val": q("#f-val", Input).value,
            "mixup": q("#f-mixup", Switch).value, **self.query_one(ShapeFields).values(),
        }

    def read(self) -> TrainConfig:
        """The config the form describes; raises :class:`FormError`."""
        return parse_form(self.values(), self.runs_dir, self.base, self.keep)

    def show_error(self, message: str, field: Optional[str] = None, *, focus: bool = True) -> None:
        err = self.query_one("#form-error", Static)
        err.update(Text(message))
        err.set_class(not message, "-hidden")
        self.error_field = field if message else None
        for name, wid in FIELD_IDS.items():
            self.query_one(f"#{wid}", Input).set_class(bool(message) and name == field, "-invalid")
        if focus and message and field in FIELD_IDS:
            target = self.query_one(f"#{FIELD_IDS[field]}", Input)
            if field in SHAPE_FIELD_IDS:  # (in the network's collapsible: opened, focused once shown)
                self.query_one(ShapeFields).reveal()
                self.call_after_refresh(target.focus)
            else:
                target.focus()

    @property
    def error(self) -> str:
        return str(self.query_one("#form-error", Static).render())
