"""The dashboard's feedback while a run starts and trains: the first step at once, an ETA
that counts down between events, the data being decoded, the loss plot's log scale,
escape and the keys panel."""

from __future__ import annotations

import asyncio

import pytest

from engine import events as ev
from engine.config import make_config
from tui_trainer.app import CifarTuiApp
from tui_trainer.runstate import RunState
from tui_trainer.screens import DashboardScreen
from tui_trainer.sysstats import SystemSampler
from tui_trainer.widgets.plots import LossPlot, log_ticks, nice_ticks, split_outliers
from ui_support import demo_events, on_dashboard, press, quit_app, wait_for


def run(coro):
    return asyncio.run(coro)


class Clock:
    """A wall clock the test moves by hand."""

    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def fixed_sampler():
    """A system sampler that reads nothing real (the numbers are not what these tests look at)."""
    return SystemSampler(gpu_factory=lambda device: (None, "n/a"))


def status_row(dash: DashboardScreen, label: str) -> str:
    line = next(line.strip() for line in dash.status.plain.splitlines() if line.strip().startswith(label + " "))
    return line[len(label):].strip()


# ----------------------------------------------------------------------- first step


def test_the_first_step_shows_at_once(tmp_path):
    """With a log cadence longer than the run (log_every 1000, log_seconds 600) the only step
    events are the first step and the epoch's end: the dashboard shows step 1 at once."""
    cfg = make_config("tiny", data="synthetic", width=0.125, subset=640, val_size=100, epochs=1, batch_size=64,
                      log_every=1000, log_seconds=600, runs_dir=str(tmp_path / "runs"))
    seen: list[ev.StepDone] = []

    def factory(config, **kw):
        from engine.trainer import Trainer

        kw["listeners"] = [*kw.get("listeners", ()), lambda e: seen.append(e) if isinstance(e, ev.StepDone) else None]
        return Trainer(config, **kw)

    async def main():
        app = CifarTuiApp("train", config=cfg, trainer_factory=factory, sampler_factory=fixed_sampler)
        async with app.run_test(size=(100, 30)) as pilot:
            dash = await on_dashboard(pilot, app, lambda d: d.run_state.global_step, what="the first step event")
            assert seen[0].step_in_epoch == 1 and seen[0].step == 1
            await wait_for(pilot, lambda: status_row(dash, "step") != "-", what="the step in the status")
            assert status_row(dash, "step").endswith("/ 10") and status_row(dash, "Speed") != "-"
            await wait_for(pilot, lambda: not app.session.active, what="the end of the run")
            await pilot.pause(0.3)
            assert [e.step_in_epoch for e in seen] == [1, 10]
            assert status_row(dash, "Epoch") == "1 / 1" and status_row(dash, "step") == "10 / 10"
            await quit_app(pilot)

    run(main())


# ------------------------------------------------------------------------------ ETA


def test_eta_counts_down_between_events():
    events = demo_events(epochs_done=2, epochs=100)  # ends running, mid-epoch
    clock = Clock(events[-1].time)
    st = RunState(clock=clock)
    st.apply_all(events)
    first = st.eta()
    assert first is not None and first > 20
    clock.t += 5.0  # no event for five seconds
    assert st.eta() == first - 5
    clock.t += 1e6
    assert st.eta() == 0.0  # never below zero
    # a pause stops the countdown; resuming goes on from where it stood
    clock.t = events[-1].time + 2
    st.apply(ev.StateChanged(state="paused", reason="paused by request", time=clock.t))
    assert st.eta() is None
    clock.t += 100
    st.apply(ev.StateChanged(state="running", reason="resumed", time=clock.t))
    assert st.eta() == pytest.approx(first - 2)


def test_eta_in_the_dashboard_goes_down_without_new_events():
    events = demo_events(epochs_done=2, epochs=100)
    clock = Clock(events[-1].time + 0.2)

    async def main():
        app = CifarTuiApp("replay", events=events, clock=clock, sampler_factory=fixed_sampler)
        async with app.run_test(size=(100, 30)) as pilot:
            dash = await on_dashboard(pilot, app, lambda d: d.run_state.events_seen, what="the replay")
            await pilot.pause(0.2)
            before = status_row(dash, "ETA")
            seen = dash.run_state.events_seen
            clock.t += 7
            await pilot.pause(1.2)  # the status' numbers are redrawn about once a second
            assert dash.run_state.events_seen == seen  # nothing new arrived
            after = status_row(dash, "ETA")
            assert before != after
            assert dash.run_state.eta() is not None
            secs = lambda text: sum(int(p[:-1]) * (60 if p.endswith("m") else 1) for p in text.split())
            assert secs(before) - secs(after) == 7

    run(main())


# ---------------------------------------------------------------------- data progress


def test_decoding_progress_shows_in_the_status_and_the_log():
    st = RunState(clock=lambda: 0.0)
    msg = "decoding 50,000 images once, cached for next time"
    st.apply(ev.DataProgress(message=msg, done=0, total=50_000, time=1.0))
    st.apply(ev.DataProgress(message=msg, done=12_000, total=50_000, time=2.0))
    from tui_trainer.widgets.status import StatusPanel

    rows = dict((a, b.plain if hasattr(b, "plain") else b) for a, b in StatusPanel.rows(st))
    assert rows["State"] == "◌ decoding 24%" and rows[""] == "12,000 / 50,000 images"
    st.apply(ev.DataProgress(message=msg, done=50_000, total=50_000, time=3.0))
    assert st.loading is None
    assert [line.text for line in st.take_log()] == [msg, "decoded 50,000 images (cached for next time)"]


def test_the_trainer_reports_decoding_a_zip(tmp_path):
    """The first load of a zip of images announces DataProgress (a few, the last one done)."""
    import zipfile

    from torchvision.io import encode_png

    from engine.trainer import Trainer
    import torch

    with zipfile.ZipFile(tmp_path / "imgs.zip", "w") as zf:
        for i in range(120):
            img = torch.full((3, 32, 32), (i * 37) % 256, dtype=torch.uint8)
            zf.writestr(f"train/{'ab'[i % 2]}/{i}.png", encode_png(img).numpy().tobytes())
    events: list = []
    cfg = make_config("tiny", data=str(tmp_path / "imgs.zip"), width=0.125, val_size=20, epochs=1, batch_size=50,
                      runs_dir=str(tmp_path / "runs"))
    assert Trainer(cfg, listeners=[events.append]).run() == "completed"
    progress = [e for e in events if isinstance(e, ev.DataProgress)]
    assert progress and progress[0].done == 0 and progress[-1].done == progress[-1].total == 120
    assert "once, cached for next time" in progress[0].message
    assert events.index(progress[-1]) < next(i for i, e in enumerate(events) if isinstance(e, ev.RunStarted))
    events.clear()
    Trainer(cfg, listeners=[events.append]).run()  # the cache: nothing to decode
    assert not [e for e in events if isinstance(e, ev.DataProgress)]


# --------------------------------------------------------------------------- plots


def test_ticks_are_round_and_an_outlier_does_not_flatten_the_loss():
    assert nice_ticks(0.45, 2.9, 3) == ([1.0, 2.0], ["1", "2"])
    assert nice_ticks(0.0, 0.105, 3)[1] == ["0.00", "0.05", "0.10"]
    losses = [2.3, 2.1, 1.9, 1.7, 1.5, 1.4, 1.3, 1.2, 1.1, 1.0]
    kept, above = split_outliers(losses + [558.0])
    assert above == 1 and max(kept) == 2.3
    assert split_outliers([2.3, 2.2, 0.5])[1] == 0  # a falling curve is not an outlier
    assert split_outliers([558.0, 2.3, 2.2])[1] == 0  # too few points to tell
    ticks, labels = log_ticks(-0.5, 2.8, 6)
    assert labels == ["1", "3", "10", "30", "100", "300"] and len(ticks) == 6
    assert log_ticks(-0.4, 0.5, 6)[1] == ["0.5", "1", "2"]


def test_the_log_scale_toggle():
    events = demo_events(epochs_done=4, epochs=10)
    first = next(i for i, e in enumerate(events) if isinstance(e, ev.EpochDone))
    e = events[first]
    events[first] = ev.EpochDone(epoch=e.epoch, train_loss=e.train_loss, train_acc=e.train_acc, val_loss=558.0,
                                 val_acc=e.val_acc, seconds=e.seconds, lr=e.lr, mixup=e.mixup, time=e.time)
    clock = Clock(events[-1].time + 1)

    async def main():
        app = CifarTuiApp("replay", events=events, clock=clock, sampler_factory=fixed_sampler)
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), what="the dashboard")
            loss = app.screen.query_one(LossPlot)
            await wait_for(pilot, lambda: loss.points.get("val") == 4, what="the loss plot")
            assert not loss.log_scale
            assert loss.ylim[1] < 5  # the 558 does not set the range...
            assert "1 off the top (max 558" in loss.note  # ...and the legend says it is there
            await press(pilot, "l")
            await wait_for(pilot, lambda: loss.log_scale, what="the log scale")
            assert loss.ylim[1] > 2.7 and loss.note == "log scale"  # log10(558) = 2.75: in range now
            await press(pilot, "l")
            await wait_for(pilot, lambda: not loss.log_scale, what="back to linear")
            assert loss.ylim[1] < 5

    run(main())


# ------------------------------------------------------------------------ escape


def test_escape_closes_the_keys_panel_first_and_explains_itself_while_training(tmp_path):
    import threading

    class Idle:
        """A trainer that starts and waits to be stopped."""

        def __init__(self, config, *, listeners=(), **kw):
            self.listeners, self.stopped, self.result = list(listeners), threading.Event(), None

        def send(self, cmd):
            if isinstance(cmd, ev.Stop):
                self.stopped.set()

        def start(self):
            def work():
                for fn in self.listeners:
                    fn(ev.StateChanged(state="running", reason="started"))
                self.stopped.wait(60)
                self.result = ev.RunFinished(outcome="stopped", reason="stopped by request")
                for fn in self.listeners:
                    fn(ev.StateChanged(state="finished", reason="stopped by request"))
                    fn(self.result)

            t = threading.Thread(target=work, daemon=True)
            t.start()
            return t

    async def main():
        app = CifarTuiApp("start", runs_dir=str(tmp_path), trainer_factory=Idle, sampler_factory=fixed_sampler)
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.pause(0.3)
            said: list[str] = []
            notify = app.notify
            app.notify = lambda message, **kw: (said.append(str(message)), notify(message, **kw))[1]
            app.start_training(object(), can_go_back=True)
            await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen)
                           and app.screen.run_state.state == "running", what="running")
            dash = app.screen
            await press(pilot, "question_mark")
            await wait_for(pilot, lambda: bool(dash.query("HelpPanel")), what="the keys panel")
            await press(pilot, "escape")  # closes the panel, stays on the dashboard
            await wait_for(pilot, lambda: not dash.query("HelpPanel"), what="the panel to close")
            assert app.screen is dash
            await press(pilot, "escape")  # training: esc does nothing, and says why
            await pilot.pause(0.2)
            assert app.screen is dash
            assert any("stop it first" in m for m in said)
            await press(pilot, "x")
            await wait_for(pilot, lambda: not app.session.active, what="the stop")
            await pilot.pause(0.4)
            await press(pilot, "escape")
            await wait_for(pilot, lambda: not isinstance(app.screen, DashboardScreen), what="back to the start")

    run(main())


def test_headless_says_what_it_decodes():
    import io

    from rich.console import Console

    from tui_trainer.headless import HeadlessRenderer

    out = io.StringIO()
    r = HeadlessRenderer(Console(file=out, width=100))
    msg = "decoding 50,000 images once, cached for next time"
    r.handle(ev.DataProgress(message=msg, done=10_000, total=50_000))
    r.handle(ev.DataProgress(message=msg, done=50_000, total=50_000))
    assert out.getvalue().strip() == "decoded 50,000 images (cached for next time)"


# ------------------------------------------------------------------------- theme


def test_the_theme_is_remembered(tmp_path):
    from tui_trainer.settings import settings_path

    async def first():
        app = CifarTuiApp("start", runs_dir=str(tmp_path / "runs"))
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause(0.2)
            assert app.theme == "textual-dark"  # the default, nothing remembered yet
            app.theme = "nord"
            await pilot.pause(0.2)

    async def second():
        app = CifarTuiApp("start", runs_dir=str(tmp_path / "runs"))
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause(0.2)
            return app.theme

    run(first())
    assert '"theme": "nord"' in settings_path().read_text()  # under CIFAR_TUI_CONFIG_DIR (conftest)
    assert run(second()) == "nord"
    settings_path().write_text("{not json")  # a damaged file: the default theme, no error
    assert run(second()) == "textual-dark"


def test_with_mixup_the_training_accuracy_is_labelled_mixed():
    from rich.console import Console

    from tui_trainer.headless import HeadlessRenderer
    from tui_trainer.widgets.plots import AccuracyPlot
    from tui_trainer.widgets.status import StatusPanel

    def epoch_line(mixup):
        c = Console(record=True, width=200)
        r = HeadlessRenderer(c)
        r.handle(ev.EpochDone(epoch=1, train_loss=1.0, train_acc=0.4, val_loss=1.0, val_acc=0.5, seconds=1.0,
                              mixup=mixup, train_acc_major=0.6))
        return c.export_text()

    assert "acc (mixed) 40.00% larger share 60.00%" in epoch_line(True)
    assert "mixed" not in epoch_line(False) and "larger share" not in epoch_line(False)
    st = RunState(clock=lambda: 0.0)
    for on in (True, False):
        st.mixup = on
        rows = dict((a, b.plain if hasattr(b, "plain") else b) for a, b in StatusPanel.rows(st))
        assert ("train acc on mixed images" in rows["Mixup"]) is on
    assert AccuracyPlot.MIXED_SERIES[0][:2] == ("train (on mixed images)", "train (mixed)")


def test_the_end_summary_without_a_test_split_gives_the_commands_that_evaluate(monkeypatch):
    from rich.console import Console

    import engine.evaluate
    from engine.data import DataError
    from tui_trainer.summary import print_summary

    def no_test_split(path, *a, **k):
        raise DataError("/data/pets has no test split (a test/<class>/ folder)")

    monkeypatch.setattr(engine.evaluate, "evaluate_checkpoint", no_test_split)
    c = Console(record=True, width=400)
    best = ev.CheckpointSaved(path="/runs/r1/checkpoints/best.pt", epoch=2, kind="best", val_acc=0.5)
    print_summary(c, ev.RunFinished(outcome="completed", reason="done"), "/runs/r1", best, params=1234)
    out = c.export_text()
    assert "parameters:      1,234 trainable" in out and "(val acc 50.00% at epoch 2)" in out
    assert "test accuracy:   not evaluated (/data/pets has no test split" in out
    assert "`cifar-tui eval /runs/r1 --data PATH`" in out and "`cifar-tui eval /runs/r1 --split val`" in out


def test_the_dashboards_end_summary_says_the_parameters_and_the_test_accuracy(monkeypatch, capsys):
    from types import SimpleNamespace

    import engine.evaluate
    from tui_trainer.app import _print_summary
    from tui_trainer.bridge import LiveSource

    def evaluated(path, *a, **k):
        return SimpleNamespace(result=SimpleNamespace(accuracy=0.625), source="synthetic:test")

    monkeypatch.setattr(engine.evaluate, "evaluate_checkpoint", evaluated)
    session = LiveSource()
    for e in (ev.RunStarted(config={}, run_dir="/runs/r1", device="cpu", params=4321),
              ev.CheckpointSaved(path="/runs/r1/checkpoints/best.pt", epoch=1, kind="best", val_acc=0.5),
              ev.RunFinished(outcome="completed", reason="done")):
        session.queue.put(e)
    _print_summary(session)
    out = capsys.readouterr().out
    assert "parameters:      4,321 trainable" in out and "(val acc 50.00% at epoch 1)" in out
    assert "test accuracy:   62.50%  (best checkpoint on synthetic:test; stored beside it)" in out
