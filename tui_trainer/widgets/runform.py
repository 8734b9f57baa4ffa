"""The new-run form: data, preset, epochs, width, batch size, learning rate, subset,
validation size and mixup, checked before a run starts.

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

# the command line's names of settings -> the form's
FIELD_NAMES = {
    "--data": "Data", "--preset": "Preset", "--epochs": "Epochs", "--width": "Width", "--batch-size": "Batch",
    "--lr": "LR", "--subset": "Subset", "--val-size": "Val size", "--mixup": "Mixup",
}
FIELD_IDS = {"Data": "f-data", "Epochs": "f-epochs", "Width": "f-width", "Batch": "f-batch", "LR": "f-lr",
             "Subset": "f-subset", "Val size": "f-val"}


class FormError(ConfigError):
    """A setting the form refuses; ``field`` is the form field's label."""

    def __init__(self, message: str, field: Optional[str] = None) -> None:
        super().__init__(message)
        self.field = field


def in_form_words(message: str) -> tuple[str, Optional[str]]:
    """A config error in the form's words: ("--epochs must be..." -> "Epochs must be..."), and
    the field it is about."""
    field = None
    for flag, name in sorted(FIELD_NAMES.items(), key=lambda kv: -len(kv[0])):
        if re.search(re.escape(flag) + r"\b", message):
            field = field or name
            message = re.sub(re.escape(flag) + r"\b", name, message)
    return message, field


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


def parse_form(values: dict[str, Any], runs_dir: Optional[str], base: Optional[TrainConfig] = None) -> TrainConfig:
    """A validated TrainConfig from the form's values (text, the preset's name, mixup as a
    bool); settings the form does not show come from the preset, or from ``base`` (a run
    whose settings prefill the form: its seed, device, checkpoint and log cadence)."""
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
    )
    if base is not None:
        kw.update(seed=base.seed, device=base.device, save_every=base.save_every, log_every=base.log_every,
                  log_seconds=base.log_seconds)
    try:
        return make_config(preset, **kw)
    except ConfigError as e:
        message, field = in_form_words(str(e))
        raise FormError(message, field) from None


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
                 button: str = "Start training", *, detach_switch: bool = False,
                 id: Optional[str] = None) -> None:  # noqa: A002
        super().__init__(id=id)
        self.detach_switch = detach_switch
        self.runs_dir = runs_dir
        self.base = base
        self.button_label = button
        self.error_field: Optional[str] = None

    def compose(self) -> ComposeResult:
        b = self.base
        preset = b.preset if b is not None and b.preset in PRESETS else DEFAULT_PRESET
        p = b.to_dict() if b is not None else {**PRESETS[preset], "subset": None, "val_size": None}
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

    @on(Input.Changed)
    def _recheck(self, event: Input.Changed) -> None:
        """While an error is shown, check again as the user types: it goes once fixed (and
        follows the first problem left, without taking the cursor away)."""
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
            "mixup": q("#f-mixup", Switch).value,
        }

    def read(self) -> TrainConfig:
        """The config the form describes; raises :class:`FormError`."""
        return parse_form(self.values(), self.runs_dir, self.base)

    def show_error(self, message: str, field: Optional[str] = None, *, focus: bool = True) -> None:
        err = self.query_one("#form-error", Static)
        err.update(Text(message))
        err.set_class(not message, "-hidden")
        self.error_field = field if message else None
        for name, wid in FIELD_IDS.items():
            self.query_one(f"#{wid}", Input).set_class(bool(message) and name == field, "-invalid")
        if focus and message and field in FIELD_IDS:
            self.query_one(f"#{FIELD_IDS[field]}", Input).focus()

    @property
    def error(self) -> str:
        return str(self.query_one("#form-error", Static).render())
