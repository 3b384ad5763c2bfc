"""A restricted unpickler for the CIFAR "python version" batches.

CIFAR batches hold only dicts, lists, strings/bytes, ints and uint8 numpy arrays. Reading one still needs a few
globals: numpy's array reconstruction (``_reconstruct``, ``ndarray``, ``dtype``) and, for batches re-pickled by
Python 3 at protocol 2, ``_codecs.encode`` (how such pickles spell a ``bytes`` object). :class:`SafeUnpickler`
resolves exactly those, each through a wrapper that accepts only the arguments a real batch uses, and refuses
every other global, so a crafted file cannot call ``os.system`` or any other function.
"""
from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from .files import one_line

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct as _np_reconstruct
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct as _np_reconstruct


class ForbiddenGlobal(pickle.UnpicklingError):
    """The pickle asked for a global outside the allow-list."""


def _latin1_bytes(obj: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    # Python 3 writes bytes at protocol <= 2 as _codecs.encode(str, 'latin1').
    if not isinstance(obj, str) or encoding.lower().replace("_", "-") not in ("latin1", "latin-1") \
            or errors != "strict":
        raise ForbiddenGlobal("_codecs.encode is allowed only as encode(str, 'latin1')")
    return obj.encode("latin1")


def _checked_dtype(obj: Any, align: bool = False, copy: bool = False) -> np.dtype:
    dt = np.dtype(obj, align=bool(align), copy=bool(copy))
    if dt.hasobject:
        raise ForbiddenGlobal("numpy object arrays are not allowed")
    return dt


def _checked_reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    if subtype is not np.ndarray:
        raise ForbiddenGlobal("only plain numpy.ndarray may be reconstructed")
    return _np_reconstruct(np.ndarray, shape, dtype)


ALLOWED_GLOBALS = {
    ("_codecs", "encode"): _latin1_bytes,
    ("numpy", "dtype"): _checked_dtype,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy.core.multiarray", "_reconstruct"): _checked_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _checked_reconstruct,
}


class SafeUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose :meth:`find_class` resolves only :data:`ALLOWED_GLOBALS`."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise ForbiddenGlobal(f"global '{module}.{name}' is not allowed") from None


def _check_no_objects(obj: Any, depth: int = 0) -> None:
    if depth > 20:
        raise ForbiddenGlobal("nesting too deep")
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise ForbiddenGlobal("numpy object arrays are not allowed")
    elif isinstance(obj, dict):
        for k, v in obj.items():
            _check_no_objects(k, depth + 1)
            _check_no_objects(v, depth + 1)
    elif isinstance(obj, (list, tuple)):
        if len(obj) and not isinstance(obj[0], (int, bytes, str, float)):
            for v in obj:
                _check_no_objects(v, depth + 1)


def safe_loads(data: bytes, source: str, *, encoding: str = "bytes") -> Any:
    """Unpickle ``data`` with :class:`SafeUnpickler`; any failure is a one-line DataError naming ``source``."""
    try:
        obj = SafeUnpickler(io.BytesIO(data), encoding=encoding).load()
        _check_no_objects(obj)
    except ForbiddenGlobal as exc:
        raise DataError(
            f"{source}: refusing to unpickle: {one_line(exc)} (CIFAR batches hold only dicts, lists, "
            f"bytes and numpy arrays)"
        ) from None
    except EOFError:
        raise DataError(f"{source}: truncated pickle (data ends early)") from None
    except pickle.UnpicklingError as exc:
        if "truncated" in str(exc):
            raise DataError(f"{source}: truncated pickle (data ends early)") from None
        raise DataError(f"{source}: corrupt pickle ({one_line(exc)})") from None
    except MemoryError:
        raise DataError(f"{source}: corrupt pickle (asks for more memory than available)") from None
    except Exception as exc:  # UnpicklingError, ValueError, TypeError, IndexError, struct.error, ...
        raise DataError(f"{source}: corrupt pickle ({type(exc).__name__}: {one_line(exc)})") from None
    return obj


def safe_load(path: str | Path, *, encoding: str = "bytes") -> Any:
    """Read and unpickle the file at ``path`` with :func:`safe_loads`."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read file ({one_line(exc)})") from None
    return safe_loads(data, str(path), encoding=encoding)
