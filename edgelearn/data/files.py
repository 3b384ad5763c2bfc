"""Reading raw bytes from data files, gzip or not, turning every I/O or decompression failure into a DataError."""
from __future__ import annotations

import gzip
import hashlib
import zlib
from pathlib import Path

from ..errors import DataError


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (some zlib/pickle messages span several)."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def read_bytes(path: Path) -> bytes:
    """The content of ``path``, decompressed when its name ends in ``.gz``."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected a file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read file ({one_line(exc)})") from None
    if path.suffix != ".gz":
        return raw
    try:
        return gzip.decompress(raw)
    except EOFError:
        raise DataError(f"{path}: truncated gzip file (compressed stream ends early)") from None
    except (OSError, zlib.error, ValueError) as exc:
        raise DataError(f"{path}: corrupt gzip file ({one_line(exc)})") from None


def md5_of_file(path: Path, *, decompress: bool = False, chunk: int = 1 << 20) -> str:
    """md5 hex digest of a file, of its decompressed content when ``decompress`` (streamed, bounded memory)."""
    path = Path(path)
    h = hashlib.md5(usedforsecurity=False)
    try:
        opener = gzip.open if decompress else open
        with opener(path, "rb") as f:
            while block := f.read(chunk):
                h.update(block)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except EOFError:
        raise DataError(f"{path}: truncated gzip file (compressed stream ends early)") from None
    except (OSError, zlib.error) as exc:
        kind = "corrupt gzip file" if decompress else "cannot read file"
        raise DataError(f"{path}: {kind} ({one_line(exc)})") from None
    return h.hexdigest()
