"""Where downloads live, and the decoded-image cache: a folder or zip of images, once
decoded, is kept as one tensor file so a second start is fast."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable

from ..files import atomic_write_bytes
from .bundle import DataBundle, ImageSet

CACHE_FORMAT = 3  # 3: decoded with Pillow (was torchvision), test-only sources


def cache_dir() -> Path:
    """Where downloads and decoded-image caches live (``CIFAR_TUI_CACHE_DIR`` overrides)."""
    env = os.environ.get("CIFAR_TUI_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("cifar-tui", appauthor=False))


def cache_file(path: Path, kind: str) -> Path:
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


def cached(path: Path, kind: str, use_cache: bool, build: Callable[[], DataBundle]) -> DataBundle:
    """The bundle decoded from ``path`` before, or ``build()`` (then kept for next time)."""
    if not use_cache:
        return build()
    import torch  # here, not at the top: recognising a source needs no torch

    cfile = cache_file(path, kind)
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
