"""A run built from a config and an optional checkpoint, before its first step.

:class:`Builder` does what :class:`engine.trainer.Trainer` needs before training:
the settings (a checkpoint's, with the changes a resume allows), the process group
under torchrun, the data and its split, the model, the optimiser and the weight
average, their state restored from the checkpoint, the run folder (locked), and the
compiled step warmed up (:meth:`Builder.warm_up`). What it builds is a :class:`Setup`
(fixed once training starts) and a :class:`Progress` (where the run is: what a
checkpoint records).
"""

from __future__ import annotations

import math
import queue
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

from . import commands
from . import distributed as dd
from . import events as ev
from .checkpoint import CheckpointError, CheckpointStore, check_finite, load_checkpoint, load_weights
from .compiled import Forward
from .config import ConfigError, TrainConfig, shape_values
from .augment import Augmenter
from .data import DataBundle, ImageSet, load_data, require_training_split, split_indices
from .device import device_name, resolve_device, versions
from .ema import WeightEMA
from .evaluate import Normalizer
from .model import SEResNet, arch_info, count_parameters, set_bn_momentum_, whiten_stem_, zero_init_residual_
from .optim import Lookahead, make_optimizer, restore_optimizer
from . import readback
from .rundir import RunDir, RunLock, now_iso, resume_target
from .schedule import extension_overrides, lr_at

# Settings a resumed run may change (recorded in the run's resume history); anything
# else must match the checkpoint's config. runs_dir is where forks of this invocation go.
RESUME_MUTABLE = {"epochs", "device", "runs_dir", "log_every", "log_seconds", "save_every", "compile",
                  "restart_epoch", "restart_lr",
                  "lr", "weight_decay", "label_smoothing", "grad_clip_value", "mixup", "save_every_epochs",
                  "save_seconds", "val_every", "compile_mode", "compile_backend", "tta_translate", "max_params"}
WHITEN_IMAGES = 5000  # the stem's whitening is computed from (at most) this many training images


class TrainingError(Exception):
    """Raised for problems the user can fix (bad data, bad checkpoint, bad setting)."""


def check_resume_overrides(stored: TrainConfig, overrides: dict[str, Any]) -> TrainConfig:
    """Apply the overrides a resumed run allows; refuse ones that contradict the stored config.

    A stored ``runs_dir`` is history, never a destination: only this invocation's counts.
    """
    changes: dict[str, Any] = {"runs_dir": overrides.get("runs_dir")}
    overrides = shape_values(dict(overrides))  # "4,3,2,3" from the command line is the tuple stored
    for key, value in overrides.items():
        if value is None:
            continue
        if key in RESUME_MUTABLE:
            changes[key] = value
        elif getattr(stored, key) != value:
            flag = "--" + key.replace("_", "-")
            raise ConfigError(
                f"{flag} {value} contradicts the resumed run's {flag} {getattr(stored, key)}; "
                "drop it, or start a new run"
            )
    return stored.replace(**changes).validate()


def resume_changes(stored: TrainConfig, cfg: TrainConfig) -> dict[str, list]:
    """The settings a resume changed, ``{name: [before, after]}`` (for the resume history)."""
    out = {}
    for key in sorted(RESUME_MUTABLE - {"runs_dir", "device"}):
        a, b = getattr(stored, key), getattr(cfg, key)
        if a != b:
            out[key] = [a, b]
    return out


def compile_backend(cfg: TrainConfig, device: torch.device) -> Optional[str]:
    """The torch.compile backend this run uses, or None for eager. ``compile`` with no
    ``compile_backend``: inductor, on CUDA only (elsewhere the run is eager, as always);
    a named backend compiles on any device. Raises ConfigError for a name torch lacks."""
    if not cfg.compile:
        return None
    if cfg.compile_backend is None:
        return "inductor" if device.type == "cuda" else None
    import torch._dynamo

    known = set(torch._dynamo.list_backends(exclude_tags=()))
    if cfg.compile_backend not in known:
        raise ConfigError(f"compile_backend {cfg.compile_backend!r} is not a torch.compile backend here; "
                          f"use one of: {', '.join(sorted(known))}")
    return cfg.compile_backend


@dataclass
class Setup:
    """What a run is made of; fixed once training starts."""

    cfg: TrainConfig
    device: torch.device
    dist: dd.DistContext
    bundle: DataBundle
    classes: list[str]
    train: ImageSet  # on the training device
    val: ImageSet  # this rank's share of the validation images, on the training device
    n_val: int
    batch: int  # the global batch
    steps_per_epoch: int
    model: torch.nn.Module
    forward: Forward
    opt: torch.optim.Optimizer
    ema: Optional[WeightEMA]
    aug: Augmenter
    params: int
    run: Optional[RunDir]  # None on ranks other than 0
    store: Optional[CheckpointStore]
    resumed_from: Optional[str]
    mix_gen: Optional[torch.Generator] = None  # on the device: mixup's pairings
    lookahead: Optional[Lookahead] = None  # cfg.lookahead_every > 0

    @property
    def rows(self) -> int:
        """Images this rank takes from a full batch."""
        if not self.dist.enabled:
            return self.batch
        lo, hi = dd.shard(0, self.batch, self.dist.rank, self.dist.world)
        return hi - lo

    def size_at(self, epoch: int) -> int:
        """The input size of epoch ``epoch`` (progressive resizing)."""
        return self.cfg.low_res_size if epoch <= self.cfg.low_res_epochs else 32

    @property
    def n_train(self) -> int:
        return len(self.train)

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.cfg.epochs

    @property
    def eval_model(self) -> torch.nn.Module:
        return self.ema.module if self.ema is not None else self.model

    def lr(self, step: int, scale: float = 1.0) -> float:
        """The learning rate of global step ``step`` (0-based): the schedule's, times the
        user's ``scale`` (exactly the schedule's when it is 1)."""
        return lr_at(self.cfg, step, self.total_steps, self.steps_per_epoch) * scale

    def validation_due(self, epoch: int) -> bool:
        every = self.cfg.val_every
        return bool(self.n_val) and (epoch == self.cfg.epochs or (every > 0 and epoch % every == 0))

    def log_due(self, step: int, steps: int, last_log: float) -> bool:
        """Read the metrics after ``step`` of ``steps``? Every ``log_every`` steps, at the end
        of the epoch, and (alone, not under torchrun, where every rank must agree) every
        ``log_seconds`` and, where reads are immediate (a CPU, engine.readback), after the
        first step of an epoch, so a slow run shows progress at once (a read one log late
        would show step 1 only at the next log: on CUDA nothing is forced there)."""
        if step % self.cfg.log_every == 0 or step == steps:
            return True
        if self.dist.enabled or not self.cfg.log_seconds:
            return False
        return (step == 1 and not readback.delays(self.device)) or time.monotonic() - last_log >= self.cfg.log_seconds

    def info(self) -> dict[str, Any]:
        """The run's config.json (less its resume history)."""
        b = self.bundle
        return {
            "run_id": self.run.run_id if self.run else "",
            "created": now_iso(),
            "config": self.cfg.to_dict(),
            "data": {"source": b.source, "kind": b.kind, "classes": self.classes, "train_images": self.n_train,
                     "val_images": self.n_val, "test_images": len(b.test) if b.test is not None else 0,
                     "notes": b.notes},
            "model": {**arch_info(self.model), "params": self.params},
            "device": str(self.device),
            "world_size": self.dist.world,
            "device_name": device_name(self.device),
            "versions": versions(),
        }

    def started(self, start_epoch: int) -> ev.RunStarted:
        run = self.run
        return ev.RunStarted(
            config=self.cfg.to_dict(), run_dir=str(run.path) if run else "",
            device=str(self.device) + (f" x{self.dist.world}" if self.dist.enabled else ""), params=self.params,
            run_id=run.run_id if run else "", train_size=self.n_train, val_size=self.n_val,
            steps_per_epoch=self.steps_per_epoch, start_epoch=start_epoch, resumed_from=self.resumed_from,
            classes=tuple(self.classes),
        )


# ------------------------------------------------------------------ the run


@dataclass
class Progress:
    """Where the run is; what a checkpoint records."""

    epochs_done: int = 0
    first_step: int = 0  # step within the next epoch to start at (a mid-epoch resume)
    global_step: int = 0
    epoch: int = 0  # the epoch being trained (1-based; 0 before the first)
    history: list[ev.EpochDone] = field(default_factory=list)  # the epoch records
    best_acc: Optional[float] = None
    best_epoch: Optional[int] = None
    mixup_override: Optional[bool] = None
    lr_scale: float = 1.0  # the learning rate steered by the user: a factor on the schedule
    last_checkpoint: Optional[str] = None
    best_checkpoint: Optional[str] = None
    save_error: Optional[str] = None
    stopped_at: Optional[tuple[int, int]] = None  # (epoch, step in epoch) of a stop


class Builder:
    """Builds one run for a trainer. What it holds before the run is built (the process
    group, the lock, the run folder, the model) is there for the trainer to report a
    failure and release the run, whatever step failed."""

    def __init__(self, config: Optional[TrainConfig], *, resume: Optional[str | Path], overrides: dict[str, Any],
                 data: Optional[DataBundle], run_dir: Optional[str | Path], emit: Callable[[ev.Event], None]):
        self.config = config
        self.resume_path = resume
        self.overrides = overrides
        self.data = data
        self.fixed_run = RunDir(run_dir) if run_dir else None
        self.emit = emit
        self.dist = dd.DistContext()
        self.progress = Progress()
        self.lock: Optional[RunLock] = None
        self.run_dir: Optional[Path] = None
        self.model: Optional[torch.nn.Module] = None  # the trained network (unwrapped)
        self.resume_changes: dict[str, list] = {}  # settings a resume changed, for config.json

    def warn(self, message: str) -> None:
        self.emit(ev.Warning(message=message))

    def build(self, pending: "queue.Queue[ev.Command]") -> Optional[Setup]:
        """Everything before the first step. None if a Stop arrived (in ``pending``) while loading."""
        ckpt = self._load_resume()
        cfg = self.config.validate()
        self.dist, dist_device = dd.setup(cfg.device)
        device = dist_device if dist_device is not None else resolve_device(cfg.device)
        backend = compile_backend(cfg, device)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels
        torch.manual_seed(cfg.seed)
        bundle = self.data if self.data is not None else load_data(cfg.data, progress=self._data_progress())
        require_training_split(bundle)
        for note in bundle.notes:
            self.warn(note)
        if commands.stop_requested(pending):
            return None
        train, val = self._split(cfg, bundle)
        batch, steps = self._batches(cfg, len(train), drop_last=backend is not None)
        train = ImageSet(train.x.to(device), train.y.to(device))
        model = SEResNet(num_classes=len(bundle.classes), shape=cfg.net_shape())
        params = count_parameters(model)
        self.model = model
        set_bn_momentum_(model, cfg.bn_momentum)
        model.to(device)
        if device.type == "cuda" and cfg.channels_last:
            model.to(memory_format=torch.channels_last)
        if ckpt is None:
            self._initialise(cfg, model, train)
        opt = make_optimizer(cfg, model, device)
        ema = WeightEMA(model, cfg.ema_decay) if cfg.ema_decay is not None else None
        slow = Lookahead(model, cfg.lookahead_every, cfg.lookahead_decay) if cfg.lookahead_every else None
        if ckpt is not None:
            self._restore(ckpt, model, opt, ema, len(bundle.classes), slow)
        run = self._open_run_dir(cfg, ckpt)
        return Setup(
            cfg=cfg, device=device, dist=self.dist, bundle=bundle, classes=list(bundle.classes),
            train=train, val=self._val_shard(val, device), n_val=len(val), batch=batch, steps_per_epoch=steps,
            model=model, forward=Forward(self._wrap(model, device), backend, cfg.compile_mode, self.warn),
            opt=opt, ema=ema, params=params, run=run, store=CheckpointStore(run) if run is not None else None,
            aug=Augmenter(cfg.crop_padding, device, use_gray=cfg.grayscale_p > 0, use_autocontrast=cfg.autocontrast_p > 0,
                          reflect=cfg.pad_mode == "reflect", cutout=cfg.cutout),
            resumed_from=str(ckpt["path"]) if ckpt is not None else None, mix_gen=_generator(device), lookahead=slow,
        )

    def _data_progress(self, every: float = 0.5) -> Callable[[str, int, int], None]:
        """A callback for :func:`engine.data.load_data` that announces ``DataProgress``:
        the first call, then at most every ``every`` seconds, and the last one."""
        last = [-math.inf]

        def progress(message: str, done: int, total: int) -> None:
            now = time.monotonic()
            if done >= total or now - last[0] >= every:
                last[0] = now
                self.emit(ev.DataProgress(message=message, done=int(done), total=int(total)))

        return progress

    @staticmethod
    def _initialise(cfg: TrainConfig, model: SEResNet, train: ImageSet) -> None:
        """A new run's initial weights beyond PyTorch's defaults (engine.model's helpers)."""
        if cfg.zero_init_residual:
            zero_init_residual_(model)
        if cfg.whiten_stem:
            n = len(train)
            pick = np.random.default_rng([cfg.seed, 0x3517]).permutation(n)[:min(n, WHITEN_IMAGES)]
            images = train.x[torch.as_tensor(np.sort(pick), device=train.x.device)]
            whiten_stem_(model, Normalizer(train.x.device)(images))

    def _load_resume(self) -> Optional[dict]:
        if self.resume_path is None:
            return None
        ckpt = load_checkpoint(self.resume_path, purpose="resume")
        try:
            stored = TrainConfig.from_dict(ckpt["config"]).validate()
        except (TypeError, ConfigError) as e:
            raise CheckpointError(f"{ckpt['path']}: the stored settings are not usable ({e})") from None
        self.config = check_resume_overrides(stored, self._extension(stored, ckpt))
        self.resume_changes = resume_changes(stored, self.config)
        if ckpt["epoch"] >= self.config.epochs and ckpt.get("step_in_epoch", 0) == 0:
            raise ConfigError(
                f"the run already has {ckpt['epoch']} of {self.config.epochs} epochs; "
                f"pass --epochs N with N > {ckpt['epoch']} to train further"
            )
        return ckpt

    def _extension(self, stored: TrainConfig, ckpt: dict) -> dict[str, Any]:
        """The overrides, an extension of a run that finished its schedule planned and said."""
        overrides, said = extension_overrides(stored, ckpt["epoch"], ckpt.get("step_in_epoch", 0), self.overrides)
        if said:
            self.warn(said)
        return overrides

    def _split(self, cfg: TrainConfig, bundle: DataBundle) -> tuple[ImageSet, ImageSet]:
        train_idx, val_idx, notes = split_indices(bundle.train.y, cfg.val_size, cfg.subset, cfg.seed)
        for note in notes:
            self.warn(note)
        return bundle.train.select(train_idx), bundle.train.select(val_idx)

    def _batches(self, cfg: TrainConfig, n_train: int, drop_last: bool = False) -> tuple[int, int]:
        """(global batch, steps per epoch). Under torchrun each rank takes a share of a batch.

        ``drop_last`` (when compiling): no final, smaller batch, so that every step has the
        same shape and the compiled step is built once; the images skipped are the last of
        each epoch's shuffled order, different ones every epoch.
        """
        dist = self.dist
        batch = min(cfg.batch_size, n_train)
        if dist.enabled and batch < 2 * dist.world:
            raise ConfigError(f"--batch-size {cfg.batch_size} is too small for {dist.world} processes; "
                              f"use at least {2 * dist.world}")
        steps, rem = divmod(n_train, batch)
        if rem and drop_last:
            self.warn(f"torch.compile: each epoch skips the last {rem} of its {n_train} images in its shuffled "
                      "order (different ones each epoch), so every step has the same shape and the step is "
                      "compiled once")
        elif rem and (not dist.enabled or rem >= 2 * dist.world):
            steps += 1  # a final, smaller batch
        elif rem:
            self.warn(f"{rem} image(s) per epoch are skipped: too few to share among {dist.world} processes")
        return batch, steps

    def _restore(self, ckpt: dict, model: torch.nn.Module, opt: torch.optim.Optimizer,
                 ema: Optional[WeightEMA], n_classes: int, slow: Optional[Lookahead] = None) -> None:
        """Weights, optimiser, EMA, the lookahead's slow weights, progress and RNG state from a checkpoint."""
        if n_classes != ckpt["arch"]["num_classes"]:
            raise TrainingError(f"the checkpoint has {ckpt['arch']['num_classes']} classes but --data has {n_classes}")
        load_weights(model, ckpt)
        try:
            restore_optimizer(opt, ckpt["optimizer"])
        except (KeyError, ValueError, RuntimeError, TypeError):
            raise TrainingError(f"{ckpt['path']}: optimizer state does not fit; the checkpoint is damaged") from None
        if ema is not None and isinstance(ckpt.get("ema"), dict):
            try:
                ema.load_state_dict(ckpt["ema"], ckpt.get("ema_n", 1))
            except (RuntimeError, KeyError, TypeError):
                raise TrainingError(f"{ckpt['path']}: its weight average does not fit; the checkpoint is damaged") from None
            check_finite(ckpt["ema"], ckpt["path"])
        if slow is not None and isinstance(ckpt.get("lookahead"), dict):  # (else: from the weights, as a new run)
            try:
                slow.load_state_dict(ckpt["lookahead"])
            except (RuntimeError, KeyError, TypeError):
                raise TrainingError(f"{ckpt['path']}: its lookahead weights do not fit; the checkpoint is damaged") from None
            check_finite(ckpt["lookahead"], ckpt["path"])
        self._restore_progress(ckpt)
        rng = ckpt.get("rng") if isinstance(ckpt.get("rng"), dict) else {}
        if "torch" in rng:
            try:
                torch.set_rng_state(rng["torch"])
            except (RuntimeError, TypeError):
                raise TrainingError(f"{ckpt['path']}: its random-number state is damaged; "
                                    "resume from another checkpoint") from None

    def _restore_progress(self, ckpt: dict) -> None:
        summary = ckpt.get("metrics") if isinstance(ckpt.get("metrics"), dict) else {}
        p = self.progress
        p.epochs_done, p.first_step, p.global_step = ckpt["epoch"], ckpt.get("step_in_epoch", 0), ckpt.get("global_step", 0)
        p.history = _epoch_records(summary.get("history"))
        best = summary.get("best_val_acc")
        p.best_acc = float(best) if isinstance(best, (int, float)) and not isinstance(best, bool) else None
        p.best_epoch = summary.get("best_epoch") if isinstance(summary.get("best_epoch"), int) else None
        override = ckpt.get("mixup_override")
        p.mixup_override = override if isinstance(override, bool) else None
        scale = ckpt.get("lr_scale", 1.0)
        if isinstance(scale, (int, float)) and not isinstance(scale, bool) and math.isfinite(scale) and scale > 0:
            p.lr_scale = float(scale)
        if p.lr_scale != 1.0 and ("lr" in self.resume_changes or "restart_lr" in self.resume_changes):
            self.warn(f"--lr {self.config.lr:g} replaces the learning rate steered during the run "
                      f"(x{p.lr_scale:.4g} the schedule)")
            p.lr_scale = 1.0

    def _wrap(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        if not self.dist.enabled:
            return model
        from torch.nn.parallel import DistributedDataParallel as DDP

        return DDP(model, device_ids=[device.index] if device.type == "cuda" else None)

    def _val_shard(self, val: ImageSet, device: torch.device) -> ImageSet:
        """This rank's validation images, kept on the device (read once per evaluation)."""
        dist = self.dist
        mine = val.select(np.arange(dist.rank, len(val), dist.world)) if dist.enabled else val
        return ImageSet(mine.x.to(device), mine.y.to(device))

    def _open_run_dir(self, cfg: TrainConfig, ckpt: Optional[dict]) -> Optional[RunDir]:
        """The run folder (rank 0 only): new, or the one a resumed run continues in; locked."""
        if not self.dist.is_main:
            return None
        if ckpt is not None:
            target = resume_target(ckpt["path"], ckpt.get("global_step", 0), cfg.runs_dir, cfg.preset, self.fixed_run)
            run = target.run
            if target.note:
                self.warn(target.note)
        elif self.fixed_run is not None:
            run = self.fixed_run
            run.ensure_layout()
        else:
            run = RunDir.create(cfg.runs_dir, cfg.preset)
        self.run_dir = run.path
        self.lock = run.lock()
        self.lock.acquire()  # refuses a run folder another live process is writing
        for note in self.lock.notes:
            self.warn(note)
        return run


def _epoch_records(history: Any) -> list[ev.EpochDone]:
    """A checkpoint's epoch records (older checkpoints' history dicts too); what cannot be
    read is left out: the history is a record, not training state."""
    out = []
    for data in history if isinstance(history, list) else []:
        try:
            out.append(ev.epoch_record_from_dict(data))
        except ValueError:
            continue
    return out


def _generator(device: torch.device) -> Optional[torch.Generator]:
    try:
        return torch.Generator(device=device)
    except RuntimeError:  # pragma: no cover - a device without its own generators
        return None
