"""The browser's extend dialog (issue 26, item 1): the schedule of the added epochs (a new one
from a peak LR by default, the old one on request) and the LR the next epoch will get, at
80x24 and 100x30. Fake run folders: no training."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from textual.widgets import DataTable, Input, Select, Static

from engine.config import make_config
import tui_trainer.app as app_module
from tui_trainer.app import CifarTuiApp
from tui_trainer.screens import BrowserScreen
from tui_trainer.screens.newrun import ExtendRunScreen
from test_ui_start_form import fake_run
from ui_support import wait_for


class Host(CifarTuiApp):
    """The real app (its stylesheet) that records what it is asked to train."""

    CSS_PATH = str(Path(app_module.__file__).parent / CifarTuiApp.CSS_PATH)

    def __init__(self, runs_dir):
        super().__init__("browse", runs_dir=runs_dir)
        self.started = []

    def on_start_run(self, message) -> None:
        self.started.append((message.resume, message.resume_overrides))


def finished_paper_run(runs):
    d = fake_run(runs, "20240101-000000-paper", epochs=2, done=2)
    cfg = make_config("paper", epochs=2, data="synthetic").to_dict()
    (d / "config.json").write_text(json.dumps({"created": d.name, "data": {"source": "synthetic"}, "config": cfg}))
    (d / "checkpoints" / "last.json").write_text(json.dumps({"kind": "last", "epoch": 2, "global_step": 20,
                                                             "val_acc": 0.5}))
    return d


@pytest.mark.parametrize("size", [(80, 24), (100, 30)])
def test_the_extend_dialog_says_the_next_lr_and_offers_the_old_schedule(tmp_path, size):
    runs = tmp_path / "runs"
    run = finished_paper_run(runs)

    async def main():
        app = Host(str(runs))
        async with app.run_test(size=size) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, BrowserScreen) and app.screen.rows, what="rows")
            s = app.screen
            s.query_one(DataTable).move_cursor(row=[r.ckpt.name for r in s.rows].index("last.pt"))
            await pilot.press("r")
            await wait_for(pilot, lambda: isinstance(app.screen, ExtendRunScreen), what="the extend dialog")
            d = app.screen
            nxt = d.query_one("#extend-next", Static)
            await pilot.pause(0.2)

            def said() -> str:
                return " ".join(str(nxt.render()).split())

            # default: a new cosine from a tenth of the run's peak (the old one ended at lr 0)
            assert d.query_one("#x-epochs", Input).value == "4"
            assert "a new cosine from 0.01 to 0" in said() and "the next epoch starts at lr 0.01" in said()
            assert "0.01: a tenth of the run's 0.1" in d.query_one("#x-lr", Input).placeholder
            dialog = d.query_one("#dialog")
            assert dialog.region.right <= size[0] and dialog.region.bottom <= size[1]
            assert nxt.region.bottom <= dialog.region.bottom and nxt.region.height >= 2  # the whole line shows
            d.query_one("#x-mode", Select).value = "keep"
            await pilot.pause(0.2)
            assert "the next epoch starts at lr 0;" in said()  # what the old schedule would give: said
            d.query_one("#x-mode", Select).value = "restart"
            d.query_one("#x-lr", Input).value = "0.03"
            await pilot.pause(0.2)
            assert "the next epoch starts at lr 0.03" in said()
            d.query_one("#x-lr", Input).focus()
            await pilot.press("enter")
            await wait_for(pilot, lambda: app.started, what="the extension to start")
            resume, overrides = app.started[-1]
            assert resume == str(run / "checkpoints" / "last.pt")
            assert overrides == {"epochs": 4, "lr": 0.03, "extend_schedule": "restart"}

    asyncio.run(main())
