"""The start screen's Sweep form: a spec file and a trial count, as ``cifar-tui sweep
SPEC.toml --trials N`` takes them.

Start checks the spec (:func:`engine.sweep.load_spec`) and opens its study in a thread
(Optuna's import and the database take a moment); a bad spec or an unreachable storage
gets its one line under the form and nothing starts. Otherwise the form posts
:class:`~tui_trainer.messages.StartSweep` and the app opens the Sweep screen.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widget import Widget
from textual.widgets import Button, Input, Label, Static

from ..messages import StartSweep
from .runform import FIELD_TABS

DEFAULT_TRIALS = 20
MAX_TRIALS = 100_000  # as the CLI's --trials


def parse_trials(text: str) -> int:
    """The form's trial count; raises ValueError with the form's one line."""
    try:
        n = int(text.strip().replace(",", "").replace("_", ""))
    except ValueError:
        raise ValueError(f"Trials must be a whole number from 1 to {MAX_TRIALS:,} (got {text.strip()[:20]!r})") from None
    if not 1 <= n <= MAX_TRIALS:
        raise ValueError(f"Trials must be a whole number from 1 to {MAX_TRIALS:,} (got {n})")
    return n


class SweepForm(Widget):
    """Spec file, trial count, Start sweep; the study's runs go under ``runs_dir``."""

    BINDINGS = FIELD_TABS

    DEFAULT_CSS = """
    SweepForm { height: auto; border: round $primary; border-title-color: $text; padding: 0 1; }
    SweepForm #sweep-row { height: 1; }
    SweepForm Label { width: auto; height: 1; padding: 0 1 0 0; }
    SweepForm #s-spec-label { width: 9; }  /* (the run form's fields start in the same column) */
    SweepForm #s-spec { width: 1fr; }
    SweepForm #s-trials-label { padding: 0 1; }
    SweepForm #s-trials { width: 8; }
    SweepForm #s-start { width: auto; min-width: 13; margin: 0 0 0 1; }
    SweepForm #sweep-error { color: $error; height: auto; }
    """

    def __init__(self, runs_dir: Optional[str] = None, *, id: Optional[str] = None) -> None:  # noqa: A002
        super().__init__(id=id)
        self.runs_dir = runs_dir
        self.opening = False

    def compose(self) -> ComposeResult:
        with Horizontal(id="sweep-row"):
            yield Label("Spec", id="s-spec-label")
            yield Input(placeholder="a sweep spec file, e.g. lr-mixup.toml (README: Sweeps)", id="s-spec",
                        compact=True)
            yield Label("Trials", id="s-trials-label")
            yield Input(str(DEFAULT_TRIALS), id="s-trials", compact=True)
            yield Button("Start sweep", id="s-start", compact=True)
        yield Static("", id="sweep-error", classes="-hidden")

    def on_mount(self) -> None:
        self.border_title = "Sweep"

    @property
    def error(self) -> str:
        return str(self.query_one("#sweep-error", Static).render())

    def show_error(self, message: str) -> None:
        err = self.query_one("#sweep-error", Static)
        err.update(Text(message))
        err.set_class(not message, "-hidden")

    @on(Button.Pressed, "#s-start")
    @on(Input.Submitted, "#s-spec, #s-trials")
    def submit(self, event=None) -> None:
        if event is not None:
            event.stop()
        if self.opening:
            return
        spec = self.query_one("#s-spec", Input).value.strip()
        if not spec:
            self.show_error("Spec: give the sweep's spec file (TOML; the README's Sweeps has an example)")
            self.query_one("#s-spec", Input).focus()
            return
        try:
            trials = parse_trials(self.query_one("#s-trials", Input).value)
        except ValueError as e:
            self.show_error(str(e))
            self.query_one("#s-trials", Input).focus()
            return
        self.opening = True
        self.show_error("")
        self.query_one("#s-start", Button).disabled = True
        self._open(spec, trials)

    @work(thread=True, exclusive=True, group="sweep-open")
    def _open(self, spec_file: str, trials: int) -> None:
        """Check the spec and open its study (off the UI thread), then ask for the Sweep screen."""
        from engine.rundir import default_runs_dir
        from engine.sweep import SpecError, SweepError, default_storage, load_spec
        from engine.trials import Sweep

        try:
            spec = load_spec(Path(spec_file).expanduser())
            runs = Path(self.runs_dir).expanduser() if self.runs_dir else default_runs_dir()
            runner = Sweep(spec, default_storage(runs, spec.name), runs_dir=str(runs))
        except (SpecError, SweepError, OSError) as e:
            self.app.call_from_thread(self._opened, str(e).splitlines()[0] if str(e) else type(e).__name__)
            return
        self.app.call_from_thread(self._opened, None)
        self.post_message(StartSweep(runner, trials))

    def _opened(self, error: Optional[str]) -> None:
        self.opening = False
        self.query_one("#s-start", Button).disabled = False
        if error:
            self.show_error(error)
