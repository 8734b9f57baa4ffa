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
from ui_support import FixedSampler, clock_after, demo_events


class SnapshotSampler(FixedSampler):
    STATS = dict(cpu_pct=93.0, proc_cpu_pct=178.0, cores=2, mem_used=3 * 2**30, mem_total=23 * 2**30, rss=812 * 2**20,
                 threads=14, torch_threads=2, gpu=None, gpu_note="n/a (no nvidia-ml-py)")


@pytest.fixture(autouse=True)
def utc(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def replay(events):
    return CifarTuiApp("replay", events=events, clock=clock_after(events), sampler_factory=SnapshotSampler)


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


async def settle_inputs(pilot):
    from textual.widgets import Input

    for field in pilot.app.screen.query(Input):
        field.cursor_blink = False  # a blinking cursor would be on or off in the picture by chance
    await settle(pilot)


def test_start_screen_80x24(snap_compare):
    app = CifarTuiApp("start", runs_dir="/nonexistent/cifar-tui-runs")
    assert snap_compare(app, terminal_size=(80, 24), run_before=settle_inputs)
