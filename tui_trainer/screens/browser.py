"""The checkpoint browser: every run and checkpoint, evaluation, predictions, resume.

The table is built from the small JSON files of the run folders (no torch, so it
opens at once). The Evaluation and Gallery tabs are panes with their own thread
workers (:mod:`tui_trainer.widgets.evaluation`); an evaluation's result is stored
beside the checkpoint (``NAME.eval.json``) so the table shows the test accuracy
next time without recomputing. The screen keeps the table and the keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, DataTable, Footer, Header, Input, Static, TabbedContent, TabPane

from engine.runs import CheckpointInfo, RunSummary
from engine.shape import NetShape

from ..formatting import fmt_pct, format_size
from ..messages import StartRun
from ..widgets.evaluation import EvaluationPane, Gallery
from .runedits import RunEdits

@dataclass(frozen=True)
class Row:
    """One checkpoint of the table, with its run."""

    run: RunSummary
    ckpt: CheckpointInfo

    @property
    def path(self) -> str:
        return self.ckpt.path


COLUMNS: list[tuple[str, str, Callable[[Row], Any]]] = [  # key, title, sort key; what matters first
    ("run", "Run", lambda r: r.run.run_id),
    ("ckpt", "Checkpoint", lambda r: r.ckpt.name),
    ("epoch", "Ep", lambda r: r.ckpt.epoch if r.ckpt.epoch is not None else -1),
    ("val", "Val %", lambda r: r.ckpt.val_acc if r.ckpt.val_acc is not None else -1.0),
    ("test", "Test %", lambda r: r.ckpt.test_acc if r.ckpt.test_acc is not None else -1.0),
    ("size", "Size", lambda r: r.ckpt.size),
    ("data", "Data", lambda r: r.run.data or ""),
    ("note", "Note", lambda r: r.run.note),
]
SORT_KEYS = [key for key, _, _ in COLUMNS]
MARK = "◆"  # a run marked for comparison


def _pct(v: Optional[float]) -> str:
    return fmt_pct(v, 2, missing="", sign=False)


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else "…" + text[-(n - 1):]


def _short_end(text: str, n: int) -> str:
    """The start of a text, cut with an ellipsis."""
    return text if len(text) <= n else text[: n - 1] + "…"


def _data_name(data: Optional[str]) -> str:
    """A data source's file name (the Run tab shows the whole path)."""
    if not data:
        return ""
    return Path(data).name if "/" in data or "\\" in data else data


def flatten(runs: list[RunSummary]) -> list[Row]:
    """One row per checkpoint, carrying its run."""
    return [Row(run, c) for run in runs for c in run.checkpoints]


def run_info(row: Row) -> Text:
    """The Run tab: the checkpoint, its run, its data and settings, and the keys."""
    run, c = row.run, row.ckpt
    text = Text()
    text.append(f"{c.path}\n", style="bold")
    if run.note:
        text.append("note: ", style="bold")
        text.append(f"{run.note}\n", style="italic")
    status = f"damaged: {run.reason}" if run.status == "damaged" else run.status
    text.append(f"run {run.run_id} ({status})  created {run.created or '?'}  device {run.device or '?'}\n")
    if run.params is not None or run.shape is not None:
        net = NetShape.from_record(run.shape).describe() if run.shape is not None else f"width {run.width}"
        text.append(f"model SEResNet {net}" + (f", {run.params:,} parameters\n" if run.params is not None else "\n"))
    if run.data:
        text.append(f"data {run.data}: {run.train_images or '?'} train / {run.val_images or '?'} val / "
                    f"{run.test_images or '?'} test images\n")
    if c.step_in_epoch and c.epoch is not None:
        text.append(f"checkpoint: in epoch {c.epoch + 1} of {run.epochs or '?'} (after {c.step_in_epoch} of its steps)")
    else:
        text.append(f"checkpoint: epoch {c.epoch} of {run.epochs or '?'}")
    text.append(f", val acc {_pct(c.val_acc) or '-'}%")
    if c.test_acc is not None:
        text.append(f", test acc {_pct(c.test_acc)}% on {c.test_source}")
    elif c.test_stale:
        text.append(", test acc: stale (the file changed since it was evaluated; press e)", style="yellow")
    text.append("\n\nsettings: ", style="bold")
    text.append(", ".join(f"{k}={v}" for k, v in run.config.items() if k not in ("runs_dir",)))
    text.append("\n\nkeys: e evaluate   r resume or extend this run   n new run with these settings   "
                "space mark for comparison   v compare   f2 rename   t note   d delete the run   "
                "ctrl+r/f5 refresh", style="dim")
    return text


class BrowserScreen(RunEdits, Screen):
    """Runs and checkpoints; evaluate, look at predictions, resume or start from one."""

    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("e", "evaluate", "Evaluate"),
        Binding("w", "only_wrong(True)", "Misclassified", tooltip="Gallery: show only the misclassified images"),
        Binding("w", "only_wrong(False)", "All images", tooltip="Gallery: show every image again"),
        Binding("k", "next_class", "Class", show=False),
        Binding("a", "all_classes", "All classes", show=False),
        Binding("r", "resume", "Resume"),
        Binding("n", "new_run", "New run"),
        Binding("s", "sort(True)", "Sort", show=False, tooltip="Sort by the next column (S: reverse the order)"),
        Binding("S", "sort(False)", "Reverse sort", show=False),
        Binding("space", "mark", "Mark", tooltip="Mark or unmark this run for comparison"),
        Binding("v", "compare", "Compare", tooltip="Compare the marked runs: curves and settings"),
        Binding("ctrl+r", "refresh", "Refresh", tooltip="Read the runs again (also f5; done on coming back here)"),
        Binding("f5", "refresh", "Refresh", show=False),
        Binding("f2", "rename", "Rename", show=False, tooltip="Rename the run"),
        Binding("t", "note", "Note", show=False, tooltip="Write a note on the run"),
        Binding("d", "delete", "Delete", show=False, tooltip="Delete the run (never a running one)"),
    ]

    def __init__(self, runs_dir: Optional[Path] = None, select: Optional[str] = None) -> None:
        super().__init__()
        self.runs_dir = Path(runs_dir) if runs_dir else None
        self.select = select  # a run folder or checkpoint to put the cursor on
        self.rows: list[Row] = []
        self.sort_key = "run"
        self.sort_reverse = True
        self.marked: list[str] = []  # run folders marked for comparison, in the order marked
        self._resumed = False
        self.evaluation = EvaluationPane(self._evaluated, id="evaluation")
        self.gallery = Gallery(id="gallery")

    @property
    def evaluating(self) -> Optional[str]:
        """The checkpoint being evaluated, if any."""
        return self.evaluation.evaluating

    @property
    def gallery_of(self) -> Optional[str]:
        """The checkpoint whose predictions the gallery shows."""
        return self.gallery.of

    # ----------------------------------------------------------------------- layout
    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="browser-where")
        yield DataTable(id="browser-table", cursor_type="row", zebra_stripes=True)
        with TabbedContent(id="browser-tabs"):
            with TabPane("Run", id="tab-run"):
                with VerticalScroll():
                    yield Static("Select a checkpoint.", id="run-info")
            with TabPane("Evaluation", id="tab-eval"):
                yield self.evaluation
            with TabPane("Gallery", id="tab-gallery"):
                yield self.gallery
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "checkpoints"
        self.action_reload()
        self.query_one(DataTable).focus()

    def on_screen_resume(self) -> None:
        """Back from a dashboard, a dialog or the comparison: the runs may have moved on
        (a run finished, an extension trained): read them again."""
        if self._resumed:
            self.action_refresh()
        self._resumed = True  # (the first resume is the first showing: on_mount has read them)

    def action_refresh(self, select_run: Optional[str] = None) -> None:
        """Read the runs again, the cursor kept on the same checkpoint (or, ``select_run``,
        on that run's)."""
        cur = self.current()
        if select_run is not None:
            self.select = select_run
        self.action_reload(keep=cur.path if cur is not None and select_run is None else None, show_eval=False)

    # ----------------------------------------------------------------------- table
    def action_reload(self, keep: Optional[str] = None, show_eval: bool = True) -> None:
        """Read the runs again (``keep``: the checkpoint to keep the cursor on)."""
        from engine.runs import default_runs_dir, list_runs

        root = self.runs_dir or default_runs_dir()
        self.rows = flatten(list_runs(root))
        where = f"{len(self.rows)} checkpoint(s) in {root}.  s sorts, space marks runs, v compares them."
        if not self.rows:
            where = (f"No checkpoints in {root} yet. Train a run first "
                     "(cifar-tui train --data synthetic --preset tiny).")
        self.query_one("#browser-where", Static).update(Text(where))
        self._fill(keep, show_eval)

    def _fill(self, keep: Optional[str] = None, show_eval: bool = True) -> None:
        """The table, sorted; the sorted column's title with an arrow (▼ descending, ▲ ascending)."""
        table = self.query_one(DataTable)
        keyfn = next(fn for key, _, fn in COLUMNS if key == self.sort_key)
        self.rows.sort(key=keyfn, reverse=self.sort_reverse)
        table.clear(columns=True)
        table.add_column(" ", key="mark")
        for key, title, _ in COLUMNS:
            arrow = (" ▼" if self.sort_reverse else " ▲") if key == self.sort_key else ""
            table.add_column(Text(title + arrow, style="bold" if arrow else ""), key=key)
        for r in self.rows:
            c = r.ckpt
            test = _pct(c.test_acc) if c.test_acc is not None else ("stale" if c.test_stale else "")
            table.add_row(
                Text(MARK if r.run.path in self.marked else "", style="bold cyan"),
                Text(_short(r.run.run_id, 24)), Text(c.name),
                c.epoch_label, _pct(c.val_acc), test, format_size(c.size), Text(_short(_data_name(r.run.data), 16)),
                Text(_short_end(r.run.note, 16), style="italic"), key=r.path,
            )
        target = keep or self._initial_target()
        if target is not None:
            for i, r in enumerate(self.rows):
                if r.path == target:
                    table.move_cursor(row=i)
                    break
        if self.rows:
            self._show_run(self.current(), show_eval=show_eval)

    def _initial_target(self) -> Optional[str]:
        if not self.select:
            return None
        sel = str(Path(self.select))
        self.select = None
        for r in self.rows:  # prefer the run's best.pt, then any of its checkpoints
            if r.path == sel or (r.run.path == sel and r.ckpt.path == str(r.run.run_dir.best_checkpoint)):
                return r.path
        return next((r.path for r in self.rows if r.run.path == sel), None)

    @on(DataTable.HeaderSelected)
    def _sort(self, event: DataTable.HeaderSelected) -> None:
        if str(event.column_key.value) in SORT_KEYS:
            self.sort_by(str(event.column_key.value))

    def action_sort(self, next_column: bool) -> None:
        """Sort by the next column, or (not ``next_column``) reverse the order."""
        i = SORT_KEYS.index(self.sort_key) if self.sort_key in SORT_KEYS else -1
        self.sort_by(SORT_KEYS[(i + 1) % len(SORT_KEYS)] if next_column else self.sort_key)
        title = next(t for k, t, _ in COLUMNS if k == self.sort_key)
        self.notify(f"sorted by {title}, {'descending' if self.sort_reverse else 'ascending'}", timeout=2)

    def sort_by(self, key: str) -> None:
        """Sort by a column (again on the same column: reverse the order)."""
        if key == self.sort_key:
            self.sort_reverse = not self.sort_reverse
        else:
            self.sort_key, self.sort_reverse = key, key in ("val", "test", "epoch", "run", "size")
        cur = self.current()
        self._fill(keep=cur.path if cur else None)

    def current(self) -> Optional[Row]:
        table = self.query_one(DataTable)
        if not self.rows or table.cursor_row is None or table.cursor_row >= len(self.rows):
            return None
        return self.rows[table.cursor_row]

    @on(DataTable.RowHighlighted)
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        row = self.current()
        if row is not None:
            self._show_run(row)

    def _show_run(self, row: Optional[Row], show_eval: bool = True) -> None:
        if row is None:
            return
        self.query_one("#run-info", Static).update(run_info(row))
        if row.run.test_images == 0 and show_eval:  # data without a test split: its validation images
            self.evaluation.choose_split("val")
        if show_eval:  # a stored evaluation is shown without recomputing
            self.evaluation.show_checkpoint(row.path)

    # ------------------------------------------------------------------ evaluation
    def action_evaluate(self) -> None:
        row = self.current()
        if row is None:
            self.notify("No checkpoint selected.", severity="warning")
            return
        if self.evaluating is not None:
            self.notify("An evaluation is already running.", severity="warning")
            return
        self.query_one("#browser-tabs", TabbedContent).active = "tab-eval"
        self.gallery.cancel_loading()
        self.evaluation.evaluate(row.path)

    @on(Button.Pressed, "#eval-go")
    @on(Input.Submitted, "#eval-data")
    def _eval_asked(self) -> None:
        self.action_evaluate()

    def _evaluated(self, path: str, evaluation) -> None:
        """Its predictions in the gallery, its test accuracy in the table."""
        self.gallery.show_evaluation(path, evaluation)
        self.action_reload(keep=path, show_eval=False)

    # --------------------------------------------------------------------- gallery
    def action_only_wrong(self, on: bool) -> None:
        self.gallery.set_filter(only_wrong=on)
        self.query_one("#browser-tabs", TabbedContent).active = "tab-gallery"
        self.refresh_bindings()  # w now does the other thing
        self._fill_gallery()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "only_wrong":  # w shows what it will do now
            return bool(parameters and parameters[0]) != self.gallery.only_wrong
        return True

    @on(TabbedContent.TabActivated, "#browser-tabs")
    def _tab(self, event: TabbedContent.TabActivated) -> None:
        self.set_class(event.pane.id == "tab-gallery", "-gallery")  # (the table gives the gallery room)
        if event.pane.id == "tab-gallery":
            self._fill_gallery()

    def _fill_gallery(self) -> None:
        """The selected checkpoint's stored predictions in the gallery (unless an evaluation runs)."""
        row = self.current()
        if row is not None and self.evaluating is None:
            self.gallery.show_stored(row.path)

    def action_next_class(self) -> None:
        if not self.gallery.next_class():
            self.notify("Evaluate a checkpoint first (e).", severity="warning")
            return
        self.query_one("#browser-tabs", TabbedContent).active = "tab-gallery"

    def action_all_classes(self) -> None:
        self.gallery.set_filter(class_filter=None)

    # ------------------------------------------------------------- resume / new run
    def action_resume(self) -> None:
        """Resume a checkpoint; one of a run that finished its epochs: extend it (a dialog)."""
        row = self.current()
        if row is None:
            return
        planned, c = row.run.epochs, row.ckpt
        if planned is not None and c.epoch is not None and c.epoch >= planned and not c.step_in_epoch:
            from .newrun import ExtendRunScreen

            def chosen(overrides: Optional[dict]) -> None:
                if overrides:
                    self.post_message(StartRun(None, resume=c.path, resume_overrides=overrides))

            spe = c.global_step // c.epoch if c.global_step and c.epoch else 100
            self.app.push_screen(ExtendRunScreen(row.run.run_id, c.path, c.epoch, planned, row.run.config, spe),
                                 chosen)
            return
        self.post_message(StartRun(None, resume=c.path, resume_overrides={}))

    def action_new_run(self) -> None:
        """The new-run form, prefilled with this run's settings (nothing starts until Start)."""
        row = self.current()
        if row is None:
            return
        from engine.config import ConfigError, TrainConfig

        from .newrun import NewRunScreen

        try:
            config = TrainConfig.from_dict(row.run.config).validate()
        except (ConfigError, TypeError) as e:
            self.notify(f"The run's settings cannot be used: {e}", severity="error", markup=False)
            return

        def chosen(new: Optional[TrainConfig]) -> None:
            if new is not None:
                self.post_message(StartRun(new))

        runs_dir = str(self.runs_dir) if self.runs_dir else None
        self.app.push_screen(NewRunScreen(config, runs_dir, title=f"New run with the settings of {row.run.run_id}"),
                             chosen)

    # ------------------------------------------------------------------- compare
    def action_mark(self) -> None:
        row = self.current()
        if row is None:
            return
        run = row.run.path
        if run in self.marked:
            self.marked.remove(run)
        else:
            self.marked.append(run)
        self._fill(keep=row.path, show_eval=False)
        n = len(self.marked)
        self.notify(f"{n} run(s) marked" + ("; v compares them" if n >= 2 else "; mark another, then v"), timeout=3)

    def action_compare(self) -> None:
        from .compare import CompareScreen

        by_path = {r.run.path: r.run for r in self.rows}
        runs = [by_path[p] for p in self.marked if p in by_path]
        if len(runs) < 2:
            self.notify("Mark two or more runs with space, then press v.", severity="warning")
            return
        self.app.push_screen(CompareScreen(runs))

    def action_back(self) -> None:
        if len(self.app.screen_stack) > 1:
            self.app.pop_screen()
        else:
            self.app.exit()


__all__ = ["BrowserScreen", "flatten"]
