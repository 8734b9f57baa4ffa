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
from textual.widgets import Button, Input, Label, Static

from engine.config import ConfigError, TrainConfig

from ..widgets.runform import RunForm, in_form_words


class NewRunScreen(ModalScreen[Optional[TrainConfig]]):
    """The new-run form, prefilled with ``base``'s settings; Start returns the config."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, base: TrainConfig, runs_dir: Optional[str] = None, title: str = "New run") -> None:
        super().__init__()
        self.base, self.runs_dir, self.title_text = base, runs_dir, title

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield RunForm(self.runs_dir, base=self.base, id="form")
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


def parse_extension(epochs: str, lr: str, done: int) -> dict[str, Any]:
    """The resume overrides of an extension: ``{"epochs": N}`` (N > ``done``) and, if
    given, ``{"lr": x}``. Raises ConfigError with a message in the dialog's words."""
    try:
        n = int(epochs.strip().replace(",", ""))
    except ValueError:
        raise ConfigError(f"Epochs must be a whole number larger than {done} (got {epochs.strip()!r})") from None
    if n <= done:
        raise ConfigError(f"Epochs must be larger than the {done} the run has done (got {n})")
    out: dict[str, Any] = {"epochs": n}
    if lr.strip():
        try:
            out["lr"] = float(lr.strip())
        except ValueError:
            raise ConfigError(f"LR must be a number such as 0.01, or blank to keep the run's (got {lr.strip()!r})") from None
    try:
        from engine.config import make_config

        make_config("tiny", **out)  # the same limits as everywhere else
    except ConfigError as e:
        raise ConfigError(in_form_words(str(e))[0]) from None
    return out


class ExtendRunScreen(ModalScreen[Optional[dict]]):
    """Continue a run past its planned epochs: the total epochs (and optionally a new peak
    learning rate, recorded in the run's resume history)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, run_id: str, checkpoint: str, done: int, planned: Optional[int], lr: Optional[float]) -> None:
        super().__init__()
        self.run_id, self.checkpoint, self.done, self.planned, self.lr = run_id, checkpoint, done, planned, lr

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(Text.assemble(("Extend ", "bold"), (self.run_id, "bold"),
                                       f": it has done {self.done} of {self.planned or '?'} epochs."), id="extend-what")
            with Grid(id="extend-grid"):
                yield Label("Epochs")
                yield Input(value=str(max(self.done + 1, 2 * (self.planned or self.done))), id="x-epochs", compact=True)
                yield Label("LR")
                yield Input(value="", placeholder=f"keep ({self.lr})" if self.lr is not None else "keep",
                            id="x-lr", compact=True)
            with Horizontal(id="extend-go"):
                yield Button("Continue training", variant="primary", id="x-start", compact=True)
            yield Static("", id="extend-error")
            yield Static(Text("resumes from " + self.checkpoint + " (an older checkpoint than the run's last "
                              "continues in a new run folder); esc cancels", style="dim"), classes="dialog-hint")

    def on_mount(self) -> None:
        self.query_one("#x-epochs", Input).focus()

    @on(Button.Pressed, "#x-start")
    @on(Input.Submitted)
    def submit(self) -> None:
        try:
            out = parse_extension(self.query_one("#x-epochs", Input).value, self.query_one("#x-lr", Input).value,
                                  self.done)
        except ConfigError as e:
            self.query_one("#extend-error", Static).update(Text(str(e), style="bold red"))
            return
        self.dismiss(out)

    def action_cancel(self) -> None:
        self.dismiss(None)


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
