"""The start screen: a form for a new run, and the earlier runs under the runs folder."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Optional

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Vertical
from textual.screen import Screen
from textual.widgets import Button, DataTable, Footer, Header, Input, Label, Select, Static, Switch

from engine.config import PRESETS, ConfigError, make_config

DEFAULT_PRESET = "paper"
RECENT_SECONDS = 120  # a run whose metrics changed this recently is probably still going


# ---------------------------------------------------------------------- run list


def _last_state(metrics: Path) -> Optional[tuple[str, str]]:
    """The last StateChanged in a metrics file (reads only its tail)."""
    try:
        with open(metrics, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 16384))
            tail = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return None
    for line in reversed(tail.splitlines()):
        if '"StateChanged"' not in line:
            continue
        try:
            d = json.loads(line)
        except ValueError:
            continue
        return str(d.get("state", "")), str(d.get("reason", ""))
    return None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        d = json.loads(path.read_text())
        return d if isinstance(d, dict) else {}
    except (OSError, ValueError):
        return {}


def list_runs(runs_dir: Path, now: Optional[float] = None) -> list[dict[str, Any]]:
    """Run folders (those with a config.json) under ``runs_dir``, newest first."""
    now = time.time() if now is None else now
    out = []
    try:
        dirs = [d for d in Path(runs_dir).iterdir() if d.is_dir() and (d / "config.json").is_file()]
    except OSError:
        return []
    for d in dirs:
        info = _read_json(d / "config.json")
        cfg = info.get("config", {}) if isinstance(info.get("config"), dict) else {}
        last = _read_json(d / "checkpoints" / "last.json")
        best = _read_json(d / "checkpoints" / "best.json")
        metrics = d / "metrics.jsonl"
        st = _last_state(metrics)
        if st is None:
            status = "no events"
        elif st[0] == "finished":
            status = "stopped" if st[1].startswith("stopped") else "finished"
        elif st[0] == "failed":
            status = "failed"
        else:
            try:
                recent = now - metrics.stat().st_mtime < RECENT_SECONDS
            except OSError:
                recent = False
            # a writer holds <run>/.lock while it trains (engine.checkpoint.RunLock)
            status = "running" if recent or (d / ".lock").exists() else "interrupted"
        epochs = cfg.get("epochs")
        done = last.get("epoch")
        out.append({
            "run_dir": str(d),
            "run_id": info.get("run_id") or d.name,
            "preset": cfg.get("preset", "?"),
            "data": str(cfg.get("data", "?")),
            "epochs": f"{done if done is not None else 0}/{epochs if epochs is not None else '?'}",
            "best": best.get("val_acc"),
            "status": status,
            "created": info.get("created", ""),
        })
    out.sort(key=lambda r: (r["created"] or "", r["run_id"]), reverse=True)
    return out


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
    DEFAULT_CSS = """
    StartScreen #form {
        height: auto;
        border: round $primary;
        border-title-color: $text;
        padding: 0 1;
        grid-size: 4;
        grid-columns: 8 1fr 8 1fr;
        grid-rows: 3;
        grid-gutter: 0 1;
    }
    StartScreen #form Label { height: 3; content-align: left middle; width: 100%; }
    StartScreen #f-start { width: 100%; }
    StartScreen #form-error { color: $error; padding: 0 2; height: auto; }
    StartScreen #runs { height: 1fr; border: round $primary-darken-1; border-title-color: $text; }
    StartScreen #runs DataTable { height: 1fr; }
    StartScreen #runs-empty { padding: 0 1; color: $text-muted; height: auto; }
    StartScreen #runs-hint { padding: 0 1; color: $text-muted; height: 1; }
    """

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
        self.runs: list[dict[str, Any]] = []

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
            yield Label("")
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
        self.query_one("#form-error").display = False
        table = self.query_one("#runs-table", DataTable)
        table.add_columns("Run", "Preset", "Data", "Epochs", "Best val", "Status")
        if self.runs_dir is None:
            # the engine may import torch to answer: find the default folder off the UI thread
            self.query_one("#runs").border_title = "Earlier runs"
            self.run_worker(self._find_runs_dir, thread=True, name="runs-dir")
        else:
            self.action_refresh()

    def _find_runs_dir(self) -> None:
        try:
            from engine.runs import default_runs_dir  # torch-free, where the engine has it
        except ImportError:
            from engine.checkpoint import default_runs_dir

        path = default_runs_dir()
        self.app.call_from_thread(self._set_runs_dir, path)

    def _set_runs_dir(self, path: Path) -> None:
        self.runs_dir = Path(path)
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
        err.update(message)
        err.display = bool(message)

    @on(Button.Pressed, "#f-start")
    @on(Input.Submitted)
    def action_start(self) -> None:
        try:
            config = self.read_form()
        except ConfigError as e:
            self.show_error(str(e))
            return
        self.show_error("")
        self.app.start_training(config, can_go_back=True)

    # ------------------------------------------------------------------ runs
    def action_refresh(self) -> None:
        if self.runs_dir is None:
            return
        self.query_one("#runs").border_title = f"Earlier runs in {self.runs_dir}"
        table = self.query_one("#runs-table", DataTable)
        table.clear()
        self.runs = list_runs(self.runs_dir)
        for r in self.runs:
            best = "-" if r["best"] is None else f"{100 * r['best']:.1f}%"
            table.add_row(r["run_id"], r["preset"], r["data"], r["epochs"], best, r["status"], key=r["run_dir"])
        empty = self.query_one("#runs-empty", Static)
        empty.update("" if self.runs else "No runs yet. Fill in the form and start one.")
        empty.display = not self.runs
        table.display = bool(self.runs)
        self.query_one("#runs-hint").display = bool(self.runs)

    def _selected_run(self) -> Optional[Path]:
        table = self.query_one("#runs-table", DataTable)
        if not self.runs or table.row_count == 0:
            return None
        row = min(max(table.cursor_row, 0), len(self.runs) - 1)
        return Path(self.runs[row]["run_dir"])

    @on(DataTable.RowSelected, "#runs-table")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        self.app.open_watch(Path(str(event.row_key.value)), can_go_back=True)

    def action_watch(self) -> None:
        run = self._selected_run()
        if run is None:
            self.notify("No run selected.", severity="warning")
            return
        self.app.open_watch(run, can_go_back=True)

    def action_checkpoints(self) -> None:
        run = self._selected_run()
        if run is None:
            self.notify("No run selected.", severity="warning")
            return
        from .browser import BrowserScreen

        self.app.push_screen(BrowserScreen(Path(run).parent, select=str(run)))
