"""Image files -> uint8 arrays: which names are images, how a folder or zip of them is laid
out (splits and classes), and decoding many of them at once (shared by image folders,
zips and prediction inputs).

Images are decoded with Pillow (:mod:`engine.data.imagedecode`); one that cannot be
read, or is over a size limit, is skipped and counted in the bundle's notes.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional

import numpy as np
from PIL import Image, UnidentifiedImageError

from .bundle import DataBundle, DataError, ImageSet, Progress, one_line
from .format import Unlabelled
from .imagedecode import ImageTooLarge, decode_rgb32
from .limits import ENV_IMAGE_PIXELS, TooLarge, Unusable, image_pixel_limit

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".ppm", ".tif", ".tiff"}


def is_image(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES and not os.path.basename(name).startswith(".")


def layout(entries: Iterable[tuple[str, ...]]) -> tuple[dict[str, dict[str, list]], str]:
    """Group image entries (path parts) into splits -> class -> items.

    Accepts ``[prefix/]train/<class>/<file>`` (+ ``test/``), ``[prefix/]test/<class>/<file>``
    alone (a test-only source), or ``[prefix/]<class>/<file>``. Returns (splits, layout)
    with layout "train", "test" (test only) or "" (class folders at the top).
    """
    entries = [e for e in entries if is_image(e[-1]) and not any(p.startswith(("__MACOSX", ".")) for p in e[:-1])]
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


def walk(root: Path) -> tuple[list[tuple[str, ...]], list[str]]:
    """Every non-folder entry under ``root`` as path parts (hidden folders skipped),
    and the folders that could not be listed."""
    files: list[tuple[str, ...]] = []
    errors: list[str] = []
    for here, dirs, names in os.walk(root, onerror=lambda e: errors.append(str(e.filename or e))):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        rel = Path(here).relative_to(root).parts
        files += [rel + (n,) for n in sorted(names)]
    return files, errors


UNREADABLE, TOO_LARGE = 1, 2


@dataclass
class Decoded:
    x: np.ndarray  # uint8 (n_ok, 3, 32, 32)
    ok: np.ndarray  # bool over the items
    resized: int
    failures: list[tuple[int, int, str]]  # (item index, UNREADABLE | TOO_LARGE, why), by index


def _why(e: BaseException) -> tuple[int, str]:
    if isinstance(e, TooLarge):
        return TOO_LARGE, str(e)
    if isinstance(e, ImageTooLarge):
        return TOO_LARGE, f"{e} (set {ENV_IMAGE_PIXELS} to raise it)"
    if isinstance(e, Unusable):
        return UNREADABLE, str(e)
    if isinstance(e, Image.DecompressionBombError):
        return TOO_LARGE, one_line(e, 100)
    if isinstance(e, UnidentifiedImageError):
        return UNREADABLE, "not an image Pillow can read"
    return UNREADABLE, f"{type(e).__name__}: {one_line(e, 80)}"


def decode_many(items: list, read: Callable[[object], bytes],
                progress: Optional[Callable[[int], None]] = None) -> Decoded:
    """Decode images to uint8 (N,3,32,32) with Pillow (see :mod:`engine.data.imagedecode`).

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
                arr, r = decode_rgb32(read(items[i]), max_pixels)
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
    return Decoded(out if ok.all() else out[ok], ok, resized, [(i, *failures[i]) for i in sorted(failures)])


def skip_notes(failures: list[tuple[str, int, str]], where: str = "") -> list[str]:
    """Notes for skipped images: [(name, kind, why)] -> one line per kind, naming the first."""
    notes = []
    for kind, label in ((UNREADABLE, "unreadable"), (TOO_LARGE, "oversized")):
        hits = [(name, why) for name, k, why in failures if k == kind]
        if hits:
            notes.append(f"skipped {len(hits)} {label} image(s){where}: {hits[0][0]} ({hits[0][1]})")
    return notes


def decode_named(items: list, read: Callable, name: Callable[[object], str]) -> Unlabelled:
    """Decode ``items`` (in order) for prediction; ``name(item)`` names each one."""
    dec = decode_many(items, read)
    positions = [int(i) for i in np.flatnonzero(dec.ok)]
    fails = [(i, name(items[i]), k, why) for i, k, why in dec.failures]
    return Unlabelled(dec.x, [name(items[i]) for i in positions], fails, dec.resized, positions, len(items))


def build_bundle(path: Path, kind: str, splits: dict, read: Callable, flat: bool = False,
                 notes: Optional[list[str]] = None, progress: Optional[Progress] = None,
                 cached: bool = True) -> DataBundle:
    """A bundle from the ``splits`` of :func:`layout`, each item read by ``read(item)``."""
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
        dec = decode_many(items, read, tick)
        before += len(items)
        where = f" in {split or 'train'}/"
        fails = [("/".join(items[i][-2:]), k, why) for i, k, why in dec.failures]
        notes += skip_notes(fails, where)
        if dec.resized:
            notes.append(f"resized {dec.resized} image(s){where} to 32x32")
        y = np.asarray(labels, dtype=np.int64)[dec.ok]
        if len(y) == 0:
            first = f" ({fails[0][0]}: {fails[0][2]})" if fails else ""
            raise DataError(f"--data {path}: none of the images in {split}/ could be decoded{first}; "
                            "check that they are PNG or JPEG files")
        sets[split] = ImageSet.from_numpy(dec.x, y)
    return DataBundle(sets.get("train") or ImageSet.empty(), sets.get("test"), classes, str(path), kind, notes,
                      flat, test_only)
