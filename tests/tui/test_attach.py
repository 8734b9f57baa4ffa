"""The dashboard attached to a run that another process trains (`cifar-tui watch RUN`),
the start screen's Detach switch, and a dashboard whose terminal closes."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

from engine import control
from engine.rundir import RunDir
from engine.runs import run_status
from tui_trainer.app import CifarTuiApp
from tui_trainer.bridge import AttachSource
from tui_trainer.screens import DashboardScreen
from procs import assert_stopped_from_another_terminal, events_of, hang_up_in_a_closed_terminal, start_trainer
from ui_support import press, quit_app, wait_for


def dashboard(app) -> DashboardScreen:
    screen = app.screen
    assert isinstance(screen, DashboardScreen)
    return screen


def status_text(app) -> str:
    return dashboard(app).status.plain


async def attached(pilot, app, state: str) -> DashboardScreen:
    """The dashboard, once it can send the run commands and its status shows ``state``."""
    dash = dashboard(app)
    await wait_for(pilot, lambda: dash.source.can_command and state in status_text(app), what=f"attached, {state}")
    return dash


def test_watch_attaches_p_pauses_q_detaches_x_stops(tmp_path):
    p, run = start_trainer(tmp_path, "--no-ui", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    async def pause_then_detach():
        app = CifarTuiApp("watch", run_dir=run)
        async with app.run_test(size=(100, 30)) as pilot:
            dash = await attached(pilot, app, "● running")
            assert dash.check_action("pause", ()) is True and dash.check_action("detach", ()) is True
            assert "attached to" in dash.sub_title
            await press(pilot, "p")
            await wait_for(pilot, lambda: "‖ paused" in status_text(app), what="paused, as its events say")
            assert any(d["event"] == "StateChanged" and d["state"] == "paused" for d in events_of(run))
            assert dash.check_action("resume", ()) is True  # p now resumes
            await quit_app(pilot)  # detach
        assert app.return_code == 0

    async def stop():
        app = CifarTuiApp("watch", run_dir=run)
        async with app.run_test(size=(100, 30)) as pilot:
            dash = await attached(pilot, app, "‖ paused")
            await press(pilot, "x")
            await wait_for(pilot, lambda: "■ stopped" in status_text(app), what="stopped, as its events say")
            await wait_for(pilot, lambda: dash.check_action("stop", ()) is False, what="no more commands")
            await quit_app(pilot)  # now: quit

    try:
        asyncio.run(pause_then_detach())
        assert p.poll() is None and run_status(RunDir(run))[0] == "running"  # q left it training (paused)
        assert RunDir(run).lock_owner().pid == p.pid  # the viewer never took the lock
        asyncio.run(stop())
        assert p.wait(60) == 0
    finally:
        if p.poll() is None:
            p.kill()
    assert_stopped_from_another_terminal(run)


def test_a_command_that_cannot_be_delivered_is_shown_not_raised(tmp_path):
    import json
    import socket

    run = tmp_path / "runs" / "r"
    (run / "checkpoints").mkdir(parents=True)
    (run / "metrics.jsonl").write_text("")
    (run / ".lock").write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": "now"}))
    got: list = []
    channel = control.ControlChannel.open(RunDir(run), got.append, poll_seconds=3600)

    async def main():
        app = CifarTuiApp("watch", run_dir=run)
        async with app.run_test(size=(100, 30)) as pilot:
            dash = dashboard(app)
            await wait_for(pilot, lambda: dash.source.can_command, what="the channel")
            channel.close()  # the run ends between the look and the key
            await press(pilot, "s")
            await wait_for(pilot, lambda: any("not sent" in line for line in dash.event_log.lines_written),
                           what="the refusal in the log")
            await quit_app(pilot)

    asyncio.run(main())
    assert got == []


def test_start_screen_detach_starts_a_background_run_and_attaches(tmp_path):
    from textual.widgets import Input, Select, Switch

    runs = tmp_path / "runs"

    async def main():
        app = CifarTuiApp("start", runs_dir=runs)
        async with app.run_test(size=(100, 30)) as pilot:
            screen = app.screen
            screen.query_one("#f-data", Input).value = "synthetic"
            screen.query_one("#f-preset", Select).value = "tiny"
            await pilot.pause(0.1)
            screen.query_one("#f-epochs", Input).value = "500"
            screen.query_one("#f-width", Input).value = "0.125"
            screen.query_one("#f-detach", Switch).value = True
            await pilot.click("#f-start")
            await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), what="the attached dashboard")
            dash = dashboard(app)
            assert isinstance(dash.source, AttachSource) and app.session is None  # not trained in this process
            await wait_for(pilot, lambda: dash.source.can_command, what="commands over the channel")
            await press(pilot, "x")
            await wait_for(pilot, lambda: "■ stopped" in status_text(app), what="stopped")
            return Path(dash.source.run_dir)

    run = asyncio.run(main())
    final = events_of(run)[-1]
    assert final["event"] == "RunFinished" and final["outcome"] == "stopped"
    assert RunDir(run).log_path.is_file()  # the background process wrote its output there


def test_a_dashboard_whose_terminal_closes_saves_and_stops(tmp_path):
    """Textual does nothing on SIGHUP by default (the process would die unsaved): the app
    stops the run with a checkpoint, waits for it, and exits 129."""
    run, events = hang_up_in_a_closed_terminal(tmp_path)
    final = events[-1]
    assert final["event"] == "RunFinished" and final["outcome"] == "stopped"
    assert "terminal closed (SIGHUP)" in final["reason"]
    assert RunDir(run).last_checkpoint.is_file() and not RunDir(run).lock_path.exists()
