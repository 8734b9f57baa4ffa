"""One image file (png, jpg, ...), for prediction."""

from __future__ import annotations

from pathlib import Path

from .format import SourceFormat, Unlabelled
from .images import decode_named, is_image
from .limits import ENV_IMAGE_MB, image_byte_limit, read_regular


def _unlabelled(path: Path, arg: str) -> Unlabelled:
    limit = image_byte_limit()
    return decode_named([path], lambda q: read_regular(q, limit, ENV_IMAGE_MB), str)


IMAGE_FILE = SourceFormat("image", recognise=lambda p: is_image(p.name), unlabelled=_unlabelled)
