"""Training configuration: a frozen dataclass, presets, and validation.

This module imports no torch so that the CLI can build and check a
configuration (and print ``--help``) without paying torch's import time.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Any, Optional


class ConfigError(ValueError):
    """An impossible or contradictory setting. The message is one line, for the user."""


# Normalisation used by the report (per-channel mean and std of CIFAR-10).
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.2010)
MAX_WIDTH = 8.0  # the widest network cifar-tui builds (1.0 is the report's)


@dataclass(frozen=True)
class TrainConfig:
    # data
    data: str = "cifar10"
    subset: Optional[int] = None  # train on this many images (after the validation hold-out)
    val_size: Optional[int] = None  # None: min(5000, 10% of the training images)
    # model
    width: float = 1.0
    # optimisation
    preset: str = "paper"
    epochs: int = 200
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    warmup_epochs: float = 0.0
    schedule: str = "cosine"  # cosine | linear | constant
    # "step": the lr changes every step; "epoch": it is constant within an epoch and changes
    # between epochs, like a torch scheduler stepped once per epoch (the report's code).
    schedule_unit: str = "step"
    # The cosine's length in epochs (CosineAnnealingLR's T_max). None: the run's epochs (the
    # cosine reaches zero at the run's end). An int: the lr reaches zero after this many epochs
    # and, if the run goes on, rises again along the same cosine, as torch's scheduler does.
    # Only the cosine schedule uses it.
    cosine_epochs: Optional[int] = None
    grad_clip_value: Optional[float] = 0.1  # clip each gradient element to [-v, v]
    label_smoothing: float = 0.0
    ema_decay: Optional[float] = None  # keep an exponential moving average of the weights (per step)
    tta_flip: bool = False  # evaluate on each image and its mirror image, averaging the logits
    # augmentation
    crop_padding: int = 4
    flip: bool = True  # random horizontal flips at all (False: none, whatever flip_p says)
    flip_p: float = 0.5  # the chance that an image is flipped, when flip is on
    grayscale_p: float = 0.2
    autocontrast_p: float = 0.2
    mixup: bool = True
    mixup_alpha: float = 1.0
    mixup_prob: float = 0.9  # chance that a given epoch uses mixup
    mixup_off_epochs: int = 10  # no mixup during the last N epochs
    mixup_until_epoch: Optional[int] = None  # no mixup after this epoch (1-based); None: no such limit
    # run
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    runs_dir: Optional[str] = None  # None: platformdirs' user data dir
    save_every: int = 0  # also keep checkpoints/epoch-NNN.pt every N epochs (0: never)
    log_every: int = 20  # read metrics from the device every N steps
    log_seconds: float = 1.0  # ... and after an epoch's first step and every this many seconds (0: only every N steps)
    amp: bool = True  # bf16 autocast on CUDA (ignored on CPU)
    channels_last: bool = True  # on CUDA
    compile: bool = False  # torch.compile the model (CUDA only)

    # ------------------------------------------------------------------ helpers
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def validate(self) -> "TrainConfig":
        """Raise :class:`ConfigError` with a one-line message if a setting is impossible.

        Whole-number settings must be ints (not floats, not bools) within bounds that
        keep the arithmetic finite; real-number settings must be finite numbers.
        """
        def bad(msg: str) -> None:
            raise ConfigError(msg)

        for name, (flag, low, high) in _WHOLE_NUMBERS.items():
            v = getattr(self, name)
            if v is None and name in _OPTIONAL:
                continue
            if not _whole(v) or not low <= v <= high:
                bad(_SEED_MESSAGE.format(v=_shown(v)) if name == "seed"
                    else f"{flag} must be a whole number from {low} to {high:,} (got {_shown(v)})")
        for name in _REAL_NUMBERS:
            v = getattr(self, name)
            if v is None and name in _OPTIONAL:
                continue
            if not _real(v):
                bad(f"{_FLAGS.get(name, name)} must be a finite number (got {_shown(v)})")
        for name in _BOOLEANS:
            if not isinstance(getattr(self, name), bool):
                bad(f"{name} must be true or false (got {_shown(getattr(self, name))})")
        for name in ("data", "device", "schedule", "schedule_unit", "preset"):
            if not isinstance(getattr(self, name), str):
                bad(f"{_FLAGS.get(name, name)} must be text (got {_shown(getattr(self, name))})")
        if self.runs_dir is not None and not isinstance(self.runs_dir, str):
            bad(f"--runs-dir must be a folder path (got {_shown(self.runs_dir)})")

        if self.lr <= 0:
            bad(f"--lr must be a positive number (got {self.lr})")
        if self.lr > 100:
            bad(f"--lr {self.lr} is far too large; use at most 100 (the paper uses 0.1, the fast preset 0.4)")
        if self.width <= 0:
            bad(f"--width must be a positive number such as 1.0 or 0.25 (got {self.width})")
        if self.width > MAX_WIDTH:
            bad(f"--width {self.width} is far too large; use at most {MAX_WIDTH:g} (1.0 is the report's network)")
        if not 0 <= self.momentum < 1:
            bad(f"momentum must be in [0, 1) (got {self.momentum})")
        if not 0 <= self.weight_decay <= 1:
            bad(f"weight decay must be in [0, 1] (got {self.weight_decay}; the paper uses 5e-4)")
        if not 0 <= self.warmup_epochs <= 100_000:
            bad(f"warm-up epochs must be from 0 to 100,000 (got {self.warmup_epochs})")
        if self.schedule not in ("cosine", "linear", "constant"):
            bad(f"unknown schedule {self.schedule!r}; use cosine, linear or constant")
        if self.schedule_unit not in ("step", "epoch"):
            bad(f"unknown schedule_unit {self.schedule_unit!r}; use step or epoch")
        if self.schedule_unit == "epoch" and float(self.warmup_epochs) != int(self.warmup_epochs):
            bad(f"warm-up epochs must be a whole number when the lr changes per epoch (got {self.warmup_epochs})")
        if self.grad_clip_value is not None and self.grad_clip_value <= 0:
            bad(f"gradient clip value must be positive (got {self.grad_clip_value})")
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            bad(f"EMA decay must be in (0, 1) (got {self.ema_decay})")
        if not 0 <= self.label_smoothing < 1:
            bad(f"label smoothing must be in [0, 1) (got {self.label_smoothing})")
        for name in ("flip_p", "grayscale_p", "autocontrast_p", "mixup_prob"):
            v = getattr(self, name)
            if not 0 <= v <= 1:
                bad(f"{name} must be a probability in [0, 1] (got {v})")
        if not 0 < self.mixup_alpha <= 1000:
            bad(f"mixup alpha must be in (0, 1000] (got {self.mixup_alpha})")
        if self.log_seconds < 0:
            bad(f"log_seconds cannot be negative (got {self.log_seconds})")
        dev = self.device
        if not (dev in ("auto", "cpu", "cuda", "mps") or (dev.startswith("cuda:") and dev[5:].isdigit())):
            bad(f"unknown --device {dev!r}; use auto, cpu, cuda, cuda:N or mps")
        if not self.data.strip():
            bad("--data is empty; use cifar10, synthetic, or a path to a folder or zip")
        return self


# Whole-number settings: (how the user names it, lowest, highest).
_WHOLE_NUMBERS: dict[str, tuple[str, int, int]] = {
    "epochs": ("--epochs", 1, 100_000),
    "batch_size": ("--batch-size", 1, 65_536),
    "subset": ("--subset", 1, 1_000_000_000),
    "val_size": ("--val-size", 0, 1_000_000_000),
    "seed": ("--seed", 0, 2**32 - 1),
    "crop_padding": ("crop padding", 0, 32),
    "mixup_off_epochs": ("mixup_off_epochs", 0, 100_000),
    "save_every": ("--save-every", 0, 100_000),
    "log_every": ("log_every", 1, 1_000_000),
    "cosine_epochs": ("cosine_epochs", 1, 100_000),
    "mixup_until_epoch": ("mixup_until_epoch", 0, 100_000),
}
# numpy's seeding (np.random.default_rng([seed, ...])) needs a non-negative seed;
# torch.manual_seed takes up to 2**64-1. 32 bits is what every library accepts.
_SEED_MESSAGE = "--seed must be a whole number from 0 to 2**32-1 (4,294,967,295) (got {v})"
_REAL_NUMBERS = ("lr", "width", "momentum", "weight_decay", "warmup_epochs", "grad_clip_value", "label_smoothing",
                 "ema_decay", "flip_p", "grayscale_p", "autocontrast_p", "mixup_alpha", "mixup_prob", "log_seconds")
_OPTIONAL = ("subset", "val_size", "grad_clip_value", "ema_decay", "cosine_epochs", "mixup_until_epoch")
_BOOLEANS = ("nesterov", "tta_flip", "flip", "mixup", "amp", "channels_last", "compile")
_FLAGS = {"lr": "--lr", "width": "--width", "data": "--data", "device": "--device", "preset": "--preset"}


def _whole(v: Any) -> bool:
    """An int (a numpy integer too), not a bool, not a float with no fraction."""
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _real(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and _finite(v)


def _shown(v: Any) -> str:
    try:
        text = repr(v)
    except ValueError:  # an int with more digits than Python will print
        return f"a {type(v).__name__} too large to print"
    return text if len(text) <= 40 else text[:37] + "..."


def _finite(v: Any) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError, OverflowError):
        return False


# ------------------------------------------------------------------------- presets

PRESETS: dict[str, dict[str, Any]] = {
    # The report's code (see docs/fidelity.md): SGD 0.1 / momentum 0.9 / wd 5e-4, batch 128,
    # gradient clipping by value 0.1; crop with 4-pixel padding, flip p 0.2, grayscale p 0.2
    # then autocontrast p 0.2; a 400-epoch cosine stepped once per epoch, with mixup
    # Beta(1,1) on each epoch with probability 0.9; then 30 more epochs without mixup while the
    # same cosine goes on (the lr rises again slightly from zero). make_config caps
    # cosine_epochs and mixup_until_epoch at --epochs when fewer than 400 epochs are asked for.
    "paper": dict(
        width=1.0, epochs=430, batch_size=128, lr=0.1, momentum=0.9, nesterov=False, weight_decay=5e-4,
        schedule="cosine", schedule_unit="epoch", cosine_epochs=400, warmup_epochs=0.0, grad_clip_value=0.1,
        label_smoothing=0.0, flip=True, flip_p=0.2, grayscale_p=0.2, autocontrast_p=0.2, mixup=True,
        mixup_alpha=1.0, mixup_prob=0.9, mixup_off_epochs=0, mixup_until_epoch=400,
    ),
    # Time-to-accuracy on a GPU, same network: a larger batch with a matched
    # learning rate, a short linear warm-up then linear decay to zero, Nesterov
    # momentum, label smoothing, an EMA of the weights, flip test-time
    # augmentation, no mixup (it slows short schedules), bf16 + channels_last,
    # torch.compile. Not yet tuned on a GPU: see docs/benchmarks.md.
    "fast": dict(
        width=1.0, epochs=30, batch_size=512, lr=0.4, momentum=0.9, nesterov=True, weight_decay=5e-4,
        schedule="linear", warmup_epochs=2.0, grad_clip_value=None, label_smoothing=0.1, ema_decay=0.99,
        tta_flip=True, grayscale_p=0.0, autocontrast_p=0.0, mixup=False, mixup_alpha=1.0, mixup_prob=0.0,
        mixup_off_epochs=0, compile=True,
    ),
    # Small and quick, for a CPU: quarter width, a few epochs, no mixup.
    "tiny": dict(
        width=0.25, epochs=5, batch_size=128, lr=0.05, momentum=0.9, weight_decay=5e-4,
        schedule="cosine", warmup_epochs=0.0, grad_clip_value=None, label_smoothing=0.0,
        grayscale_p=0.0, autocontrast_p=0.0, mixup=False, mixup_alpha=1.0, mixup_prob=0.9,
        mixup_off_epochs=1,
    ),
}


def make_config(preset: str = "paper", **overrides: Any) -> TrainConfig:
    """Build a validated config from a preset plus explicit overrides (``None`` = keep)."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown --preset {preset!r}; choose one of: {', '.join(PRESETS)}")
    values = dict(PRESETS[preset])
    values["preset"] = preset
    given = {k for k, v in overrides.items() if v is not None}
    for k in given:
        values[k] = overrides[k]
    # A preset whose cosine (and mixup) end at a fixed epoch, asked for fewer epochs than that:
    # end them with the run instead (a 100-epoch "paper" run is a 100-epoch cosine with mixup).
    # Stored in the config, so extending the run later (--resume --epochs) keeps them.
    if isinstance(values.get("epochs"), int) and values["epochs"] >= 1:
        for name in ("cosine_epochs", "mixup_until_epoch"):
            if name not in given and isinstance(values.get(name), int):
                values[name] = min(values[name], values["epochs"])
    try:
        cfg = TrainConfig(**values)
    except TypeError as e:  # an unknown field name: a programming error, but say it plainly
        raise ConfigError(str(e)) from None
    return cfg.validate()


def default_val_size(n_train: int) -> int:
    """The validation hold-out when ``--val-size`` is not given: 5,000, or 10% of a small set."""
    return min(5000, n_train // 10)
