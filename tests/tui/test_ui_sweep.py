"""The Sweep screen on a real (tiny) sweep: the table fills as trials run; `w` opens the
running trial's live dashboard and `esc` comes back; `k` prunes the running trial; `x`
stops after this trial; `q` quits once the trial is saved."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from textual.widgets import DataTable

from engine.sweep import default_storage, load_spec
from engine.trials import Sweep, summary_rows
from tui_trainer.app import build_sweep_app
from tui_trainer.screens.sweep import SweepScreen, TrialDashboard
from tests.procs import tiny_spec
from ui_support import wait_for

def spec_text(name: str, epochs: int, search: str = "lr = { choices = [0.05, 0.1] }") -> str:
    """A tiny sweep's spec (synthetic data, width 0.0625, 64 images): ``search`` its [search] lines."""
    return tiny_spec(name, epochs=epochs, subset=64, val_size=32, search=search)


def make_sweep(tmp_path, epochs: int) -> Sweep:
    (tmp_path / "s.toml").write_text(spec_text("ui", epochs))
    spec = load_spec(tmp_path / "s.toml")
    runs = tmp_path / "runs"
    return Sweep(spec, default_storage(runs, spec.name), runs_dir=str(runs), device="cpu")


@pytest.mark.timeout(300)
def test_the_table_fills_and_k_prunes_the_running_trial(tmp_path):
    runner = make_sweep(tmp_path, epochs=200)  # trains until pruned

    async def main():
        app = build_sweep_app(runner, 1)
        async with app.run_test(size=(110, 32)) as pilot:
            screen = app.screen
            assert isinstance(screen, SweepScreen)
            table = screen.query_one("#sweep-trials", DataTable)
            await wait_for(pilot, lambda: any(r["state"] == "running" and r.get("epochs") for r in screen.rows),
                           what="a running trial with an epoch")
            assert table.row_count == 1 and "lr" in [str(c.label) for c in table.columns.values()]
            await pilot.press("w")  # the running trial's live dashboard, attached to its run
            await wait_for(pilot, lambda: isinstance(app.screen, TrialDashboard), what="the trial's dashboard")
            dash = app.screen
            assert dash.source.kind == "watch" and str(dash.source.run_dir) == screen.rows[0]["run_dir"]
            await wait_for(pilot, lambda: dash.run_state.epochs_done >= 1, what="the dashboard's epochs")
            await pilot.press("escape")
            await wait_for(pilot, lambda: app.screen is screen, what="the Sweep screen again")
            await pilot.press("k")
            await wait_for(pilot, lambda: screen.finished, what="the sweep to end")
            assert [r["state"] for r in screen.rows] == ["pruned"]
            assert str(table.get_row_at(0)[1]) == "pruned"
            await pilot.press("q")
            await pilot.pause()
        assert app.return_code == 0

    asyncio.run(main())
    assert [r["state"] for r in summary_rows(runner.study)] == ["pruned"]


@pytest.mark.timeout(300)
def test_x_stops_after_the_trial_and_the_best_row_is_highlighted(tmp_path):
    runner = make_sweep(tmp_path, epochs=3)

    async def main():
        app = build_sweep_app(runner, 3)
        async with app.run_test(size=(110, 32)) as pilot:
            screen = app.screen
            await wait_for(pilot, lambda: any(r["state"] == "running" for r in screen.rows), what="a running trial")
            await pilot.press("x")
            await wait_for(pilot, lambda: screen.finished, what="the sweep to stop")
            assert [r["state"] for r in screen.rows] == ["complete"]  # one trial, not three
            cells = screen.query_one("#sweep-trials", DataTable).get_row_at(0)
            assert "green" in str(cells[0].style)
            await pilot.press("q")
            await pilot.pause()

    asyncio.run(main())


@pytest.mark.timeout(300)
def test_q_saves_the_running_trial_which_is_queued_to_resume(tmp_path):
    runner = make_sweep(tmp_path, epochs=200)

    async def main():
        app = build_sweep_app(runner, 1)
        async with app.run_test(size=(110, 32)) as pilot:
            screen = app.screen
            await wait_for(pilot, lambda: any(r["state"] == "running" and r.get("epochs") for r in screen.rows),
                           what="a running trial with an epoch")
            await pilot.press("q")
            await wait_for(pilot, lambda: screen.finished, what="the trial to be saved")
            await pilot.pause()
        assert app.return_code == 0

    asyncio.run(main())
    rows = summary_rows(runner.study)
    assert [r["state"] for r in rows] == ["failed", "queued"]  # interrupted, then queued again
    run = rows[0]["run_dir"]
    assert (Path(run) / "checkpoints" / "last.pt").is_file()
    assert runner.study.trials[1].user_attrs["resume_from"] == run
