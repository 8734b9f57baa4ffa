"""The registry of source formats, and the one dispatcher: which format a ``--data`` value
(or a prediction input) is, whether it can be used (:func:`check_source`), and loading
it (:func:`load_data`).

A new format is a module of :mod:`engine.data` defining a
:class:`~engine.data.format.SourceFormat`, and one entry in :data:`FORMATS`.
Imports no torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from .bundle import DataBundle, DataError, Progress
from .cifar10 import CIFAR10
from .cifar_pickle import BATCHES, PICKLE
from .folder import IMAGE_FOLDER
from .format import Request, SourceFormat
from .imagefile import IMAGE_FILE
from .limits import regular_or_folder
from .synthetic import SYNTHETIC
from .zipped import ZIP

# Tried in this order; the first that recognises a source and offers what is asked wins.
FORMATS: list[SourceFormat] = [
    SYNTHETIC,  # synthetic
    CIFAR10,  # cifar10, cifar-10
    BATCHES,  # a cifar-10-batches-py folder, or a folder holding one
    IMAGE_FOLDER,  # any other folder: an image folder
    ZIP,  # a zip of either
    IMAGE_FILE,  # one image (prediction only)
    PICKLE,  # any other file: a CIFAR-style pickle of images (prediction only)
]


def find_format(path: Path, purpose: str) -> Optional[SourceFormat]:
    """The first format that recognises the existing ``path`` and can be read for
    ``purpose`` ("load": labelled images; "unlabelled": images to predict on)."""
    for fmt in FORMATS:
        if fmt.recognise is not None and fmt.offers(purpose) and fmt.recognise(path):
            return fmt
    return None


def _named(src: str) -> Optional[SourceFormat]:
    return next((fmt for fmt in FORMATS if src.lower() in fmt.names), None)


def _format_of_path(path: Path, src: str) -> SourceFormat:
    """The format that loads ``path`` (resolved, existing); a DataError saying why none does."""
    regular_or_folder(path, f"--data {src}")  # a named pipe or device would block or never end
    fmt = find_format(path, "load")
    if fmt is not None:
        return fmt
    if path.suffix.lower() == ".zip":
        raise DataError(f"--data {path}: not a readable zip file (corrupt or truncated?); re-create it or point at the unpacked folder")
    raise DataError(
        f"--data {path}: a file that is not a zip; use a zip or a folder of images, "
        "a cifar-10-batches-py folder, cifar10 or synthetic"
    )


def _resolve(src: str) -> tuple[SourceFormat, Optional[Path]]:
    """(format, resolved path or None for a named source); raises DataError."""
    fmt = _named(src)
    if fmt is not None:
        return fmt, None
    path = Path(src).expanduser()
    if not path.exists():
        raise DataError(
            f"--data {src}: no such file or folder; use cifar10, synthetic, or a path to a "
            "cifar-10-batches-py folder, an image folder or a zip"
        )
    try:
        path = path.resolve()
        return _format_of_path(path, src), path
    except OSError as e:  # permission denied, I/O error, ... anywhere below
        raise _unreadable(src, e) from None


def _unreadable(src: str, e: OSError) -> DataError:
    where = f" ({e.filename})" if getattr(e, "filename", None) else ""
    return DataError(f"--data {src}: cannot be read{where}: {e.strerror or e}")


def check_source(spec: str) -> Optional[str]:
    """The one-line problem with ``spec`` as a ``--data`` value, or None when a format
    recognises it. Cheap: nothing is decoded, torch is not imported; a source that
    passes can still fail when it is loaded (a folder without class folders...)."""
    src = str(spec).strip()
    if not src:
        return "--data is empty; use cifar10, synthetic, or a path to a folder or zip"
    try:
        _resolve(src)
    except DataError as e:
        return str(e)
    return None


def load_data(source: str, *, use_cache: bool = True, download: bool = True,
              progress: Optional[Progress] = None) -> DataBundle:
    """Resolve ``source`` and load it. Raises :class:`DataError` with a one-line message.

    ``progress(message, done, total)``, if given, is called from this thread while
    images are decoded (a folder or zip the first time; a cached one is not decoded
    again), a few dozen times in all, and once more when the decoding is done."""
    src = str(source).strip()
    fmt, path = _resolve(src)
    assert fmt.load is not None
    try:
        return fmt.load(Request(src, path, use_cache, download, progress))
    except OSError as e:  # permission denied, I/O error, ... anywhere below
        if path is None:
            raise
        raise _unreadable(src, e) from None
