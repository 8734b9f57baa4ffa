"""Dialogs of the checkpoint browser: a new run prefilled from a run's settings, and
extending a run that finished its epochs.

Both return what the user chose through :meth:`ModalScreen.dismiss` (None when
cancelled with escape); the browser turns it into a ``StartRun`` message.
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
