"""An image folder: ``train/<class>/*`` (and ``test/<class>/*`` if present), ``test/<class>/*``
alone (a test-only source), or class folders directly at its top. For prediction: every
image under the folder, sorted by path."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from .bundle import DataBundle, DataError, Progress
from .cache import cached as cached_bundle
from .format import Request, SourceFormat, Unlabelled
from .images import build_bundle, decode_named, is_image, layout, walk
from .limits import ENV_IMAGE_MB, image_byte_limit, read_regular


def load_image_folder(path: Path, progress: Optional[Progress] = None, cached: bool = False) -> DataBundle:
    files, errors = walk(path)
    notes = [f"could not read {len(errors)} folder(s), e.g. {errors[0]}; their images are left out"] if errors else []
    splits, found = layout(files)
    limit = image_byte_limit()
    return build_bundle(path, "folder", splits, lambda parts: read_regular(path.joinpath(*parts), limit, ENV_IMAGE_MB),
                        flat=found == "" and bool(splits), notes=notes, progress=progress, cached=cached)


def _load(req: Request) -> DataBundle:
    path = req.path
    assert path is not None
    return cached_bundle(path, "folder", req.use_cache, lambda: load_image_folder(path, req.progress, cached=req.use_cache))


def _unlabelled(path: Path, arg: str) -> Unlabelled:
    files, _ = walk(path)
    paths = sorted(path.joinpath(*parts) for parts in files if is_image(parts[-1]))
    if not paths:
        raise DataError(f"{arg}: a folder with no images (png, jpg, ...)")
    limit = image_byte_limit()
    return decode_named(paths, lambda q: read_regular(q, limit, ENV_IMAGE_MB), str)


IMAGE_FOLDER = SourceFormat("folder", recognise=Path.is_dir, load=_load, unlabelled=_unlabelled)
