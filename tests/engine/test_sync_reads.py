"""The training loop's host-device syncs, proven on a CPU through the seams that decide them
(engine.readback.delays, engine.device.pins): the metric read one log late from a pinned
buffer, no forced read at an epoch's first step where reads are delayed, the epoch plan
copied from pinned memory, the evaluation's normaliser built once per device."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
import torch

import engine.device
import engine.readback
from engine import events as ev
from engine.readback import SumsReader
from engine.trainer import Trainer

CPU = torch.device("cpu")


def _steps(cfg, delayed, monkeypatch):
    """The StepDone events of a run, each with the global step reached when it was announced,
    and its EpochDone records; reads delayed (as on CUDA) or not."""
    monkeypatch.setattr(engine.readback, "delays", lambda device: delayed)
    seen, box = [], {}

    def listen(e):
        if isinstance(e, ev.StepDone):
            seen.append((e, box["t"]._progress.global_step))
        elif isinstance(e, ev.EpochDone):
            seen.append((e, None))

    box["t"] = t = Trainer(cfg, listeners=[listen])
    assert t.run() == "completed"
    steps = [(e, at) for e, at in seen if isinstance(e, ev.StepDone)]
    return steps, [e for e, _ in seen if isinstance(e, ev.EpochDone)]


def test_metrics_are_read_one_log_late_and_epochs_end_exact(small, monkeypatch):
    """Delayed reads (CUDA's way) announce the same StepDone figures as immediate ones, each one
    log later, with nothing forced at an epoch's first step; the epoch's record is exact."""
    cfg = small(subset=160, batch_size=16, width=0.0625, log_every=3, log_seconds=3600, epochs=2, val_size=16)
    now, now_epochs = _steps(cfg, False, monkeypatch)
    late, late_epochs = _steps(cfg, True, monkeypatch)
    assert [e.step_in_epoch for e, _ in now] == [1, 3, 6, 9, 10] * 2  # a CPU shows step 1 at once
    assert [e.step_in_epoch for e, _ in late] == [3, 6, 9, 10] * 2  # step 1 is not forced
    same = {e.step: e for e, _ in now}
    for e, at in late:
        assert (e.loss, e.train_acc, e.lr) == (same[e.step].loss, same[e.step].train_acc, same[e.step].lr)
        end = (e.epoch) * 10
        # announced at the next log (3 steps later), or with the epoch's last read
        assert at == (min(e.step + 3, end) if e.step_in_epoch < 9 else end), (e.step, at)
    assert [(r.train_loss, r.train_acc) for r in late_epochs] == [(r.train_loss, r.train_acc) for r in now_epochs]


def test_the_read_is_of_a_pinned_host_copy_never_of_the_device_sums(monkeypatch):
    """At a log the sums are copied (asynchronously) into one host buffer, pinned where the
    device needs it; the values handed over are read from that buffer, a log later."""
    pinned, read = [], []
    real_tolist = torch.Tensor.tolist
    monkeypatch.setattr(engine.readback, "pins", lambda device: True)
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self: pinned.append(self) or self)
    monkeypatch.setattr(torch.Tensor, "tolist", lambda self: read.append(self) or real_tolist(self))
    reader = SumsReader(CPU, delayed=True)
    sums = [torch.tensor([float(i), 2.0 * i, 3.0]) for i in range(4)]
    assert reader.post(sums[0], "a") is None
    sums[0] += 100  # training goes on adding: the reading is the copy made at the log
    first = reader.post(sums[1], "b")
    assert (first.values, first.note) == ([0.0, 0.0, 3.0], "a")
    assert reader.post(sums[2], "c").note == "b"
    rest = reader.now(sums[3], "d")  # an epoch's end: the pending reading, then this one at once
    assert [(r.values, r.note) for r in rest] == [([2.0, 4.0, 3.0], "c"), ([3.0, 6.0, 3.0], "d")]
    assert reader.take() is None
    assert len(pinned) == 1  # one buffer, made once
    assert all(t is reader._buf for t in read[:-1]) and read[-1] is sums[3]  # only now() reads the sums


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_delayed_read_never_syncs_a_gpu():  # pragma: no cover - runs where a GPU is
    reader = SumsReader(torch.device("cuda"))
    sums = torch.ones(3, device="cuda")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for i in range(3):
            reader.post(sums * i, i)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert reader._buf.is_pinned()


def test_the_first_step_is_forced_only_where_reads_are_immediate():
    from engine.setup import Setup

    cfg = SimpleNamespace(log_every=20, log_seconds=1.0)
    for device, forced in (("cpu", True), ("cuda", False)):
        s = SimpleNamespace(cfg=cfg, dist=SimpleNamespace(enabled=False), device=torch.device(device))
        assert Setup.log_due(s, 1, 100, time.monotonic()) is forced
        assert Setup.log_due(s, 20, 100, time.monotonic())  # every log_every steps, on both


def test_the_epoch_plan_travels_from_pinned_memory(monkeypatch):
    from engine.augment import make_epoch_plan
    from engine.config import make_config

    pinned = []
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self: pinned.append(self.shape) or self)
    cfg = make_config("speedrun", width=0.0625, cutout=8)
    make_epoch_plan(100, 32, 0, 1, cfg, CPU)
    assert pinned == []  # a CPU: nothing to pin
    monkeypatch.setattr(engine.device, "pins", lambda device: True)
    plan = make_epoch_plan(100, 32, 0, 1, cfg, CPU)
    assert len(pinned) == 6  # order, offsets, flips, gray, autocontrast, cutout
    assert plan.order.shape == (100,)


def test_the_evaluation_normaliser_is_built_once_per_device(monkeypatch):
    import engine.evaluate as evaluate
    from engine.model import SEResNet

    built = []
    real = evaluate.Normalizer.__init__
    monkeypatch.setattr(evaluate.Normalizer, "__init__", lambda self, *a, **k: built.append(a) or real(self, *a, **k))
    evaluate.normalizer_for.cache_clear()
    model = SEResNet(width=0.0625)
    images, labels = torch.zeros(4, 3, 32, 32, dtype=torch.uint8), torch.zeros(4, dtype=torch.long)
    for _ in range(3):
        evaluate.validation_sums(model, images, labels, CPU)
    evaluate.predict_logits(model, images, CPU)
    assert len(built) == 1
