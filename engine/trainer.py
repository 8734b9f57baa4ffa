"""The training loop.

One :class:`Trainer` runs one run: it loads the data, builds the model, and
trains step by step. Between steps it applies the commands it was sent
(:mod:`engine.events`); everything it does is announced as an event to its
listeners and appended to the run directory's ``metrics.jsonl``.

It runs in the caller's thread (:meth:`Trainer.run`) or in a background thread
(:meth:`Trainer.start`). Listeners are called from the training thread and must
return quickly (queue the event, don't draw).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import queue
import shutil
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from . import events as ev
from .checkpoint import (
    CheckpointError,
    atomic_write_json,
    load_checkpoint,
    load_weights,
    new_run_dir,
    save_checkpoint,
)
from .config import ConfigError, TrainConfig
from .schedule import lr_at
from . import distributed as dd
from .checkpoint import RunLock
from .data import Augmenter, DataBundle, DataError, load_data, make_epoch_plan, mixup_permutation, split_indices
from .evaluate import autocast_for, evaluate
from .model import SEResNet, arch_info, count_parameters

Listener = Callable[[ev.Event], None]

# Settings a resumed run may change; anything else must match the checkpoint's config.
RESUME_MUTABLE = {"epochs", "device", "runs_dir", "log_every", "save_every", "compile"}


class TrainingError(Exception):
    """Raised for problems the user can fix (bad data, bad checkpoint, bad setting)."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {name}: no CUDA GPU is visible here; use --device cpu or auto")
        idx = int(name.split(":")[1]) if ":" in name else 0
        if idx >= torch.cuda.device_count():
            raise ConfigError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("--device mps: Apple's MPS is not available here; use --device cpu or auto")
    return torch.device(name)


def check_resume_overrides(stored: TrainConfig, overrides: dict[str, Any]) -> TrainConfig:
    """Apply the overrides a resumed run allows; refuse ones that contradict the stored config."""
    changes = {}
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
    cfg = stored.replace(**changes).validate() if changes else stored
    return cfg


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
        self._fixed_run_dir = Path(run_dir) if run_dir else None
        self.commands: "queue.Queue[ev.Command]" = queue.Queue()
        self.run_dir: Optional[Path] = None
        self.state: str = "idle"
        self.result_reason: str = ""
        self.best_checkpoint: Optional[Path] = None
        self.exit_state: Optional[str] = None  # completed | stopped | failed
        self._thread: Optional[threading.Thread] = None
        self._metrics_fh = None
        self._paused = False
        self._stop = False
        self._stop_save = True
        self._mixup_override: Optional[bool] = None
        self._dist = dd.DistContext()
        self.model: Optional[torch.nn.Module] = None
        self.last_save_error: Optional[str] = None  # set while the latest checkpoint save has failed
        self._lock: Optional[RunLock] = None

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

    # ------------------------------------------------------------------- plumbing
    def _emit(self, event: ev.Event) -> None:
        if not self._dist.is_main and not isinstance(event, (ev.Failed, ev.Warning)):
            return  # only rank 0 reports (and writes metrics); others speak up only about problems
        if self._metrics_fh is not None:
            try:
                self._metrics_fh.write(ev.event_to_json(event) + "\n")
                self._metrics_fh.flush()
            except (OSError, ValueError):
                pass  # a full disk must not kill training; checkpoints report their own errors
        for fn in list(self.listeners):
            try:
                fn(event)
            except Exception:  # a broken listener must not stop training
                pass

    def _set_state(self, state: str, reason: str = "") -> None:
        self.state = state
        self._emit(ev.StateChanged(state=state, reason=reason))

    def _fail(self, message: str) -> str:
        if self._dist.enabled and not self._dist.is_main:
            message = f"rank {self._dist.rank}: {message}"
        self.result_reason = message
        self.exit_state = "failed"
        self._emit(ev.Failed(message=message))
        self._set_state("failed", message)
        return "failed"

    # ---------------------------------------------------------------------- run
    def run(self) -> str:
        """Train to the end (or until stopped/failed). Returns completed | stopped | failed."""
        try:
            return self._run()
        except (ConfigError, DataError, CheckpointError, TrainingError) as e:
            return self._fail(str(e))
        except Exception as e:  # an engine bug or a runtime failure (e.g. out of memory)
            msg = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
            if isinstance(e, torch.cuda.OutOfMemoryError):
                msg = "the GPU ran out of memory; use a smaller --batch-size or --width"
            if self.run_dir is not None:
                try:
                    (self.run_dir / "error.log").write_text(traceback.format_exc())
                    msg += f" (details in {self.run_dir / 'error.log'})"
                except OSError:
                    pass
            return self._fail(msg)
        finally:
            if self._metrics_fh is not None:
                try:
                    self._metrics_fh.close()
                except OSError:
                    pass
                self._metrics_fh = None
            if self._lock is not None:
                self._lock.release()
                self._lock = None
            self._dist.close()

    def _run(self) -> str:
        cfg = self.config
        ckpt = None
        if self.resume_path is not None:
            ckpt = load_checkpoint(self.resume_path)
            try:
                stored = TrainConfig.from_dict(ckpt["config"])
            except TypeError:
                raise CheckpointError(f"{ckpt['path']}: the stored settings are not readable") from None
            cfg = check_resume_overrides(stored, self.resume_overrides)
            self.config = cfg
        cfg.validate()
        self._dist, dist_device = dd.setup(cfg.device)
        dist = self._dist
        device = dist_device if dist_device is not None else resolve_device(cfg.device)
        torch.manual_seed(cfg.seed)

        # ---- data (before anything is written: bad data leaves no run folder behind)
        bundle = self._data if self._data is not None else load_data(cfg.data)
        for note in bundle.notes:
            self._emit(ev.Warning(message=note))
        if self._stop_requested_early():
            self.exit_state, self.result_reason = "stopped", "stopped before training started"
            self._set_state("finished", self.result_reason)
            return "stopped"
        train_idx, val_idx, notes = split_indices(bundle.train.y, cfg.val_size, cfg.subset, cfg.seed)
        for note in notes:
            self._emit(ev.Warning(message=note))
        train = bundle.train.select(train_idx)
        val = bundle.train.select(val_idx)
        classes = list(bundle.classes)
        n_train = len(train)
        batch = min(cfg.batch_size, n_train)  # the global batch; each rank takes its share
        if dist.enabled and batch < 2 * dist.world:
            raise ConfigError(f"--batch-size {cfg.batch_size} is too small for {dist.world} processes; use at least {2 * dist.world}")
        steps_per_epoch = n_train // batch
        rem = n_train - steps_per_epoch * batch
        if rem and (not dist.enabled or rem >= 2 * dist.world):
            steps_per_epoch += 1  # a final, smaller batch
        elif rem:
            self._emit(ev.Warning(message=f"{rem} image(s) per epoch are skipped: too few to share among {dist.world} processes"))
        total_steps = steps_per_epoch * cfg.epochs

        # ---- model and optimiser
        model = SEResNet(width=cfg.width, num_classes=len(classes))
        params = count_parameters(model)
        self.model = model  # the trained network (unwrapped), for callers that want it afterwards
        if ckpt is not None:
            if len(classes) != int(ckpt["arch"].get("num_classes", -1)):
                raise TrainingError(f"the checkpoint has {ckpt['arch'].get('num_classes')} classes but --data has {len(classes)}")
            load_weights(model, ckpt)
        cuda = device.type == "cuda"
        model.to(device)
        if cuda and cfg.channels_last:
            model.to(memory_format=torch.channels_last)
        opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                              weight_decay=cfg.weight_decay, nesterov=cfg.nesterov and cfg.momentum > 0)
        start_epoch, first_step, global_step = 0, 0, 0
        history: list[dict] = []
        best_acc, best_epoch = None, None
        if ckpt is not None:
            try:
                opt.load_state_dict(ckpt["optimizer"])
            except (KeyError, ValueError, RuntimeError):
                raise TrainingError(f"{ckpt['path']}: optimizer state does not fit; the checkpoint is damaged") from None
            start_epoch = int(ckpt["epoch"])
            first_step = int(ckpt.get("step_in_epoch", 0))
            global_step = int(ckpt.get("global_step", 0))
            summary = ckpt.get("metrics", {})
            history = list(summary.get("history", []))
            best_acc, best_epoch = summary.get("best_val_acc"), summary.get("best_epoch")
            self._mixup_override = ckpt.get("mixup_override")
            rng = ckpt.get("rng", {})
            if "torch" in rng:
                torch.set_rng_state(rng["torch"])
            if start_epoch >= cfg.epochs and first_step == 0:
                raise ConfigError(
                    f"the run already has {start_epoch} of {cfg.epochs} epochs; pass --epochs N with N > {start_epoch} to train further"
                )
        ema = None
        ema_count = {"n": 0}  # updates so far, on the host: the decay warm-up needs no GPU sync
        if cfg.ema_decay is not None:
            from torch.optim.swa_utils import AveragedModel

            decay = float(cfg.ema_decay)

            @torch.no_grad()
            def ema_update(ema_params, params, _num_averaged):
                if not ema_params[0].is_floating_point():  # e.g. BatchNorm's step counters
                    for e, p in zip(ema_params, params):
                        e.copy_(p)
                    return
                torch._foreach_lerp_(ema_params, params, 1.0 - ema_decay_at(ema_count["n"], decay))

            ema = AveragedModel(model, multi_avg_fn=ema_update, use_buffers=True)
            if ckpt is not None and isinstance(ckpt.get("ema"), dict):
                ema.module.load_state_dict(ckpt["ema"])
                ema_count["n"] = int(ckpt.get("ema_n", 1))
                ema.n_averaged.fill_(max(1, ema_count["n"]))
        eval_model = ema.module if ema is not None else model
        train_model = model
        if dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            train_model = DDP(model, device_ids=[device.index] if cuda else None)
        eager_model = train_model
        compile_pending = False
        if cfg.compile and cuda:
            try:
                train_model = torch.compile(train_model)
                compile_pending = True  # compilation happens (and may fail) at the first forward
            except Exception as e:  # pragma: no cover - depends on the platform
                self._emit(ev.Warning(message=f"torch.compile unavailable ({_first_line(e)}); training without it"))

        def forward(x: torch.Tensor) -> torch.Tensor:
            nonlocal train_model, compile_pending
            if not compile_pending:
                return train_model(x)
            try:
                out = train_model(x)
            except torch.cuda.OutOfMemoryError:
                raise
            except Exception as e:  # pragma: no cover - needs a GPU without a working compiler
                self._emit(ev.Warning(message=f"torch.compile failed ({_first_line(e)}); training without it"))
                train_model = eager_model
                out = train_model(x)
            compile_pending = False
            return out

        # ---- the run directory
        ckpt_file = Path(ckpt["path"]).resolve() if ckpt is not None else None
        in_run = (ckpt_file is not None and ckpt_file.parent.name == "checkpoints"
                  and (ckpt_file.parent.parent / "config.json").is_file())
        if not dist.is_main:
            run_dir = None
        elif in_run and _is_latest(ckpt_file, int(ckpt.get("global_step", 0))):
            run_dir = ckpt_file.parent.parent  # continue in the run's own folder
        elif in_run and self._fixed_run_dir is None:
            # an older checkpoint (say best.pt) of a run that went further: continuing in place
            # would overwrite the run's later checkpoints, so the continuation is a new run
            run_dir = new_run_dir(cfg.runs_dir or ckpt_file.parent.parent.parent, cfg.preset)
            self._emit(ev.Warning(message=f"{ckpt_file.name} is older than the run's last.pt; continuing in a new run "
                                          f"folder {run_dir} so the original run stays as it is"))
        elif ckpt_file is not None and self._fixed_run_dir is None:
            run_dir = new_run_dir(cfg.runs_dir, cfg.preset)
            self._emit(ev.Warning(message=f"{ckpt_file} is not inside a run folder; continuing in a new run folder {run_dir}"))
        elif self._fixed_run_dir is not None:
            run_dir = self._fixed_run_dir
            (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        else:
            run_dir = new_run_dir(cfg.runs_dir, cfg.preset)
        self.run_dir = run_dir
        if run_dir is not None:
            self._lock = RunLock(run_dir)
            self._lock.acquire()  # refuses a run folder another live process is writing
            for note in self._lock.notes:
                self._emit(ev.Warning(message=note))
            ckpt_dir = run_dir / "checkpoints"
            ckpt_dir.mkdir(exist_ok=True)
            run_id = run_dir.name
        else:
            ckpt_dir, run_id = None, ""
        info = {
            "run_id": run_id,
            "created": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "config": cfg.to_dict(),
            "data": {
                "source": bundle.source, "kind": bundle.kind, "classes": classes,
                "train_images": n_train, "val_images": len(val),
                "test_images": len(bundle.test) if bundle.test is not None else 0,
                "notes": bundle.notes,
            },
            "model": {**arch_info(model), "params": params},
            "device": str(device),
            "world_size": dist.world,
            "device_name": torch.cuda.get_device_name(device) if cuda else platform.processor() or platform.machine(),
            "versions": _versions(),
        }
        if ckpt is not None and run_dir is not None:
            prev = {}
            try:
                prev = json.loads((run_dir / "config.json").read_text())
            except (OSError, ValueError):
                pass
            info["created"] = prev.get("created", info["created"])
            info["resumes"] = prev.get("resumes", []) + [{
                "from": ckpt["path"], "at": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                "epochs": cfg.epochs, "device": str(device),
            }]
        if run_dir is not None:
            atomic_write_json(run_dir / "config.json", info)
            self._metrics_fh = _open_metrics(run_dir / "metrics.jsonl")

        self._emit(ev.RunStarted(
            config=cfg.to_dict(), run_dir=str(run_dir or ""), device=str(device) + (f" x{dist.world}" if dist.enabled else ""), params=params, run_id=run_id,
            train_size=n_train, val_size=len(val), steps_per_epoch=steps_per_epoch, start_epoch=start_epoch,
            resumed_from=str(ckpt["path"]) if ckpt is not None else None, classes=tuple(classes),
        ))
        self._set_state("running", "resumed" if ckpt is not None else "started")

        # ---- device-resident data
        train_x = train.x.to(device)
        train_y = train.y.to(device)
        aug = Augmenter(cfg.crop_padding, device, use_gray=cfg.grayscale_p > 0, use_autocontrast=cfg.autocontrast_p > 0)
        criterion_ls = cfg.label_smoothing

        def save(kind: str, epochs_done: int, step_in_epoch: int, val_acc: Optional[float], extra: dict) -> Optional[Path]:
            if ckpt_dir is None:
                return None  # not rank 0
            state = {
                "model": model.state_dict(),
                **({"ema": ema.module.state_dict(), "ema_n": ema_count["n"]} if ema is not None else {}),
                "optimizer": opt.state_dict(),
                "scheduler": {"global_step": global_step, "total_steps": total_steps},
                "epoch": epochs_done,
                "step_in_epoch": step_in_epoch,
                "global_step": global_step,
                "config": cfg.to_dict(),
                "arch": {**arch_info(model)},
                "classes": classes,
                "data_source": bundle.source,
                "mixup_override": self._mixup_override,
                "metrics": {"best_val_acc": best_acc, "best_epoch": best_epoch, "history": history, **extra},
                "rng": {"torch": torch.get_rng_state()},
                "run_id": run_id,
                "world_size": dist.world,
            }
            summary = {
                "run_id": run_id, "kind": kind, "epoch": epochs_done, "step_in_epoch": step_in_epoch,
                "global_step": global_step, "val_acc": val_acc, "preset": cfg.preset, "data": bundle.source,
                "width": cfg.width, "params": params,
                "saved": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                **{k: v for k, v in extra.items() if isinstance(v, (int, float, str, type(None)))},
            }
            names = {"last": "last.pt", "stop": "last.pt"}
            path = ckpt_dir / names.get(kind, f"{kind}.pt")
            if kind == "manual":
                path = ckpt_dir / f"manual-e{epochs_done + (1 if step_in_epoch else 0):03d}-s{global_step:07d}.pt"
            try:
                save_checkpoint(path, state, summary)
            except OSError as e:
                self.last_save_error = f"could not save {path.name} ({e.strerror or e}); the previous checkpoint is intact"
                self._emit(ev.Warning(message=self.last_save_error))
                return None
            self.last_save_error = None
            self._emit(ev.CheckpointSaved(path=str(path), epoch=epochs_done, val_acc=val_acc, kind=kind,
                                          step_in_epoch=step_in_epoch, global_step=global_step))
            return path

        def copy_checkpoint(src: Path, name: str, kind: str, epochs_done: int, val_acc: Optional[float]) -> Optional[Path]:
            dst = ckpt_dir / name
            tmp = ckpt_dir / f".{name}.tmp-{os.getpid()}"
            try:
                try:
                    os.link(src, tmp)
                except OSError:
                    shutil.copyfile(src, tmp)
                os.replace(tmp, dst)
                js = json.loads(src.with_suffix(".json").read_text())
                js["kind"] = kind
                atomic_write_json(dst.with_suffix(".json"), js)
            except OSError as e:
                self._emit(ev.Warning(message=f"could not save {name} ({e.strerror or e})"))
                return None
            self._emit(ev.CheckpointSaved(path=str(dst), epoch=epochs_done, val_acc=val_acc, kind=kind,
                                          global_step=global_step))
            return dst

        # ---- the loop
        model.train()
        log_every = cfg.log_every
        epoch = start_epoch
        stopped_at: Optional[tuple[int, int]] = None
        val_shard = val.select(np.arange(dist.rank, len(val), dist.world)) if dist.enabled else val
        for epoch in range(start_epoch + 1, cfg.epochs + 1):
            plan = make_epoch_plan(n_train, batch, cfg.seed, epoch, cfg, device)
            steps = steps_per_epoch
            sched_mixup = bool(cfg.mixup and plan.mixup_draw and epoch <= cfg.epochs - cfg.mixup_off_epochs)
            mixup = sched_mixup if self._mixup_override is None else self._mixup_override
            source = "schedule" if self._mixup_override is None else "user"
            self._emit(ev.EpochStarted(epoch=epoch, epochs=cfg.epochs, steps=steps, mixup=mixup, mixup_source=source))
            t_epoch = time.perf_counter()
            paused_time = 0.0
            # Running sums on the device; read (and reduced across ranks) every log_every steps.
            loss_sum = torch.zeros((), device=device)
            correct = torch.zeros((), device=device)
            seen = 0
            g_loss = g_correct = g_seen = 0.0  # the last values read (global under torchrun)
            win_t, win_seen = time.perf_counter(), 0.0
            step = first_step if epoch == start_epoch + 1 else 0
            first_step = 0
            while step < steps:
                # ---- commands, between steps
                if not self.commands.empty() or self._paused:
                    t0 = time.perf_counter()
                    new_mix = self._apply_commands(lambda: save("manual", epoch - 1, step, None, {}), epoch)
                    if new_mix == "schedule":
                        mixup = sched_mixup
                        self._emit(ev.MixupChanged(epoch=epoch, on=mixup, source="schedule"))
                    elif new_mix is not None:
                        mixup = new_mix
                    waited = time.perf_counter() - t0
                    paused_time += waited
                    win_t += waited
                    if self._stop and not dist.enabled:  # under torchrun a stop waits for the next sync
                        stopped_at = (epoch, step)
                        break
                # ---- one step on this rank's share of the global batch
                lo, hi = step * batch, min(step * batch + batch, n_train)
                if dist.enabled:
                    lo, hi = dd.shard(lo, hi, dist.rank, dist.world)
                idx = plan.order[lo:hi]
                bsz = hi - lo
                xb = aug(train_x[idx], plan.offsets[lo:hi], plan.flips[lo:hi], plan.gray[lo:hi], plan.autocontrast[lo:hi])
                yb = train_y[idx]
                if cuda and cfg.channels_last:
                    xb = xb.contiguous(memory_format=torch.channels_last)
                lr = lr_at(cfg, global_step, total_steps, steps_per_epoch)
                for g in opt.param_groups:
                    g["lr"] = lr
                with autocast_for(device, cfg.amp):
                    if mixup:
                        lam = float(plan.lam[step])
                        perm = mixup_permutation(plan, step, bsz, device, salt=dist.rank)
                        xb = lam * xb + (1.0 - lam) * xb[perm]
                        out = forward(xb)
                        yb2 = yb[perm]
                        loss = lam * F.cross_entropy(out, yb, label_smoothing=criterion_ls) + (1.0 - lam) * F.cross_entropy(
                            out, yb2, label_smoothing=criterion_ls)
                    else:
                        out = forward(xb)
                        loss = F.cross_entropy(out, yb, label_smoothing=criterion_ls)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip_value is not None:
                    torch.nn.utils.clip_grad_value_(model.parameters(), cfg.grad_clip_value)
                opt.step()
                if ema is not None:
                    ema.update_parameters(model)  # the first call copies the weights
                    ema_count["n"] += 1
                with torch.no_grad():
                    pred = out.argmax(1)
                    if mixup:
                        correct += lam * (pred == yb).sum() + (1.0 - lam) * (pred == yb2).sum()
                    else:
                        correct += (pred == yb).sum()
                    loss_sum += loss.detach().float() * bsz
                seen += bsz
                global_step += 1
                step += 1
                if step % log_every == 0 or step == steps:
                    # The only host<->device sync of the loop, and the only collective besides DDP's.
                    flags = torch.tensor([float(seen), 1.0 if self._stop else 0.0], device=device)
                    stats = dist.all_sum(torch.cat([torch.stack([loss_sum.float(), correct.float()]), flags]))
                    g_loss, g_correct, g_seen, g_stop = stats.tolist()
                    mean_loss = g_loss / max(1.0, g_seen)
                    if not math.isfinite(mean_loss):
                        return self._fail(
                            f"the loss became {'NaN' if math.isnan(mean_loss) else 'infinite'} at epoch {epoch} step {step} "
                            f"(learning rate {lr:.3g}); nothing was saved after it: lower --lr and resume from the last checkpoint"
                        )
                    now = time.perf_counter()
                    ips = (g_seen - win_seen) / max(now - win_t, 1e-9)
                    win_t, win_seen = now, g_seen
                    self._emit(ev.StepDone(
                        epoch=epoch, step=global_step, loss=mean_loss, lr=lr, images_per_s=ips,
                        step_in_epoch=step, steps_per_epoch=steps, train_acc=g_correct / max(1.0, g_seen),
                    ))
                    if dist.enabled and g_stop > 0:
                        if not self._stop:
                            self._stop, self._stop_save = True, True
                            self._set_state("stopping", "another process asked to stop")
                        if step < steps:
                            stopped_at = (epoch, step)
                            break
            if stopped_at is not None:
                break
            # ---- end of epoch: validate, record, checkpoint
            dist.average_buffers(model)  # identical models on every rank before validating and saving
            if ema is not None:
                dist.average_buffers(ema.module)
            train_loss = g_loss / max(1.0, g_seen)
            train_acc = g_correct / max(1.0, g_seen)
            val_loss = val_acc = None
            if len(val):
                r = evaluate(eval_model, val_shard.x, val_shard.y, len(classes), device, amp=cfg.amp, tta_flip=cfg.tta_flip)
                n_v = float(len(val_shard))
                v = torch.tensor([r.loss * n_v if n_v else 0.0, r.accuracy * n_v if n_v else 0.0, n_v],
                                 dtype=torch.float64 if device.type != "mps" else torch.float32, device=device)
                vl, vc, vn = dist.all_sum(v).tolist()
                val_loss, val_acc = vl / vn, vc / vn
            score = val_acc if val_acc is not None else train_acc
            improved = best_acc is None or score > best_acc
            prev_best = (best_acc, best_epoch)
            if improved:  # tentatively: undone below if best.pt cannot be written
                best_acc, best_epoch = score, epoch
            seconds = time.perf_counter() - t_epoch - paused_time
            record = {"epoch": epoch, "train_loss": train_loss, "train_acc": train_acc, "val_loss": val_loss,
                      "val_acc": val_acc, "lr": lr_at(cfg, max(global_step - 1, 0), total_steps, steps_per_epoch),
                      "mixup": mixup, "seconds": seconds}
            history.append(record)
            extra = {"val_acc": val_acc, "val_loss": val_loss, "train_acc": train_acc, "train_loss": train_loss}
            last = save("last", epoch, 0, val_acc, extra)
            if improved and dist.is_main:
                best = copy_checkpoint(last, "best.pt", "best", epoch, val_acc) if last is not None else None
                if best is not None:
                    self.best_checkpoint = best
                else:
                    best_acc, best_epoch = prev_best  # best.pt still holds the earlier best
            if last is not None and cfg.save_every and epoch % cfg.save_every == 0:
                copy_checkpoint(last, f"epoch-{epoch:03d}.pt", "epoch", epoch, val_acc)
            self._emit(ev.EpochDone(
                epoch=epoch, train_loss=train_loss, train_acc=train_acc, val_loss=val_loss, val_acc=val_acc,
                seconds=seconds, lr=record["lr"], mixup=mixup, best_val_acc=best_acc, best_epoch=best_epoch,
            ))
            if dist.enabled and self._stop:  # a stop seen at the epoch's last sync
                stopped_at = (epoch + 1, 0)
                break
        dist.average_buffers(model)  # (a mid-epoch stop saves the model below)
        if ema is not None:
            dist.average_buffers(ema.module)
        dist.barrier()  # no rank leaves (and tears the group down) while another still saves
        if self.best_checkpoint is None and run_dir is not None and (run_dir / "checkpoints" / "best.pt").exists():
            self.best_checkpoint = run_dir / "checkpoints" / "best.pt"

        if stopped_at is not None:
            ep, st = stopped_at
            if self._stop_save and st > 0:
                save("stop", ep - 1, st, None, {})
            elif self._stop_save and ckpt_dir is not None and not (ckpt_dir / "last.pt").exists():
                save("stop", ep - 1, st, None, {})
            self.exit_state = "stopped"
            self.result_reason = f"stopped by request at epoch {ep} step {st}"
            self._set_state("finished", self.result_reason)
            return "stopped"
        self.exit_state = "completed"
        self.result_reason = f"completed {cfg.epochs} epochs"
        self._set_state("finished", self.result_reason)
        return "completed"

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

    def _apply_commands(self, save_now: Callable[[], Any], epoch: int) -> Optional[bool]:
        """Apply queued commands; blocks while paused. Returns a new mixup value, if set."""
        new_mix: Optional[bool] = None
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
            if isinstance(cmd, ev.Pause) and self._dist.enabled:
                self._emit(ev.Warning(message="pause is not available under torchrun; use stop and --resume"))
            elif isinstance(cmd, ev.Pause):
                if not self._paused:
                    self._paused = True
                    self._set_state("paused", "paused by request")
            elif isinstance(cmd, ev.Resume):
                if self._paused:
                    self._paused = False
                    self._set_state("running", "resumed by request")
            elif isinstance(cmd, ev.Stop):
                if not self._stop:
                    self._stop = True
                    self._stop_save = cmd.save
                    self._paused = False
                    self._set_state("stopping", "stop requested" + (", saving a checkpoint" if cmd.save else ""))
            elif isinstance(cmd, ev.SaveCheckpoint):
                save_now()
            elif isinstance(cmd, ev.SetMixup):
                self._mixup_override = cmd.on
                if cmd.on is not None:
                    new_mix = cmd.on
                    self._emit(ev.MixupChanged(epoch=epoch, on=cmd.on, source="user"))
                else:
                    new_mix = "schedule"  # type: ignore[assignment]  # the caller knows the schedule's value


def ema_decay_at(n: int, decay: float) -> float:
    """The EMA decay after ``n`` updates: ramps up as (1 + n) / (10 + n) to ``decay``, so early
    averages are not dominated by the random initial weights."""
    return min(decay, (1.0 + n) / (10.0 + n))


def _is_latest(ckpt_file: Path, global_step: int) -> bool:
    """Is this checkpoint at least as far as its run's last.pt (by the small JSON beside it)?"""
    last = ckpt_file.parent / "last.pt"
    if ckpt_file.name == "last.pt" or not last.exists():
        return True
    try:
        return global_step >= int(json.loads(last.with_suffix(".json").read_text()).get("global_step", 0))
    except (OSError, ValueError, TypeError):
        return True


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:200] if text else type(e).__name__


def _open_metrics(path: Path):
    """Open metrics.jsonl for appending; a torn last line (a killed writer) is closed off first."""
    fh = open(path, "a+b")
    try:
        fh.seek(0, os.SEEK_END)
        if fh.tell() > 0:
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) != b"\n":
                fh.write(b"\n")
    finally:
        fh.close()
    return open(path, "a", encoding="utf-8")


def _versions() -> dict[str, str]:
    import sys

    out = {"python": sys.version.split()[0], "torch": torch.__version__, "numpy": np.__version__}
    for mod in ("torchvision", "cifar_tui"):
        try:
            if mod == "cifar_tui":
                from importlib.metadata import version

                out[mod] = version("cifar-tui")
            else:
                out[mod] = __import__(mod).__version__
        except Exception:
            pass
    if torch.cuda.is_available():
        out["cuda"] = str(torch.version.cuda)
    return out
