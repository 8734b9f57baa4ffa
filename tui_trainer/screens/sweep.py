"""The Sweep screen: a sweep's trials as they are trained, one after another, by an
:class:`engine.trials.Sweep` in a thread worker.

The table (number, state, the sampled settings, parameters, best validation accuracy,
epochs, time) is refreshed when a trial starts or finishes and after each epoch; the best
completed trial is highlighted; ``o`` (or a click on a column's header) sorts it. Below,
each trial's validation accuracy per epoch (pruned trials grey; the table's ``#`` column
is the legend) and the trials' best accuracy against one searched setting (``s`` cycles
the setting). Keys: ``w`` the running trial's live dashboard (attached as ``cifar-tui
watch`` attaches; ``q`` or ``esc`` comes back), ``c`` the selected trial's run in the
checkpoint browser, ``n`` a new run from the best trial's settings (the new-run form,
prefilled as ``cifar-tui sweep --best`` prints them), ``x`` stops the sweep after this
trial, ``k`` prunes the running trial, ``q`` stops now (the trial saves a checkpoint and
the next start of the same command resumes it) and quits once it is saved.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.reactive import var
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static
from textual.worker import Worker, WorkerState

from ..bridge import AttachSource
from ..exitcodes import EXIT_FAILED, EXIT_OK
from ..formatting import SWEEP_COLUMNS, fmt_pct, sweep_best, sweep_trial_cells
from ..messages import OpenBrowser, StartRun
from .dashboard import DashboardScreen
from .sweepplots import SettingPlot, TrialCurves, trial_style

SORTS = ("#", "state", "best val", "params", "time")  # the columns o cycles through
DESCENDING = ("best val",)  # sorted best first
STATE_ORDER = ("running", "queued", "complete", "pruned", "interrupted", "failed", "infeasible")


def trial_cells(row: dict, keys: list[str], best: Optional[float]) -> list[Text]:
    """The row's cells; the ``#`` cell also carries the trial's curve marker in its colour."""
    cells, style = sweep_trial_cells(row, keys, best)
    out = [Text(c, style=style) for c in cells]
    (r, g, b), marker = trial_style(row["number"], row["state"])
    out[0].append(f" {marker}", style=f"bold rgb({r},{g},{b})")
    return out


def sort_value(row: dict, column: str, descending: bool) -> tuple:
    """A row's place when the table is sorted by ``column``: trials without a value last
    either way, ties by number."""
    if column == "#":
        v: Any = row["number"]
    elif column == "state":
        v = STATE_ORDER.index(row["state"]) if row["state"] in STATE_ORDER else len(STATE_ORDER)
    else:
        v = {"params": row.get("params_count"), "best val": row.get("value"), "epochs": row.get("epochs"),
             "time": row.get("seconds")}.get(column, row["params"].get(column))
    missing = v is None or v != v
    kind = 0 if isinstance(v, (int, float)) and not isinstance(v, bool) else 1
    value = (0 if missing else v) if kind == 0 else str(v)
    if descending and kind == 0:
        value = -value
    return missing, kind, value, row["number"]


class TrialDashboard(DashboardScreen):
    """The running trial's dashboard, attached to its run as ``cifar-tui watch`` attaches
    (its keys steer the trial); ``q`` (detach) and ``esc`` come back to the Sweep screen."""

    def action_detach(self) -> None:
        self.dismiss(None)

    async def action_quit(self) -> None:
        self.dismiss(None)


class SweepScreen(Screen):
    """The trials of one sweep, trained by ``runner`` until the study holds ``trials``."""

    narrow: var[bool] = var(False)  # a compact footer: every key fits at 80 columns

    BINDINGS = [
        Binding("q", "quit_sweep", "Quit", tooltip="Quit: the running trial saves a checkpoint and the same "
                "command resumes it"),
        Binding("x", "stop_after", "Stop", tooltip="Stop the sweep after the running trial"),
        Binding("k", "prune", "Prune", tooltip="Prune the running trial (it stops with a checkpoint, as pruned)"),
        Binding("w", "watch", "Watch", tooltip="The running trial's live dashboard (q or esc comes back here)"),
        Binding("c", "checkpoints", "Browse", tooltip="The selected trial's run in the checkpoint browser"),
        Binding("n", "new_run", "New run", tooltip="A new run from the best trial's settings (the new-run form, "
                "prefilled)"),
        Binding("o", "sort", "Sort", tooltip="Sort the trials by the next column: #, state, best val, params, "
                "time (or click a column's header; again reverses)"),
        Binding("s", "setting", "Setting", tooltip="The accuracy plot's next searched setting"),
        Binding("escape", "back", "Back", show=False, tooltip="Back to the start screen (once the sweep is over)"),
    ]

    def __init__(self, runner, trials: int, *, can_go_back: bool = False) -> None:
        super().__init__()
        self.runner, self.trials, self.can_go_back = runner, trials, can_go_back
        self.rows: list[dict] = []
        self.keys: list[str] = []
        self.sort_column, self.sort_descending = "#", False
        self.setting_index = 0
        self.quitting = False
        self.finished = False
        self.error: Optional[str] = None
        self.failed = False

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="sweep-body", classes="-keys-host"):  # the keys panel (?) lies over it
            yield Static("", id="sweep-status")
            yield DataTable(id="sweep-trials", zebra_stripes=True, cursor_type="row")
            with Horizontal(id="sweep-plots"):
                with Vertical():
                    yield Static(Text("Validation accuracy % per epoch", style="bold"), classes="sweep-title")
                    yield TrialCurves(id="sweep-plot")
                with Vertical():
                    yield Static("", id="setting-title", classes="sweep-title")
                    yield SettingPlot(id="setting-plot")
        yield Footer().data_bind(compact=SweepScreen.narrow)

    def on_resize(self, event) -> None:
        self.narrow = self.size.width < 100

    def on_mount(self) -> None:
        self.sub_title = f"sweep {self.runner.spec.name}: {self.trials} trials"
        self.runner.listeners.append(self._on_event)
        self.runner.on_trial = self._on_trial
        self._post_rows()
        self._run()

    # ------------------------------------------------------------------ the worker's side

    @work(thread=True, exclusive=True, group="sweep")
    def _run(self) -> int:
        return self.runner.run(self.trials)

    def _on_event(self, event) -> None:
        from engine import events as ev

        if isinstance(event, (ev.RunStarted, ev.EpochDone)):
            self._post_rows()

    def _on_trial(self, what: str, row: dict) -> None:
        self._post_rows()

    def _post_rows(self) -> None:
        """Read the study's trials (in the calling thread) and show them."""
        from engine.trials import summary_rows

        try:
            rows = summary_rows(self.runner.study)
        except Exception as e:  # noqa: BLE001 - a storage that went away: say so, keep the screen
            rows, self.error = self.rows, f"cannot read the study: {str(e).splitlines()[0][:200]}"
        try:
            self.app.call_from_thread(self.show_rows, rows)
        except RuntimeError:  # called from the app's own thread (on mount)
            self.show_rows(rows)

    # ------------------------------------------------------------------ the screen's side

    def show_rows(self, rows: list[dict]) -> None:
        self.rows = rows
        table = self.query_one("#sweep-trials", DataTable)
        selected = self.selected_number()
        keys = sorted({k for r in rows for k in r["params"]} | {p.name for p in self.runner.spec.search})
        if keys != self.keys or not table.columns:
            table.clear(columns=True)
            self.keys = keys
            for col in (*SWEEP_COLUMNS[:2], *keys, *SWEEP_COLUMNS[2:]):
                table.add_column(col, key=col)
        table.clear()
        best = sweep_best(rows)
        for r in rows:
            table.add_row(*trial_cells(r, keys, best), key=str(r["number"]))
        self._sort_table()
        if selected is not None and str(selected) in table.rows:
            table.move_cursor(row=table.get_row_index(str(selected)), animate=False)
        self.query_one("#sweep-plot", TrialCurves).set_trials(rows)
        self._draw_setting()
        self._show_status()

    def _sort_table(self) -> None:
        table = self.query_one("#sweep-trials", DataTable)
        if self.sort_column not in table.columns:
            self.sort_column, self.sort_descending = "#", False
        by_number = {r["number"]: r for r in self.rows}
        column, descending = self.sort_column, self.sort_descending

        def key(cell: Text) -> tuple:
            return sort_value(by_number[int(cell.plain.split()[0])], column, descending)

        table.sort("#", key=key)

    def _draw_setting(self) -> None:
        search = self.runner.spec.search
        title = self.query_one("#setting-title", Static)
        plot = self.query_one("#setting-plot", SettingPlot)
        if not search:
            title.update(Text("Best val acc %: no searched setting", style="bold"))
            plot.set_trials(None, [])
            return
        param = search[self.setting_index % len(search)]
        text = Text.assemble(("Best val acc % by ", "bold"), (param.name, "bold reverse"))
        if len(search) > 1:
            text.append("  s: next", style="dim")
        title.update(text)
        plot.set_trials(param, self.rows)

    @property
    def setting(self) -> Optional[str]:
        """The searched setting on the accuracy plot's x axis."""
        search = self.runner.spec.search
        return search[self.setting_index % len(search)].name if search else None

    def _show_status(self) -> None:
        done = sum(1 for r in self.rows if r["state"] in ("complete", "pruned"))
        running = [r["number"] for r in self.rows if r["state"] == "running"]
        text = Text(f"{done} of {self.trials} trials done")
        if running and not self.finished:
            text.append(f"   training trial {', '.join(map(str, running))}")
        if self.finished:
            text.append("   the sweep is over" + (": esc goes back" if self.can_go_back else ": q quits"),
                        style="bold")
        elif self.runner.stopping:
            text.append("   stopping after this trial", style="yellow")
        arrow = "↓" if self.sort_descending else "↑"
        text.append(f"   sorted by {self.sort_column} {arrow}", style="dim")
        if self.error:
            text.append(f"   {self.error}", style="red")
        self.query_one("#sweep-status", Static).update(text)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "sweep" or event.state not in (WorkerState.SUCCESS, WorkerState.ERROR):
            return
        self.finished = True
        if event.state == WorkerState.ERROR:
            self.error = str(event.worker.error).splitlines()[0][:300] if str(event.worker.error) else \
                type(event.worker.error).__name__
            self.failed = True
        self._post_rows_here()
        self.refresh_bindings()
        if self.quitting:
            self.app.exit(EXIT_FAILED if self.failed else EXIT_OK)

    def _post_rows_here(self) -> None:
        from engine.trials import summary_rows

        try:
            self.show_rows(summary_rows(self.runner.study))
        except Exception:  # noqa: BLE001
            self._show_status()

    def selected_number(self) -> Optional[int]:
        """The trial under the table's cursor."""
        table = self.query_one("#sweep-trials", DataTable)
        if not table.row_count:
            return None
        row_key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        return int(row_key.value) if row_key.value is not None else None

    def _row(self, number: Optional[int]) -> Optional[dict]:
        return next((r for r in self.rows if r["number"] == number), None)

    # ------------------------------------------------------------------ keys

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "back":
            if not self.can_go_back:
                return False
            return True if self.finished else None  # greyed while the sweep trains (the app says why)
        return True

    def back_blocked_reason(self) -> Optional[str]:
        """Why escape does nothing now, for the app to say; None when it goes back."""
        if self.can_go_back and not self.finished:
            return "The sweep is training: x stops it after this trial (q now, saved), then esc goes back."
        return None

    def action_back(self) -> None:
        if self.can_go_back and self.finished:
            self.dismiss(None)

    def action_sort(self) -> None:
        nxt = SORTS[(SORTS.index(self.sort_column) + 1) % len(SORTS)] if self.sort_column in SORTS else SORTS[0]
        self.sort_by(nxt)

    @on(DataTable.HeaderSelected, "#sweep-trials")
    def _header_clicked(self, event: DataTable.HeaderSelected) -> None:
        column = str(event.column_key.value)
        if column == self.sort_column:
            self.sort_by(column, not self.sort_descending)
        else:
            self.sort_by(column)

    def sort_by(self, column: str, descending: Optional[bool] = None) -> None:
        self.sort_column = column
        self.sort_descending = column in DESCENDING if descending is None else descending
        selected = self.selected_number()
        self._sort_table()
        table = self.query_one("#sweep-trials", DataTable)
        if selected is not None:
            table.move_cursor(row=table.get_row_index(str(selected)), animate=False)
        self._show_status()

    def action_setting(self) -> None:
        if not self.runner.spec.search:
            self.notify("This sweep searches no setting.", severity="warning")
            return
        self.setting_index = (self.setting_index + 1) % len(self.runner.spec.search)
        self._draw_setting()

    def action_stop_after(self) -> None:
        self.runner.stop_after_trial()
        self.notify("the sweep stops after this trial")
        self._show_status()

    def action_prune(self) -> None:
        if self.runner.watch is None:
            self.notify("no trial is running", severity="warning")
            return
        self.runner.prune_current()
        self.notify("pruning the running trial")

    def action_watch(self) -> None:
        """The live dashboard of the selected trial if it is running, else of this process's."""
        running = [r for r in self.rows if r["state"] == "running"]
        mine = getattr(self.runner.trainer, "run_dir", None)
        chosen = self._row(self.selected_number())
        if chosen is None or chosen["state"] != "running":
            chosen = next((r for r in running if mine and r.get("run_dir") == str(mine)), running[0] if running else None)
        if chosen is None:
            self.notify("No trial is running now; c opens a trial's run in the browser.", severity="warning")
            return
        if not chosen.get("run_dir"):
            self.notify(f"Trial {chosen['number']} is starting; its dashboard opens once it has a run folder.",
                        severity="warning")
            return
        self.app.push_screen(TrialDashboard(AttachSource(Path(chosen["run_dir"])), can_go_back=True))

    def action_checkpoints(self) -> None:
        row = self._row(self.selected_number())
        if row is None:
            self.notify("No trial selected.", severity="warning")
            return
        if not row.get("run_dir") or not Path(row["run_dir"]).is_dir():
            why = f" ({row['reason']})" if row.get("reason") else ""
            self.notify(f"Trial {row['number']} has no run folder{why}.", severity="warning", markup=False)
            return
        run = Path(row["run_dir"])
        self.post_message(OpenBrowser(run.parent, select=str(run)))

    def action_new_run(self) -> None:
        """The new-run form with the best trial's settings (those ``--best`` prints as flags)."""
        from engine.config import ConfigError, make_config
        from engine.trials import best_trial

        from .newrun import NewRunScreen

        top = best_trial(self.runner.study)
        if top is None:
            self.notify("No trial has completed yet.", severity="warning")
            return
        if not self.finished:
            self.notify("The sweep is still training: x stops it after this trial, then n starts a run from the "
                        "best trial's settings.", severity="warning", timeout=8)
            return
        spec = self.runner.spec
        settings = spec.settings(top["params"])
        try:
            base = make_config(spec.preset, **settings, runs_dir=self.runner.runs_dir, device=self.runner.device)
        except ConfigError as e:
            self.notify(f"The best trial's settings cannot be used: {e}", severity="error", markup=False)
            return

        def chosen(config) -> None:
            if config is not None:
                self.post_message(StartRun(config, can_go_back=True))

        title = f"New run with the settings of trial {top['number']} (best, {fmt_pct(top['value'], 2)})"
        self.app.push_screen(NewRunScreen(base, self.runner.runs_dir, title=title, keep=settings), chosen)

    def action_quit_sweep(self) -> None:
        if self.finished:
            self.app.exit(EXIT_FAILED if self.failed else EXIT_OK)
            return
        self.quitting = True
        self.runner.interrupt()
        self.notify("saving the running trial; the next start of the same command resumes it")
