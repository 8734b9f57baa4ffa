"""The network's shape in the app: the run form's fields and live figures, the new-run and
extend dialogs, compare's parameter and shape rows, and the browser's choice of split."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest
from textual.widgets import Collapsible, DataTable, Input, Select, Static

from engine.shape import NetShape
from tui_trainer.screens import StartScreen
from tui_trainer.screens.browser import BrowserScreen
from tui_trainer.screens.compare import CompareScreen
from tui_trainer.screens.newrun import ExtendRunScreen, NewRunScreen
from tui_trainer.widgets.runform import RunForm
from ui_support import BrowserHost, press, wait_for

from test_ui_start_form import FormHost, screen_text


def budget(screen) -> Static:
    return screen.query_one("#f-budget", Static)


@pytest.mark.parametrize("size", [(80, 24), (100, 30)])
def test_the_form_shows_the_networks_figures_live(tmp_path, size):
    app = FormHost(str(tmp_path / "runs"))

    async def main():
        async with app.run_test(size=size) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, StartScreen), what="start screen")
            s = app.screen
            await pilot.pause(0.1)
            # the report's network, within the course's budget, in green; the figures beside it
            assert str(budget(s).render()) == "4,993,166 of 5,000,000 (99.9%)" and budget(s).has_class("-within")
            text = screen_text(app)
            assert "4,993,166 of 5,000,000 (99.9%)" in text and "1.75 GFLOPs, 14.25 MiB per image" in text
            assert "Network 4,3,2,3 x 64,128,128,256 /1,2,1,2 stem 64 SE stem" in text  # the title, closed
            assert "Start training" in text  # the form still fits with its button
            # typed fields change the figures at once
            s.query_one("#f-shape", Collapsible).collapsed = False
            s.query_one("#f-blocks", Input).value = "8,8,8,8"
            await pilot.pause(0.05)
            over = NetShape(blocks=(8, 8, 8, 8)).params()
            assert str(budget(s).render()) == f"over by {over - 5_000_000:,} ({over:,} of 5,000,000)"
            assert budget(s).has_class("-over") and not budget(s).has_class("-within")
            s.query_one("#f-blocks", Input).value = "2,2"
            s.query_one("#f-channels", Input).value = "32,64"
            s.query_one("#f-strides", Input).value = "1,2"
            s.query_one("#f-se", Select).value = "blocks"
            s.query_one("#f-width", Input).value = "0.5"
            await pilot.pause(0.05)
            small = NetShape(blocks=(2, 2), channels=(32, 64), strides=(1, 2), se="blocks", width=0.5)
            assert str(budget(s).render()).startswith(f"{small.params():,} of 5,000,000")
            assert budget(s).has_class("-within")
            figures = str(s.query_one("#f-figures", Static).render())
            assert f"{small.flops() / 1e6:,.1f} MFLOPs" in figures
            # a wrong field: named live in the figures line, then on Start (marked, focused)
            s.query_one("#f-strides", Input).value = "1,2,2"
            await pilot.pause(0.05)
            assert "Strides gives 3 values for 2 stages (Blocks)" in str(budget(s).render())
            assert budget(s).has_class("-invalid")
            s.query_one("#f-shape", Collapsible).collapsed = True
            await pilot.pause(0.05)
            await pilot.click("#f-start")
            await pilot.pause(0.2)
            form = s.query_one(RunForm)
            assert form.error.startswith("Strides gives 3 values") and "--" not in form.error
            assert s.query_one("#f-strides", Input).has_class("-invalid") and app.focused.id == "f-strides"
            assert not s.query_one("#f-shape", Collapsible).collapsed  # opened to show the field
            assert app.started == []
            # a budget the network exceeds: Start refuses it, naming Max params
            s.query_one("#f-strides", Input).value = "1,2"
            s.query_one("#f-max-params", Input).value = "10,000"
            s.query_one("#f-data", Input).value = "synthetic"
            await pilot.pause(0.05)
            assert budget(s).has_class("-over")
            await pilot.click("#f-start")
            await pilot.pause(0.1)
            assert form.error.startswith(f"the network has {small.params():,} trainable parameters, over Max params")
            assert app.focused.id == "f-max-params" and app.started == []
            s.query_one("#f-max-params", Input).value = ""  # blank: no limit
            await pilot.click("#f-start")
            await pilot.pause(0.1)
            (cfg,) = app.started
            assert (cfg.blocks, cfg.channels, cfg.strides, cfg.se, cfg.width, cfg.max_params) == (
                (2, 2), (32, 64), (1, 2), "blocks", 0.5, None)

    asyncio.run(main())


def _rows(table: DataTable) -> dict[str, list[str]]:
    return {str(table.get_row_at(i)[0]): [str(c) for c in table.get_row_at(i)[1:]] for i in range(table.row_count)}


def test_new_run_from_this_with_another_shape_trains_it(run_copy, tmp_path, monkeypatch):
    """n in the browser: the form shows the run's shape; a changed shape reaches the new
    run's config, its checkpoint and `runs --json`. The extend dialog shows the kept network."""
    root = run_copy.parent
    monkeypatch.setenv("CIFAR_TUI_CACHE_DIR", str(tmp_path / "cache"))

    async def go():
        app = BrowserHost(root, select=str(run_copy))
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause(0.2)
            screen = app.screen
            info = str(screen.query_one("#run-info", Static).render())
            assert "model SEResNet 4,3,2,3 x 64,128,128,256 /1,2,1,2 stem 64 SE stem width 0.125" in info
            await press(pilot, "n")
            await wait_for(pilot, lambda: isinstance(app.screen, NewRunScreen), what="the new-run dialog")
            d = app.screen
            await pilot.pause(0.1)
            assert d.query_one("#f-blocks", Input).value == "4,3,2,3" and d.query_one("#f-stem", Input).value == "64"
            assert not d.query_one("#f-shape", Collapsible).collapsed  # open in this dialog
            assert str(budget(d).render()).startswith(f"{NetShape(width=0.125).params():,} of 5,000,000")
            for wid, value in (("#f-blocks", "1,1"), ("#f-channels", "32,64"), ("#f-strides", "1,2"),
                               ("#f-stem", "16"), ("#f-epochs", "1")):
                d.query_one(wid, Input).value = value
            d.query_one("#f-se", Select).value = "none"
            await pilot.pause(0.05)
            assert "Start training" in screen_text(app)
            d.query_one(RunForm).submit()
            await wait_for(pilot, lambda: app.started, what="the new run")
            # resume/extend: the network is shown, and that it cannot change
            table = screen.query_one(DataTable)
            table.move_cursor(row=[r.ckpt.name for r in screen.rows].index("last.pt"))
            await pilot.pause(0.05)
            await press(pilot, "r")
            await wait_for(pilot, lambda: isinstance(app.screen, ExtendRunScreen), what="the extend dialog")
            line = str(app.screen.query_one("#extend-shape", Static).render())
            assert f"4,3,2,3 x 64,128,128,256 /1,2,1,2 stem 64 SE stem width 0.125, " \
                   f"{NetShape(width=0.125).params():,} parameters" in line and "keeps its network" in line
        return app.started[0][0]

    config = asyncio.run(go())
    assert (config.blocks, config.channels, config.strides, config.stem_channels, config.se) == (
        (1, 1), (32, 64), (1, 2), 16, "none")
    from engine.checkpoint import load_checkpoint
    from engine.trainer import Trainer

    t = Trainer(config.replace(subset=200, val_size=50, log_every=5))
    assert t.run() == "completed"
    want = NetShape(blocks=(1, 1), channels=(32, 64), strides=(1, 2), stem_channels=16, se="none", width=0.125)
    stored = json.loads((t.run_dir / "config.json").read_text())["config"]
    assert (stored["blocks"], stored["channels"], stored["se"]) == ([1, 1], [32, 64], "none")
    ckpt = load_checkpoint(t.run_dir / "checkpoints" / "last.pt")
    assert NetShape.from_record(ckpt["arch"]["shape"]) == want
    from typer.testing import CliRunner

    from tui_trainer.cli import app as cli

    listed = json.loads(CliRunner().invoke(cli, ["runs", str(root), "--json"]).output)
    mine = next(r for r in listed if r["path"] == str(t.run_dir))
    assert mine["shape"] == want.to_record() and mine["params"] == want.params()


def test_compare_shows_params_and_the_shapes_that_differ(finished_run, tmp_path):
    from engine.runs import read_run

    a, b = tmp_path / "20240101-000000-a", tmp_path / "20240202-000000-b"
    shutil.copytree(finished_run, a)
    shutil.copytree(finished_run, b)
    info = json.loads((b / "config.json").read_text())
    info["config"].update(blocks=[2, 2], channels=[64, 128], strides=[1, 2])
    info["model"]["params"] = 123_456
    (b / "config.json").write_text(json.dumps(info))

    async def go():
        from textual.app import App

        app = App()
        async with app.run_test(size=(80, 24)) as pilot:
            app.push_screen(CompareScreen([read_run(a), read_run(b)]))
            await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen.loaded,
                           what="the comparison")
            rows = _rows(app.screen.query_one("#compare-settings", DataTable))
            params_a = read_run(a).params
            assert rows["params"] == [f"{params_a:,}", "123,456"]
            assert rows["blocks"] == ["4,3,2,3", "2,2"] and rows["channels"] == ["64,128,128,256", "64,128"]
            assert rows["strides"] == ["1,2,1,2", "1,2"]
            assert "width" not in rows and "se" not in rows and "stem_channels" not in rows  # the same in both

    asyncio.run(go())


def test_the_browser_evaluates_on_the_validation_images(run_copy):
    """The split choice: the run's validation images, stored apart from the test split's
    result and named as such; the table's test column stays the test split's."""
    from engine.runs import latest_evaluation

    best = run_copy / "checkpoints" / "best.pt"

    async def go():
        app = BrowserHost(run_copy.parent, select=str(run_copy))
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.pause(0.2)
            s = app.screen
            assert isinstance(s, BrowserScreen) and s.current().path == str(best)
            s.query_one("#eval-split", Select).value = "val"
            await pilot.pause(0.05)
            await press(pilot, "e")
            await wait_for(pilot, lambda: s.evaluating is None and s.evaluation.fresh == str(best), what="val eval")
            summary = str(s.query_one("#eval-summary", Static).render())
            assert "accuracy on the run's validation images" in summary and "200 images of synthetic:val" in summary
            assert s.current().ckpt.test_acc is None  # not a test accuracy
            s.query_one("#eval-split", Select).value = "test"
            await pilot.pause(0.1)
            assert "Not evaluated on the test split yet" in str(s.query_one("#eval-summary", Static).render())
            await press(pilot, "e")
            await wait_for(pilot, lambda: s.evaluating is None and s.evaluation.fresh == str(best), what="test eval")
            assert "accuracy on the test split" in str(s.query_one("#eval-summary", Static).render())
            assert s.current().ckpt.test_acc is not None
            s.query_one("#eval-split", Select).value = "val"  # the stored validation result is still there
            await pilot.pause(0.1)
            assert "on the run's validation images" in str(s.query_one("#eval-summary", Static).render())

    asyncio.run(go())
    val, test = latest_evaluation(best, split="val"), latest_evaluation(best, split="test")
    assert val.source == "synthetic:val" and val.images == 200 and test.source == "synthetic:test"


def test_data_without_a_test_split_chooses_the_validation_images(run_copy):
    info = json.loads((run_copy / "config.json").read_text())
    info["data"]["test_images"] = 0  # as a training-only zip records it
    (run_copy / "config.json").write_text(json.dumps(info))

    async def go():
        app = BrowserHost(run_copy.parent, select=str(run_copy))
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause(0.2)
            assert app.screen.query_one("#eval-split", Select).value == "val"

    asyncio.run(go())

