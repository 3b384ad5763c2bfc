"""Where Numba caches the compiled kernels: a folder named after the kernels' sources as a whole.

Numba's on-disk cache checks only the file of the function it compiled: a kernel that inlines or calls a kernel of
another file (``arith.round_shift`` inside ``engine_kernels``) would keep its old machine code after that other file
changed -- old bits under a new definition. Keying the whole cache by a hash of every module here that compiles
kernels makes any change to any of them a fresh cache (one recompilation). ``NUMBA_CACHE_DIR``, if the user sets it,
wins; a folder that cannot be written leaves Numba's default.
"""
from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
PREFIX = "numba-"


def sources_key(folder: Path = PACKAGE) -> str:
    """A hash of the modules in ``folder`` that define Numba kernels (names and contents)."""
    h = hashlib.sha256()
    for path in sorted(folder.glob("*.py")):
        text = path.read_bytes()
        if b"numba.njit" in text or b"@njit" in text:
            h.update(path.name.encode() + b"\0" + text + b"\0")
    return h.hexdigest()[:16]


def cache_dir(folder: Path = PACKAGE) -> Path:
    return folder / "__pycache__" / f"{PREFIX}{sources_key(folder)}"


def configure() -> Path | None:
    """Point Numba's cache at :func:`cache_dir` (and drop the caches of earlier sources); call before any kernel
    module is imported. Returns the folder, or None where the user's own ``NUMBA_CACHE_DIR`` or an unwritable
    package leaves Numba's choice.

    The folder goes into the environment as ``NUMBA_CACHE_DIR``, not only into ``numba.config``: Numba re-reads its
    whole configuration from the environment at the next compilation whenever any ``NUMBA_*`` variable changed
    (``--threads`` sets ``NUMBA_NUM_THREADS``), which would silently reset a config-only setting to Numba's default
    folder beside each file -- the stale-code trap this module exists to close."""
    import numba

    target = cache_dir()
    named = os.environ.get("NUMBA_CACHE_DIR")
    if named and named != str(target):
        return None
    try:
        target.mkdir(parents=True, exist_ok=True)
        # a probe of this process's own: two processes configuring at once (pytest-xdist workers, a sweep's pool)
        # must not delete each other's
        probe = target / f".writable-{os.getpid()}"
        probe.touch()
        probe.unlink(missing_ok=True)
    except OSError:
        return None
    for old in target.parent.glob(f"{PREFIX}*"):
        if old != target and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
    os.environ["NUMBA_CACHE_DIR"] = str(target)
    numba.config.CACHE_DIR = str(target)
    return target
