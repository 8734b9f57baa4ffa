"""Unlabelled images for prediction, read through the same formats and decoding as
training data (:data:`engine.data.sources.FORMATS`, purpose "unlabelled")."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .bundle import DataError
from .format import Unlabelled
from .images import skip_notes
from .limits import regular_or_folder
from .sources import find_format


class BadIds(DataError):
    """A pickle's IDs cannot be a submission's ID column (repeated, or not one per image)."""


@dataclass
class PredictInputs:
    """Unlabelled images for prediction, in input order (see :func:`read_predict_inputs`)."""

    x: torch.Tensor  # uint8 (N,3,32,32), the decoded images only
    names: list[str]  # one per decoded image
    ids: list[int]  # one per decoded image: its position among all the images given (skipped ones count)
    notes: list[str]
    skipped: list[tuple[int, str, str]]  # (position, name, why) of each image that could not be decoded
    own_ids: bool = False  # whether ``ids`` are the inputs' own (a pickle's 'ids'), not positions

    @property
    def total(self) -> int:
        return len(self.ids) + len(self.skipped)


def read_predict_inputs(inputs: list[str]) -> PredictInputs:
    """Unlabelled images for prediction from files, folders, zips or CIFAR-style pickles.

    Input order: arguments in the order given, a folder's or zip's images sorted by
    path, a pickle's rows in order. An image that cannot be decoded is skipped, listed
    in ``skipped`` and counted in ``notes``; the others keep their position as ``ids``
    (so an ID in a CSV of predictions always names the same input). A pickle that
    carries IDs (``ids`` or ``b'ids'``) gives its own IDs instead, row for row. Raises
    :class:`DataError` for an input that is not usable at all, or when no image at
    all could be decoded; :class:`BadIds` when a pickle's IDs repeat, are not whole
    numbers or are not one per image (:func:`engine.submission.ids_problem`).
    """
    chunks: list[np.ndarray] = []
    names: list[str] = []
    ids: list[int] = []
    failures: list[tuple[str, int, str]] = []
    skipped: list[tuple[int, str, str]] = []
    resized = offset = 0
    own = False
    for arg in inputs:
        got = _predict_input(arg)
        chunks.append(got.x)
        names += got.names
        if got.own_ids is not None:
            _check_ids(got.own_ids, got.count, arg)
            ids += [got.own_ids[i] for i in got.positions]
            own = True
        else:
            ids += [offset + i for i in got.positions]
        failures += [(name, k, why) for _, name, k, why in got.failures]
        skipped += [(offset + i, name, why) for i, name, _, why in got.failures]
        resized += got.resized
        offset += got.count
    notes = skip_notes(failures)
    if failures and not names:
        name, _, why = failures[0]
        raise DataError(f"cannot decode any of the {len(failures)} image(s) (e.g. {name}: {why}); "
                        "give PNG or JPEG files")
    if resized:
        notes.append(f"resized {resized} image(s) to 32x32")
    x = torch.from_numpy(np.concatenate(chunks)) if chunks else torch.empty((0, 3, 32, 32), dtype=torch.uint8)
    if own and len(inputs) > 1:
        _check_ids(ids, len(ids), "the inputs together")
    return PredictInputs(x, names, ids, notes, sorted(skipped), own)


def _check_ids(ids: list, n: int, arg: str) -> None:
    from engine.submission import ids_problem

    problem = ids_problem(ids, n)
    if problem is not None:
        raise BadIds(f"{arg}: {problem}")


def load_predict_inputs(inputs: list[str]) -> tuple[torch.Tensor, list[str], list[str]]:
    """``(images, names, notes)`` of :func:`read_predict_inputs` (the decoded images only)."""
    got = read_predict_inputs(inputs)
    return got.x, got.names, got.notes


def _predict_input(arg: str) -> Unlabelled:
    """One argument of :func:`read_predict_inputs`, read by the format that recognises it."""
    p = Path(arg).expanduser()
    try:
        regular_or_folder(p, arg)
    except FileNotFoundError:
        raise DataError(f"{arg}: no such file or folder") from None
    except OSError as e:
        raise DataError(f"{arg}: cannot be read ({e.strerror or e})") from None
    fmt = find_format(p, "unlabelled")
    assert fmt is not None and fmt.unlabelled is not None  # the pickle format reads any file
    return fmt.unlabelled(p, arg)
