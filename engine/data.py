"""Data sources -> uint8 tensors, the validation split, and device-side batches.

Sources (the ``--data`` value):

* ``cifar10``   torchvision's CIFAR10, downloaded once into the cache folder;
* ``synthetic`` a generated, learnable 10-class 32x32 set (seconds to train on);
* a path to a ``cifar-10-batches-py`` folder (or the folder holding one);
* a path to an image folder: ``train/<class>/*`` (and ``test/<class>/*`` if
  present), or class folders directly at its top;
* a ``.zip`` of any of those folders.

Every source becomes a :class:`DataBundle` of uint8 NCHW tensors. Decoded image
folders and zips are cached as one tensor file so a second start is fast.
Augmentation runs as batched tensor ops on the training device (see
:class:`Augmenter`); on CUDA the whole training set lives on the GPU.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import pickle
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .config import CIFAR_MEAN, CIFAR_STD, default_val_size

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".ppm", ".tif", ".tiff"}
CACHE_FORMAT = 2
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


# ----------------------------------------------------------------------- locations


def cache_dir() -> Path:
    """Where downloads and decoded-image caches live (``CIFAR_TUI_CACHE_DIR`` overrides)."""
    env = os.environ.get("CIFAR_TUI_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("cifar-tui", appauthor=False))


# ------------------------------------------------------------------------- loading


def load_data(source: str, *, use_cache: bool = True, download: bool = True) -> DataBundle:
    """Resolve ``source`` and load it. Raises :class:`DataError` with a one-line message."""
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
    path = path.resolve()
    if path.is_dir():
        batches = _find_batches_dir(path)
        if batches is not None:
            return load_batches_dir(batches, source=str(path))
        return _cached(path, "folder", use_cache, lambda: load_image_folder(path))
    if zipfile.is_zipfile(path):
        return _cached(path, "zip", use_cache, lambda: load_zip(path))
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


# ---- CIFAR python batches ---------------------------------------------------------


class _SafeUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only: a hostile pickle cannot run code."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        if module == "_codecs":
            import _codecs

            return _codecs.encode
        if module.startswith("numpy") and module.endswith("multiarray"):
            from numpy._core import multiarray  # type: ignore[attr-defined]

            return getattr(multiarray, name)
        return getattr(np, name)


def safe_pickle_load(data: bytes | io.BufferedIOBase, what: str = "file"):
    """Load a pickle that may hold only dicts, lists, strings, bytes, numbers and numpy arrays."""
    fh = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
    try:
        return _SafeUnpickler(fh, encoding="bytes").load()
    except pickle.UnpicklingError as e:
        raise DataError(f"{what}: not a plain data pickle ({e}); it was not loaded") from None
    except Exception as e:
        raise DataError(f"{what}: not a readable pickle ({type(e).__name__}: {e})") from None


def _key(d: dict, name: str):
    if name in d:
        return d[name]
    return d.get(name.encode())


def _batch_from_pickle(obj, what: str) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(obj, dict):
        raise DataError(f"{what}: expected a dict with 'data' and 'labels', found {type(obj).__name__}")
    data = _key(obj, "data")
    labels = _key(obj, "labels")
    if labels is None:
        labels = _key(obj, "fine_labels")
    if data is None or labels is None:
        raise DataError(f"{what}: expected keys 'data' and 'labels' (a CIFAR-10 python batch)")
    arr = np.asarray(data)
    if arr.dtype != np.uint8 or arr.ndim != 2 or arr.shape[1] != 3072:
        raise DataError(f"{what}: 'data' has shape {arr.shape} and type {arr.dtype}; a CIFAR batch needs N x 3072 uint8 rows")
    lab = np.asarray(labels, dtype=np.int64)
    if lab.shape != (arr.shape[0],):
        raise DataError(f"{what}: {lab.shape[0] if lab.ndim else 0} labels for {arr.shape[0]} images")
    return arr.reshape(-1, 3, 32, 32), lab


def _find_batches_dir(path: Path) -> Optional[Path]:
    if (path / "data_batch_1").is_file():
        return path
    inner = path / "cifar-10-batches-py"
    if (inner / "data_batch_1").is_file():
        return inner
    return None


def load_batches_dir(path: Path, source: Optional[str] = None) -> DataBundle:
    files = sorted(path.glob("data_batch_*"))
    xs, ys = [], []
    for f in files:
        x, y = _batch_from_pickle(safe_pickle_load(f.read_bytes(), str(f)), str(f))
        xs.append(x)
        ys.append(y)
    test = None
    if (path / "test_batch").is_file():
        tx, ty = _batch_from_pickle(safe_pickle_load((path / "test_batch").read_bytes(), str(path / "test_batch")), str(path / "test_batch"))
        test = ImageSet(torch.from_numpy(tx.copy()), torch.from_numpy(ty))
    classes = CIFAR10_CLASSES
    meta = path / "batches.meta"
    if meta.is_file():
        m = safe_pickle_load(meta.read_bytes(), str(meta))
        names = _key(m, "label_names") if isinstance(m, dict) else None
        if names:
            classes = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    train = ImageSet(torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys)))
    _check_labels(train, classes, str(path))
    return DataBundle(train, test, classes, source or str(path), "batches")


def _check_labels(s: ImageSet, classes: Sequence[str], what: str) -> None:
    if len(s) and (int(s.y.min()) < 0 or int(s.y.max()) >= len(classes)):
        raise DataError(f"{what}: labels outside 0..{len(classes) - 1}")


# ---- image folders and zips --------------------------------------------------------


def _is_image(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES and not os.path.basename(name).startswith(".")


def _layout(entries: Iterable[tuple[str, ...]]) -> tuple[dict[str, dict[str, list]], str]:
    """Group image entries (path parts) into splits -> class -> items.

    Accepts ``[prefix/]train/<class>/<file>`` (+ ``test/``) or ``[prefix/]<class>/<file>``.
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
    if "" in splits and len(splits[""]) >= 2:
        return {"train": splits[""]}, ""
    return {}, ""


def _decode_many(items: list, read: Callable[[object], bytes]) -> tuple[torch.Tensor, np.ndarray, int]:
    """Decode images to uint8 (N,3,32,32). Returns (decoded images, ok mask over items, n_resized)."""
    import warnings

    # torchvision >= 0.29 announces, on every call, that its decoders will move to torchcodec.
    warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities of TorchVision",
                            category=DeprecationWarning)
    from torchvision.io import ImageReadMode, decode_image

    out = torch.empty((len(items), 3, 32, 32), dtype=torch.uint8)
    ok = np.ones(len(items), dtype=bool)
    resized = 0

    def work(i: int) -> int:
        try:
            raw = read(items[i])
            img = decode_image(torch.frombuffer(bytearray(raw), dtype=torch.uint8), mode=ImageReadMode.RGB)
        except Exception:
            ok[i] = False
            return 0
        if img.shape[-2:] != (32, 32):
            from torchvision.transforms.v2.functional import resize

            img = resize(img, [32, 32], antialias=True)
            out[i] = img
            return 1
        out[i] = img
        return 0

    workers = min(8, (os.cpu_count() or 2) * 2)
    with ThreadPoolExecutor(workers) as pool:
        resized = sum(pool.map(work, range(len(items)), chunksize=256))
    if not ok.all():
        out = out[torch.from_numpy(ok)]
    return out, ok, resized


def _build_bundle(path: Path, kind: str, splits: dict, read: Callable, flat: bool = False) -> DataBundle:
    if not splits:
        raise DataError(
            f"--data {path}: no class sub-folders with images; expected train/<class>/*.png "
            "(and optionally test/<class>/*), or <class>/*.png at the top"
        )
    classes = tuple(sorted(splits["train"]))
    if len(classes) < 2:
        raise DataError(f"--data {path}: found only one class folder ({classes[0]}); a classifier needs at least two")
    sets: dict[str, ImageSet] = {}
    notes: list[str] = []
    for split, by_class in splits.items():
        unknown = sorted(set(by_class) - set(classes))
        if unknown:
            raise DataError(f"--data {path}: {split}/ has class folders not in train/: {', '.join(unknown[:5])}")
        items, labels = [], []
        for ci, c in enumerate(classes):
            files = sorted(by_class.get(c, []))
            items += files
            labels += [ci] * len(files)
        x, ok, resized = _decode_many(items, read)
        y = torch.tensor(labels, dtype=torch.long)[torch.from_numpy(ok)]
        skipped = int((~ok).sum())
        if skipped:
            notes.append(f"skipped {skipped} unreadable image(s) in {split or 'train'}/")
        if resized:
            notes.append(f"resized {resized} image(s) in {split or 'train'}/ to 32x32")
        if len(y) == 0:
            raise DataError(f"--data {path}: none of the images in {split}/ could be decoded")
        sets[split] = ImageSet(x, y)
    return DataBundle(sets["train"], sets.get("test"), classes, str(path), kind, notes, flat)


def load_image_folder(path: Path) -> DataBundle:
    files = []
    for root, dirs, names in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        rel = Path(root).relative_to(path).parts
        files += [rel + (n,) for n in names]
    splits, prefix = _layout(files)
    return _build_bundle(path, "folder", splits, lambda parts: (path.joinpath(*parts)).read_bytes(), flat=prefix == "" and bool(splits))


def load_zip(path: Path) -> DataBundle:
    try:
        zf = zipfile.ZipFile(path)
        names = [n for n in zf.namelist() if not n.endswith("/")]
    except (zipfile.BadZipFile, OSError) as e:
        raise DataError(f"--data {path}: not a readable zip file ({e}); re-create it or point at the unpacked folder") from None
    with zf:
        # A zipped cifar-10-batches-py folder.
        batch_names = [n for n in names if n.rsplit("/", 1)[-1] == "data_batch_1"]
        if batch_names:
            prefix = batch_names[0][: -len("data_batch_1")]
            return _zip_batches(zf, prefix, path)
        by_parts = {tuple(n.split("/")): n for n in names}
        splits, prefix = _layout(by_parts)
        return _build_bundle(path, "zip", splits, lambda parts: zf.read(by_parts[parts]), flat=prefix == "" and bool(splits))


def _zip_batches(zf: zipfile.ZipFile, prefix: str, path: Path) -> DataBundle:
    xs, ys = [], []
    for i in range(1, 100):
        n = f"{prefix}data_batch_{i}"
        if n not in zf.namelist():
            break
        x, y = _batch_from_pickle(safe_pickle_load(zf.read(n), f"{path}:{n}"), f"{path}:{n}")
        xs.append(x)
        ys.append(y)
    test = None
    if f"{prefix}test_batch" in zf.namelist():
        tx, ty = _batch_from_pickle(safe_pickle_load(zf.read(f"{prefix}test_batch"), f"{path}:test_batch"), f"{path}:test_batch")
        test = ImageSet(torch.from_numpy(tx.copy()), torch.from_numpy(ty))
    train = ImageSet(torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys)))
    _check_labels(train, CIFAR10_CLASSES, str(path))
    return DataBundle(train, test, CIFAR10_CLASSES, str(path), "zip")


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
                              list(d.get("notes", [])), bool(d.get("flat", False)))
        except Exception:
            pass  # a damaged cache entry is rebuilt below
    bundle = build()
    payload = {
        "train_x": bundle.train.x, "train_y": bundle.train.y,
        "test_x": bundle.test.x if bundle.test else None,
        "test_y": bundle.test.y if bundle.test else None,
        "classes": list(bundle.classes), "notes": bundle.notes, "flat": bundle.flat,
    }
    try:
        cfile.parent.mkdir(parents=True, exist_ok=True)
        tmp = cfile.with_suffix(f".tmp{os.getpid()}")
        torch.save(payload, tmp)
        os.replace(tmp, cfile)
    except OSError:
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

    def t(a, dtype):
        return torch.as_tensor(a, dtype=dtype).to(device, non_blocking=True)

    return EpochPlan(
        t(order, torch.long), t(offsets, torch.long), t(flips, torch.bool), t(gray, torch.bool),
        t(ac, torch.bool), mixup_draw, lam, mix_seed, steps, batch_size,
    )


def mixup_permutation(plan: EpochPlan, step: int, size: int, device: torch.device, salt: int = 0) -> torch.Tensor:
    """The pairing of images for mixup at ``step`` (``salt``: the rank under torchrun)."""
    g = torch.Generator().manual_seed(plan.mix_seed + step + 1_000_003 * salt)
    return torch.randperm(size, generator=g).to(device, non_blocking=True)


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
                 use_gray: bool = True, use_autocontrast: bool = True):
        self.pad = pad
        # Decided from the config, not per batch: a per-batch ``mask.any()`` would sync the GPU.
        self.use_gray = use_gray
        self.use_autocontrast = use_autocontrast
        self.mean = torch.tensor(mean, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, device=device).view(1, 3, 1, 1)
        self.ar = torch.arange(32, device=device)
        # PIL's fixed-point ITU-R 601-2 luma weights (0.299, 0.587, 0.114, scaled by 2**16).
        self.gray_w = torch.tensor([19595, 38470, 7471], dtype=torch.int32, device=device).view(1, 3, 1, 1)

    def normalize(self, x_uint8: torch.Tensor) -> torch.Tensor:
        return (x_uint8.float().div_(255) - self.mean) / self.std

    def __call__(self, x: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor,
                 gray: torch.Tensor, autocontrast: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        if self.pad > 0:
            p = self.pad
            padded = F.pad(x, (p, p, p, p))
            rows = (offsets[:, 0:1] + self.ar)[:, None, :, None]
            cols = (offsets[:, 1:2] + self.ar)[:, None, None, :]
            bi = torch.arange(b, device=x.device)[:, None, None, None]
            ci = torch.arange(3, device=x.device)[None, :, None, None]
            x = padded[bi, ci, rows, cols]
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
        return (x.float().div_(255) - self.mean) / self.std
