"""The report's Squeeze-and-Excitation ResNet (4,993,166 parameters at width 1)."""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

STAGE_BLOCKS = (4, 3, 2, 3)
STAGE_CHANNELS = (64, 128, 128, 256)
STAGE_STRIDES = (1, 2, 1, 2)
STEM_CHANNELS = 64
SE_REDUCTION = 16
ARCH_NAME = "SEResNet"


def scaled(channels: int, width: float) -> int:
    """Channels of a layer at a width multiplier (at least 4 so the SE bottleneck exists)."""
    return max(4, int(round(channels * width)))


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduction: int = SE_REDUCTION):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.reduce = nn.Conv2d(channels, hidden, 1, bias=True)
        self.expand = nn.Conv2d(hidden, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.adaptive_avg_pool2d(x, 1)
        s = torch.sigmoid(self.expand(F.relu(self.reduce(s))))
        return x * s


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class SEResNet(nn.Module):
    """Stem conv 3->64 + BN + ReLU + SE, BasicBlock stages [4,3,2,3] x [64,128,128,256]
    with strides [1,2,1,2], global average pooling and a linear head.

    ``width`` scales every channel count; 1.0 is the report's network.
    """

    def __init__(self, width: float = 1.0, num_classes: int = 10):
        super().__init__()
        if not width > 0:
            raise ValueError(f"width must be positive, got {width}")
        self.width = float(width)
        self.num_classes = int(num_classes)
        stem = scaled(STEM_CHANNELS, width)
        self.stem = nn.Sequential(
            nn.Conv2d(3, stem, 3, 1, 1, bias=False),
            nn.BatchNorm2d(stem),
            nn.ReLU(inplace=True),
            SqueezeExcite(stem),
        )
        layers = []
        cin = stem
        for n, c, s in zip(STAGE_BLOCKS, STAGE_CHANNELS, STAGE_STRIDES):
            cout = scaled(c, width)
            blocks = []
            for i in range(n):
                blocks.append(BasicBlock(cin, cout, s if i == 0 else 1))
                cin = cout
            layers.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*layers)
        self.head = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.head(x)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def arch_info(model: SEResNet) -> dict:
    return {
        "name": ARCH_NAME,
        "width": model.width,
        "num_classes": model.num_classes,
        "params": count_parameters(model),
    }


# ------------------------------------------------------------------ initialisation helpers
# Functions, not part of the module structure: they change initial values only, so every
# network has the same parameters (names, shapes, count) and every checkpoint still loads.


def patch_covariance(images: torch.Tensor, size: int = 3, chunk: int = 256) -> torch.Tensor:
    """The covariance (float64, C*size*size square) of every ``size`` x ``size`` patch of
    float images (N, C, H, W), in the order of a conv weight's flattened (C, kh, kw)."""
    c = images.shape[1]
    d = c * size * size
    total = torch.zeros(d, device=images.device, dtype=torch.float64)
    outer = torch.zeros(d, d, device=images.device, dtype=torch.float64)
    count = 0
    for i in range(0, images.shape[0], chunk):
        p = F.unfold(images[i:i + chunk].double(), size)  # (n, d, patches)
        p = p.transpose(1, 2).reshape(-1, d)
        total += p.sum(0)
        outer += p.T @ p
        count += p.shape[0]
    mean = total / count
    return (outer - count * torch.outer(mean, mean)) / max(count - 1, 1)


@torch.no_grad()
def whiten_stem_(model: "SEResNet", images: torch.Tensor, eps: float = 5e-4) -> int:
    """Initialise the stem conv so that its outputs on the 3x3 patches of ``images`` (float,
    normalised as training inputs are) are decorrelated with unit variance.

    With the patch covariance ``C = V diag(l) V^T``, filter ``i`` is ``v_i / sqrt(l_i + eps)``
    for the ``k = min(27, out_channels // 2)`` directions of largest variance, and the next
    ``k`` filters are their negatives (so a ReLU after the BatchNorm keeps both signs); the
    remaining filters keep their initial values. The weights stay ordinary trainable
    parameters. Returns ``k``.
    """
    conv: nn.Conv2d = model.stem[0]
    out_c, in_c, kh, kw = conv.weight.shape
    cov = patch_covariance(images.to(conv.weight.device), kh)
    evals, evecs = torch.linalg.eigh(cov)  # ascending
    evals, evecs = evals.flip(0).clamp_min(0), evecs.flip(1)
    k = min(in_c * kh * kw, out_c // 2)
    filters = (evecs[:, :k] / torch.sqrt(evals[:k] + eps)).T.reshape(k, in_c, kh, kw)
    filters = filters.to(conv.weight.dtype)
    conv.weight[:k] = filters
    conv.weight[k:2 * k] = -filters
    return k


@torch.no_grad()
def zero_init_residual_(model: nn.Module) -> int:
    """Set the weight of each residual block's last BatchNorm to zero, so that every block
    starts as its shortcut. Returns the number of blocks changed."""
    n = 0
    for m in model.modules():
        if isinstance(m, BasicBlock):
            m.bn2.weight.zero_()
            n += 1
    return n


def bn_bias_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The bias parameters of every BatchNorm layer, in module order."""
    return [m.bias for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.bias is not None]
