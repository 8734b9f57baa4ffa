"""The start screen: the runs list at 80x24, the runs folder, and the new-run form's checks."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

from textual.app import App
from textual.widgets import DataTable, Input, Select, Switch

from engine import events as ev
from tui_trainer.app import CifarTuiApp
from tui_trainer.messages import StartRun
from tui_trainer.screens import StartScreen
from tui_trainer.widgets.runform import RunForm, in_form_words, parse_form
from ui_support import form_values as values, wait_for


def run(coro):
    return asyncio.run(coro)


def fake_run(runs: Path, name: str, *, outcome: str = "completed", val: float = 0.5, data: str = "synthetic",
             epochs: int = 4, done: int = 4) -> Path:
    d = runs / name
    (d / "checkpoints").mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"run_id": name, "created": name, "data": {"source": data},
                                               "config": {"preset": "tiny", "data": data, "epochs": epochs}}))
    for kind in ("last", "best"):
        (d / "checkpoints" / f"{kind}.pt").write_bytes(b"x" * 2048)
        (d / "checkpoints" / f"{kind}.json").write_text(json.dumps({"kind": kind, "epoch": done, "val_acc": val}))
    (d / "metrics.jsonl").write_text(ev.event_to_json(ev.RunFinished(outcome=outcome, reason="r")) + "\n")
    return d


def screen_text(app) -> str:
    """What the terminal shows, as plain text lines (from the screenshot's text)."""
    svg = app.export_screenshot()
    import html

    rows = re.findall(r'<text [^>]*y="([\d.]+)"[^>]*>(.*?)</text>', svg)
    lines: dict[float, str] = {}
    for y, t in rows:
        lines[float(y)] = lines.get(float(y), "") + html.unescape(t).replace("\xa0", " ")
    return "\n".join(lines[y] for y in sorted(lines))


def test_the_runs_list_shows_status_at_80x24(tmp_path):
    runs = tmp_path / "runs"
    long_zip = "/home/someone/datasets/cifar/with/a/long/path/cifar10-jpeg-train.zip"
    fake_run(runs, "20240101-000000-tiny", outcome="failed", data=long_zip)
    fake_run(runs, "20240102-000000-tiny", outcome="completed", val=0.8123)

    async def main():
        app = CifarTuiApp("start", runs_dir=str(runs))
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, StartScreen) and app.screen.runs, what="the runs")
            await pilot.pause(0.2)
            text = screen_text(app)
            row = next(line for line in text.splitlines() if "20240101-000000-tiny" in line)
            assert "failed" in row  # the status is on screen, not beyond the right edge
            assert "cifar10-jpeg-…" in row and "/home/someone" not in row  # (the start of) a file name, not the path
            assert "completed" in text and "81.2%" in text
            table = app.screen.query_one("#runs-table", DataTable)
            assert [str(c.label) for c in table.columns.values()][:3] == ["Run", "Status", "Best val"]
            # the whole data path of the highlighted run is under the list
            table.focus()
            table.move_cursor(row=1)
            await pilot.pause(0.1)
            assert long_zip in str(app.screen.query_one("#runs").border_subtitle)

    run(main())


def test_the_start_screen_lists_the_runs_dir_it_was_given(tmp_path, monkeypatch):
    mine, other = tmp_path / "mine", tmp_path / "other"
    fake_run(mine, "20240101-000000-tiny")
    fake_run(other, "20240202-000000-tiny")
    monkeypatch.setenv("CIFAR_TUI_RUNS_DIR", str(other))
    import tui_trainer.app as app_module

    shown = []

    def start(runs_dir=None):  # what `cifar-tui --runs-dir DIR` runs, driven by a pilot
        app = CifarTuiApp("start", runs_dir=runs_dir)

        async def main():
            async with app.run_test(size=(80, 24)) as pilot:
                await wait_for(pilot, lambda: isinstance(app.screen, StartScreen) and app.screen.runs, what="runs")
                s = app.screen
                shown.append(([r.run_id for r in s.runs], str(s.query_one("#runs").border_title)))
        run(main())
        return 0

    monkeypatch.setattr(app_module, "run_start_app", start)
    from typer.testing import CliRunner

    from tui_trainer.cli import app as cli

    assert CliRunner().invoke(cli, ["--runs-dir", str(mine)]).exit_code == 0
    ids, title = shown[-1]
    assert ids == ["20240101-000000-tiny"] and str(mine) in title
    # without it, the environment variable's folder
    assert CliRunner().invoke(cli, []).exit_code == 0
    assert shown[-1][0] == ["20240202-000000-tiny"]


# --------------------------------------------------------------------------- the form


def test_parse_form_speaks_of_fields(tmp_path):
    cfg = parse_form(values(subset="1,000", val="100"), None)
    assert (cfg.epochs, cfg.width, cfg.batch_size, cfg.lr, cfg.subset, cfg.val_size) == (3, 0.25, 64, 0.05, 1000, 100)
    for kw, message in [
        (dict(epochs="0"), "Epochs must be a whole number from 1 to 100,000 (got 0)"),
        (dict(epochs="two"), "Epochs must be a whole number (at least 1); got 'two'"),
        (dict(width=""), "Width is empty"),
        (dict(lr="-1"), "LR must be a positive number (got -1.0)"),
        (dict(batch="0"), "Batch must be a whole number from 1 to 65,536 (got 0)"),
        (dict(val="lots"), "Val size must be a whole number"),
        (dict(data=str(tmp_path / "nope.zip")), "nope.zip: no such file or folder"),
        (dict(data=""), "Data is empty"),
    ]:
        try:
            parse_form(values(**kw), None)
        except Exception as e:  # FormError
            assert message in str(e), (kw, str(e))
            assert "--" not in str(e)  # never a command-line flag
        else:
            raise AssertionError(f"{kw} was accepted")
    (tmp_path / "notes.txt").write_text("not a zip")
    try:
        parse_form(values(data=str(tmp_path / "notes.txt")), None)
    except Exception as e:
        assert "notes.txt: a file that is not a zip" in str(e)
    assert in_form_words("--val-size 900 is larger than --subset") == ("Val size 900 is larger than Subset", "Val size")


class FormHost(App):
    def __init__(self, runs_dir: str):
        super().__init__()
        self.runs_dir, self.started = runs_dir, []

    def on_mount(self) -> None:
        self.push_screen(StartScreen(Path(self.runs_dir)))

    def on_start_run(self, message: StartRun) -> None:
        self.started.append(message.config)


def test_the_new_run_form_validates_before_starting(tmp_path):
    app = FormHost(str(tmp_path / "runs"))

    async def main():
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, StartScreen), what="start screen")
            s = app.screen
            form = s.query_one(RunForm)
            assert s.query_one("#f-preset", Select).value == "paper"
            assert "the report's recipe" in str(s.query_one("#f-preset-note").render())
            assert str(s.query_one("#f-mixup-state").render()) == "on"
            s.query_one("#f-preset", Select).value = "tiny"
            await pilot.pause(0.1)
            assert s.query_one("#f-epochs", Input).value == "5" and s.query_one("#f-lr", Input).value == "0.05"
            assert str(s.query_one("#f-mixup-state").render()) == "off"
            assert "small and quick" in str(s.query_one("#f-preset-note").render())
            s.query_one("#f-mixup", Switch).value = True
            await pilot.pause(0.05)
            assert str(s.query_one("#f-mixup-state").render()) == "on"
            # a bad field: the message names it, the field is marked and focused, nothing starts
            s.query_one("#f-epochs", Input).value = "0"
            await pilot.click("#f-start")
            await pilot.pause(0.1)
            assert "Epochs must be a whole number from 1 to 100,000 (got 0)" in form.error
            assert s.query_one("#f-epochs", Input).has_class("-invalid") and app.focused.id == "f-epochs"
            assert app.started == []
            s.query_one("#f-epochs", Input).value = "2"
            s.query_one("#f-data", Input).value = str(tmp_path / "missing-folder")
            await pilot.press("enter")
            await pilot.pause(0.1)
            assert form.error.startswith("Data ") and "missing-folder: no such file or folder" in form.error
            assert app.started == []
            assert not s.query_one("#f-epochs", Input).has_class("-invalid")
            s.query_one("#f-data", Input).value = "synthetic"
            s.query_one("#f-batch", Input).value = "32"
            s.query_one("#f-subset", Input).value = "500"
            s.query_one("#f-val", Input).value = "50"
            await pilot.click("#f-start")
            await pilot.pause(0.1)
            (cfg,) = app.started
            assert (cfg.data, cfg.preset, cfg.epochs, cfg.batch_size, cfg.subset, cfg.val_size, cfg.mixup) == (
                "synthetic", "tiny", 2, 32, 500, 50, True)
            assert cfg.runs_dir == str(tmp_path / "runs") and form.error == ""

    run(main())
