"""Evaluation: loss, accuracy, per-class accuracy, confusion matrix, predictions.

The model runs in eval mode, without augmentation, with the training normalisation.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F

from .config import CIFAR_MEAN, CIFAR_STD
from .data import load_predict_inputs  # noqa: F401  (moved to engine.data; callers import it from here)
from .device import autocast_for, resolve_device


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
    """uint8 images -> the float input the network was trained on (the one normalisation
    of inference; training's :class:`engine.data.Augmenter` applies the same constants)."""
    return normalizer_for(x_uint8.device, tuple(mean), tuple(std))(x_uint8)


def _shift(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """The images moved by (dy, dx) pixels (at most 1), the edge reflected into the gap."""
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    h, w = x.shape[-2:]
    return padded[..., 1 - dy: 1 - dy + h, 1 - dx: 1 - dx + w]


def tta_logits(model: torch.nn.Module, xb: torch.Tensor, tta_flip: bool = False,
               tta_translate: bool = False) -> torch.Tensor:
    """Logits (float32) of a normalised batch under test-time augmentation.

    ``tta_flip``: the mean of the image's and its mirror image's logits. ``tta_translate``:
    half the (flip-averaged) logits of the image plus a quarter each of those of the image
    shifted one pixel up-left and one pixel down-right.
    """
    def view(x: torch.Tensor) -> torch.Tensor:
        logits = model(x).float()
        return (logits + model(x.flip(3)).float()) / 2 if tta_flip else logits

    out = view(xb)
    if tta_translate:
        out = 0.5 * out + 0.25 * view(_shift(xb, -1, -1)) + 0.25 * view(_shift(xb, 1, 1))
    return out


class Normalizer:
    """uint8 -> normalised float on one device, with the constants made once (no copy from
    the host per batch; :func:`normalizer_for` keeps one per device for every call)."""

    def __init__(self, device: torch.device, mean=CIFAR_MEAN, std=CIFAR_STD):
        self.mean = torch.tensor(mean, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, device=device).view(1, 3, 1, 1)

    def __call__(self, x_uint8: torch.Tensor) -> torch.Tensor:
        return (x_uint8.float().div(255) - self.mean) / self.std


@functools.lru_cache(maxsize=16)
def normalizer_for(device: torch.device, mean: tuple = CIFAR_MEAN, std: tuple = CIFAR_STD) -> Normalizer:
    """The :class:`Normalizer` of ``device``, built on the first call only: an evaluation
    (every epoch's validation) copies no constants from the host."""
    return Normalizer(device, mean, std)


@torch.no_grad()
def predict_logits(
    model: torch.nn.Module,
    images: torch.Tensor,
    device: torch.device,
    batch_size: int = 500,
    amp: bool = True,
    channels_last: bool = True,
    progress: Optional[Callable[[int, int], None]] = None,
    tta_flip: bool = False,
    tta_translate: bool = False,
) -> torch.Tensor:
    """Logits (float32, on ``device``) for uint8 images (N,3,32,32), in eval mode, under
    the test-time augmentation of :func:`tta_logits`."""
    was_training = model.training
    model.eval()
    out = []
    n = images.shape[0]
    norm = normalizer_for(torch.device(device))
    try:
        for i in range(0, n, batch_size):
            xb = norm(images[i : i + batch_size].to(device, non_blocking=True))
            if channels_last and device.type == "cuda":
                xb = xb.contiguous(memory_format=torch.channels_last)
            with autocast_for(device, amp):
                out.append(tta_logits(model, xb, tta_flip, tta_translate))
            if progress is not None:
                progress(min(i + batch_size, n), n)
    finally:
        model.train(was_training)
    if not out:
        return torch.empty((0, getattr(model, "num_classes", 10)), device=device)
    return torch.cat(out)


@torch.no_grad()
def validation_sums(
    model: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    device: torch.device,
    batch_size: int = 500,
    amp: bool = True,
    channels_last: bool = True,
    tta_flip: bool = False,
    tta_translate: bool = False,
) -> torch.Tensor:
    """``[sum of cross-entropy losses, number correct]`` over labelled images already on
    ``device``, as a tensor on it: nothing is read back, so the caller decides when to
    wait (training reads it once per evaluation). float64 (float32 on MPS)."""
    dtype = torch.float64 if device.type != "mps" else torch.float32
    sums = torch.zeros(2, dtype=dtype, device=device)
    was_training = model.training
    model.eval()
    norm = normalizer_for(torch.device(device))
    try:
        for i in range(0, images.shape[0], batch_size):
            xb = norm(images[i : i + batch_size])
            yb = labels[i : i + batch_size]
            if channels_last and device.type == "cuda":
                xb = xb.contiguous(memory_format=torch.channels_last)
            with autocast_for(device, amp):
                logits = tta_logits(model, xb, tta_flip, tta_translate)
            loss = F.cross_entropy(logits, yb, reduction="sum")
            sums += torch.stack([loss.to(dtype), (logits.argmax(1) == yb).sum().to(dtype)])
    finally:
        model.train(was_training)
    return sums


def evaluate(
    model: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    device: torch.device,
    batch_size: int = 500,
    amp: bool = True,
    progress: Optional[Callable[[int, int], None]] = None,
    tta_flip: bool = False,
    tta_translate: bool = False,
) -> EvalResult:
    logits = predict_logits(model, images, device, batch_size, amp, progress=progress, tta_flip=tta_flip,
                            tta_translate=tta_translate)
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


# ------------------------------------------------------------- checkpoints and data


@dataclass
class CheckpointEvaluation:
    """A checkpoint evaluated on labelled images: the numbers, and what the gallery needs."""

    checkpoint: str
    epoch: Optional[int]
    source: str  # the data, e.g. "/data/cifar10.zip:test"
    classes: list[str]
    result: EvalResult
    images: Any  # engine.data.ImageSet the result was computed on
    notes: list[str]

    def to_dict(self) -> dict:
        """The JSON record (``cifar-tui eval --json`` and the stored result)."""
        return {**self.result.to_dict(self.classes), "data_source": self.source, "checkpoint": self.checkpoint,
                "epoch": self.epoch, "notes": list(self.notes)}


def eval_images(source: Optional[str], ckpt: dict, split: str = "test"):
    """The labelled images to evaluate ``ckpt`` on, as ``(ImageSet, description, bundle)``.

    ``source`` None: the checkpoint's own data source. ``split`` "test": a source's test
    split; a folder or zip whose class folders sit at its top: all its images. ``split``
    "val": the run's held-out validation images (the seeded split it trained with, from
    its config), for a source without a test split. Raises :class:`engine.data.DataError`.
    """
    from .data import DataError, ImageSet, load_data, match_classes

    cfg = ckpt.get("config") if isinstance(ckpt.get("config"), dict) else {}
    src = source or ckpt.get("data_source") or cfg.get("data")
    if not src or not isinstance(src, str):
        raise DataError("the checkpoint does not say which data it was trained on; name it with --data")
    bundle = load_data(src)
    if split == "val":
        images = _val_images(bundle, cfg)
    elif bundle.flat:
        images, split = bundle.train, "all"
    elif bundle.test is not None:
        images = bundle.test
    else:
        raise DataError(f"{bundle.source} has no test split (a test/<class>/ folder); name a source with one "
                        "with --data, or evaluate on the run's validation images with --split val")
    classes = list(ckpt.get("classes") or [])
    if classes:  # labels become the checkpoint's class indices, matched by name
        remap, note = match_classes(bundle.classes, classes, bundle.source)
        if note is not None:
            images = ImageSet(images.x, remap[images.y])
            bundle.notes.append(note)
    return images, f"{bundle.source}:{split}", bundle


def _val_settings(cfg: dict) -> dict:
    return {"val_size": cfg.get("val_size"), "subset": cfg.get("subset"), "seed": cfg.get("seed", 0)}


def _val_images(bundle, cfg: dict):
    """The validation images the run held out of ``bundle``'s training images: the same
    seeded, stratified split (:func:`engine.data.split_indices`) with the run's settings."""
    from .data import DataError, split_indices

    val_size, subset, seed = cfg.get("val_size"), cfg.get("subset"), cfg.get("seed", 0)
    if val_size == 0:
        raise DataError("the run trained without a validation split (--val-size 0); evaluate on a test split, "
                        "naming a source with one with --data")
    ok = all(v is None or (isinstance(v, int) and not isinstance(v, bool)) for v in (val_size, subset, seed))
    if not ok or seed is None:
        raise DataError("the checkpoint's settings do not say how the run split its validation images; "
                        "evaluate on a test split with --data")
    _, val_idx, _ = split_indices(bundle.train.y, val_size, subset, seed)
    return bundle.train.select(val_idx)


def _inference_model(path: str, device: str):
    """(checkpoint record, its network in eval mode on the device, the device, its fingerprint)."""
    from .checkpoint import build_model_from_checkpoint, load_checkpoint, resolve_checkpoint
    from .runs import checkpoint_fingerprint

    dev = resolve_device(device)  # a bad --device is refused before anything is read
    file = resolve_checkpoint(path, "inference")
    before = checkpoint_fingerprint(file)
    ckpt = load_checkpoint(file, purpose="inference")
    model = build_model_from_checkpoint(ckpt).to(dev)
    fingerprint = {**before, "save_id": ckpt.get("save_id"), "global_step": ckpt.get("global_step")}
    return ckpt, model, dev, fingerprint


def _tta(ckpt: dict) -> tuple[bool, bool]:
    """The test-time augmentation the checkpoint's run validated with: (flip, translate)."""
    cfg = ckpt["config"]
    return bool(cfg.get("tta_flip", False) is True), bool(cfg.get("tta_translate", False) is True)


def evaluate_checkpoint(
    path: str,
    source: Optional[str] = None,
    device: str = "auto",
    batch_size: int = 500,
    progress: Optional[Callable[[int, int], None]] = None,
    store: bool = True,
    split: str = "test",
) -> CheckpointEvaluation:
    """Evaluate a checkpoint on labelled test images (``split`` "val": the run's validation
    images, see :func:`eval_images`); store the result beside it, tied to the exact file
    evaluated, under its source and split (``synthetic:test``, ``synthetic:val``: one split's
    result never replaces the other's, and a validation result is never shown as a test
    accuracy)."""
    from .runs import store_evaluation

    ckpt, model, dev, fingerprint = _inference_model(path, device)
    images, described, bundle = eval_images(source, ckpt, split)
    classes = list(ckpt.get("classes") or bundle.classes)
    tta, shift = _tta(ckpt)
    r = evaluate(model, images.x, images.y, len(classes), dev, batch_size=batch_size, progress=progress, tta_flip=tta,
                 tta_translate=shift)
    out = CheckpointEvaluation(ckpt["path"], ckpt.get("epoch"), described, classes, r, images, list(bundle.notes))
    if store:
        # (a validation result keeps how the run split its images: the gallery finds them again)
        extra = {"val_split": _val_settings(ckpt["config"])} if split == "val" else {}
        try:
            store_evaluation(ckpt["path"], described, {**out.to_dict(), **stored_predictions(r), **extra},
                             fingerprint)
        except OSError:
            out.notes.append("could not store the result beside the checkpoint (read-only folder?)")
    return out


def stored_predictions(r: EvalResult) -> dict[str, list[int]]:
    """The per-image predictions, small, for the stored result (the browser's gallery is
    filled from them without evaluating again): the class per image, and the confidence
    in thousandths (10,000 test images: about 60 KB of JSON)."""
    return {"predictions": [int(v) for v in r.predictions.tolist()],
            "confidence_permille": [int(round(1000 * float(v))) for v in r.confidence.tolist()]}


def gallery_from_stored(result: dict[str, Any]):
    """The images of a stored evaluation with its stored predictions, for the gallery:
    ``(ImageSet, predictions, confidences, classes)``. The images are read again from the
    result's data source (a decoded folder or zip comes from the cache). Raises
    :class:`engine.data.DataError` when they cannot be, or no longer match the result."""
    from .data import DataError, ImageSet, load_data, match_classes

    preds, conf = result.get("predictions"), result.get("confidence_permille")
    described = result.get("data_source")
    classes = [str(c) for c in result.get("classes") or []]
    if not isinstance(preds, list) or not isinstance(conf, list) or not isinstance(described, str) or not classes:
        raise DataError("this stored result has no predictions; press e to evaluate again")
    source, _, split = described.rpartition(":")
    bundle = load_data(source or described, download=False)
    if split == "val":  # the run's validation images, split again as the run split them
        images = _val_images(bundle, result.get("val_split") if isinstance(result.get("val_split"), dict) else {})
    else:
        images = bundle.train if split == "all" else bundle.test
    if images is None or len(images) != len(preds) or len(conf) != len(preds):
        raise DataError(f"{source} is not the data this result was computed on any more; press e to evaluate again")
    remap, note = match_classes(bundle.classes, classes, bundle.source)
    if note is not None:
        images = ImageSet(images.x, remap[images.y])
    ok = all(isinstance(p, int) and 0 <= p < len(classes) for p in preds)
    if not ok or not all(isinstance(c, int) for c in conf):
        raise DataError("the stored predictions are damaged; press e to evaluate again")
    return images, preds, [c / 1000.0 for c in conf], classes


def predict_checkpoint(path: str, images: torch.Tensor, device: str = "auto", batch_size: int = 500,
                       progress: Optional[Callable[[int, int], None]] = None):
    """Class probabilities (N, classes) for uint8 images, and the checkpoint's class names."""
    ckpt, model, dev, _ = _inference_model(path, device)
    tta, shift = _tta(ckpt)
    logits = predict_logits(model, images, dev, batch_size, progress=progress, tta_flip=tta, tta_translate=shift)
    classes = list(ckpt.get("classes") or [str(i) for i in range(logits.shape[1])])
    return logits.softmax(1).cpu(), classes
