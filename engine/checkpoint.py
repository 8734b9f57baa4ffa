"""Checkpoints: atomic save, safe load, validated records, and the model they describe.

Saving is atomic (:mod:`engine.files`): a temporary file in the same folder,
fsynced, renamed into place. Loading uses ``torch.load(weights_only=True)``, so a
checkpoint cannot run code, and the record is checked (types, ranges) before
anything is built from it, so a damaged or hostile file gets a one-line error
instead of a crash or a huge allocation. Where a checkpoint goes in a run folder
is :class:`engine.rundir.RunDir`'s business.
"""

from __future__ import annotations

import errno
import math
import pickle
import shutil
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from .config import MAX_WIDTH
from .events import CheckpointKind
from .files import atomic_link, atomic_write_bytes, atomic_write_json
from . import resolve
from .rundir import Purpose, RunDir

FORMAT_NAME = "cifar-tui-checkpoint"
FORMAT_VERSION = 1
MAX_CLASSES = 1000


class CheckpointError(Exception):
    """A file that cannot be used as a checkpoint. One-line message for the user."""


# ---------------------------------------------------------------------- save


def save_checkpoint(path: Path, state: dict[str, Any], summary: Optional[dict[str, Any]] = None) -> str:
    """Write ``state`` (plus format header and a fresh ``save_id``) atomically to ``path``, and
    a JSON summary beside it. Returns the save id. Raises ``OSError`` when the write fails."""
    save_id = uuid.uuid4().hex
    payload = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "save_id": save_id, **state}
    try:
        atomic_write_bytes(path, lambda fh: torch.save(payload, fh))
    except RuntimeError as e:
        # torch's zip writer reports a failed write (e.g. a full disk) as a RuntimeError.
        try:
            full = shutil.disk_usage(path.parent).free < (64 << 20)
        except OSError:
            full = False
        if full:
            raise OSError(errno.ENOSPC, "No space left on device") from None
        raise OSError(errno.EIO, first_line(e) or "write failed") from None
    if summary is not None:
        atomic_write_json(RunDir.summary_path(path), {**summary, "save_id": save_id})
    return save_id


class CheckpointStore:
    """Writes a run's checkpoints where its :class:`RunDir` says, with their summaries."""

    def __init__(self, run: RunDir):
        self.run = run

    def save(self, kind: CheckpointKind, state: dict[str, Any], summary: dict[str, Any], *,
             epoch: int, global_step: int, step_in_epoch: int = 0) -> Path:
        path = self.run.checkpoint_path(kind, epoch=epoch, global_step=global_step, step_in_epoch=step_in_epoch)
        save_checkpoint(path, state, {**summary, "kind": kind})
        return path

    def copy(self, src: Path, kind: CheckpointKind, *, epoch: int) -> Path:
        """``src`` also as ``kind`` (best.pt, epoch-NNN.pt): the same bytes, its own summary."""
        dst = self.run.checkpoint_path(kind, epoch=epoch)
        atomic_link(src, dst)
        atomic_write_json(RunDir.summary_path(dst), {**RunDir.read_summary(src), "kind": kind})
        return dst


# ------------------------------------------------------------ writes in the background


def snapshot(state: Any) -> tuple[Any, Optional[Any]]:
    """A copy of a checkpoint's state that training can no longer change: tensors copied to
    the CPU (from a GPU without waiting: into pinned memory, behind a CUDA event), dicts and
    lists copied, other values shared (they are immutable). Returns ``(copy, ready)``;
    ``ready`` is None or a CUDA event to synchronise on before reading the copy."""
    on_gpu = []

    def copy(x: Any) -> Any:
        if isinstance(x, torch.Tensor):
            x = x.detach()
            if x.device.type == "cuda":
                on_gpu.append(x.device)
                return x.to("cpu", non_blocking=True)
            return x.to("cpu") if x.device.type != "cpu" else x.clone()
        if isinstance(x, dict):
            return {k: copy(v) for k, v in x.items()}
        if isinstance(x, list):
            return [copy(v) for v in x]
        if isinstance(x, tuple):
            return tuple(copy(v) for v in x)
        return x

    out = copy(state)
    ready = None
    if on_gpu:
        ready = torch.cuda.Event()
        ready.record(torch.cuda.current_stream(on_gpu[0]))
    return out, ready


SKIPPED = "not written: the checkpoint it copies was not written"


@dataclass
class PendingWrite:
    """One file of a save: a full checkpoint (``state`` set) or, without a state, a copy of
    the last full checkpoint written before it in the same job (best.pt, epoch-NNN.pt)."""

    kind: CheckpointKind
    epoch: int
    step_in_epoch: int = 0
    global_step: int = 0
    val_acc: Optional[float] = None
    score: Optional[float] = None  # what "best" compares (validation or training accuracy)
    state: Optional[dict] = None
    ready: Any = None  # a CUDA event the state's copies wait on
    summary: Optional[dict] = None
    path: Optional[Path] = None  # set once written
    error: Optional[str] = None  # set if it was not


def perform_writes(store: "CheckpointStore", writes: list[PendingWrite]) -> list[PendingWrite]:
    """Write the files of one save, in order (in the writer's thread). Each is atomic and
    fsynced; a failure is recorded on its write (the earlier file under that name is intact)
    and the copies of a failed checkpoint are skipped."""
    src: Optional[Path] = None
    for w in writes:
        full = w.state is not None
        try:
            if full:
                if w.ready is not None:
                    w.ready.synchronize()
                w.path = store.save(w.kind, w.state, w.summary or {}, epoch=w.epoch, global_step=w.global_step,
                                    step_in_epoch=w.step_in_epoch)
                src = w.path
            elif src is None:
                w.error = SKIPPED
            else:
                w.path = store.copy(src, w.kind, epoch=w.epoch)
        except OSError as e:
            w.error = str(e.strerror or e)
            src = None if full else src
        except Exception as e:  # noqa: BLE001 - a failed write, said in one line
            w.error = first_line(e)
            src = None if full else src
        finally:
            w.state = w.ready = None  # the copy is written (or not): free it
    return writes


# ---------------------------------------------------------------------- load


def resolve_checkpoint(path: str | Path, purpose: Purpose = "resume") -> Path:
    """A checkpoint file from a file, run-folder or run-id argument (see
    :func:`engine.resolve.resolve_checkpoint`). Raises :class:`CheckpointError`."""
    try:
        return resolve.resolve_checkpoint(path, purpose)
    except resolve.ResolveError as e:
        raise CheckpointError(str(e)) from None


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu",
                    purpose: Purpose = "resume") -> dict[str, Any]:
    """Load and check a checkpoint safely. Raises :class:`CheckpointError` with a one-line reason.

    The returned dict also has ``path`` (the file read).
    """
    p = resolve_checkpoint(path, purpose)
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
    check_record(data, p)
    data["path"] = str(p)
    return data


def check_record(data: dict[str, Any], p: Path) -> None:
    """Refuse a record whose fields have the wrong types or impossible values, before any
    of them sizes an allocation or reaches the trainer."""
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CheckpointError(f"{p} has an unknown checkpoint format version {version!r}")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{p} has checkpoint format version {version}, newer than this cifar-tui supports ({FORMAT_VERSION}); upgrade cifar-tui"
        )
    for key in ("model", "arch", "config"):
        if key not in data:
            raise CheckpointError(f"{p} is an incomplete checkpoint (no {key!r})")
        if not isinstance(data[key], dict):
            raise CheckpointError(f"{p} is damaged: its {key!r} record is not a mapping")
    for key in ("epoch", "step_in_epoch", "global_step", "ema_n"):
        v = data.get(key, 0)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise CheckpointError(f"{p} is damaged: {key} is {v!r}, not a count")
    _check_arch(data["arch"], data.get("classes"), p)


def _check_arch(arch: dict[str, Any], classes: Any, p: Path) -> None:
    width, n = arch.get("width"), arch.get("num_classes")
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not math.isfinite(width) or not 0 < width <= MAX_WIDTH:
        raise CheckpointError(f"{p} is damaged: its network width is {width!r}; cifar-tui builds widths in (0, {MAX_WIDTH}]")
    if isinstance(n, bool) or not isinstance(n, int) or not 2 <= n <= MAX_CLASSES:
        raise CheckpointError(f"{p} is damaged: it declares {n!r} classes; cifar-tui supports 2 to {MAX_CLASSES}")
    if classes is not None:
        if not isinstance(classes, (list, tuple)) or not all(isinstance(c, str) for c in classes):
            raise CheckpointError(f"{p} is damaged: its class names are not a list of names")
        if len(classes) != n:
            raise CheckpointError(f"{p} is damaged: it declares {n} classes but names {len(classes)}")
    network_shape(arch, p)


def network_shape(arch: dict[str, Any], p: Any = None):
    """The :class:`engine.shape.NetShape` a checkpoint's ``arch`` records. A checkpoint written
    before shapes were recorded is the report's network at its width; a record that is
    not a buildable shape is refused with one line."""
    from .shape import NetShape, ShapeError

    record = arch.get("shape")
    if isinstance(record, dict):  # the network's own width is the one checked above, and authoritative
        record = {**record, "width": float(arch["width"])}
    try:
        return NetShape.from_record(record, width=float(arch["width"]), num_classes=int(arch["num_classes"]))
    except (ShapeError, TypeError, ValueError) as e:
        raise CheckpointError(f"{p or 'the checkpoint'} is damaged: its network shape is not buildable ({e})") from None


def build_model_from_checkpoint(ckpt: dict[str, Any]):
    """Rebuild the network a (checked) checkpoint describes and load its inference weights:
    the EMA of the weights when the run kept one, else the trained weights."""
    from .model import ARCH_NAME, SEResNet

    arch = ckpt["arch"]
    if arch.get("name") != ARCH_NAME:
        raise CheckpointError(f"{ckpt.get('path')}: architecture {str(arch.get('name'))[:40]!r} is not {ARCH_NAME}")
    model = SEResNet(num_classes=int(arch["num_classes"]), shape=network_shape(arch, ckpt.get("path")))
    load_weights(model, ckpt, key="ema" if isinstance(ckpt.get("ema"), dict) else "model")
    return model


def load_weights(model: torch.nn.Module, ckpt: dict[str, Any], key: str = "model") -> None:
    """Load ``ckpt[key]`` into ``model``; refuses weights that do not fit or are not finite."""
    state = ckpt.get(key)
    try:
        if not isinstance(state, dict):
            raise TypeError
        model.load_state_dict(state, strict=True)
    except (RuntimeError, KeyError, TypeError, ValueError):
        theirs = ckpt.get("arch", {})
        shape = getattr(model, "shape", None)
        raise CheckpointError(
            f"{ckpt.get('path')}: weights do not fit this network (checkpoint width {theirs.get('width')}, "
            f"{theirs.get('params')} parameters; this network: {shape.describe() if shape is not None else '?'}); "
            "use the checkpoint's own settings"
        ) from None
    check_finite(state, ckpt.get("path"))


def check_finite(state: dict[str, Any], path: Any) -> None:
    """Refuse a state dict holding NaN or infinite values (a run that diverged and was
    saved anyway, or a damaged file): evaluating it would report chance accuracy and a
    NaN loss as if they were results. One pass over the floating tensors."""
    for name, t in state.items():
        if isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise CheckpointError(
                f"{path} holds non-finite weights (NaN or infinity in {str(name)[:60]}); "
                "the run diverged before it was saved: use an earlier checkpoint"
            )


def first_line(e: BaseException) -> str:
    """An exception's message in one line (its type when it has none), for the user."""
    text = str(e).strip()
    return text.splitlines()[0][:200] if text else type(e).__name__
