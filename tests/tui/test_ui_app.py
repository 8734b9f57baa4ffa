"""Pilot tests of the dashboard (``App.run_test``), most with a real engine on synthetic data.

Each real run uses a width-0.125 network on 600 synthetic images: about a second
per epoch on a 2-core CPU.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import pytest

from engine import events as ev
from engine.config import make_config
from tui_trainer.app import CifarTuiApp, run_watch_app
from engine.runs import list_runs
from tui_trainer.screens import BrowserScreen, DashboardScreen, StartScreen
from tui_trainer.widgets.plots import AccuracyPlot, LearningRatePlot, LossPlot
from ui_support import demo_events, press, quit_app, wait_for

SIZE = (100, 30)


def tiny(tmp_path, **kw):
    base = dict(data="synthetic", width=0.125, subset=600, val_size=200, epochs=2, log_every=2,
                runs_dir=str(tmp_path / "runs"))
    base.update(kw)
    return make_config("tiny", **base)


def run(coro):
    return asyncio.run(coro)


def dashboard(app) -> DashboardScreen:
    for screen in reversed(app.screen_stack):
        if isinstance(screen, DashboardScreen):
            return screen
    raise AssertionError("no dashboard on the screen stack")


def spy_on_trainer(app) -> list:
    """Record every command that reaches Trainer.send (wraps the real method)."""
    received: list = []
    trainer = app.session.trainer
    real = trainer.send

    def send(cmd):
        received.append(cmd)
        real(cmd)

    trainer.send = send
    return received


async def started(pilot, app, steps: int = 1):
    await wait_for(pilot, lambda: app.session is not None and app.session.trainer is not None, what="the trainer")
    await wait_for(pilot, lambda: dashboard(app).run_state.global_step >= steps, what="the first steps")


def status_text(app) -> str:
    return dashboard(app).status.plain


# ------------------------------------------------------------------ real engine


def test_plots_fill_as_epochs_finish(tmp_path):
    async def main():
        app = CifarTuiApp("train", config=tiny(tmp_path, epochs=2))
        async with app.run_test(size=SIZE) as pilot:
            await started(pilot, app)
            dash = dashboard(app)
            loss, acc, lr = dash.query_one(LossPlot), dash.query_one(AccuracyPlot), dash.query_one(LearningRatePlot)
            assert loss.points.get("train", 0) >= 1
            await wait_for(pilot, lambda: acc.points.get("val", 0) >= 1, what="epoch 1 in the accuracy plot")
            assert loss.points["val"] >= 1 and loss.points["train/epoch"] >= 1
            await wait_for(pilot, lambda: dash.run_state.state == "finished", what="the end of the run")
            await pilot.pause(0.4)
            assert acc.points == {"train": 2, "val": 2}
            assert loss.points["val"] == 2 and loss.points["train"] >= 4
            assert lr.points["lr"] == loss.points["train"]
            text = status_text(app)
            assert "✔ completed" in text and "2 / 2" in text and "79,339" in text and "cpu" in text
            assert "Best val" in text and "(epoch" in text
            assert any("saved last.pt (epoch 2" in line for line in dash.event_log.lines_written)
            # redraws are coalesced: never more than once per tick (plus resizes)
            assert dash.plots.redraws <= dash.ticks + 3
            await quit_app(pilot)
        assert app.return_code == 0

    run(main())


def test_keys_send_commands_and_status_follows_events(tmp_path):
    async def main():
        cfg = tiny(tmp_path, epochs=30)
        app = CifarTuiApp("train", config=cfg)
        async with app.run_test(size=SIZE) as pilot:
            await started(pilot, app)
            received = spy_on_trainer(app)
            dash = dashboard(app)
            st = dash.run_state

            async def key(k, expected):
                n = len(received)
                await press(pilot, k)
                await wait_for(pilot, lambda: len(received) > n, what=f"the command for {k}")
                assert received[n:] == [expected]

            await key("m", ev.SetMixup(on=True))  # tiny preset: mixup off -> on
            await wait_for(pilot, lambda: "Mixup on (your override)" in status_text(app), what="mixup on")

            await key("p", ev.Pause())
            await wait_for(pilot, lambda: "paused" in status_text(app), what="paused")
            assert dash.check_action("resume", ()) is True and dash.check_action("pause", ()) is False  # footer: p Resume
            step = st.global_step
            await pilot.pause(0.6)
            assert st.global_step == step  # really paused

            await key("p", ev.Resume())
            await wait_for(pilot, lambda: "● running" in status_text(app), what="running again")

            await key("right_square_bracket", ev.SetLearningRate(factor=2.0))  # ], confirmed by an LrChanged
            await wait_for(pilot, lambda: "(x2)" in status_text(app), what="the lr doubled")
            loss = dash.query_one(LossPlot)
            await wait_for(pilot, lambda: any(label.startswith("lr ") for _, label in loss.drawn_marks),
                           what="the lr marker")

            await key("s", ev.SaveCheckpoint())
            await wait_for(pilot, lambda: any("saved manual-" in line for line in dash.event_log.lines_written),
                           what="the manual checkpoint")

            await key("x", ev.Stop(save=True))
            await wait_for(pilot, lambda: st.state == "finished", what="stopped")
            await pilot.pause(0.4)
            assert "■ stopped" in status_text(app) and "stopped by request" in status_text(app)
            assert "✔" not in status_text(app)  # a stopped run does not look like a completed one
            assert app.return_code is None  # x keeps the app open
            # commands are gone from the footer once the run is over
            assert dash.check_action("pause", ()) is False

            await quit_app(pilot)  # nothing running: quits at once, no further command
            assert received == [ev.SetMixup(on=True), ev.Pause(), ev.Resume(), ev.SetLearningRate(factor=2.0),
                                ev.SaveCheckpoint(), ev.Stop(save=True)]
            labels = [label for _, label in loss.drawn_marks]
            assert labels[:3] == ["mixup on", "pause", "resume"] and labels[3].startswith("lr ")
            assert "save" in labels and "stop" in labels
        assert app.return_code == 0
        ckpts = list(Path(cfg.runs_dir).glob("*/checkpoints/last.pt"))
        assert len(ckpts) == 1
        from engine.checkpoint import load_checkpoint

        assert load_checkpoint(ckpts[0])["config"]["epochs"] == 30

    run(main())


@pytest.mark.parametrize("key", ["q", "ctrl+c"])
def test_quit_during_training_saves_and_waits(tmp_path, key):
    async def main():
        cfg = tiny(tmp_path, epochs=30)
        app = CifarTuiApp("train", config=cfg)
        async with app.run_test(size=SIZE) as pilot:
            await started(pilot, app, steps=2)
            received = spy_on_trainer(app)
            log = dashboard(app).event_log
            await press(pilot, key)
            await wait_for(pilot, lambda: bool(received), what="the stop command")
            assert received == [ev.Stop(save=True)]
            assert app.quitting
            await wait_for(pilot, lambda: app.return_code is not None, what="exit after the save")
            lines = list(log.lines_written)
        assert app.return_code == 0
        assert not app.session.active
        assert any("state: stopping (stop requested, saving a checkpoint)" in line for line in lines)
        assert any("saved last.pt" in line for line in lines)
        from engine.checkpoint import load_checkpoint

        (last,) = Path(cfg.runs_dir).glob("*/checkpoints/last.pt")
        ck = load_checkpoint(last)
        assert ck["global_step"] >= 2

    run(main())


def test_nan_loss_shows_failed_and_the_app_stays_usable(tmp_path):
    async def main():
        app = CifarTuiApp("train", config=tiny(tmp_path, epochs=3, lr=100.0, weight_decay=1.0))
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.session is not None and not app.session.active, what="the failure")
            dash = dashboard(app)
            await wait_for(pilot, lambda: dash.run_state.state == "failed", what="failed state")
            await pilot.pause(0.4)
            text = status_text(app)
            assert "failed" in text and ("the loss became NaN" in text or "the loss became infinite" in text)
            assert any("failed: the loss became" in line and "--lr" in line for line in dash.event_log.lines_written)
            assert dash.check_action("stop", ()) is False  # a failed run: x is gone from the footer
            await pilot.press("c")  # still usable: the checkpoint list opens and closes
            await wait_for(pilot, lambda: isinstance(app.screen, BrowserScreen), what="checkpoint screen")
            await pilot.press("escape")
            await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), what="back to the dashboard")
            await quit_app(pilot)
        assert app.return_code == 1

    run(main())


def test_bad_data_fails_before_the_run_starts(tmp_path):
    async def main():
        app = CifarTuiApp("train", config=tiny(tmp_path, data=str(tmp_path / "nowhere")))
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: dashboard(app).run_state.state == "failed", what="failed state")
            await pilot.pause(0.4)
            assert "no such file or folder" in status_text(app)
            await pilot.press("c")  # no run folder yet: a notice, not a crash
            await pilot.pause(0.1)
            assert isinstance(app.screen, DashboardScreen)
            await quit_app(pilot)
        assert app.return_code == 1

    run(main())


def test_resume_shows_the_earlier_epochs(run_copy):
    last = run_copy / "checkpoints" / "last.pt"  # a finished 2-epoch run

    async def main():
        app = CifarTuiApp("train", resume=str(last), resume_overrides={"epochs": 3})
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.session is not None and not app.session.active, what="the resumed run")
            dash = dashboard(app)
            await wait_for(pilot, lambda: dash.run_state.state == "finished", what="finished")
            await pilot.pause(0.4)
            assert [h.epoch for h in dash.run_state.history] == [1, 2, 3]  # epochs 1 and 2 from metrics.jsonl
            assert dash.query_one(AccuracyPlot).points["val"] == 3
            assert any("loaded the run's history" in line for line in dash.event_log.lines_written)
            assert any("resumed from" in line for line in dash.event_log.lines_written)
            assert "3 / 3" in status_text(app)
            await quit_app(pilot)
        assert app.return_code == 0

    run(main())


# ------------------------------------------------------------ a scripted trainer


class ScriptedTrainer:
    """Stands in for engine.trainer.Trainer: emits only what the test tells it to."""

    instances: list["ScriptedTrainer"] = []

    def __init__(self, config, listeners=(), resume=None, resume_overrides=None):
        self.listeners = list(listeners)
        self.received: list = []
        self.result = None
        self._end = threading.Event()
        ScriptedTrainer.instances.append(self)

    def emit(self, e):
        for fn in self.listeners:
            fn(e)

    def send(self, cmd):
        self.received.append(cmd)

    def start(self):
        t = threading.Thread(target=self._end.wait, daemon=True)
        t.start()
        return t

    def finish(self, state="completed"):
        self.result = ev.RunFinished(outcome=state, reason="done")
        self.emit(ev.StateChanged(state="failed" if state == "failed" else "finished", reason="done"))
        self.emit(self.result)
        self._end.set()


def scripted_app(tmp_path) -> CifarTuiApp:
    """The dashboard of a run whose trainer is a :class:`ScriptedTrainer`."""
    ScriptedTrainer.instances.clear()
    return CifarTuiApp("train", config=tiny(tmp_path), trainer_factory=ScriptedTrainer)


async def scripted_trainer(pilot) -> ScriptedTrainer:
    """The app's :class:`ScriptedTrainer`, once the app has made it."""
    await wait_for(pilot, lambda: bool(ScriptedTrainer.instances), what="trainer")
    return ScriptedTrainer.instances[-1]


def test_status_changes_only_when_the_engine_confirms(tmp_path):
    async def main():
        app = scripted_app(tmp_path)
        async with app.run_test(size=SIZE) as pilot:
            fake = await scripted_trainer(pilot)
            for e in demo_events(epochs_done=1, epochs=3, steps_per_epoch=10, log_every=5):
                fake.emit(e)
            await wait_for(pilot, lambda: "● running" in status_text(app), what="running")
            await pilot.press("p")
            await pilot.pause(0.8)  # several ticks, no confirmation yet
            assert fake.received == [ev.Pause()]
            assert "● running" in status_text(app) and "paused" not in status_text(app)
            await pilot.press("p")  # a second press before the confirmation means "resume"
            assert fake.received == [ev.Pause(), ev.Resume()]
            fake.emit(ev.StateChanged(state="paused", reason="paused by request"))
            await wait_for(pilot, lambda: "paused" in status_text(app), what="paused")
            await pilot.press("m")
            assert fake.received[-1] == ev.SetMixup(on=False) or fake.received[-1] == ev.SetMixup(on=True)
            await pilot.press("M")
            assert fake.received[-1] == ev.SetMixup(on=None)
            # every key is in the command palette, with its key
            titles = {c.title: c.help for c in app.get_system_commands(app.screen)}
            for title, key in [("Mixup", "m"), ("Pause", "p"), ("Save", "s"), ("Stop", "x"),
                               ("Checkpoints", "c"), ("Quit", "q")]:
                assert title in titles, title
                assert key in titles[title].rsplit("(key: ", 1)[1].rstrip(")").split(", "), titles[title]
            assert "Mixup: schedule" in titles
            fake.emit(ev.StateChanged(state="stopping", reason="stop requested, saving a checkpoint"))
            await wait_for(pilot, lambda: "stopping..." in status_text(app) and "saving a checkpoint" in status_text(app),
                           what="stopping")
            fake.finish()
            await wait_for(pilot, lambda: "✔ completed" in status_text(app), what="finished")
            await quit_app(pilot)

    run(main())


def test_a_flood_of_events_is_coalesced(tmp_path):
    async def main():
        app = scripted_app(tmp_path)
        async with app.run_test(size=SIZE) as pilot:
            fake = await scripted_trainer(pilot)
            dash = dashboard(app)
            ticks0, redraws0 = dash.ticks, dash.plots.redraws
            events = demo_events(epochs_done=40, epochs=50, steps_per_epoch=200, log_every=1)
            t0 = time.perf_counter()
            for e in events:  # as fast as the engine could possibly emit them
                fake.emit(e)
            emit_s = time.perf_counter() - t0
            assert emit_s < 0.2 * len(events) / 1000  # the listener only queues: < 0.2 ms per event
            await wait_for(pilot, lambda: dash.run_state.events_seen == len(events), what="all events")
            await pilot.pause(0.7)
            assert dash.plots.redraws - redraws0 <= dash.ticks - ticks0 + 1
            assert dash.query_one(LossPlot).points["train"] <= 2 * dash.query_one(LossPlot).size.width
            fake.finish()
            await quit_app(pilot)

    run(main())


# ------------------------------------------------------------------------ watch


def test_watch_follows_a_growing_metrics_file(tmp_path):
    run_dir = tmp_path / "runs" / "20231114-221320-paper"
    (run_dir / "checkpoints").mkdir(parents=True)
    events = demo_events(epochs_done=3, epochs=4, steps_per_epoch=10, log_every=5, run_dir=str(run_dir))
    events.append(ev.StateChanged(state="finished", reason="completed 4 epochs", time=events[-1].time + 1))
    events.append(ev.RunFinished(outcome="completed", reason="completed 4 epochs", time=events[-1].time))
    lines = [ev.event_to_json(e) + "\n" for e in events]
    hold_lock(run_dir)  # a live writer (this process) holds the run
    metrics = run_dir / "metrics.jsonl"
    first = next(i for i, e in enumerate(events) if isinstance(e, ev.EpochDone) and e.epoch == 1) + 1
    metrics.write_text("".join(lines[:first]) + lines[first][:15])  # ends in a torn line

    async def main():
        app = CifarTuiApp("watch", run_dir=run_dir)
        async with app.run_test(size=(80, 24)) as pilot:
            dash = dashboard(app)
            await wait_for(pilot, lambda: dash.run_state.events_seen == first, what="the first epoch")
            acc = dash.query_one(AccuracyPlot)
            await wait_for(pilot, lambda: acc.points.get("val") == 1, what="one epoch plotted")
            assert "● running" in status_text(app)
            assert dash.check_action("pause", ()) is False  # no commands when watching
            await pilot.press("p")
            assert app.session is None
            with open(metrics, "a") as fh:
                fh.write(lines[first][15:])
                fh.writelines(lines[first + 1:])
            await wait_for(pilot, lambda: dash.run_state.events_seen == len(events), what="the rest")
            await wait_for(pilot, lambda: acc.points.get("val") == 3, what="three epochs plotted")
            await wait_for(pilot, lambda: "✔ completed" in status_text(app), what="finished")
            assert dash.source.follower.bad_lines == 0
            await pilot.press("c")
            await wait_for(pilot, lambda: isinstance(app.screen, BrowserScreen), what="checkpoints")
            await quit_app(pilot)
        assert app.return_code == 0

    run(main())


def hold_lock(run_dir: Path) -> None:
    import os
    import socket

    (run_dir / ".lock").write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": "now"}))


def test_watch_without_metrics_is_an_error(tmp_path, capsys):
    assert run_watch_app(str(tmp_path)) == 2
    err = capsys.readouterr().err
    assert "no metrics.jsonl" in err and len(err.strip().splitlines()) == 1


# ---------------------------------------------------------- start and checkpoints


def fake_run(runs_dir: Path, name: str, *, epochs=10, done=3, val=0.5, outcome="stopped", reason="stopped by request"):
    d = runs_dir / name
    (d / "checkpoints").mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"run_id": name, "created": name, "config": {
        "preset": "tiny", "data": "synthetic", "epochs": epochs}}))
    for kind in ("last", "best"):
        (d / "checkpoints" / f"{kind}.pt").write_bytes(b"x" * 2048)
        (d / "checkpoints" / f"{kind}.json").write_text(json.dumps(
            {"kind": kind, "epoch": done, "val_acc": val, "saved": "2024-01-02T03:04:05+00:00"}))
    state = "failed" if outcome == "failed" else "finished"
    (d / "metrics.jsonl").write_text(ev.event_to_json(ev.StateChanged(state=state, reason=reason)) + "\n"
                                     + ev.event_to_json(ev.RunFinished(outcome=outcome, reason=reason)) + "\n")
    return d


def test_checkpoint_catalogue(tmp_path):
    d = fake_run(tmp_path, "r1")
    (d / "checkpoints" / "manual-e002-s0000020.pt").write_bytes(b"")  # no .json beside it
    (d / "checkpoints" / ".last.pt.tmp-1").write_bytes(b"")  # a temporary file is not listed
    (d / "checkpoints" / "best.eval.json").write_text(json.dumps(
        {"cifar10": {"accuracy": 0.61, "evaluated": "2099-01-01T00:00:00+00:00"}}))
    (d / "checkpoints" / "last.eval.json").write_text(json.dumps(  # evaluated before the file was written
        {"cifar10": {"accuracy": 0.55, "evaluated": "2000-01-01T00:00:00+00:00"}}))
    (run,) = list_runs(tmp_path)
    rows = {c.name: c for c in run.checkpoints}
    assert sorted(rows) == ["best.pt", "last.pt", "manual-e002-s0000020.pt"]
    assert rows["last.pt"].epoch == 3 and rows["last.pt"].val_acc == 0.5
    # an evaluation stored before results were tied to their file counts only if newer than the file
    assert rows["best.pt"].test_acc == 0.61 and not rows["best.pt"].test_stale
    assert rows["last.pt"].test_acc is None and rows["last.pt"].test_stale


def test_start_screen_form_runs_and_start(tmp_path):
    runs = tmp_path / "runs"
    fake_run(runs, "20240101-000000-tiny", val=0.42)
    fake_run(runs, "20240102-000000-tiny", outcome="failed", reason="boom")

    async def main():
        app = CifarTuiApp("start", runs_dir=str(runs))
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, StartScreen), what="start screen")
            start = app.screen
            from textual.widgets import DataTable, Input, Select, Switch

            table = start.query_one("#runs-table", DataTable)
            assert table.row_count == 2
            assert [r.status for r in start.runs] == ["failed", "stopped"]
            assert start.query_one("#f-data", Input).value == "cifar10"
            assert start.query_one("#f-epochs", Input).value == "430"
            start.query_one("#f-preset", Select).value = "tiny"
            await pilot.pause(0.1)
            assert start.query_one("#f-epochs", Input).value == "5"
            assert start.query_one("#f-width", Input).value == "0.25"
            assert start.query_one("#f-mixup", Switch).value is False
            # invalid values: the engine's message in the form's words, inline, no crash
            start.query_one("#f-epochs", Input).value = "0"
            await pilot.click("#f-start")
            await pilot.pause(0.1)
            err = start.query_one("#form-error")
            assert not err.has_class("-hidden") and "Epochs must be a whole number from 1 to 100,000 (got 0)" in str(err.render())
            start.query_one("#f-epochs", Input).value = "two"
            await pilot.click("#f-start")
            await pilot.pause(0.1)
            assert "got 'two'" in str(err.render())
            # watch an earlier run from the list, then come back
            table.focus()
            await pilot.press("w")
            await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), what="watch dashboard")
            assert app.screen.source.kind == "watch"
            await pilot.press("escape")
            await wait_for(pilot, lambda: isinstance(app.screen, StartScreen), what="back to start")
            # a real run from the form: it starts at once; x stops it with a checkpoint
            start.query_one("#f-data", Input).value = "synthetic"
            start.query_one("#f-epochs", Input).value = "1"
            start.query_one("#f-width", Input).value = "0.125"
            start.query_one("#f-start").press()
            await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), what="dashboard")
            dash = app.screen
            assert err.has_class("-hidden")
            assert dash.source.config.epochs == 1 and dash.source.config.width == 0.125
            assert dash.check_action("back", ()) is None  # can't leave a running run behind
            await wait_for(pilot, lambda: dash.run_state.state == "running", what="the run to start")
            await press(pilot, "x")
            await wait_for(pilot, lambda: dash.run_state.state == "finished", what="the stop")
            await wait_for(pilot, lambda: not app.session.active, what="the trainer thread")
            await pilot.pause(0.4)
            assert dash.check_action("back", ()) is True
            await press(pilot, "escape")
            await wait_for(pilot, lambda: isinstance(app.screen, StartScreen), what="back to start")
            await pilot.pause(0.1)
            assert table.row_count == 3
            await quit_app(pilot)

    run(main())


def test_start_screen_uses_the_default_runs_dir(tmp_path, monkeypatch):
    runs = tmp_path / "default-runs"
    fake_run(runs, "20240101-000000-tiny")
    monkeypatch.setenv("CIFAR_TUI_RUNS_DIR", str(runs))

    async def main():
        app = CifarTuiApp("start")
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, StartScreen) and app.screen.runs, what="the runs")
            assert app.screen.runs_dir == runs
            assert str(runs) in str(app.screen.query_one("#runs").border_title)
            await quit_app(pilot, "ctrl+q")
        assert app.return_code == 0

    run(main())


def test_watch_on_a_dead_run_says_interrupted_and_how_to_resume(tmp_path):
    import socket

    run_dir = tmp_path / "runs" / "20231114-221320-paper"
    (run_dir / "checkpoints").mkdir(parents=True)
    events = demo_events(epochs_done=2, epochs=4, steps_per_epoch=10, log_every=5, run_dir=str(run_dir))
    (run_dir / "metrics.jsonl").write_text("".join(ev.event_to_json(e) + "\n" for e in events))
    (run_dir / ".lock").write_text(json.dumps({"pid": 2**22 + 4321, "host": socket.gethostname(), "since": "x"}))

    async def main():
        app = CifarTuiApp("watch", run_dir=run_dir)
        async with app.run_test(size=(80, 24)) as pilot:
            dash = dashboard(app)
            await wait_for(pilot, lambda: "✖ interrupted" in status_text(app), what="interrupted")
            assert "running" not in status_text(app)
            assert dash.run_state.elapsed() == dash.run_state.ended_at - dash.run_state.started_at  # stopped
            assert any(f"cifar-tui train --resume {run_dir}" in line for line in dash.event_log.lines_written)
            await quit_app(pilot)

    run(main())
