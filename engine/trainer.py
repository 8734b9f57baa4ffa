"""The training loop.

One :class:`Trainer` runs one run. It reads top to bottom:

1. :meth:`Trainer._setup`: the settings (a checkpoint's when resuming), the data,
   the model and optimiser, the run folder; announces ``RunStarted``;
2. :meth:`Trainer._train_epoch`: the steps of one epoch; between two steps it
   applies the commands it was sent (:mod:`engine.events`);
3. :meth:`Trainer._end_epoch`: validation, the epoch's record, checkpoints;
4. :meth:`Trainer._finish`: the final checkpoint of a stop, and the outcome;

(with torch.compile, :meth:`Trainer._warm_up` builds the compiled step between 1 and 2,
before the first timed step). Checkpoints are written by a background thread from a copy
of the state taken between two steps (:meth:`Trainer._save`); their ``CheckpointSaved``
events come once the file is on disk, and a stop or the run's end waits for them.

and ``RunFinished`` is always the last event. Everything the trainer does is an
event to its listeners; the run folder's ``metrics.jsonl`` is written by one of
them (:class:`engine.rundir.MetricsWriter`).

It runs in the caller's thread (:meth:`Trainer.run`) or in a background thread
(:meth:`Trainer.start`). Listeners are called from the training thread and must
return quickly (queue the event, don't draw).
"""

from __future__ import annotations

import math
import queue
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from . import control
from . import distributed as dd
from . import events as ev
from .checkpoint import (SKIPPED, CheckpointError, CheckpointStore, PendingWrite, check_finite, first_line,
                         load_checkpoint, load_weights, perform_writes, snapshot)
from .config import ConfigError, TrainConfig
from .data import (Augmenter, DataBundle, DataError, ImageSet, load_data, make_epoch_plan, mixup_permutation,
                   require_training_split, split_indices)
from .device import autocast_for, device_name, resolve_device, versions
from .ema import WeightEMA, ema_decay_at  # noqa: F401  (ema_decay_at re-exported)
from .evaluate import Normalizer, validation_sums
from .files import BackgroundWriter
from .model import SEResNet, arch_info, bn_bias_parameters, count_parameters, whiten_stem_, zero_init_residual_
from .rundir import MetricsWriter, RunDir, RunDirError, RunLock, now_iso, resume_target
from .schedule import lr_at, mixup_scheduled

Listener = Callable[[ev.Event], None]

# Settings a resumed run may change (recorded in the run's resume history); anything
# else must match the checkpoint's config. runs_dir is where forks of this invocation go.
RESUME_MUTABLE = {"epochs", "device", "runs_dir", "log_every", "log_seconds", "save_every", "compile",
                  "lr", "weight_decay", "label_smoothing", "grad_clip_value", "mixup", "save_every_epochs",
                  "save_seconds", "val_every", "compile_mode", "compile_backend", "tta_translate"}
WHITEN_IMAGES = 5000  # the stem's whitening is computed from (at most) this many training images
USER_ERRORS = (ConfigError, DataError, CheckpointError, RunDirError)


class TrainingError(Exception):
    """Raised for problems the user can fix (bad data, bad checkpoint, bad setting)."""


def check_resume_overrides(stored: TrainConfig, overrides: dict[str, Any]) -> TrainConfig:
    """Apply the overrides a resumed run allows; refuse ones that contradict the stored config.

    A stored ``runs_dir`` is history, never a destination: only this invocation's counts.
    """
    changes: dict[str, Any] = {"runs_dir": overrides.get("runs_dir")}
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


def make_optimizer(cfg: TrainConfig, model: torch.nn.Module, device: torch.device) -> torch.optim.Optimizer:
    """SGD as the config says, for a model already on ``device``.

    One parameter group, or (``bn_bias_lr_scale`` != 1) two: the BatchNorm biases, whose lr
    is ``bn_bias_lr_scale`` times the schedule's (the group's ``lr_scale``) and weight decay
    that much smaller (the decay per step is the same), and the rest. On CUDA the fused
    implementation where this torch has it (one kernel for the whole update).
    """
    params: Any = list(model.parameters())
    if cfg.bn_bias_lr_scale != 1.0:
        scale = float(cfg.bn_bias_lr_scale)
        biases = bn_bias_parameters(model)
        ids = {id(b) for b in biases}
        params = [{"params": [q for q in params if id(q) not in ids], "lr_scale": 1.0},
                  {"params": biases, "lr": cfg.lr * scale, "weight_decay": cfg.weight_decay / scale, "lr_scale": scale}]
    kwargs: dict[str, Any] = dict(lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                                  nesterov=cfg.nesterov and cfg.momentum > 0)
    if device.type == "cuda" and "fused" in _sgd_arguments():
        try:
            return torch.optim.SGD(params, fused=True, **kwargs)
        except (RuntimeError, TypeError, ValueError):  # pragma: no cover - depends on the torch build
            pass
    return torch.optim.SGD(params, **kwargs)


def _sgd_arguments() -> set[str]:
    import inspect

    return set(inspect.signature(torch.optim.SGD.__init__).parameters)


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


def restore_optimizer(opt: torch.optim.Optimizer, state: dict) -> None:
    """Load an optimizer state, keeping this process's implementation choice (a checkpoint
    from a GPU run with fused SGD resumes on a CPU, and the other way round)."""
    keep = [{k: g.get(k) for k in ("fused", "foreach")} for g in opt.param_groups]
    opt.load_state_dict(state)
    for g, mine in zip(opt.param_groups, keep):
        g.update(mine)


# ------------------------------------------------------------------ run state


@dataclass
class _Setup:
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
    forward: "_Forward"
    opt: torch.optim.Optimizer
    ema: Optional[WeightEMA]
    aug: Augmenter
    params: int
    run: Optional[RunDir]  # None on ranks other than 0
    store: Optional[CheckpointStore]
    resumed_from: Optional[str]
    mix_gen: Optional[torch.Generator] = None  # on the device: mixup's pairings

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


@dataclass
class _Progress:
    """Where the run is; what a checkpoint records."""

    epochs_done: int = 0
    first_step: int = 0  # step within the next epoch to start at (a mid-epoch resume)
    global_step: int = 0
    history: list[dict] = field(default_factory=list)
    best_acc: Optional[float] = None
    best_epoch: Optional[int] = None
    mixup_override: Optional[bool] = None
    last_checkpoint: Optional[str] = None
    best_checkpoint: Optional[str] = None
    save_error: Optional[str] = None
    stopped_at: Optional[tuple[int, int]] = None  # (epoch, step in epoch) of a stop


@dataclass
class _Epoch:
    """One epoch's running sums (on the device) and the last values read from them."""

    number: int
    steps: int
    mixup: bool
    sched_mixup: bool
    loss_sum: torch.Tensor
    correct: torch.Tensor
    seen: int = 0
    g_loss: float = 0.0
    g_correct: float = 0.0
    g_seen: float = 0.0
    win_t: float = field(default_factory=time.perf_counter)
    win_seen: float = 0.0
    last_log: float = field(default_factory=time.monotonic)
    started: float = field(default_factory=time.perf_counter)
    paused: float = 0.0
    size: int = 32  # input pixels (progressive resizing)


class _Forward:
    """The model's forward pass, through torch.compile when asked (``backend`` not None).

    Compilation happens at the first call; :meth:`Trainer._warm_up` makes that call before
    training starts and, if compiling fails, calls :meth:`fallback` (the run goes on eagerly).
    """

    def __init__(self, model: torch.nn.Module, backend: Optional[str], mode: Optional[str],
                 warn: Callable[[str], None]):
        self.eager = self.fn = model
        self.backend = backend
        self.mode = mode or "default"
        self.warn = warn
        self.failed: Optional[str] = None
        if backend is not None:
            kwargs = {"mode": mode} if backend == "inductor" and mode not in (None, "default") else {}
            try:
                self.fn = torch.compile(model, backend=backend, **kwargs)
            except Exception as e:  # pragma: no cover - depends on the platform
                self.fallback(f"torch.compile unavailable ({first_line(e)})")

    @property
    def compiling(self) -> bool:
        return self.fn is not self.eager

    @property
    def cudagraphs(self) -> bool:
        """CUDA graphs (inductor's reduce-overhead and max-autotune modes)."""
        return self.compiling and self.backend == "inductor" and self.mode in ("reduce-overhead", "max-autotune")

    def fallback(self, why: str) -> None:
        self.failed = why
        self.fn = self.eager
        self.warn(f"{why}; training without torch.compile")

    def mark_step(self) -> None:
        """Tell CUDA graphs a new training step begins (their outputs of the last one may go)."""
        if self.cudagraphs:
            mark = getattr(getattr(torch, "compiler", None), "cudagraph_mark_step_begin", None)
            if mark is not None:
                mark()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


# -------------------------------------------------------------------- trainer


class Trainer:
    def __init__(
        self,
        config: Optional[TrainConfig] = None,
        *,
        listeners: Iterable[Listener] = (),
        resume: Optional[str | Path] = None,
        resume_overrides: Optional[dict[str, Any]] = None,
        data: Optional[DataBundle] = None,
        run_dir: Optional[str | Path] = None,
    ):
        if config is None and resume is None:
            raise ValueError("Trainer needs a config or a checkpoint to resume")
        self.config = config
        self.resume_overrides = dict(resume_overrides or {})
        self.listeners: list[Listener] = list(listeners)
        self.resume_path = resume
        self._data = data
        self._fixed_run = RunDir(run_dir) if run_dir else None
        self.commands: "queue.Queue[ev.Command]" = queue.Queue()
        self.run_dir: Optional[Path] = None
        self.state: str = "idle"
        self.model: Optional[torch.nn.Module] = None  # the trained network (unwrapped), afterwards
        self.result: Optional[ev.RunFinished] = None  # the final event, once the run has ended
        self._thread: Optional[threading.Thread] = None
        self._writer: Optional[MetricsWriter] = None
        self._early: list[ev.Event] = []  # events before the metrics file exists
        self._lock: Optional[RunLock] = None
        self._channel: Optional[control.ControlChannel] = None  # commands from other processes (rank 0)
        self._paused = False
        self._stop = False
        self._stop_save = True
        self._stop_reason = "stopped by request"
        self._dist = dd.DistContext()
        self._progress = _Progress()
        self._reason = ""
        self._resume_changes: dict[str, list] = {}  # settings a resume changed, for config.json
        # checkpoints: the writer thread, where last.pt stands, and a best not written yet
        self._s: Optional[_Setup] = None
        self._saver: Optional[BackgroundWriter] = None
        self._saved_step: Optional[int] = None  # global step of the last last.pt written or queued
        self._last_save_t = time.monotonic()
        self._pending_best: Optional[PendingWrite] = None
        self._disk_best: tuple[Optional[float], Optional[int]] = (None, None)  # (score, epoch) in best.pt

    # ------------------------------------------------------------------ public API
    def add_listener(self, fn: Listener) -> None:
        self.listeners.append(fn)

    def send(self, command: ev.Command) -> None:
        """Queue a command; it is applied between steps (thread-safe)."""
        self.commands.put(command)

    def start(self) -> threading.Thread:
        self._thread = threading.Thread(target=self.run, name="cifar-tui-trainer", daemon=True)
        self._thread.start()
        return self._thread

    def join(self, timeout: Optional[float] = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def run(self) -> str:
        """Train to the end (or until stopped/failed). Returns completed | stopped | failed."""
        outcome = "failed"
        try:
            outcome = self._run()
        except USER_ERRORS + (TrainingError,) as e:
            outcome = self._fail(str(e))
        except Exception as e:  # an engine bug or a runtime failure (e.g. out of memory)
            outcome = self._fail(self._describe_crash(e))
        finally:
            self._close(outcome)
        return outcome

    # ------------------------------------------------------------------- plumbing
    def _emit(self, event: ev.Event) -> None:
        if not self._dist.is_main and not isinstance(event, (ev.Failed, ev.Warning)):
            return  # only rank 0 reports; the others speak up only about problems
        if self._writer is not None:
            self._writer(event)
        elif self._dist.is_main:
            self._early.append(event)
        for fn in list(self.listeners):
            try:
                fn(event)
            except Exception:  # a broken listener must not stop training
                pass

    def _warn(self, message: str) -> None:
        self._emit(ev.Warning(message=message))

    def _set_state(self, state: ev.State, reason: str = "") -> None:
        self.state = state
        self._emit(ev.StateChanged(state=state, reason=reason))

    def _fail(self, message: str) -> str:
        if self._dist.enabled and not self._dist.is_main:
            message = f"rank {self._dist.rank}: {message}"
        self._reason = message
        self._emit(ev.Failed(message=message))
        self._set_state("failed", message)
        return "failed"

    def _describe_crash(self, e: Exception) -> str:
        msg = f"{type(e).__name__}: {first_line(e)}"
        if isinstance(e, torch.cuda.OutOfMemoryError):
            msg = "the GPU ran out of memory; use a smaller --batch-size or --width"
        if self.run_dir is not None:
            try:
                RunDir(self.run_dir).error_log_path.write_text(traceback.format_exc())
                msg += f" (details in {RunDir(self.run_dir).error_log_path})"
            except OSError:
                pass
        return msg

    def _close(self, outcome: str) -> None:
        """The final event, then release what the run holds (in this order: a reader that
        sees the lock gone also sees RunFinished)."""
        if self._channel is not None:  # no commands are taken after this
            self._channel.close()
            self._channel = None
        self._settle_saves(outcome)
        p = self._progress
        self.result = ev.RunFinished(
            outcome=outcome if outcome in ev.OUTCOMES else "failed", reason=self._reason,  # type: ignore[arg-type]
            last_checkpoint=p.last_checkpoint, save_error=p.save_error, best_checkpoint=p.best_checkpoint,
            epochs_done=p.epochs_done, global_step=p.global_step,
        )
        try:
            self._emit(self.result)
        finally:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
            if self._lock is not None:
                self._lock.release()
                self._lock = None
            self._dist.close()

    # ------------------------------------------------------------------------ run
    def _run(self) -> str:
        s = self._setup()
        if s is None:
            return self._stopped("stopped before training started")
        p = self._progress
        s.model.train()
        self._warm_up(s)
        self._last_save_t = time.monotonic()
        for epoch in range(p.epochs_done + 1, s.cfg.epochs + 1):
            e = self._train_epoch(s, epoch)
            if e is None:  # stopped mid-epoch
                break
            self._end_epoch(s, e)
            if s.dist.enabled and self._stop:  # a stop seen at the epoch's last sync
                p.stopped_at = (epoch + 1, 0)
                break
        return self._finish(s)

    # ---------------------------------------------------------------------- setup
    def _setup(self) -> Optional[_Setup]:
        """Everything before the first step. Returns None if a Stop arrived while loading."""
        ckpt = self._load_resume()
        cfg = self.config.validate()
        self._dist, dist_device = dd.setup(cfg.device)
        device = dist_device if dist_device is not None else resolve_device(cfg.device)
        backend = compile_backend(cfg, device)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels
        torch.manual_seed(cfg.seed)
        bundle = self._data if self._data is not None else load_data(cfg.data, progress=self._data_progress())
        require_training_split(bundle)
        for note in bundle.notes:
            self._warn(note)
        if self._stop_requested_early():
            return None
        train, val = self._split(cfg, bundle)
        batch, steps = self._batches(cfg, len(train), drop_last=backend is not None)
        train = ImageSet(train.x.to(device), train.y.to(device))
        model = SEResNet(width=cfg.width, num_classes=len(bundle.classes))
        params = count_parameters(model)
        self.model = model
        model = self._place(cfg, model, device)
        if ckpt is None:
            self._initialise(cfg, model, train)
        opt = make_optimizer(cfg, model, device)
        ema = WeightEMA(model, cfg.ema_decay) if cfg.ema_decay is not None else None
        if ckpt is not None:
            self._restore(cfg, ckpt, model, opt, ema, len(bundle.classes))
        run = self._open_run_dir(cfg, ckpt)
        s = _Setup(
            cfg=cfg, device=device, dist=self._dist, bundle=bundle, classes=list(bundle.classes),
            train=train, val=self._val_shard(val, device), n_val=len(val), batch=batch, steps_per_epoch=steps,
            model=model, forward=_Forward(self._wrap(cfg, model, device), backend, cfg.compile_mode, self._warn),
            opt=opt, ema=ema, params=params, run=run, store=CheckpointStore(run) if run is not None else None,
            aug=Augmenter(cfg.crop_padding, device, use_gray=cfg.grayscale_p > 0, use_autocontrast=cfg.autocontrast_p > 0,
                          reflect=cfg.pad_mode == "reflect", cutout=cfg.cutout),
            resumed_from=str(ckpt["path"]) if ckpt is not None else None, mix_gen=self._generator(device),
        )
        self._s = s
        self._saver = BackgroundWriter() if s.store is not None else None
        self._announce(s)
        return s

    def _data_progress(self, every: float = 0.5) -> Callable[[str, int, int], None]:
        """A callback for :func:`engine.data.load_data` that announces ``DataProgress``:
        the first call, then at most every ``every`` seconds, and the last one."""
        last = [-math.inf]

        def progress(message: str, done: int, total: int) -> None:
            now = time.monotonic()
            if done >= total or now - last[0] >= every:
                last[0] = now
                self._emit(ev.DataProgress(message=message, done=int(done), total=int(total)))

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

    @staticmethod
    def _generator(device: torch.device) -> Optional[torch.Generator]:
        try:
            return torch.Generator(device=device)
        except RuntimeError:  # pragma: no cover - a device without its own generators
            return None

    def _load_resume(self) -> Optional[dict]:
        if self.resume_path is None:
            return None
        ckpt = load_checkpoint(self.resume_path, purpose="resume")
        try:
            stored = TrainConfig.from_dict(ckpt["config"]).validate()
        except (TypeError, ConfigError) as e:
            raise CheckpointError(f"{ckpt['path']}: the stored settings are not usable ({e})") from None
        self.config = check_resume_overrides(stored, self.resume_overrides)
        self._resume_changes = resume_changes(stored, self.config)
        if ckpt["epoch"] >= self.config.epochs and ckpt.get("step_in_epoch", 0) == 0:
            raise ConfigError(
                f"the run already has {ckpt['epoch']} of {self.config.epochs} epochs; "
                f"pass --epochs N with N > {ckpt['epoch']} to train further"
            )
        return ckpt

    def _split(self, cfg: TrainConfig, bundle: DataBundle) -> tuple[ImageSet, ImageSet]:
        train_idx, val_idx, notes = split_indices(bundle.train.y, cfg.val_size, cfg.subset, cfg.seed)
        for note in notes:
            self._warn(note)
        return bundle.train.select(train_idx), bundle.train.select(val_idx)

    def _batches(self, cfg: TrainConfig, n_train: int, drop_last: bool = False) -> tuple[int, int]:
        """(global batch, steps per epoch). Under torchrun each rank takes a share of a batch.

        ``drop_last`` (when compiling): no final, smaller batch, so that every step has the
        same shape and the compiled step is built once; the images skipped are the last of
        each epoch's shuffled order, different ones every epoch.
        """
        dist = self._dist
        batch = min(cfg.batch_size, n_train)
        if dist.enabled and batch < 2 * dist.world:
            raise ConfigError(f"--batch-size {cfg.batch_size} is too small for {dist.world} processes; "
                              f"use at least {2 * dist.world}")
        steps, rem = divmod(n_train, batch)
        if rem and drop_last:
            self._warn(f"torch.compile: each epoch skips the last {rem} of its {n_train} images in its shuffled "
                       "order (different ones each epoch), so every step has the same shape and the step is "
                       "compiled once")
        elif rem and (not dist.enabled or rem >= 2 * dist.world):
            steps += 1  # a final, smaller batch
        elif rem:
            self._warn(f"{rem} image(s) per epoch are skipped: too few to share among {dist.world} processes")
        return batch, steps

    def _restore(self, cfg: TrainConfig, ckpt: dict, model: torch.nn.Module, opt: torch.optim.Optimizer,
                 ema: Optional[WeightEMA], n_classes: int) -> None:
        """Weights, optimiser, EMA, progress and RNG state from a checkpoint."""
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
        summary = ckpt.get("metrics") if isinstance(ckpt.get("metrics"), dict) else {}
        p = self._progress
        p.epochs_done, p.first_step, p.global_step = ckpt["epoch"], ckpt.get("step_in_epoch", 0), ckpt.get("global_step", 0)
        p.history = [h for h in summary.get("history", []) if isinstance(h, dict)]
        best = summary.get("best_val_acc")
        p.best_acc = float(best) if isinstance(best, (int, float)) and not isinstance(best, bool) else None
        p.best_epoch = summary.get("best_epoch") if isinstance(summary.get("best_epoch"), int) else None
        self._disk_best = (p.best_acc, p.best_epoch)
        override = ckpt.get("mixup_override")
        p.mixup_override = override if isinstance(override, bool) else None
        rng = ckpt.get("rng") if isinstance(ckpt.get("rng"), dict) else {}
        if "torch" in rng:
            try:
                torch.set_rng_state(rng["torch"])
            except (RuntimeError, TypeError):
                raise TrainingError(f"{ckpt['path']}: its random-number state is damaged; "
                                    "resume from another checkpoint") from None

    @staticmethod
    def _place(cfg: TrainConfig, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        model.to(device)
        if device.type == "cuda" and cfg.channels_last:
            model.to(memory_format=torch.channels_last)
        return model

    def _wrap(self, cfg: TrainConfig, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        if not self._dist.enabled:
            return model
        from torch.nn.parallel import DistributedDataParallel as DDP

        return DDP(model, device_ids=[device.index] if device.type == "cuda" else None)

    def _val_shard(self, val: ImageSet, device: torch.device) -> ImageSet:
        """This rank's validation images, kept on the device (read once per evaluation)."""
        dist = self._dist
        mine = val.select(np.arange(dist.rank, len(val), dist.world)) if dist.enabled else val
        return ImageSet(mine.x.to(device), mine.y.to(device))

    def _open_run_dir(self, cfg: TrainConfig, ckpt: Optional[dict]) -> Optional[RunDir]:
        """The run folder (rank 0 only): new, or the one a resumed run continues in; locked."""
        if not self._dist.is_main:
            return None
        if ckpt is not None:
            target = resume_target(ckpt["path"], ckpt.get("global_step", 0), cfg.runs_dir, cfg.preset, self._fixed_run)
            run = target.run
            if target.note:
                self._warn(target.note)
        elif self._fixed_run is not None:
            run = self._fixed_run
            run.ensure_layout()
        else:
            run = RunDir.create(cfg.runs_dir, cfg.preset)
        self.run_dir = run.path
        self._lock = run.lock()
        self._lock.acquire()  # refuses a run folder another live process is writing
        for note in self._lock.notes:
            self._warn(note)
        return run

    def _announce(self, s: _Setup) -> None:
        """Write config.json, open metrics.jsonl (with what was said so far), say RunStarted."""
        cfg, run = s.cfg, s.run
        if run is not None:
            note = run.write_config(self._run_info(s), resumed_from=s.resumed_from,
                                    resume_changes=self._resume_changes)
            self._writer = run.metrics_writer()
            for event in self._early:
                self._writer(event)
            self._early.clear()
            if note:
                self._warn(note)
            self._channel = control.open_for_trainer(run, self.send, self._warn, distributed=s.dist.enabled)
        dev = str(s.device) + (f" x{s.dist.world}" if s.dist.enabled else "")
        self._emit(ev.RunStarted(
            config=cfg.to_dict(), run_dir=str(run.path) if run else "", device=dev, params=s.params,
            run_id=run.run_id if run else "", train_size=s.n_train, val_size=s.n_val,
            steps_per_epoch=s.steps_per_epoch, start_epoch=self._progress.epochs_done,
            resumed_from=s.resumed_from, classes=tuple(s.classes),
        ))
        self._set_state("running", "resumed" if s.resumed_from else "started")

    def _run_info(self, s: _Setup) -> dict[str, Any]:
        b = s.bundle
        return {
            "run_id": s.run.run_id if s.run else "",
            "created": now_iso(),
            "config": s.cfg.to_dict(),
            "data": {"source": b.source, "kind": b.kind, "classes": s.classes, "train_images": s.n_train,
                     "val_images": s.n_val, "test_images": len(b.test) if b.test is not None else 0, "notes": b.notes},
            "model": {**arch_info(s.model), "params": s.params},
            "device": str(s.device),
            "world_size": s.dist.world,
            "device_name": device_name(s.device),
            "versions": versions(),
        }

    # ------------------------------------------------------------------- compile
    def _warm_up(self, s: _Setup) -> None:
        """Build the compiled step before the run's clock starts: a forward and backward pass
        on zeros of each input shape the rest of the run trains at. BatchNorm's buffers are put
        back and the gradients dropped, so training goes on exactly as without it. Says
        ``Compiled`` with the seconds it took; a failure falls back to eager (a Warning)."""
        f = s.forward
        if not f.compiling:
            return
        t0 = time.perf_counter()
        sizes = sorted({s.size_at(e) for e in range(self._progress.epochs_done + 1, s.cfg.epochs + 1)})
        saved = [b.detach().clone() for b in s.model.buffers()]
        try:
            for size in sizes:
                x = torch.zeros((s.rows, 3, size, size), device=s.device)
                if s.device.type == "cuda" and s.cfg.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                for _ in range(3 if f.cudagraphs else 1):  # CUDA graphs record on a later call
                    f.mark_step()
                    with autocast_for(s.device, s.cfg.amp):
                        out = f(x)
                    out.float().sum().backward()
        except torch.cuda.OutOfMemoryError:
            raise
        except Exception as e:  # noqa: BLE001 - no compiler, an unsupported Python, a backend bug...
            f.fallback(f"torch.compile failed ({first_line(e)})")
        finally:
            with torch.no_grad():
                for b, v in zip(s.model.buffers(), saved):
                    b.copy_(v)
            s.opt.zero_grad(set_to_none=True)
        if s.device.type == "cuda":
            torch.cuda.synchronize(s.device)
        self._emit(ev.Compiled(seconds=time.perf_counter() - t0, backend=str(f.backend), mode=f.mode,
                               shapes=len(sizes), ok=f.failed is None, message=f.failed or ""))

    # ---------------------------------------------------------------------- epoch
    def _train_epoch(self, s: _Setup, epoch: int) -> Optional[_Epoch]:
        """The steps of one epoch. Returns the epoch's record, or None if a stop ended it."""
        cfg, p = s.cfg, self._progress
        plan = make_epoch_plan(s.n_train, s.batch, cfg.seed, epoch, cfg, s.device)
        sched = mixup_scheduled(cfg, epoch, plan.mixup_draw)
        mixup = sched if p.mixup_override is None else p.mixup_override
        self._emit(ev.EpochStarted(epoch=epoch, epochs=cfg.epochs, steps=s.steps_per_epoch, mixup=mixup,
                                   mixup_source="schedule" if p.mixup_override is None else "user"))
        e = _Epoch(epoch, s.steps_per_epoch, mixup, sched, torch.zeros((), device=s.device),
                   torch.zeros((), device=s.device), size=s.size_at(epoch))
        step, p.first_step = p.first_step, 0
        while step < e.steps:
            if self._saver is not None and self._saver.ready:
                self._collect_saves(s)
            if not self.commands.empty() or self._paused:
                self._between_steps(s, e, step)
                if self._stop and not s.dist.enabled:  # under torchrun a stop waits for the next sync
                    p.stopped_at = (epoch, step)
                    return None
            self._step(s, e, plan, step)
            step += 1
            if self._log_due(s, e, step) and self._log(s, e, step) and step < e.steps:
                p.stopped_at = (epoch, step)  # torchrun: every rank agreed to stop
                return None
        return e

    def _step(self, s: _Setup, e: _Epoch, plan, step: int) -> None:
        """One optimisation step on this rank's share of the global batch."""
        cfg, p = s.cfg, self._progress
        lo, hi = step * s.batch, min(step * s.batch + s.batch, s.n_train)
        if s.dist.enabled:
            lo, hi = dd.shard(lo, hi, s.dist.rank, s.dist.world)
        idx = plan.order[lo:hi]
        xb = s.aug(s.train.x[idx], plan.offsets[lo:hi], plan.flips[lo:hi], plan.gray[lo:hi], plan.autocontrast[lo:hi],
                   plan.cutout[lo:hi] if plan.cutout is not None else None, e.size)
        yb = s.train.y[idx]
        if s.device.type == "cuda" and cfg.channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        lr = lr_at(cfg, p.global_step, s.total_steps, s.steps_per_epoch)
        for g in s.opt.param_groups:
            g["lr"] = lr * g.get("lr_scale", 1.0)
        ls = cfg.label_smoothing
        s.forward.mark_step()
        with autocast_for(s.device, cfg.amp):
            if e.mixup:
                lam = float(plan.lam[step])
                perm = mixup_permutation(plan, step, hi - lo, s.device, salt=s.dist.rank, generator=s.mix_gen)
                out = s.forward(lam * xb + (1.0 - lam) * xb[perm])
                yb2 = yb[perm]
                loss = lam * F.cross_entropy(out, yb, label_smoothing=ls) + (1.0 - lam) * F.cross_entropy(
                    out, yb2, label_smoothing=ls)
            else:
                out = s.forward(xb)
                loss = F.cross_entropy(out, yb, label_smoothing=ls)
        s.opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip_value is not None:
            torch.nn.utils.clip_grad_value_(s.model.parameters(), cfg.grad_clip_value)
        s.opt.step()
        if s.ema is not None:
            s.ema.update()
        with torch.no_grad():
            pred = out.argmax(1)
            if e.mixup:
                e.correct += lam * (pred == yb).sum() + (1.0 - lam) * (pred == yb2).sum()
            else:
                e.correct += (pred == yb).sum()
            e.loss_sum += loss.detach().float() * (hi - lo)
        e.seen += hi - lo
        p.global_step += 1

    def _log_due(self, s: _Setup, e: _Epoch, step: int) -> bool:
        """Read the metrics now? Every ``log_every`` steps, at the end of the epoch, and
        (alone, not under torchrun, where every rank must agree) after the first step of
        an epoch and every ``log_seconds``, so a slow run shows progress at once."""
        if step % s.cfg.log_every == 0 or step == e.steps:
            return True
        if s.dist.enabled or not s.cfg.log_seconds:
            return False
        return step == 1 or time.monotonic() - e.last_log >= s.cfg.log_seconds

    def _log(self, s: _Setup, e: _Epoch, step: int) -> bool:
        """Read the running sums (the loop's only host-device sync; under torchrun the only
        collective besides DDP's) and announce StepDone. Returns True if every rank agreed
        to stop. Raises TrainingError on a non-finite loss."""
        p = self._progress
        flags = torch.tensor([float(e.seen), 1.0 if self._stop else 0.0], device=s.device)
        stats = s.dist.all_sum(torch.cat([torch.stack([e.loss_sum.float(), e.correct.float()]), flags]))
        e.g_loss, e.g_correct, e.g_seen, g_stop = stats.tolist()
        mean_loss = e.g_loss / max(1.0, e.g_seen)
        lr = lr_at(s.cfg, p.global_step - 1, s.total_steps, s.steps_per_epoch)
        if not math.isfinite(mean_loss):
            self._settle_saves("failed")  # what is being written, and a best not written yet, first
            raise TrainingError(self._nonfinite_message(mean_loss, e.number, step, lr, s.cfg.lr))
        now = time.perf_counter()
        ips = (e.g_seen - e.win_seen) / max(now - e.win_t, 1e-9)
        e.win_t, e.win_seen, e.last_log = now, e.g_seen, time.monotonic()
        self._emit(ev.StepDone(
            epoch=e.number, step=p.global_step, loss=mean_loss, lr=lr, images_per_s=ips, step_in_epoch=step,
            steps_per_epoch=e.steps, train_acc=e.g_correct / max(1.0, e.g_seen),
        ))
        if s.dist.enabled and g_stop > 0:
            if not self._stop:
                self._stop, self._stop_save = True, True
                self._set_state("stopping", "another process asked to stop")
            return True
        return False

    def _nonfinite_message(self, loss: float, epoch: int, step: int, lr: float, peak: float) -> str:
        what = "NaN" if math.isnan(loss) else "infinite"
        last = self._progress.last_checkpoint or self._progress.best_checkpoint
        if last:
            advice = (f"nothing was saved after it; resume from {last} with a lower --lr "
                      f"(cifar-tui train --resume {last} --lr {peak / 10:.3g})")
        else:
            advice = "nothing was saved yet; start a new run with a lower --lr"
        return f"the loss became {what} at epoch {epoch} step {step} (learning rate {lr:.3g}); {advice}"

    def _between_steps(self, s: _Setup, e: _Epoch, step: int) -> None:
        """Apply queued commands (blocks while paused); paused time is not training time."""
        t0 = time.perf_counter()
        new_mix = self._apply_commands(lambda: self._save_now(s, e.number - 1, step), e.number)
        if new_mix == "schedule":
            e.mixup = e.sched_mixup
            self._emit(ev.MixupChanged(epoch=e.number, on=e.mixup, source="schedule"))
        elif new_mix is not None:
            e.mixup = bool(new_mix)
        waited = time.perf_counter() - t0
        e.paused += waited
        e.win_t += waited

    # ---------------------------------------------------------------- end of epoch
    def _end_epoch(self, s: _Setup, e: _Epoch) -> None:
        """Validate (when due), record the epoch, queue last.pt (and best.pt, epoch-NNN.pt)."""
        p, cfg = self._progress, s.cfg
        s.dist.average_buffers(s.model)  # identical models on every rank before validating and saving
        if s.ema is not None:
            s.dist.average_buffers(s.ema.module)
        train_loss, train_acc = e.g_loss / max(1.0, e.g_seen), e.g_correct / max(1.0, e.g_seen)
        t_val = time.perf_counter()
        val_loss, val_acc = self._validate(s) if self._validation_due(s, e.number) else (None, None)
        val_seconds = time.perf_counter() - t_val
        # the best is chosen by validation accuracy, by training accuracy when nothing is held
        # out, and not at all on an epoch whose validation was skipped (val_every)
        score = val_acc if val_acc is not None else (train_acc if not s.n_val else None)
        improved = score is not None and (p.best_acc is None or score > p.best_acc)
        if improved:  # tentatively: undone if best.pt cannot be written
            p.best_acc, p.best_epoch = score, e.number
        seconds = time.perf_counter() - e.started - e.paused
        lr = lr_at(cfg, max(p.global_step - 1, 0), s.total_steps, s.steps_per_epoch)
        p.history.append({"epoch": e.number, "train_loss": train_loss, "train_acc": train_acc, "val_loss": val_loss,
                          "val_acc": val_acc, "lr": lr, "mixup": e.mixup, "seconds": seconds,
                          "val_seconds": val_seconds})
        p.epochs_done = e.number
        extra = {"val_acc": val_acc, "val_loss": val_loss, "train_acc": train_acc, "train_loss": train_loss}
        self._checkpoint_epoch(s, e.number, val_acc, score if improved else None, extra)
        self._emit(ev.EpochDone(
            epoch=e.number, train_loss=train_loss, train_acc=train_acc, val_loss=val_loss, val_acc=val_acc,
            seconds=seconds, lr=lr, mixup=e.mixup, best_val_acc=p.best_acc, best_epoch=p.best_epoch,
            val_seconds=val_seconds,
        ))

    @staticmethod
    def _validation_due(s: _Setup, epoch: int) -> bool:
        every = s.cfg.val_every
        return bool(s.n_val) and (epoch == s.cfg.epochs or (every > 0 and epoch % every == 0))

    def _validate(self, s: _Setup) -> tuple[Optional[float], Optional[float]]:
        """Loss and accuracy on the validation images (on the device), read back once."""
        sums = validation_sums(s.eval_model, s.val.x, s.val.y, s.device, amp=s.cfg.amp,
                               channels_last=s.cfg.channels_last, tta_flip=s.cfg.tta_flip,
                               tta_translate=s.cfg.tta_translate)
        loss_sum, correct = s.dist.all_sum(sums).tolist()
        return loss_sum / s.n_val, correct / s.n_val

    # ---------------------------------------------------------------- checkpoints
    def _state(self, s: _Setup, epochs_done: int, step_in_epoch: int, extra: dict) -> dict:
        p = self._progress
        return {
            "model": s.model.state_dict(),
            **({"ema": s.ema.state_dict(), "ema_n": s.ema.n} if s.ema is not None else {}),
            "optimizer": s.opt.state_dict(),
            "scheduler": {"global_step": p.global_step, "total_steps": s.total_steps},
            "epoch": epochs_done,
            "step_in_epoch": step_in_epoch,
            "global_step": p.global_step,
            "config": s.cfg.to_dict(),
            "arch": arch_info(s.model),
            "classes": s.classes,
            "data_source": s.bundle.source,
            "mixup_override": p.mixup_override,
            "metrics": {"best_val_acc": p.best_acc, "best_epoch": p.best_epoch, "history": p.history, **extra},
            "rng": {"torch": torch.get_rng_state()},
            "run_id": s.run.run_id if s.run else "",
            "world_size": s.dist.world,
        }

    def _save_due(self, s: _Setup, epoch: int) -> bool:
        """Write last.pt at the end of ``epoch``? At the run's end, on the epochs of
        ``save_every_epochs`` and ``save_every`` (epoch-NNN.pt copies last.pt), and, with
        ``save_every_epochs`` 0, once ``save_seconds`` have passed since the last write."""
        cfg = s.cfg
        if epoch >= cfg.epochs or (cfg.save_every and epoch % cfg.save_every == 0):
            return True
        if cfg.save_every_epochs:
            return epoch % cfg.save_every_epochs == 0
        return time.monotonic() - self._last_save_t >= cfg.save_seconds

    def _checkpoint_epoch(self, s: _Setup, epoch: int, val_acc: Optional[float], best: Optional[float],
                          extra: dict) -> None:
        """The end of an epoch's checkpoints (rank 0). ``best``: the new best score, if this
        epoch is the best so far. When last.pt is not due, a new best is kept as a copy in
        memory and written (as best.pt) with the next last.pt, a stop, or a failure."""
        if s.store is None:
            return
        cfg = s.cfg
        if not self._save_due(s, epoch):
            if best is not None:
                self._pending_best = self._write(s, "best", epoch, 0, val_acc, extra, score=best)
            return
        copies = [("best", best)] if best is not None else []
        if cfg.save_every and epoch % cfg.save_every == 0:
            copies.append(("epoch", None))
        before = None if best is not None else self._pending_best
        self._pending_best = None
        self._save(s, "last", epoch, 0, val_acc, extra, copies=copies, before=before)

    def _write(self, s: _Setup, kind: ev.CheckpointKind, epochs_done: int, step_in_epoch: int,
               val_acc: Optional[float], extra: dict, score: Optional[float] = None) -> PendingWrite:
        """A full checkpoint of the state now, copied so that training can go on."""
        p = self._progress
        summary = {
            "run_id": s.run.run_id, "epoch": epochs_done, "step_in_epoch": step_in_epoch,
            "global_step": p.global_step, "val_acc": val_acc, "preset": s.cfg.preset, "data": s.bundle.source,
            "width": s.cfg.width, "params": s.params, "saved": now_iso(),
            **{k: v for k, v in extra.items() if isinstance(v, (int, float, str, type(None)))},
        }
        state, ready = snapshot(self._state(s, epochs_done, step_in_epoch, extra))
        return PendingWrite(kind=kind, epoch=epochs_done, step_in_epoch=step_in_epoch, global_step=p.global_step,
                            val_acc=val_acc, score=score, state=state, ready=ready, summary=summary)

    def _save(self, s: _Setup, kind: ev.CheckpointKind, epochs_done: int, step_in_epoch: int,
              val_acc: Optional[float], extra: dict, copies: Iterable[tuple[ev.CheckpointKind, Optional[float]]] = (),
              before: Optional[PendingWrite] = None) -> bool:
        """Queue a checkpoint (rank 0): a copy of the state now, written by the writer thread
        while training goes on, then ``copies`` of it (kind, best score); ``before``: a
        pending best.pt to write first. Results come back through :meth:`_collect_saves`."""
        if s.store is None or self._saver is None:
            return False
        p = self._progress
        main = self._write(s, kind, epochs_done, step_in_epoch, val_acc, extra)
        writes = ([before] if before is not None else []) + [main] + [
            PendingWrite(kind=k, epoch=epochs_done, global_step=p.global_step, val_acc=val_acc, score=sc)
            for k, sc in copies]
        store = s.store
        self._saver.submit(lambda: perform_writes(store, writes), writes)
        if kind in ("last", "stop"):
            self._saved_step, self._last_save_t = p.global_step, time.monotonic()
        return True

    def _save_now(self, s: _Setup, epochs_done: int, step_in_epoch: int) -> None:
        """A SaveCheckpoint command: written before training goes on (it is rare, and the
        user waits for its "saved" line, also while paused)."""
        if self._save(s, "manual", epochs_done, step_in_epoch, None, {}):
            self._collect_saves(s, wait=True)

    def _collect_saves(self, s: _Setup, wait: bool = False) -> None:
        """Announce the writes that finished (CheckpointSaved, or a Warning) on this thread;
        ``wait``: all of them, waiting for the writer."""
        if self._saver is None:
            return
        for writes, _, error in (self._saver.wait() if wait else self._saver.finished()):
            for w in writes:
                if error is not None and w.path is None and w.error is None:
                    w.error = first_line(error)
                self._saved(s, w)

    def _saved(self, s: _Setup, w: PendingWrite) -> None:
        p = self._progress
        if w.error is not None:
            name = s.run.checkpoint_path(w.kind, epoch=w.epoch, global_step=w.global_step,
                                         step_in_epoch=w.step_in_epoch).name
            if w.kind in ("last", "stop", "manual"):
                p.save_error = f"could not save {name} ({w.error}); the previous checkpoint is intact"
                self._warn(p.save_error)
                if w.kind != "manual":
                    self._saved_step = None  # a stop must write it again
            elif w.error != SKIPPED:
                self._warn(f"could not save {name} ({w.error})")
            if w.kind == "best" and p.best_epoch == w.epoch:
                p.best_acc, p.best_epoch = self._disk_best  # best.pt still holds the earlier best
            return
        if w.kind in ("last", "stop", "manual"):
            p.save_error = None
            p.last_checkpoint = str(w.path)
        elif w.kind == "best":
            p.best_checkpoint = str(w.path)
            self._disk_best = (w.score, w.epoch)
        self._emit(ev.CheckpointSaved(path=str(w.path), epoch=w.epoch, val_acc=w.val_acc, kind=w.kind,
                                      step_in_epoch=w.step_in_epoch, global_step=w.global_step))

    def _settle_saves(self, outcome: str) -> None:
        """Before the run's last event: a failed run writes its pending best, then every
        queued write is waited for and announced, and the writer stops."""
        s, saver = self._s, self._saver
        if s is None or saver is None:
            return
        try:
            if outcome == "failed" and self._pending_best is not None:
                pending, self._pending_best = self._pending_best, None
                store = s.store
                saver.submit(lambda: perform_writes(store, [pending]), [pending])
            self._collect_saves(s, wait=True)
            saver.close()
        except Exception:  # noqa: BLE001 - reporting must not stop the run from ending
            pass
        self._saver = None

    # --------------------------------------------------------------------- finish
    def _finish(self, s: _Setup) -> str:
        """After the last epoch or a stop: the stop's checkpoint, then the outcome."""
        p = self._progress
        s.dist.average_buffers(s.model)  # (a mid-epoch stop saves the model below)
        if s.ema is not None:
            s.dist.average_buffers(s.ema.module)
        s.dist.barrier()  # no rank leaves (and tears the group down) while another still saves
        self._collect_saves(s, wait=True)  # (a failed last.pt write is known before the stop decides)
        if p.stopped_at is not None:
            ep, st = p.stopped_at
            if self._stop_save and self._saved_step != p.global_step:
                before, self._pending_best = self._pending_best, None
                self._save(s, "stop", ep - 1, st, None, {}, before=before)
            elif self._pending_best is not None:
                pending, self._pending_best = self._pending_best, None
                self._saver.submit(lambda: perform_writes(s.store, [pending]), [pending])
        self._collect_saves(s, wait=True)
        if s.run is not None and p.best_checkpoint is None and s.run.best_checkpoint.exists():
            p.best_checkpoint = str(s.run.best_checkpoint)
        if p.stopped_at is None:
            self._reason = f"completed {s.cfg.epochs} epoch{'s' if s.cfg.epochs != 1 else ''}"
            self._set_state("finished", self._reason)
            return "completed"
        ep, st = p.stopped_at
        return self._stopped(f"{self._stop_reason} at epoch {ep} step {st}")

    def _stopped(self, reason: str) -> str:
        self._reason = reason
        self._set_state("finished", reason)
        return "stopped"

    # -------------------------------------------------------------------- commands
    def _stop_requested_early(self) -> bool:
        """Before training starts (data loading can be long): honour a Stop, keep the rest queued."""
        keep, stop = [], False
        while True:
            try:
                cmd = self.commands.get_nowait()
            except queue.Empty:
                break
            if isinstance(cmd, ev.Stop):
                stop = True
            else:
                keep.append(cmd)
        for cmd in keep:
            self.commands.put(cmd)
        return stop

    def _apply_commands(self, save_now: Callable[[], Any], epoch: int) -> Optional[bool | str]:
        """Apply queued commands; blocks while paused. Returns a new mixup value, "schedule"
        when mixup went back to the schedule, or None."""
        new_mix: Optional[bool | str] = None
        while True:
            try:
                if self._paused and not self._stop:
                    cmd = self.commands.get(timeout=0.2)
                else:
                    cmd = self.commands.get_nowait()
            except queue.Empty:
                if self._paused and not self._stop:
                    continue
                return new_mix
            if isinstance(cmd, ev.SaveCheckpoint):
                save_now()
            elif isinstance(cmd, ev.SetMixup):
                self._progress.mixup_override = cmd.on
                new_mix = "schedule" if cmd.on is None else cmd.on
                if cmd.on is not None:
                    self._emit(ev.MixupChanged(epoch=epoch, on=cmd.on, source="user"))
            else:
                self._apply_state_command(cmd)

    def _apply_state_command(self, cmd: ev.Command) -> None:
        if isinstance(cmd, ev.Pause) and self._dist.enabled:
            self._warn("pause is not available under torchrun; use stop and --resume")
        elif isinstance(cmd, ev.Pause) and not self._paused:
            self._paused = True
            self._set_state("paused", "paused by request")
        elif isinstance(cmd, ev.Resume) and self._paused:
            self._paused = False
            self._set_state("running", "resumed by request")
        elif isinstance(cmd, ev.Stop) and not self._stop:
            self._stop, self._stop_save, self._paused = True, cmd.save, False
            if cmd.reason:
                self._stop_reason = str(cmd.reason)[:200]
            self._set_state("stopping", "stop requested" + (", saving a checkpoint" if cmd.save else ""))
        elif isinstance(cmd, control.ChannelNotice):  # a bad message from another process
            self._warn(cmd.message)
