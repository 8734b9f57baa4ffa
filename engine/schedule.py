"""The learning-rate and mixup schedules, as pure functions (no torch: a UI can plot them)."""

from __future__ import annotations

import math

from .config import TrainConfig


def lr_at(cfg: TrainConfig, step: int, total_steps: int, steps_per_epoch: int) -> float:
    """Learning rate for global step ``step`` (0-based) of a run of ``total_steps`` steps.

    ``cfg.schedule_unit == "step"``: a linear warm-up over ``warmup_epochs`` (in steps), then
    the schedule, evaluated at every step.

    ``cfg.schedule_unit == "epoch"``: the lr of a step is that of its epoch
    ``e = step // steps_per_epoch`` (0-based), like a torch scheduler stepped once per epoch:
    a warm-up of ``warmup_epochs`` whole epochs (lr * (e + 1) / warm-up), then the schedule
    evaluated at ``e``.

    The cosine is ``lr * (1 + cos(pi * t / T)) / 2`` with ``t`` counted from the warm-up's end.
    ``cosine_epochs`` None: ``T`` is the rest of the run and the lr stays at zero at its end.
    ``cosine_epochs`` set: ``T`` is that many epochs (less the warm-up) and ``t`` is not
    clamped, so past ``T`` the lr rises again along the same cosine: the closed form of
    ``torch.optim.lr_scheduler.CosineAnnealingLR(T_max=cosine_epochs, eta_min=0)``.
    The linear schedule decays to zero at the run's end; constant stays at ``lr``.
    """
    spe = max(1, int(steps_per_epoch))
    per_epoch = getattr(cfg, "schedule_unit", "step") == "epoch"
    if per_epoch:
        pos = step // spe
        run_len = -(-int(total_steps) // spe)  # epochs in the run
        warm = int(round(cfg.warmup_epochs))
        unit = 1
    else:
        pos = step
        run_len = int(total_steps)
        warm = int(round(cfg.warmup_epochs * spe))
        unit = spe
    if warm > 0 and pos < warm:
        return cfg.lr * (pos + 1) / warm
    if cfg.schedule == "cosine":
        cosine_epochs = getattr(cfg, "cosine_epochs", None)
        if cosine_epochs is None:
            t = min(max((pos - warm) / max(1, run_len - warm), 0.0), 1.0)
        else:
            t = (pos - warm) / max(1, cosine_epochs * unit - warm)
        return cfg.lr * (1.0 + math.cos(math.pi * t)) / 2
    if cfg.schedule == "linear":
        t = min(max((pos - warm) / max(1, run_len - warm), 0.0), 1.0)
        return cfg.lr * (1.0 - t)
    return cfg.lr


def mixup_scheduled(cfg: TrainConfig, epoch: int, draw: bool) -> bool:
    """Does the schedule want mixup on ``epoch`` (1-based), given the epoch's draw
    (``EpochPlan.mixup_draw``: True with probability ``mixup_prob``)?

    Mixup is on when ``cfg.mixup`` is, the draw says so, the epoch is not among the run's last
    ``mixup_off_epochs`` (``epoch <= epochs - mixup_off_epochs``), and, when
    ``mixup_until_epoch`` is set, ``epoch <= mixup_until_epoch``. A config without
    ``mixup_until_epoch`` (every config before it existed) keeps the old rule exactly.
    """
    if not (cfg.mixup and draw):
        return False
    if epoch > cfg.epochs - cfg.mixup_off_epochs:
        return False
    until = getattr(cfg, "mixup_until_epoch", None)
    return until is None or epoch <= until
