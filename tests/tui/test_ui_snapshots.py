"""Snapshot tests of the dashboard and the start screen (pytest-textual-snapshot).

The dashboard is fed a fixed list of events with a frozen clock and UTC local
time, so no text depends on when the test runs. Regenerate after an intended
change with ``pytest tests/tui/test_ui_snapshots.py --snapshot-update`` and look at
the .svg files under tests/__snapshots__/ before committing them.
"""

from __future__ import annotations

import time

import pytest

from engine import events as ev
from tui_trainer.app import CifarTuiApp
from ui_support import clock_after, demo_events


@pytest.fixture(autouse=True)
def utc(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def replay(events):
    return CifarTuiApp("replay", events=events, clock=clock_after(events))


async def settle(pilot):
    await pilot.pause(0.2)
    await pilot.wait_for_scheduled_animations()


def test_dashboard_mid_training_100x30(snap_compare):
    assert snap_compare(replay(demo_events()), terminal_size=(100, 30), run_before=settle)


def test_dashboard_mid_training_80x24(snap_compare):
    assert snap_compare(replay(demo_events()), terminal_size=(80, 24), run_before=settle)


def test_dashboard_failed_80x24(snap_compare):
    events = demo_events(epochs_done=2, epochs=10)
    t = events[-1].time
    msg = ("the loss became NaN at epoch 3 step 20 (learning rate 0.0931); nothing was saved after it: "
           "lower --lr and resume from the last checkpoint")
    events += [ev.Failed(message=msg, time=t + 0.1), ev.StateChanged(state="failed", reason=msg, time=t + 0.1)]
    assert snap_compare(replay(events), terminal_size=(80, 24), run_before=settle)


def test_start_screen_80x24(snap_compare):
    app = CifarTuiApp("start", runs_dir="/nonexistent/cifar-tui-runs")
    assert snap_compare(app, terminal_size=(80, 24), run_before=settle)
