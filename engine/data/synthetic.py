"""``synthetic``: a generated, learnable 10-class 32x32 set (seconds to train on)."""

from __future__ import annotations

from .bundle import CIFAR10_CLASSES, DataBundle, ImageSet
from .format import SourceFormat

SYNTHETIC_SEED = 20240601


def make_synthetic(n_train: int = 10_000, n_test: int = 2_000, seed: int = SYNTHETIC_SEED) -> DataBundle:
    """A learnable 10-class set: each class is a smooth colour pattern, shifted, tinted and noisy."""
    import torch  # here, not at the top: recognising a source needs no torch
    import torch.nn.functional as F

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



SYNTHETIC = SourceFormat("synthetic", names=("synthetic",), load=lambda req: make_synthetic())
