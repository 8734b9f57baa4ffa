"""The browser reads the runs again (on coming back, on ctrl+r) and edits them: rename, note,
delete (confirmed, never a running run). Fake run folders: no training, no torch."""

from __future__ import annotations

import asyncio
import json
import os
import socket

import pytest
from textual.screen import Screen
from textual.widgets import DataTable, Input

from engine.rundir import RunDir
from tui_trainer.app import CifarTuiApp
from tui_trainer.screens import BrowserScreen
from tui_trainer.screens.newrun import ConfirmScreen, TextPromptScreen
from test_ui_start_form import fake_run
from ui_support import wait_for

SIZES = [(80, 24), (100, 30)]


def run_ids(screen) -> set[str]:
    return {r.run.run_id for r in screen.rows}


def cell(screen, run_id: str, ckpt: str, column: str) -> str:
    table = screen.query_one("#browser-table", DataTable)
    i = next(i for i, r in enumerate(screen.rows) if r.run.run_id == run_id and r.ckpt.name == ckpt)
    return str(table.get_cell_at((i, list(table.columns).index(column))))


def select(screen, run_id: str) -> None:
    i = next(i for i, r in enumerate(screen.rows) if r.run.run_id == run_id)
    screen.query_one("#browser-table", DataTable).move_cursor(row=i)


async def browser(pilot, app) -> BrowserScreen:
    await wait_for(pilot, lambda: isinstance(app.screen, BrowserScreen) and app.screen.rows, what="the browser")
    return app.screen


@pytest.mark.parametrize("size", SIZES)
def test_the_browser_reads_the_runs_again_on_coming_back_and_on_a_key(tmp_path, size):
    runs = tmp_path / "runs"
    first = fake_run(runs, "20240101-000000-tiny", epochs=4, done=4)

    async def main():
        app = CifarTuiApp("browse", runs_dir=str(runs))
        async with app.run_test(size=size) as pilot:
            s = await browser(pilot, app)
            assert run_ids(s) == {first.name}
            assert "ctrl+r" in {b.binding.key for b in s.active_bindings.values() if b.binding.show}
            fake_run(runs, "20240102-000000-tiny")  # a run that finished meanwhile
            await pilot.press("ctrl+r")
            await wait_for(pilot, lambda: len(run_ids(s)) == 2, what="the new run after ctrl+r")
            select(s, first.name)
            # the run is extended meanwhile (another screen is in front): coming back shows it
            app.push_screen(Screen())
            await pilot.pause(0.1)
            (first / "checkpoints" / "last.json").write_text(json.dumps({"kind": "last", "epoch": 6, "val_acc": 0.6}))
            app.pop_screen()
            await wait_for(pilot, lambda: cell(s, first.name, "last.pt", "epoch") == "6", what="the new epoch")
            assert s.current().run.run_id == first.name  # the cursor stayed on its run
            fake_run(runs, "20240103-000000-tiny")
            await pilot.press("f5")
            await wait_for(pilot, lambda: len(run_ids(s)) == 3, what="the new run after f5")

    asyncio.run(main())


@pytest.mark.parametrize("size", SIZES)
def test_rename_note_and_delete_a_run_from_the_browser(tmp_path, size):
    runs = tmp_path / "runs"
    a = fake_run(runs, "20240101-000000-tiny")
    fake_run(runs, "20240102-000000-tiny")

    async def main():
        app = CifarTuiApp("browse", runs_dir=str(runs))
        async with app.run_test(size=size) as pilot:
            s = await browser(pilot, app)
            select(s, a.name)
            await pilot.press("f2")
            await wait_for(pilot, lambda: isinstance(app.screen, TextPromptScreen), what="the rename dialog")
            assert app.screen.query_one(Input).value == a.name
            await pilot.press(*"bad name", "enter")  # refused by the engine: said, nothing renamed
            await wait_for(pilot, lambda: isinstance(app.screen, BrowserScreen), what="back")
            assert a.is_dir()
            await pilot.press("f2")
            await wait_for(pilot, lambda: isinstance(app.screen, TextPromptScreen), what="the rename dialog")
            await pilot.press(*"baseline", "enter")
            await wait_for(pilot, lambda: "baseline" in run_ids(s), what="the renamed run")
            assert not a.exists() and (runs / "baseline" / "checkpoints" / "last.pt").is_file()
            assert s.current().run.run_id == "baseline"
            await pilot.press("t")
            await wait_for(pilot, lambda: isinstance(app.screen, TextPromptScreen), what="the note dialog")
            await pilot.press(*"lr 0.05, mixup", "enter")
            await wait_for(pilot, lambda: s.current().run.note == "lr 0.05, mixup", what="the note")
            assert RunDir(runs / "baseline").read_note() == "lr 0.05, mixup"
            assert "lr 0.05, mixup" in str(s.query_one("#run-info").render())
            assert cell(s, "baseline", "last.pt", "note") == "lr 0.05, mixup"
            await pilot.press("d")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the question")
            assert "baseline" in str(app.screen.query_one("#confirm-question").render())
            await pilot.press("n")  # no: kept
            await wait_for(pilot, lambda: isinstance(app.screen, BrowserScreen), what="back")
            assert (runs / "baseline").is_dir()
            await pilot.press("d")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the question")
            await pilot.press("y")
            await wait_for(pilot, lambda: run_ids(s) == {"20240102-000000-tiny"}, what="the run gone")
            assert not (runs / "baseline").exists()

    asyncio.run(main())


def test_a_running_run_cannot_be_deleted(tmp_path):
    runs = tmp_path / "runs"
    d = fake_run(runs, "20240101-000000-tiny")

    async def main():
        app = CifarTuiApp("browse", runs_dir=str(runs))
        async with app.run_test(size=(80, 24)) as pilot:
            s = await browser(pilot, app)
            # it starts running after the table was read: the lock says so
            (d / ".lock").write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": "now"}))
            await pilot.press("d")
            await pilot.pause(0.3)
            assert isinstance(app.screen, BrowserScreen)  # no question asked
            assert any("is running" in str(n.message) and "stop it before you delete it" in str(n.message)
                       for n in app._notifications)
            assert (d / "checkpoints" / "last.pt").is_file()

    asyncio.run(main())
