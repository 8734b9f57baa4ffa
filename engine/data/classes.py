"""Checking a bundle against its use: a test-only source cannot train, and a source's
classes are matched to a checkpoint's by name."""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from .bundle import DataBundle, DataError


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
