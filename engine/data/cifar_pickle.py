"""CIFAR python pickles: a ``cifar-10-batches-py`` folder (or a zip of one) for training,
and one CIFAR-style pickle of images for prediction.

Pickles are read with :mod:`engine.data.safepickle` (plain data only), within the
pickle size limit (:mod:`engine.data.limits`).
"""

from __future__ import annotations

import os
import re
import zipfile
from collections import Counter
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from .safepickle import NotAPickle, Refused, load_plain
from .bundle import CIFAR10_CLASSES, DataBundle, DataError, ImageSet, one_line
from .format import Request, SourceFormat, Unlabelled
from .limits import ENV_PICKLE_MB, TooLarge, Unusable, pickle_byte_limit, read_file, read_member

def safe_pickle_load(data: bytes, what: str = "file"):
    """Load a pickle that may hold only dicts, lists, strings, bytes, numbers and numeric
    numpy arrays (see :mod:`engine.safepickle`). Raises :class:`DataError`."""
    try:
        return load_plain(bytes(data))
    except Refused as e:
        raise DataError(f"{what}: not a plain data pickle ({one_line(e)}); it was not loaded") from None
    except NotAPickle as e:
        raise _NotAPickleError(f"{what}: not a readable pickle ({one_line(e)})") from None


class _NotAPickleError(DataError):
    pass


def _key(d: dict, name: str):
    if name in d:
        return d[name]
    return d.get(name.encode())


def _describe(v: object) -> str:
    """A short description of a value from a pickle, never its full repr (a nested
    list can stand for billions of elements, an int for millions of digits)."""
    if isinstance(v, (list, tuple, dict, set)):
        return f"{type(v).__name__} of {len(v)} items"
    if isinstance(v, (str, bytes)):
        return f"{type(v).__name__} {one_line(repr(v[:24]), 30)}"
    if isinstance(v, (bool, float, np.generic)) or (isinstance(v, int) and abs(v) < 10**20):
        return f"{type(v).__name__} {one_line(repr(v), 30)}"
    return type(v).__name__


def _batch_from_pickle(obj, what: str) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(obj, dict):
        raise DataError(f"{what}: expected a dict with 'data' and 'labels', found {type(obj).__name__}")
    data = _key(obj, "data")
    labels = _key(obj, "labels")
    if labels is None:
        labels = _key(obj, "fine_labels")
    if data is None or labels is None:
        raise DataError(f"{what}: expected keys 'data' and 'labels' (a CIFAR-10 python batch)")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        found = f"shape {data.shape} and type {data.dtype}" if isinstance(data, np.ndarray) else f"a {type(data).__name__}"
        raise DataError(f"{what}: 'data' has {found}; a CIFAR batch needs an N x 3072 uint8 numpy array")
    return data.reshape(-1, 3, 32, 32), _labels(labels, data.shape[0], what)


def _labels(labels, n: int, what: str) -> np.ndarray:
    """One whole-number class index per image, checked before numpy converts anything
    (a nested list that pickles to a few bytes can expand to billions of elements)."""
    if isinstance(labels, np.ndarray):
        if labels.ndim != 1 or labels.dtype.kind not in "iu":
            raise DataError(f"{what}: 'labels' is a {labels.dtype} array of shape {labels.shape}; "
                            "expected one whole-number class index per image")
    elif not isinstance(labels, (list, tuple)):
        raise DataError(f"{what}: 'labels' is a {type(labels).__name__}; expected a list of whole-number class indices")
    if len(labels) != n:
        raise DataError(f"{what}: {len(labels)} labels for {n} images; each image needs one label")
    if not isinstance(labels, np.ndarray):
        bad = next((v for v in labels if not (type(v) is int or isinstance(v, np.integer))), None)
        if bad is not None:
            raise DataError(f"{what}: a label is {_describe(bad)}; labels must be whole-number class indices (0, 1, ...)")
    if n:
        lo, hi = (int(labels.min()), int(labels.max())) if isinstance(labels, np.ndarray) else (int(min(labels)), int(max(labels)))
        if lo < 0 or hi > np.iinfo(np.int64).max:
            raise DataError(f"{what}: label {lo if lo < 0 else hi} is not a class index; labels must be 0, 1, ... (one per class)")
    return np.asarray(labels).astype(np.int64)


def _meta_classes(meta, what: str) -> tuple[str, ...]:
    names = _key(meta, "label_names") if isinstance(meta, dict) else None
    if names is None:
        return CIFAR10_CLASSES
    hint = "fix batches.meta or remove it (CIFAR-10's class names are then used)"
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, (str, bytes)) for n in names):
        raise DataError(f"{what}: 'label_names' is {_describe(names)}, not a list of class names; {hint}")
    classes = tuple(n.decode("utf-8", "replace") if isinstance(n, bytes) else n for n in names)
    if len(classes) < 2:
        raise DataError(f"{what}: 'label_names' names {len(classes)} class(es); a classifier needs at least two; {hint}")
    dups = sorted(c for c, k in Counter(classes).items() if k > 1)
    if dups:
        raise DataError(f"{what}: 'label_names' names {', '.join(dups[:3])} more than once; {hint}")
    return classes


def _check_labels(s: ImageSet, classes: Sequence[str], what: str, named_by: str = "CIFAR-10 has") -> None:
    if len(s) and (int(s.y.min()) < 0 or int(s.y.max()) >= len(classes)):
        bad = int(s.y.min()) if int(s.y.min()) < 0 else int(s.y.max())
        raise DataError(f"{what}: label {bad} is outside 0..{len(classes) - 1} ({named_by} {len(classes)} classes); "
                        "fix the labels or the class names")


_BATCH_NAME = re.compile(r"data_batch_([0-9]{1,3})")


def _batches_bundle(base: str, names: set[str], read: Callable[[str], bytes], source: str, kind: str) -> DataBundle:
    """A bundle from CIFAR python batch files. ``base`` + name says where a file is;
    ``read(name)`` returns its bytes or raises DataError."""

    def load(name: str) -> tuple[np.ndarray, np.ndarray]:
        return _batch_from_pickle(safe_pickle_load(read(name), base + name), base + name)

    batches = sorted((n for n in names if _BATCH_NAME.fullmatch(n)), key=lambda n: int(n[len("data_batch_"):]))
    if not batches:
        raise DataError(f"{base}data_batch_1: not found; a cifar-10-batches-py folder holds data_batch_1 ... 5")
    xs, ys = zip(*(load(n) for n in batches))
    test = None
    if "test_batch" in names:
        tx, ty = load("test_batch")
        test = ImageSet.from_numpy(tx.copy(), ty)
    classes, named_by = CIFAR10_CLASSES, "CIFAR-10 has"
    if "batches.meta" in names:
        classes = _meta_classes(safe_pickle_load(read("batches.meta"), base + "batches.meta"), base + "batches.meta")
        named_by = "batches.meta names"
    train = ImageSet.from_numpy(np.concatenate(xs), np.concatenate(ys))
    _check_labels(train, classes, base + "data_batch_*", named_by)
    if test is not None:
        _check_labels(test, classes, base + "test_batch", named_by)
    return DataBundle(train, test, classes, source, kind)


def _find_batches_dir(path: Path) -> Optional[Path]:
    if (path / "data_batch_1").is_file():
        return path
    inner = path / "cifar-10-batches-py"
    if (inner / "data_batch_1").is_file():
        return inner
    return None


def load_batches_dir(path: Path, source: Optional[str] = None) -> DataBundle:
    limit = pickle_byte_limit()
    names = {p.name for p in path.iterdir()}

    def read(name: str) -> bytes:
        return read_file(path / name, limit, ENV_PICKLE_MB, str(path / name),
                         hint="; a CIFAR batch is a pickle file: replace or remove it")

    return _batches_bundle(f"{path}{os.sep}", names, read, source or str(path), "batches")


def zip_batches(zf: zipfile.ZipFile, prefix: str, path: Path) -> DataBundle:
    limit = pickle_byte_limit()
    members = {i.filename[len(prefix):]: i for i in zf.infolist()
               if i.filename.startswith(prefix) and "/" not in i.filename[len(prefix):] and not i.is_dir()}

    def read(name: str) -> bytes:
        try:
            return read_member(zf, members[name], limit, ENV_PICKLE_MB)
        except Unusable as e:
            hint = "" if isinstance(e, TooLarge) else "; re-create the zip or point at the unpacked folder"
            raise DataError(f"{path}:{prefix}{name}: {e}{hint}") from None

    return _batches_bundle(f"{path}:{prefix}", set(members), read, str(path), "zip")


def _pickle_images(p: Path, arg: str) -> tuple[np.ndarray, Optional[list]]:
    """uint8 (N,3,32,32) from a CIFAR-style pickle's 'data' array, and its 'ids' (None: none)."""
    raw = read_file(p, pickle_byte_limit(), ENV_PICKLE_MB, arg)
    try:
        obj = safe_pickle_load(raw, arg)
    except _NotAPickleError:
        raise DataError(f"{arg}: not an image, folder, zip or CIFAR-style pickle; give .png/.jpg files, "
                        "a folder or zip of them, or a pickle with a 'data' array") from None
    arr = _key(obj, "data") if isinstance(obj, dict) else None
    if not isinstance(arr, np.ndarray):
        raise DataError(f"{arg}: a pickle without a 'data' array; expected a CIFAR-style dict with 'data' (N x 3072 uint8)")
    if arr.dtype != np.uint8:
        raise DataError(f"{arg}: 'data' holds {arr.dtype}, not uint8 pixels")
    ids = _pickle_ids(_key(obj, "ids"), arg)
    if arr.ndim == 2 and arr.shape[1] == 3072:
        return arr.reshape(-1, 3, 32, 32).copy(), ids
    if arr.ndim == 4 and arr.shape[1:] == (32, 32, 3):
        return np.ascontiguousarray(arr.transpose(0, 3, 1, 2)), ids
    if arr.ndim == 4 and arr.shape[1:] == (3, 32, 32):
        return arr.copy(), ids
    raise DataError(f"{arg}: 'data' has shape {arr.shape}; expected N x 3072 or N x 32 x 32 x 3 uint8")


def _pickle_ids(ids, arg: str) -> Optional[list]:
    """A pickle's 'ids' as a list (numpy integers made Python ints; other values left for
    :func:`engine.submission.ids_problem` to refuse), or None when it has none."""
    if ids is None:
        return None
    if isinstance(ids, np.ndarray):
        if ids.ndim != 1 or ids.dtype.kind not in "iu":
            raise DataError(f"{arg}: 'ids' is a {ids.dtype} array of shape {ids.shape}; "
                            "expected one whole-number ID per image")
        return [int(i) for i in ids.tolist()]
    if not isinstance(ids, (list, tuple)):
        raise DataError(f"{arg}: 'ids' is {_describe(ids)}; expected a list of whole-number IDs, one per image")
    return [int(i) if isinstance(i, np.integer) else i for i in ids]


def read_pickle_ids(path: str) -> tuple[int, Optional[list]]:
    """``(images, ids)`` of a CIFAR-style pickle (``ids`` None when it has none, unchecked).
    Raises :class:`DataError`."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(f"{path}: no such file; give the competition's pickle of unlabelled images")
    x, ids = _pickle_images(p, path)
    return x.shape[0], ids


def _read_unlabelled(p: Path, arg: str) -> Unlabelled:
    x, ids = _pickle_images(p, arg)
    n = x.shape[0]
    return Unlabelled(x, [f"{arg}[{i}]" for i in range(n)], [], 0, list(range(n)), n, ids)


def _load_batches(req: Request) -> DataBundle:
    assert req.path is not None
    return load_batches_dir(_find_batches_dir(req.path) or req.path, source=str(req.path))


# A cifar-10-batches-py folder, or a folder holding one (a zip of one: engine.data.zipped).
BATCHES = SourceFormat("batches", recognise=lambda p: p.is_dir() and _find_batches_dir(p) is not None,
                       load=_load_batches)
# One CIFAR-style pickle of images ('data': N x 3072 uint8), for prediction; tried last:
# any file that no other format recognised is read as one.
PICKLE = SourceFormat("pickle", recognise=lambda p: p.is_file(), unlabelled=_read_unlabelled)
