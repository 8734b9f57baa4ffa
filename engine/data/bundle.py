"""What every data source becomes (:class:`DataBundle` of :class:`ImageSet`), and the
error when it cannot (:class:`DataError`).

Imports no torch: tensors are made (``ImageSet.from_numpy``) when images are loaded,
so recognising a source (:func:`engine.data.check_source`) stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional

import numpy as np

if TYPE_CHECKING:
    import torch

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)

# progress(message, done, total): called while a folder or zip of images is decoded
Progress = Callable[[str, int, int], None]


class DataError(Exception):
    """A data source that cannot be used. The message is one line and says what to do."""


def one_line(e: object, limit: int = 120) -> str:
    """``e`` as one line of at most ``limit`` characters."""
    text = " ".join(str(e).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass
class ImageSet:
    x: "torch.Tensor"  # uint8, (N, 3, 32, 32)
    y: "torch.Tensor"  # int64, (N,)

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def select(self, idx: Any) -> "ImageSet":
        import torch

        idx_t = torch.as_tensor(idx, dtype=torch.long)
        return ImageSet(self.x[idx_t], self.y[idx_t])

    @classmethod
    def from_numpy(cls, x: np.ndarray, y: np.ndarray) -> "ImageSet":
        """Tensors sharing the arrays' memory: uint8 (N,3,32,32) images, int64 labels."""
        import torch  # here, not at the top: see the module's docstring

        return cls(torch.from_numpy(x), torch.from_numpy(np.asarray(y, dtype=np.int64)))

    @classmethod
    def empty(cls) -> "ImageSet":
        return cls.from_numpy(np.empty((0, 3, 32, 32), dtype=np.uint8), np.empty(0, dtype=np.int64))


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
    # ``test`` holds them. It can be evaluated on; see :func:`engine.data.require_training_split`.
    test_only: bool = False
