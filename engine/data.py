"""Data sources -> uint8 tensors, the validation split, and device-side batches.

Sources (the ``--data`` value):

* ``cifar10``   torchvision's CIFAR10, downloaded once into the cache folder;
* ``synthetic`` a generated, learnable 10-class 32x32 set (seconds to train on);
* a path to a ``cifar-10-batches-py`` folder (or the folder holding one);
* a path to an image folder: ``train/<class>/*`` (and ``test/<class>/*`` if
  present), ``test/<class>/*`` alone (a test-only source: evaluation, not
  training; see :func:`require_training_split`), or class folders directly at
  its top;
* a ``.zip`` of any of those folders.

Every source becomes a :class:`DataBundle` of uint8 NCHW tensors. Images are
decoded with Pillow (:mod:`engine.imagedecode`); one that cannot be read, or is
over a size limit, is skipped and counted in the bundle's notes. Pickles are
read with :mod:`engine.safepickle`. Files and zip entries are read only when
they are regular files within a size limit (see "limits and reading" below for
the limits and the environment variables that raise them). Bad input raises
:class:`DataError` with a one-line message. Decoded image folders and zips are
cached as one tensor file so a second start is fast.
Augmentation runs as batched tensor ops on the training device (see
:class:`Augmenter`); on CUDA the whole training set lives on the GPU.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import stat
import zipfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from . import imagedecode, safepickle
from .config import CIFAR_MEAN, CIFAR_STD, default_val_size
from .files import atomic_write_bytes

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".ppm", ".tif", ".tiff"}
CACHE_FORMAT = 3  # 3: decoded with Pillow (was torchvision), test-only sources
SYNTHETIC_SEED = 20240601


class DataError(Exception):
    """A data source that cannot be used. The message is one line and says what to do."""


@dataclass
class ImageSet:
    x: torch.Tensor  # uint8, (N, 3, 32, 32)
    y: torch.Tensor  # int64, (N,)

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def select(self, idx: np.ndarray | torch.Tensor) -> "ImageSet":
        idx_t = torch.as_tensor(idx, dtype=torch.long)
        return ImageSet(self.x[idx_t], self.y[idx_t])


@dataclass
class DataBundle:
    train: ImageSet
    test: Optional[ImageSet]
    classes: tuple[str, ...]
    source: str  # what the user asked for, normalised (absolute path for files)
    kind: str  # cifar10 | synthetic | batches | folder | zip
    notes: list[str] = field(default_factory=list)  # things a user should hear about
    flat: bool = False  # an image folder/zip with class folders at its top (no train/ or test/)
    # A folder/zip with only test/<class>/ images: ``train`` is empty (0 images) and
    # ``test`` holds them. It can be evaluated on; see :func:`require_training_split`.
    test_only: bool = False


# ----------------------------------------------------------------------- locations


def cache_dir() -> Path:
    """Where downloads and decoded-image caches live (``CIFAR_TUI_CACHE_DIR`` overrides)."""
    env = os.environ.get("CIFAR_TUI_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("cifar-tui", appauthor=False))


# ------------------------------------------------------------------------- loading


# progress(message, done, total): called while a folder or zip of images is decoded
Progress = Callable[[str, int, int], None]


def load_data(source: str, *, use_cache: bool = True, download: bool = True,
              progress: Optional[Progress] = None) -> DataBundle:
    """Resolve ``source`` and load it. Raises :class:`DataError` with a one-line message.

    ``progress(message, done, total)``, if given, is called from this thread while
    images are decoded (a folder or zip the first time; a cached one is not decoded
    again), a few dozen times in all, and once more when the decoding is done."""
    src = str(source).strip()
    if src.lower() == "synthetic":
        return make_synthetic()
    if src.lower() in ("cifar10", "cifar-10"):
        return load_torchvision_cifar10(download=download)
    path = Path(src).expanduser()
    if not path.exists():
        raise DataError(
            f"--data {src}: no such file or folder; use cifar10, synthetic, or a path to a "
            "cifar-10-batches-py folder, an image folder or a zip"
        )
    try:
        return _load_path(path.resolve(), src, use_cache, progress)
    except OSError as e:  # permission denied, I/O error, ... anywhere below
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        raise DataError(f"--data {src}: cannot be read{where}: {e.strerror or e}") from None


def _load_path(path: Path, src: str, use_cache: bool, progress: Optional[Progress] = None) -> DataBundle:
    st = _regular_or_folder(path, f"--data {src}")  # a named pipe or device would block or never end
    if stat.S_ISDIR(st.st_mode):
        batches = _find_batches_dir(path)
        if batches is not None:
            return load_batches_dir(batches, source=str(path))
        return _cached(path, "folder", use_cache, lambda: load_image_folder(path, progress, cached=use_cache))
    if zipfile.is_zipfile(path):
        return _cached(path, "zip", use_cache, lambda: load_zip(path, progress, cached=use_cache))
    if path.suffix.lower() == ".zip":
        raise DataError(f"--data {path}: not a readable zip file (corrupt or truncated?); re-create it or point at the unpacked folder")
    raise DataError(
        f"--data {path}: a file that is not a zip; use a zip or a folder of images, "
        "a cifar-10-batches-py folder, cifar10 or synthetic"
    )


def load_torchvision_cifar10(download: bool = True) -> DataBundle:
    root = cache_dir() / "torchvision"
    try:
        from torchvision.datasets import CIFAR10
    except Exception as e:  # pragma: no cover - torchvision is a dependency
        raise DataError(f"torchvision is not usable ({e}); reinstall cifar-tui's dependencies") from None
    try:
        train = CIFAR10(str(root), train=True, download=download)
        test = CIFAR10(str(root), train=False, download=download)
    except Exception as e:  # URLError, RuntimeError("Dataset not found"), OSError, ...
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(
            f"CIFAR-10 is not in {root} and could not be downloaded ({reason}); "
            "connect to the internet once, or use --data PATH with a cifar-10-batches-py folder, "
            "an image folder or a zip"
        ) from None

    def conv(ds) -> ImageSet:
        x = torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2).contiguous()
        return ImageSet(x, torch.as_tensor(ds.targets, dtype=torch.long))

    return DataBundle(conv(train), conv(test), tuple(train.classes), "cifar10", "cifar10")


# ---- limits and reading -------------------------------------------------------------
#
# Files are read only when they are regular files (a named pipe would block
# forever, a device would never end) and only up to a size limit, checked from
# the file's or zip entry's declared size before anything is read or unpacked.
# The limits can be raised with environment variables (whole numbers):
#
#   CIFAR_TUI_MAX_IMAGE_MB      one image file or zip entry, in MiB (default 64)
#   CIFAR_TUI_MAX_IMAGE_PIXELS  one image's width x height (default 4096*4096);
#                               Pillow's own guard still refuses ~179 million
#   CIFAR_TUI_MAX_PICKLE_MB     one CIFAR pickle file or zip entry, in MiB
#                               (default 256; CIFAR-100's training file is 150)

MB = 1 << 20
MAX_IMAGE_MB = 64
MAX_IMAGE_PIXELS = 4096 * 4096
MAX_PICKLE_MB = 256
ENV_IMAGE_MB = "CIFAR_TUI_MAX_IMAGE_MB"
ENV_IMAGE_PIXELS = "CIFAR_TUI_MAX_IMAGE_PIXELS"
ENV_PICKLE_MB = "CIFAR_TUI_MAX_PICKLE_MB"


def _env_limit(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise DataError(f"{name}={raw!r} is not a positive whole number; unset it or use e.g. {default}")
    return value


def image_byte_limit() -> int:
    return _env_limit(ENV_IMAGE_MB, MAX_IMAGE_MB) * MB


def image_pixel_limit() -> int:
    return _env_limit(ENV_IMAGE_PIXELS, MAX_IMAGE_PIXELS)


def pickle_byte_limit() -> int:
    return _env_limit(ENV_PICKLE_MB, MAX_PICKLE_MB) * MB


class _Unusable(Exception):
    """A file that is not read: not a regular file, or a damaged zip entry. str(): why."""


class _TooLarge(_Unusable):
    def __init__(self, size: int, limit: int, env: str, unpacked: bool = False):
        what = "unpacks to" if unpacked else "is"
        super().__init__(f"{what} {size / MB:,.1f} MiB, over the {limit / MB:,.0f} MiB limit (set {env} to raise it)")


def _file_kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def _read_regular(path: Path, limit: int, env: str) -> bytes:
    """A regular file's bytes; raises :class:`_Unusable` (or OSError) for anything else.

    Opened non-blocking, so a named pipe does not hang the open; checked with fstat.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _Unusable(f"{_file_kind(st.st_mode)}, not a regular file")
        if st.st_size > limit:
            raise _TooLarge(st.st_size, limit, env)
        with open(fd, "rb", closefd=False) as fh:
            data = fh.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:  # it grew while we read it
        raise _TooLarge(len(data), limit, env)
    return data


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int, env: str) -> bytes:
    """A zip entry's bytes, refused before unpacking when its declared size is over ``limit``.

    zipfile stops at the declared size (and checks the CRC), so a lying header
    cannot unpack more than it declares.
    """
    if info.file_size > limit:
        raise _TooLarge(info.file_size, limit, env, unpacked=True)
    try:
        return zf.read(info)
    except Exception as e:  # BadZipFile (CRC), zlib.error, EOFError, encrypted, unsupported method...
        raise _Unusable(f"a damaged or unsupported zip entry ({type(e).__name__}: {_one_line(e)})") from None


def _one_line(e: object, limit: int = 120) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _regular_or_folder(path: Path, what: str) -> os.stat_result:
    """stat ``path``; a DataError unless it is a regular file or a folder."""
    st = os.stat(path)
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        raise DataError(f"{what}: {_file_kind(st.st_mode)}, not a file or folder; point at a folder, a zip or an image file")
    return st


# ---- CIFAR python batches ---------------------------------------------------------


def safe_pickle_load(data: bytes, what: str = "file"):
    """Load a pickle that may hold only dicts, lists, strings, bytes, numbers and numeric
    numpy arrays (see :mod:`engine.safepickle`). Raises :class:`DataError`."""
    try:
        return safepickle.load_plain(bytes(data))
    except safepickle.Refused as e:
        raise DataError(f"{what}: not a plain data pickle ({_one_line(e)}); it was not loaded") from None
    except safepickle.NotAPickle as e:
        raise _NotAPickleError(f"{what}: not a readable pickle ({_one_line(e)})") from None


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
        return f"{type(v).__name__} {_one_line(repr(v[:24]), 30)}"
    if isinstance(v, (bool, float, np.generic)) or (isinstance(v, int) and abs(v) < 10**20):
        return f"{type(v).__name__} {_one_line(repr(v), 30)}"
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
        test = ImageSet(torch.from_numpy(tx.copy()), torch.from_numpy(ty))
    classes, named_by = CIFAR10_CLASSES, "CIFAR-10 has"
    if "batches.meta" in names:
        classes = _meta_classes(safe_pickle_load(read("batches.meta"), base + "batches.meta"), base + "batches.meta")
        named_by = "batches.meta names"
    train = ImageSet(torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys)))
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
        try:
            return _read_regular(path / name, limit, ENV_PICKLE_MB)
        except _Unusable as e:
            hint = "" if isinstance(e, _TooLarge) else "; a CIFAR batch is a pickle file: replace or remove it"
            raise DataError(f"{path / name}: {e}{hint}") from None
        except OSError as e:
            raise DataError(f"{path / name}: cannot be read ({e.strerror or e})") from None

    return _batches_bundle(f"{path}{os.sep}", names, read, source or str(path), "batches")


def _zip_batches(zf: zipfile.ZipFile, prefix: str, path: Path) -> DataBundle:
    limit = pickle_byte_limit()
    members = {i.filename[len(prefix):]: i for i in zf.infolist()
               if i.filename.startswith(prefix) and "/" not in i.filename[len(prefix):] and not i.is_dir()}

    def read(name: str) -> bytes:
        try:
            return _read_member(zf, members[name], limit, ENV_PICKLE_MB)
        except _Unusable as e:
            hint = "" if isinstance(e, _TooLarge) else "; re-create the zip or point at the unpacked folder"
            raise DataError(f"{path}:{prefix}{name}: {e}{hint}") from None

    return _batches_bundle(f"{path}:{prefix}", set(members), read, str(path), "zip")


# ---- image folders and zips --------------------------------------------------------


def _is_image(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES and not os.path.basename(name).startswith(".")


def _layout(entries: Iterable[tuple[str, ...]]) -> tuple[dict[str, dict[str, list]], str]:
    """Group image entries (path parts) into splits -> class -> items.

    Accepts ``[prefix/]train/<class>/<file>`` (+ ``test/``), ``[prefix/]test/<class>/<file>``
    alone (a test-only source), or ``[prefix/]<class>/<file>``. Returns (splits, layout)
    with layout "train", "test" (test only) or "" (class folders at the top).
    """
    entries = [e for e in entries if _is_image(e[-1]) and not any(p.startswith(("__MACOSX", ".")) for p in e[:-1])]
    splits: dict[str, dict[str, list]] = {}
    for parts in entries:
        parts_l = [p.lower() for p in parts]
        for split in ("train", "test"):
            if split in parts_l[:-2]:
                i = len(parts_l) - 1 - parts_l[::-1].index(split)  # last occurrence
                if i == len(parts) - 3:
                    splits.setdefault(split, {}).setdefault(parts[i + 1], []).append(parts)
                    break
        else:
            if len(parts) >= 2:
                splits.setdefault("", {}).setdefault(parts[-2], []).append(parts)
    if "train" in splits:
        return {k: v for k, v in splits.items() if k in ("train", "test")}, "train"
    if "test" in splits:
        return {"test": splits["test"]}, "test"
    if "" in splits and len(splits[""]) >= 2:
        return {"train": splits[""]}, ""
    return {}, ""


_UNREADABLE, _TOO_LARGE = 1, 2


@dataclass
class _Decoded:
    x: torch.Tensor  # uint8 (n_ok, 3, 32, 32)
    ok: np.ndarray  # bool over the items
    resized: int
    failures: list[tuple[int, int, str]]  # (item index, _UNREADABLE | _TOO_LARGE, why), by index


def _why(e: BaseException) -> tuple[int, str]:
    if isinstance(e, _TooLarge):
        return _TOO_LARGE, str(e)
    if isinstance(e, imagedecode.ImageTooLarge):
        return _TOO_LARGE, f"{e} (set {ENV_IMAGE_PIXELS} to raise it)"
    if isinstance(e, _Unusable):
        return _UNREADABLE, str(e)
    if isinstance(e, Image.DecompressionBombError):
        return _TOO_LARGE, _one_line(e, 100)
    if isinstance(e, UnidentifiedImageError):
        return _UNREADABLE, "not an image Pillow can read"
    return _UNREADABLE, f"{type(e).__name__}: {_one_line(e, 80)}"


def _decode_many(items: list, read: Callable[[object], bytes],
                 progress: Optional[Callable[[int], None]] = None) -> _Decoded:
    """Decode images to uint8 (N,3,32,32) with Pillow (see :mod:`engine.imagedecode`).

    An item that cannot be read or decoded, or is over a size limit, is skipped and
    reported in ``failures``; nothing here raises for a bad image. ``progress(done)``
    is called from this thread after each chunk (a few dozen times).
    """
    n = len(items)
    out = np.empty((n, 3, 32, 32), dtype=np.uint8)
    ok = np.ones(n, dtype=bool)
    failures: dict[int, tuple[int, str]] = {}
    max_pixels = image_pixel_limit()

    def work(lo: int, hi: int) -> int:
        resized = 0
        for i in range(lo, hi):
            try:
                arr, r = imagedecode.decode_rgb32(read(items[i]), max_pixels)
            except Exception as e:  # whatever the file does, it is skipped and counted
                ok[i] = False
                failures[i] = _why(e)
                continue
            out[i] = arr.transpose(2, 0, 1)
            resized += r
        return resized

    # Pillow releases the GIL while it decodes and resizes; small images are mostly
    # Python overhead, so a few threads are enough.
    workers = max(1, min(4, os.cpu_count() or 1))
    step = max(64, -(-n // (workers * 8)))
    resized = 0
    with ThreadPoolExecutor(workers) as pool:
        starts = range(0, n, step)
        for lo, r in zip(starts, pool.map(lambda lo: work(lo, min(lo + step, n)), starts)):
            resized += r
            if progress is not None:
                progress(min(lo + step, n))
    x = torch.from_numpy(out if ok.all() else out[ok])
    return _Decoded(x, ok, resized, [(i, *failures[i]) for i in sorted(failures)])


def _skip_notes(failures: list[tuple[str, int, str]], where: str = "") -> list[str]:
    """Notes for skipped images: [(name, kind, why)] -> one line per kind, naming the first."""
    notes = []
    for kind, label in ((_UNREADABLE, "unreadable"), (_TOO_LARGE, "oversized")):
        hits = [(name, why) for name, k, why in failures if k == kind]
        if hits:
            notes.append(f"skipped {len(hits)} {label} image(s){where}: {hits[0][0]} ({hits[0][1]})")
    return notes


def _empty_set() -> ImageSet:
    return ImageSet(torch.empty((0, 3, 32, 32), dtype=torch.uint8), torch.empty(0, dtype=torch.long))


def _build_bundle(path: Path, kind: str, splits: dict, read: Callable, flat: bool = False,
                  notes: Optional[list[str]] = None, progress: Optional[Progress] = None,
                  cached: bool = True) -> DataBundle:
    if not splits:
        raise DataError(
            f"--data {path}: no class sub-folders with images; expected train/<class>/*.png "
            "(and optionally test/<class>/*), test/<class>/* alone, or <class>/*.png at the top"
        )
    test_only = "train" not in splits
    classes = tuple(sorted(splits["test" if test_only else "train"]))
    if len(classes) < 2:
        raise DataError(f"--data {path}: found only one class folder ({classes[0]}); a classifier needs at least two")
    sets: dict[str, ImageSet] = {}
    notes = list(notes or [])
    total = sum(len(files) for by_class in splits.values() for files in by_class.values())
    message = f"decoding {total:,} images" + (" once, cached for next time" if cached else "")
    before = 0
    if progress is not None:
        progress(message, 0, total)
    for split, by_class in splits.items():
        unknown = sorted(set(by_class) - set(classes))
        if unknown:
            raise DataError(f"--data {path}: {split}/ has class folders not in train/: {', '.join(unknown[:5])}")
        items, labels = [], []
        for ci, c in enumerate(classes):
            files = sorted(by_class.get(c, []))
            items += files
            labels += [ci] * len(files)
        tick = None if progress is None else (lambda done, b=before: progress(message, b + done, total))
        dec = _decode_many(items, read, tick)
        before += len(items)
        where = f" in {split or 'train'}/"
        fails = [("/".join(items[i][-2:]), k, why) for i, k, why in dec.failures]
        notes += _skip_notes(fails, where)
        if dec.resized:
            notes.append(f"resized {dec.resized} image(s){where} to 32x32")
        y = torch.tensor(labels, dtype=torch.long)[torch.from_numpy(dec.ok)]
        if len(y) == 0:
            first = f" ({fails[0][0]}: {fails[0][2]})" if fails else ""
            raise DataError(f"--data {path}: none of the images in {split}/ could be decoded{first}; "
                            "check that they are PNG or JPEG files")
        sets[split] = ImageSet(dec.x, y)
    return DataBundle(sets.get("train") or _empty_set(), sets.get("test"), classes, str(path), kind, notes,
                      flat, test_only)


def _walk(root: Path) -> tuple[list[tuple[str, ...]], list[str]]:
    """Every non-folder entry under ``root`` as path parts (hidden folders skipped),
    and the folders that could not be listed."""
    files: list[tuple[str, ...]] = []
    errors: list[str] = []
    for here, dirs, names in os.walk(root, onerror=lambda e: errors.append(str(e.filename or e))):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        rel = Path(here).relative_to(root).parts
        files += [rel + (n,) for n in sorted(names)]
    return files, errors


def load_image_folder(path: Path, progress: Optional[Progress] = None, cached: bool = False) -> DataBundle:
    files, errors = _walk(path)
    notes = [f"could not read {len(errors)} folder(s), e.g. {errors[0]}; their images are left out"] if errors else []
    splits, layout = _layout(files)
    limit = image_byte_limit()
    return _build_bundle(path, "folder", splits, lambda parts: _read_regular(path.joinpath(*parts), limit, ENV_IMAGE_MB),
                         flat=layout == "" and bool(splits), notes=notes, progress=progress, cached=cached)


def _open_zip(path: Path, what: str) -> tuple[zipfile.ZipFile, list[zipfile.ZipInfo]]:
    try:
        zf = zipfile.ZipFile(path)
        return zf, [i for i in zf.infolist() if not i.is_dir()]
    except Exception as e:  # BadZipFile, OSError, NotImplementedError, ValueError...
        raise DataError(f"{what}: not a readable zip file ({_one_line(e)}); re-create it or point at the unpacked folder") from None


def load_zip(path: Path, progress: Optional[Progress] = None, cached: bool = False) -> DataBundle:
    zf, infos = _open_zip(path, f"--data {path}")
    with zf:
        # A zipped cifar-10-batches-py folder.
        batch_names = [i.filename for i in infos if i.filename.rsplit("/", 1)[-1] == "data_batch_1"]
        if batch_names:
            return _zip_batches(zf, batch_names[0][: -len("data_batch_1")], path)
        by_parts = {tuple(i.filename.split("/")): i for i in infos}
        splits, layout = _layout(by_parts)
        limit = image_byte_limit()
        return _build_bundle(path, "zip", splits, lambda parts: _read_member(zf, by_parts[parts], limit, ENV_IMAGE_MB),
                             flat=layout == "" and bool(splits), progress=progress, cached=cached)


# ---- test-only sources and class matching ----------------------------------------------


def require_training_split(bundle: DataBundle) -> None:
    """Raise :class:`DataError` unless ``bundle`` has training images (call before training)."""
    if bundle.test_only:
        raise DataError(
            f"{bundle.source} has only a test split (test/<class>/...); it cannot be used for training; "
            "train on cifar10 or a source with train/<class>/ images, and evaluate on this one with "
            f"cifar-tui eval CHECKPOINT --data {bundle.source}"
        )
    if len(bundle.train) == 0:
        raise DataError(f"{bundle.source} has no training images; use a source with images in train/<class>/")


def match_classes(data_classes: Sequence[str], ckpt_classes: Sequence[str], what: str) -> tuple[torch.Tensor, Optional[str]]:
    """Map the data's class indices to the checkpoint's, by class name.

    Returns ``(remap, note)``: ``remap[i]`` is the checkpoint's index of the data's
    class ``i``; ``note`` is None when the classes are identical and in the same
    order, else a line for the user. A data class the checkpoint does not know
    raises :class:`DataError`; classes the data lacks are allowed.
    """
    data_classes, ckpt_classes = list(data_classes), list(ckpt_classes)
    if data_classes == ckpt_classes:
        return torch.arange(len(data_classes)), None
    index = {c: i for i, c in enumerate(ckpt_classes)}
    extra = [c for c in data_classes if c not in index]
    if extra:
        more = f" and {len(extra) - 5} more" if len(extra) > 5 else ""
        known = ", ".join(ckpt_classes[:10]) + (", ..." if len(ckpt_classes) > 10 else "")
        raise DataError(f"the classes of {what} differ from the checkpoint's: it has no class {', '.join(extra[:5])}{more} "
                        f"(its classes: {known}); remove those class folders or use a checkpoint trained on them")
    remap = torch.tensor([index[c] for c in data_classes], dtype=torch.long)
    missing = [c for c in ckpt_classes if c not in set(data_classes)]
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        return remap, (f"{what} has {len(data_classes)} of the checkpoint's {len(ckpt_classes)} classes "
                       f"(not {', '.join(missing[:5])}{more}); mapped {len(data_classes)} classes by name")
    return remap, f"{what} lists the checkpoint's classes in another order; mapped {len(data_classes)} classes by name"


# ---- unlabelled images for prediction -------------------------------------------------


@dataclass
class PredictInputs:
    """Unlabelled images for prediction, in input order (see :func:`read_predict_inputs`)."""

    x: torch.Tensor  # uint8 (N,3,32,32), the decoded images only
    names: list[str]  # one per decoded image
    ids: list[int]  # one per decoded image: its position among all the images given (skipped ones count)
    notes: list[str]
    skipped: list[tuple[int, str, str]]  # (position, name, why) of each image that could not be decoded

    @property
    def total(self) -> int:
        return len(self.ids) + len(self.skipped)


def read_predict_inputs(inputs: list[str]) -> PredictInputs:
    """Unlabelled images for prediction from files, folders, zips or CIFAR-style pickles.

    Input order: arguments in the order given, a folder's or zip's images sorted by
    path, a pickle's rows in order. An image that cannot be decoded is skipped, listed
    in ``skipped`` and counted in ``notes``; the others keep their position as ``ids``
    (so an ID in a CSV of predictions always names the same input). Raises
    :class:`DataError` for an input that is not usable at all, or when no image at
    all could be decoded.
    """
    chunks: list[torch.Tensor] = []
    names: list[str] = []
    ids: list[int] = []
    failures: list[tuple[str, int, str]] = []
    skipped: list[tuple[int, str, str]] = []
    resized = offset = 0
    for arg in inputs:
        x, got, fails, r, positions, count = _predict_input(arg)
        chunks.append(x)
        names += got
        ids += [offset + i for i in positions]
        failures += [(name, k, why) for _, name, k, why in fails]
        skipped += [(offset + i, name, why) for i, name, _, why in fails]
        resized += r
        offset += count
    notes = _skip_notes(failures)
    if failures and not names:
        name, _, why = failures[0]
        raise DataError(f"cannot decode any of the {len(failures)} image(s) (e.g. {name}: {why}); "
                        "give PNG or JPEG files")
    if resized:
        notes.append(f"resized {resized} image(s) to 32x32")
    x = torch.cat(chunks) if chunks else torch.empty((0, 3, 32, 32), dtype=torch.uint8)
    return PredictInputs(x, names, ids, notes, sorted(skipped))


def load_predict_inputs(inputs: list[str]) -> tuple[torch.Tensor, list[str], list[str]]:
    """``(images, names, notes)`` of :func:`read_predict_inputs` (the decoded images only)."""
    got = read_predict_inputs(inputs)
    return got.x, got.names, got.notes


def _predict_input(arg: str) -> tuple[torch.Tensor, list[str], list[tuple[int, str, int, str]], int, list[int], int]:
    """One argument of :func:`read_predict_inputs` -> (images, their names, failures as
    (position, name, kind, why), resized, the decoded images' positions, how many images)."""
    p = Path(arg).expanduser()
    try:
        st = _regular_or_folder(p, arg)
    except FileNotFoundError:
        raise DataError(f"{arg}: no such file or folder") from None
    except OSError as e:
        raise DataError(f"{arg}: cannot be read ({e.strerror or e})") from None
    if stat.S_ISDIR(st.st_mode):
        files, _ = _walk(p)
        paths = sorted(p.joinpath(*parts) for parts in files if _is_image(parts[-1]))
        if not paths:
            raise DataError(f"{arg}: a folder with no images (png, jpg, ...)")
        limit = image_byte_limit()
        return _decoded_named(paths, lambda q: _read_regular(q, limit, ENV_IMAGE_MB), str)
    if zipfile.is_zipfile(p):
        zf, infos = _open_zip(p, arg)
        with zf:
            members = sorted((i for i in infos if _is_image(i.filename) and not i.filename.startswith("__MACOSX")),
                             key=lambda i: i.filename)
            if not members:
                raise DataError(f"{arg}: a zip with no images")
            limit = image_byte_limit()
            return _decoded_named(members, lambda i: _read_member(zf, i, limit, ENV_IMAGE_MB), lambda i: f"{arg}:{i.filename}")
    if _is_image(p.name):
        limit = image_byte_limit()
        return _decoded_named([p], lambda q: _read_regular(q, limit, ENV_IMAGE_MB), str)
    x = _pickle_images(p, arg)
    n = x.shape[0]
    return x, [f"{arg}[{i}]" for i in range(n)], [], 0, list(range(n)), n


def _decoded_named(items: list, read: Callable, name: Callable):
    dec = _decode_many(items, read)
    positions = [int(i) for i in np.flatnonzero(dec.ok)]
    names = [name(items[i]) for i in positions]
    fails = [(i, name(items[i]), k, why) for i, k, why in dec.failures]
    return dec.x, names, fails, dec.resized, positions, len(items)


def _pickle_images(p: Path, arg: str) -> torch.Tensor:
    """uint8 (N,3,32,32) from a CIFAR-style pickle's 'data' array."""
    try:
        raw = _read_regular(p, pickle_byte_limit(), ENV_PICKLE_MB)
    except _Unusable as e:
        raise DataError(f"{arg}: {e}") from None
    except OSError as e:
        raise DataError(f"{arg}: cannot be read ({e.strerror or e})") from None
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
    if arr.ndim == 2 and arr.shape[1] == 3072:
        return torch.from_numpy(arr.reshape(-1, 3, 32, 32).copy())
    if arr.ndim == 4 and arr.shape[1:] == (32, 32, 3):
        return torch.from_numpy(arr.copy()).permute(0, 3, 1, 2).contiguous()
    if arr.ndim == 4 and arr.shape[1:] == (3, 32, 32):
        return torch.from_numpy(arr.copy())
    raise DataError(f"{arg}: 'data' has shape {arr.shape}; expected N x 3072 or N x 32 x 32 x 3 uint8")


# ---- the decoded-image cache -----------------------------------------------------------


def _cache_file(path: Path, kind: str) -> Path:
    st = path.stat()
    if path.is_dir():
        # A folder's own mtime changes when entries are added or removed at its top;
        # include the class folders' mtimes too so adding images invalidates the cache.
        stamps = [f"{p}:{p.stat().st_mtime_ns}" for p in sorted(path.rglob("*")) if p.is_dir()]
        extra = "|".join(stamps)
    else:
        extra = f"{st.st_size}"
    key = hashlib.sha256(f"{CACHE_FORMAT}|{kind}|{path}|{st.st_mtime_ns}|{extra}".encode()).hexdigest()[:24]
    return cache_dir() / "decoded" / f"{key}.pt"


def _cached(path: Path, kind: str, use_cache: bool, build: Callable[[], DataBundle]) -> DataBundle:
    if not use_cache:
        return build()
    cfile = _cache_file(path, kind)
    if cfile.is_file():
        try:
            d = torch.load(cfile, map_location="cpu", weights_only=True)
            test = ImageSet(d["test_x"], d["test_y"]) if d.get("test_x") is not None else None
            return DataBundle(ImageSet(d["train_x"], d["train_y"]), test, tuple(d["classes"]), str(path), kind,
                              list(d.get("notes", [])), bool(d.get("flat", False)), bool(d.get("test_only", False)))
        except Exception:
            pass  # a damaged cache entry is rebuilt below
    bundle = build()
    payload = {
        "train_x": bundle.train.x, "train_y": bundle.train.y,
        "test_x": bundle.test.x if bundle.test else None,
        "test_y": bundle.test.y if bundle.test else None,
        "classes": list(bundle.classes), "notes": bundle.notes, "flat": bundle.flat,
        "test_only": bundle.test_only,
    }
    try:
        cfile.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(cfile, lambda fh: torch.save(payload, fh))
    except (OSError, RuntimeError):
        pass  # the cache is an optimisation; a read-only cache folder is not an error
    return bundle


# ---- synthetic ---------------------------------------------------------------------


def make_synthetic(n_train: int = 10_000, n_test: int = 2_000, seed: int = SYNTHETIC_SEED) -> DataBundle:
    """A learnable 10-class set: each class is a smooth colour pattern, shifted, tinted and noisy."""
    g = torch.Generator().manual_seed(seed)
    k = 10
    templates = torch.rand((k, 3, 4, 4), generator=g)
    templates = F.interpolate(templates, size=(32, 32), mode="bicubic", align_corners=False).clamp(0, 1)

    def sample(n: int) -> ImageSet:
        y = torch.arange(n) % k
        y = y[torch.randperm(n, generator=g)]
        # Each image is its class pattern blended with another class's pattern and a
        # per-image colour cast, so the task is learnable but not trivial.
        other = torch.randint(0, k, (n,), generator=g)
        a = 0.55 + 0.3 * torch.rand((n, 1, 1, 1), generator=g)
        x = a * templates[y] + (1 - a) * templates[other]
        x = x + 0.15 * (torch.rand((n, 3, 1, 1), generator=g) - 0.5)
        shifts = torch.randint(-4, 5, (n, 2), generator=g)
        for sx in range(-4, 5):  # batched roll by shift value
            m = shifts[:, 0] == sx
            if m.any():
                x[m] = torch.roll(x[m], sx, dims=3)
        for sy in range(-4, 5):
            m = shifts[:, 1] == sy
            if m.any():
                x[m] = torch.roll(x[m], sy, dims=2)
        x = x * (0.6 + 0.8 * torch.rand((n, 1, 1, 1), generator=g))  # brightness
        x = x + 0.3 * torch.randn(x.shape, generator=g)  # noise
        return ImageSet((x.clamp(0, 1) * 255).round().to(torch.uint8), y.long())

    return DataBundle(sample(n_train), sample(n_test), CIFAR10_CLASSES, "synthetic", "synthetic")


# --------------------------------------------------------------------------- splits


def split_indices(
    labels: torch.Tensor | np.ndarray,
    val_size: Optional[int],
    subset: Optional[int],
    seed: int,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Seeded, stratified split of the training images into (train, val) indices.

    ``val_size`` None -> :func:`default_val_size`. ``subset`` keeps that many of the
    remaining training images (stratified too). Returns (train_idx, val_idx, notes).
    """
    y = np.asarray(labels, dtype=np.int64)
    n = len(y)
    notes: list[str] = []
    if val_size is None:
        val_size = default_val_size(n)
    if val_size >= n:
        raise DataError(f"--val-size {val_size} leaves no training images (the source has {n}); use a smaller --val-size")
    rng = np.random.default_rng([seed, 0x5A17])
    val_idx = _stratified_take(y, np.arange(n), val_size, rng)
    rest = np.setdiff1d(np.arange(n), val_idx, assume_unique=True)
    if subset is not None and subset < len(rest):
        rest = np.sort(_stratified_take(y, rest, subset, rng))
    elif subset is not None and subset > len(rest):
        notes.append(f"--subset {subset} is more than the {len(rest)} training images left after validation; using all")
    return rest, np.sort(val_idx), notes


def _stratified_take(y: np.ndarray, pool: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Take ``count`` indices from ``pool`` with class proportions kept (largest remainder)."""
    if count <= 0:
        return np.empty(0, dtype=np.int64)
    classes, counts = np.unique(y[pool], return_counts=True)
    exact = counts * (count / len(pool))
    quota = np.floor(exact).astype(int)
    short = count - quota.sum()
    order = np.argsort(-(exact - quota), kind="stable")
    quota[order[:short]] += 1
    taken = []
    for c, q in zip(classes, quota):
        members = pool[y[pool] == c]
        taken.append(rng.permutation(members)[:q])
    return np.concatenate(taken)


# ----------------------------------------------------------------- batches + augment


@dataclass
class EpochPlan:
    """Everything random about one epoch, drawn up front from (seed, epoch), so a run resumed
    mid-epoch sees the same images, augmentations and mixup as one that never stopped."""

    order: torch.Tensor  # (N,) image order
    offsets: torch.Tensor  # (N, 2) crop offsets in [0, 2*pad]
    flips: torch.Tensor  # (N,) bool: True with probability flip_p (never when flip is off)
    gray: torch.Tensor  # (N,) bool: True with probability grayscale_p
    autocontrast: torch.Tensor  # (N,) bool: True with probability autocontrast_p
    mixup_draw: bool  # True with probability mixup_prob; engine.schedule.mixup_scheduled decides
    lam: np.ndarray  # (steps,) mixup lambdas, Beta(alpha, alpha)
    mix_seed: int  # seeds the per-step mixup permutations
    steps: int
    batch_size: int
    cutout: Optional[torch.Tensor] = None  # (N, 2) centres of the cutout squares (cfg.cutout > 0)


def make_epoch_plan(n: int, batch_size: int, seed: int, epoch: int, cfg, device: torch.device) -> EpochPlan:
    # The draws (and their order) are those of every earlier version: only the flip
    # threshold depends on flip_p, so old runs (flip_p 0.5) resume with identical plans.
    rng = np.random.default_rng([seed, epoch, 0xC1FA])
    order = rng.permutation(n)
    span = 2 * cfg.crop_padding + 1
    offsets = rng.integers(0, span, size=(n, 2))
    flip_p = float(getattr(cfg, "flip_p", 0.5)) if cfg.flip else 0.0
    flips = rng.random(n) < flip_p
    gray = rng.random(n) < cfg.grayscale_p
    ac = rng.random(n) < cfg.autocontrast_p
    mixup_draw = bool(rng.random() < cfg.mixup_prob)
    steps = math.ceil(n / batch_size)
    lam = rng.beta(cfg.mixup_alpha, cfg.mixup_alpha, size=steps)
    mix_seed = int(rng.integers(0, 2**31 - 1))
    # Draws added later come after all of the above, so older configs get the same plans.
    cut = rng.integers(0, 32, size=(n, 2)) if getattr(cfg, "cutout", 0) > 0 else None
    if cfg.flip and getattr(cfg, "flip_mode", "random") == "alternate":
        flips = alternate_flips(n, seed, epoch)[order]

    def t(a, dtype):
        return torch.as_tensor(a, dtype=dtype).to(device, non_blocking=True)

    return EpochPlan(
        t(order, torch.long), t(offsets, torch.long), t(flips, torch.bool), t(gray, torch.bool),
        t(ac, torch.bool), mixup_draw, lam, mix_seed, steps, batch_size,
        cutout=t(cut, torch.long) if cut is not None else None,
    )


def alternate_flips(n: int, seed: int, epoch: int) -> np.ndarray:
    """Alternating flips: image ``i`` of the training set is flipped in every other epoch
    (odd or even epochs, by a coin drawn once from the seed), so over two epochs each image
    is seen both ways. Indexed by image, not by position in an epoch's order."""
    first = np.random.default_rng([seed, 0xF11B]).random(n) < 0.5
    return first if epoch % 2 == 1 else ~first


def mixup_permutation(plan: EpochPlan, step: int, size: int, device: torch.device, salt: int = 0,
                      generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """The pairing of images for mixup at ``step`` (``salt``: the rank under torchrun), drawn
    on ``device``: no host work, no copy. The generator (one on ``device``, reusable) is
    re-seeded from (the epoch's mix seed, step, salt) on every call, so the result depends on
    (seed, epoch, step, rank) alone, never on earlier draws. On a CPU the permutations are the
    ones every earlier version drew."""
    g = generator if generator is not None else torch.Generator(device=device)
    g.manual_seed(plan.mix_seed + step + 1_000_003 * salt)
    return torch.randperm(size, generator=g, device=device)


class Augmenter:
    """Batched augmentation on the tensors' device, in the report's order: crop with zero
    padding, horizontal flip, grayscale, autocontrast, then normalisation.
    Input uint8 (B,3,32,32), output float32.

    The report applied torchvision's transforms to PIL images (RandomCrop(32, padding=4),
    RandomHorizontalFlip, RandomGrayscale, RandomAutocontrast, ToTensor, Normalize). The
    colour ops here work on integers as PIL does, so each image comes out as it would there:

    * grayscale is PIL's ``convert("L")``, ITU-R 601-2 luma in 16-bit fixed point with
      rounding, ``(19595 R + 38470 G + 7471 B + 32768) >> 16``, copied to the 3 channels
      (bit-exact; torchvision's tensor kernel uses 0.2989/0.587/0.114 and truncates, so it
      can be one level lower, and 255 white becomes 254 there);
    * autocontrast stretches each channel of each image from its own [min, max] to [0, 255]:
      ``floor((x - min) * 255 / (max - min))``, and leaves a flat channel alone (PIL and
      torchvision compute the same in floating point, so they can be one level apart when
      the exact value is a whole number).
    """

    def __init__(self, pad: int, device: torch.device, mean=CIFAR_MEAN, std=CIFAR_STD,
                 use_gray: bool = True, use_autocontrast: bool = True, reflect: bool = False, cutout: int = 0):
        self.pad = pad
        self.reflect = reflect  # reflect padding (pixels mirrored at the edge) instead of zeros
        self.cutout = cutout
        # Decided from the config, not per batch: a per-batch ``mask.any()`` would sync the GPU.
        self.use_gray = use_gray
        self.use_autocontrast = use_autocontrast
        self.mean = torch.tensor(mean, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, device=device).view(1, 3, 1, 1)
        self.ar = torch.arange(32, device=device)
        # PIL's fixed-point ITU-R 601-2 luma weights (0.299, 0.587, 0.114, scaled by 2**16).
        self.gray_w = torch.tensor([19595, 38470, 7471], dtype=torch.int32, device=device).view(1, 3, 1, 1)

    def __call__(self, x: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor,
                 gray: torch.Tensor, autocontrast: torch.Tensor, cutout_at: Optional[torch.Tensor] = None,
                 size: int = 32) -> torch.Tensor:
        """``cutout_at``: (B, 2) centres of the cutout squares; ``size``: resize the result
        to ``size`` x ``size`` pixels (progressive resizing)."""
        if self.pad > 0:
            x = self._crop(x, offsets)
        x = torch.where(flips[:, None, None, None], x.flip(3), x)
        if self.use_gray or self.use_autocontrast:
            xi = x.to(torch.int32)
            if self.use_gray:  # first, as in the report's pipeline
                lum = ((xi * self.gray_w).sum(dim=1, keepdim=True) + 32768) // 65536
                xi = torch.where(gray[:, None, None, None], lum.expand(-1, 3, -1, -1), xi)
            if self.use_autocontrast:
                lo = xi.amin(dim=(2, 3), keepdim=True)
                span = xi.amax(dim=(2, 3), keepdim=True) - lo
                stretched = (xi - lo) * 255 // span.clamp_min(1)
                xi = torch.where(autocontrast[:, None, None, None] & (span > 0), stretched, xi)
            x = xi
        x = (x.float().div_(255) - self.mean) / self.std
        if self.cutout > 0 and cutout_at is not None:
            x = x.masked_fill(self._square(cutout_at), 0.0)  # 0 after normalising: the mean colour
        if size != x.shape[-1]:
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        return x

    def _crop(self, x: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """A 32x32 crop at ``offsets`` of each image padded by ``pad`` (zeros or reflected)."""
        p, b = self.pad, x.shape[0]
        rows = offsets[:, 0:1] + self.ar
        cols = offsets[:, 1:2] + self.ar
        if self.reflect:  # index -k is pixel k, index 31 + k is pixel 31 - k: no padded copy
            rows = 31 - (31 - (rows - p).abs()).abs()
            cols = 31 - (31 - (cols - p).abs()).abs()
        else:
            x = F.pad(x, (p, p, p, p))
        bi = torch.arange(b, device=x.device)[:, None, None, None]
        ci = torch.arange(3, device=x.device)[None, :, None, None]
        return x[bi, ci, rows[:, None, :, None], cols[:, None, None, :]]

    def _square(self, centres: torch.Tensor) -> torch.Tensor:
        """(B, 1, 32, 32) masks: a ``cutout`` x ``cutout`` square per image at ``centres``,
        clipped at the edges."""
        top = centres - self.cutout // 2
        inside = (self.ar >= top[:, :, None]) & (self.ar < top[:, :, None] + self.cutout)  # (B, 2, 32)
        return (inside[:, 0, :, None] & inside[:, 1, None, :])[:, None]
