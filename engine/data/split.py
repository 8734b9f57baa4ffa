"""The validation split: a seeded, stratified hold-out of the training images (and an
optional stratified subset of the rest)."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from ..config import default_val_size
from .bundle import DataError


def split_indices(
    labels: Any,  # a tensor or an array of class indices
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
