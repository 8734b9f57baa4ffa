"""The start screen's keys and the run form's focus (issue 26, items 2, 10 and 11): after
escape the focus is where the hint is, keys sent fast land in the right field, an error
goes once its field is fixed."""

from __future__ import annotations

import asyncio

import pytest
from textual.widgets import DataTable, Input

from tui_trainer.app import CifarTuiApp
from tui_trainer.screens import BrowserScreen, StartScreen
from tui_trainer.screens.start import HINT_IN_LIST
from tui_trainer.widgets.runform import RunForm
from test_ui_start_form import fake_run
from ui_support import wait_for

SIZES = [(80, 24), (100, 30)]


def footer_keys(app) -> set[str]:
    """The actions the footer offers now (shown and enabled)."""
    return {a.binding.action for a in app.screen.active_bindings.values() if a.binding.show and a.enabled}


@pytest.mark.parametrize("size", SIZES)
def test_escape_back_puts_the_focus_on_the_list_whose_keys_the_hint_shows(tmp_path, size):
    runs = tmp_path / "runs"
    fake_run(runs, "20240101-000000-tiny")

    async def main():
        app = CifarTuiApp("start", runs_dir=str(runs))
        async with app.run_test(size=size) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, StartScreen) and app.screen.runs, what="the runs")
            s = app.screen
            hint = s.query_one("#runs-hint")
            # earlier runs: the list has the focus at once, its keys in the footer and the hint
            assert s.in_list and "checkpoints" in footer_keys(app) and "watch" in footer_keys(app)
            await pilot.pause(0.1)
            assert hint.render().plain.startswith("enter/w watch")
            s.query_one("#f-data", Input).focus()  # in the form the letters are text: not offered
            await pilot.pause(0.1)
            assert "checkpoints" not in footer_keys(app) and "watch" not in footer_keys(app)
            assert hint.render().plain.startswith("tab to this list")
            await pilot.press("shift+tab")  # (the form's first field; the list is before it)
            await wait_for(pilot, lambda: s.in_list, what="shift+tab reaching the list")
            assert "checkpoints" in footer_keys(app) and "[b]c[/b]" in HINT_IN_LIST
            for _ in range(2):  # to the browser and back, twice
                await pilot.press("c")
                await wait_for(pilot, lambda: isinstance(app.screen, BrowserScreen), what="the browser")
                await pilot.press("escape")
                await wait_for(pilot, lambda: app.screen is s, what="the start screen")
                await pilot.pause(0.1)
                assert app.focused is s.query_one("#runs-table", DataTable)
                assert "checkpoints" in footer_keys(app)
            assert all("c" not in i.value for i in s.query(Input) if i.id != "f-data")  # c never typed into a field
            assert s.query_one("#f-data", Input).value == "cifar10"

    asyncio.run(main())


@pytest.mark.parametrize("size", SIZES)
def test_keys_sent_fast_land_in_the_field_the_tabs_lead_to(tmp_path, size):
    async def main():
        app = CifarTuiApp("start", runs_dir=str(tmp_path / "runs"))
        async with app.run_test(size=size) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, StartScreen), what="the start screen")
            await pilot.pause(0.2)
            assert app.focused.id == "f-data"
            # all at once, as a terminal delivers a paste or tmux send-keys: no wait between keys
            for key in [*"synthetic", "tab", "tab", *"7", "tab", *"0.5", "tab", *"64", "shift+tab", "shift+tab",
                        "tab", "tab", "tab", *"0.02"]:
                app.simulate_key(key)
            await pilot.pause(0.5)
            q = app.screen.query_one
            got = {w: q(f"#{w}", Input).value for w in ("f-data", "f-epochs", "f-width", "f-batch", "f-lr")}
            assert got == {"f-data": "synthetic", "f-epochs": "7", "f-width": "0.5", "f-batch": "64", "f-lr": "0.02"}

    asyncio.run(main())


def test_an_error_goes_once_its_field_is_fixed(tmp_path):
    async def main():
        app = CifarTuiApp("start", runs_dir=str(tmp_path / "runs"))
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, StartScreen), what="the start screen")
            form = app.screen.query_one(RunForm)
            epochs = app.screen.query_one("#f-epochs", Input)
            epochs.value = "0"
            form.submit()
            await pilot.pause(0.1)
            assert "Epochs must be" in form.error and epochs.has_class("-invalid") and app.focused is epochs
            await pilot.press("end", "backspace")  # still wrong (empty): still said
            await pilot.pause(0.1)
            assert "Epochs is empty" in form.error
            await pilot.press("3")
            await pilot.pause(0.1)
            assert form.error == "" and not epochs.has_class("-invalid")

    asyncio.run(main())
