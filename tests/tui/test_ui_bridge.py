"""The dashboard's plumbing without Textual: event queue, metrics follower, run state."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

from engine import events as ev
from tui_trainer.bridge import EventQueue, LiveSource, MetricsFollower, StaticSource
from tui_trainer.runstate import RunState, fmt_duration
from ui_support import demo_events


def lines_of(events):
    return [ev.event_to_json(e) + "\n" for e in events]


def test_imports_are_light():
    code = ("import sys, tui_trainer; a = ('torch' in sys.modules, 'textual' in sys.modules); "
            "import tui_trainer.app; print(*a, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False", "False"]  # the app imports torch only when training starts


def test_event_queue_is_fifo_and_never_blocks_the_producer():
    q = EventQueue()
    n = 50_000

    def produce():
        for i in range(n):
            q.put(ev.Warning(message=str(i)))

    t = threading.Thread(target=produce)
    t0 = time.perf_counter()
    t.start()
    got = []
    while t.is_alive() or len(q):
        got.extend(q.drain())
    t.join()
    assert [int(e.message) for e in got] == list(range(n))
    assert time.perf_counter() - t0 < 10


def test_follower_reads_appended_lines_and_holds_back_a_torn_one(tmp_path):
    path = tmp_path / "metrics.jsonl"
    events = demo_events(epochs_done=1, epochs=3, steps_per_epoch=10, log_every=5)
    text = "".join(lines_of(events))
    f = MetricsFollower(path)
    assert f.poll() == []  # no file yet
    cut = len(text) // 2
    path.write_text(text[:cut])
    first = f.poll()
    complete = text[:cut].count("\n")
    assert len(first) == complete
    assert f.pending_bytes > 0  # the torn last line waits for its end
    with open(path, "a") as fh:
        fh.write(text[cut:])
    rest = f.poll()
    assert first + rest == events
    assert f.bad_lines == 0 and f.pending_bytes == 0
    assert f.poll() == []


def test_follower_skips_garbage_and_recovers_a_line_glued_to_a_torn_one(tmp_path):
    path = tmp_path / "metrics.jsonl"
    good = ev.StateChanged(state="running", reason="resumed", time=5.0)
    path.write_text('not json\n{"event": "Nope"}\n[1,2]\n{"event":"StepDone","epo' + ev.event_to_json(good) + "\n")
    f = MetricsFollower(path)
    assert f.poll() == [good]
    assert f.bad_lines == 3


def test_follower_restarts_when_the_file_is_replaced(tmp_path):
    path = tmp_path / "metrics.jsonl"
    a = ev.Warning(message="first run", time=1.0)
    b = ev.Warning(message="new file", time=2.0)
    path.write_text(ev.event_to_json(a) + "\n" + ev.event_to_json(a) + "\n")
    f = MetricsFollower(path)
    assert f.poll() == [a, a]
    path.write_text(ev.event_to_json(b) + "\n")  # shorter: truncated and rewritten
    assert f.poll() == [b]
    assert f.restarted


def test_run_state_from_demo_events():
    events = demo_events(epochs_done=4, epochs=10, steps_per_epoch=40, log_every=5, mid_epoch_steps=20)
    st = RunState(clock=lambda: events[-1].time + 1)
    st.apply_all(events)
    assert st.state == "running" and st.epoch == 5 and st.epochs == 10
    assert st.global_step == 4 * 40 + 20 and st.total_steps == 400
    assert [h.epoch for h in st.history] == [1, 2, 3, 4]
    assert st.best_epoch == 4 and st.best_val_acc is not None
    assert st.mixup is False and st.mixup_source == "user"
    # per-step points sit at fractional epochs, in order, non-negative (the loss plot smooths them)
    assert st.step_x == sorted(st.step_x) and 4.0 < st.step_x[-1] <= 4.5
    assert all(v >= 0 for v in st.step_loss)
    # ETA: remaining steps at the recent speed
    eta = st.eta()
    assert eta is not None and abs(eta - (400 - 180) * 128 / 5200) < 1.0
    log = [line.text for line in st.take_log()]
    assert any("saved best.pt" in t for t in log) and any(t.startswith("warning:") for t in log)
    assert st.take_log() == []


def test_run_state_failure_and_pause_and_resume_trim():
    st = RunState(clock=lambda: 100.0)
    events = demo_events(epochs_done=3, epochs=5, steps_per_epoch=10, log_every=5)
    st.apply_all(events)
    st.apply(ev.StateChanged(state="paused", reason="paused by request", time=90.0))
    assert st.eta() is None
    st.apply(ev.Failed(message="the loss became NaN", time=91.0))
    st.apply(ev.StateChanged(state="failed", reason="the loss became NaN", time=91.0))
    assert st.state == "failed" and st.failure == "the loss became NaN" and not st.active
    texts = [line.text for line in st.take_log()]
    assert sum("NaN" in t for t in texts) == 1  # Failed and StateChanged(failed) say it once
    # the run is resumed from epoch 2: what came after the checkpoint is dropped
    resumed = ev.RunStarted(config=events[0].config, run_dir="r", device="cpu", params=1, run_id="r",
                            steps_per_epoch=10, start_epoch=2, resumed_from="r/checkpoints/last.pt", time=200.0)
    st.apply(resumed)
    assert [h.epoch for h in st.history] == [1, 2]
    assert max(st.step_x) <= 2.0
    assert st.failure is None


def test_fmt_duration():
    assert fmt_duration(None) == "-"
    assert fmt_duration(5) == "5s"
    assert fmt_duration(125) == "2m 05s"
    assert fmt_duration(3 * 3600 + 120) == "3h 02m"


class _InstantTrainer:
    """Just enough of engine.trainer.Trainer for LiveSource, emitting a fixed list."""

    def __init__(self, config, listeners=(), resume=None, resume_overrides=None):
        self.listeners = list(listeners)
        self.received = []
        self.result = None

    def send(self, cmd):
        self.received.append(cmd)

    def start(self):
        def run():
            for e in demo_events(epochs_done=1, epochs=2, steps_per_epoch=4, log_every=2):
                for fn in self.listeners:
                    fn(e)
            self.result = ev.RunFinished(outcome="completed", reason="done")
            for fn in self.listeners:
                fn(self.result)

        t = threading.Thread(target=run, daemon=True)
        t.start()
        return t


class _Host:
    """Stands in for a Textual app: runs the worker in a plain thread."""

    def run_worker(self, fn, **kw):
        t = threading.Thread(target=fn, daemon=True)
        t.start()
        return t


def test_live_source_holds_commands_until_the_trainer_exists():
    src = LiveSource(object(), trainer_factory=_InstantTrainer)
    src.send(ev.Pause())  # before start: held
    src.start(_Host())
    assert src.wait(10)
    assert src.outcome == "completed" and not src.active
    assert src.trainer.received == [ev.Pause()] and src.sent == [ev.Pause()]
    assert any(isinstance(e, ev.EpochDone) for e in src.poll())


def test_live_source_reports_a_trainer_that_cannot_be_built():
    def broken(*a, **k):
        raise RuntimeError("no torch here")

    src = LiveSource(object(), trainer_factory=broken)
    src.start(_Host())
    assert src.wait(10)
    events = src.poll()
    assert src.outcome == "failed"
    assert isinstance(events[-2], ev.StateChanged) and events[-2].state == "failed"
    assert isinstance(events[-1], ev.RunFinished) and events[-1].outcome == "failed"
    assert "no torch here" in events[-1].reason


def test_static_source_delivers_once():
    events = demo_events(epochs_done=1, epochs=2, steps_per_epoch=4, log_every=2)
    src = StaticSource(events)
    assert src.poll() == events and src.poll() == []
    assert json.loads(ev.event_to_json(events[0]))["event"] == "RunStarted"
