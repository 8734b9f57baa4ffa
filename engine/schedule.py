"""The learning-rate and mixup schedules, as pure functions (no torch: a UI can plot them),
and what extending a finished run does to them (:func:`plan_extension`)."""

from __future__ import annotations

import math
from typing import Any, Optional

from .config import ConfigError, TrainConfig

# Extending a run that finished its schedule (``--resume RUN --epochs N``, the browser's
# extend dialog): "restart" (the default) trains the added epochs on a new schedule of the
# run's kind, from a peak lr down to zero; "keep" follows the old schedule exactly (a
# cosine that ended at zero stays near zero, or rises again along its curve).
EXTEND_SCHEDULES = ("restart", "keep")
EXTEND_PEAK_FRACTION = 0.1  # the new schedule's default peak: a tenth of the run's peak lr


def lr_at(cfg: TrainConfig, step: int, total_steps: int, steps_per_epoch: int) -> float:
    """Learning rate for global step ``step`` (0-based) of a run of ``total_steps`` steps.

    ``cfg.schedule_unit == "step"``: a linear warm-up over ``warmup_epochs`` (in steps), then
    the schedule, evaluated at every step.

    ``cfg.schedule_unit == "epoch"``: the lr of a step is that of its epoch
    ``e = step // steps_per_epoch`` (0-based), like a torch scheduler stepped once per epoch:
    a warm-up of ``warmup_epochs`` whole epochs (lr * (e + 1) / warm-up), then the schedule
    evaluated at ``e``.

    ``warmup_start`` (a fraction of the peak, 0 by default) lifts the warm-up's line: it
    rises from about ``warmup_start * lr`` instead of from about zero
    (``lr * (s + (1 - s) * (pos + 1) / warm)``; with 0 exactly the line above).

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
    restart = getattr(cfg, "restart_epoch", None)
    if restart is not None and cfg.restart_lr is not None and pos >= restart * unit:
        return _decayed(cfg.schedule, cfg.restart_lr, pos - restart * unit, run_len - restart * unit)
    if warm > 0 and pos < warm:
        start = getattr(cfg, "warmup_start", 0.0)
        return cfg.lr * (start + (1.0 - start) * (pos + 1) / warm)
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


def _decayed(kind: str, peak: float, pos: int, length: int) -> float:
    """A restarted schedule at ``pos`` of ``length``: a cosine or a line from ``peak`` to
    zero; a constant schedule stays at ``peak``."""
    t = min(max(pos / max(1, length), 0.0), 1.0)
    if kind == "cosine":
        return peak * (1.0 + math.cos(math.pi * t)) / 2
    if kind == "linear":
        return peak * (1.0 - t)
    return peak


def plan_extension(stored: TrainConfig, done: int, epochs: int, mode: Optional[str] = None,
                   lr: Optional[float] = None) -> dict[str, Any]:
    """The resume overrides that extend a run whose checkpoint has ``done`` finished epochs
    to ``epochs``. A run that finished its schedule (``done >= stored.epochs``) gets, in
    ``mode`` "restart" (the default), a new schedule over the added epochs from ``lr`` (by
    default EXTEND_PEAK_FRACTION of the run's peak; a constant schedule keeps its lr); in
    "keep", the old schedule (``lr``, if given, replaces its peak). A run that had not
    finished its schedule just goes on to ``epochs`` (``mode`` does not apply)."""
    if mode is not None and mode not in EXTEND_SCHEDULES:
        raise ConfigError(f"--extend-schedule must be one of {', '.join(EXTEND_SCHEDULES)} (got {mode!r})")
    out: dict[str, Any] = {"epochs": epochs}
    if done < stored.epochs or epochs <= done or (mode or "restart") == "keep":
        if lr is not None:
            out["lr"] = lr
        return out
    peak = lr if lr is not None else float(f"{stored.lr * EXTEND_PEAK_FRACTION:.6g}")
    if lr is None and stored.schedule == "constant":
        peak = stored.lr
    out.update(restart_epoch=done, restart_lr=peak)
    return out


def extension_overrides(stored: TrainConfig, done: int, step_in_epoch: int,
                        overrides: dict[str, Any]) -> tuple[dict[str, Any], Optional[str]]:
    """A resume's overrides with ``extend_schedule`` taken out and, when they extend a run
    that finished its schedule (``--epochs`` past it, from an end-of-epoch checkpoint), the
    extension planned (:func:`plan_extension`, ``lr`` as its peak); and the line to tell the
    user (what the added epochs get, or why ``extend_schedule`` does not apply), or None."""
    out = dict(overrides)
    mode = out.pop("extend_schedule", None)
    epochs = out.get("epochs")
    if not isinstance(epochs, int) or step_in_epoch or done < stored.epochs or epochs <= done:
        if mode is None:
            return out, None
        return out, (f"--extend-schedule {mode} applies only when extending a run that finished its "
                     f"{stored.epochs} epochs (--epochs N with N > {done}); ignored")
    out.update(plan_extension(stored, done, epochs, mode, out.pop("lr", None)))
    shown = stored.replace(**{k: v for k, v in out.items() if k in EXTENSION_KEYS})
    return out, "extending the run: " + describe_extension(shown, done)


EXTENSION_KEYS = ("epochs", "lr", "restart_epoch", "restart_lr", "mixup")  # what describe_extension reads


def describe_extension(cfg: TrainConfig, done: int, steps_per_epoch: int = 100) -> str:
    """What the epochs after ``done`` will get, in one line: the lr of the next epoch's first
    step, the schedule and mixup (for the extend dialog and ``train --resume --epochs``)."""
    spe = max(1, steps_per_epoch)
    nxt = lr_at(cfg, done * spe, cfg.epochs * spe, spe)
    added = cfg.epochs - done
    if cfg.restart_epoch is not None and cfg.restart_epoch == done and cfg.restart_lr is not None:
        shape = {"cosine": "a new cosine", "linear": "a new linear decay"}.get(cfg.schedule, "a constant lr")
        how = f"{shape} from {cfg.restart_lr:.3g}" + (" to 0" if cfg.schedule != "constant" else "")
    else:
        how = "the run's schedule, as it goes on"
    on = [e for e in range(done + 1, cfg.epochs + 1) if mixup_scheduled(cfg, e, True)]
    if not cfg.mixup:
        mix = "mixup off (the run's setting)"
    elif not on:
        mix = "mixup off (the recipe's tail: " + (f"none after epoch {cfg.mixup_until_epoch})"
                                                  if cfg.mixup_until_epoch is not None and
                                                  cfg.mixup_until_epoch <= done else
                                                  f"none in the last {cfg.mixup_off_epochs} epochs)")
    else:
        mix = f"mixup on epochs {on[0]}-{on[-1]} (p {cfg.mixup_prob:g}), off after"
    return (f"epochs {done + 1}-{cfg.epochs} ({added} added): {how}; the next epoch starts at lr {nxt:.3g}; "
            f"{mix}")


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
