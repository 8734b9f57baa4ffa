"""The Sweep screen: a sweep's trials as they are trained, one after another, by an
:class:`engine.trials.Sweep` in a thread worker.

The table (number, state, the sampled settings, parameters, best validation accuracy,
epochs, time) is refreshed when a trial starts or finishes and after each epoch; the best
completed trial is highlighted. The plot overlays each trial's validation accuracy per
epoch. Keys: ``x`` stops the sweep after this trial, ``k`` prunes the running trial,
``q`` stops now (the trial saves a checkpoint and the next start of the same command
resumes it) and quits once it is saved.
"""

from __future__ import annotations

from typing import Optional

from rich.text import Text
from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static
from textual.worker import Worker, WorkerState

from ..exitcodes import EXIT_FAILED, EXIT_OK
from ..formatting import SWEEP_COLUMNS, sweep_best, sweep_trial_cells
from .compare import CompareRunsPlot

def trial_cells(row: dict, keys: list[str], best: Optional[float]) -> list[Text]:
    cells, style = sweep_trial_cells(row, keys, best)
    return [Text(c, style=style) for c in cells]


class SweepScreen(Screen):
    """The trials of one sweep, trained by ``runner`` until the study holds ``trials``."""

    BINDINGS = [Binding("x", "stop_after", "Stop after this trial"),
                Binding("k", "prune", "Prune the running trial"),
                Binding("q", "quit_sweep", "Quit (resume later)")]

    def __init__(self, runner, trials: int) -> None:
        super().__init__()
        self.runner, self.trials = runner, trials
        self.rows: list[dict] = []
        self.keys: list[str] = []
        self.quitting = False
        self.finished = False
        self.error: Optional[str] = None
        self.failed = False

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="sweep-status")
        yield DataTable(id="sweep-trials", zebra_stripes=True, cursor_type="row")
        yield Static(Text("Validation accuracy % per epoch, one curve per trial", style="bold"))
        yield CompareRunsPlot("val acc", "val_acc", True, id="sweep-plot")
        yield Footer()

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
        series = [(f"#{r['number']}", list(range(1, len(r["curve"]) + 1)), [100 * v for v in r["curve"]])
                  for r in rows if r.get("curve")]
        self.query_one("#sweep-plot", CompareRunsPlot).set_series(series)
        self._show_status()

    def _show_status(self) -> None:
        done = sum(1 for r in self.rows if r["state"] in ("complete", "pruned"))
        running = [r["number"] for r in self.rows if r["state"] == "running"]
        text = Text(f"{done} of {self.trials} trials done")
        if running and not self.finished:
            text.append(f"   training trial {', '.join(map(str, running))}")
        if self.finished:
            text.append("   the sweep is over: q quits", style="bold")
        elif self.runner.stopping:
            text.append("   stopping after this trial", style="yellow")
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
        if self.quitting:
            self.app.exit(EXIT_FAILED if self.failed else EXIT_OK)

    def _post_rows_here(self) -> None:
        from engine.trials import summary_rows

        try:
            self.show_rows(summary_rows(self.runner.study))
        except Exception:  # noqa: BLE001
            self._show_status()

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

    def action_quit_sweep(self) -> None:
        if self.finished:
            self.app.exit(EXIT_FAILED if self.failed else EXIT_OK)
            return
        self.quitting = True
        self.runner.interrupt()
        self.notify("saving the running trial; the next start of the same command resumes it")


class SweepApp(App):
    TITLE = "cifar-tui sweep"

    def __init__(self, runner, trials: int) -> None:
        super().__init__()
        self.runner, self.trials = runner, trials

    def on_mount(self) -> None:
        self.push_screen(SweepScreen(self.runner, self.trials))


def run_sweep_app(runner, trials: int) -> int:
    """The Sweep screen until the user quits; the exit code (0, or 1 if the sweep failed)."""
    app = SweepApp(runner, trials)
    code = app.run()
    return code if isinstance(code, int) else EXIT_OK
