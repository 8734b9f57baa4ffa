"""The UI's entry layer: stop signals in one place, the detached run's spec, the dashboard's keys
from one table, every dashboard widget refreshed one way."""

from __future__ import annotations

import os
import signal

import pytest

from engine import events as ev
from tui_trainer.detach import DetachError, read_spec
from tui_trainer.detached_run import child_main
from tui_trainer.signals import (APP_SIGNALS, HEADLESS_SIGNALS, STOP_REASONS, StopSignals, stop_command,
                                 stop_reason)


def test_stop_signals_are_installed_then_restored():
    seen = []

    def handler(signum, frame):
        seen.append(signum)

    before = signal.getsignal(signal.SIGTERM)
    with StopSignals(handler, (signal.SIGTERM,)):
        assert signal.getsignal(signal.SIGTERM) is handler
        signal.raise_signal(signal.SIGTERM)
    assert seen == [signal.SIGTERM]
    assert signal.getsignal(signal.SIGTERM) is before
    with StopSignals(handler, (signal.SIGTERM,), enabled=False):
        assert signal.getsignal(signal.SIGTERM) is before


def test_one_vocabulary_of_stop_signals_for_headless_and_the_app():
    assert set(APP_SIGNALS) < set(HEADLESS_SIGNALS) == set(STOP_REASONS)
    assert signal.SIGINT not in APP_SIGNALS  # Ctrl+C is a key in the app
    assert stop_command(signal.SIGHUP) == ev.Stop(save=True, reason="stopped because the terminal closed (SIGHUP)")
    assert stop_reason(None, "stopped because the app closed") == "stopped because the app closed"


def test_a_detached_runs_spec_is_read_back_or_refused_in_one_line(tmp_path, capsys):
    from engine.config import make_config

    cfg = make_config("tiny", data="synthetic", runs_dir=str(tmp_path))
    import json

    from tui_trainer.detach import write_spec

    path = tmp_path / ".detach.json"
    write_spec(path, {"config": cfg.to_dict(), "resume": None, "resume_overrides": None,
                      "run_dir": str(tmp_path / "r")})
    assert path.stat().st_mode & 0o077 == 0  # owner-only
    spec = read_spec([str(path)])
    assert spec["config"] == cfg and spec["run_dir"] == str(tmp_path / "r")
    assert not path.exists()  # removed once read
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "big").write_text(" " * (2 << 20))
    (tmp_path / "link").symlink_to(tmp_path / "big")
    bad_files = []
    for i, text in enumerate(("not json", "[1, 2]", json.dumps({"config": {"epochs": -1}}))):
        (tmp_path / f"bad{i}").write_text(text)
        bad_files.append([str(tmp_path / f"bad{i}")])
    for bad in ([], [str(tmp_path / "missing")], [str(fifo)], [str(tmp_path / "big")], [str(tmp_path / "link")],
                *bad_files):
        with pytest.raises(DetachError):
            read_spec(bad)
    assert child_main([str(tmp_path / "missing")]) == 2
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("error: a detached run needs its settings")


def test_the_dashboards_keys_come_from_one_table():
    from engine import commands
    from tui_trainer.screens.dashboard import COMMAND_ACTIONS, DASHBOARD_KEYS, PALETTE_EXTRAS, DashboardScreen

    keys = [(b.key, b.action, b.description, b.tooltip, b.show) for b in DashboardScreen.BINDINGS]
    assert keys == [(k.key, k.action, k.label, k.description, k.show) for k in DASHBOARD_KEYS]
    assert keys[0][:2] == ("q", "quit")  # first: a narrow footer never hides it
    # the commands' keys are the engine's table's, words and all (not written a second time)
    table = [(k.key, k.action, k.label, k.description, k.show) for k in commands.KEYS]
    assert [k for k in keys if k[1] in COMMAND_ACTIONS] == table
    assert ("[", "lr_halve") in [k[:2] for k in keys] and ("]", "lr_double") in [k[:2] for k in keys]
    assert PALETTE_EXTRAS == {"mixup_schedule", "smoothing"}
    for action in COMMAND_ACTIONS:  # every key of the table does something here
        assert callable(getattr(DashboardScreen, f"action_{action}", None)), action


def test_every_dashboard_widget_is_refreshed_through_update_from():
    from tui_trainer.bridge import StaticSource
    from tui_trainer.screens.dashboard import DashboardScreen
    from tui_trainer.widgets import EventLog, StatusPanel, TrainingPlots
    from tui_trainer.widgets.system import SystemPanel

    from ui_support import FixedSampler

    dash = DashboardScreen(StaticSource([]), sampler=FixedSampler())
    assert {type(w) for w in dash.fed} == {TrainingPlots, StatusPanel, SystemPanel, EventLog}
    for w in dash.fed:
        assert callable(getattr(w, "update_from", None)), type(w).__name__
