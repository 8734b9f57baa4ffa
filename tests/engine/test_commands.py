"""The command table (engine.commands): words, wire, refusals as data, markers, lr steering."""

from __future__ import annotations

import json
import math
import queue
from types import SimpleNamespace

import pytest

from engine import commands
from engine import events as ev

SAMPLES = {  # ctl words -> the command they name; every word of the table has one
    ("pause",): ev.Pause(), ("resume",): ev.Resume(), ("stop",): ev.Stop(save=True), ("save",): ev.SaveCheckpoint(),
    ("mixup", "on"): ev.SetMixup(on=True), ("mixup", "OFF"): ev.SetMixup(on=False),
    ("mixup", "auto"): ev.SetMixup(on=None), ("lr", "0.05"): ev.SetLearningRate(peak=0.05),
    ("lr", "x0.5"): ev.SetLearningRate(factor=0.5), ("LR", "*2"): ev.SetLearningRate(factor=2.0),
}


def test_every_word_of_the_table_parses_and_round_trips():
    assert {words[0].lower() for words in SAMPLES} == set(commands.WORDS)
    for words, command in SAMPLES.items():
        assert commands.parse_words(list(words)) == command
        line = commands.encode(command)
        assert line.endswith(b"\n") and len(line) <= 256
        back = commands.decode(line.strip())
        expected = ev.Stop(save=True, reason=commands.REMOTE_STOP_REASON) if isinstance(command, ev.Stop) else command
        assert back == expected
        assert commands.spec_for(command).word == words[0].lower()
    for spec in commands.TABLE:  # the usage, ctl's help and the UI's keys come from the table
        assert spec.word in commands.USAGE and spec.word in commands.SHORT_USAGE
        assert spec.label and spec.description and spec.keys
    assert ("[", ev.SetLearningRate(factor=0.5)) in [(k.key, k.command) for k in commands.KEYS]


@pytest.mark.parametrize("words, fragment", [
    ([], "say what to do"), (["jump"], "unknown command"), (["pause", "now"], "takes no value"),
    (["mixup"], "on, off, auto"), (["lr"], "peak learning rate"), (["lr", "fast"], "peak learning rate"),
    (["lr", "nan"], "finite"), (["lr", "-0.1"], "positive"), (["lr", "0"], "positive"), (["lr", "x1e9"], "absurd"),
    (["lr", "1000"], "far too large"), (["lr", "inf"], "finite"),
])
def test_bad_words_are_refused_in_one_line(words, fragment):
    with pytest.raises(ValueError, match=fragment):
        commands.parse_words(words)


def test_lr_messages_are_bounded_finite_data():
    for raw in (b'{"command": "lr"}', b'{"command": "lr", "peak": NaN}', b'{"command": "lr", "factor": Infinity}',
                b'{"command": "lr", "peak": "0.1"}', b'{"command": "lr", "peak": true}',
                b'{"command": "lr", "peak": 0.1, "factor": 2}', b'{"command": "lr", "peak": 0.1, "path": "/x"}',
                b'{"command": "pause", "on": true}'):
        with pytest.raises(ValueError):
            commands.decode(raw)
    with pytest.raises(ValueError):
        commands.encode(ev.SetLearningRate(peak=math.nan))  # never written: JSON without NaN
    assert json.loads(commands.encode(ev.SetLearningRate(factor=0.5))) == {"command": "lr", "factor": 0.5}


def _steering(distributed=False):
    seen: list = []
    record = SimpleNamespace(epoch=2, global_step=17, mixup_override=None, lr_scale=1.0)
    st = commands.Steering(record, seen.append, lambda state, reason: seen.append(("state", state)),
                           distributed=distributed, base_lr=0.1)
    st.lr_now = lambda: 0.1 * record.lr_scale
    return st, record, seen


def test_refusals_are_events_with_codes_never_words():
    st, record, seen = _steering(distributed=True)
    for cmd in (ev.Pause(), ev.SetMixup(on=True), ev.SetLearningRate(factor=0.5)):
        st.apply(cmd)
    refused = [e for e in seen if isinstance(e, ev.CommandRefused)]
    assert [(e.command, e.code) for e in refused] == [("pause", "torchrun"), ("mixup", "torchrun"), ("lr", "torchrun")]
    assert not st.paused and record.mixup_override is None and record.lr_scale == 1.0
    st.apply(ev.SaveCheckpoint())  # works under torchrun
    st.apply(ev.Stop(save=True))
    assert st.stopping and ("state", "stopping") in seen
    # the outcome comes from the type and the command word, whatever the words of a message
    assert commands.confirms(ev.Pause(), refused[0]) is False
    assert commands.confirms(ev.SaveCheckpoint(), refused[0]) is None  # another command's refusal
    assert commands.confirms(ev.Pause(), ev.Warning(message="pause is not available under torchrun")) is None
    assert commands.confirms(ev.SaveCheckpoint(), ev.Warning(message="could not save manual.pt")) is None
    assert commands.confirms(ev.SetMixup(on=True), ev.Warning(message="control channel: mixup cannot")) is None
    failed = ev.CommandRefused(message="could not save x", command="save", code="save_failed")
    assert commands.confirms(ev.SaveCheckpoint(), failed) is False
    assert ev.event_from_dict(json.loads(ev.event_to_json(failed))) == failed  # it serialises into metrics.jsonl


def test_lr_steering_scales_the_schedule_and_refuses_the_absurd():
    st, record, seen = _steering()
    st.apply(ev.SetLearningRate(factor=0.5))
    st.apply(ev.SetLearningRate(peak=0.4))
    st.apply(ev.SetLearningRate(factor=0.5))
    changes = [e for e in seen if isinstance(e, ev.LrChanged)]
    assert [(c.scale, c.peak_lr, c.epoch, c.step) for c in changes] == [(0.5, 0.05, 2, 17), (4.0, 0.4, 2, 17),
                                                                       (2.0, 0.2, 2, 17)]
    assert changes[-1].lr == pytest.approx(0.2) and record.lr_scale == 2.0
    for bad in (ev.SetLearningRate(peak=math.inf), ev.SetLearningRate(peak=-1.0), ev.SetLearningRate(factor=0.0),
                ev.SetLearningRate(factor=1e6), ev.SetLearningRate(), ev.SetLearningRate(peak=0.1, factor=2.0)):
        st.apply(bad)
    for _ in range(3):  # x1000 three times: a peak of 2e8 is refused, the scale stays
        st.apply(ev.SetLearningRate(factor=1000.0))
    refused = [e for e in seen if isinstance(e, ev.CommandRefused)]
    assert len(refused) == 9 and {(e.command, e.code) for e in refused} == {("lr", "bad_value")}
    assert record.lr_scale == 2.0  # even the first x1000 (a peak of 200) is refused: at most 100
    assert commands.confirms(ev.SetLearningRate(factor=0.5), changes[0]) is True


def test_drain_applies_in_order_and_waits_while_paused():
    st, record, seen = _steering()
    q: queue.Queue = queue.Queue()
    for cmd in (ev.SetMixup(on=True), ev.Pause(), ev.Resume(), ev.SetMixup(on=None), ev.Stop(save=False)):
        q.put(cmd)
    st.begin_epoch(scheduled=False)
    st.drain(q)
    assert [e for e in seen if isinstance(e, tuple)] == [("state", "paused"), ("state", "running"),
                                                         ("state", "stopping")]
    mix = [e for e in seen if isinstance(e, ev.MixupChanged)]
    assert [(m.on, m.source, m.step) for m in mix] == [(True, "user", 17), (False, "schedule", 17)]
    assert st.stopping and not st.stop_save and record.mixup_override is None


def test_markers_place_each_steering_action_at_its_step():
    events = [
        ev.StateChanged(state="running", reason="started"),
        ev.StateChanged(state="paused", epoch=1, step=3), ev.StateChanged(state="running", epoch=1, step=3),
        ev.MixupChanged(epoch=1, on=True, source="user", step=4),
        ev.LrChanged(epoch=2, step=9, scale=0.5, peak_lr=0.05),
        ev.CheckpointSaved(path="m.pt", epoch=1, val_acc=None, kind="manual", step_in_epoch=2, global_step=12),
        ev.CheckpointSaved(path="l.pt", epoch=2, val_acc=0.5, kind="last", global_step=15),
        ev.StateChanged(state="stopping", epoch=3, step=16), ev.StateChanged(state="finished", epoch=3, step=16),
    ]
    got = [(m.epoch, m.step, m.label) for m in commands.markers(events)]
    assert got == [(1, 3, "pause"), (1, 3, "resume"), (1, 4, "mixup on"), (2, 9, "lr 0.05"), (2, 12, "save"),
                   (3, 16, "stop")]


def test_old_metrics_lines_still_parse_with_the_new_fields():
    old = {"event": "StateChanged", "time": 1.0, "state": "paused", "reason": "paused by request"}
    assert ev.event_from_dict(old) == ev.StateChanged(state="paused", reason="paused by request", time=1.0)
    old = {"event": "MixupChanged", "time": 1.0, "epoch": 2, "on": True, "source": "user"}
    assert ev.event_from_dict(old).step == 0
