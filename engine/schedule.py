"""The learning-rate schedule, as a pure function of the step (no torch: a UI can plot it)."""

from __future__ import annotations

import math

from .config import TrainConfig


def lr_at(cfg: TrainConfig, step: int, total_steps: int, steps_per_epoch: int) -> float:
    """Learning rate for global step ``step`` (0-based): linear warm-up, then the schedule."""
    warm = int(round(cfg.warmup_epochs * steps_per_epoch))
    if warm > 0 and step < warm:
        return cfg.lr * (step + 1) / warm
    t = (step - warm) / max(1, total_steps - warm)
    t = min(max(t, 0.0), 1.0)
    if cfg.schedule == "cosine":
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * t))
    if cfg.schedule == "linear":
        return cfg.lr * (1.0 - t)
    return cfg.lr




def mixup_scheduled(cfg: TrainConfig, epoch: int, draw: bool) -> bool:
    """Does the schedule use mixup in ``epoch`` (1-based), given the epoch's random draw
    (true with probability ``mixup_prob``)? Never in the last ``mixup_off_epochs`` epochs."""
    return bool(cfg.mixup and draw and epoch <= cfg.epochs - cfg.mixup_off_epochs)
