"""The start screen: a form for a new run, and the earlier runs under the runs folder."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from engine.runs import RunSummary, default_runs_dir, list_runs

from ..formatting import STATUS_STYLE, fmt_pct
from ..messages import OpenBrowser, StartRun, WatchRun
from ..widgets.runform import RunForm
from ..widgets.sweepform import SweepForm

# the run list's columns, most useful first: at 80 columns the last ones may be cut
RUN_COLUMNS = ("Run", "Status", "Best val", "Epochs", "Preset", "Data")


# the run list's keys: letters, so they act (and the footer shows them) only while the list
# has the focus; in the form they are text
LIST_ACTIONS = ("watch", "checkpoints", "refresh")
HINT_IN_LIST = "[b]enter[/b]/[b]w[/b] watch   [b]c[/b] checkpoints   [b]r[/b] refresh   [b]tab[/b] back to the form"
HINT_IN_FORM = "[b]tab[/b] to this list, then [b]enter[/b]/[b]w[/b] watch   [b]c[/b] checkpoints   [b]r[/b] refresh"


class StartScreen(Screen):
    BINDINGS = [
        Binding("ctrl+s", "start", "Start"),
        Binding("ctrl+q", "app.quit", "Quit", priority=True),
        Binding("w", "watch", "Watch run"),
        Binding("c", "checkpoints", "Checkpoints"),
        Binding("r", "refresh", "Refresh"),
        Binding("f5", "reload", "Refresh", show=False),  # (anywhere, also in the form)
    ]

    def __init__(self, runs_dir: Optional[Path] = None) -> None:
        super().__init__()
        self.given_runs_dir = Path(runs_dir) if runs_dir else None
        self.runs_dir: Optional[Path] = self.given_runs_dir
        self.runs: list[RunSummary] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield RunForm(str(self.given_runs_dir) if self.given_runs_dir else None, detach_switch=True, id="form")
        yield SweepForm(str(self.given_runs_dir) if self.given_runs_dir else None, id="sweep-form")
        with Vertical(id="runs"):
            yield DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
            yield Static("", id="runs-empty")
            yield Static(HINT_IN_FORM, id="runs-hint")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "new run"
        self.query_one("#form").border_title = "New run"
        table = self.query_one("#runs-table", DataTable)
        table.add_columns(*RUN_COLUMNS)
        if self.runs_dir is None:
            self.runs_dir = default_runs_dir()
        self.action_refresh()

    def on_screen_resume(self) -> None:
        """Back from a dashboard or the browser: the list again, read anew, with the focus
        (the keys its hint shows act at once)."""
        if self.is_mounted:
            self.action_refresh()
            if self.runs:
                self.query_one("#runs-table", DataTable).focus()

    @property
    def in_list(self) -> bool:
        focused = self.focused
        return focused is not None and focused.id == "runs-table"

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return not (action in LIST_ACTIONS and not self.in_list)

    def on_descendant_focus(self) -> None:
        self._focus_moved()

    def on_descendant_blur(self) -> None:
        self._focus_moved()

    def _focus_moved(self) -> None:
        self.query_one("#runs-hint", Static).update(HINT_IN_LIST if self.in_list else HINT_IN_FORM)
        self.refresh_bindings()

    # ------------------------------------------------------------------ form
    @property
    def form(self) -> RunForm:
        return self.query_one(RunForm)

    def read_form(self):
        return self.form.read()

    def show_error(self, message: str) -> None:
        self.form.show_error(message)

    def action_start(self) -> None:
        self.form.submit()

    @on(RunForm.Submitted)
    def _submitted(self, event: RunForm.Submitted) -> None:
        self.post_message(StartRun(event.config, can_go_back=True, detach=event.detach))

    # ------------------------------------------------------------------ runs
    def action_reload(self) -> None:
        self.action_refresh()

    def action_refresh(self) -> None:
        if self.runs_dir is None:
            return
        self.query_one("#runs").border_title = Text(f"Earlier runs in {self.runs_dir}")
        table = self.query_one("#runs-table", DataTable)
        table.clear()
        self.runs = list_runs(self.runs_dir)
        for r in self.runs:
            epochs = f"{r.epochs_done}/{r.epochs if r.epochs is not None else '?'}"
            table.add_row(Text(r.run_id), Text(r.status, style=STATUS_STYLE.get(r.status, "")),
                          fmt_pct(r.best_val_acc, 1), epochs, Text(r.preset or "?"), Text(_short_data(r.data)),
                          key=r.path)
        empty = self.query_one("#runs-empty", Static)
        empty.update("" if self.runs else "No runs yet. Fill in the form and start one.")
        empty.set_class(bool(self.runs), "-hidden")
        table.set_class(not self.runs, "-hidden")
        self.query_one("#runs-hint").set_class(not self.runs, "-hidden")
        self._show_data_of(self._selected_summary())

    def _selected_summary(self) -> Optional[RunSummary]:
        table = self.query_one("#runs-table", DataTable)
        if not self.runs or table.row_count == 0:
            return None
        return self.runs[min(max(table.cursor_row, 0), len(self.runs) - 1)]

    def _selected_run(self) -> Optional[Path]:
        r = self._selected_summary()
        return Path(r.path) if r is not None else None

    @on(DataTable.RowHighlighted, "#runs-table")
    def _row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_data_of(self._selected_summary())

    def _show_data_of(self, run: Optional[RunSummary]) -> None:
        """The highlighted run's whole data path, under the list (the column shows its file name)."""
        if run is not None and run.status == "damaged":  # why, in place of its data
            self.query_one("#runs").border_subtitle = Text(f"damaged: {run.reason}", style="magenta")
            return
        self.query_one("#runs").border_subtitle = Text(f"data: {run.data}") if run is not None and run.data else None

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


DATA_CHARS = 14  # the last column: at 80 columns every other one fits beside it


def _short_data(data: Optional[str]) -> str:
    """A data source in a few characters: a path's file name, cut to DATA_CHARS (the whole
    path is shown under the list for the highlighted run)."""
    if not data:
        return "?"
    name = Path(data).name if "/" in data or "\\" in data else data
    return name if len(name) <= DATA_CHARS else name[: DATA_CHARS - 1] + "…"
