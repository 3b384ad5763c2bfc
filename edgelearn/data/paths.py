"""Finding the directory that holds a file-based dataset."""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from ..errors import DataError

ENV_VAR = "EDGELEARN_DATA"

# folder names the original archives extract to (looked for inside the given directory)
ARCHIVE_FOLDERS = {
    "mnist": ("MNIST/raw", "raw"),
    "cifar10": ("cifar-10-batches-py",),
    "cifar100": ("cifar-100-python",),
}


def resolve_data_dir(name: str, data_dir: str | os.PathLike | None, has_files: Callable[[Path], bool],
                     expected: str) -> Path:
    """The directory holding dataset ``name``'s files.

    ``data_dir`` may hold the files directly, or a ``<name>/`` subfolder, or the folder the original archive
    extracts to (``cifar-10-batches-py`` ...). With ``data_dir=None``, ``$EDGELEARN_DATA/<name>`` is used.
    ``has_files(dir)`` tells whether a candidate holds the dataset; ``expected`` describes the files for the error.
    """
    folders = ARCHIVE_FOLDERS.get(name, ())
    if data_dir is None:
        env = os.environ.get(ENV_VAR)
        if not env:
            raise DataError(f"no data directory given for {name}; pass --data-dir or set {ENV_VAR}")
        base = Path(env).expanduser()
        root = base / name
        origin = f" (from ${ENV_VAR})"
        candidates = [root] + [root / f for f in folders] + [base / f for f in folders]
    else:
        base = root = Path(data_dir).expanduser()
        origin = ""
        candidates = [root, root / name] + [root / f for f in folders] + [root / name / f for f in folders]
    if not base.exists():
        raise DataError(f"data directory {base}{origin} for {name} does not exist")
    if not base.is_dir():
        raise DataError(f"data directory {base}{origin} for {name} is not a directory")
    for cand in candidates:
        if cand.is_dir() and has_files(cand):
            return cand
    if not root.is_dir():
        raise DataError(f"data directory {root}{origin} for {name} does not exist")
    raise DataError(f"no {name} files in {root}{origin} (expected {expected})")
