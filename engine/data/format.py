"""What a source format declares: how to recognise it and how to read it.

Each module of :mod:`engine.data` that reads a format defines a :class:`SourceFormat`;
:data:`engine.data.sources.FORMATS` lists them, in the order they are tried.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

from .bundle import DataBundle, Progress

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class Request:
    """A request to load a source for training or evaluation."""

    source: str  # what the user gave, stripped
    path: Optional[Path]  # the resolved path (None for a named source)
    use_cache: bool = True
    download: bool = True
    progress: Optional[Progress] = None


@dataclass
class Unlabelled:
    """Images read for prediction from one input (a file, folder, zip or pickle)."""

    x: "np.ndarray"  # uint8 (n_ok, 3, 32, 32), the decoded images only
    names: list[str]  # one per decoded image
    failures: list[tuple[int, str, int, str]]  # (position, name, kind, why) of each image skipped
    resized: int
    positions: list[int]  # each decoded image's position among the input's images
    count: int  # how many images the input holds, skipped ones included
    own_ids: Optional[list] = None  # the input's own IDs, one per image (a pickle's 'ids'), unchecked


@dataclass(frozen=True)
class SourceFormat:
    """One kind of source. A named source (``names``) is recognised by its name, any other
    by ``recognise(path)`` (cheap: no decoding; the path exists and is a regular file or a
    folder). ``load`` reads labelled images (training, evaluation); ``unlabelled(path, arg)``
    reads images for prediction. A format may offer either or both."""

    kind: str
    names: tuple[str, ...] = ()
    recognise: Optional[Callable[[Path], bool]] = None
    load: Optional[Callable[[Request], DataBundle]] = None
    unlabelled: Optional[Callable[[Path, str], Unlabelled]] = None

    def offers(self, purpose: str) -> bool:
        """Whether this format can be read for ``purpose`` ("load" or "unlabelled")."""
        reader: Any = getattr(self, purpose)
        return reader is not None
