"""Decode one image file's bytes to a 32x32 RGB uint8 array, with Pillow.

Pillow, not torchvision's decoders: torchvision's PNG path crashes the whole
process (a segfault inside libpng's error handling) on a PNG whose image data is
shorter than its header says, and it cannot be told to refuse a huge image
before it allocates the pixels. Here every image is opened (header only), its
size checked against a pixel limit, and only then decoded.

What comes out, whatever went in:

* the first frame of an animated GIF/PNG/WebP or a multi-page TIFF;
* RGB: palette, grey, CMYK, alpha... converted by Pillow; 16-bit grey (modes
  ``I;16*`` and ``I``) scaled to 8 bits (Pillow's own conversion clips them to
  white); 32-bit float grey taken as 0..1 (or 0..255 when it goes above 1);
* 32x32: other sizes are resized with Pillow's bilinear filter, which
  antialiases when it shrinks.

This module imports neither torch nor anything from the engine, so a test can
run it in a small subprocess.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib

import numpy as np
from PIL import Image

# Pillow warns (DecompressionBombWarning) about images between its own limit and
# twice that; ours is far lower and is checked before decoding, so the warning
# only adds noise.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

SIZE = 32
# The formats a data folder may hold (see engine.data.images.IMAGE_SUFFIXES); Pillow
# does not try its other plugins on these bytes.
FORMATS = ("PNG", "JPEG", "BMP", "DIB", "GIF", "WEBP", "PPM", "TIFF")  # JPEG covers MPO
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class ImageTooLarge(ValueError):
    """The header declares more pixels than the limit; nothing was decoded."""

    def __init__(self, width: int, height: int, limit: int):
        super().__init__(f"{width}x{height} = {width * height:,} pixels, over the limit of {limit:,}")
        self.pixels = width * height


class TruncatedImage(OSError):
    """The image data ends before the rows its header declares."""


def decode_rgb32(raw: bytes, max_pixels: int) -> tuple[np.ndarray, bool]:
    """``raw`` (an image file's bytes) -> (uint8 array (32, 32, 3), whether it was resized).

    Raises :class:`ImageTooLarge` before decoding when the header declares more
    than ``max_pixels`` pixels; any other failure raises what Pillow raised
    (``OSError``, ``SyntaxError``, ``ValueError``, ``DecompressionBombError``...).
    """
    with Image.open(io.BytesIO(raw), formats=FORMATS) as im:
        w, h = im.size
        if w * h > max_pixels:
            raise ImageTooLarge(w, h, max_pixels)
        if w < 1 or h < 1:
            raise ValueError(f"an image of {w}x{h} pixels")
        im.seek(0)  # the first frame of an animation or a multi-page file
        im.load()
        if im.format == "PNG" and not _png_rows_complete(raw, im):
            raise TruncatedImage("the PNG's image data is shorter than its header declares")
        rgb = _to_rgb(im)
        resized = rgb.size != (SIZE, SIZE)
        if resized:
            rgb = rgb.resize((SIZE, SIZE), Image.Resampling.BILINEAR)
        return np.asarray(rgb, dtype=np.uint8), resized


def _to_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow mode -> an 8-bit RGB image."""
    mode = im.mode
    if mode == "RGB":
        return im
    if mode.startswith("I;16") or mode == "I":
        # 16-bit grey: Pillow's convert() clips to 0..255 (mid-grey becomes white).
        a = np.asarray(im).astype(np.int64)
        return Image.fromarray((np.clip(a, 0, 65535) >> 8).astype(np.uint8)).convert("RGB")
    if mode == "F":
        a = np.nan_to_num(np.asarray(im, dtype=np.float64))
        if a.size and a.max() <= 1.0:
            a = a * 255.0
        return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8)).convert("RGB")
    if mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")  # what Pillow asks for (it warns otherwise); alpha is then dropped
    return im.convert("RGB")


def _png_rows_complete(raw: bytes, im: Image.Image) -> bool:
    """Does the first frame's zlib stream inflate to as many bytes as the header needs?

    libpng calls a short stream an error ("Not enough image data"); Pillow decodes
    such a file without complaint and leaves the missing rows black. Checked for
    non-interlaced images (interlaced ones are rare and left to Pillow).
    """
    if raw[:8] != _PNG_SIGNATURE or im.info.get("interlace"):
        return True
    try:
        w, h, depth, ctype = struct.unpack(">IIBB", raw[16:26])
        channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[ctype]
    except (struct.error, KeyError):
        return True  # Pillow opened it; nothing more to check here
    need = h * (1 + (w * channels * depth + 7) // 8)
    inflate = zlib.decompressobj()
    got, pos, seen_idat = 0, 8, False
    while pos + 8 <= len(raw) and got < need:
        length, kind = struct.unpack(">I4s", raw[pos : pos + 8])
        if kind == b"IDAT":
            seen_idat = True
            data = raw[pos + 8 : pos + 8 + length]
            while got < need:  # inflate in bounded pieces: the stream may be a bomb
                out = inflate.decompress(data, 1 << 20)
                got += len(out)
                data = inflate.unconsumed_tail
                if not out and not data:
                    break
            if inflate.eof:
                break
        elif seen_idat:
            break  # the image data's chunks are consecutive
        pos += 12 + length
    return got >= need
