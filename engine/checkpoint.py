"""Checkpoints and the run directory.

    <runs_dir>/<run-id>/
      config.json        the full TrainConfig, data source, versions, device, params
      metrics.jsonl      one event per line
      checkpoints/       epoch-NNN.pt, last.pt, best.pt (+ a small .json beside each)

Saving is atomic: write a temporary file in the same folder, fsync, rename.
Loading uses ``torch.load(weights_only=True)``: a checkpoint cannot run code.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any, Optional

import torch

from .runs import (  # noqa: F401  (re-exported: the catalogue needs no torch)
    atomic_write_bytes,
    atomic_write_json,
    default_runs_dir,
    eval_results_path,
    list_runs,
    read_config_json,
    read_eval_results,
    read_metrics,
    store_eval_result,
)

FORMAT_NAME = "cifar-tui-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(Exception):
    """A file that cannot be used as a checkpoint. One-line message for the user."""


# ------------------------------------------------------------------------ locations


def new_run_dir(runs_dir: Optional[str | Path], preset: str) -> Path:
    root = Path(runs_dir).expanduser() if runs_dir else default_runs_dir()
    if root.exists() and not root.is_dir():
        raise CheckpointError(f"--runs-dir {root} is a file, not a folder; choose a folder")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CheckpointError(f"cannot create the runs folder {root} ({e.strerror}); choose another with --runs-dir") from None
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = f"{stamp}-{preset}"
    for i in range(1000):
        name = base if i == 0 else f"{base}-{i}"
        d = root / name
        try:
            d.mkdir()
        except FileExistsError:
            continue
        except OSError as e:
            raise CheckpointError(f"cannot write in the runs folder {root} ({e.strerror}); choose another with --runs-dir") from None
        (d / "checkpoints").mkdir()
        return d
    raise CheckpointError(f"too many runs named {base}* in {root}")


# ---------------------------------------------------------------------- save / load


def save_checkpoint(path: Path, state: dict[str, Any], summary: Optional[dict[str, Any]] = None) -> None:
    """Write ``state`` (plus format header) atomically to ``path`` and a JSON summary beside it."""
    payload = {"format": FORMAT_NAME, "version": FORMAT_VERSION, **state}
    try:
        atomic_write_bytes(path, lambda fh: torch.save(payload, fh))
    except RuntimeError as e:
        # torch's zip writer reports a failed write (e.g. a full disk) as a RuntimeError.
        import errno
        import shutil

        try:
            full = shutil.disk_usage(path.parent).free < (64 << 20)
        except OSError:
            full = False
        if full:
            raise OSError(errno.ENOSPC, "No space left on device") from None
        raise OSError(errno.EIO, str(e).strip().splitlines()[0] if str(e).strip() else "write failed") from None
    if summary is not None:
        atomic_write_json(path.with_suffix(".json"), summary)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely. Raises :class:`CheckpointError` with a one-line reason."""
    p = Path(path).expanduser()
    if p.is_dir():
        for cand in (p / "checkpoints" / "last.pt", p / "last.pt"):
            if cand.is_file():
                p = cand
                break
        else:
            raise CheckpointError(f"{p} is a folder with no checkpoints/last.pt; give a .pt file or a run folder")
    if not p.is_file():
        raise CheckpointError(f"checkpoint {p} does not exist")
    try:
        data = torch.load(p, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError,
            AttributeError, KeyError, TypeError, IndexError) as e:
        # torch's weights-only unpickler names the GLOBAL it refused (e.g. posix.system):
        # that is a file asking to run code. Anything else is damage or a foreign format.
        if "global" in str(e).lower():
            raise CheckpointError(
                f"{p} was refused: it holds objects that could run code when loaded; only cifar-tui checkpoints are accepted"
            ) from None
        raise CheckpointError(f"{p} is not a readable checkpoint (corrupt or truncated)") from None
    except Exception:
        raise CheckpointError(f"{p} is not a readable checkpoint") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{p} is not a cifar-tui checkpoint (a model from another program?)")
    version = data.get("version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{p} has checkpoint format version {version}, newer than this cifar-tui supports ({FORMAT_VERSION}); upgrade cifar-tui"
        )
    if version < 1:
        raise CheckpointError(f"{p} has an unknown checkpoint format version {version}")
    for key in ("model", "arch", "config"):
        if key not in data:
            raise CheckpointError(f"{p} is an incomplete checkpoint (no {key!r})")
    data["path"] = str(p)
    return data


def build_model_from_checkpoint(ckpt: dict[str, Any]):
    """Rebuild the network a checkpoint describes and load its inference weights (strict):
    the EMA of the weights when the run kept one, else the trained weights."""
    from .model import ARCH_NAME, SEResNet

    arch = ckpt["arch"]
    if arch.get("name") != ARCH_NAME:
        raise CheckpointError(f"{ckpt.get('path')}: architecture {arch.get('name')!r} is not {ARCH_NAME}")
    try:
        model = SEResNet(width=float(arch["width"]), num_classes=int(arch["num_classes"]))
    except (KeyError, TypeError, ValueError):
        raise CheckpointError(f"{ckpt.get('path')}: the architecture record is damaged") from None
    load_weights(model, ckpt, key="ema" if isinstance(ckpt.get("ema"), dict) else "model")
    return model


def load_weights(model: torch.nn.Module, ckpt: dict[str, Any], key: str = "model") -> None:
    state = ckpt[key]
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, KeyError, TypeError):
        theirs = ckpt.get("arch", {})
        mine_w = getattr(model, "width", "?")
        raise CheckpointError(
            f"{ckpt.get('path')}: weights do not fit this network (checkpoint width {theirs.get('width')}, "
            f"{theirs.get('params')} parameters; expected width {mine_w}); use the checkpoint's own settings"
        ) from None


# ----------------------------------------------------------------------- run lock


class RunLock:
    """``<run>/.lock`` holding the writer's host and pid: one writer per run folder.

    A lock whose process is gone (same host, pid not alive) is stale and taken over.
    """

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / ".lock"
        self.notes: list[str] = []
        self._held = False

    @staticmethod
    def _alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        except OSError:
            return False
        return True

    def acquire(self) -> None:
        import socket

        me = {"pid": os.getpid(), "host": socket.gethostname(),
              "since": _dt.datetime.now().astimezone().isoformat(timespec="seconds")}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    owner = json.loads(self.path.read_text() or "{}")
                except (OSError, ValueError):
                    owner = {}
                pid, host = owner.get("pid"), owner.get("host")
                if isinstance(pid, int) and host == socket.gethostname() and not self._alive(pid):
                    self.notes.append(f"removed a stale lock of process {pid} (it is no longer running)")
                    try:
                        self.path.unlink()
                    except FileNotFoundError:
                        pass
                    continue
                if not owner:  # unreadable: a writer that died between create and write
                    try:
                        age = _dt.datetime.now().timestamp() - self.path.stat().st_mtime
                    except OSError:
                        continue
                    if age > 10:
                        self.path.unlink(missing_ok=True)
                        continue
                who = f"process {pid} on {host}" if pid else "another process"
                raise CheckpointError(
                    f"the run folder {self.path.parent} is in use by {who} (since {owner.get('since', '?')}); "
                    f"wait for it to finish, or watch it with: cifar-tui watch {self.path.parent}"
                )
            except OSError as e:
                raise CheckpointError(f"cannot write in the run folder {self.path.parent} ({e.strerror})") from None
            with os.fdopen(fd, "w") as fh:
                json.dump(me, fh)
            self._held = True
            self._clean_temp_files()
            return
        raise CheckpointError(f"could not take the lock {self.path}; remove it if no run is writing this folder")

    def _clean_temp_files(self) -> None:
        """Remove half-written ``.NAME.tmp-PID`` files left by a killed writer of this folder."""
        removed = 0
        for folder in (self.path.parent, self.path.parent / "checkpoints"):
            for tmp in folder.glob(".*.tmp-*"):
                try:
                    pid = int(tmp.name.rsplit("-", 1)[1])
                except ValueError:
                    continue
                if pid != os.getpid() and not self._alive(pid):
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
                owner = json.loads(self.path.read_text())
                if owner.get("pid") == os.getpid():
                    self.path.unlink()
            except (OSError, ValueError):
                pass
            self._held = False
