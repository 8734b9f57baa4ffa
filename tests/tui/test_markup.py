"""Strings from files and users are shown as text in the app, never parsed as markup.

The run of ``markup_run`` was trained on classes named ``[/bold]`` (a closing tag
without an opener: a MarkupError if parsed), ``[@click=app.quit]x`` (a Textual
action), ``[red]c`` (a style that would hide the brackets); its data and runs
folders have ``[/blue]`` in their paths. Each screen must draw, and show the
literal text.
"""

from __future__ import annotations

import asyncio
import html
import shutil

import pytest
from conftest import MARKUP_CLASSES
from textual.widgets import Input, Static

from engine import events as ev
from engine.rundir import RunDir
from tui_trainer.app import CifarTuiApp
from tui_trainer.screens import DashboardScreen, StartScreen
from tui_trainer.screens.browser import BrowserScreen
from tui_trainer.widgets.evaluation import Gallery, ImageTile
from ui_support import BrowserHost, wait_for

SIZE = (140, 45)
ODD_RUN = "run-[@click=app.quit]-[red]x"  # a run folder name: markup without a slash


def run(coro):
    return asyncio.run(coro)


def screen_text(app) -> str:
    """What the terminal shows (the SVG screenshot's text, spaces restored)."""
    return html.unescape(app.export_screenshot()).replace("\xa0", " ")


@pytest.fixture
def runs(markup_run, tmp_path):
    """A runs folder with ``[/blue]`` in its path, holding the markup run under a folder
    name that is itself markup."""
    root = tmp_path / "runs[" / "blue]"
    root.mkdir(parents=True)
    dst = root / ODD_RUN
    shutil.copytree(markup_run, dst)
    return root, dst


def test_dashboard_replay_of_a_real_run_shows_names_and_paths_as_text(markup_run):
    events, _ = RunDir(markup_run).read_metrics()
    replay = [ev.event_from_dict(d) for d in events]
    started = replay[0]
    assert isinstance(started, ev.RunStarted) and "[/blue]" in started.config["data"]
    extra = [ev.Warning(message="skipped [/bold] images in [/blue]/x.png", time=started.time + 1),
             ev.Failed(message="could not read [/blue]/last.pt [@click=app.quit]", time=started.time + 2)]

    async def main():
        app = CifarTuiApp("replay", events=replay[:-1] + extra + replay[-1:], clock=lambda: started.time + 60)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause(0.5)
            dash = app.screen
            assert isinstance(dash, DashboardScreen)
            log = "\n".join(dash.event_log.lines_written)
            assert "skipped [/bold] images in [/blue]/x.png" in log and "[@click=app.quit]" in log
            shown = screen_text(app)
            assert "[/bold]" in shown and "[/blue]" in shown
        assert app.return_code in (None, 0)

    run(main())


def test_a_device_and_reason_from_a_file_show_as_text_in_the_status_panel():
    t = 1_700_000_000.0
    events = [
        ev.RunStarted(config={"epochs": 2, "data": "/d/[/blue]"}, run_dir="/r/[/blue]/x", device="[/bold]cuda",
                      params=1, run_id="[red]id", train_size=10, val_size=0, steps_per_epoch=1, time=t),
        ev.Failed(message="[/bold] went wrong", time=t + 1),
        ev.StateChanged(state="failed", reason="[/bold] went wrong", time=t + 1),
    ]

    async def main():
        app = CifarTuiApp("replay", events=events, clock=lambda: t + 5)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause(0.5)
            plain = app.screen.status.plain
            assert "[/bold]cuda" in plain and "[red]id" in plain and "[/bold] went wrong" in plain
            shown = screen_text(app)
            assert "[/bold]cuda" in shown and "[red]id" in shown

    run(main())


def test_start_screen_lists_the_run_and_shows_a_form_error_as_text(runs):
    root, dst = runs

    async def main():
        app = CifarTuiApp("start", runs_dir=str(root))
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause(0.3)
            screen = app.screen
            assert isinstance(screen, StartScreen)
            shown = screen_text(app)
            assert ODD_RUN in shown and "[/blue]" in shown  # the run id; the border title with the runs folder
            screen.query_one("#f-epochs", Input).value = "[/bold]"
            screen.action_start()
            await pilot.pause(0.2)
            error = str(screen.query_one("#form-error", Static).render())
            assert "'[/bold]'" in error
            assert "'[/bold]'" in screen_text(app)
            assert app.return_code is None  # nothing ran [@click=app.quit]

    run(main())




async def _evaluated(pilot, screen: BrowserScreen) -> None:
    screen.action_evaluate()
    await wait_for(pilot, lambda: screen.evaluating is None, timeout=60, what="the evaluation")
    await pilot.pause(0.2)


def test_browser_run_tab_matrix_gallery_and_tooltips_show_names_as_text(runs):
    root, dst = runs

    async def main():
        app = BrowserHost(root)
        async with app.run_test(size=SIZE, tooltips=True) as pilot:
            await pilot.pause(0.3)
            screen = app.screen
            assert isinstance(screen, BrowserScreen) and screen.rows
            where = str(screen.query_one("#browser-where", Static).render())
            assert str(root) in where  # "runs[/blue]"
            info = str(screen.query_one("#run-info", Static).render())
            assert ODD_RUN in info and "data[/blue]" in info
            await _evaluated(pilot, screen)
            summary = str(screen.query_one("#eval-summary", Static).render())
            assert "accuracy" in summary and "data[/blue]" in summary
            shown = screen_text(app)
            assert "[/bo" in shown and "[@cl" in shown and "[red" in shown  # matrix columns: 4 characters
            gallery = screen.query_one(Gallery)
            assert gallery.class_names == MARKUP_CLASSES
            screen.action_next_class()  # the first class: [/bold]
            await pilot.pause(0.3)
            note = str(gallery.query_one("#gallery-note", Static).render())
            assert "class [/bold]" in note
            tiles = list(gallery.query(ImageTile))
            assert tiles
            shown = screen_text(app)
            assert shown.count("[/bold]") >= len(tiles[:4])  # each caption starts with its true class
            await pilot.hover(tiles[0])
            await pilot.pause(1.0)  # the tooltip shows after a short delay
            assert f"true {MARKUP_CLASSES[0]}" in screen_text(app)
            assert app.return_code is None

    run(main())


def test_browser_failed_evaluation_message_is_text(runs):
    root, _ = runs

    async def main():
        app = BrowserHost(root)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause(0.3)
            screen = app.screen
            screen.query_one("#eval-data", Input).value = str(root / "missing[/bold]")
            await _evaluated(pilot, screen)
            summary = str(screen.query_one("#eval-summary", Static).render())
            assert "Evaluation failed" in summary and "missing[/bold]" in summary
            assert "missing[/bold]" in screen_text(app)  # the notification too

    run(main())
