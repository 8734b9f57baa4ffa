"""Data sources -> uint8 tensors, the validation split, and prediction inputs.

Sources (the ``--data`` value), one module each, listed in :data:`sources.FORMATS`:

* ``cifar10``   torchvision's CIFAR10, downloaded once into the cache folder (:mod:`.cifar10`);
* ``synthetic`` a generated, learnable 10-class 32x32 set (:mod:`.synthetic`);
* a ``cifar-10-batches-py`` folder, or the folder holding one (:mod:`.cifar_pickle`);
* an image folder: ``train/<class>/*`` (and ``test/<class>/*``), ``test/<class>/*`` alone
  (a test-only source: see :func:`require_training_split`), or class folders at its top
  (:mod:`.folder`);
* a ``.zip`` of any of those folders (:mod:`.zipped`).

Every source becomes a :class:`DataBundle` (:mod:`.bundle`); bad input raises
:class:`DataError` with a one-line message. :func:`check_source` says cheaply whether a
source is usable. Images are decoded with Pillow (:mod:`.images`), pickles read as plain
data (:mod:`.safepickle`), files within size limits (:mod:`.limits`); decoded folders and
zips are cached (:mod:`.cache`). The split is :mod:`.split`; prediction inputs,
:mod:`.predict`. Batched augmentation on the device is :mod:`engine.augment`.

Importing this package does not import torch; the names of modules that do (prediction,
class matching, augmentation) are loaded on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from .bundle import CIFAR10_CLASSES, DataBundle, DataError, ImageSet, Progress
from .cache import cache_dir
from .cifar10 import load_torchvision_cifar10
from .format import SourceFormat
from .sources import FORMATS, check_source, load_data
from .split import split_indices
from .synthetic import make_synthetic

# name -> the module that defines it (imported on first use: it imports torch)
_LAZY = {
    "PredictInputs": ".predict", "read_predict_inputs": ".predict", "load_predict_inputs": ".predict",
    "match_classes": ".classes", "require_training_split": ".classes",
    "Augmenter": "engine.augment", "EpochPlan": "engine.augment", "make_epoch_plan": "engine.augment",
    "mixup_permutation": "engine.augment", "alternate_flips": "engine.augment",
}

__all__ = ["CIFAR10_CLASSES", "DataBundle", "DataError", "FORMATS", "ImageSet", "Progress", "SourceFormat",
           "cache_dir", "check_source", "load_data", "load_torchvision_cifar10", "make_synthetic",
           "split_indices", *_LAZY]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name], __name__), name)
