"""The training loop.

One :class:`Trainer` runs one run. It reads top to bottom:

1. :meth:`Trainer._run`: the run is built (:class:`engine.setup.Builder`: the settings,
   a checkpoint's when resuming, the data, the model and optimiser, the run folder, the
   compiled step) and announced (``RunStarted``), then its epochs, then :meth:`_finish`;
2. :meth:`Trainer._train_epoch`: the steps of one epoch (:meth:`_step`); between two
   steps it applies the commands it was sent (:mod:`engine.commands`) and reads the
   metrics every few steps (:meth:`_log`);
3. :meth:`Trainer._end_epoch`: validation, the epoch's record, checkpoints;
4. :meth:`Trainer._finish`: the final checkpoint of a stop, and the outcome;

and ``RunFinished`` is always the last event. When and how checkpoints are written is
:class:`engine.checkpointing.Checkpointer`'s business. Everything the trainer does is
an event to its listeners; the run folder's ``metrics.jsonl`` is written by one of
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

import torch
import torch.nn.functional as F

from . import commands, control
from . import distributed as dd
from . import events as ev
from .checkpoint import CheckpointError, first_line
from .checkpointing import Checkpointer
from .compiled import warm_up
from .cpupace import CpuPace
from .config import ConfigError, TrainConfig
from .augment import make_epoch_plan, mixup_permutation
from .data import DataBundle, DataError
from .device import autocast_for, host_to_device
from .ema import ema_decay_at  # noqa: F401  (re-exported)
from .evaluate import validation_sums
from .metrics import MetricsWriter
from .readback import Reading, SumsReader
from .rundir import RunDir, RunDirError
from .schedule import mixup_scheduled
from .setup import (RESUME_MUTABLE, WHITEN_IMAGES, Builder, Progress, Setup,  # noqa: F401  (re-exported)
                    TrainingError, check_resume_overrides, compile_backend, make_optimizer, restore_optimizer,
                    resume_changes)

Listener = Callable[[ev.Event], None]
USER_ERRORS = (ConfigError, DataError, CheckpointError, RunDirError)


@dataclass
class _Epoch:
    """One epoch's running sums (on the device) and the last values read from them."""

    number: int
    steps: int
    mixup: bool
    loss_sum: torch.Tensor
    correct: torch.Tensor
    major: torch.Tensor  # right on the label of each image's larger share (mixup: lam >= 0.5 its own)
    seen: int = 0
    # the last values read (under torchrun summed over the ranks); at the epoch's end exact
    g_loss: float = 0.0
    g_correct: float = 0.0
    g_major: float = 0.0
    g_seen: float = 0.0
    win_t: float = field(default_factory=time.perf_counter)  # training clock of the last reading reported
    win_seen: float = 0.0
    last_log: float = field(default_factory=time.monotonic)
    started: float = field(default_factory=time.perf_counter)
    paused: float = 0.0
    size: int = 32  # input pixels (progressive resizing)

    def clock(self) -> float:
        """Seconds of training: perf_counter less the time spent paused."""
        return time.perf_counter() - self.paused


@dataclass(frozen=True)
class _Mark:
    """Where a log was taken, noted with its sums (they may be reported one log later)."""

    step: int  # in the epoch
    global_step: int
    seen: int  # this rank's images so far this epoch
    clock: float  # the epoch's training clock


def _nonfinite_message(p: Progress, loss: float, epoch: int, step: int, lr: float, peak: float) -> str:
    what = "NaN" if math.isnan(loss) else "infinite"
    last = p.last_checkpoint or p.best_checkpoint
    if last:
        advice = (f"nothing was saved after it; resume from {last} with a lower --lr "
                  f"(cifar-tui train --resume {last} --lr {peak / 10:.3g})")
    else:
        advice = "nothing was saved yet; start a new run with a lower --lr"
    return f"the loss became {what} at epoch {epoch} step {step} (learning rate {lr:.3g}); {advice}"


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
        self.listeners: list[Listener] = list(listeners)
        self.commands: "queue.Queue[ev.Command]" = queue.Queue()
        self.state: str = "idle"
        self.result: Optional[ev.RunFinished] = None  # the final event, once the run has ended
        self._thread: Optional[threading.Thread] = None
        self._writer: Optional[MetricsWriter] = None
        self._early: list[ev.Event] = []  # events before the metrics file exists
        self._channel: Optional[control.ControlChannel] = None  # commands from other processes (rank 0)
        self._pace: Optional[CpuPace] = None  # a GPU recipe on a CPU: times its first steps, warns once
        self._reason = ""
        self._b = Builder(config, resume=resume, overrides=dict(resume_overrides or {}), data=data, run_dir=run_dir,
                          emit=self._emit)
        self._progress = self._b.progress
        self._steer = commands.Steering(self._progress, self._emit, self._set_state)
        self._ckpt: Optional[Checkpointer] = None
        self._reader: Optional[SumsReader] = None  # the metric reads (one log late on CUDA)

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

    @property
    def config(self) -> Optional[TrainConfig]:
        """The run's settings (a resumed run's, once it has started)."""
        return self._b.config

    @property
    def run_dir(self) -> Optional[Path]:
        return self._b.run_dir

    @property
    def model(self) -> Optional[torch.nn.Module]:
        """The trained network (unwrapped), afterwards."""
        return self._b.model

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
        if not self._b.dist.is_main and not isinstance(event, (ev.Failed, ev.Warning)):
            return  # only rank 0 reports; the others speak up only about problems
        if self._writer is not None:
            self._writer(event)
        elif self._b.dist.is_main:
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
        p = self._progress
        self._emit(ev.StateChanged(state=state, reason=reason, epoch=p.epoch, step=p.global_step))

    def _fail(self, message: str) -> str:
        dist = self._b.dist
        if dist.enabled and not dist.is_main:
            message = f"rank {dist.rank}: {message}"
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
        if self._ckpt is not None:
            self._ckpt.settle(outcome)
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
            if self._b.lock is not None:
                self._b.lock.release()
                self._b.lock = None
            self._b.dist.close()

    # ------------------------------------------------------------------------ run
    def _run(self) -> str:
        s = self._b.build(self.commands)
        if s is None:
            self._reason = "stopped before training started"
            self._set_state("finished", self._reason)
            return "stopped"
        p, st = self._progress, self._steer
        self._ckpt = Checkpointer(s, p, self._emit)
        self._reader = SumsReader(s.device)
        st.distributed, st.base_lr = s.dist.enabled, s.cfg.lr
        st.lr_now = lambda: s.lr(p.global_step, p.lr_scale)
        self._announce(s)
        s.model.train()
        warm_up(s, p.epochs_done + 1, self._emit)
        self._pace = CpuPace.for_run(s.cfg.preset, s.cfg.width, s.device.type, s.steps_per_epoch,
                                     s.cfg.epochs - p.epochs_done, self._warn) if s.dist.rank == 0 else None
        self._ckpt.start_clock()
        for epoch in range(p.epochs_done + 1, s.cfg.epochs + 1):
            e = self._train_epoch(s, epoch)
            if e is None:  # stopped mid-epoch
                break
            self._end_epoch(s, e)
            if s.dist.enabled and st.stopping:  # a stop seen at the epoch's last sync
                p.stopped_at = (epoch + 1, 0)
                break
        return self._finish(s)

    def _announce(self, s: Setup) -> None:
        """Write config.json, open metrics.jsonl (with what was said so far) and the control
        channel, say RunStarted."""
        run, p = s.run, self._progress
        if run is not None:
            carried = {"lr_scale": p.lr_scale} if s.resumed_from and p.lr_scale != 1.0 else None
            note = run.write_config(s.info(), resumed_from=s.resumed_from, resume_changes=self._b.resume_changes,
                                    carried=carried)
            self._writer = run.metrics_writer()
            for event in self._early:
                self._writer(event)
            self._early.clear()
            if note:
                self._warn(note)
            self._channel = control.open_for_trainer(run, self.send, self._warn)
        self._emit(s.started(p.epochs_done))
        self._set_state("running", "resumed" if s.resumed_from else "started")

    # ---------------------------------------------------------------------- epoch
    def _train_epoch(self, s: Setup, epoch: int) -> Optional[_Epoch]:
        """The steps of one epoch. Returns the epoch's record, or None if a stop ended it."""
        cfg, p, st = s.cfg, self._progress, self._steer
        plan = make_epoch_plan(s.n_train, s.batch, cfg.seed, epoch, cfg, s.device)
        p.epoch = epoch
        mixup = st.begin_epoch(mixup_scheduled(cfg, epoch, plan.mixup_draw))
        self._emit(ev.EpochStarted(epoch=epoch, epochs=cfg.epochs, steps=s.steps_per_epoch, mixup=mixup,
                                   mixup_source="schedule" if p.mixup_override is None else "user"))
        e = _Epoch(epoch, s.steps_per_epoch, mixup, torch.zeros((), device=s.device),
                   torch.zeros((), device=s.device), torch.zeros((), device=s.device), size=s.size_at(epoch))
        step, p.first_step = p.first_step, 0
        while step < e.steps:
            self._ckpt.collect()
            if not self.commands.empty() or st.paused:
                if not s.dist.enabled and (pending := self._reader.take()) is not None:
                    self._report(s, e, pending)  # a command is rare: first show a reading still pending
                self._between_steps(e, step)
                if st.stopping and not s.dist.enabled:  # under torchrun a stop waits for the next sync
                    p.stopped_at = (epoch, step)
                    return None
            self._step(s, e, plan, step)
            step += 1
            if self._pace is not None and self._pace.stepped():
                self._pace = None
            if s.log_due(step, e.steps, e.last_log) and self._log(s, e, step) and step < e.steps:
                p.stopped_at = (epoch, step)  # torchrun: every rank agreed to stop
                return None
        return e

    def _between_steps(self, e: _Epoch, step: int) -> None:
        """Apply queued commands (blocks while paused); paused time is not training time."""
        t0 = time.perf_counter()
        self._steer.save_now = lambda: self._ckpt.save_now(e.number - 1, step)
        self._steer.drain(self.commands)
        e.mixup = self._steer.mixup
        waited = time.perf_counter() - t0
        e.paused += waited

    def _step(self, s: Setup, e: _Epoch, plan, step: int) -> None:
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
        lr = s.lr(p.global_step, p.lr_scale)
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
        if s.lookahead is not None:
            s.lookahead.after_step(p.global_step + 1, s.total_steps)
        with torch.no_grad():
            pred = out.argmax(1)
            if e.mixup:
                e.correct += lam * (pred == yb).sum() + (1.0 - lam) * (pred == yb2).sum()
                e.major += (pred == (yb if lam >= 0.5 else yb2)).sum()
            else:
                right = (pred == yb).sum()
                e.correct += right
                e.major += right
            e.loss_sum += loss.detach().float() * (hi - lo)
        e.seen += hi - lo
        p.global_step += 1

    def _log(self, s: Setup, e: _Epoch, step: int) -> bool:
        """Hand the running sums to the reader (under torchrun summed over the ranks first, the
        only collective besides DDP's) and announce the readings due: on CUDA the previous
        log's (read without waiting for the device), at the epoch's end also this one's, exact.
        Returns True if every rank agreed to stop. Raises TrainingError on a non-finite loss."""
        sums = torch.stack([e.loss_sum.float(), e.correct.float(), e.major.float()])
        if s.dist.enabled:  # the images seen and the stop flag travel with the sums (one collective)
            flags = host_to_device([float(e.seen), 1.0 if self._steer.stopping else 0.0], torch.float32, s.device)
            sums = s.dist.all_sum(torch.cat([sums, flags]))
        mark = _Mark(step, self._progress.global_step, e.seen, e.clock())
        e.last_log = time.monotonic()
        if step == e.steps:
            readings = self._reader.now(sums, mark)
        else:
            due = self._reader.post(sums, mark)
            readings = [due] if due is not None else []
        stop = False
        for r in readings:  # every one is reported (a stop seen in either counts)
            stop = self._report(s, e, r) or stop
        return stop

    def _report(self, s: Setup, e: _Epoch, r: Reading) -> bool:
        """Announce StepDone for one reading. Returns True if (under torchrun) a rank asked to stop."""
        p, st, mark = self._progress, self._steer, r.note
        if s.dist.enabled:
            e.g_loss, e.g_correct, e.g_major, e.g_seen, g_stop = r.values
        else:
            (e.g_loss, e.g_correct, e.g_major), e.g_seen, g_stop = r.values, float(mark.seen), 0.0
        mean_loss = e.g_loss / max(1.0, e.g_seen)
        lr = s.lr(mark.global_step - 1, p.lr_scale)
        if not math.isfinite(mean_loss):
            self._ckpt.settle("failed")  # what is being written, and a best not written yet, first
            raise TrainingError(_nonfinite_message(p, mean_loss, e.number, mark.step, lr, s.cfg.lr * p.lr_scale))
        ips = (e.g_seen - e.win_seen) / max(mark.clock - e.win_t, 1e-9)
        e.win_t, e.win_seen = mark.clock, e.g_seen
        self._emit(ev.StepDone(
            epoch=e.number, step=mark.global_step, loss=mean_loss, lr=lr, images_per_s=ips, step_in_epoch=mark.step,
            steps_per_epoch=e.steps, train_acc=e.g_correct / max(1.0, e.g_seen),
            train_acc_major=e.g_major / max(1.0, e.g_seen),
        ))
        if s.dist.enabled and g_stop > 0:
            if not st.stopping:
                st.stopping, st.stop_save = True, True
                self._set_state("stopping", "another process asked to stop")
            return True
        return False

    # ---------------------------------------------------------------- end of epoch
    def _end_epoch(self, s: Setup, e: _Epoch) -> None:
        """Validate (when due), record the epoch, queue last.pt (and best.pt, epoch-NNN.pt)."""
        p = self._progress
        s.dist.average_buffers(s.model)  # identical models on every rank before validating and saving
        if s.ema is not None:
            s.dist.average_buffers(s.ema.module)
        train_loss, train_acc = e.g_loss / max(1.0, e.g_seen), e.g_correct / max(1.0, e.g_seen)
        t_val = time.perf_counter()
        val_loss, val_acc = self._validate(s) if s.validation_due(e.number) else (None, None)
        val_seconds = time.perf_counter() - t_val
        # the best is chosen by validation accuracy, by training accuracy when nothing is held
        # out, and not at all on an epoch whose validation was skipped (val_every)
        score = val_acc if val_acc is not None else (train_acc if not s.n_val else None)
        improved = score is not None and (p.best_acc is None or score > p.best_acc)
        if improved:  # tentatively: undone if best.pt cannot be written
            p.best_acc, p.best_epoch = score, e.number
        seconds = time.perf_counter() - e.started - e.paused
        lr = s.lr(max(p.global_step - 1, 0), p.lr_scale)
        record = ev.EpochDone(
            epoch=e.number, train_loss=train_loss, train_acc=train_acc, val_loss=val_loss, val_acc=val_acc,
            seconds=seconds, lr=lr, mixup=e.mixup, best_val_acc=p.best_acc, best_epoch=p.best_epoch,
            val_seconds=val_seconds, train_acc_major=e.g_major / max(1.0, e.g_seen),
        )
        p.history.append(record)
        p.epochs_done = e.number
        extra = {"val_acc": val_acc, "val_loss": val_loss, "train_acc": train_acc, "train_loss": train_loss}
        self._ckpt.end_of_epoch(e.number, val_acc, score if improved else None, extra)
        self._emit(record)

    def _validate(self, s: Setup) -> tuple[Optional[float], Optional[float]]:
        """Loss and accuracy on the validation images (on the device), read back once."""
        sums = validation_sums(s.eval_model, s.val.x, s.val.y, s.device, amp=s.cfg.amp,
                               channels_last=s.cfg.channels_last, tta_flip=s.cfg.tta_flip,
                               tta_translate=s.cfg.tta_translate)
        loss_sum, correct = s.dist.all_sum(sums).tolist()
        return loss_sum / s.n_val, correct / s.n_val

    # --------------------------------------------------------------------- finish
    def _finish(self, s: Setup) -> str:
        """After the last epoch or a stop: the stop's checkpoint, then the outcome."""
        p = self._progress
        s.dist.average_buffers(s.model)  # (a mid-epoch stop saves the model below)
        if s.ema is not None:
            s.dist.average_buffers(s.ema.module)
        s.dist.barrier()  # no rank leaves (and tears the group down) while another still saves
        self._ckpt.at_stop(save=self._steer.stop_save)
        if p.stopped_at is None:
            self._reason = f"completed {s.cfg.epochs} epoch{'s' if s.cfg.epochs != 1 else ''}"
            self._set_state("finished", self._reason)
            return "completed"
        ep, step = p.stopped_at
        self._reason = f"{self._steer.stop_reason} at epoch {ep} step {step}"
        self._set_state("finished", self._reason)
        return self._steer.stop_outcome
