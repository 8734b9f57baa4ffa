"""The checkpoint browser: every run and checkpoint, evaluation, predictions, resume.

The table is built from the small JSON files of the run folders (no torch, so it
opens at once). Evaluation runs in a thread worker with a progress bar; its
result is stored beside the checkpoint (``NAME.eval.json``) so the table shows
the test accuracy next time without recomputing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import (
    Button,
    DataTable,
    Footer,
    Header,
    Input,
    ProgressBar,
    Static,
    TabbedContent,
    TabPane,
)

from engine.runs import CheckpointInfo, RunSummary, complete_result, latest_evaluation

from ..formatting import fmt_pct, format_size
from ..messages import StartRun
from ..widgets.evaluation import Gallery, confusion_renderable

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
]
SORT_KEYS = [key for key, _, _ in COLUMNS]
MARK = "◆"  # a run marked for comparison


def _pct(v: Optional[float]) -> str:
    return fmt_pct(v, 2, missing="", sign=False)


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else "…" + text[-(n - 1):]


def _data_name(data: Optional[str]) -> str:
    """A data source's file name (the Run tab shows the whole path)."""
    if not data:
        return ""
    return Path(data).name if "/" in data or "\\" in data else data


def flatten(runs: list[RunSummary]) -> list[Row]:
    """One row per checkpoint, carrying its run."""
    return [Row(run, c) for run in runs for c in run.checkpoints]


class BrowserScreen(Screen):
    """Runs and checkpoints; evaluate, look at predictions, resume or start from one."""

    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("e", "evaluate", "Evaluate"),
        Binding("w", "wrong", "Misclassified", tooltip="Gallery: show only the misclassified images"),
        Binding("w", "all_images", "All images", tooltip="Gallery: show every image again"),
        Binding("k", "next_class", "Class", show=False),
        Binding("a", "all_classes", "All classes", show=False),
        Binding("r", "resume", "Resume"),
        Binding("n", "new_run", "New run"),
        Binding("s", "sort", "Sort", show=False, tooltip="Sort by the next column (S: reverse the order)"),
        Binding("S", "reverse_sort", "Reverse sort", show=False),
        Binding("space", "mark", "Mark", tooltip="Mark or unmark this run for comparison"),
        Binding("v", "compare", "Compare", tooltip="Compare the marked runs: curves and settings"),
        Binding("f5", "reload", "Reload", show=False),
    ]

    def __init__(self, runs_dir: Optional[Path] = None, select: Optional[str] = None) -> None:
        super().__init__()
        self.runs_dir = Path(runs_dir) if runs_dir else None
        self.select = select  # a run folder or checkpoint to put the cursor on
        self.rows: list[Row] = []
        self.sort_key = "run"
        self.sort_reverse = True
        self.evaluating: Optional[str] = None
        self.fresh: Optional[str] = None  # the checkpoint whose evaluation is on screen, just computed
        self.marked: list[str] = []  # run folders marked for comparison, in the order marked
        self.gallery_of: Optional[str] = None  # the checkpoint whose predictions the gallery shows
        self.gallery_loading: Optional[str] = None

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
                with Horizontal(id="eval-bar"):
                    yield Input(placeholder="test data: blank = the checkpoint's own test split, or a path / cifar10",
                                id="eval-data")
                    yield Button("Evaluate", id="eval-go", variant="primary")
                yield ProgressBar(id="eval-progress", show_eta=True, classes="-hidden")
                with VerticalScroll():
                    yield Static("Press e to evaluate the selected checkpoint.", id="eval-summary")
                    yield Static("", id="eval-matrix")
            with TabPane("Gallery", id="tab-gallery"):
                yield Gallery(id="gallery")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "checkpoints"
        table = self.query_one(DataTable)
        self._columns(table)
        self.action_reload()
        table.focus()

    def _columns(self, table: DataTable) -> None:
        """The column titles, the sorted one with an arrow (▼ descending, ▲ ascending)."""
        table.clear(columns=True)
        table.add_column(" ", key="mark")
        for key, title, _ in COLUMNS:
            arrow = (" ▼" if self.sort_reverse else " ▲") if key == self.sort_key else ""
            table.add_column(Text(title + arrow, style="bold" if arrow else ""), key=key)

    # ----------------------------------------------------------------------- table
    def _root(self) -> Path:
        from engine.runs import default_runs_dir

        return self.runs_dir or default_runs_dir()

    def action_reload(self) -> None:
        from engine.runs import list_runs

        root = self._root()
        self.rows = flatten(list_runs(root))
        where = f"{len(self.rows)} checkpoint(s) in {root}.  s sorts, space marks runs, v compares them."
        if not self.rows:
            where = (f"No checkpoints in {root} yet. Train a run first "
                     "(cifar-tui train --data synthetic --preset tiny).")
        self.query_one("#browser-where", Static).update(Text(where))
        self._fill()

    def _fill(self, keep: Optional[str] = None, show_eval: bool = True) -> None:
        table = self.query_one(DataTable)
        keyfn = next(fn for key, _, fn in COLUMNS if key == self.sort_key)
        self.rows.sort(key=keyfn, reverse=self.sort_reverse)
        self._columns(table)
        for r in self.rows:
            c = r.ckpt
            test = _pct(c.test_acc) if c.test_acc is not None else ("stale" if c.test_stale else "")
            table.add_row(
                Text(MARK if r.run.path in self.marked else "", style="bold cyan"),
                Text(_short(r.run.run_id, 24)), Text(c.name),
                "" if c.epoch is None else str(c.epoch) + ("+" if c.step_in_epoch else ""),
                _pct(c.val_acc), test, format_size(c.size), Text(_short(_data_name(r.run.data), 16)), key=r.path,
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

    def action_sort(self) -> None:
        """Sort by the next column."""
        i = SORT_KEYS.index(self.sort_key) if self.sort_key in SORT_KEYS else -1
        self.sort_by(SORT_KEYS[(i + 1) % len(SORT_KEYS)])
        self._say_sort()

    def action_reverse_sort(self) -> None:
        self.sort_by(self.sort_key)
        self._say_sort()

    def _say_sort(self) -> None:
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
        run, c = row.run, row.ckpt
        text = Text()
        text.append(f"{c.path}\n", style="bold")
        text.append(f"run {run.run_id} ({run.status})  created {run.created or '?'}  device {run.device or '?'}\n")
        if run.params is not None:
            text.append(f"model SEResNet width {run.width}, {run.params:,} parameters\n")
        if run.data:
            text.append(f"data {run.data}: {run.train_images or '?'} train / {run.val_images or '?'} val / "
                        f"{run.test_images or '?'} test images\n")
        text.append(f"checkpoint: epoch {c.epoch}" + (f" + {c.step_in_epoch} steps" if c.step_in_epoch else "")
                    + f" of {run.epochs or '?'}, val acc {_pct(c.val_acc) or '-'}%")
        if c.test_acc is not None:
            text.append(f", test acc {_pct(c.test_acc)}% on {c.test_source}")
        elif c.test_stale:
            text.append(", test acc: stale (the file changed since it was evaluated; press e)", style="yellow")
        text.append("\n\nsettings: ", style="bold")
        text.append(", ".join(f"{k}={v}" for k, v in run.config.items() if k not in ("runs_dir",)))
        text.append("\n\nkeys: e evaluate   r resume or extend this run   n new run with these settings   "
                    "space mark for comparison   v compare", style="dim")
        self.query_one("#run-info", Static).update(text)
        # a stored evaluation is shown without recomputing
        if self.evaluating is None and show_eval and row.path != self.fresh:
            self.fresh = None
            self._show_stored(row)

    def _show_stored(self, row: Row) -> None:
        stored = latest_evaluation(row.path)
        summary = self.query_one("#eval-summary", Static)
        matrix = self.query_one("#eval-matrix", Static)
        if stored is None or not complete_result(stored.result):
            stale = latest_evaluation(row.path, include_stale=True) is not None
            summary.update("The stored evaluation is damaged: press e to evaluate again." if stored is not None else
                           "The stored evaluation is of an earlier version of this file: press e to evaluate it."
                           if stale else "Not evaluated yet: press e (or the button) to evaluate on the test split.")
            matrix.update("")
            return
        self._render_result(stored.result, stored=True)

    # ------------------------------------------------------------------ evaluation
    def action_evaluate(self) -> None:
        row = self.current()
        if row is None:
            self.notify("No checkpoint selected.", severity="warning")
            return
        if self.evaluating is not None:
            self.notify("An evaluation is already running.", severity="warning")
            return
        self.evaluating = row.path
        data = self.query_one("#eval-data", Input).value.strip() or None
        self.query_one("#browser-tabs", TabbedContent).active = "tab-eval"
        self.query_one("#eval-summary", Static).update(Text(f"Evaluating {row.path} ..."))
        self.query_one("#eval-matrix", Static).update("")
        bar = self.query_one(ProgressBar)
        bar.update(total=None, progress=0)
        bar.remove_class("-hidden")
        self._evaluate(row.path, data)

    @on(Button.Pressed, "#eval-go")
    def _eval_button(self) -> None:
        self.action_evaluate()

    @on(Input.Submitted, "#eval-data")
    def _eval_submit(self) -> None:
        self.action_evaluate()

    @work(thread=True, exclusive=True, group="evaluate")
    def _evaluate(self, path: str, data: Optional[str]) -> None:
        def progress(done: int, total: int) -> None:
            self.app.call_from_thread(self.query_one(ProgressBar).update, total=total, progress=done)

        try:
            from engine.checkpoint import CheckpointError
            from engine.config import ConfigError
            from engine.data import DataError
            from engine.evaluate import evaluate_checkpoint

            try:
                result = evaluate_checkpoint(path, data, progress=progress)
            except (CheckpointError, DataError, ConfigError, OSError) as e:
                self.app.call_from_thread(self._eval_failed, str(e))
                return
        except Exception as e:  # the browser must keep working whatever happens
            self.app.call_from_thread(self._eval_failed, f"{type(e).__name__}: {e}")
            return
        self.app.call_from_thread(self._eval_done, path, result)

    def _eval_failed(self, message: str) -> None:
        self.evaluating = None
        self.query_one(ProgressBar).add_class("-hidden")
        self.query_one("#eval-summary", Static).update(Text(f"Evaluation failed: {message}", style="bold red"))
        self.notify(message, title="Evaluation failed", severity="error", timeout=10, markup=False)

    def _eval_done(self, path: str, evaluation) -> None:
        """``evaluation``: an :class:`engine.evaluate.CheckpointEvaluation`."""
        self.evaluating = None
        self.fresh = path
        self._render_result(evaluation.to_dict())
        r = evaluation.result
        self.query_one(Gallery).set_data(evaluation.images.x, evaluation.images.y.tolist(), r.predictions.tolist(),
                                         r.confidence.tolist(), evaluation.classes)
        self.gallery_of = path
        self.action_reload_keep(path)

    def action_reload_keep(self, path: str) -> None:
        from engine.runs import list_runs

        self.rows = flatten(list_runs(self._root()))
        self._fill(keep=path, show_eval=False)

    def _render_result(self, result: dict, stored: bool = False) -> None:
        from rich.console import Group

        head = Text()
        head.append(f"{100 * result['accuracy']:.2f}% accuracy", style="bold")
        head.append(f", loss {result['loss']:.4f}, on {result['images']:,} images of {result['data_source']}")
        if stored:
            gallery = "the Gallery tab shows its predictions" if isinstance(result.get("predictions"), list) \
                else "press e to evaluate again and fill the gallery"
            head.append(f"\n(stored result from {result.get('evaluated', 'earlier')}; {gallery})", style="dim")
        for note in result.get("notes") or []:
            head.append(f"\nnote: {note}", style="yellow")
        self.query_one(ProgressBar).add_class("-hidden")
        self.query_one("#eval-summary", Static).update(head)
        self.query_one("#eval-matrix", Static).update(
            Group(Text("confusion matrix: rows are true classes, columns predicted; acc% per class", style="dim"),
                  confusion_renderable(result)))

    # --------------------------------------------------------------------- gallery
    def action_wrong(self) -> None:
        self._set_only_wrong(True)

    def action_all_images(self) -> None:
        self._set_only_wrong(False)

    def _set_only_wrong(self, on: bool) -> None:
        g = self.query_one(Gallery)
        g.only_wrong = on
        g.refresh_tiles()
        self.query_one("#browser-tabs", TabbedContent).active = "tab-gallery"
        self.refresh_bindings()  # w now does the other thing
        self._fill_gallery_from_stored()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("wrong", "all_images"):
            return (action == "all_images") == self.query_one(Gallery).only_wrong
        return True

    @on(TabbedContent.TabActivated, "#browser-tabs")
    def _tab(self, event: TabbedContent.TabActivated) -> None:
        if event.pane.id == "tab-gallery":
            self._fill_gallery_from_stored()

    def _fill_gallery_from_stored(self) -> None:
        """Show the selected checkpoint's stored predictions in the gallery (the images are
        read again from its data, in a thread), without evaluating again."""
        row = self.current()
        if row is None or self.evaluating is not None or row.path in (self.gallery_of, self.gallery_loading):
            return
        stored = latest_evaluation(row.path)
        if stored is None or not stored.has_predictions:
            return
        self.gallery_loading = row.path
        self.query_one(Gallery).show_note(f"Loading the images of the stored evaluation ({stored.source})...")
        self._load_gallery(row.path, stored.result)

    @work(thread=True, exclusive=True, group="gallery")
    def _load_gallery(self, path: str, result: dict) -> None:
        try:
            from engine.data import DataError
            from engine.evaluate import gallery_from_stored

            try:
                images, preds, conf, classes = gallery_from_stored(result)
            except (DataError, OSError) as e:
                self.app.call_from_thread(self._gallery_failed, path, str(e))
                return
        except Exception as e:  # the browser must keep working whatever happens
            self.app.call_from_thread(self._gallery_failed, path, f"{type(e).__name__}: {e}")
            return
        self.app.call_from_thread(self._gallery_done, path, images, preds, conf, classes)

    def _gallery_done(self, path: str, images, preds, conf, classes) -> None:
        self.gallery_loading = None
        if self.evaluating is not None:
            return  # a fresh evaluation is on its way
        self.gallery_of = path
        self.query_one(Gallery).set_data(images.x, images.y.tolist(), preds, conf, classes)

    def _gallery_failed(self, path: str, message: str) -> None:
        self.gallery_loading = None
        self.query_one(Gallery).show_note(f"The stored predictions cannot be shown: {message}")

    def action_next_class(self) -> None:
        g = self.query_one(Gallery)
        if not g.class_names:
            self.notify("Evaluate a checkpoint first (e).", severity="warning")
            return
        g.class_filter = 0 if g.class_filter is None else (g.class_filter + 1) % len(g.class_names)
        g.refresh_tiles()
        self.query_one("#browser-tabs", TabbedContent).active = "tab-gallery"

    def action_all_classes(self) -> None:
        g = self.query_one(Gallery)
        g.class_filter = None
        g.refresh_tiles()

    # ------------------------------------------------------------- resume / new run
    def action_resume(self) -> None:
        """Resume a checkpoint; one of a run that finished its epochs: extend it (a dialog)."""
        row = self.current()
        if row is None:
            return
        planned, c = row.run.epochs, row.ckpt
        if planned is not None and c.epoch is not None and c.epoch >= planned and not c.step_in_epoch:
            from .newrun import ExtendRunScreen

            lr = row.run.config.get("lr")

            def chosen(overrides: Optional[dict]) -> None:
                if overrides:
                    self.post_message(StartRun(None, resume=c.path, resume_overrides=overrides))

            self.app.push_screen(ExtendRunScreen(row.run.run_id, c.path, c.epoch, planned,
                                                 lr if isinstance(lr, (int, float)) else None), chosen)
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

    def marked_runs(self) -> list[RunSummary]:
        runs = {r.run.path: r.run for r in self.rows}
        return [runs[p] for p in self.marked if p in runs]

    def action_compare(self) -> None:
        from .compare import CompareScreen

        runs = self.marked_runs()
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
