"""Output files and folders.

Atomic writes: a reader (or an interrupted run) never sees half a file. Each file is written to a temporary
file beside it and renamed into place. The temporary file is created with mode 0o666, so the kernel applies the
user's umask (and a folder's default ACL) exactly as for any other file: ``tempfile.mkstemp`` would leave every
output 0600.

Output folders: :func:`output_dir` checks a command's ``--out`` before any work and makes it absolute, so that a
later step running in another working directory (a simulator, a compiler) finds the same place.
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path
from typing import IO, Any, Iterator

from .errors import OutputError

#: mode of new output files before the umask (as ``open(path, "w")`` does)
FILE_MODE = 0o666


def make_temp(dir: str | os.PathLike, prefix: str = "", suffix: str = ".tmp") -> tuple[int, str]:
    """Like ``tempfile.mkstemp`` (a new file, opened for writing; returns its descriptor and path), but with the
    umask's mode instead of 0600."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        path = os.path.join(dir, f"{prefix}{secrets.token_hex(6)}{suffix}")
        try:
            return os.open(path, flags, FILE_MODE), path
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary file name in {dir}")  # pragma: no cover - 100 random collisions


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Open a temporary file beside ``path`` (``mode`` "w" or "wb"); renamed to ``path`` when the block ends
    without an exception, deleted otherwise."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes text ('w') or bytes ('wb'), not {mode!r}")
    path = Path(path)
    fd, tmp = make_temp(path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w") as fh:
        fh.write(text)


def write_json_atomic(path: str | os.PathLike, data: Any, indent: int = 2) -> None:
    """Write JSON (and a final newline) next to ``path`` and rename it into place."""
    with atomic_open(path, "w") as fh:
        json.dump(data, fh, indent=indent, allow_nan=True)
        fh.write("\n")


def output_dir(path: str | os.PathLike, flag: str = "--out", *, staged: bool = False) -> Path:
    """``path`` as an absolute folder that can be created (with its parents) or written; :class:`OutputError`
    naming ``flag`` otherwise. Call it before any work: a mistake then costs nothing and leaves nothing behind.

    ``staged``: the writer builds the folder beside it and renames it into place, so the parent must be
    writable too."""
    if isinstance(path, str) and not path.strip():  # Path("") is the working directory: never meant as an output
        raise OutputError(f"{flag}: empty path; name a folder")
    try:
        p = Path(path).expanduser().resolve()
    except (OSError, RuntimeError) as exc:  # a symbolic link loop
        raise OutputError(f"{flag} {path}: {exc}") from None
    if p.exists() and not p.is_dir():
        raise OutputError(f"{flag} {path}: exists and is not a directory")
    anchor = p
    while not anchor.exists():  # the nearest existing ancestor is where the first folder gets created
        anchor = anchor.parent
    if not anchor.is_dir():
        raise OutputError(f"{flag} {path}: {anchor} is not a directory")
    _probe(anchor, flag, path)
    if staged and anchor == p and p.parent != p:
        _probe(p.parent, flag, path)
    return p


def _probe(folder: Path, flag: str, path) -> None:
    """Create and delete a file in ``folder``: permission bits alone do not tell (root ignores them, a read-only
    or virtual file system refuses even root)."""
    try:
        fd, tmp = make_temp(folder, prefix=".edgelearn-probe-")
    except OSError as exc:
        raise OutputError(f"{flag} {path}: cannot write in {folder} ({exc.strerror or exc})") from None
    os.close(fd)
    os.unlink(tmp)
