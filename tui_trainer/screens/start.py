"""The start screen: a form for a new run, and the earlier runs under the runs folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Vertical
from textual.screen import Screen
from textual.widgets import Button, DataTable, Footer, Header, Input, Label, Select, Static, Switch
from rich.text import Text

from engine.config import PRESETS, ConfigError, make_config
from engine.runs import RunSummary, default_runs_dir, list_runs

from ..formatting import fmt_pct
from ..messages import OpenBrowser, StartRun, WatchRun

DEFAULT_PRESET = "paper"


# ------------------------------------------------------------------------- form


def parse_form(data: str, preset: Any, epochs: str, width: str, mixup: bool, runs_dir: Optional[str]):
    """Build a validated TrainConfig from the form's text; raises ConfigError with a one-line message."""
    if not isinstance(preset, str) or preset not in PRESETS:
        raise ConfigError(f"choose a preset: {', '.join(PRESETS)}")
    try:
        n_epochs = int(epochs.strip())
    except ValueError:
        raise ConfigError(f"--epochs must be a whole number of at least 1 (got {epochs.strip()!r})") from None
    try:
        w = float(width.strip())
    except ValueError:
        raise ConfigError(f"--width must be a positive number such as 1.0 or 0.25 (got {width.strip()!r})") from None
    return make_config(preset, data=data.strip(), epochs=n_epochs, width=w, mixup=bool(mixup), runs_dir=runs_dir)


class StartScreen(Screen):
    BINDINGS = [
        Binding("ctrl+s", "start", "Start"),
        Binding("ctrl+q", "app.quit", "Quit", priority=True),
        Binding("w", "watch", "Watch run"),
        Binding("c", "checkpoints", "Checkpoints"),
        Binding("r", "refresh", "Refresh"),
    ]

    def __init__(self, runs_dir: Optional[Path] = None) -> None:
        super().__init__()
        self.given_runs_dir = Path(runs_dir) if runs_dir else None
        self.runs_dir: Optional[Path] = self.given_runs_dir
        self.runs: list[RunSummary] = []

    def compose(self) -> ComposeResult:
        p = PRESETS[DEFAULT_PRESET]
        yield Header()
        with Grid(id="form"):
            yield Label("Data")
            yield Input(value="cifar10", placeholder="cifar10, synthetic or a path", id="f-data")
            yield Label("Preset")
            yield Select([(n, n) for n in PRESETS], value=DEFAULT_PRESET, allow_blank=False, id="f-preset")
            yield Label("Epochs")
            yield Input(value=str(p["epochs"]), id="f-epochs")
            yield Label("Width")
            yield Input(value=str(p["width"]), id="f-width")
            yield Label("Mixup")
            yield Switch(value=bool(p["mixup"]), id="f-mixup")
            yield Label("Detach")
            yield Switch(value=False, id="f-detach", tooltip="Train in a background process of its own: it survives "
                         "closing the app, the terminal or the SSH session; the dashboard attaches to it")
            yield Static("Detach: the run trains in the background and outlives this terminal", id="f-detach-hint")
            yield Button("Start training", variant="primary", id="f-start")
        yield Static("", id="form-error")
        with Vertical(id="runs"):
            yield DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
            yield Static("", id="runs-empty")
            yield Static("[b]enter[/b]/[b]w[/b] watch   [b]c[/b] checkpoints   [b]r[/b] refresh   "
                         "[b]tab[/b] moves between the form and this list", id="runs-hint")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "new run"
        self.query_one("#form").border_title = "New run"
        self.query_one("#form-error").add_class("-hidden")
        table = self.query_one("#runs-table", DataTable)
        table.add_columns("Run", "Preset", "Data", "Epochs", "Best val", "Status")
        if self.runs_dir is None:
            self.runs_dir = default_runs_dir()
        self.action_refresh()

    def on_screen_resume(self) -> None:
        if self.is_mounted:
            self.action_refresh()

    # ------------------------------------------------------------------ form
    @on(Select.Changed, "#f-preset")
    def _preset_changed(self, event: Select.Changed) -> None:
        p = PRESETS.get(event.value) if isinstance(event.value, str) else None
        if p is None:
            return
        self.query_one("#f-epochs", Input).value = str(p["epochs"])
        self.query_one("#f-width", Input).value = str(p["width"])
        self.query_one("#f-mixup", Switch).value = bool(p["mixup"])

    def read_form(self):
        return parse_form(
            self.query_one("#f-data", Input).value,
            self.query_one("#f-preset", Select).value,
            self.query_one("#f-epochs", Input).value,
            self.query_one("#f-width", Input).value,
            self.query_one("#f-mixup", Switch).value,
            str(self.given_runs_dir) if self.given_runs_dir else None,
        )

    def show_error(self, message: str) -> None:
        err = self.query_one("#form-error", Static)
        err.update(Text(message))
        err.set_class(not message, "-hidden")

    @on(Button.Pressed, "#f-start")
    @on(Input.Submitted)
    def action_start(self) -> None:
        try:
            config = self.read_form()
        except ConfigError as e:
            self.show_error(str(e))
            return
        self.show_error("")
        self.post_message(StartRun(config, can_go_back=True, detach=self.query_one("#f-detach", Switch).value))

    # ------------------------------------------------------------------ runs
    def action_refresh(self) -> None:
        if self.runs_dir is None:
            return
        self.query_one("#runs").border_title = Text(f"Earlier runs in {self.runs_dir}")
        table = self.query_one("#runs-table", DataTable)
        table.clear()
        self.runs = list_runs(self.runs_dir)
        for r in self.runs:
            epochs = f"{r.epochs_done}/{r.epochs if r.epochs is not None else '?'}"
            table.add_row(Text(r.run_id), Text(r.preset or "?"), Text(_short_data(r.data)), epochs,
                          fmt_pct(r.best_val_acc, 1), Text(r.status), key=r.path)
        empty = self.query_one("#runs-empty", Static)
        empty.update("" if self.runs else "No runs yet. Fill in the form and start one.")
        empty.set_class(bool(self.runs), "-hidden")
        table.set_class(not self.runs, "-hidden")
        self.query_one("#runs-hint").set_class(not self.runs, "-hidden")

    def _selected_run(self) -> Optional[Path]:
        table = self.query_one("#runs-table", DataTable)
        if not self.runs or table.row_count == 0:
            return None
        row = min(max(table.cursor_row, 0), len(self.runs) - 1)
        return Path(self.runs[row].path)

    @on(DataTable.RowSelected, "#runs-table")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        self.post_message(WatchRun(Path(str(event.row_key.value))))

    def action_watch(self) -> None:
        run = self._selected_run()
        if run is None:
            self.notify("No run selected.", severity="warning")
            return
        self.post_message(WatchRun(run))

    def action_checkpoints(self) -> None:
        run = self._selected_run()
        if run is None:
            self.notify("No run selected.", severity="warning")
            return
        self.post_message(OpenBrowser(run.parent, select=str(run)))


def _short_data(data: Optional[str]) -> str:
    """A data source in a few characters: a path's file name."""
    if not data:
        return "?"
    return Path(data).name if "/" in data or "\\" in data else data
