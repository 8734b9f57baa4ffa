"""A zip of an image folder or of a ``cifar-10-batches-py`` folder. For prediction: every
image in the zip, sorted by name."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Optional

from .bundle import DataBundle, DataError, Progress
from .cache import cached as cached_bundle
from .cifar_pickle import zip_batches
from .format import Request, SourceFormat, Unlabelled
from .images import build_bundle, decode_named, is_image, layout
from .limits import ENV_IMAGE_MB, image_byte_limit, open_zip, read_member


def load_zip(path: Path, progress: Optional[Progress] = None, cached: bool = False) -> DataBundle:
    zf, infos = open_zip(path, f"--data {path}")
    with zf:
        # A zipped cifar-10-batches-py folder.
        batch_names = [i.filename for i in infos if i.filename.rsplit("/", 1)[-1] == "data_batch_1"]
        if batch_names:
            return zip_batches(zf, batch_names[0][: -len("data_batch_1")], path)
        by_parts = {tuple(i.filename.split("/")): i for i in infos}
        splits, found = layout(by_parts)
        limit = image_byte_limit()
        return build_bundle(path, "zip", splits, lambda parts: read_member(zf, by_parts[parts], limit, ENV_IMAGE_MB),
                            flat=found == "" and bool(splits), progress=progress, cached=cached)


def _load(req: Request) -> DataBundle:
    path = req.path
    assert path is not None
    return cached_bundle(path, "zip", req.use_cache, lambda: load_zip(path, req.progress, cached=req.use_cache))


def _unlabelled(path: Path, arg: str) -> Unlabelled:
    zf, infos = open_zip(path, arg)
    with zf:
        members = sorted((i for i in infos if is_image(i.filename) and not i.filename.startswith("__MACOSX")),
                         key=lambda i: i.filename)
        if not members:
            raise DataError(f"{arg}: a zip with no images")
        limit = image_byte_limit()
        return decode_named(members, lambda i: read_member(zf, i, limit, ENV_IMAGE_MB), lambda i: f"{arg}:{i.filename}")


ZIP = SourceFormat("zip", recognise=zipfile.is_zipfile, load=_load, unlabelled=_unlabelled)
