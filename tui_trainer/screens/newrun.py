"""Dialogs of the checkpoint browser: a new run prefilled from a run's settings,
extending a run that finished its epochs, a line of text (a run's new name, its note)
and a yes/no question (deleting a run).

Each returns what the user chose through :meth:`ModalScreen.dismiss` (None, or False,
when cancelled with escape); the browser acts on it.
"""

from __future__ import annotations

from typing import Any, Optional

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

from engine.config import ConfigError, TrainConfig

from ..widgets.runform import FIELD_TABS, RunForm, in_form_words


class NewRunScreen(ModalScreen[Optional[TrainConfig]]):
    """The new-run form, prefilled with ``base``'s settings; Start returns the config.
    ``keep``: settings the new run keeps where the form has no field for them (a sweep
    trial's sampled ones)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, base: TrainConfig, runs_dir: Optional[str] = None, title: str = "New run",
                 keep: Optional[dict[str, Any]] = None) -> None:
        super().__init__()
        self.base, self.runs_dir, self.title_text, self.keep = base, runs_dir, title, keep

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield RunForm(self.runs_dir, base=self.base, shape_open=True, keep=self.keep, id="form")
            yield Static(Text("enter or the button starts it; esc cancels", style="dim"), classes="dialog-hint")

    def on_mount(self) -> None:
        self.query_one(RunForm).border_title = Text(self.title_text)
        self.query_one("#f-epochs", Input).focus()

    @on(RunForm.Submitted)
    def _submitted(self, event: RunForm.Submitted) -> None:
        event.stop()
        self.dismiss(event.config)

    def action_cancel(self) -> None:
        self.dismiss(None)


def parse_extension(epochs: str, lr: str, done: int, mode: str = "restart") -> dict[str, Any]:
    """The resume overrides of an extension: ``{"epochs": N, "extend_schedule": mode}`` (N >
    ``done``) and, if given, ``{"lr": x}`` (the new schedule's peak, or with "keep" the old
    schedule's). Raises ConfigError with a message in the dialog's words."""
    try:
        n = int(epochs.strip().replace(",", ""))
    except ValueError:
        raise ConfigError(f"Epochs must be a whole number larger than {done} (got {epochs.strip()!r})") from None
    if n <= done:
        raise ConfigError(f"Epochs must be larger than the {done} the run has done (got {n})")
    out: dict[str, Any] = {"epochs": n, "extend_schedule": mode}
    if lr.strip():
        try:
            out["lr"] = float(lr.strip())
        except ValueError:
            raise ConfigError(f"LR must be a number such as 0.01, or blank for the default (got {lr.strip()!r})") from None
    try:
        from engine.config import make_config

        make_config("tiny", **{k: v for k, v in out.items() if k != "extend_schedule"})  # the usual limits
    except ConfigError as e:
        raise ConfigError(in_form_words(str(e))[0]) from None
    return out


SCHEDULE_CHOICES = [("a new schedule from a peak LR (restart)", "restart"), ("the old schedule, exactly (keep)", "keep")]


class ExtendRunScreen(ModalScreen[Optional[dict]]):
    """Continue a run past its planned epochs: the total epochs, the schedule of the added
    epochs (a new one from a peak LR, by default a tenth of the run's; or the old one), and
    what the next epoch will get (its LR, mixup), computed by the engine as the run will."""

    BINDINGS = [Binding("escape", "cancel", "Cancel"), *FIELD_TABS]

    def __init__(self, run_id: str, checkpoint: str, done: int, planned: Optional[int],
                 config: Optional[dict] = None, steps_per_epoch: int = 100) -> None:
        super().__init__()
        self.run_id, self.checkpoint, self.done, self.planned = run_id, checkpoint, done, planned
        self.stored = _config_of(config)
        self.steps_per_epoch = steps_per_epoch

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(Text.assemble(("Extend ", "bold"), (self.run_id, "bold"),
                                       f": it has done {self.done} of {self.planned or '?'} epochs."), id="extend-what")
            yield Static(network_line(self.stored), id="extend-shape")
            with Grid(id="extend-grid"):
                yield Label("Epochs")
                yield Input(value=str(max(self.done + 1, 2 * (self.planned or self.done))), id="x-epochs", compact=True)
                yield Label("Schedule")
                yield Select(SCHEDULE_CHOICES, value="restart", allow_blank=False, id="x-mode", compact=True)
                yield Label("Peak LR", id="x-lr-label")
                yield Input(value="", id="x-lr", compact=True)
            yield Static("", id="extend-next")
            with Horizontal(id="extend-go"):
                yield Button("Continue training", variant="primary", id="x-start", compact=True)
            yield Static("", id="extend-error")
            yield Static(Text("resumes from " + self.checkpoint + " (an older checkpoint than the run's last "
                              "continues in a new run folder); esc cancels", style="dim"), classes="dialog-hint")

    def on_mount(self) -> None:
        self.query_one("#x-epochs", Input).focus()
        self._preview()

    @property
    def mode(self) -> str:
        value = self.query_one("#x-mode", Select).value
        return value if isinstance(value, str) else "restart"

    @on(Input.Changed)
    @on(Select.Changed)
    def _preview(self) -> None:
        """The LR field's meaning and default, and what the next epoch will get."""
        from engine.schedule import EXTEND_PEAK_FRACTION, describe_extension, plan_extension

        stored, keep = self.stored, self.mode == "keep"
        self.query_one("#x-lr-label", Label).update("LR" if keep else "Peak LR")
        lr_field = self.query_one("#x-lr", Input)
        if stored is not None:
            default = stored.lr if keep or stored.schedule == "constant" else stored.lr * EXTEND_PEAK_FRACTION
            lr_field.placeholder = (f"the run's {stored.lr:g}" if keep or stored.schedule == "constant"
                                    else f"{default:.3g}: a tenth of the run's {stored.lr:g}")
        note = self.query_one("#extend-next", Static)
        try:
            out = parse_extension(self.query_one("#x-epochs", Input).value, lr_field.value, self.done, self.mode)
            if stored is None:
                raise ConfigError("the run's settings are unreadable")
            cfg = stored.replace(**plan_extension(stored, self.done, out["epochs"], self.mode, out.get("lr"))).validate()
        except ConfigError:
            note.update("")
            return
        note.update(Text("then: " + describe_extension(cfg, self.done, self.steps_per_epoch)))
        self.query_one("#extend-error", Static).update("")

    @on(Button.Pressed, "#x-start")
    @on(Input.Submitted)
    def submit(self) -> None:
        try:
            out = parse_extension(self.query_one("#x-epochs", Input).value, self.query_one("#x-lr", Input).value,
                                  self.done, self.mode)
        except ConfigError as e:
            self.query_one("#extend-error", Static).update(Text(str(e), style="bold red"))
            return
        self.dismiss(out)

    def action_cancel(self) -> None:
        self.dismiss(None)


def network_line(config: Optional[TrainConfig]) -> Text:
    """The network a resumed run keeps, in one line, and that a resume cannot change it."""
    text = Text("network ", style="bold")
    if config is None:
        text.append("unknown (the run's settings are unreadable)")
    else:
        shape = config.net_shape()
        text.append(f"{shape.describe()}, {shape.params():,} parameters")
    text.append("; a resumed run keeps its network (n in the browser starts a new run with another)", style="dim")
    return text


def _config_of(config: Optional[dict]) -> Optional[TrainConfig]:
    try:
        return TrainConfig.from_dict(config or {}).validate() if config else None
    except (ConfigError, TypeError):
        return None


class TextPromptScreen(ModalScreen[Optional[str]]):
    """One line of text (a run's new name, its note): enter returns it, escape None.
    ``check(text)`` returns a problem to show under the field (the dialog stays), or None."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, value: str = "", *, placeholder: str = "", hint: str = "",
                 check=None) -> None:
        super().__init__()
        self.title_text, self.value, self.placeholder, self.hint, self.check = title, value, placeholder, hint, check

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(Text(self.title_text, style="bold"), id="prompt-title")
            yield Input(value=self.value, placeholder=self.placeholder, id="prompt-input", compact=True)
            yield Static("", id="prompt-error")
            yield Static(Text((self.hint + "; " if self.hint else "") + "enter saves, esc cancels", style="dim"),
                         classes="dialog-hint")

    def on_mount(self) -> None:
        self.query_one("#prompt-input", Input).focus()

    @on(Input.Submitted)
    def submit(self) -> None:
        text = self.query_one("#prompt-input", Input).value
        problem = self.check(text) if self.check is not None else None
        if problem:
            self.query_one("#prompt-error", Static).update(Text(problem, style="bold red"))
            return
        self.dismiss(text)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ConfirmScreen(ModalScreen[bool]):
    """A yes/no question; ``y`` (or the button) says yes, ``n`` and escape no. No is the
    default: enter on the focused No button does nothing harmful."""

    BINDINGS = [Binding("escape,n", "answer(False)", "No"), Binding("y", "answer(True)", "Yes")]

    def __init__(self, question: str, yes: str = "Delete") -> None:
        super().__init__()
        self.question, self.yes = question, yes

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(Text(self.question), id="confirm-question")
            with Horizontal(id="confirm-buttons"):
                yield Button("No, keep it (n)", id="confirm-no", compact=True)
                yield Button(f"{self.yes} (y)", variant="error", id="confirm-yes", compact=True)

    def on_mount(self) -> None:
        self.query_one("#confirm-no", Button).focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "confirm-yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
