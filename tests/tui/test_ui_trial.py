"""What a new user tripped on in the dashboard (issue 26), at 80x24 and 100x30: the
state's reason wrapped on words, only keys that act after a run, three log ticks, the
keys panel, a narrow terminal, the summary on leaving, the speed after an epoch,
placeholders after a failure, the loss smoothing and the bell.

Most use a replay (a fixed list of events, no engine); the live ones a fake trainer.
"""

from __future__ import annotations

import asyncio
import math
import threading
from contextlib import asynccontextmanager
from dataclasses import replace
from functools import partial
from pathlib import Path

import pytest
from textual.widgets._footer import FooterKey

from engine import events as ev
from tui_trainer import app as app_module
from tui_trainer.app import CifarTuiApp, desktop_notification
from tui_trainer.runstate import RunState
from tui_trainer.screens import DashboardScreen
from tui_trainer.widgets.axes import log_ticks, smooth
from tui_trainer.widgets.keyhelp import KeysTable, ordered_bindings
from tui_trainer.widgets.plots import AccuracyPlot, LearningRatePlot, Legend, LossPlot
from ui_support import FakeTrainer, FixedSampler, T0, clock_after, demo_events, on_dashboard, press, wait_for

SIZES = [(80, 24), (100, 30)]
NAN_REASON = ("the loss became NaN at epoch 3 step 20 (learning rate 0.0931); nothing was saved after it: "
              "lower --lr and resume from the last checkpoint")
DATA_REASON = "CIFAR-10 is not downloaded and there is no network here; give --data PATH (a cifar-10-batches-py folder)"


def run(coro):
    return asyncio.run(coro)


def replay(events, **kw) -> CifarTuiApp:
    return CifarTuiApp("replay", events=events, clock=clock_after(events), sampler_factory=FixedSampler, **kw)


def screen_lines(app) -> list[str]:
    strips = app.screen._compositor.render_strips()
    return ["".join(seg.text for seg in strip) for strip in strips]


def region_text(app, widget) -> list[str]:
    """What the terminal shows in ``widget``'s region, line by line."""
    r = widget.region
    return [line[r.x:r.right] for line in screen_lines(app)[r.y:r.bottom]]


def footer_keys(app) -> dict[str, FooterKey]:
    return {k.key: k for k in app.screen.query(FooterKey) if "-command-palette" not in k.classes}


async def shown(pilot, app) -> DashboardScreen:
    dash = await on_dashboard(pilot, app)
    await pilot.pause(0.3)
    return dash


@asynccontextmanager
async def showing(app: CifarTuiApp, size):
    """``app`` run at ``size`` until its dashboard is shown: yields the app, its pilot and the dashboard."""
    async with app.run_test(size=size) as pilot:
        yield app, pilot, await shown(pilot, app)


def failed_events(reason: str = NAN_REASON, epochs_done: int = 2) -> list[ev.Event]:
    events = demo_events(epochs_done=epochs_done, epochs=10)
    t = events[-1].time
    return events + [ev.Failed(message=reason, time=t + 0.1), ev.StateChanged(state="failed", reason=reason, time=t + 0.1)]


# ------------------------------------------------------------------ 4: the reason


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("reason", [NAN_REASON, DATA_REASON])
def test_the_reason_wraps_on_words(size, reason):
    async def main():
        async with showing(replay(failed_events(reason)), size) as (app, pilot, dash):
            lines = [line.strip("│ ") for line in region_text(app, dash.status)]
            start = next(i for i, line in enumerate(lines) if line.startswith("State")) + 1
            end = next(i for i, line in enumerate(lines) if line.startswith("Device"))
            shown_words = " ".join(lines[start:end]).split()
            assert len(shown_words) >= 3
            words = reason.split()
            for word in shown_words:
                assert word.rstrip("…") in words, f"{word!r} is cut ({lines[start:end]})"
            assert "…" not in " ".join(shown_words[:-1])

    run(main())


# ----------------------------------------------------- 5 and 9: the footer's keys


class LiveTrainer(FakeTrainer):
    """Starts, trains until stopped (or until ``finish`` is set), then ends as asked."""

    instances: list["LiveTrainer"] = []

    def __init__(self, config, **kw):
        super().__init__(config, **kw)
        self.finish = threading.Event()
        self.outcome = getattr(config, "outcome", "stopped")
        LiveTrainer.instances.append(self)

    def work(self):
        self.emit(ev.RunStarted(config={"epochs": 3, "batch_size": 32}, run_dir="/tmp/runs/20261206-000000-fake",
                                device="cuda:0 x8", params=4_993_166, run_id="20261206-000000-fake",
                                train_size=320, val_size=64, steps_per_epoch=10))
        self.emit(ev.StateChanged(state="running", reason="started"))
        while not (self.stop.wait(0.05) or self.finish.is_set()):
            pass
        last = "/tmp/runs/20261206-000000-fake/checkpoints/last.pt"
        if self.outcome == "failed":
            self.emit(ev.Failed(message="the loss became NaN"))
            self.emit(ev.StateChanged(state="failed", reason="the loss became NaN"))
            self.result = ev.RunFinished(outcome="failed", reason="the loss became NaN")
        else:
            self.emit(ev.CheckpointSaved(path=last, epoch=1, val_acc=0.5, kind="stop"))
            reason = "stopped by request" if self.stop.is_set() else "completed 3 epochs"
            outcome = "stopped" if self.stop.is_set() else "completed"
            self.emit(ev.StateChanged(state="finished", reason=reason))
            self.result = ev.RunFinished(outcome=outcome, reason=reason, last_checkpoint=last)
        self.emit(self.result)


class Plan:
    def __init__(self, outcome: str = "completed") -> None:
        self.outcome = outcome


def live_app(outcome: str = "completed") -> CifarTuiApp:
    LiveTrainer.instances.clear()
    return CifarTuiApp("train", config=Plan(outcome), trainer_factory=LiveTrainer, sampler_factory=FixedSampler)


@pytest.mark.parametrize("size", SIZES)
def test_the_footer_keeps_q_and_shows_only_keys_that_act(size):
    async def main():
        async with showing(live_app(), size) as (app, pilot, dash):
            await wait_for(pilot, lambda: dash.run_state.state == "running", what="running")
            await pilot.pause(0.3)
            keys = footer_keys(app)
            assert {"q", "m", "p", "s", "x"} <= set(keys)
            q = keys["q"]
            assert q.description == "Quit" and q.region.right <= size[0] and q.region.width > 0  # in view
            # the device line is one line, not wrapped
            lines = [line.strip("│ ") for line in region_text(app, dash.status)]
            device = next(i for i, line in enumerate(lines) if line.startswith("Device"))
            assert lines[device + 1].startswith("Epoch") and "cuda:0 x8" in lines[device]
            LiveTrainer.instances[0].finish.set()
            await wait_for(pilot, lambda: dash.run_state.state == "finished" and not app.session.active,
                           what="the end")
            await pilot.pause(0.4)
            keys = footer_keys(app)
            assert not {"m", "p", "s", "x"} & set(keys), sorted(keys)  # nothing that cannot act
            assert "q" in keys and keys["q"].region.right <= size[0]

    run(main())


@pytest.mark.parametrize("size", SIZES)
def test_the_status_box_is_closed_and_placeholders_are_whole(size):
    events = demo_events(epochs_done=0, epochs=10)[:3]  # started, no step yet
    async def main():
        async with showing(replay(events), size) as (app, pilot, dash):
            box = region_text(app, dash.status)
            assert box[0].lstrip().startswith("╭") and box[-1].lstrip().startswith("╰")  # top and bottom border
            for plot, note in ((AccuracyPlot, "after epoch 1"), (LearningRatePlot, "peak 0.1, no steps yet"),
                               (LossPlot, "no steps yet")):
                text = " ".join(region_text(app, dash.query_one(plot)))
                for word in note.split():
                    assert f" {word} " in f" {text} ".replace("│", " "), (plot.__name__, word, text)

    run(main())


# ------------------------------------------------------------- 7: log-scale ticks


def test_log_ticks_are_at_least_three():
    ticks, labels = log_ticks(math.log10(1.3), math.log10(2.8), 3)
    assert labels == ["1.5", "2.0", "2.5"] and len(ticks) == 3
    assert len(log_ticks(math.log10(0.8), math.log10(2.6), 3)[1]) >= 3  # "1" and "2" alone are too few
    assert log_ticks(-0.5, 2.8, 6)[1] == ["1", "3", "10", "30", "100", "300"]  # decades as before


@pytest.mark.parametrize("size", SIZES)
def test_the_log_loss_plot_has_three_labels(size):
    def narrow(e):  # losses from about 1.3 to 2.6: powers of ten give one label (2) there
        if isinstance(e, ev.StepDone):
            return replace(e, loss=1.2 + 0.5 * e.loss)
        if isinstance(e, ev.EpochDone):
            return replace(e, train_loss=1.2 + 0.5 * e.train_loss, val_loss=1.2 + 0.5 * e.val_loss)
        return e

    events = [narrow(e) for e in demo_events(epochs_done=4, epochs=10)]

    async def main():
        async with showing(replay(events), size) as (app, pilot, dash):
            loss = dash.query_one(LossPlot)
            await press(pilot, "l")
            await wait_for(pilot, lambda: loss.log_scale, what="the log scale")
            await pilot.pause(0.3)
            assert len(loss.ytick_labels) >= 3, loss.ytick_labels
            drawn = [line for line in region_text(app, loss) if "┤" in line]
            assert len(drawn) >= 3, drawn

    run(main())


# --------------------------------------------------------------------- 8: the keys


@pytest.mark.parametrize("size", SIZES)
def test_help_lists_the_dashboards_keys_first_over_the_plots(size):
    async def main():
        async with showing(replay(demo_events()), size) as (app, pilot, dash):
            loss = dash.query_one(LossPlot)
            before = loss.size
            await press(pilot, "question_mark")
            await wait_for(pilot, lambda: bool(dash.query(KeysTable)), what="the keys panel")
            await pilot.pause(0.4)
            assert loss.size == before  # over the plots, not squeezing them
            order = [a.binding.action for a in ordered_bindings(dash) if not a.binding.system]
            assert order[0] == "quit" and order.index("log_scale") < order.index("scroll_up") < order.index("app.focus_next")
            panel = dash.query_one("HelpPanel")
            drawn = [line.strip(" ▕▏") for line in region_text(app, panel)]
            assert next(line for line in drawn if line).startswith("q Quit (a")  # as drawn: q first
            assert panel.region.x < loss.region.right  # where the plots are
            await press(pilot, "escape")
            await wait_for(pilot, lambda: not dash.query("HelpPanel"), what="the panel to close")

    run(main())


# ------------------------------------------------------------ 11: q, speed, failure


class QuitWhenRunning(CifarTuiApp):
    """Presses q once its run trains (as a user would)."""

    CSS_PATH = str(Path(app_module.__file__).with_name("app.tcss"))  # (relative to the class's module otherwise)

    def on_mount(self) -> None:
        super().on_mount()
        self._pressed = False
        self.set_interval(0.2, self._press_q)

    def _press_q(self) -> None:
        screen = self.screen
        if not self._pressed and isinstance(screen, DashboardScreen) and screen.run_state.state == "running":
            self._pressed = True
            self.simulate_key("q")


def test_q_in_the_dashboard_prints_the_run_folder_and_how_to_resume(capsys):
    LiveTrainer.instances.clear()
    app = QuitWhenRunning("train", config=Plan(), trainer_factory=LiveTrainer, sampler_factory=FixedSampler)
    app.run = partial(CifarTuiApp.run, app, headless=True, size=(80, 24))
    code = app_module._run(app)
    out = capsys.readouterr().out
    assert code == 0, out
    assert "run folder:      /tmp/runs/20261206-000000-fake" in out
    assert "continue with: cifar-tui train --resume /tmp/runs/20261206-000000-fake" in out


def speed_events() -> list[ev.Event]:
    """Two epochs at about 5,000 img/s, then the next epoch's first report, whose window
    held the validation pause (8 img/s)."""
    events = demo_events(epochs_done=2, epochs=10, mid_epoch_steps=0)
    t = events[-1].time
    return events + [ev.StepDone(epoch=3, step=81, loss=1.0, lr=0.09, images_per_s=8.0, step_in_epoch=1,
                                 steps_per_epoch=40, train_acc=0.5, time=t + 30)]


def test_the_first_report_after_an_epoch_is_not_training_speed():
    events = speed_events()
    before = RunState(clock=lambda: events[-2].time)
    before.apply_all(events[:-1])
    after = RunState(clock=lambda: events[-1].time)
    after.apply_all(events)
    assert after.images_per_s == pytest.approx(before.images_per_s)
    assert after.eta() < 1.2 * before.eta()  # not doubled by the pause


@pytest.mark.parametrize("size", SIZES)
def test_the_status_speed_after_an_epoch(size):
    async def main():
        async with showing(replay(speed_events()), size) as (app, pilot, dash):
            speed = next(line for line in region_text(app, dash.status) if "Speed" in line)
            assert "5,1" in speed or "5,2" in speed, speed
            assert " 8 img/s" not in speed

    run(main())


@pytest.mark.parametrize("size", SIZES)
def test_after_a_failure_the_plots_say_so(size):
    events = demo_events(epochs_done=0, epochs=10)[:2] + [
        ev.Failed(message=DATA_REASON, time=T0 + 1), ev.StateChanged(state="failed", reason=DATA_REASON, time=T0 + 1)]

    async def main():
        async with showing(replay(events), size) as (app, pilot, dash):
            for plot in (LossPlot, AccuracyPlot, LearningRatePlot):
                text = " ".join(region_text(app, dash.query_one(plot)))
                assert "waiting" not in text and "no steps yet" not in text
                assert "failed" in text, (plot.__name__, text)

    run(main())


# --------------------------------------------------------------- 12: smoothing, bell


def test_smooth_is_tensorboards_debiased_moving_average():
    assert smooth([1.0, 3.0], 0.0) == [1.0, 3.0]
    assert smooth([1.0, 3.0], 0.5) == pytest.approx([1.0, 1.75 / 0.75])
    assert smooth([2.0] * 5, 0.99) == pytest.approx([2.0] * 5)  # no pull towards 0 at the start


@pytest.mark.parametrize("size", SIZES)
def test_the_smoothing_key_cycles_and_shows_in_the_title(size):
    async def main():
        async with showing(replay(demo_events()), size) as (app, pilot, dash):
            loss = dash.query_one(LossPlot)
            legend = next(lg for lg in dash.query(Legend) if lg.plot is loss)
            assert loss.smoothing == 0.6 and "train (raw)" in loss.points
            raw = loss.points["train (raw)"]
            assert " 0.6" in "".join(region_text(app, legend))
            seen = []
            for _ in range(4):
                await press(pilot, "a")
                await pilot.pause(0.2)
                seen.append(loss.smoothing)
                assert f" {loss.smoothing:g}" in "".join(region_text(app, legend)) or loss.smoothing == 0
            assert seen == [0.9, 0.99, 0.0, 0.6]
            await press(pilot, "a", "a", "a")
            await wait_for(pilot, lambda: loss.smoothing == 0.0, what="no smoothing")
            await pilot.pause(0.2)
            assert "train (raw)" not in loss.points and loss.points["train"] == raw  # the raw curve alone
            assert "smoothing" not in "".join(region_text(app, legend))

    run(main())


@pytest.mark.parametrize("outcome", ["completed", "failed"])
def test_a_bell_when_a_run_ends(outcome):
    async def main():
        app = live_app(outcome)
        rings: list[tuple] = []
        app.bell = lambda: rings.append(("bell",))
        async with app.run_test(size=(80, 24)) as pilot:
            dash = await shown(pilot, app)
            await wait_for(pilot, lambda: dash.run_state.state == "running", what="running")
            await pilot.pause(0.3)
            assert rings == []
            LiveTrainer.instances[0].finish.set()
            await wait_for(pilot, lambda: rings, what="the bell")
            await pilot.pause(0.3)
            assert rings == [("bell",)]

    run(main())


def test_no_bell_for_a_run_that_had_ended_before():
    async def main():
        app = replay(failed_events())
        rings = []
        app.bell = lambda: rings.append(1)
        async with app.run_test(size=(80, 24)) as pilot:
            await shown(pilot, app)
            await pilot.pause(0.3)
        assert rings == []

    run(main())


def test_a_desktop_notification_only_where_the_terminal_takes_one():
    assert desktop_notification("Run x completed", "done", {"TERM_PROGRAM": "iTerm.app"}) == "\x1b]9;Run x completed: done\x07"
    assert desktop_notification("a", "b", {"VTE_VERSION": "7600"}) == "\x1b]777;notify;a;b\x07"
    assert desktop_notification("a", "b", {"TERM": "xterm-256color"}) is None
    assert desktop_notification("a", "b", {"TERM_PROGRAM": "iTerm.app", "TMUX": "/tmp/tmux"}) is None
    hostile = desktop_notification("run \x1b]52;c;bad\x07", "x;y", {"TERM_PROGRAM": "WezTerm"})
    assert hostile.count("\x1b") == 1 and hostile.count("\x07") == 1  # no escape of the run's own


def test_a_long_path_in_the_reason_keeps_its_name_not_a_cut_word():
    from tui_trainer.widgets.status import short_reason

    reason = ("--data /tmp/pytest-of-root/pytest-12/test_bad_data0/nowhere: no such file or folder; "
              "use cifar10, synthetic, or a path")
    assert short_reason(reason) == "--data …/nowhere: no such file or folder"
