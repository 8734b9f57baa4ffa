"""Pilot tests of the checkpoint browser: select, evaluate, gallery filters, resume, new run."""

import asyncio
import json

import pytest
from textual.widgets import DataTable, Input, Static

from engine.config import TrainConfig, make_config
from engine.trainer import Trainer
from tui_trainer.screens.browser import BrowserScreen
from tui_trainer.screens.newrun import ExtendRunScreen, NewRunScreen
from tui_trainer.widgets.runform import RunForm
from tui_trainer.widgets.evaluation import Gallery, ImageTile
from ui_support import BrowserHost, browsing


@pytest.fixture(scope="module")
def runs(finished_run, tmp_path_factory):
    """A copy of the session's finished run, beside a run folder holding a damaged checkpoint
    (the browser must survive it)."""
    import shutil

    root = tmp_path_factory.mktemp("browser-runs")
    shutil.copytree(finished_run, root / finished_run.name)
    bad = root / "20000101-000000-broken" / "checkpoints"
    bad.mkdir(parents=True)
    (bad / "last.pt").write_bytes(b"not a checkpoint at all")
    return root, root / finished_run.name




async def wait_eval(pilot, screen, timeout=60.0):
    for _ in range(int(timeout / 0.1)):
        await pilot.pause(0.1)
        if screen.evaluating is None:
            return
    raise AssertionError("evaluation did not finish")


def text_of(screen, selector) -> str:
    w = screen.query_one(selector, Static)
    return str(w.render())


def test_evaluate_then_filter_the_gallery(runs):
    root, run_dir = runs

    async def go():
        async with browsing(root, select=str(run_dir)) as (app, pilot, screen):
            assert isinstance(screen, BrowserScreen)
            assert screen.current().path == str(run_dir / "checkpoints" / "best.pt")
            assert len(screen.rows) == 5  # best, last, epoch-001, epoch-002 of the run, and the broken one
            await pilot.press("e")
            await wait_eval(pilot, screen)
            summary = text_of(screen, "#eval-summary")
            assert "accuracy" in summary and "2,000 images of synthetic:test" in summary
            assert (run_dir / "checkpoints" / "best.eval.json").is_file()
            table = screen.query_one(DataTable)
            row = screen.rows.index(screen.current())
            assert table.get_row_at(row)[5] != ""  # test accuracy now shown in the table
            gallery = screen.query_one(Gallery)
            tiles = list(gallery.query(ImageTile))
            assert len(tiles) == Gallery.MAX_TILES
            await pilot.press("w")  # misclassified only
            await pilot.pause(0.2)
            tiles = list(gallery.query(ImageTile))
            assert tiles and not any(t.correct for t in tiles)
            await pilot.press("k")  # first class only
            await pilot.pause(0.2)
            assert all(gallery.labels[t.index] == 0 for t in gallery.query(ImageTile))
            await pilot.press("w", "a")
            await pilot.pause(0.2)
            assert gallery.selection() == list(range(2000))

    asyncio.run(go())


def test_a_broken_checkpoint_gives_a_message_and_the_browser_keeps_working(runs):
    root, run_dir = runs

    async def go():
        async with browsing(root, select=str(root / "20000101-000000-broken"), size=(80, 24)) as (app, pilot, screen):
            assert "broken" in screen.current().run.run_id
            await pilot.press("e")
            await wait_eval(pilot, screen)
            assert "Evaluation failed" in text_of(screen, "#eval-summary")
            assert "not a readable checkpoint" in text_of(screen, "#eval-summary")
            screen.sort_by("val")  # sortable, and still alive
            await pilot.pause(0.1)
            assert screen.rows[0].ckpt.val_acc is not None

    asyncio.run(go())


def test_resume_and_new_run_from_a_checkpoint(runs, tmp_path):
    root, run_dir = runs

    async def go():
        async with browsing(root, select=str(run_dir)) as (app, pilot, screen):
            await pilot.press("n")  # the form, prefilled with the run's settings; nothing starts yet
            await pilot.pause(0.2)
            assert isinstance(app.screen, NewRunScreen) and app.started == []
            form = app.screen.query_one(RunForm)
            assert form.values()["width"] == "0.125" and form.values()["subset"] == "600"
            await pilot.press("enter")  # Start (the focused field submits the form)
            await pilot.pause(0.2)
            config, kw = app.started[-1]
            stored = TrainConfig.from_dict(json.loads((run_dir / "config.json").read_text())["config"])
            assert config == stored.replace(runs_dir=str(root))  # the new run goes beside the ones browsed
            assert config.width == 0.125 and config.epochs == 2 and kw["resume"] is None
            assert app.screen is screen
            table = screen.query_one(DataTable)
            table.move_cursor(row=[r.ckpt.name for r in screen.rows].index("last.pt"))
            await pilot.pause(0.1)
            await pilot.press("r")  # last.pt of a run that finished its epochs: the dialog to extend it
            await pilot.pause(0.2)
            assert isinstance(app.screen, ExtendRunScreen) and len(app.started) == 1
            app.screen.query_one("#x-epochs", Input).value = "2"
            await pilot.press("enter")  # not more than it has done: refused in the dialog
            await pilot.pause(0.1)
            assert "larger than the 2" in str(app.screen.query_one("#extend-error", Static).render())
            app.screen.query_one("#x-epochs", Input).value = "4"
            app.screen.query_one("#x-lr", Input).value = "0.01"
            await pilot.press("enter")
            await pilot.pause(0.2)
            config, kw = app.started[-1]
            assert config is None and kw["resume"].endswith("last.pt") and kw["overrides"] == {"epochs": 4, "lr": 0.01,
                                                                                           "extend_schedule": "restart"}

    asyncio.run(go())
    # a run stopped half-way resumes from the browser
    from engine import events as ev

    t: Trainer

    def stop(e):
        if isinstance(e, ev.StepDone) and e.step == 2:
            t.send(ev.Stop())

    t = Trainer(make_config("tiny", data="synthetic", width=0.125, subset=300, val_size=100, epochs=3, log_every=1,
                            runs_dir=str(tmp_path)), listeners=[stop])
    assert t.run() == "stopped"

    async def go2():
        app = BrowserHost(tmp_path, select=str(t.run_dir))
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.pause(0.2)
            await pilot.press("r")
            await pilot.pause(0.1)
            config, kw = app.started[-1]
            assert config is None and kw["resume"] == str(t.run_dir / "checkpoints" / "last.pt")

    asyncio.run(go2())


def test_browse_command_checks_its_folder(tmp_path, capsys):
    from tui_trainer.app import CifarTuiApp, run_browse_app

    assert run_browse_app(str(tmp_path / "missing")) == 2
    assert "is not a folder of runs" in capsys.readouterr().err

    async def go():
        app = CifarTuiApp("browse", runs_dir=str(tmp_path))
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause(0.2)
            assert isinstance(app.screen, BrowserScreen)
            assert "No checkpoints" in text_of(app.screen, "#browser-where")

    asyncio.run(go())


def test_a_stale_evaluation_is_not_shown_as_the_checkpoints(run_copy):
    from engine.evaluate import evaluate_checkpoint
    from engine.rundir import RunDir

    last = RunDir(run_copy).last_checkpoint
    evaluate_checkpoint(str(last))
    last.write_bytes(last.read_bytes() + b"\0")  # the file changed after it was evaluated

    async def go():
        async with browsing(run_copy.parent, select=str(last)) as (app, pilot, screen):
            assert screen.current().path == str(last)
            table = screen.query_one(DataTable)
            cells = [str(c) for c in table.get_row_at(table.cursor_row)]
            assert "stale" in cells
            assert "stale" in text_of(screen, "#run-info")
            assert "earlier version of this file" in text_of(screen, "#eval-summary")
            assert "accuracy" not in text_of(screen, "#eval-summary")

    asyncio.run(go())
