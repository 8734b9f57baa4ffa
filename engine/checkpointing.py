"""The checkpoint policy of a run: when to save, the pending best, the background writer,
and what the writes become (``CheckpointSaved`` events, warnings, a refused save).

Checkpoints are written by a background thread from a copy of the state taken between
two steps (:meth:`Checkpointer.save`); their ``CheckpointSaved`` events come once the
file is on disk (:meth:`Checkpointer.collect`, called by the trainer between steps),
and a stop or the run's end waits for them (:meth:`Checkpointer.settle`). Every write
is atomic (:mod:`engine.checkpoint`): a crash never leaves a half-written checkpoint
under a real name.
"""

from __future__ import annotations

import time
from typing import Callable, Iterable, Optional

import torch

from . import commands
from . import events as ev
from .checkpoint import SKIPPED, PendingWrite, first_line, perform_writes, snapshot
from .files import BackgroundWriter
from .model import arch_info
from .rundir import now_iso
from .setup import Progress, Setup


def state_of(s: Setup, p: Progress, epochs_done: int, step_in_epoch: int, extra: dict) -> dict:
    """Everything a checkpoint holds: the run resumes exactly from it."""
    return {
        "model": s.model.state_dict(),
        **({"ema": s.ema.state_dict(), "ema_n": s.ema.n} if s.ema is not None else {}),
        **({"lookahead": s.lookahead.state_dict()} if s.lookahead is not None else {}),
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
        "lr_scale": p.lr_scale,
        "metrics": {"best_val_acc": p.best_acc, "best_epoch": p.best_epoch, "history": [ev.epoch_record_to_dict(r) for r in p.history], **extra},
        "rng": {"torch": torch.get_rng_state()},
        "run_id": s.run.run_id if s.run else "",
        "world_size": s.dist.world,
    }


class Checkpointer:
    """One run's checkpoints (rank 0 writes; on other ranks it does nothing)."""

    def __init__(self, s: Setup, p: Progress, emit: Callable[[ev.Event], None]):
        self.s, self.p, self.emit = s, p, emit
        self.saver: Optional[BackgroundWriter] = BackgroundWriter() if s.store is not None else None
        self.saved_step: Optional[int] = None  # global step of the last last.pt written or queued
        self.last_save_t = time.monotonic()
        self.pending_best: Optional[PendingWrite] = None  # a new best not written yet
        self.disk_best: tuple[Optional[float], Optional[int]] = (p.best_acc, p.best_epoch)  # in best.pt

    def start_clock(self) -> None:
        self.last_save_t = time.monotonic()

    def _due(self, epoch: int) -> bool:
        """Write last.pt at the end of ``epoch``? At the run's end, on the epochs of
        ``save_every_epochs`` and ``save_every`` (epoch-NNN.pt copies last.pt), and, with
        ``save_every_epochs`` 0, once ``save_seconds`` have passed since the last write."""
        cfg = self.s.cfg
        if epoch >= cfg.epochs or (cfg.save_every and epoch % cfg.save_every == 0):
            return True
        if cfg.save_every_epochs:
            return epoch % cfg.save_every_epochs == 0
        return time.monotonic() - self.last_save_t >= cfg.save_seconds

    def end_of_epoch(self, epoch: int, val_acc: Optional[float], best: Optional[float], extra: dict) -> None:
        """The end of an epoch's checkpoints. ``best``: the new best score, if this epoch is
        the best so far. When last.pt is not due, a new best is kept as a copy in memory and
        written (as best.pt) with the next last.pt, a stop, or a failure."""
        if self.s.store is None:
            return
        cfg = self.s.cfg
        if not self._due(epoch):
            if best is not None:
                self.pending_best = self._write("best", epoch, 0, val_acc, extra, score=best)
            return
        copies: list[tuple[ev.CheckpointKind, Optional[float]]] = [("best", best)] if best is not None else []
        if cfg.save_every and epoch % cfg.save_every == 0:
            copies.append(("epoch", None))
        before = None if best is not None else self.pending_best
        self.pending_best = None
        self.save("last", epoch, 0, val_acc, extra, copies=copies, before=before)

    def _write(self, kind: ev.CheckpointKind, epochs_done: int, step_in_epoch: int, val_acc: Optional[float],
               extra: dict, score: Optional[float] = None) -> PendingWrite:
        """A full checkpoint of the state now, copied so that training can go on."""
        s, p = self.s, self.p
        summary = {
            "run_id": s.run.run_id, "epoch": epochs_done, "step_in_epoch": step_in_epoch,
            "global_step": p.global_step, "val_acc": val_acc, "preset": s.cfg.preset, "data": s.bundle.source,
            "width": s.cfg.width, "params": s.params, "saved": now_iso(),
            **{k: v for k, v in extra.items() if isinstance(v, (int, float, str, type(None)))},
        }
        state, ready = snapshot(state_of(s, p, epochs_done, step_in_epoch, extra))
        return PendingWrite(kind=kind, epoch=epochs_done, step_in_epoch=step_in_epoch, global_step=p.global_step,
                            val_acc=val_acc, score=score, state=state, ready=ready, summary=summary)

    def save(self, kind: ev.CheckpointKind, epochs_done: int, step_in_epoch: int, val_acc: Optional[float],
             extra: dict, copies: Iterable[tuple[ev.CheckpointKind, Optional[float]]] = (),
             before: Optional[PendingWrite] = None) -> bool:
        """Queue a checkpoint: a copy of the state now, written by the writer thread while
        training goes on, then ``copies`` of it (kind, best score); ``before``: a pending
        best.pt to write first. Results come back through :meth:`collect`."""
        if self.s.store is None or self.saver is None:
            return False
        p = self.p
        main = self._write(kind, epochs_done, step_in_epoch, val_acc, extra)
        writes = ([before] if before is not None else []) + [main] + [
            PendingWrite(kind=k, epoch=epochs_done, global_step=p.global_step, val_acc=val_acc, score=sc)
            for k, sc in copies]
        self._submit(writes)
        if kind in ("last", "stop"):
            self.saved_step, self.last_save_t = p.global_step, time.monotonic()
        return True

    def _submit(self, writes: list[PendingWrite]) -> None:
        store = self.s.store
        self.saver.submit(lambda: perform_writes(store, writes), writes)

    def save_now(self, epochs_done: int, step_in_epoch: int) -> None:
        """A SaveCheckpoint command: written before training goes on (it is rare, and the
        user waits for its "saved" line, also while paused)."""
        if self.save("manual", epochs_done, step_in_epoch, None, {}):
            self.collect(wait=True)

    def collect(self, wait: bool = False) -> None:
        """Announce the writes that finished (CheckpointSaved, or a Warning) on this thread;
        ``wait``: all of them, waiting for the writer."""
        if self.saver is None or not (wait or self.saver.ready):
            return
        for writes, _, error in (self.saver.wait() if wait else self.saver.finished()):
            for w in writes:
                if error is not None and w.path is None and w.error is None:
                    w.error = first_line(error)
                self._saved(w)

    def _saved(self, w: PendingWrite) -> None:
        p = self.p
        if w.error is not None:
            name = self.s.run.checkpoint_path(w.kind, epoch=w.epoch, global_step=w.global_step,
                                              step_in_epoch=w.step_in_epoch).name
            if w.kind in ("last", "stop", "manual"):
                p.save_error = f"could not save {name} ({w.error}); the previous checkpoint is intact"
                if w.kind == "manual":
                    self.emit(ev.CommandRefused(message=p.save_error, code="save_failed",
                                                command=commands.spec_for(ev.SaveCheckpoint()).word))
                else:
                    self.emit(ev.Warning(message=p.save_error))
                    self.saved_step = None  # a stop must write it again
            elif w.error != SKIPPED:
                self.emit(ev.Warning(message=f"could not save {name} ({w.error})"))
            if w.kind == "best" and p.best_epoch == w.epoch:
                p.best_acc, p.best_epoch = self.disk_best  # best.pt still holds the earlier best
            return
        if w.kind in ("last", "stop", "manual"):
            p.save_error = None
            p.last_checkpoint = str(w.path)
        elif w.kind == "best":
            p.best_checkpoint = str(w.path)
            self.disk_best = (w.score, w.epoch)
        self.emit(ev.CheckpointSaved(path=str(w.path), epoch=w.epoch, val_acc=w.val_acc, kind=w.kind,
                                     step_in_epoch=w.step_in_epoch, global_step=w.global_step))

    def at_stop(self, save: bool) -> None:
        """A stop's checkpoint (unless ``save`` is False or last.pt already holds this
        step), or at least the pending best; then every write is waited for."""
        self.collect(wait=True)  # (a failed last.pt write is known before the stop decides)
        p = self.p
        if p.stopped_at is not None and self.saver is not None:
            ep, st = p.stopped_at
            before, self.pending_best = self.pending_best, None
            if save and self.saved_step != p.global_step:
                self.save("stop", ep - 1, st, None, {}, before=before)
            elif before is not None:
                self._submit([before])
        self.collect(wait=True)
        run = self.s.run
        if run is not None and p.best_checkpoint is None and run.best_checkpoint.exists():
            p.best_checkpoint = str(run.best_checkpoint)

    def settle(self, outcome: str) -> None:
        """Before the run's last event: a failed run writes its pending best, then every
        queued write is waited for and announced, and the writer stops."""
        saver = self.saver
        if saver is None:
            return
        try:
            if outcome == "failed" and self.pending_best is not None:
                pending, self.pending_best = self.pending_best, None
                self._submit([pending])
            self.collect(wait=True)
            saver.close()
        except Exception:  # noqa: BLE001 - reporting must not stop the run from ending
            pass
        self.saver = None
