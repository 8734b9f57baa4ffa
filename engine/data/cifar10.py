"""``cifar10``: torchvision's CIFAR10, downloaded once into the cache folder."""

from __future__ import annotations

import numpy as np

from .bundle import DataBundle, DataError, ImageSet
from .cache import cache_dir
from .format import SourceFormat


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
        x = np.ascontiguousarray(np.asarray(ds.data).transpose(0, 3, 1, 2))
        return ImageSet.from_numpy(x, np.asarray(ds.targets, dtype=np.int64))

    return DataBundle(conv(train), conv(test), tuple(train.classes), "cifar10", "cifar10")


CIFAR10 = SourceFormat("cifar10", names=("cifar10", "cifar-10"), load=lambda req: load_torchvision_cifar10(req.download))
