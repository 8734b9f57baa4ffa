"""Live learning-rate steering in the dashboard (issue 21): ``[`` and ``]`` from the command
table, the status's LR from the confirming event, and every steering action as a marker
on the plots, live, attached, and in ``watch`` of a finished run (from metrics.jsonl)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Optional

import pytest
from textual.app import App
from textual.widgets._footer import FooterKey

from engine import events as ev
from tui_trainer.app import CifarTuiApp
from tui_trainer.screens import DashboardScreen
from tui_trainer.widgets.plots import AccuracyPlot, LearningRatePlot, LossPlot
from ui_support import FakeTrainer, FixedSampler, demo_events, press, wait_for

SIZES = [(80, 24), (100, 30)]
RUN = "/tmp/runs/20261206-000000-steer"


def run(coro):
    return asyncio.run(coro)


def status_row(dash: DashboardScreen, label: str) -> str:
    line = next(line for line in dash.status.plain.splitlines() if line.startswith(label + " "))
    return line[len(label):].strip()


class SteeredTrainer(FakeTrainer):
    """Trains 5 of 10 steps of epoch 1, then applies an lr command only when ``confirm``
    is set (so the test sees the status before and after the confirming event)."""

    def __init__(self, config, **kw):
        super().__init__(config, **kw)
        self.confirm = threading.Event()
        SteeredTrainer.last = self

    def work(self):
        self.emit(ev.RunStarted(config={"epochs": 2, "batch_size": 32, "lr": 0.1}, run_dir=RUN, device="cpu",
                                params=79_339, run_id="20261206-000000-steer", train_size=320, val_size=64,
                                steps_per_epoch=10))
        self.emit(ev.StateChanged(state="running", reason="started"))
        self.emit(ev.EpochStarted(epoch=1, epochs=2, steps=10, mixup=False))
        for s in range(1, 6):
            self.emit(ev.StepDone(epoch=1, step=s, loss=2.3 - 0.1 * s, lr=0.1, images_per_s=1000.0,
                                  step_in_epoch=s, steps_per_epoch=10, train_acc=0.1))
        scale = 1.0
        while not self.stop.wait(0.05):
            if self.confirm.is_set() and self.received:
                cmd = self.received.pop(0)
                if isinstance(cmd, ev.SetLearningRate):
                    scale *= cmd.factor
                    self.emit(ev.LrChanged(epoch=1, step=5, scale=scale, peak_lr=0.1 * scale, lr=0.0987 * scale))
        self.emit(ev.StateChanged(state="finished", reason="stopped by request", epoch=1, step=5))
        self.result = ev.RunFinished(outcome="stopped", reason="stopped by request")
        self.emit(self.result)


@pytest.mark.parametrize("size", SIZES)
def test_right_bracket_doubles_the_lr_and_marks_the_plots(size):
    async def main():
        app = CifarTuiApp("train", config=object(), trainer_factory=SteeredTrainer)
        async with app.run_test(size=size) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), what="the dashboard")
            dash = app.screen
            await wait_for(pilot, lambda: dash.run_state.global_step == 5, what="five steps")
            await pilot.pause(0.4)
            footer = {k.key for k in dash.query(FooterKey)}
            assert {"left_square_bracket", "right_square_bracket"} <= footer  # in the footer...
            titles = {c.title for c in app.get_system_commands(dash)}
            assert {"LR /2", "LR x2"} <= titles  # ...and in the palette
            assert status_row(dash, "LR") == "0.1000"
            await press(pilot, "right_square_bracket")
            await wait_for(pilot, lambda: app.session.sent, what="the command")
            assert app.session.sent == [ev.SetLearningRate(factor=2.0)]
            await pilot.pause(0.5)
            assert status_row(dash, "LR") == "0.1000"  # asked, not yet confirmed: the status waits
            SteeredTrainer.last.confirm.set()
            await wait_for(pilot, lambda: "(x2)" in dash.status.plain, what="the confirmation")
            assert status_row(dash, "LR") == "0.1974 (x2)"
            loss = dash.query_one(LossPlot)
            await wait_for(pilot, lambda: loss.drawn_marks, what="the marker")
            assert loss.drawn_marks == [(0.5, "lr 0.2")]  # at step 5 of 10: x = 0.5 epochs
            assert any("lr 0.2" in line for line in _text(app, loss))  # named on the loss plot
            assert dash.query_one(AccuracyPlot).drawn_marks == [(0.5, "lr 0.2")]  # a line on the others
            assert any("learning rate: peak 0.2" in line for line in dash.event_log.lines_written)
            await press(pilot, "x")
            await wait_for(pilot, lambda: not app.session.active, what="the stop")

    run(main())


def _text(app, widget) -> list[str]:
    r = widget.region
    strips = app.screen._compositor.render_strips()
    return ["".join(seg.text for seg in strip)[r.x:r.right] for strip in strips[r.y:r.bottom]]


class Attached:
    """An attached run (kind watch, takes commands) that records what it is sent."""

    kind, can_command, active = "watch", True, True

    def __init__(self) -> None:
        self.run_dir = Path(RUN)
        self.sent: list = []
        self._events = demo_events(epochs_done=1, epochs=4, run_dir=RUN)

    def poll(self) -> list:
        out, self._events = self._events, []
        return out

    def send(self, command) -> None:
        self.sent.append(command)

    def liveness(self) -> Optional[str]:
        return "running"


class Host(App):
    def __init__(self, source) -> None:
        super().__init__()
        self.source = source

    def on_mount(self) -> None:
        self.push_screen(DashboardScreen(self.source, sampler=FixedSampler()))


def test_the_lr_keys_steer_an_attached_run():
    async def main():
        source = Attached()
        app = Host(source)
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), what="the dashboard")
            await pilot.pause(0.3)
            await press(pilot, "left_square_bracket", "right_square_bracket")
            await wait_for(pilot, lambda: len(source.sent) == 2, what="two commands")
            assert source.sent == [ev.SetLearningRate(factor=0.5), ev.SetLearningRate(factor=2.0)]

    run(main())


def finished_run_events(run_dir: str) -> list[ev.Event]:
    """A 3-epoch run of 40 steps an epoch with every kind of steering action, then stopped."""
    events = demo_events(epochs_done=3, epochs=3, steps_per_epoch=40, run_dir=run_dir)
    t = events[-1].time
    steering = [
        ev.StateChanged(state="paused", reason="paused by request", epoch=1, step=20, time=t + 1),
        ev.StateChanged(state="running", reason="resumed by request", epoch=1, step=20, time=t + 2),
        ev.LrChanged(epoch=2, step=60, scale=0.5, peak_lr=0.05, lr=0.04, time=t + 3),
        ev.CheckpointSaved(path=f"{run_dir}/checkpoints/manual-1.pt", epoch=2, val_acc=None, kind="manual",
                           step_in_epoch=20, global_step=100, time=t + 4),
        ev.StateChanged(state="stopping", reason="stop requested", epoch=3, step=110, time=t + 5),
        ev.StateChanged(state="finished", reason="stopped by request", epoch=3, step=110, time=t + 6),
        ev.RunFinished(outcome="stopped", reason="stopped by request", time=t + 6),
    ]
    # the user's mixup switch of demo_events (after epoch 2) carries no step: placed where the run was
    return events + steering


@pytest.mark.parametrize("size", SIZES)
def test_watch_of_a_finished_run_draws_its_markers(tmp_path, size):
    run_dir = tmp_path / "runs" / "20261206-000000-steer"
    (run_dir / "checkpoints").mkdir(parents=True)
    events = finished_run_events(str(run_dir))
    (run_dir / "metrics.jsonl").write_text("".join(ev.event_to_json(e) + "\n" for e in events))

    async def main():
        app = CifarTuiApp("watch", run_dir=run_dir)
        async with app.run_test(size=size) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), what="the dashboard")
            dash = app.screen
            loss = dash.query_one(LossPlot)
            await wait_for(pilot, lambda: len(loss.drawn_marks) == 6, what="the markers")
            assert loss.drawn_marks == [(2.0, "mixup off"), (0.5, "pause"), (0.5, "resume"), (1.5, "lr 0.05"),
                                        (2.5, "save"), (2.75, "stop")]
            assert len(dash.query_one(LearningRatePlot).drawn_marks) == 6
            shown = " ".join(_text(app, loss))
            assert "lr 0.05" in shown and "stop" in shown
            assert "pause" in shown and "resume" in shown  # at the same step: one a row below the other

    run(main())
