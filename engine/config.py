"""Training configuration: a frozen dataclass, presets, and validation.

This module imports no torch so that the CLI can build and check a
configuration (and print ``--help``) without paying torch's import time.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Iterator, Mapping
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
    # model: the network's shape (engine.shape.NetShape; the defaults are the report's network)
    width: float = 1.0
    blocks: tuple = (4, 3, 2, 3)  # residual blocks per stage (1 to 6 stages)
    channels: tuple = (64, 128, 128, 256)  # channels per stage (before the width multiplier)
    strides: tuple = (1, 2, 1, 2)  # stride of each stage's first block
    stem_channels: int = 64
    se: str = "stem"  # stem: one SE block after the stem (the report's); blocks: one per block; none
    se_reduction: int = 16
    max_params: Optional[int] = None  # refuse a network with more trainable parameters than this
    # optimisation
    preset: str = "paper"
    epochs: int = 200
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    warmup_epochs: float = 0.0
    warmup_start: float = 0.0  # the warm-up rises from this fraction of the peak lr (0: from zero)
    schedule: str = "cosine"  # cosine | linear | constant
    # "step": the lr changes every step; "epoch": it is constant within an epoch and changes
    # between epochs, like a torch scheduler stepped once per epoch (the report's code).
    schedule_unit: str = "step"
    # The cosine's length in epochs (CosineAnnealingLR's T_max). None: the run's epochs (the
    # cosine reaches zero at the run's end). An int: the lr reaches zero after this many epochs
    # and, if the run goes on, rises again along the same cosine, as torch's scheduler does.
    # Only the cosine schedule uses it.
    cosine_epochs: Optional[int] = None
    # An extended run (--resume --epochs N of a run that finished its schedule): after
    # restart_epoch finished epochs the lr follows a new schedule of the run's kind (cosine,
    # linear) from restart_lr down to zero over the rest of the run. None: no restart.
    # Set by engine.schedule.plan_extension, never by hand.
    restart_epoch: Optional[int] = None
    restart_lr: Optional[float] = None
    grad_clip_value: Optional[float] = 0.1  # clip each gradient element to [-v, v]
    label_smoothing: float = 0.0
    ema_decay: Optional[float] = None  # keep an exponential moving average of the weights (per step)
    tta_flip: bool = False  # evaluate on each image and its mirror image, averaging the logits
    # ... and on the image shifted one pixel up-left and one down-right (reflect padding): the
    # untranslated view weighs 1/2, each shifted one 1/4 (each view flip-averaged if tta_flip)
    tta_translate: bool = False
    # BatchNorm biases train at this multiple of the lr (their weight decay divided by it, so
    # the decay per step is unchanged); 1.0: one parameter group, as every run before it
    bn_bias_lr_scale: float = 1.0
    # BatchNorm's momentum in PyTorch's convention: the weight of each new batch in the running
    # statistics (0.1 is PyTorch's default; airbench's "momentum 0.6" is 0.4 here)
    bn_momentum: float = 0.1
    # every N steps, fold a slow average of the weights back into them (engine.optim.Lookahead;
    # 0: off); lookahead_decay is the average's decay per step at the run's end
    lookahead_every: int = 0
    lookahead_decay: float = 0.95
    # initialisation (a new run only; a resumed run loads its weights)
    whiten_stem: bool = False  # the stem conv's filters whiten the training images' 3x3 patches
    zero_init_residual: bool = False  # each residual block's last BatchNorm starts with weight 0
    # augmentation
    crop_padding: int = 4
    pad_mode: str = "zeros"  # the crop's padding: zeros (torchvision's RandomCrop) | reflect
    flip: bool = True  # random horizontal flips at all (False: none, whatever flip_p says)
    flip_p: float = 0.5  # the chance that an image is flipped, when flip is on
    # random: each image is flipped with probability flip_p each epoch; alternate: each image
    # is flipped every other epoch (a coin per image, drawn once from the seed, picks which)
    flip_mode: str = "random"
    cutout: int = 0  # zero (the mean colour) a random square of this side per image (0: none)
    # progressive resizing: the first low_res_epochs epochs train on images resized to
    # low_res_size pixels (the network ends in global pooling, so any size fits)
    low_res_size: int = 32
    low_res_epochs: int = 0
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
    sweep: Optional[str] = None  # "NAME#N": this run is trial N of the sweep NAME (engine.sweep)
    save_every: int = 0  # also keep checkpoints/epoch-NNN.pt every N epochs (0: never)
    # last.pt: every N epochs; 0: at the end of an epoch once save_seconds have passed since
    # the last write. Always at the run's end and at a stop; best.pt whenever it improves
    # (written with the next last.pt when that is not due).
    save_every_epochs: int = 0
    save_seconds: float = 60.0
    val_every: int = 1  # validate every N epochs and after the last one; 0: only after the last
    log_every: int = 20  # read metrics from the device every N steps
    log_seconds: float = 1.0  # ... and after an epoch's first step and every this many seconds (0: only every N steps)
    amp: bool = True  # bf16 autocast on CUDA (ignored on CPU)
    channels_last: bool = True  # on CUDA
    compile: bool = False  # torch.compile the model (on CUDA; elsewhere only with compile_backend)
    # torch.compile's mode (inductor): None/default, reduce-overhead (CUDA graphs), max-autotune,
    # max-autotune-no-cudagraphs
    compile_mode: Optional[str] = None
    # a Dynamo backend name (e.g. "eager", "aot_eager"): compile with it on any device, a CPU too
    # (for tests); None: inductor, on CUDA only
    compile_backend: Optional[str] = None

    # ------------------------------------------------------------------ helpers
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**shape_values({k: v for k, v in data.items() if k in names}))

    def net_shape(self):
        """The network this config trains (:class:`engine.shape.NetShape`, validated)."""
        from .shape import NetShape

        return NetShape.parse(blocks=self.blocks, channels=self.channels, strides=self.strides,
                              stem_channels=self.stem_channels, se=self.se, se_reduction=self.se_reduction,
                              width=self.width)

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
        for name in ("data", "device", "schedule", "schedule_unit", "preset", "pad_mode", "flip_mode"):
            if not isinstance(getattr(self, name), str):
                bad(f"{_FLAGS.get(name, name)} must be text (got {_shown(getattr(self, name))})")
        if self.runs_dir is not None and not isinstance(self.runs_dir, str):
            bad(f"--runs-dir must be a folder path (got {_shown(self.runs_dir)})")

        if self.lr <= 0:
            bad(f"--lr must be a positive number (got {self.lr})")
        if self.lr > 100:
            bad(f"--lr {self.lr} is far too large; use at most 100 (the paper uses 0.1, the fast preset 0.4)")
        if (self.restart_epoch is None) != (self.restart_lr is None):
            bad("restart_epoch and restart_lr go together (both set, or neither)")
        if self.restart_lr is not None and not 0 < self.restart_lr <= 100:
            bad(f"--lr of an extension must be a positive number up to 100 (got {self.restart_lr})")
        if self.restart_epoch is not None and self.restart_epoch >= self.epochs:
            bad(f"restart_epoch {self.restart_epoch} must be below --epochs {self.epochs}")
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
        if not 0 <= self.save_seconds <= 1e7:
            bad(f"save_seconds must be from 0 to 10,000,000 (got {self.save_seconds})")
        if not 0 < self.bn_bias_lr_scale <= 1000:
            bad(f"bn_bias_lr_scale must be in (0, 1000] (got {self.bn_bias_lr_scale})")
        if not 0 < self.bn_momentum <= 1:
            bad(f"--bn-momentum must be in (0, 1] (got {self.bn_momentum}; PyTorch's default is 0.1)")
        if not 0 <= self.warmup_start <= 1:
            bad(f"--warmup-start must be a fraction of the peak lr in [0, 1] (got {self.warmup_start})")
        if not 0 < self.lookahead_decay < 1:
            bad(f"--lookahead-decay must be in (0, 1) (got {self.lookahead_decay}; e.g. 0.95)")
        if self.pad_mode not in ("zeros", "reflect"):
            bad(f"unknown pad_mode {self.pad_mode!r}; use zeros or reflect")
        if self.pad_mode == "reflect" and self.crop_padding > 31:
            bad(f"reflect padding needs crop padding below 32 (got {self.crop_padding})")
        if self.flip_mode not in ("random", "alternate"):
            bad(f"unknown flip_mode {self.flip_mode!r}; use random or alternate")
        self._validate_compile(bad)
        self._validate_shape(bad)
        dev = self.device
        if not (dev in ("auto", "cpu", "cuda", "mps") or (dev.startswith("cuda:") and dev[5:].isdigit())):
            bad(f"unknown --device {dev!r}; use auto, cpu, cuda, cuda:N or mps")
        if not self.data.strip():
            bad("--data is empty; use cifar10, synthetic, or a path to a folder or zip")
        return self

    def _validate_compile(self, bad) -> None:
        if self.compile_mode is not None and self.compile_mode not in COMPILE_MODES:
            bad(f"unknown --compile-mode {_shown(self.compile_mode)}; use one of: {', '.join(COMPILE_MODES)}")
        b = self.compile_backend
        if b is not None and not (isinstance(b, str) and b.replace("_", "").isalnum() and len(b) <= 64):
            bad(f"compile_backend must be the name of a torch.compile backend, such as eager (got {_shown(b)})")


    def _validate_shape(self, bad) -> None:
        """The network can be built and trained, and fits ``max_params`` when one is given
        (checked before anything is built: arithmetic on the shape, no torch)."""
        from .shape import ShapeError

        try:
            shape = self.net_shape()
        except ShapeError as e:
            bad(str(e))
        if self.max_params is not None:
            if not _whole(self.max_params) or self.max_params < 1:
                bad(f"--max-params must be a positive whole number (got {_shown(self.max_params)})")
            if (n := shape.params()) > self.max_params:
                bad(f"the network has {n:,} trainable parameters, over --max-params {self.max_params:,} by "
                    f"{n - self.max_params:,}; make it smaller (--width, --blocks, --channels; see cifar-tui model)")


def shape_values(values: dict[str, Any]) -> dict[str, Any]:
    """``blocks``, ``channels`` and ``strides`` as tuples, from a list (config.json) or text
    such as "4,3,2,3" (the command line); anything else is left for validation to refuse."""
    for key in ("blocks", "channels", "strides"):
        v = values.get(key)
        if isinstance(v, list):
            values[key] = tuple(v)
        elif isinstance(v, str):
            try:
                values[key] = tuple(int(x) for x in v.split(","))
            except ValueError:
                pass
    return values


COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")

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
    "restart_epoch": ("restart_epoch", 0, 100_000),
    "mixup_until_epoch": ("mixup_until_epoch", 0, 100_000),
    "save_every_epochs": ("--save-every-epochs", 0, 100_000),
    "val_every": ("val_every", 0, 100_000),
    "cutout": ("cutout", 0, 32),
    "low_res_size": ("low_res_size", 8, 32),
    "low_res_epochs": ("low_res_epochs", 0, 100_000),
    "lookahead_every": ("--lookahead-every", 0, 1_000_000),
}
# numpy's seeding (np.random.default_rng([seed, ...])) needs a non-negative seed;
# torch.manual_seed takes up to 2**64-1. 32 bits is what every library accepts.
_SEED_MESSAGE = "--seed must be a whole number from 0 to 2**32-1 (4,294,967,295) (got {v})"
_REAL_NUMBERS = ("lr", "width", "momentum", "weight_decay", "warmup_epochs", "grad_clip_value", "label_smoothing",
                 "ema_decay", "flip_p", "grayscale_p", "autocontrast_p", "mixup_alpha", "mixup_prob", "log_seconds",
                 "save_seconds", "bn_bias_lr_scale", "restart_lr", "bn_momentum", "warmup_start", "lookahead_decay")
_OPTIONAL = ("subset", "val_size", "grad_clip_value", "ema_decay", "cosine_epochs", "mixup_until_epoch",
             "restart_epoch", "restart_lr")
_BOOLEANS = ("nesterov", "tta_flip", "tta_translate", "flip", "mixup", "amp", "channels_last", "compile",
             "whiten_stem", "zero_init_residual")
_FLAGS = {"lr": "--lr", "width": "--width", "data": "--data", "device": "--device", "preset": "--preset"}


def recorded_config_problem(data: dict[str, Any]) -> Optional[str]:
    """Why a config read back from a file (a run's ``RunStarted``) cannot be shown, or None:
    each setting it holds has its type and stays within the bounds :meth:`TrainConfig.validate`
    allows (``"epochs": "many"`` or ``"lr": 1e400`` is refused; missing settings are fine)."""
    for name, (_flag, low, high) in _WHOLE_NUMBERS.items():
        v = data.get(name)
        if name in data and not (v is None and name in _OPTIONAL) and not (_whole(v) and low <= v <= high):
            return f"{name} is {_shown(v)}"
    for name in _REAL_NUMBERS:
        v = data.get(name)
        if name in data and not (v is None and name in _OPTIONAL) and not _real(v):
            return f"{name} is {_shown(v)}"
    for name in _BOOLEANS:
        if name in data and not isinstance(data[name], bool):
            return f"{name} is {_shown(data[name])}"
    return None


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


@dataclass(frozen=True)
class Preset(Mapping[str, Any]):
    """A named recipe: its name, a one-line summary (the CLI's help and the run form show
    it) and its settings. Reads as its settings (``preset["lr"]``, ``{**preset}``)."""

    name: str
    summary: str
    settings: Mapping[str, Any]

    def __getitem__(self, key: str) -> Any:
        return self.settings[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.settings)

    def __len__(self) -> int:
        return len(self.settings)


def _presets(*presets: Preset) -> dict[str, Preset]:
    return {p.name: p for p in presets}


DEFAULT_PRESET = "paper"

# A new preset is one entry here; the CLI's --preset help and the run form read them.
PRESETS: dict[str, Preset] = _presets(
    # The report's code (see docs/fidelity.md): SGD 0.1 / momentum 0.9 / wd 5e-4, batch 128,
    # gradient clipping by value 0.1; crop with 4-pixel padding, flip p 0.2, grayscale p 0.2
    # then autocontrast p 0.2; a 400-epoch cosine stepped once per epoch, with mixup
    # Beta(1,1) on each epoch with probability 0.9; then 30 more epochs without mixup while the
    # same cosine goes on (the lr rises again slightly from zero). make_config caps
    # cosine_epochs and mixup_until_epoch at --epochs when fewer than 400 epochs are asked for.
    Preset("paper", "the report's recipe: SGD, cosine, mixup, 430 epochs (for a GPU)", dict(
        width=1.0, epochs=430, batch_size=128, lr=0.1, momentum=0.9, nesterov=False, weight_decay=5e-4,
        schedule="cosine", schedule_unit="epoch", cosine_epochs=400, warmup_epochs=0.0, grad_clip_value=0.1,
        label_smoothing=0.0, flip=True, flip_p=0.2, grayscale_p=0.2, autocontrast_p=0.2, mixup=True,
        mixup_alpha=1.0, mixup_prob=0.9, mixup_off_epochs=0, mixup_until_epoch=400,
    )),
    # Time-to-accuracy on a GPU, same network: a larger batch with a matched
    # learning rate, a short linear warm-up then linear decay to zero, Nesterov
    # momentum, label smoothing, an EMA of the weights, flip test-time
    # augmentation, no mixup (it slows short schedules), bf16 + channels_last,
    # torch.compile. Not yet tuned on a GPU: see docs/benchmarks.md.
    Preset("fast", "time-to-accuracy on a GPU: batch 512, 30 epochs, EMA, no mixup", dict(
        width=1.0, epochs=30, batch_size=512, lr=0.4, momentum=0.9, nesterov=True, weight_decay=5e-4,
        schedule="linear", warmup_epochs=2.0, grad_clip_value=None, label_smoothing=0.1, ema_decay=0.99,
        tta_flip=True, grayscale_p=0.0, autocontrast_p=0.0, mixup=False, mixup_alpha=1.0, mixup_prob=0.0,
        mixup_off_epochs=0, compile=True,
    )),
    # Time-to-accuracy with the report's network (4,993,166 parameters), from public fast
    # CIFAR-10 training (airbench and its forerunners), nothing that changes the network:
    # a whitening initialisation of the stem conv and zero-initialised last BatchNorm of each
    # residual block; batch 1024, Nesterov, warm-up then linear decay to zero, label smoothing
    # 0.2, BatchNorm biases at 4x the lr; translate by up to 2 pixels with reflect padding and
    # alternating flips; all 50,000 training images, one evaluation at the end with flip and
    # 1-pixel translation test-time augmentation; torch.compile on CUDA. No EMA of the weights
    # (it lagged the decayed weights in the CPU sanity run) and no lookahead (it trailed in both
    # seeds of its CPU sanity run); BatchNorm momentum 0.4 and a warm-up from 0.2 of the peak
    # lr, as airbench (no harm in the CPU sanity runs). Not tuned on a GPU yet
    # (docs/benchmarks.md: why each choice, and what ran).
    Preset("speedrun", "GPU time to accuracy, untuned: batch 1024, 16 epochs, TTA", dict(
        width=1.0, epochs=16, batch_size=1024, lr=0.8, momentum=0.9, nesterov=True, weight_decay=5e-4,
        schedule="linear", warmup_epochs=2.0, warmup_start=0.2, grad_clip_value=None, label_smoothing=0.2,
        ema_decay=None, lookahead_every=0, bn_momentum=0.4, bn_bias_lr_scale=4.0, whiten_stem=True,
        zero_init_residual=True,
        tta_flip=True, tta_translate=True, crop_padding=2, pad_mode="reflect", flip=True, flip_p=0.5,
        flip_mode="alternate", cutout=0, grayscale_p=0.0, autocontrast_p=0.0, mixup=False, mixup_alpha=1.0,
        mixup_prob=0.0, mixup_off_epochs=0, val_size=0, val_every=0, compile=True,
    )),
    # Small and quick, for a CPU: quarter width, a few epochs, no mixup.
    Preset("tiny", "small and quick, for a CPU: width 0.25, 5 epochs, no mixup", dict(
        width=0.25, epochs=5, batch_size=128, lr=0.05, momentum=0.9, weight_decay=5e-4,
        schedule="cosine", warmup_epochs=0.0, grad_clip_value=None, label_smoothing=0.0,
        grayscale_p=0.0, autocontrast_p=0.0, mixup=False, mixup_alpha=1.0, mixup_prob=0.9,
        mixup_off_epochs=1,
    )),
)


def describe_presets() -> str:
    """Each preset's name and summary, for a help text: "paper - the report's recipe...; ..."."""
    return "; ".join(f"{p.name} - {p.summary}" for p in PRESETS.values())


def make_config(preset: str = DEFAULT_PRESET, **overrides: Any) -> TrainConfig:
    """Build a validated config from a preset plus explicit overrides (``None`` = keep)."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown --preset {preset!r}; choose one of: {', '.join(PRESETS)}")
    values = dict(PRESETS[preset].settings)
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
        cfg = TrainConfig(**shape_values(values))
    except TypeError as e:  # an unknown field name: a programming error, but say it plainly
        raise ConfigError(str(e)) from None
    return cfg.validate()


def default_val_size(n_train: int) -> int:
    """The validation hold-out when ``--val-size`` is not given: 5,000, or 10% of a small set."""
    return min(5000, n_train // 10)
