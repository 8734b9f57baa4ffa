"""The checkpoint browser: every run and checkpoint, evaluation, predictions, resume.

The table is built from the small JSON files of the run folders (no torch, so it
opens at once). Evaluation runs in a thread worker with a progress bar; its
result is stored beside the checkpoint (``NAME.eval.json``) so the table shows
the test accuracy next time without recomputing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

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

from ..formatting import format_size
from ..widgets.evaluation import Gallery, confusion_renderable

COLUMNS = [  # key, title, sort key of a row dict
    ("run", "Run", lambda r: r["run_id"]),
    ("data", "Data", lambda r: str(r["data"] or "")),
    ("ckpt", "Checkpoint", lambda r: r["name"]),
    ("epoch", "Ep", lambda r: r["epoch"] if r["epoch"] is not None else -1),
    ("val", "Val %", lambda r: r["val_acc"] if r["val_acc"] is not None else -1.0),
    ("test", "Test %", lambda r: r["test_acc"] if r["test_acc"] is not None else -1.0),
    ("size", "Size", lambda r: r["size"]),
]


def _pct(v: Optional[float]) -> str:
    return "" if v is None else f"{100 * v:.2f}"


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else "…" + text[-(n - 1):]


def flatten(runs: list[dict]) -> list[dict]:
    """One row per checkpoint, carrying its run's fields."""
    rows = []
    for run in runs:
        for c in run["checkpoints"]:
            rows.append({**c, "run_id": run["run_id"], "run_path": run["path"], "data": run["data"],
                         "preset": run["preset"], "created": run["created"], "run": run})
    return rows


class BrowserScreen(Screen):
    """Runs and checkpoints; evaluate, look at predictions, resume or start from one."""

    DEFAULT_CSS = """
    BrowserScreen #browser-where { height: auto; padding: 0 1; color: $text-muted; }
    BrowserScreen #browser-table { height: 40%; min-height: 5; }
    BrowserScreen TabbedContent { height: 1fr; }
    BrowserScreen TabPane { padding: 0 1; }
    BrowserScreen #eval-bar { height: auto; }
    BrowserScreen #eval-data { width: 1fr; }
    BrowserScreen #eval-go { min-width: 12; }
    BrowserScreen #eval-progress { height: 1; }
    BrowserScreen #eval-summary { height: auto; }
    BrowserScreen #run-info { height: auto; }
    """

    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("e", "evaluate", "Evaluate"),
        Binding("w", "wrong", "Misclassified"),
        Binding("k", "next_class", "Class"),
        Binding("a", "all_classes", "All classes", show=False),
        Binding("r", "resume", "Resume"),
        Binding("n", "new_run", "New run"),
        Binding("f5", "reload", "Reload", show=False),
    ]

    def __init__(self, runs_dir: Optional[Path] = None, select: Optional[str] = None) -> None:
        super().__init__()
        self.runs_dir = Path(runs_dir) if runs_dir else None
        self.select = select  # a run folder or checkpoint to put the cursor on
        self.rows: list[dict] = []
        self.sort_key = "run"
        self.sort_reverse = True
        self.evaluating: Optional[str] = None
        self.fresh: Optional[str] = None  # the checkpoint whose evaluation is on screen, just computed

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
                yield ProgressBar(id="eval-progress", show_eta=True)
                with VerticalScroll():
                    yield Static("Press e to evaluate the selected checkpoint.", id="eval-summary")
                    yield Static("", id="eval-matrix")
            with TabPane("Gallery", id="tab-gallery"):
                yield Gallery(id="gallery")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "checkpoints"
        table = self.query_one(DataTable)
        for key, title, _ in COLUMNS:
            table.add_column(title, key=key)
        self.action_reload()
        table.focus()

    # ----------------------------------------------------------------------- table
    def _root(self) -> Path:
        from engine.runs import default_runs_dir

        return self.runs_dir or default_runs_dir()

    def action_reload(self) -> None:
        from engine.runs import list_runs

        root = self._root()
        self.rows = flatten(list_runs(root))
        where = f"Runs in {root}: {len(self.rows)} checkpoint(s). Click a column title to sort."
        if not self.rows:
            where = (f"No checkpoints in {root} yet. Train a run first "
                     "(cifar-tui train --data synthetic --preset tiny).")
        self.query_one("#browser-where", Static).update(where)
        self._fill()

    def _fill(self, keep: Optional[str] = None, show_eval: bool = True) -> None:
        table = self.query_one(DataTable)
        keyfn = next(fn for key, _, fn in COLUMNS if key == self.sort_key)
        self.rows.sort(key=keyfn, reverse=self.sort_reverse)
        table.clear()
        for r in self.rows:
            table.add_row(
                _short(r["run_id"], 24), _short(str(r["data"] or ""), 14), r["name"],
                "" if r["epoch"] is None else str(r["epoch"]) + ("+" if r.get("step_in_epoch") else ""),
                _pct(r["val_acc"]), _pct(r["test_acc"]), format_size(r["size"]), key=r["path"],
            )
        target = keep or self._initial_target()
        if target is not None:
            for i, r in enumerate(self.rows):
                if r["path"] == target:
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
            if r["path"] == sel or (r["run_path"] == sel and r["name"] == "best.pt"):
                return r["path"]
        return next((r["path"] for r in self.rows if r["run_path"] == sel), None)

    @on(DataTable.HeaderSelected)
    def _sort(self, event: DataTable.HeaderSelected) -> None:
        self.sort_by(str(event.column_key.value))

    def sort_by(self, key: str) -> None:
        """Sort by a column (again on the same column: reverse the order)."""
        if key == self.sort_key:
            self.sort_reverse = not self.sort_reverse
        else:
            self.sort_key, self.sort_reverse = key, key in ("val", "test", "epoch", "run", "size")
        cur = self.current()
        self._fill(keep=cur["path"] if cur else None)

    def current(self) -> Optional[dict]:
        table = self.query_one(DataTable)
        if not self.rows or table.cursor_row is None or table.cursor_row >= len(self.rows):
            return None
        return self.rows[table.cursor_row]

    @on(DataTable.RowHighlighted)
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        row = self.current()
        if row is not None:
            self._show_run(row)

    def _show_run(self, row: Optional[dict], show_eval: bool = True) -> None:
        if row is None:
            return
        info = row["run"].get("config") or {}
        cfg = info.get("config") or {}
        text = Text()
        text.append(f"{row['path']}\n", style="bold")
        text.append(f"run {row['run_id']}  created {info.get('created', '?')}  device {info.get('device', '?')}\n")
        model = info.get("model") or {}
        if model:
            text.append(f"model {model.get('name')} width {model.get('width')}, {model.get('params', 0):,} parameters\n")
        data = info.get("data") or {}
        if data:
            text.append(f"data {data.get('source')}: {data.get('train_images', '?')} train / "
                        f"{data.get('val_images', '?')} val / {data.get('test_images', '?')} test images\n")
        epoch = row.get("epoch")
        text.append(f"checkpoint: epoch {epoch}" + (f" + {row['step_in_epoch']} steps" if row.get("step_in_epoch") else "")
                    + f" of {cfg.get('epochs', '?')}, val acc {_pct(row['val_acc']) or '-'}%"
                    + (f", test acc {_pct(row['test_acc'])}% on {row['test_source']}" if row.get("test_acc") is not None else "")
                    + "\n\n")
        text.append("settings: ", style="bold")
        text.append(", ".join(f"{k}={v}" for k, v in cfg.items() if k not in ("runs_dir",)))
        text.append("\n\nkeys: e evaluate   r resume this run   n new run with these settings", style="dim")
        self.query_one("#run-info", Static).update(text)
        # a stored evaluation is shown without recomputing
        if self.evaluating is None and show_eval and row["path"] != self.fresh:
            self.fresh = None
            self._show_stored(row)

    def _show_stored(self, row: dict) -> None:
        from engine.runs import read_eval_results

        stored = read_eval_results(Path(row["path"]))
        summary = self.query_one("#eval-summary", Static)
        matrix = self.query_one("#eval-matrix", Static)
        if not stored:
            summary.update("Not evaluated yet: press e (or the button) to evaluate on the test split.")
            matrix.update("")
            return
        source, result = list(stored.items())[-1]
        if isinstance(result, dict) and "confusion_matrix" in result:
            self._render_result(result, stored=True)

    # ------------------------------------------------------------------ evaluation
    def action_evaluate(self) -> None:
        row = self.current()
        if row is None:
            self.notify("No checkpoint selected.", severity="warning")
            return
        if self.evaluating is not None:
            self.notify("An evaluation is already running.", severity="warning")
            return
        self.evaluating = row["path"]
        data = self.query_one("#eval-data", Input).value.strip() or None
        self.query_one("#browser-tabs", TabbedContent).active = "tab-eval"
        self.query_one("#eval-summary", Static).update(f"Evaluating {row['path']} ...")
        self.query_one("#eval-matrix", Static).update("")
        self.query_one(ProgressBar).update(total=None, progress=0)
        self._evaluate(row["path"], data)

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
            except (CheckpointError, DataError, ConfigError) as e:
                self.app.call_from_thread(self._eval_failed, str(e))
                return
        except Exception as e:  # the browser must keep working whatever happens
            self.app.call_from_thread(self._eval_failed, f"{type(e).__name__}: {e}")
            return
        self.app.call_from_thread(self._eval_done, path, result)

    def _eval_failed(self, message: str) -> None:
        self.evaluating = None
        self.query_one(ProgressBar).update(total=1, progress=0)
        self.query_one("#eval-summary", Static).update(Text(f"Evaluation failed: {message}", style="bold red"))
        self.notify(message, title="Evaluation failed", severity="error", timeout=10)

    def _eval_done(self, path: str, result: dict) -> None:
        self.evaluating = None
        self.fresh = path
        images = result.pop("_images")
        preds = result.pop("_predictions")
        conf = result.pop("_confidence")
        self._render_result(result)
        gallery = self.query_one(Gallery)
        gallery.set_data(images.x, images.y.tolist(), preds.tolist(), conf.tolist(), result["classes"])
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
            head.append(f"\n(stored result from {result.get('evaluated', 'earlier')}; press e to evaluate again"
                        " and fill the gallery)", style="dim")
        for note in result.get("notes") or []:
            head.append(f"\nnote: {note}", style="yellow")
        self.query_one(ProgressBar).update(total=1, progress=1)
        self.query_one("#eval-summary", Static).update(head)
        self.query_one("#eval-matrix", Static).update(
            Group(Text("confusion matrix: rows are true classes, columns predicted; acc% per class", style="dim"),
                  confusion_renderable(result)))

    # --------------------------------------------------------------------- gallery
    def action_wrong(self) -> None:
        g = self.query_one(Gallery)
        g.only_wrong = not g.only_wrong
        g.refresh_tiles()
        self.query_one("#browser-tabs", TabbedContent).active = "tab-gallery"

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
        row = self.current()
        if row is None:
            return
        cfg = (row["run"].get("config") or {}).get("config") or {}
        planned = cfg.get("epochs")
        if planned is not None and row.get("epoch") is not None and row["epoch"] >= planned and not row.get("step_in_epoch"):
            self.notify(f"This run finished its {planned} epochs. Press n for a new run with its settings, or extend it: "
                        f"cifar-tui train --resume {row['path']} --epochs {planned * 2}", severity="warning", timeout=12)
            return
        start = getattr(self.app, "start_training", None)
        if start is not None:
            start(None, resume=row["path"], resume_overrides={}, can_go_back=True)

    def action_new_run(self) -> None:
        row = self.current()
        if row is None:
            return
        from engine.config import ConfigError, TrainConfig

        cfg = (row["run"].get("config") or {}).get("config") or {}
        try:
            config = TrainConfig.from_dict(cfg).validate()
        except (ConfigError, TypeError) as e:
            self.notify(f"The run's settings cannot be used: {e}", severity="error")
            return
        start = getattr(self.app, "start_training", None)
        if start is not None:
            start(config, can_go_back=True)

    def action_back(self) -> None:
        if len(self.app.screen_stack) > 1:
            self.app.pop_screen()
        else:
            self.app.exit()


__all__ = ["BrowserScreen", "flatten"]
