"""An unpickler for CIFAR-style pickles that a hostile file cannot abuse.

A CIFAR python batch is a dict of bytes/str keys, lists of ints, and numpy
arrays. :func:`load_plain` loads exactly that and refuses everything else:

* no code runs: only numpy's array, dtype and scalar reconstructors (and
  ``_codecs.encode`` for Latin-1 text, which Python 3 uses to pickle bytes at
  protocol 2) are resolved, and each is replaced by a checked stand-in;
* nothing is allocated beyond what the file's bytes hold: an array's declared
  shape times its item size must equal the length of the data that follows it,
  checked before numpy sees the state; only plain numeric dtypes are accepted
  (object arrays let numpy crash the process on a short list, and dtype states
  with sub-arrays or fields are not CIFAR data);
* Python's pure unpickler is used, not the C one: the C one sizes its memo
  table from the index a PUT opcode names, so a 9-byte pickle can make it
  allocate and clear gigabytes; the Python one keeps the memo in a dict;
* ``BUILD`` (set an object's state) is allowed only on the arrays and dtypes
  made above, so a pickle cannot set attributes on anything else.

The caller bounds the size of the bytes handed in. This module imports no torch.
"""

from __future__ import annotations

import io
import math
import pickle
import re
from typing import Any

import numpy as np


class Refused(pickle.UnpicklingError):
    """The pickle asks for something this loader does not allow."""


class NotAPickle(ValueError):
    """The bytes are not a pickle at all (or a damaged one)."""


_MULTIARRAY = ("numpy.core.multiarray", "numpy._core.multiarray")
_NUMERIC = ("numpy.core.numeric", "numpy._core.numeric")
_NDARRAY = ("numpy", "ndarray")
# Plain numeric types: bool, (u)int8..64, float16..64, with an optional byte order.
_SIMPLE_DTYPE = re.compile(r"[<>|=]?(?:b1|[iu][1248]|f[248])")


class _NdarrayClass:
    """Stands for ``numpy.ndarray`` in a pickle: only :meth:`_reconstruct` accepts it; it
    cannot be called or instantiated, so a pickle cannot allocate an array of any shape."""

    __slots__ = ()

    def __reduce__(self):  # pragma: no cover - never pickled
        raise TypeError("not picklable")


_NDARRAY_MARK = _NdarrayClass()


def _text(v: Any) -> Any:
    return v.decode("ascii", "replace") if isinstance(v, (bytes, bytearray)) else v


def _plain_dtype(d: Any) -> np.dtype:
    if not isinstance(d, np.dtype) or d.kind not in "biuf" or d.fields is not None or d.subdtype is not None:
        raise Refused(f"refusing numpy dtype {str(d)[:30]!r}")
    return d


def _shape(shape: Any) -> tuple[int, ...]:
    if not isinstance(shape, tuple) or len(shape) > 32 or not all(type(n) is int and n >= 0 for n in shape):
        raise Refused(f"refusing array shape {str(shape)[:40]}")
    return shape


def _check_size(shape: tuple[int, ...], dtype: np.dtype, data: Any) -> None:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise Refused(f"refusing array data of type {type(data).__name__}")
    need = math.prod(shape) * dtype.itemsize  # Python ints: no overflow
    have = memoryview(data).nbytes
    if need != have:
        raise Refused(f"an array declared as {shape} {dtype} needs {need:,} bytes but the pickle holds {have:,}")


def _reconstruct(subtype: Any, shape: Any, typecode: Any) -> np.ndarray:
    """numpy's ``_reconstruct(ndarray, (0,), b'b')``: an empty array that BUILD then fills."""
    if subtype is not _NDARRAY_MARK or shape != (0,) or _text(typecode) != "b":
        raise Refused("refusing an unusual numpy array reconstruction")
    return np.empty(0, dtype=np.int8)


def _dtype(obj: Any, align: Any = False, copy: Any = False) -> np.dtype:
    name = _text(obj)
    if not isinstance(name, str) or not _SIMPLE_DTYPE.fullmatch(name):
        raise Refused(f"refusing numpy dtype {str(obj)[:30]!r}")
    return np.dtype(name, align=False, copy=True)  # a private copy: BUILD may set its byte order


def _scalar(dtype: Any, data: Any) -> np.generic:
    d = _plain_dtype(dtype)
    _check_size((), d, data)
    return np.frombuffer(bytes(data), dtype=d)[0]


def _frombuffer(buf: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    """numpy's pickle protocol 5 form: ``_frombuffer(buffer, dtype, shape, order)``."""
    d, s, o = _plain_dtype(dtype), _shape(shape), _text(order)
    if o not in ("C", "F"):
        raise Refused(f"refusing array order {str(order)[:10]!r}")
    _check_size(s, d, buf)
    return np.frombuffer(bytes(buf), dtype=d).reshape(s, order=o)


def _encode(obj: Any, encoding: Any = "latin1", errors: Any = "strict") -> bytes:
    """``_codecs.encode(text, 'latin1')``: how Python 3 pickles bytes at protocols 0-2."""
    if not isinstance(obj, str) or encoding not in ("latin1", "latin-1", "iso-8859-1"):
        raise Refused("refusing _codecs.encode with anything but Latin-1 text")
    return obj.encode("latin-1")


def _build_array(arr: np.ndarray, state: Any) -> None:
    if arr.shape != (0,) or arr.dtype != np.int8 or arr.base is not None:
        raise Refused("refusing to set the state of an array twice")
    if isinstance(state, tuple) and len(state) == 5:
        _, shape, dtype, fortran, data = state
    elif isinstance(state, tuple) and len(state) == 4:
        shape, dtype, fortran, data = state
    else:
        raise Refused("refusing an unusual numpy array state")
    s, d = _shape(shape), _plain_dtype(dtype)
    _check_size(s, d, data)
    arr.__setstate__((1, s, d, fortran is True, bytes(data)))


def _build_dtype(d: np.dtype, state: Any) -> None:
    # numpy's state for a plain type: (3, byteorder, None, None, None, -1, -1, 0[, metadata])
    if not (isinstance(state, tuple) and len(state) >= 5 and state[0] in (3, 4)
            and state[2] is None and state[3] is None and state[4] is None):
        raise Refused("refusing an unusual numpy dtype state")
    order = _text(state[1])
    if order not in ("<", ">", "|", "="):
        raise Refused(f"refusing byte order {str(order)[:10]!r}")
    d.__setstate__((3, order, None, None, None, -1, -1, 0))


class _Unpickler(pickle._Unpickler):  # the pure-Python unpickler: see the module docstring
    _ALLOWED = {
        **{(m, "_reconstruct"): _reconstruct for m in _MULTIARRAY},
        **{(m, "scalar"): _scalar for m in _MULTIARRAY},
        **{(m, "_frombuffer"): _frombuffer for m in _NUMERIC},
        ("numpy", "dtype"): _dtype,
        ("_codecs", "encode"): _encode,
    }
    dispatch = dict(pickle._Unpickler.dispatch)

    def find_class(self, module: str, name: str):
        if (module, name) == _NDARRAY:
            return _NDARRAY_MARK
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise Refused(f"refusing to load {module}.{name}") from None

    def persistent_load(self, pid):
        raise Refused("refusing a persistent id")

    def load_build(self) -> None:
        state = self.stack.pop()
        inst = self.stack[-1]
        if type(inst) is np.ndarray:
            _build_array(inst, state)
        elif isinstance(inst, np.dtype):
            _build_dtype(inst, state)
        else:
            raise Refused(f"refusing to set the state of a {type(inst).__name__}")

    dispatch[pickle.BUILD[0]] = load_build


def load_plain(data: bytes) -> Any:
    """Unpickle ``data`` (bytes: the caller has bounded its size).

    Raises :class:`Refused` for a pickle that asks for anything but plain data and
    numeric numpy arrays, :class:`NotAPickle` for bytes that are not a readable pickle.
    """
    try:
        return _Unpickler(io.BytesIO(data), encoding="bytes").load()
    except Refused:
        raise
    except Exception as e:  # UnpicklingError, EOFError, ValueError, TypeError, MemoryError, ...
        raise NotAPickle(f"{type(e).__name__}: {e}") from None
