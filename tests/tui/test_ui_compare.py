"""The checkpoint browser's keyboard sort, and comparing runs."""

from __future__ import annotations

import asyncio
import json
import shutil

import pytest
from textual.widgets import DataTable

from tui_trainer.screens.browser import BrowserScreen
from tui_trainer.screens.compare import CompareRunsPlot, CompareScreen, differing_settings
from ui_support import browsing, press, wait_for


@pytest.fixture
def two_runs(finished_run, tmp_path):
    """Two copies of the session's finished run, the second with another learning rate."""
    root = tmp_path / "cmp"
    a = root / "20240101-000000-tiny"
    b = root / "20240202-000000-tiny"
    shutil.copytree(finished_run, a)
    shutil.copytree(finished_run, b)
    info = json.loads((b / "config.json").read_text())
    info["config"]["lr"] = 0.2
    info["run_id"] = b.name
    (b / "config.json").write_text(json.dumps(info))
    return root, a, b


def header(table: DataTable) -> list[str]:
    return [str(c.label) for c in table.columns.values()]


def test_keyboard_sort_with_a_direction_arrow(two_runs):
    root, a, b = two_runs

    async def main():
        async with browsing(root) as (app, pilot, s):
            table = s.query_one(DataTable)
            assert "Run ▼" in header(table)  # newest run first
            assert [r.run.run_id for r in s.rows][0] == b.name
            await press(pilot, "s")  # the next column: the checkpoint's name, ascending
            await wait_for(pilot, lambda: s.sort_key == "ckpt", what="sorted by checkpoint")
            assert "Checkpoint ▲" in header(table) and "Run" in header(table)
            names = [r.ckpt.name for r in s.rows]
            assert names == sorted(names)
            await press(pilot, "S")  # reversed
            await wait_for(pilot, lambda: s.sort_reverse, what="reversed")
            assert "Checkpoint ▼" in header(table)
            assert [r.ckpt.name for r in s.rows] == sorted(names, reverse=True)
            for _ in range(2):  # Ep, then Val %
                await press(pilot, "s")
            await wait_for(pilot, lambda: s.sort_key == "val", what="sorted by val")
            assert "Val % ▼" in header(table)  # numbers: best first
            vals = [r.ckpt.val_acc for r in s.rows]
            assert vals == sorted(vals, reverse=True)
            # the cursor stays on the checkpoint it was on
            table.move_cursor(row=2)
            await pilot.pause(0.05)
            path = s.current().path
            await press(pilot, "S")
            await pilot.pause(0.1)
            assert s.current().path == path

    asyncio.run(main())


def test_compare_two_runs(two_runs):
    root, a, b = two_runs

    async def main():
        async with browsing(root) as (app, pilot, s):
            table = s.query_one(DataTable)
            await press(pilot, "v")  # nothing marked: says what to do
            await pilot.pause(0.1)
            assert isinstance(app.screen, BrowserScreen)
            await press(pilot, "space")  # marks the run of the first row (b, the newest)
            await wait_for(pilot, lambda: s.marked == [str(b)], what="b marked")
            row_a = next(i for i, r in enumerate(s.rows) if r.run.path == str(a))
            table.move_cursor(row=row_a)
            await pilot.pause(0.05)
            await press(pilot, "space")
            await wait_for(pilot, lambda: len(s.marked) == 2, what="a marked")
            marks = [str(table.get_row_at(i)[0]) for i in range(table.row_count)]
            assert set(marks) == {"◆"}  # every checkpoint row of a marked run shows it
            await press(pilot, "v")
            await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen), what="the comparison")
            cmp = app.screen
            await wait_for(pilot, lambda: cmp.loaded, what="the curves")
            acc = cmp.query_one("#compare-acc", CompareRunsPlot)
            loss = cmp.query_one("#compare-loss", CompareRunsPlot)
            assert [name for name, _, _ in acc.series] == [b.name, a.name]
            assert all(xs == [1, 2] for _, xs, _ in acc.series) and all(len(ys) == 2 for _, _, ys in loss.series)
            legend = str(cmp.query_one("#compare-legend").render())
            assert a.name in legend and b.name in legend
            settings = cmp.query_one("#compare-settings", DataTable)
            rows = {str(settings.get_row_at(i)[0]): [str(c) for c in settings.get_row_at(i)[1:]]
                    for i in range(settings.row_count)}
            assert rows["lr"] == ["0.2", "0.05"]  # the one setting that differs
            assert "width" not in rows and "status" in rows and "best val" in rows
            await press(pilot, "escape")
            await wait_for(pilot, lambda: isinstance(app.screen, BrowserScreen), what="back")

    asyncio.run(main())


def test_differing_settings():
    class R:
        def __init__(self, cfg):
            self.config = cfg

    runs = [R({"lr": 0.1, "width": 1.0, "runs_dir": "/a"}), R({"lr": 0.1, "width": 0.5, "runs_dir": "/b"}),
            R({"lr": 0.1, "seed": 3})]
    assert differing_settings(runs) == [("width", [1.0, 0.5, None]), ("seed", [None, None, 3])]
