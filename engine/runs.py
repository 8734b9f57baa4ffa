"""The run catalogue: every run folder with its status, checkpoints and stored evaluations.

Reads only small files (config.json, the tail of metrics.jsonl, the JSON beside
each checkpoint, the lock), never a checkpoint, and imports no torch: listing
runs is instant, in the CLI and in the app.

A run's status:

* ``running``: a live process holds its lock;
* ``completed`` / ``stopped`` / ``failed``: its last event is ``RunFinished`` with
  that outcome;
* ``interrupted``: no live process and no final event (killed, power loss, a
  closed terminal). Resuming it continues from its last checkpoint;
* ``damaged``: a file of the folder cannot be read safely (a FIFO, a device, a link, a
  file too large or nested too deep, not JSON): the reason names it. Every read here goes
  through :mod:`engine.safeio` (regular files only, never blocking, bounded), so one
  damaged run never stops the others from listing.

A stored evaluation is tied to the exact checkpoint file it was computed on (see
:func:`checkpoint_fingerprint`); when the file has changed since, the result is
reported as stale and not as that checkpoint's accuracy.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from . import events as ev
from .events import RUN_STATUSES, RunStatus  # noqa: F401  (re-exported: the one vocabulary is in events)
from .files import atomic_write_json
from .safeio import UnreadableFile, read_json
from .rundir import RunDir, RunDirError, RunLock, default_runs_dir, now_iso, read_lock

# a run whose lock is held on another host: trusted as running while its metrics move
REMOTE_QUIET_SECONDS = 600
# the most classes a stored evaluation may have to be shown (a confusion matrix of 1000 x 1000
# cells is a hand-made file, and would take the browser a minute to draw): more is redone
MAX_SHOWN_CLASSES = 100


def _num(v: Any) -> Optional[float]:
    """A finite number from a JSON value, else None (files may hold anything)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def _int(v: Any) -> Optional[int]:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _str(v: Any) -> Optional[str]:
    return v if isinstance(v, str) else None


def _dict(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


# --------------------------------------------------------------- evaluations


def checkpoint_fingerprint(checkpoint: Path, save_id: Optional[str] = None,
                           global_step: Optional[int] = None) -> dict[str, Any]:
    """What identifies one version of a checkpoint file: its size and modification time
    (and the ``save_id`` written into it at save time, which survives a copy)."""
    st = Path(checkpoint).stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "save_id": save_id, "global_step": global_step}


def _fresh(stored: dict[str, Any], checkpoint: Path, summary: dict[str, Any], evaluated: Optional[str]) -> bool:
    """Was ``stored`` (a fingerprint) computed on the file that is at ``checkpoint`` now?"""
    try:
        st = checkpoint.stat()
    except OSError:
        return False
    if stored:
        if stored.get("size") == st.st_size and stored.get("mtime_ns") == st.st_mtime_ns:
            return True
        sid = stored.get("save_id")
        return bool(sid) and sid == summary.get("save_id") and stored.get("size") == st.st_size
    # an evaluation stored before fingerprints existed: fresh only if computed after the file was written
    if not evaluated:
        return False
    try:
        import datetime as _dt

        return _dt.datetime.fromisoformat(evaluated).timestamp() + 1 >= st.st_mtime
    except ValueError:
        return False


@dataclass(frozen=True)
class StoredEval:
    """One stored evaluation of a checkpoint on one data source."""

    source: str
    accuracy: Optional[float]
    loss: Optional[float]
    images: Optional[int]
    evaluated: Optional[str]
    epoch: Optional[int]
    stale: bool  # the checkpoint file changed since: not this file's result
    result: dict[str, Any] = field(repr=False, default_factory=dict)
    has_predictions: bool = False

    @property
    def split(self) -> str:
        """"val" for a result on the run's validation images, else "test" (a test split, or
        all the images of a folder of class folders)."""
        return eval_split(self.source)


def eval_split(source: str) -> str:
    """Which split a stored evaluation's source ("synthetic:val", "/data/x.zip:test") is of."""
    return "val" if source.endswith(":val") else "test"


def _read_dict(path: Path, damage: Optional[list[str]] = None) -> dict[str, Any]:
    """A JSON object of a run folder (``{}`` when missing or not an object); a file that
    cannot be read safely is ``{}`` too, with why appended to ``damage``."""
    try:
        data = read_json(path)
    except FileNotFoundError:
        return {}
    except UnreadableFile as e:
        if damage is not None:
            damage.append(_named(e, path))
        return {}
    return data if isinstance(data, dict) else {}


def _named(e: Exception, path: Path) -> str:
    """An :class:`UnreadableFile` message with the file named within its run folder."""
    short = f"{path.parent.name}/{path.name}" if path.parent.name == "checkpoints" else path.name
    return str(e).replace(str(path), short)


def read_evaluations(checkpoint: str | Path, damage: Optional[list[str]] = None) -> list[StoredEval]:
    """The stored evaluations of a checkpoint, oldest first, each marked fresh or stale
    (``damage``: where to say that a file could not be read)."""
    checkpoint = Path(checkpoint)
    data = _read_dict(RunDir.eval_path(checkpoint), damage)
    summary = _read_dict(RunDir.summary_path(checkpoint), damage)
    out = []
    for source, res in data.items():
        if not isinstance(res, dict):
            continue
        evaluated = _str(res.get("evaluated"))
        fresh = _fresh(_dict(res.get("fingerprint")), checkpoint, summary, evaluated)
        out.append(StoredEval(
            source=str(source), accuracy=_num(res.get("accuracy")), loss=_num(res.get("loss")),
            images=_int(res.get("images")), evaluated=evaluated, epoch=_int(res.get("epoch")),
            stale=not fresh, result=res, has_predictions=isinstance(res.get("predictions"), list),
        ))
    out.sort(key=lambda e: e.evaluated or "")
    return out


def complete_result(res: Any) -> bool:
    """Does a stored evaluation hold all that a full view of it needs, with the right types
    (accuracy, loss, images, source, an n x n confusion matrix, n per-class accuracies,
    n class names)? A damaged or hand-edited ``NAME.eval.json`` is not shown, it is redone."""
    if not isinstance(res, dict):
        return False
    if _num(res.get("accuracy")) is None or _num(res.get("loss")) is None or _int(res.get("images")) is None:
        return False
    cm, per, classes = res.get("confusion_matrix"), res.get("per_class_accuracy"), res.get("classes")
    if not isinstance(cm, list) or not 1 <= len(cm) <= MAX_SHOWN_CLASSES or not isinstance(res.get("data_source"), str):
        return False
    n = len(cm)
    if not all(isinstance(row, list) and len(row) == n and all(_int(v) is not None for v in row) for row in cm):
        return False
    if not isinstance(per, list) or len(per) != n or not all(v is None or isinstance(v, float) or _int(v) is not None
                                                            for v in per):
        return False
    notes = res.get("notes", [])
    if classes is not None and not (isinstance(classes, list) and len(classes) == n and all(isinstance(c, str) for c in classes)):
        return False
    return isinstance(notes, list) and all(isinstance(x, str) for x in notes)


def latest_evaluation(checkpoint: str | Path, *, include_stale: bool = False,
                      split: Optional[str] = None) -> Optional[StoredEval]:
    """The newest stored evaluation of a checkpoint (``split``: of that split only)."""
    evals = [e for e in read_evaluations(checkpoint) if (include_stale or not e.stale)
             and (split is None or e.split == split)]
    return evals[-1] if evals else None


def store_evaluation(checkpoint: str | Path, source: str, result: dict[str, Any],
                     fingerprint: dict[str, Any]) -> None:
    """Store ``result`` beside ``checkpoint`` under ``source``, tied to ``fingerprint``
    (taken when the evaluated file was read). Other sources' results are kept."""
    checkpoint = Path(checkpoint)
    results = _read_dict(RunDir.eval_path(checkpoint))  # a damaged file is replaced, never a reason to lose this
    results[source] = {**result, "fingerprint": fingerprint, "evaluated": now_iso()}
    atomic_write_json(RunDir.eval_path(checkpoint), results)


# ------------------------------------------------------------------- records


@dataclass(frozen=True)
class CheckpointInfo:
    name: str
    path: str
    kind: str
    epoch: Optional[int]  # finished epochs
    step_in_epoch: int  # > 0: saved part-way through epoch ``epoch + 1``
    global_step: Optional[int]
    val_acc: Optional[float]
    size: int
    mtime: float
    test_acc: Optional[float]  # from a stored evaluation of exactly this file, else None
    test_source: Optional[str]
    test_stale: bool = False  # a stored evaluation exists but the file changed since

    @property
    def epoch_label(self) -> str:
        """The epoch as a table shows it: finished epochs ("3"), or for a checkpoint saved
        part-way through an epoch, that epoch ("in 4": 4 is the epoch it was saved in)."""
        if self.epoch is None:
            return ""
        return f"in {self.epoch + 1}" if self.step_in_epoch else str(self.epoch)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "path": self.path, "kind": self.kind, "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch, "global_step": self.global_step, "val_acc": self.val_acc,
            "test_acc": self.test_acc, "test_source": self.test_source, "test_stale": self.test_stale,
            "size": self.size,
        }


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    path: str
    status: RunStatus
    reason: str  # the final event's reason, or why the status is what it is
    created: str
    preset: Optional[str]
    data: Optional[str]
    width: Optional[float]
    params: Optional[int]
    device: Optional[str]
    epochs: Optional[int]  # planned
    epochs_done: int
    best_val_acc: Optional[float]
    best_epoch: Optional[int]
    train_images: Optional[int]
    val_images: Optional[int]
    test_images: Optional[int]
    config: dict[str, Any]  # the run's TrainConfig as a dict (``{}`` if unreadable)
    checkpoints: tuple[CheckpointInfo, ...]
    problems: tuple[str, ...] = ()  # files of the run that could not be read
    note: str = ""  # the user's note (RunDir.read_note)

    @property
    def run_dir(self) -> RunDir:
        return RunDir(self.path)

    @property
    def shape(self) -> Optional[dict[str, Any]]:
        """The network's shape (engine.shape.NetShape as a record) from the run's config: the
        report's network at its width for runs written before shapes were settings; None
        when the config does not describe a buildable network."""
        from .shape import NetShape, ShapeError

        keys = ("blocks", "channels", "strides", "stem_channels", "se", "se_reduction", "width")
        try:
            return NetShape.parse(**{k: self.config.get(k) for k in keys}).to_record()
        except (ShapeError, TypeError, ValueError):
            return None

    @property
    def last_update(self) -> Optional[float]:
        """When the run last wrote its metrics (seconds since the epoch)."""
        try:
            return RunDir(self.path).metrics_path.stat().st_mtime
        except OSError:
            return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id, "path": self.path, "status": self.status, "reason": self.reason,
            "created": self.created, "preset": self.preset, "data": self.data, "width": self.width,
            "params": self.params, "shape": self.shape, "device": self.device, "epochs_done": self.epochs_done,
            "epochs": self.epochs, "best_val_acc": self.best_val_acc, "best_epoch": self.best_epoch,
            "checkpoints": [c.to_dict() for c in self.checkpoints], "problems": list(self.problems),
            "note": self.note,
        }


# ------------------------------------------------------------------- status


def run_status(run: RunDir, epochs_planned: Optional[int] = None,
               epochs_done: int = 0) -> tuple[RunStatus, str]:
    """(status, reason) of a run folder, from its lock and its metrics' last events
    (``damaged`` when either cannot be read safely)."""
    try:
        return _run_status(run, epochs_planned, epochs_done)
    except UnreadableFile as e:
        return ev.DAMAGED, str(e).replace(f"{run.path}{os.sep}", "")


def _run_status(run: RunDir, epochs_planned: Optional[int], epochs_done: int) -> tuple[RunStatus, str]:
    if run.lock_path.is_symlink() or run.lock_path.exists():
        read_lock(run.lock_path)  # refuse a FIFO, a device, a link (lock_owner would say "nobody we can name")
    owner = run.lock_owner()
    if owner is not None and owner.alive:
        return "running", f"written by {owner.describe()}"
    if owner is not None and owner.alive is None and owner.pid is not None:
        try:
            quiet = time.time() - run.metrics_path.stat().st_mtime
        except OSError:
            quiet = math.inf
        if quiet < REMOTE_QUIET_SECONDS:
            return "running", f"written by {owner.describe()}"
    tail = run.last_events()
    for d in reversed(tail):
        name = d.get("event")
        if name == "RunFinished" and d.get("outcome") in ev.OUTCOMES:
            return ev.status_of_outcome(d["outcome"]), str(d.get("reason") or "")
        if name == "RunStarted":
            break  # started (again) and never finished
        if name == "StateChanged" and d.get("state") in ("finished", "failed") and not _has_run_finished(tail):
            return _legacy_outcome(d, epochs_planned, epochs_done)
    if owner is not None and owner.pid is None:
        return "running", "starting"
    return ev.INTERRUPTED, "the process ended without finishing the run (killed, or its terminal closed)"


def _has_run_finished(events: list[dict]) -> bool:
    return any(d.get("event") == "RunFinished" for d in events)


def _legacy_outcome(d: dict, planned: Optional[int], done: int) -> tuple[RunStatus, str]:
    """Runs written before RunFinished existed end on StateChanged(finished|failed)."""
    reason = str(d.get("reason") or "")
    if d.get("state") == "failed":
        return "failed", reason
    if planned is not None and done >= planned:
        return "completed", reason
    return "stopped", reason


# ----------------------------------------------------------------- catalogue


def _checkpoint_info(p: Path, damage: list[str]) -> Optional[CheckpointInfo]:
    try:
        st = p.stat()
    except OSError:
        return None
    summary = _read_dict(RunDir.summary_path(p), damage)
    evals = read_evaluations(p, damage)
    fresh = [e for e in evals if not e.stale and e.accuracy is not None and e.split == "test"]
    test = fresh[-1] if fresh else None  # (a result on the validation images is not a test accuracy)
    return CheckpointInfo(
        name=p.name, path=str(p), kind=_str(summary.get("kind")) or "", epoch=_int(summary.get("epoch")),
        step_in_epoch=_int(summary.get("step_in_epoch")) or 0, global_step=_int(summary.get("global_step")),
        val_acc=_num(summary.get("val_acc")), size=st.st_size, mtime=st.st_mtime,
        test_acc=test.accuracy if test else None, test_source=test.source if test else None,
        test_stale=test is None and any(e.stale and e.split == "test" for e in evals),
    )


def read_run(path: str | Path) -> RunSummary:
    """The catalogue record of one run folder (never raises for damaged files: they are
    listed in ``problems``)."""
    run = RunDir(path)
    problems: list[str] = []
    damage: list[str] = []  # files that cannot be read at all: the run is damaged
    info = _read_dict(run.config_path, damage)
    if run.config_path.exists() and not info:
        problems.append(f"{run.config_path.name} is unreadable")
    cfg, data, model = _dict(info.get("config")), _dict(info.get("data")), _dict(info.get("model"))
    ckpts = tuple(c for c in (_checkpoint_info(p, damage) for p in run.checkpoints()) if c is not None)
    done = max((c.epoch for c in ckpts if c.kind in ("last", "stop", "") and c.epoch is not None), default=0)
    best = next((c for c in ckpts if c.name == run.best_checkpoint.name), None)
    planned = _int(cfg.get("epochs"))
    status, reason = run_status(run, planned, done)
    if status == ev.DAMAGED:
        damage.insert(0, reason)
    if damage:
        status, reason = ev.DAMAGED, "; ".join(damage)
        problems.extend(d for d in damage if d not in problems)
    return RunSummary(
        run_id=run.run_id, path=str(run.path), status=status, reason=reason,
        created=_str(info.get("created")) or "", preset=_str(cfg.get("preset")),
        data=_str(data.get("source")) or _str(cfg.get("data")), width=_num(cfg.get("width")),
        params=_int(model.get("params")), device=_str(info.get("device")), epochs=planned, epochs_done=done,
        best_val_acc=best.val_acc if best else None, best_epoch=best.epoch if best else None,
        train_images=_int(data.get("train_images")), val_images=_int(data.get("val_images")),
        test_images=_int(data.get("test_images")), config=cfg, checkpoints=ckpts, problems=tuple(problems),
        note=run.read_note(),
    )


def list_runs(runs_dir: Optional[str | Path] = None) -> list[RunSummary]:
    """Every run under ``runs_dir`` (default: :func:`default_runs_dir`), newest first."""
    root = Path(runs_dir).expanduser() if runs_dir else default_runs_dir()
    try:
        dirs = [d for d in root.iterdir() if d.is_dir() and RunDir.is_run_dir(d)]
    except OSError:
        return []
    runs = [read_run(d) for d in dirs]
    runs.sort(key=lambda r: (r.created, r.run_id), reverse=True)
    return runs


def find_run(run_dir: str | Path) -> Optional[RunSummary]:
    """The record of one run folder, or None if ``run_dir`` is not one."""
    p = Path(run_dir).expanduser()
    return read_run(p) if p.is_dir() and RunDir.is_run_dir(p) else None


# ------------------------------------------------------------- rename, delete

RUN_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def _idle(run: RunDir, doing: str) -> RunLock:
    """The run's lock, taken (so that no trainer starts on it meanwhile); refused while a
    process writes the run (or may, on another host)."""
    if not RunDir.is_run_dir(run.path) or run.path.is_symlink():
        raise RunDirError(f"{run.path} is not a run folder")
    owner = run.lock_owner()
    if owner is not None and owner.alive is not False and owner.pid is not None:
        raise RunDirError(f"{run.run_id} is running ({owner.describe()}); stop it before you {doing} it")
    lock = run.lock()
    try:
        lock.acquire()
    except RunDirError:
        raise RunDirError(f"{run.run_id} is in use by another process; stop it before you {doing} it") from None
    return lock


def rename_run(path: str | Path, new_name: str) -> RunDir:
    """Rename a run folder (not a running one) beside itself; returns the renamed run.
    Names: letters, digits, ``-``, ``_`` and ``.``, not starting with a dot, at most 100."""
    run = RunDir(path)
    name = new_name.strip()
    if not name or len(name) > 100 or name.startswith(".") or not set(name) <= RUN_NAME_CHARS:
        raise RunDirError("a run's name is 1 to 100 letters, digits, '-', '_' or '.', not starting with '.'")
    target = run.path.parent / name
    if target == run.path:
        return run
    if target.exists() or target.is_symlink():
        raise RunDirError(f"{target} exists already; choose another name")
    lock = _idle(run, "rename")
    try:
        run.path.rename(target)
    except OSError as e:
        lock.release()
        raise RunDirError(f"cannot rename {run.path} ({e.strerror or e})") from None
    RunDir(target).lock_path.unlink(missing_ok=True)  # (our lock, moved with the folder)
    return RunDir(target)


def delete_run(path: str | Path) -> None:
    """Delete a run folder and everything in it; never a running run."""
    import shutil

    run = RunDir(path)
    _idle(run, "delete")
    try:
        shutil.rmtree(run.path)
    except OSError as e:
        raise RunDirError(f"could not delete all of {run.path} ({e.strerror or e}); what is left is still "
                          "there") from None
