"""A list of a run's checkpoints (``RUN_DIR/checkpoints/*.pt``).

Each row comes from the small ``.json`` written beside each ``.pt``; nothing is
loaded with torch here. (A fuller browser, with evaluation and resume, can grow
from this screen.)
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

KIND_ORDER = {"last": 0, "stop": 0, "best": 1, "manual": 2, "epoch": 3}


def list_checkpoints(run_dir: Path) -> list[dict[str, Any]]:
    """One dict per ``.pt`` in ``run_dir/checkpoints``, with the fields of its ``.json``."""
    folder = Path(run_dir) / "checkpoints"
    rows = []
    try:
        files = [p for p in folder.iterdir() if p.suffix == ".pt" and not p.name.startswith(".")]
    except OSError:
        return []
    for pt in files:
        info: dict[str, Any] = {}
        try:
            info = json.loads(pt.with_suffix(".json").read_text())
            if not isinstance(info, dict):
                info = {}
        except (OSError, ValueError):
            pass
        try:
            st = pt.stat()
            size, mtime = st.st_size, st.st_mtime
        except OSError:
            size, mtime = 0, 0.0
        kind = info.get("kind") or ("manual" if pt.name.startswith("manual") else pt.stem.split("-")[0])
        test_acc = None
        try:  # evaluations stored beside the checkpoint by `cifar-tui eval`: {source: {"accuracy": ...}}
            evals = json.loads(pt.with_name(pt.stem + ".eval.json").read_text())
            for result in evals.values() if isinstance(evals, dict) else ():
                if isinstance(result, dict) and isinstance(result.get("accuracy"), (int, float)):
                    test_acc = result["accuracy"]
        except (OSError, ValueError):
            pass
        rows.append({**info, "file": pt.name, "path": str(pt), "size": size, "mtime": mtime, "kind": kind,
                     "test_acc": test_acc})
    rows.sort(key=lambda r: (KIND_ORDER.get(r["kind"], 4), -(r.get("epoch") or 0), r["file"]))
    return rows


def _fmt_size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def _fmt_epoch(row: dict[str, Any]) -> str:
    epoch = row.get("epoch")
    if epoch is None:
        return "-"
    sie = row.get("step_in_epoch") or 0
    return f"{epoch} +{sie} steps" if sie else str(epoch)


def _fmt_saved(row: dict[str, Any]) -> str:
    saved = row.get("saved")
    if isinstance(saved, str) and saved:
        return saved.replace("T", " ")[:16]
    if row.get("mtime"):
        return _dt.datetime.fromtimestamp(row["mtime"]).strftime("%Y-%m-%d %H:%M")
    return "-"


class CheckpointScreen(Screen):
    DEFAULT_CSS = """
    CheckpointScreen #ckpt-where { padding: 0 1; height: auto; color: $text-muted; }
    CheckpointScreen DataTable { height: 1fr; }
    CheckpointScreen #ckpt-empty { padding: 1 2; height: auto; }
    """

    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("r", "refresh", "Refresh"),
    ]

    def __init__(self, run_dir: Path) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)
        self.rows: list[dict[str, Any]] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(f"Checkpoints in {self.run_dir / 'checkpoints'}", id="ckpt-where")
        table: DataTable = DataTable(id="ckpt-table", cursor_type="row", zebra_stripes=True)
        yield table
        yield Static("", id="ckpt-empty")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "checkpoints"
        table = self.query_one(DataTable)
        table.add_columns("File", "Kind", "Epoch", "Val acc", "Test acc", "Saved", "Size")
        self.action_refresh()
        table.focus()

    def action_refresh(self) -> None:
        table = self.query_one(DataTable)
        table.clear()
        self.rows = list_checkpoints(self.run_dir)
        for row in self.rows:
            val, test = row.get("val_acc"), row.get("test_acc")
            table.add_row(
                row["file"], row["kind"], _fmt_epoch(row), "-" if val is None else f"{100 * val:.1f}%",
                "-" if test is None else f"{100 * test:.1f}%", _fmt_saved(row), _fmt_size(row["size"]),
                key=row["file"],
            )
        empty = self.query_one("#ckpt-empty", Static)
        empty.update("" if self.rows else "No checkpoints yet: one is saved at the end of each epoch, or press s on the dashboard.")
        empty.display = not self.rows

    def action_back(self) -> None:
        self.dismiss()
