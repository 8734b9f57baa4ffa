"""Batched augmentation on the training device: each epoch's random draws
(:class:`EpochPlan`, drawn up front from the seed), the mixup pairing, and the
:class:`Augmenter` (crop, flip, grayscale, autocontrast, normalise, cutout, resize).
On CUDA the whole training set lives on the GPU and this runs there."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from .config import CIFAR_MEAN, CIFAR_STD
from .device import host_to_device


@dataclass
class EpochPlan:
    """Everything random about one epoch, drawn up front from (seed, epoch), so a run resumed
    mid-epoch sees the same images, augmentations and mixup as one that never stopped."""

    order: torch.Tensor  # (N,) image order
    offsets: torch.Tensor  # (N, 2) crop offsets in [0, 2*pad]
    flips: torch.Tensor  # (N,) bool: True with probability flip_p (never when flip is off)
    gray: torch.Tensor  # (N,) bool: True with probability grayscale_p
    autocontrast: torch.Tensor  # (N,) bool: True with probability autocontrast_p
    mixup_draw: bool  # True with probability mixup_prob; engine.schedule.mixup_scheduled decides
    lam: np.ndarray  # (steps,) mixup lambdas, Beta(alpha, alpha)
    mix_seed: int  # seeds the per-step mixup permutations
    steps: int
    batch_size: int
    cutout: Optional[torch.Tensor] = None  # (N, 2) centres of the cutout squares (cfg.cutout > 0)


def make_epoch_plan(n: int, batch_size: int, seed: int, epoch: int, cfg, device: torch.device) -> EpochPlan:
    # The draws (and their order) are those of every earlier version: only the flip
    # threshold depends on flip_p, so old runs (flip_p 0.5) resume with identical plans.
    rng = np.random.default_rng([seed, epoch, 0xC1FA])
    order = rng.permutation(n)
    span = 2 * cfg.crop_padding + 1
    offsets = rng.integers(0, span, size=(n, 2))
    flip_p = float(getattr(cfg, "flip_p", 0.5)) if cfg.flip else 0.0
    flips = rng.random(n) < flip_p
    gray = rng.random(n) < cfg.grayscale_p
    ac = rng.random(n) < cfg.autocontrast_p
    mixup_draw = bool(rng.random() < cfg.mixup_prob)
    steps = math.ceil(n / batch_size)
    lam = rng.beta(cfg.mixup_alpha, cfg.mixup_alpha, size=steps)
    mix_seed = int(rng.integers(0, 2**31 - 1))
    # Draws added later come after all of the above, so older configs get the same plans.
    cut = rng.integers(0, 32, size=(n, 2)) if getattr(cfg, "cutout", 0) > 0 else None
    if cfg.flip and getattr(cfg, "flip_mode", "random") == "alternate":
        flips = alternate_flips(n, seed, epoch)[order]

    def t(a, dtype):  # from pinned memory on CUDA: the copy does not block the host
        return host_to_device(a, dtype, device)

    return EpochPlan(
        t(order, torch.long), t(offsets, torch.long), t(flips, torch.bool), t(gray, torch.bool),
        t(ac, torch.bool), mixup_draw, lam, mix_seed, steps, batch_size,
        cutout=t(cut, torch.long) if cut is not None else None,
    )


def alternate_flips(n: int, seed: int, epoch: int) -> np.ndarray:
    """Alternating flips: image ``i`` of the training set is flipped in every other epoch
    (odd or even epochs, by a coin drawn once from the seed), so over two epochs each image
    is seen both ways. Indexed by image, not by position in an epoch's order."""
    first = np.random.default_rng([seed, 0xF11B]).random(n) < 0.5
    return first if epoch % 2 == 1 else ~first


def mixup_permutation(plan: EpochPlan, step: int, size: int, device: torch.device, salt: int = 0,
                      generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """The pairing of images for mixup at ``step`` (``salt``: the rank under torchrun), drawn
    on ``device``: no host work, no copy. The generator (one on ``device``, reusable) is
    re-seeded from (the epoch's mix seed, step, salt) on every call, so the result depends on
    (seed, epoch, step, rank) alone, never on earlier draws. On a CPU the permutations are the
    ones every earlier version drew."""
    g = generator if generator is not None else torch.Generator(device=device)
    g.manual_seed(plan.mix_seed + step + 1_000_003 * salt)
    return torch.randperm(size, generator=g, device=device)


class Augmenter:
    """Batched augmentation on the tensors' device, in the report's order: crop with zero
    padding, horizontal flip, grayscale, autocontrast, then normalisation.
    Input uint8 (B,3,32,32), output float32.

    The report applied torchvision's transforms to PIL images (RandomCrop(32, padding=4),
    RandomHorizontalFlip, RandomGrayscale, RandomAutocontrast, ToTensor, Normalize). The
    colour ops here work on integers as PIL does, so each image comes out as it would there:

    * grayscale is PIL's ``convert("L")``, ITU-R 601-2 luma in 16-bit fixed point with
      rounding, ``(19595 R + 38470 G + 7471 B + 32768) >> 16``, copied to the 3 channels
      (bit-exact; torchvision's tensor kernel uses 0.2989/0.587/0.114 and truncates, so it
      can be one level lower, and 255 white becomes 254 there);
    * autocontrast stretches each channel of each image from its own [min, max] to [0, 255]:
      ``floor((x - min) * 255 / (max - min))``, and leaves a flat channel alone (PIL and
      torchvision compute the same in floating point, so they can be one level apart when
      the exact value is a whole number).
    """

    def __init__(self, pad: int, device: torch.device, mean=CIFAR_MEAN, std=CIFAR_STD,
                 use_gray: bool = True, use_autocontrast: bool = True, reflect: bool = False, cutout: int = 0):
        self.pad = pad
        self.reflect = reflect  # reflect padding (pixels mirrored at the edge) instead of zeros
        self.cutout = cutout
        # Decided from the config, not per batch: a per-batch ``mask.any()`` would sync the GPU.
        self.use_gray = use_gray
        self.use_autocontrast = use_autocontrast
        self.mean = torch.tensor(mean, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, device=device).view(1, 3, 1, 1)
        self.ar = torch.arange(32, device=device)
        # PIL's fixed-point ITU-R 601-2 luma weights (0.299, 0.587, 0.114, scaled by 2**16).
        self.gray_w = torch.tensor([19595, 38470, 7471], dtype=torch.int32, device=device).view(1, 3, 1, 1)

    def __call__(self, x: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor,
                 gray: torch.Tensor, autocontrast: torch.Tensor, cutout_at: Optional[torch.Tensor] = None,
                 size: int = 32) -> torch.Tensor:
        """``cutout_at``: (B, 2) centres of the cutout squares; ``size``: resize the result
        to ``size`` x ``size`` pixels (progressive resizing)."""
        if self.pad > 0:
            x = self._crop(x, offsets)
        x = torch.where(flips[:, None, None, None], x.flip(3), x)
        if self.use_gray or self.use_autocontrast:
            xi = x.to(torch.int32)
            if self.use_gray:  # first, as in the report's pipeline
                lum = ((xi * self.gray_w).sum(dim=1, keepdim=True) + 32768) // 65536
                xi = torch.where(gray[:, None, None, None], lum.expand(-1, 3, -1, -1), xi)
            if self.use_autocontrast:
                lo = xi.amin(dim=(2, 3), keepdim=True)
                span = xi.amax(dim=(2, 3), keepdim=True) - lo
                stretched = (xi - lo) * 255 // span.clamp_min(1)
                xi = torch.where(autocontrast[:, None, None, None] & (span > 0), stretched, xi)
            x = xi
        x = (x.float().div_(255) - self.mean) / self.std
        if self.cutout > 0 and cutout_at is not None:
            x = x.masked_fill(self._square(cutout_at), 0.0)  # 0 after normalising: the mean colour
        if size != x.shape[-1]:
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        return x

    def _crop(self, x: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """A 32x32 crop at ``offsets`` of each image padded by ``pad`` (zeros or reflected)."""
        p, b = self.pad, x.shape[0]
        rows = offsets[:, 0:1] + self.ar
        cols = offsets[:, 1:2] + self.ar
        if self.reflect:  # index -k is pixel k, index 31 + k is pixel 31 - k: no padded copy
            rows = 31 - (31 - (rows - p).abs()).abs()
            cols = 31 - (31 - (cols - p).abs()).abs()
        else:
            x = F.pad(x, (p, p, p, p))
        bi = torch.arange(b, device=x.device)[:, None, None, None]
        ci = torch.arange(3, device=x.device)[None, :, None, None]
        return x[bi, ci, rows[:, None, :, None], cols[:, None, None, :]]

    def _square(self, centres: torch.Tensor) -> torch.Tensor:
        """(B, 1, 32, 32) masks: a ``cutout`` x ``cutout`` square per image at ``centres``,
        clipped at the edges."""
        top = centres - self.cutout // 2
        inside = (self.ar >= top[:, :, None]) & (self.ar < top[:, :, None] + self.cutout)  # (B, 2, 32)
        return (inside[:, 0, :, None] & inside[:, 1, None, :])[:, None]
