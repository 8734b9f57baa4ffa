"""The report's Squeeze-and-Excitation ResNet (4,993,166 parameters at width 1), and any
network of the same family (:class:`engine.shape.NetShape`: stages, channels, strides, stem,
where the SE blocks sit)."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn
import torch.nn.functional as F

from .shape import NetShape, scaled

_REPORT = NetShape()
STAGE_BLOCKS = _REPORT.blocks
STAGE_CHANNELS = _REPORT.channels
STAGE_STRIDES = _REPORT.strides
STEM_CHANNELS = _REPORT.stem_channels
SE_REDUCTION = _REPORT.se_reduction
ARCH_NAME = "SEResNet"
__all__ = ["SEResNet", "BasicBlock", "SqueezeExcite", "scaled", "count_parameters", "arch_info", "ARCH_NAME"]


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
    """Two 3x3 convs with BatchNorm; a 1x1 conv + BN shortcut where the shape changes; with
    ``se_reduction``, an SE block on the branch before the addition (Hu et al.)."""

    def __init__(self, cin: int, cout: int, stride: int, se_reduction: Optional[int] = None):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.se = SqueezeExcite(cout, se_reduction) if se_reduction is not None else None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.se is not None:
            out = self.se(out)
        return F.relu(out + self.shortcut(x))


class SEResNet(nn.Module):
    """Stem conv 3->C + BN + ReLU (+ SE with ``se="stem"``), BasicBlock stages, global
    average pooling and a linear head. The default shape is the report's network: stages
    [4,3,2,3] x [64,128,128,256] with strides [1,2,1,2] and one SE block after the stem.

    ``width`` scales every channel count (it overrides ``shape.width`` when given with no
    shape); parameter names are the same as before shapes existed, so old checkpoints load.
    """

    def __init__(self, width: float = 1.0, num_classes: int = 10, shape: Optional[NetShape] = None):
        super().__init__()
        if shape is None:
            if not width > 0:
                raise ValueError(f"width must be positive, got {width}")
            shape = NetShape(width=float(width), num_classes=int(num_classes))
        else:
            shape = NetShape.from_record(shape.to_record(), num_classes=int(num_classes))
        self.shape = shape
        self.width = float(shape.width)
        self.num_classes = int(num_classes)
        stem = scaled(shape.stem_channels, shape.width)
        parts: list[nn.Module] = [nn.Conv2d(3, stem, 3, 1, 1, bias=False), nn.BatchNorm2d(stem), nn.ReLU(inplace=True)]
        if shape.se == "stem":
            parts.append(SqueezeExcite(stem, shape.se_reduction))
        self.stem = nn.Sequential(*parts)
        block_se = shape.se_reduction if shape.se == "blocks" else None
        layers = []
        cin = stem
        for n, c, s in zip(shape.blocks, shape.channels, shape.strides):
            cout = scaled(c, shape.width)
            blocks = []
            for i in range(n):
                blocks.append(BasicBlock(cin, cout, s if i == 0 else 1, block_se))
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
    """What a checkpoint records of its network: enough to rebuild it (the shape)."""
    return {
        "name": ARCH_NAME,
        "width": model.width,
        "num_classes": model.num_classes,
        "params": count_parameters(model),
        "shape": model.shape.to_record(),
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


def set_bn_momentum_(model: nn.Module, momentum: float) -> None:
    """Every BatchNorm's ``momentum`` (PyTorch's convention: the weight of the new batch in
    the running statistics; 0.1 is PyTorch's default)."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = momentum


def bn_bias_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The bias parameters of every BatchNorm layer, in module order."""
    return [m.bias for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.bias is not None]
