"""The `paper` preset against the report's code (docs/fidelity.md), and old configs unchanged.

The report's training code: torchvision transforms on PIL images, RandomCrop(32, padding=4),
RandomHorizontalFlip(0.2), RandomGrayscale(0.2), RandomAutocontrast(0.2), ToTensor,
Normalize(CIFAR mean/std); SGD(lr 0.1, momentum 0.9, weight decay 5e-4), batch 128,
clip_grad_value_ 0.1; CosineAnnealingLR(T_max=400) stepped once per epoch; mixup
Beta(1, 1) on an epoch with probability 0.9 for 400 epochs, then more epochs without mixup
while the scheduler keeps stepping.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

import torchvision.transforms.functional as TF
import torchvision.transforms.v2.functional as F2

from engine.config import CIFAR_MEAN, CIFAR_STD, ConfigError, TrainConfig, make_config
from engine.data import Augmenter, make_epoch_plan, split_indices
from engine.schedule import lr_at, mixup_scheduled

CPU = torch.device("cpu")
LEVEL = 1 / 255  # one grey level on ToTensor's [0, 1] scale
EPS = 1e-5  # float error of normalising and un-normalising

# A config as the engine stored it before flip_p, schedule_unit, cosine_epochs and
# mixup_until_epoch existed (the old `paper` preset): checkpoints and config.json hold these.
OLD_PAPER = dict(
    data="cifar10", subset=None, val_size=None, width=1.0, preset="paper", epochs=200, batch_size=128,
    lr=0.1, momentum=0.9, nesterov=False, weight_decay=5e-4, warmup_epochs=0.0, schedule="cosine",
    grad_clip_value=0.1, label_smoothing=0.0, ema_decay=None, tta_flip=False, crop_padding=4, flip=True,
    grayscale_p=0.2, autocontrast_p=0.2, mixup=True, mixup_alpha=1.0, mixup_prob=0.9, mixup_off_epochs=10,
    seed=0, device="auto", runs_dir=None, save_every=0, log_every=20, amp=True, channels_last=True,
    compile=False,
)


# ------------------------------------------------------------------ helpers


def _unnormalise(out: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR_STD).view(1, 3, 1, 1)
    return out * std + mean  # ToTensor's [0, 1] scale


def _pil(img: torch.Tensor) -> Image.Image:
    return Image.fromarray(img.permute(1, 2, 0).numpy())


def _from_pil(img: Image.Image) -> torch.Tensor:
    return TF.to_tensor(img)  # ToTensor, as the report's pipeline: float in [0, 1]


def _report_pipeline(img: torch.Tensor, off: tuple[int, int], flip: bool, gray: bool, ac: bool) -> torch.Tensor:
    """One image through the report's transforms (on a PIL image, as its dataset gave them),
    with the random choices fixed: RandomCrop(32, padding=4) at ``off``, then flip, grayscale,
    autocontrast, each the exact function its Random* transform calls."""
    p = _pil(img)
    p = TF.crop(TF.pad(p, 4), off[0], off[1], 32, 32)
    if flip:
        p = TF.hflip(p)
    if gray:
        p = TF.rgb_to_grayscale(p, num_output_channels=3)
    if ac:
        p = TF.autocontrast(p)
    return _from_pil(p)


def _images(n: int, seed: int = 0) -> torch.Tensor:
    """Random uint8 images: uniform noise, low-contrast noise, and blocky ones (flat patches)."""
    g = torch.Generator().manual_seed(seed)
    k = n // 3
    uniform = torch.randint(0, 256, (k, 3, 32, 32), generator=g)
    low = torch.randint(0, 12, (k, 3, 32, 32), generator=g) + torch.randint(0, 244, (k, 3, 1, 1), generator=g)
    blocks = torch.randint(0, 256, (n - 2 * k, 3, 4, 4), generator=g).repeat_interleave(8, 2).repeat_interleave(8, 3)
    return torch.cat([uniform, low, blocks]).to(torch.uint8)


def _augment(x: torch.Tensor, offsets, flips, gray, ac) -> torch.Tensor:
    aug = Augmenter(4, CPU)
    return _unnormalise(aug(x, offsets, flips, gray, ac))


def _epoch_lrs_torch(t_max: int, epochs: int, lr: float = 0.1) -> list[float]:
    """The lr of each epoch under torch's CosineAnnealingLR stepped once per epoch."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=t_max)
    out = []
    for _ in range(epochs):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


# ------------------------------------------------------------------ the preset's settings


def test_paper_settings_are_the_reports_code():
    c = make_config("paper")
    # optimiser, loss, clipping, model
    assert (c.lr, c.momentum, c.nesterov, c.weight_decay, c.batch_size) == (0.1, 0.9, False, 5e-4, 128)
    assert c.grad_clip_value == 0.1 and c.label_smoothing == 0.0 and c.ema_decay is None and not c.tta_flip
    assert c.width == 1.0
    # augmentation: RandomCrop(32, padding=4), RandomHorizontalFlip(0.2), RandomGrayscale(0.2),
    # RandomAutocontrast(0.2), Normalize(mean, std)
    assert c.crop_padding == 4 and c.flip and c.flip_p == 0.2
    assert c.grayscale_p == 0.2 and c.autocontrast_p == 0.2
    assert CIFAR_MEAN == (0.4914, 0.4822, 0.4465) and CIFAR_STD == (0.2023, 0.1994, 0.2010)
    # mixup Beta(1, 1) on an epoch with probability 0.9; CosineAnnealingLR(T_max=400) per epoch;
    # 400 epochs with mixup, then a 30-epoch tail without it
    assert c.mixup and c.mixup_alpha == 1.0 and c.mixup_prob == 0.9
    assert c.schedule == "cosine" and c.schedule_unit == "epoch" and c.cosine_epochs == 400
    assert c.warmup_epochs == 0
    assert c.epochs == 430 and c.mixup_until_epoch == 400 and c.mixup_off_epochs == 0


def test_grayscale_comes_before_autocontrast_on_a_crafted_image():
    # Red ramps 0..93, green and blue are flat: autocontrast first would stretch red alone to
    # 0..255 (then grey mixes it); grey first gives a faint ramp that autocontrast then
    # stretches to the full range in every channel.
    img = torch.empty(1, 3, 32, 32, dtype=torch.uint8)
    img[0, 0] = (torch.arange(32) * 3).view(1, 32).expand(32, 32)
    img[0, 1] = 50
    img[0, 2] = 200
    reports = _from_pil(TF.autocontrast(TF.rgb_to_grayscale(_pil(img[0]), 3)))
    swapped = _from_pil(TF.rgb_to_grayscale(TF.autocontrast(_pil(img[0])), 3))
    assert (reports - swapped).abs().max() > 0.3  # the orders really differ on this image
    on = torch.ones(1, dtype=torch.bool)
    ours = _augment(img, torch.tensor([[4, 4]]), ~on, on, on)[0]
    assert (ours - reports).abs().max() <= LEVEL + EPS
    assert (ours - swapped).abs().max() > 0.3


@pytest.mark.parametrize("flip", [False, True])
def test_augmenter_matches_the_reports_pipeline_with_every_op_on(flip):
    """Crop, flip, grayscale and autocontrast all forced on, against torchvision on PIL images."""
    x = _images(150)
    n = len(x)
    offsets = torch.from_numpy(np.random.default_rng(1).integers(0, 9, size=(n, 2)))
    on = torch.ones(n, dtype=torch.bool)
    ours = _augment(x, offsets, on if flip else ~on, on, on)
    ref = torch.stack([_report_pipeline(x[i], tuple(offsets[i].tolist()), flip, True, True) for i in range(n)])
    assert (ours - ref).abs().max() <= LEVEL + EPS


def test_augmenter_matches_the_reports_pipeline_with_random_masks():
    x = _images(150, seed=2)
    n = len(x)
    rng = np.random.default_rng(3)
    offsets = torch.from_numpy(rng.integers(0, 9, size=(n, 2)))
    flips, gray, ac = (torch.from_numpy(rng.random(n) < 0.5) for _ in range(3))
    ours = _augment(x, offsets, flips, gray, ac)
    ref = torch.stack([
        _report_pipeline(x[i], tuple(offsets[i].tolist()), bool(flips[i]), bool(gray[i]), bool(ac[i]))
        for i in range(n)
    ])
    assert (ours - ref).abs().max() <= LEVEL + EPS


def test_grayscale_is_pils_luma_exactly_and_within_a_level_of_torchvisions_tensor_kernel():
    x = _images(150, seed=4)
    n = len(x)
    on, off = torch.ones(n, dtype=torch.bool), torch.zeros(n, dtype=torch.bool)
    centre = torch.full((n, 2), 4)
    ours = _augment(x, centre, off, on, off)
    pil = torch.stack([_from_pil(TF.rgb_to_grayscale(_pil(im), 3)) for im in x])
    assert (ours - pil).abs().max() <= EPS  # bit-exact up to float error
    tv2 = F2.rgb_to_grayscale(x, num_output_channels=3).float() / 255
    assert (ours - tv2).abs().max() <= LEVEL + EPS
    levels = (ours * 255).round()
    assert torch.equal(levels[:, 0], levels[:, 1]) and torch.equal(levels[:, 1], levels[:, 2])  # 3 equal channels


def test_autocontrast_is_within_a_level_of_torchvision_on_tensors_and_pil():
    x = _images(150, seed=5)
    x[0] = 77  # a flat image: left alone
    x[1, 0] = 9  # one flat channel among stretched ones
    n = len(x)
    on, off = torch.ones(n, dtype=torch.bool), torch.zeros(n, dtype=torch.bool)
    ours = _augment(x, torch.full((n, 2), 4), off, off, on)
    tv2 = F2.autocontrast(x).float() / 255
    pil = torch.stack([_from_pil(TF.autocontrast(_pil(im))) for im in x])
    assert (ours - tv2).abs().max() <= LEVEL + EPS
    assert (ours - pil).abs().max() <= LEVEL + EPS
    assert (ours[0] - 77 / 255).abs().max() <= EPS and (ours[1, 0] - 9 / 255).abs().max() <= EPS
    # per channel, per image: every stretched channel spans the full range
    assert torch.allclose(ours[2:].amin(dim=(2, 3)), torch.zeros(n - 2, 3), atol=EPS)
    assert torch.allclose(ours[2:].amax(dim=(2, 3)), torch.ones(n - 2, 3), atol=EPS)


# ------------------------------------------------------------------ flips


@pytest.mark.parametrize("make, p", [
    (lambda: make_config("paper"), 0.2),
    (lambda: make_config("paper", flip_p=0.7), 0.7),
    (lambda: make_config("fast"), 0.5),
    (lambda: make_config("paper", flip=False), 0.0),
    (lambda: TrainConfig.from_dict(OLD_PAPER), 0.5),
    (lambda: TrainConfig.from_dict({**OLD_PAPER, "flip": False}), 0.0),
], ids=["paper", "flip_p-0.7", "fast", "paper-no-flip", "old-config", "old-config-no-flip"])
def test_flip_fraction_is_flip_p(make, p):
    cfg = make()
    n = 40_000
    fracs = [make_epoch_plan(n, 128, 0, epoch, cfg, CPU).flips.float().mean().item() for epoch in (1, 2)]
    for f in fracs:
        assert abs(f - p) < 0.01  # 5 standard deviations at n = 40,000


def test_flip_draws_are_the_old_ones_for_old_configs():
    """An old run resumes with the same plan: the draws did not move, only the threshold."""
    cfg = TrainConfig.from_dict(OLD_PAPER)
    plan = make_epoch_plan(1000, 128, 7, 3, cfg, CPU)
    rng = np.random.default_rng([7, 3, 0xC1FA])
    order = rng.permutation(1000)
    offsets = rng.integers(0, 9, size=(1000, 2))
    flips = rng.random(1000) < 0.5
    gray = rng.random(1000) < 0.2
    assert np.array_equal(plan.order.numpy(), order) and np.array_equal(plan.offsets.numpy(), offsets)
    assert np.array_equal(plan.flips.numpy(), flips) and np.array_equal(plan.gray.numpy(), gray)


# ------------------------------------------------------------------ the lr schedule


@pytest.mark.parametrize("steps_per_epoch", [352, 391])  # 45,000 and 50,000 images at batch 128
def test_paper_lr_is_torchs_cosine_annealing_stepped_per_epoch(steps_per_epoch):
    cfg = make_config("paper")
    total = cfg.epochs * steps_per_epoch
    ref = _epoch_lrs_torch(400, 450)  # past the preset's 430 epochs too (a run extended on resume)
    for e, want in enumerate(ref):
        got = {lr_at(cfg, e * steps_per_epoch + k, total, steps_per_epoch) for k in (0, 1, steps_per_epoch // 2, steps_per_epoch - 1)}
        assert len(got) == 1  # constant within the epoch
        (got,) = got
        if want == 0.0:
            assert got == 0.0 and e == 400
        else:
            assert got == pytest.approx(want, rel=1e-9, abs=0)
    lrs = [lr_at(cfg, e * steps_per_epoch, total, steps_per_epoch) for e in range(450)]
    assert lrs[0] == 0.1 and lrs[200] == pytest.approx(0.05, rel=1e-12)
    assert all(a > b for a, b in zip(lrs[:400], lrs[1:401]))  # falls to zero at epoch 401 (1-based)
    assert all(a < b for a, b in zip(lrs[400:449], lrs[401:450]))  # then rises again
    assert 0 < lrs[429] < 0.002  # the last epoch of the 430-epoch preset: small, rising


def test_extending_a_paper_run_keeps_its_schedule():
    cfg = make_config("paper")
    longer = cfg.replace(epochs=450)  # what --resume --epochs 450 does
    spe = 391
    for step in range(0, 430 * spe, 97):
        assert lr_at(longer, step, 450 * spe, spe) == lr_at(cfg, step, 430 * spe, spe)
    assert [mixup_scheduled(longer, e, True) for e in range(1, 451)] == [e <= 400 for e in range(1, 451)]


def test_per_epoch_warm_up_then_cosine():
    cfg = make_config("paper", warmup_epochs=2.0)
    spe = 10
    lrs = [lr_at(cfg, e * spe + 3, 430 * spe, spe) for e in range(5)]
    assert lrs[:3] == pytest.approx([0.05, 0.1, 0.1])
    assert lrs[3] == pytest.approx(0.1 * (1 + math.cos(math.pi / 398)) / 2)
    with pytest.raises(ConfigError, match="whole number"):
        make_config("paper", warmup_epochs=1.5)


def test_per_step_cosine_with_a_cosine_length_is_available():
    cfg = make_config("paper", schedule_unit="step")
    spe = 100
    assert lr_at(cfg, 0, 430 * spe, spe) == pytest.approx(0.1)
    assert lr_at(cfg, 200 * spe, 430 * spe, spe) == pytest.approx(0.05)
    assert lr_at(cfg, 200 * spe + 1, 430 * spe, spe) < lr_at(cfg, 200 * spe, 430 * spe, spe)  # per step
    assert lr_at(cfg, 400 * spe, 430 * spe, spe) == pytest.approx(0.0, abs=1e-15)
    assert lr_at(cfg, 410 * spe, 430 * spe, spe) > lr_at(cfg, 405 * spe, 430 * spe, spe) > 0


def test_fast_preset_keeps_its_per_step_warm_up_and_linear_decay():
    fast = make_config("fast")
    assert fast.schedule_unit == "step" and fast.cosine_epochs is None and fast.mixup_until_epoch is None
    assert fast.flip and fast.flip_p == 0.5
    assert lr_at(fast, 0, 300, 10) == pytest.approx(fast.lr / 20)
    assert lr_at(fast, 1, 300, 10) == pytest.approx(fast.lr * 2 / 20)  # per step, not per epoch
    assert lr_at(fast, 19, 300, 10) == pytest.approx(fast.lr)
    assert lr_at(fast, 160, 300, 10) == pytest.approx(fast.lr * 0.5)
    assert lr_at(fast, 299, 300, 10) == pytest.approx(fast.lr / 280)


def test_tiny_preset_is_unchanged():
    tiny = make_config("tiny")
    assert tiny.schedule_unit == "step" and tiny.cosine_epochs is None and tiny.flip_p == 0.5
    assert [mixup_scheduled(tiny, e, True) for e in range(1, 6)] == [False] * 5  # mixup off
    assert lr_at(tiny, 50, 100, 10) == pytest.approx(tiny.lr / 2)


def test_shorter_paper_runs_end_their_cosine_and_mixup_with_the_run():
    short = make_config("paper", epochs=100)
    assert short.cosine_epochs == 100 and short.mixup_until_epoch == 100
    assert lr_at(short, 99 * 10, 100 * 10, 10) == pytest.approx(0.1 * (1 + math.cos(math.pi * 99 / 100)) / 2)
    assert all(mixup_scheduled(short, e, True) for e in range(1, 101))
    # explicit values are kept
    c = make_config("paper", epochs=100, cosine_epochs=120, mixup_until_epoch=90)
    assert (c.cosine_epochs, c.mixup_until_epoch) == (120, 90)
    longer = make_config("paper", epochs=450)
    assert (longer.cosine_epochs, longer.mixup_until_epoch) == (400, 400)


# ------------------------------------------------------------------ mixup


def test_paper_mixup_is_off_for_the_tail_after_the_cosine():
    cfg = make_config("paper")
    for e in range(1, cfg.epochs + 1):
        assert mixup_scheduled(cfg, e, True) is (e <= 400)
        assert mixup_scheduled(cfg, e, False) is False
    assert not any(mixup_scheduled(cfg.replace(mixup=False), e, True) for e in range(1, 431))


def test_mixup_draws_happen_on_about_90_percent_of_epochs():
    cfg = make_config("paper")
    draws = [make_epoch_plan(256, 128, 0, e, cfg, CPU).mixup_draw for e in range(1, 401)]
    assert 0.85 < sum(draws) / 400 < 0.95
    lam = np.concatenate([make_epoch_plan(128 * 50, 128, 1, e, cfg, CPU).lam for e in range(1, 21)])
    assert abs(lam.mean() - 0.5) < 0.03 and abs(lam.var() - 1 / 12) < 0.01  # Beta(1, 1) = uniform


# ------------------------------------------------------------------ old configs


def test_old_configs_keep_their_old_behaviour():
    cfg = TrainConfig.from_dict(OLD_PAPER)
    cfg.validate()
    assert (cfg.schedule_unit, cfg.cosine_epochs, cfg.mixup_until_epoch, cfg.flip_p) == ("step", None, None, 0.5)
    spe, total = 352, 200 * 352
    # the per-step cosine over the whole run, bit for bit the formula old runs trained with
    for step in [0, 1, 2, 351, 352, 1000, 35_200, 70_000, total - 1, total]:
        t = min(max(step / total, 0.0), 1.0)
        assert lr_at(cfg, step, total, spe) == cfg.lr * 0.5 * (1.0 + math.cos(math.pi * t))
    assert lr_at(cfg, 1, total, spe) < lr_at(cfg, 0, total, spe)  # changes within an epoch
    # mixup off for the last 10 epochs (and only when drawn)
    assert [mixup_scheduled(cfg, e, True) for e in range(1, 201)] == [e <= 190 for e in range(1, 201)]
    assert not any(mixup_scheduled(cfg, e, False) for e in range(1, 201))
    # extended on resume, the old rule follows the new length, as it always did
    assert mixup_scheduled(cfg.replace(epochs=300), 250, True) and not mixup_scheduled(cfg.replace(epochs=300), 291, True)


# ------------------------------------------------------------------ --val-size 0


def test_val_size_zero_trains_on_every_image():
    labels = torch.arange(50_000) % 10
    train, val, notes = split_indices(labels, 0, None, 0)
    assert len(val) == 0 and np.array_equal(train, np.arange(50_000)) and notes == []
    train, val, _ = split_indices(labels, 0, 1000, 0)  # with --subset: a stratified 1,000
    assert len(val) == 0 and len(train) == 1000
    assert np.bincount(np.asarray(labels)[train], minlength=10).tolist() == [100] * 10
    assert make_config("paper", val_size=0).val_size == 0
    with pytest.raises(ConfigError, match="--val-size"):
        make_config("paper", val_size=-1)


# ------------------------------------------------------------------ validation of the new fields


@pytest.mark.parametrize("overrides, fragment", [
    (dict(flip_p=1.5), "flip_p must be a probability"),
    (dict(flip_p=float("nan")), "flip_p must be a finite number"),
    (dict(schedule_unit="batch"), "use step or epoch"),
    (dict(cosine_epochs=0), "cosine_epochs must be a whole number from 1"),
    (dict(cosine_epochs=2.5), "cosine_epochs must be a whole number from 1"),
    (dict(mixup_until_epoch=-1), "mixup_until_epoch must be a whole number from 0"),
], ids=["flip_p-1.5", "flip_p-nan", "unit", "cosine-0", "cosine-2.5", "until--1"])
def test_new_fields_are_validated_with_one_line(overrides, fragment):
    with pytest.raises(ConfigError, match=fragment) as err:
        make_config("paper", **overrides)
    assert "\n" not in str(err.value)
