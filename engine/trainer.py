"""The training loop.

One :class:`Trainer` runs one run. It reads top to bottom:

1. :meth:`Trainer._setup`: the settings (a checkpoint's when resuming), the data,
   the model and optimiser, the run folder; announces ``RunStarted``;
2. :meth:`Trainer._train_epoch`: the steps of one epoch; between two steps it
   applies the commands it was sent (:mod:`engine.events`);
3. :meth:`Trainer._end_epoch`: validation, the epoch's record, checkpoints;
4. :meth:`Trainer._finish`: the final checkpoint of a stop, and the outcome;

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

from . import distributed as dd
from . import events as ev
from .checkpoint import CheckpointError, CheckpointStore, first_line, load_checkpoint, load_weights
from .config import ConfigError, TrainConfig
from .data import (Augmenter, DataBundle, DataError, ImageSet, load_data, make_epoch_plan, mixup_permutation,
                   require_training_split, split_indices)
from .device import autocast_for, device_name, resolve_device, versions
from .ema import WeightEMA, ema_decay_at  # noqa: F401  (ema_decay_at re-exported)
from .evaluate import evaluate
from .model import SEResNet, arch_info, count_parameters
from .rundir import MetricsWriter, RunDir, RunDirError, RunLock, now_iso, resume_target
from .schedule import lr_at, mixup_scheduled

Listener = Callable[[ev.Event], None]

# Settings a resumed run may change (recorded in the run's resume history); anything
# else must match the checkpoint's config. runs_dir is where forks of this invocation go.
RESUME_MUTABLE = {"epochs", "device", "runs_dir", "log_every", "log_seconds", "save_every", "compile",
                  "lr", "weight_decay", "label_smoothing", "grad_clip_value", "mixup"}
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
    val: ImageSet  # this rank's share of the validation images
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


class _Forward:
    """The model's forward pass, through torch.compile when asked; falls back to eager
    if compilation fails at the first call."""

    def __init__(self, model: torch.nn.Module, compile_it: bool, warn: Callable[[str], None]):
        self.eager = self.fn = model
        self.pending = False
        self.warn = warn
        if compile_it:
            try:
                self.fn = torch.compile(model)
                self.pending = True  # compilation happens (and may fail) at the first forward
            except Exception as e:  # pragma: no cover - depends on the platform
                warn(f"torch.compile unavailable ({first_line(e)}); training without it")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not self.pending:
            return self.fn(x)
        try:
            out = self.fn(x)
        except torch.cuda.OutOfMemoryError:
            raise
        except Exception as e:  # pragma: no cover - needs a GPU without a working compiler
            self.warn(f"torch.compile failed ({first_line(e)}); training without it")
            self.fn = self.eager
            out = self.fn(x)
        self.pending = False
        return out


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
        self._paused = False
        self._stop = False
        self._stop_save = True
        self._stop_reason = "stopped by request"
        self._dist = dd.DistContext()
        self._progress = _Progress()
        self._reason = ""

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
        torch.manual_seed(cfg.seed)
        bundle = self._data if self._data is not None else load_data(cfg.data, progress=self._data_progress())
        require_training_split(bundle)
        for note in bundle.notes:
            self._warn(note)
        if self._stop_requested_early():
            return None
        train, val = self._split(cfg, bundle)
        batch, steps = self._batches(cfg, len(train))
        model = SEResNet(width=cfg.width, num_classes=len(bundle.classes))
        params = count_parameters(model)
        self.model = model
        opt = self._optimiser(cfg, model)
        ema = WeightEMA(model, cfg.ema_decay) if cfg.ema_decay is not None else None
        if ckpt is not None:
            self._restore(cfg, ckpt, model, opt, ema, len(bundle.classes))
        model = self._place(cfg, model, ema, device)
        run = self._open_run_dir(cfg, ckpt)
        s = _Setup(
            cfg=cfg, device=device, dist=self._dist, bundle=bundle, classes=list(bundle.classes),
            train=ImageSet(train.x.to(device), train.y.to(device)), val=self._val_shard(val), n_val=len(val),
            batch=batch, steps_per_epoch=steps, model=model, forward=_Forward(self._wrap(cfg, model, device),
            cfg.compile and device.type == "cuda", self._warn), opt=opt, ema=ema,
            aug=Augmenter(cfg.crop_padding, device, use_gray=cfg.grayscale_p > 0, use_autocontrast=cfg.autocontrast_p > 0),
            params=params, run=run, store=CheckpointStore(run) if run is not None else None,
            resumed_from=str(ckpt["path"]) if ckpt is not None else None,
        )
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

    def _batches(self, cfg: TrainConfig, n_train: int) -> tuple[int, int]:
        """(global batch, steps per epoch). Under torchrun each rank takes a share of a batch."""
        dist = self._dist
        batch = min(cfg.batch_size, n_train)
        if dist.enabled and batch < 2 * dist.world:
            raise ConfigError(f"--batch-size {cfg.batch_size} is too small for {dist.world} processes; "
                              f"use at least {2 * dist.world}")
        steps, rem = divmod(n_train, batch)
        if rem and (not dist.enabled or rem >= 2 * dist.world):
            steps += 1  # a final, smaller batch
        elif rem:
            self._warn(f"{rem} image(s) per epoch are skipped: too few to share among {dist.world} processes")
        return batch, steps

    @staticmethod
    def _optimiser(cfg: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay, nesterov=cfg.nesterov and cfg.momentum > 0)

    def _restore(self, cfg: TrainConfig, ckpt: dict, model: torch.nn.Module, opt: torch.optim.Optimizer,
                 ema: Optional[WeightEMA], n_classes: int) -> None:
        """Weights, optimiser, EMA, progress and RNG state from a checkpoint."""
        if n_classes != ckpt["arch"]["num_classes"]:
            raise TrainingError(f"the checkpoint has {ckpt['arch']['num_classes']} classes but --data has {n_classes}")
        load_weights(model, ckpt)
        try:
            opt.load_state_dict(ckpt["optimizer"])
        except (KeyError, ValueError, RuntimeError, TypeError):
            raise TrainingError(f"{ckpt['path']}: optimizer state does not fit; the checkpoint is damaged") from None
        if ema is not None and isinstance(ckpt.get("ema"), dict):
            try:
                ema.load_state_dict(ckpt["ema"], ckpt.get("ema_n", 1))
            except (RuntimeError, KeyError, TypeError):
                raise TrainingError(f"{ckpt['path']}: its weight average does not fit; the checkpoint is damaged") from None
        summary = ckpt.get("metrics") if isinstance(ckpt.get("metrics"), dict) else {}
        p = self._progress
        p.epochs_done, p.first_step, p.global_step = ckpt["epoch"], ckpt.get("step_in_epoch", 0), ckpt.get("global_step", 0)
        p.history = [h for h in summary.get("history", []) if isinstance(h, dict)]
        best = summary.get("best_val_acc")
        p.best_acc = float(best) if isinstance(best, (int, float)) and not isinstance(best, bool) else None
        p.best_epoch = summary.get("best_epoch") if isinstance(summary.get("best_epoch"), int) else None
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
    def _place(cfg: TrainConfig, model: torch.nn.Module, ema: Optional[WeightEMA], device: torch.device) -> torch.nn.Module:
        model.to(device)
        if device.type == "cuda" and cfg.channels_last:
            model.to(memory_format=torch.channels_last)
        if ema is not None:
            ema.to(device)
            if device.type == "cuda" and cfg.channels_last:
                ema.to(memory_format=torch.channels_last)
            ema.rebind(model)
        return model

    def _wrap(self, cfg: TrainConfig, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        if not self._dist.enabled:
            return model
        from torch.nn.parallel import DistributedDataParallel as DDP

        return DDP(model, device_ids=[device.index] if device.type == "cuda" else None)

    def _val_shard(self, val: ImageSet) -> ImageSet:
        dist = self._dist
        return val.select(np.arange(dist.rank, len(val), dist.world)) if dist.enabled else val

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
            run.write_config(self._run_info(s), resumed_from=s.resumed_from,
                             resume_changes=getattr(self, "_resume_changes", None))
            self._writer = run.metrics_writer()
            for event in self._early:
                self._writer(event)
            self._early.clear()
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
                   torch.zeros((), device=s.device))
        step, p.first_step = p.first_step, 0
        while step < e.steps:
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
        xb = s.aug(s.train.x[idx], plan.offsets[lo:hi], plan.flips[lo:hi], plan.gray[lo:hi], plan.autocontrast[lo:hi])
        yb = s.train.y[idx]
        if s.device.type == "cuda" and cfg.channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        lr = lr_at(cfg, p.global_step, s.total_steps, s.steps_per_epoch)
        for g in s.opt.param_groups:
            g["lr"] = lr
        ls = cfg.label_smoothing
        with autocast_for(s.device, cfg.amp):
            if e.mixup:
                lam = float(plan.lam[step])
                perm = mixup_permutation(plan, step, hi - lo, s.device, salt=s.dist.rank)
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
        last = self._progress.last_checkpoint
        if last:
            advice = (f"nothing was saved after it; resume from {last} with a lower --lr "
                      f"(cifar-tui train --resume {last} --lr {peak / 10:.3g})")
        else:
            advice = "nothing was saved yet; start a new run with a lower --lr"
        return f"the loss became {what} at epoch {epoch} step {step} (learning rate {lr:.3g}); {advice}"

    def _between_steps(self, s: _Setup, e: _Epoch, step: int) -> None:
        """Apply queued commands (blocks while paused); paused time is not training time."""
        t0 = time.perf_counter()
        new_mix = self._apply_commands(lambda: self._save(s, "manual", e.number - 1, step, None, {}), e.number)
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
        """Validate, record the epoch, write last.pt (and best.pt, epoch-NNN.pt)."""
        p, cfg = self._progress, s.cfg
        s.dist.average_buffers(s.model)  # identical models on every rank before validating and saving
        if s.ema is not None:
            s.dist.average_buffers(s.ema.module)
        train_loss, train_acc = e.g_loss / max(1.0, e.g_seen), e.g_correct / max(1.0, e.g_seen)
        val_loss, val_acc = self._validate(s)
        score = val_acc if val_acc is not None else train_acc
        improved = p.best_acc is None or score > p.best_acc
        prev_best = (p.best_acc, p.best_epoch)
        if improved:  # tentatively: undone below if best.pt cannot be written
            p.best_acc, p.best_epoch = score, e.number
        seconds = time.perf_counter() - e.started - e.paused
        lr = lr_at(cfg, max(p.global_step - 1, 0), s.total_steps, s.steps_per_epoch)
        p.history.append({"epoch": e.number, "train_loss": train_loss, "train_acc": train_acc, "val_loss": val_loss,
                          "val_acc": val_acc, "lr": lr, "mixup": e.mixup, "seconds": seconds})
        p.epochs_done = e.number
        extra = {"val_acc": val_acc, "val_loss": val_loss, "train_acc": train_acc, "train_loss": train_loss}
        last = self._save(s, "last", e.number, 0, val_acc, extra)
        if improved and s.store is not None:
            if last is None or self._copy(s, last, "best", e.number, val_acc) is None:
                p.best_acc, p.best_epoch = prev_best  # best.pt still holds the earlier best
        if last is not None and cfg.save_every and e.number % cfg.save_every == 0:
            self._copy(s, last, "epoch", e.number, val_acc)
        self._emit(ev.EpochDone(
            epoch=e.number, train_loss=train_loss, train_acc=train_acc, val_loss=val_loss, val_acc=val_acc,
            seconds=seconds, lr=lr, mixup=e.mixup, best_val_acc=p.best_acc, best_epoch=p.best_epoch,
        ))

    def _validate(self, s: _Setup) -> tuple[Optional[float], Optional[float]]:
        if not s.n_val:
            return None, None
        r = evaluate(s.eval_model, s.val.x, s.val.y, len(s.classes), s.device, amp=s.cfg.amp, tta_flip=s.cfg.tta_flip)
        n = float(len(s.val))
        dtype = torch.float64 if s.device.type != "mps" else torch.float32
        v = torch.tensor([r.loss * n if n else 0.0, r.accuracy * n if n else 0.0, n], dtype=dtype, device=s.device)
        vl, vc, vn = s.dist.all_sum(v).tolist()
        return vl / vn, vc / vn

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

    def _save(self, s: _Setup, kind: ev.CheckpointKind, epochs_done: int, step_in_epoch: int,
              val_acc: Optional[float], extra: dict) -> Optional[Path]:
        """Write a checkpoint (rank 0). A failed write is a warning: training goes on and
        the previous file stays intact."""
        if s.store is None:
            return None
        p = self._progress
        summary = {
            "run_id": s.run.run_id, "epoch": epochs_done, "step_in_epoch": step_in_epoch,
            "global_step": p.global_step, "val_acc": val_acc, "preset": s.cfg.preset, "data": s.bundle.source,
            "width": s.cfg.width, "params": s.params, "saved": now_iso(),
            **{k: v for k, v in extra.items() if isinstance(v, (int, float, str, type(None)))},
        }
        try:
            path = s.store.save(kind, self._state(s, epochs_done, step_in_epoch, extra), summary,
                                epoch=epochs_done, global_step=p.global_step, step_in_epoch=step_in_epoch)
        except OSError as e:
            name = s.run.checkpoint_path(kind, epoch=epochs_done, global_step=p.global_step,
                                         step_in_epoch=step_in_epoch).name
            p.save_error = f"could not save {name} ({e.strerror or e}); the previous checkpoint is intact"
            self._warn(p.save_error)
            return None
        p.save_error = None
        p.last_checkpoint = str(path)
        self._emit(ev.CheckpointSaved(path=str(path), epoch=epochs_done, val_acc=val_acc, kind=kind,
                                      step_in_epoch=step_in_epoch, global_step=p.global_step))
        return path

    def _copy(self, s: _Setup, src: Path, kind: ev.CheckpointKind, epoch: int, val_acc: Optional[float]) -> Optional[Path]:
        try:
            dst = s.store.copy(src, kind, epoch=epoch)
        except OSError as e:
            self._warn(f"could not save {s.run.checkpoint_path(kind, epoch=epoch).name} ({e.strerror or e})")
            return None
        if kind == "best":
            self._progress.best_checkpoint = str(dst)
        self._emit(ev.CheckpointSaved(path=str(dst), epoch=epoch, val_acc=val_acc, kind=kind,
                                      global_step=self._progress.global_step))
        return dst

    # --------------------------------------------------------------------- finish
    def _finish(self, s: _Setup) -> str:
        """After the last epoch or a stop: the stop's checkpoint, then the outcome."""
        p = self._progress
        s.dist.average_buffers(s.model)  # (a mid-epoch stop saves the model below)
        if s.ema is not None:
            s.dist.average_buffers(s.ema.module)
        s.dist.barrier()  # no rank leaves (and tears the group down) while another still saves
        if s.run is not None and p.best_checkpoint is None and s.run.best_checkpoint.exists():
            p.best_checkpoint = str(s.run.best_checkpoint)
        if p.stopped_at is None:
            self._reason = f"completed {s.cfg.epochs} epoch{'s' if s.cfg.epochs != 1 else ''}"
            self._set_state("finished", self._reason)
            return "completed"
        ep, st = p.stopped_at
        if self._stop_save and (st > 0 or (s.run is not None and not s.run.last_checkpoint.exists())):
            self._save(s, "stop", ep - 1, st, None, {})
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
