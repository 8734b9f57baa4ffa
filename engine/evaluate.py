"""Evaluation: loss, accuracy, per-class accuracy, confusion matrix, predictions.

The model runs in eval mode, without augmentation, with the training normalisation.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from .config import CIFAR_MEAN, CIFAR_STD


@dataclass
class EvalResult:
    loss: float
    accuracy: float
    n: int
    per_class: list[float]  # accuracy per true class (nan where a class has no images)
    confusion: list[list[int]]  # rows: true class, columns: predicted class
    predictions: torch.Tensor  # (N,) predicted class
    confidence: torch.Tensor  # (N,) probability of the predicted class

    def to_dict(self, classes: Optional[list[str]] = None) -> dict:
        d = {
            "accuracy": self.accuracy,
            "loss": self.loss,
            "images": self.n,
            "per_class_accuracy": self.per_class,
            "confusion_matrix": self.confusion,
        }
        if classes is not None:
            d["classes"] = list(classes)
        return d


def normalize(x_uint8: torch.Tensor, mean=CIFAR_MEAN, std=CIFAR_STD) -> torch.Tensor:
    m = torch.tensor(mean, device=x_uint8.device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=x_uint8.device).view(1, 3, 1, 1)
    return (x_uint8.float().div(255) - m) / s


def autocast_for(device: torch.device, enabled: bool = True):
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


@torch.no_grad()
def predict_logits(
    model: torch.nn.Module,
    images: torch.Tensor,
    device: torch.device,
    batch_size: int = 500,
    amp: bool = True,
    channels_last: bool = True,
    progress: Optional[Callable[[int, int], None]] = None,
) -> torch.Tensor:
    """Logits (float32, on ``device``) for uint8 images (N,3,32,32), in eval mode."""
    was_training = model.training
    model.eval()
    out = []
    n = images.shape[0]
    try:
        for i in range(0, n, batch_size):
            xb = normalize(images[i : i + batch_size].to(device, non_blocking=True))
            if channels_last and device.type == "cuda":
                xb = xb.contiguous(memory_format=torch.channels_last)
            with autocast_for(device, amp):
                out.append(model(xb).float())
            if progress is not None:
                progress(min(i + batch_size, n), n)
    finally:
        model.train(was_training)
    if not out:
        return torch.empty((0, getattr(model, "num_classes", 10)), device=device)
    return torch.cat(out)


def evaluate(
    model: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    device: torch.device,
    batch_size: int = 500,
    amp: bool = True,
    progress: Optional[Callable[[int, int], None]] = None,
) -> EvalResult:
    logits = predict_logits(model, images, device, batch_size, amp, progress=progress)
    y = labels.to(device)
    n = int(y.shape[0])
    if n == 0:
        return EvalResult(float("nan"), float("nan"), 0, [float("nan")] * num_classes,
                          [[0] * num_classes for _ in range(num_classes)], torch.empty(0, dtype=torch.long),
                          torch.empty(0))
    loss = F.cross_entropy(logits, y).item()
    probs = logits.softmax(1)
    conf, pred = probs.max(1)
    cm = torch.bincount(y * num_classes + pred, minlength=num_classes * num_classes).view(num_classes, num_classes).cpu()
    per_class_n = cm.sum(1)
    per_class = [(cm[i, i].item() / per_class_n[i].item()) if per_class_n[i] > 0 else float("nan") for i in range(num_classes)]
    acc = (pred == y).float().mean().item()
    return EvalResult(loss, acc, n, per_class, cm.tolist(), pred.cpu(), conf.cpu())
