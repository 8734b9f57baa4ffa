"""Read limits, and reading a file or zip entry only when it is safe to.

Files are read only when they are regular files (a named pipe would block
forever, a device would never end) and only up to a size limit, checked from
the file's or zip entry's declared size before anything is read or unpacked.
The limits can be raised with environment variables (whole numbers):

  CIFAR_TUI_MAX_IMAGE_MB      one image file or zip entry, in MiB (default 64)
  CIFAR_TUI_MAX_IMAGE_PIXELS  one image's width x height (default 4096*4096);
                              Pillow's own guard still refuses ~179 million
  CIFAR_TUI_MAX_PICKLE_MB     one CIFAR pickle file or zip entry, in MiB
                              (default 256; CIFAR-100's training file is 150)
"""

from __future__ import annotations

import os
import stat
import zipfile
from pathlib import Path

from .bundle import DataError, one_line

MB = 1 << 20
MAX_IMAGE_MB = 64
MAX_IMAGE_PIXELS = 4096 * 4096
MAX_PICKLE_MB = 256
ENV_IMAGE_MB = "CIFAR_TUI_MAX_IMAGE_MB"
ENV_IMAGE_PIXELS = "CIFAR_TUI_MAX_IMAGE_PIXELS"
ENV_PICKLE_MB = "CIFAR_TUI_MAX_PICKLE_MB"


def _env_limit(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise DataError(f"{name}={raw!r} is not a positive whole number; unset it or use e.g. {default}")
    return value


def image_byte_limit() -> int:
    return _env_limit(ENV_IMAGE_MB, MAX_IMAGE_MB) * MB


def image_pixel_limit() -> int:
    return _env_limit(ENV_IMAGE_PIXELS, MAX_IMAGE_PIXELS)


def pickle_byte_limit() -> int:
    return _env_limit(ENV_PICKLE_MB, MAX_PICKLE_MB) * MB


class Unusable(Exception):
    """A file that is not read: not a regular file, or a damaged zip entry. str(): why."""


class TooLarge(Unusable):
    def __init__(self, size: int, limit: int, env: str, unpacked: bool = False):
        what = "unpacks to" if unpacked else "is"
        super().__init__(f"{what} {size / MB:,.1f} MiB, over the {limit / MB:,.0f} MiB limit (set {env} to raise it)")


def file_kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def read_regular(path: Path, limit: int, env: str) -> bytes:
    """A regular file's bytes; raises :class:`Unusable` (or OSError) for anything else.

    Opened non-blocking, so a named pipe does not hang the open; checked with fstat.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Unusable(f"{file_kind(st.st_mode)}, not a regular file")
        if st.st_size > limit:
            raise TooLarge(st.st_size, limit, env)
        with open(fd, "rb", closefd=False) as fh:
            data = fh.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:  # it grew while we read it
        raise TooLarge(len(data), limit, env)
    return data


def read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int, env: str) -> bytes:
    """A zip entry's bytes, refused before unpacking when its declared size is over ``limit``.

    zipfile stops at the declared size (and checks the CRC), so a lying header
    cannot unpack more than it declares.
    """
    if info.file_size > limit:
        raise TooLarge(info.file_size, limit, env, unpacked=True)
    try:
        return zf.read(info)
    except Exception as e:  # BadZipFile (CRC), zlib.error, EOFError, encrypted, unsupported method...
        raise Unusable(f"a damaged or unsupported zip entry ({type(e).__name__}: {one_line(e)})") from None


def regular_or_folder(path: Path, what: str) -> os.stat_result:
    """stat ``path``; a DataError unless it is a regular file or a folder."""
    st = os.stat(path)
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        raise DataError(f"{what}: {file_kind(st.st_mode)}, not a file or folder; point at a folder, a zip or an image file")
    return st


def open_zip(path: Path, what: str) -> tuple[zipfile.ZipFile, list[zipfile.ZipInfo]]:
    """The zip and its entries that are not folders; a DataError when it cannot be opened."""
    try:
        zf = zipfile.ZipFile(path)
        return zf, [i for i in zf.infolist() if not i.is_dir()]
    except Exception as e:  # BadZipFile, OSError, NotImplementedError, ValueError...
        raise DataError(f"{what}: not a readable zip file ({one_line(e)}); re-create it or point at the unpacked folder") from None


def read_file(path: Path, limit: int, env: str, what: str, hint: str = "") -> bytes:
    """:func:`read_regular`, or a DataError naming ``what`` (``hint`` follows a refusal
    that is not about size)."""
    try:
        return read_regular(path, limit, env)
    except Unusable as e:
        raise DataError(f"{what}: {e}{'' if isinstance(e, TooLarge) else hint}") from None
    except OSError as e:
        raise DataError(f"{what}: cannot be read ({e.strerror or e})") from None
