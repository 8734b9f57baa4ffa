"""One run folder: its layout, its lock, its config.json and its metrics file.

    <runs_dir>/<run-id>/
      config.json        the full TrainConfig, data source, versions, device, resume history
      metrics.jsonl      every event of the run, one JSON object per line
      checkpoints/       last.pt, best.pt, epoch-NNN.pt, manual-eNNN-sNNNNNNN.pt
                         (+ NAME.json, a small summary beside each, and NAME.eval.json,
                         stored evaluations)
      .lock              the live writer's host and pid
      .control           the live trainer's control channel (commands from other
                         terminals; see engine.control and docs/control.md)
      train.log          the output of a detached run (cifar-tui train --detach)
      .detach.json       a detached run's settings, from its launcher to its process
                         (owner-only; removed once read)
      error.log          the traceback of an unexpected failure
      note.txt           the user's note on the run (one line, from the browser)

:class:`RunDir` is the only place that spells these names; everything else asks
it. No torch here: the catalogue (:mod:`engine.runs`), the CLI and the UIs read
run folders without paying torch's import time.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Literal, Optional

from .events import CHECKPOINT_KINDS, CheckpointKind  # noqa: F401  (re-exported)
from .files import PID_MAX, TEMP_MARK, atomic_write_json, atomic_write_text, pid_alive  # noqa: F401  (pid_alive re-exported)
from .safeio import UnreadableFile, read_bytes, read_json, read_json_dict
# re-exported: the metrics file's reader, writer and follower live in engine.metrics
from .metrics import MetricsFollower, MetricsWriter, read_metrics, tail_events  # noqa: F401

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
CHECKPOINT_DIR = "checkpoints"
LOCK_FILE = ".lock"
CONTROL_FILE = ".control"
LOG_FILE = "train.log"
SPEC_FILE = ".detach.json"
ERROR_LOG = "error.log"
NOTE_FILE = "note.txt"
NOTE_LIMIT = 500  # characters: a note is one line
# A new run folder: no write access for group or others (the control channel lives in it)
RUN_DIR_MODE = 0o755
LOCK_LIMIT = 4096  # bytes of a .lock (ours: ~80)
SUMMARY_SUFFIX = ".json"
EVAL_SUFFIX = ".eval.json"

Purpose = Literal["resume", "inference"]


class RunDirError(Exception):
    """A run folder that cannot be created, locked or written. One line, for the user."""


def default_runs_dir() -> Path:
    """``CIFAR_TUI_RUNS_DIR``, else platformdirs' user data folder + ``runs``."""
    env = os.environ.get("CIFAR_TUI_RUNS_DIR")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("cifar-tui", appauthor=False)) / "runs"


def runs_root(given: Optional[str | Path] = None) -> Path:
    """The runs folder a command uses: ``given`` (its --runs-dir), else the default."""
    return Path(given).expanduser() if given else default_runs_dir()


def now_iso() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


class _InRun:
    """A read-only attribute of :class:`RunDir`: the path of one file of the run folder."""

    def __init__(self, name: str):
        self.name = name

    def __get__(self, run: Optional["RunDir"], owner: type) -> Path:
        if run is None:
            raise AttributeError(self.name)
        return run.path / self.name

    def __set__(self, run: "RunDir", value: object) -> None:
        raise AttributeError(f"the run folder's {self.name} has a fixed name")


class RunDir:
    """A run folder. Creating the object touches nothing; :meth:`create` makes a new one."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunDir) and self.path == other.path

    def __hash__(self) -> int:
        return hash(self.path)

    # ----------------------------------------------------------------- layout
    @property
    def run_id(self) -> str:
        return self.path.name

    # the run's files and folders, each at its fixed name (see the module's docstring)
    config_path = _InRun(CONFIG_FILE)
    metrics_path = _InRun(METRICS_FILE)
    checkpoints_dir = _InRun(CHECKPOINT_DIR)
    lock_path = _InRun(LOCK_FILE)
    error_log_path = _InRun(ERROR_LOG)
    control_path = _InRun(CONTROL_FILE)  # the live trainer's control channel (engine.control)
    log_path = _InRun(LOG_FILE)  # where a detached run's output goes
    spec_path = _InRun(SPEC_FILE)  # a detached run's settings, handed to its process
    note_path = _InRun(NOTE_FILE)  # the user's note on the run

    def checkpoint_path(self, kind: CheckpointKind, *, epoch: int = 0, global_step: int = 0,
                        step_in_epoch: int = 0) -> Path:
        """Where a checkpoint of ``kind`` goes. ``epoch`` counts finished epochs."""
        if kind in ("last", "stop"):
            name = "last.pt"
        elif kind == "best":
            name = "best.pt"
        elif kind == "epoch":
            name = f"epoch-{epoch:03d}.pt"
        elif kind == "manual":
            name = f"manual-e{epoch + (1 if step_in_epoch else 0):03d}-s{global_step:07d}.pt"
        else:
            raise ValueError(f"unknown checkpoint kind {kind!r}")
        return self.checkpoints_dir / name

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoint_path("last")

    @property
    def best_checkpoint(self) -> Path:
        return self.checkpoint_path("best")

    def checkpoint_for(self, purpose: Purpose) -> Optional[Path]:
        """The checkpoint a command takes from this run: to resume, the furthest (last.pt);
        for evaluation and prediction, the best (best.pt). Falls back to the other one."""
        order = (self.last_checkpoint, self.best_checkpoint)
        if purpose == "inference":
            order = order[::-1]
        return next((p for p in order if p.is_file()), None)

    def checkpoint_names(self, purpose: Purpose) -> str:
        """The files :meth:`checkpoint_for` looks for, in words ("best.pt or last.pt")."""
        names = [self.last_checkpoint.name, self.best_checkpoint.name]
        return " or ".join(names[::-1] if purpose == "inference" else names)

    def checkpoints(self) -> list[Path]:
        """Every checkpoint file of the run (not temporary files), sorted by name."""
        d = self.checkpoints_dir
        if not d.is_dir():
            return []
        return sorted(p for p in d.glob("*.pt") if not p.name.startswith(".") and p.is_file())

    @staticmethod
    def summary_path(checkpoint: Path) -> Path:
        """The small JSON beside a checkpoint (epoch, accuracy, ... ; read without torch)."""
        return Path(checkpoint).with_suffix(SUMMARY_SUFFIX)

    @staticmethod
    def eval_path(checkpoint: Path) -> Path:
        """Where evaluations of a checkpoint are stored."""
        checkpoint = Path(checkpoint)
        return checkpoint.with_name(checkpoint.stem + EVAL_SUFFIX)

    @staticmethod
    def read_summary(checkpoint: Path) -> dict[str, Any]:
        return read_json_dict(RunDir.summary_path(checkpoint))

    # -------------------------------------------------------------- find / make
    @staticmethod
    def is_run_dir(path: str | Path) -> bool:
        p = Path(path)
        return (p / CONFIG_FILE).is_file() or (p / CHECKPOINT_DIR).is_dir()

    @classmethod
    def of_folder(cls, folder: str | Path) -> "RunDir":
        """The run a folder argument names: the folder itself, or the run of its
        checkpoints folder."""
        p = Path(folder)
        return cls(p.parent) if p.name == CHECKPOINT_DIR else cls(p)

    @classmethod
    def of_checkpoint(cls, checkpoint: str | Path) -> Optional["RunDir"]:
        """The run folder a checkpoint file sits in, or None for a loose file. Where the file
        itself is a link (``A/checkpoints/last.pt`` into run B), the run is the one it sits
        in, A: what a link points at never decides where a run writes."""
        p = Path(checkpoint)
        p = p.parent.resolve() / p.name
        if p.parent.name == CHECKPOINT_DIR and (p.parent.parent / CONFIG_FILE).is_file():
            return cls(p.parent.parent)
        return None

    @classmethod
    def create(cls, runs_dir: Optional[str | Path], preset: str) -> "RunDir":
        """A new, empty run folder ``<runs_dir>/<YYYYmmdd-HHMMSS>-<preset>[-N]``."""
        root = Path(runs_dir).expanduser() if runs_dir else default_runs_dir()
        if root.exists() and not root.is_dir():
            raise RunDirError(f"--runs-dir {root} is a file, not a folder; choose a folder")
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunDirError(f"cannot create the runs folder {root} ({e.strerror}); choose another with --runs-dir") from None
        base = f"{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}-{_safe_name(preset)}"
        for i in range(1000):
            d = root / (base if i == 0 else f"{base}-{i}")
            try:
                d.mkdir(mode=RUN_DIR_MODE)  # (less if the umask says so; never writable by others)
            except FileExistsError:
                continue
            except OSError as e:
                raise RunDirError(f"cannot write in the runs folder {root} ({e.strerror}); choose another with --runs-dir") from None
            run = cls(d)
            run.ensure_layout()
            return run
        raise RunDirError(f"too many runs named {base}* in {root}")

    def ensure_layout(self) -> None:
        try:
            self.checkpoints_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunDirError(f"cannot write in the run folder {self.path} ({e.strerror})") from None

    # ------------------------------------------------------------------- files
    def read_config(self) -> dict[str, Any]:
        """config.json as a dict (``{}`` when missing or unreadable)."""
        return read_json_dict(self.config_path)

    def write_config(self, info: dict[str, Any], *, resumed_from: Optional[str] = None,
                     resume_changes: Optional[dict[str, Any]] = None,
                     carried: Optional[dict[str, Any]] = None) -> Optional[str]:
        """Write config.json. A resumed run keeps its creation time and appends to its
        resume history (where from, when, the settings that changed, and ``carried``: what
        the run keeps from its checkpoint besides its settings, e.g. a steered
        ``lr_scale``). Returns a note when
        the previous config.json was unreadable (it is rewritten from the checkpoint)."""
        info = dict(info)
        note = None
        if resumed_from is not None:
            prev = self.read_config()
            if not prev and self.config_path.exists():
                note = (f"{self.config_path.name} was unreadable (damaged, or not a JSON object); rewritten from "
                        "the checkpoint, without its earlier resume history")
            history = prev.get("resumes") if isinstance(prev.get("resumes"), list) else []
            if isinstance(prev.get("created"), str):
                info["created"] = prev["created"]
            entry = {"from": resumed_from, "at": now_iso(), "epochs": info.get("config", {}).get("epochs"),
                     "device": info.get("device")}
            if resume_changes:
                entry["changed"] = resume_changes
            entry.update(carried or {})
            info["resumes"] = history + [entry]
        atomic_write_json(self.config_path, info)
        return note

    def read_note(self) -> str:
        """The user's note ("" when there is none, or the file is not a small text file)."""
        try:
            text = read_bytes(self.note_path, 4 * NOTE_LIMIT).decode("utf-8", "replace")
        except (OSError, UnreadableFile):
            return ""
        return clean_note(text)

    def write_note(self, text: str) -> str:
        """Store the note (one line, at most NOTE_LIMIT characters; blank removes it); returns
        what was stored."""
        note = clean_note(text)
        try:
            if note:
                atomic_write_text(self.note_path, note + "\n")
            else:
                self.note_path.unlink(missing_ok=True)
        except OSError as e:
            raise RunDirError(f"cannot write the note in {self.path} ({e.strerror or e})") from None
        return note

    def read_metrics(self) -> tuple[list[dict], int]:
        """All events of metrics.jsonl as dicts, and the number of unreadable lines skipped."""
        return read_metrics(self.metrics_path)

    def last_events(self, max_bytes: int = 65536) -> list[dict]:
        """The events in the last ``max_bytes`` of metrics.jsonl, oldest first (a cheap tail)."""
        return tail_events(self.metrics_path, max_bytes)

    def lock(self) -> "RunLock":
        return RunLock(self.path)

    def lock_owner(self) -> Optional["LockOwner"]:
        return RunLock.owner(self.path)

    def metrics_writer(self) -> MetricsWriter:
        try:
            return MetricsWriter(self.metrics_path)
        except OSError as e:
            raise RunDirError(f"cannot write {self.metrics_path} ({e.strerror})") from None

    # ------------------------------------------------------------------ resume
    def is_latest(self, global_step: int) -> bool:
        """Is a checkpoint at ``global_step`` at least as far as this run's last.pt?"""
        if not self.last_checkpoint.exists():
            return True
        step = self.read_summary(self.last_checkpoint).get("global_step", 0)
        return not isinstance(step, int) or global_step >= step


@dataclass(frozen=True)
class ResumeTarget:
    run: RunDir
    note: Optional[str] = None  # why the run continues in a new folder


def resume_target(checkpoint: str | Path, global_step: int, runs_dir: Optional[str | Path],
                  preset: str, fixed: Optional[RunDir] = None) -> ResumeTarget:
    """Where training from ``checkpoint`` continues.

    The run's own folder when the checkpoint is its latest; a new folder beside it when
    the checkpoint is older than the run's last.pt (so nothing is overwritten); a new
    folder under ``runs_dir`` (this invocation's, never a path stored in a file) for a
    checkpoint outside any run folder.
    """
    if fixed is not None:
        fixed.ensure_layout()
        return ResumeTarget(fixed)
    own = RunDir.of_checkpoint(checkpoint)
    name = Path(checkpoint).name
    if own is not None and own.is_latest(global_step):
        return ResumeTarget(own)
    if own is not None:
        new = RunDir.create(runs_dir or own.path.parent, preset)
        return ResumeTarget(new, f"{name} is older than the run's last.pt; continuing in a new run folder "
                                 f"{new.path} so the original run stays as it is")
    new = RunDir.create(runs_dir, preset)
    return ResumeTarget(new, f"{checkpoint} is not inside a run folder; continuing in a new run folder {new.path}")


# ------------------------------------------------------------------------ lock


@dataclass(frozen=True)
class LockOwner:
    pid: Optional[int]
    host: Optional[str]
    since: str
    alive: Optional[bool]  # None: on another host, cannot tell

    def describe(self) -> str:
        return f"process {self.pid} on {self.host}" if self.pid else "another process"


class RunLock:
    """``<run>/.lock`` holding the writer's host and pid: one writer per run folder.

    A lock whose process is gone (same host, pid not alive) is stale and taken over;
    taking the lock also removes half-written temporary files of dead writers.
    """

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self.notes: list[str] = []
        self._held = False

    @staticmethod
    def owner(run_dir: str | Path) -> Optional[LockOwner]:
        """Who holds the lock of ``run_dir`` (None: nobody)."""
        path = Path(run_dir) / LOCK_FILE
        try:
            d = read_lock(path)
        except FileNotFoundError:
            return None
        except UnreadableFile:
            d = {}  # a special file or a link (refused unread), or damaged: nobody we can name
        pid = d.get("pid") if isinstance(d.get("pid"), int) else None
        host = d.get("host") if isinstance(d.get("host"), str) else None
        alive: Optional[bool] = None
        if pid is not None and (host == socket.gethostname() or not 0 < pid <= PID_MAX):
            alive = pid_alive(pid)  # (False for a pid that names no one process: -1, 0, 10**20)
        elif pid is None:
            alive = None  # being written right now, or damaged
        return LockOwner(pid, host, str(d.get("since", "?"))[:40], alive)

    def acquire(self) -> None:
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": now_iso()}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            except FileExistsError:
                if self._clear_if_stale():
                    continue
                owner = self.owner(self.run_dir)
                who = owner.describe() if owner else "another process"
                since = owner.since if owner else "?"
                raise RunDirError(
                    f"the run folder {self.run_dir} is in use by {who} (since {since}); "
                    f"wait for it to finish, or watch it with: cifar-tui watch {self.run_dir}"
                ) from None
            except OSError as e:
                raise RunDirError(f"cannot write in the run folder {self.run_dir} ({e.strerror})") from None
            with os.fdopen(fd, "w") as fh:
                json.dump(me, fh)
            self._held = True
            self._clean_temp_files()
            return
        raise RunDirError(f"could not take the lock {self.path}; remove it if no run is writing this folder")

    def _clear_if_stale(self) -> bool:
        owner = self.owner(self.run_dir)
        if owner is None:
            return True  # gone meanwhile: try again
        if owner.pid is not None and owner.alive is False:
            self.notes.append(f"removed a stale lock of process {owner.pid} (it is no longer running)")
            self.path.unlink(missing_ok=True)
            return True
        if owner.pid is None:  # unreadable: a writer that died between create and write
            try:
                age = _dt.datetime.now().timestamp() - self.path.stat().st_mtime
            except OSError:
                return True
            if age > 10:
                self.path.unlink(missing_ok=True)
                return True
        return False

    def _clean_temp_files(self) -> None:
        """Remove half-written ``.NAME.tmp-PID`` files left by a killed writer of this folder."""
        removed = 0
        for folder in (self.run_dir, self.run_dir / CHECKPOINT_DIR):
            for tmp in _temp_files(folder):
                try:
                    pid = int(tmp.name.rsplit("-", 1)[1])
                except ValueError:
                    continue
                if pid != os.getpid() and not pid_alive(pid):
                    try:
                        tmp.unlink()
                        removed += 1
                    except OSError:
                        pass
        if removed:
            self.notes.append(f"removed {removed} half-written temporary file(s) left by an interrupted run")

    def release(self) -> None:
        if self._held:
            try:
                if read_lock(self.path).get("pid") == os.getpid():
                    self.path.unlink()
            except (OSError, ValueError):
                pass
            self._held = False


def read_lock(path: Path) -> dict[str, Any]:
    """A lock file's fields (``{}`` when empty or not an object). Raises ``FileNotFoundError``,
    or :class:`engine.safeio.UnreadableFile` for a FIFO, a device, a link, a large or deep file."""
    d = read_json(path, limit=LOCK_LIMIT) if path.stat().st_size or not path.is_file() else {}
    return d if isinstance(d, dict) else {}


def _temp_files(folder: Path) -> Iterator[Path]:
    try:
        yield from (p for p in folder.glob(f".*{TEMP_MARK}*"))
    except OSError:
        return


def clean_note(text: str) -> str:
    """A note as stored and shown: one line (line breaks and control characters become
    spaces), trimmed, at most NOTE_LIMIT characters."""
    flat = "".join(c if c.isprintable() else " " for c in str(text))
    return " ".join(flat.split())[:NOTE_LIMIT]


def _safe_name(text: str) -> str:
    """A preset name usable in a folder name."""
    keep = "".join(c if c.isalnum() or c in "-_" else "-" for c in str(text))
    return keep.strip("-")[:32] or "run"
