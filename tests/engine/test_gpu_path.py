"""The GPU speed path, proven on a CPU: one compile per run, an EMA without host-device
copies, checkpoints written in the background (atomic, exact resume), mixup pairings
drawn on the device, the speedrun preset's network and its whitening initialisation.

Timings are not asserted here: `python benchmarks/gpu_suite.py` measures them on a GPU.
"""

from __future__ import annotations

import threading
import time

import pytest
import torch

from engine import events as ev
from engine.checkpoint import load_checkpoint
from engine.config import make_config
from engine.ema import WeightEMA, ema_decay_at
from engine.model import SEResNet, count_parameters
from engine.trainer import Trainer

CPU = torch.device("cpu")


def of(seen, cls):
    return [e for e in seen if isinstance(e, cls)]


def _weights(path):
    return load_checkpoint(path)["model"]


def _equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------ torch.compile


_COUNTER: dict = {}
COUNTER_BACKEND = "cifar_tui_test_counter"


@pytest.fixture
def compile_counter():
    """A torch.compile backend, by name (as a config names one), that counts the graphs it
    is asked to compile (CompileCounter) and runs them eagerly."""
    import torch._dynamo
    from torch._dynamo.testing import CompileCounter

    if COUNTER_BACKEND not in torch._dynamo.list_backends(exclude_tags=()):
        torch._dynamo.register_backend(compiler_fn=lambda gm, inputs: _COUNTER["now"](gm, inputs),
                                       name=COUNTER_BACKEND)
    _COUNTER["now"] = counter = CompileCounter()
    torch._dynamo.reset()
    yield COUNTER_BACKEND, counter
    torch._dynamo.reset()


def test_a_ragged_two_epoch_run_compiles_once(small, compile_counter):
    name, counter = compile_counter
    seen = []
    # 300 images in batches of 64: 4 full batches and 44 left over each epoch
    cfg = small(subset=300, epochs=2, compile=True, compile_backend=name)
    assert Trainer(cfg, listeners=[seen.append]).run() == "completed"
    assert counter.frame_count == 1  # the ragged batch would have been a second graph
    (compiled,) = of(seen, ev.Compiled)
    assert compiled.ok and compiled.backend == name and compiled.seconds > 0
    # before the first step: the compile time is in no epoch's seconds
    order = [type(e).__name__ for e in seen]
    assert order.index("Compiled") < order.index("EpochStarted")
    assert of(seen, ev.RunStarted)[0].steps_per_epoch == 4
    notes = [w.message for w in of(seen, ev.Warning) if "torch.compile" in w.message]
    assert len(notes) == 1 and "last 44 of its 300 images" in notes[0]
    assert [e.step_in_epoch for e in of(seen, ev.StepDone)][-1] == 4


def test_the_warm_up_changes_nothing_about_training(small, compile_counter, tmp_path):
    """A compiled run (the eager backend: the same ops) trains bit for bit as an eager one:
    the warm-up's forward/backward leaves BatchNorm's statistics and the weights as they were."""
    name, counter = compile_counter
    plain = Trainer(small(epochs=1, runs_dir=str(tmp_path / "a")))
    assert plain.run() == "completed"
    compiled = Trainer(small(epochs=1, runs_dir=str(tmp_path / "b"), compile=True, compile_backend=name))
    assert compiled.run() == "completed"
    assert counter.frame_count == 1
    a = _weights(plain.run_dir / "checkpoints" / "last.pt")
    b = _weights(compiled.run_dir / "checkpoints" / "last.pt")
    assert _equal(a, b)


def test_compile_settings_are_checked(small):
    from engine.config import ConfigError

    with pytest.raises(ConfigError, match="compile-mode"):
        small(compile=True, compile_mode="fastest")
    seen = []
    assert Trainer(small(compile=True, compile_backend="no_such_backend"), listeners=[seen.append]).run() == "failed"
    assert "not a torch.compile backend" in of(seen, ev.Failed)[0].message
    # on a CPU without a named backend, compile is off (as it always was): every batch is kept
    seen = []
    Trainer(small(subset=300, epochs=1, compile=True), listeners=[seen.append]).run()
    assert not of(seen, ev.Compiled) and of(seen, ev.RunStarted)[0].steps_per_epoch == 5


# ------------------------------------------------------------------ the EMA


class _Devices(torch.utils._python_dispatch.TorchDispatchMode):
    """Records every aten op and the devices of its tensor arguments."""

    def __init__(self):
        super().__init__()
        self.calls: list[tuple[str, set]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        from torch.utils._pytree import tree_leaves

        devices = {t.device.type for t in tree_leaves((args, kwargs or {})) if isinstance(t, torch.Tensor)}
        self.calls.append((str(func), devices))
        return func(*args, **(kwargs or {}))


def test_the_ema_update_makes_no_host_device_copy():
    """On the meta device any host tensor in an op is a host-to-device copy (and
    ``_local_scalar_dense`` a read back): the update has neither, and its counter is an int."""
    model = SEResNet(width=0.125).to("meta")
    ema = WeightEMA(model, 0.9)
    with _Devices() as rec:
        for _ in range(3):
            ema.update()
    assert rec.calls and all(devs <= {"meta"} for _, devs in rec.calls), rec.calls
    assert not any("_local_scalar_dense" in op for op, _ in rec.calls)
    assert type(ema.n) is int and ema.n == 3
    # the detector sees a copy from the host when there is one
    with _Devices() as rec:
        torch.tensor(1.0).to("meta")
    assert any("cpu" in devs for _, devs in rec.calls)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_ema_update_never_syncs_a_gpu():  # pragma: no cover - runs where a GPU is
    model = SEResNet(width=0.125).cuda()
    ema = WeightEMA(model, 0.9)
    ema.update()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            ema.update()
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_the_ema_matches_averaged_model():
    """The same numbers as torch's AveragedModel (use_buffers=True) with the same decay,
    BatchNorm statistics included, over several training steps."""
    from torch.optim.swa_utils import AveragedModel

    torch.manual_seed(0)
    model = SEResNet(width=0.125)
    decay = 0.9

    def avg_fn(avg, cur, n):
        return cur if not avg.is_floating_point() else avg + (cur - avg) * (1 - ema_decay_at(int(n), decay))

    reference = AveragedModel(model, avg_fn=avg_fn, use_buffers=True)
    ema = WeightEMA(model, decay)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for step in range(6):
        x = torch.randn(16, 3, 32, 32)
        y = torch.randint(0, 10, (16,))
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        reference.update_parameters(model)
        ema.update()
    mine, theirs = ema.module.state_dict(), reference.module.state_dict()
    assert mine.keys() == theirs.keys()
    for k in mine:
        assert torch.allclose(mine[k].double(), theirs[k].double(), rtol=1e-5, atol=1e-6), k
    # the average is not the weights (and the BatchNorm statistics are averaged too)
    assert not torch.allclose(mine["stem.1.running_mean"], model.state_dict()["stem.1.running_mean"])


# ------------------------------------------------------------------ checkpoints in the background


class _SlowSaves:
    """Replaces torch.save in engine.checkpoint: write number ``block`` writes half a file,
    says so (``entered``) and waits for ``release``; every write can also be slowed."""

    def __init__(self, monkeypatch, block=None, delay=0.0):
        import engine.checkpoint as ck

        self.real = ck.torch.save
        self.calls = 0
        self.block, self.delay = block, delay
        self.entered, self.release = threading.Event(), threading.Event()
        monkeypatch.setattr(ck.torch, "save", self)

    def __call__(self, obj, fh, *a, **k):
        self.calls += 1
        time.sleep(self.delay)
        if self.calls == self.block:
            fh.write(b"half a checkpoint")
            fh.flush()
            self.entered.set()
            assert self.release.wait(60)
            fh.seek(0)
            fh.truncate()
        return self.real(obj, fh, *a, **k)


def test_background_writes_are_atomic_and_training_goes_on(small, monkeypatch):
    slow = _SlowSaves(monkeypatch, block=2)  # the second write: last.pt of epoch 2
    seen = []
    t = Trainer(small(epochs=3, save_every_epochs=1), listeners=[seen.append])
    t.start()
    assert slow.entered.wait(120)
    ckdir = t.run_dir / "checkpoints"
    try:
        # mid-write: last.pt is still epoch 1's, whole; the new bytes are in a temporary file
        assert load_checkpoint(ckdir / "last.pt")["epoch"] == 1
        assert [p.name for p in ckdir.iterdir() if p.name.startswith(".last.pt.tmp-")]
        # training went on while the file was being written
        deadline = time.time() + 120
        while not any(e.epoch == 3 for e in of(seen, ev.EpochDone)):
            assert time.time() < deadline
            time.sleep(0.05)
        assert t.alive  # the run's end waits for the write
        assert not of(seen, ev.RunFinished)
    finally:
        slow.release.set()
    t.join(120)
    assert t.result.outcome == "completed"
    saved = [(e.kind, e.epoch) for e in of(seen, ev.CheckpointSaved) if e.kind == "last"]
    assert saved == [("last", 1), ("last", 2), ("last", 3)]
    assert t.result.last_checkpoint == str(ckdir / "last.pt")
    assert load_checkpoint(ckdir / "last.pt")["epoch"] == 3
    assert not [p for p in ckdir.iterdir() if ".tmp-" in p.name]
    # every CheckpointSaved before the end: StateChanged(finished), then RunFinished
    names = [type(e).__name__ for e in seen]
    assert names[-2:] == ["StateChanged", "RunFinished"] and "CheckpointSaved" not in names[-2:]


def test_exact_resume_from_a_checkpoint_written_while_training_went_on(small, monkeypatch, tmp_path):
    """epoch-001.pt is written slowly while epoch 2 trains: it must hold the state at the end
    of epoch 1 (a copy), so a run resumed from it ends bit for bit as one that never stopped."""
    straight = Trainer(small(epochs=2, ema_decay=0.9, runs_dir=str(tmp_path / "a")))
    assert straight.run() == "completed"
    _SlowSaves(monkeypatch, delay=0.5)
    slowed = Trainer(small(epochs=2, ema_decay=0.9, save_every=1, runs_dir=str(tmp_path / "b")))
    assert slowed.run() == "completed"
    first = slowed.run_dir / "checkpoints" / "epoch-001.pt"
    assert load_checkpoint(first)["global_step"] == 5
    resumed = Trainer(resume=str(first), resume_overrides={"epochs": 2})
    assert resumed.run() == "completed"
    end = load_checkpoint(resumed.run_dir / "checkpoints" / "last.pt")
    ref = load_checkpoint(straight.run_dir / "checkpoints" / "last.pt")
    assert _equal(end["model"], ref["model"]) and _equal(end["ema"], ref["ema"])


def test_checkpoints_are_time_based_by_default(small, tmp_path):
    """Without --save-every-epochs, last.pt waits for save_seconds (at most once a minute by
    default), except at the run's end; a new best waits in memory and is written with it."""
    seen = []
    t = Trainer(small(epochs=3, save_seconds=3600), listeners=[seen.append])
    assert t.run() == "completed"
    kinds = [(e.kind, e.epoch) for e in of(seen, ev.CheckpointSaved)]
    best = of(seen, ev.EpochDone)[-1].best_epoch
    assert [k for k in kinds if k[0] == "last"] == [("last", 3)]
    assert ("best", best) in kinds
    assert load_checkpoint(t.run_dir / "checkpoints" / "best.pt")["epoch"] == best
    assert t.result.best_checkpoint == str(t.run_dir / "checkpoints" / "best.pt")
    seen = []
    Trainer(small(epochs=2, save_seconds=0, runs_dir=str(tmp_path / "b")), listeners=[seen.append]).run()
    assert [e.epoch for e in of(seen, ev.CheckpointSaved) if e.kind == "last"] == [1, 2]


def test_a_stop_at_an_epoch_boundary_saves_when_last_pt_is_older(small):
    seen = []

    def on_event(e):  # a Stop after epoch 1's last step (5 steps an epoch)
        seen.append(e)
        if isinstance(e, ev.StepDone) and e.step == 5:
            trainer.send(ev.Stop(save=True))

    trainer = Trainer(small(epochs=3, save_seconds=3600), listeners=[on_event])
    assert trainer.run() == "stopped"
    (stop,) = [e for e in of(seen, ev.CheckpointSaved) if e.kind == "stop"]
    assert (stop.epoch, stop.step_in_epoch, stop.global_step) == (1, 0, 5)
    assert trainer.result.last_checkpoint == stop.path
    assert load_checkpoint(stop.path)["global_step"] == 5


def test_a_failed_run_writes_its_pending_best(small, monkeypatch):
    import engine.trainer as tr

    real_ce = tr.F.cross_entropy
    calls = {"n": 0}

    def poisoned(*a, **k):  # NaN from epoch 2 on
        calls["n"] += 1
        loss = real_ce(*a, **k)
        return loss * float("nan") if calls["n"] > 5 and loss.requires_grad else loss

    monkeypatch.setattr(tr.F, "cross_entropy", poisoned)
    seen = []
    t = Trainer(small(epochs=3), listeners=[seen.append])
    assert t.run() == "failed"
    best = t.run_dir / "checkpoints" / "best.pt"
    assert load_checkpoint(best)["epoch"] == 1
    assert str(best) in of(seen, ev.Failed)[0].message  # resume from it with a lower --lr
    assert t.result.best_checkpoint == str(best) and t.result.last_checkpoint is None


# ------------------------------------------------------------------ mixup pairings


def test_mixup_pairing_depends_on_seed_epoch_step_rank_only():
    from engine.data import make_epoch_plan, mixup_permutation

    cfg = make_config("paper")
    plan = make_epoch_plan(640, 64, 0, 3, cfg, CPU)
    g = torch.Generator(device=CPU)
    first = mixup_permutation(plan, 4, 64, CPU, salt=0, generator=g)
    for step in range(10):  # the generator's earlier draws do not matter
        mixup_permutation(plan, step, 64, CPU, salt=1, generator=g)
    assert torch.equal(mixup_permutation(plan, 4, 64, CPU, salt=0, generator=g), first)
    assert torch.equal(mixup_permutation(plan, 4, 64, CPU, salt=0), first)
    assert first.device == CPU and sorted(first.tolist()) == list(range(64))
    again = make_epoch_plan(640, 64, 0, 3, cfg, CPU)  # the same (seed, epoch): the same pairing
    assert torch.equal(mixup_permutation(again, 4, 64, CPU, generator=g), first)
    others = [mixup_permutation(plan, 5, 64, CPU, generator=g), mixup_permutation(plan, 4, 64, CPU, salt=1, generator=g),
              mixup_permutation(make_epoch_plan(640, 64, 0, 4, cfg, CPU), 4, 64, CPU, generator=g),
              mixup_permutation(make_epoch_plan(640, 64, 1, 3, cfg, CPU), 4, 64, CPU, generator=g)]
    assert all(not torch.equal(o, first) for o in others)
    # on a CPU, the pairings of every earlier version (runs resume as they were)
    old = torch.randperm(64, generator=torch.Generator().manual_seed(plan.mix_seed + 4))
    assert torch.equal(first, old)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_mixup_pairing_is_drawn_on_the_gpu():  # pragma: no cover - runs where a GPU is
    from engine.data import make_epoch_plan, mixup_permutation

    dev = torch.device("cuda")
    plan = make_epoch_plan(640, 64, 0, 3, make_config("paper"), dev)
    g = torch.Generator(device=dev)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        a = mixup_permutation(plan, 4, 64, dev, generator=g)
        mixup_permutation(plan, 5, 64, dev, generator=g)
        b = mixup_permutation(plan, 4, 64, dev, generator=g)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert a.device.type == "cuda" and torch.equal(a, b)


# ------------------------------------------------------------------ speedrun


def test_speedrun_is_the_reports_network():
    from engine.model import whiten_stem_, zero_init_residual_

    cfg = make_config("speedrun")
    model = SEResNet(cfg.width)
    assert count_parameters(model) == 4_993_166
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    zero_init_residual_(model)
    whiten_stem_(model, torch.randn(64, 3, 32, 32))
    assert {k: v.shape for k, v in model.state_dict().items()} == shapes  # checkpoints still load
    assert count_parameters(model) == 4_993_166 and all(p.requires_grad for p in model.parameters())
    assert cfg.batch_size == 1024 and cfg.label_smoothing == 0.2 and cfg.nesterov and cfg.val_size == 0
    assert cfg.whiten_stem and cfg.zero_init_residual and cfg.flip_mode == "alternate" and cfg.tta_translate


def test_the_stem_whitening_whitens_the_training_patches():
    from engine.data import make_synthetic
    from engine.evaluate import Normalizer
    from engine.model import patch_covariance, whiten_stem_

    images = Normalizer(CPU)(make_synthetic(n_train=400, n_test=1).train.x)
    model = SEResNet(width=0.25)  # a 16-channel stem: 8 whitening filters and their negatives
    k = whiten_stem_(model, images)
    assert k == 8
    conv = model.stem[0]
    out = torch.nn.functional.conv2d(images.double(), conv.weight.double())  # the 30x30 whole patches
    flat = out.permute(1, 0, 2, 3).reshape(out.shape[1], -1)
    cov = torch.cov(flat[:k])
    assert torch.allclose(cov, torch.eye(k, dtype=cov.dtype), atol=0.02), cov.diag()
    assert torch.allclose(conv.weight[k:2 * k], -conv.weight[:k])
    # against a direct computation of the patch covariance
    patches = torch.nn.functional.unfold(images[:20].double(), 3).transpose(1, 2).reshape(-1, 27)
    assert torch.allclose(patch_covariance(images[:20]), torch.cov(patches.T), atol=1e-9)
    # still an ordinary, trainable parameter
    model(images[:4]).sum().backward()
    assert conv.weight.requires_grad and conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0


def test_speedrun_options_train(small):
    """Every speedrun option on at once, at a tiny scale: it trains, evaluates once at the
    end with flip and translation TTA, and keeps BatchNorm biases in their own lr group."""
    seen = []
    cfg = small(preset="speedrun", epochs=2, batch_size=64, val_size=100, subset=320, cutout=8, crop_padding=4,
                low_res_size=24, low_res_epochs=1, log_every=5)
    t = Trainer(cfg, listeners=[seen.append])
    assert t.run() == "completed"
    done = of(seen, ev.EpochDone)
    assert [d.val_acc is None for d in done] == [True, False]  # val_every 0: only after the last epoch
    ck = load_checkpoint(t.run_dir / "checkpoints" / "last.pt")
    groups = ck["optimizer"]["param_groups"]
    assert [g["lr_scale"] for g in groups] == [1.0, cfg.bn_bias_lr_scale]
    assert groups[1]["weight_decay"] == pytest.approx(cfg.weight_decay / cfg.bn_bias_lr_scale)
    assert groups[1]["lr"] == pytest.approx(groups[0]["lr"] * cfg.bn_bias_lr_scale)


def test_alternating_flips_and_the_new_augmentations():
    from engine.data import Augmenter, make_epoch_plan

    cfg = make_config("speedrun", cutout=8)
    p1, p2, p3 = (make_epoch_plan(200, 50, 7, e, cfg, CPU) for e in (1, 2, 3))

    def by_image(plan):
        flips = torch.empty(200, dtype=torch.bool)
        flips[plan.order] = plan.flips
        return flips

    assert torch.equal(by_image(p1), ~by_image(p2)) and torch.equal(by_image(p1), by_image(p3))
    assert 60 < int(by_image(p1).sum()) < 140
    assert p1.cutout is not None and p1.cutout.shape == (200, 2)
    x = torch.full((2, 3, 32, 32), 200, dtype=torch.uint8)
    aug = Augmenter(2, CPU, use_gray=False, use_autocontrast=False, reflect=True, cutout=8)
    no = torch.zeros(2, dtype=torch.bool)
    out = aug(x, torch.zeros(2, 2, dtype=torch.long), no, no, no, torch.tensor([[16, 16], [0, 0]]))
    assert int((out[0] == 0).all(0).sum()) == 64 and int((out[1] == 0).all(0).sum()) == 16  # clipped at the edge
    # shifted 2 pixels down-right with reflect padding: the border is the image's, not black
    assert torch.equal(out[0, :, :2, :2], out[0, :, 30:, 30:])


def test_optimizer_state_keeps_this_process_implementation():
    from engine.trainer import make_optimizer, restore_optimizer

    cfg = make_config("tiny", width=0.125)
    model = SEResNet(0.125)
    opt = make_optimizer(cfg, model, CPU)
    saved = opt.state_dict()
    for g in saved["param_groups"]:
        g["fused"] = True  # as a GPU run with fused SGD saves it
    other = make_optimizer(cfg, model, CPU)
    restore_optimizer(other, saved)
    assert [g["fused"] for g in other.param_groups] == [g["fused"] for g in opt.param_groups]


def test_old_metrics_files_still_read():
    line = {"event": "EpochDone", "time": 1.0, "epoch": 1, "train_loss": 1.0, "train_acc": 0.5,
            "val_loss": None, "val_acc": None, "seconds": 2.0}
    assert ev.event_from_dict(line).val_seconds is None
    c = ev.Compiled(seconds=1.5, backend="inductor")
    assert ev.event_from_dict(ev.event_to_dict(c)) == c


def test_translation_tta_weighs_the_shifted_views():
    from engine.evaluate import _shift, predict_logits

    x = torch.arange(2 * 3 * 32 * 32, dtype=torch.float32).view(2, 3, 32, 32)
    down = _shift(x, 1, 1)
    assert torch.equal(down[..., 1:, 1:], x[..., :-1, :-1]) and torch.equal(down[..., 0, 1:], x[..., 1, :-1])
    assert torch.equal(_shift(x, -1, -1)[..., :-1, :-1], x[..., 1:, 1:])
    torch.manual_seed(0)
    model = SEResNet(width=0.125).eval()
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    both = predict_logits(model, images, CPU, tta_flip=True, tta_translate=True)
    flip = predict_logits(model, images, CPU, tta_flip=True)
    from engine.evaluate import Normalizer

    xb = Normalizer(CPU)(images)
    with torch.no_grad():
        views = [(model(v) + model(v.flip(3))) / 2 for v in (_shift(xb, -1, -1), _shift(xb, 1, 1))]
    assert torch.allclose(both, 0.5 * flip + 0.25 * views[0] + 0.25 * views[1], atol=1e-5)
    assert not torch.allclose(both, flip, atol=1e-4)


def test_a_second_batch_size_is_a_new_static_compile_never_a_dynamic_graph():
    """dynamic=False wherever the step is compiled: the compiled forward called with a second
    batch size compiles a second static graph (a counting backend sees only whole numbers in
    the shapes), where torch's automatic dynamic shapes would otherwise make it symbolic."""
    import torch
    import torch._dynamo

    from engine.compiled import Forward
    from engine.model import SEResNet

    seen = []

    def counting(gm, example_inputs):
        seen.append(next(tuple(t.shape) for t in example_inputs if isinstance(t, torch.Tensor) and t.dim() == 4
                         and t.shape[1:] == (3, 32, 32)))
        return gm.forward

    if "cifar_tui_counting" not in torch._dynamo.list_backends(exclude_tags=()):
        torch._dynamo.register_backend(compiler_fn=counting, name="cifar_tui_counting")
    torch._dynamo.reset()
    f = Forward(SEResNet(width=0.0625), "cifar_tui_counting", None, warn=print)
    for batch in (32, 48, 64, 48):
        f(torch.zeros(batch, 3, 32, 32))
    # a dynamic graph would have served 64 (and any other size) after the second compile
    assert [shape[0] for shape in seen] == [32, 48, 64], "a graph was compiled with dynamic shapes"


def test_reading_the_metrics_copies_nothing_to_the_device(small, monkeypatch):
    """The metric read is one device-to-host read: no tensor built on the device from host
    values (the old torch.tensor([...], device=...) was a blocking copy from pageable memory)."""
    import sys

    import torch

    import engine.trainer as tr
    from engine.trainer import Trainer

    made = []
    real = torch.tensor

    def tensor(*a, **kw):
        if kw.get("device") is not None and sys._getframe(1).f_code.co_filename == tr.__file__:
            made.append(sys._getframe(1).f_code.co_name)
        return real(*a, **kw)

    monkeypatch.setattr(torch, "tensor", tensor)
    assert Trainer(small(epochs=1, subset=128, val_size=32, log_every=1)).run() == "completed"
    assert made == []
