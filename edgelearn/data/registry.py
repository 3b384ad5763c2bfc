"""Dataset names and the :func:`load_dataset` entry point."""
from __future__ import annotations

import difflib
import inspect
import os
from collections.abc import Callable

from ..errors import DataError
from .cifar import load_cifar10, load_cifar100
from .dataset import Dataset
from .digits import load_digits_dataset
from .mnist import load_mnist
from .synthetic import make_cosine, make_lowrank, make_synthetic

# name -> loader. File-based loaders take data_dir as first argument; generators take seed.
_LOADERS: dict[str, Callable[..., Dataset]] = {
    "mnist": load_mnist,
    "cifar10": load_cifar10,
    "cifar100": load_cifar100,
    "digits": load_digits_dataset,
    "synthetic": make_synthetic,
    "cosine": make_cosine,
    "lowrank": make_lowrank,
}
DATASET_NAMES: tuple[str, ...] = tuple(_LOADERS)
FILE_DATASETS: tuple[str, ...] = ("mnist", "cifar10", "cifar100")


def check_name(name: str) -> str:
    """The canonical dataset name, or a DataError listing the known ones."""
    if not isinstance(name, str):
        raise DataError(f"dataset name must be a string, got {name!r}")
    key = name.strip().lower()
    if key in _LOADERS:
        return key
    close = difflib.get_close_matches(key, DATASET_NAMES, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise DataError(f"unknown dataset '{name}'{hint}; known datasets: {', '.join(DATASET_NAMES)}")


def dataset_params(name: str) -> dict[str, object]:
    """The extra keyword parameters dataset ``name`` accepts, with their defaults."""
    sig = inspect.signature(_LOADERS[check_name(name)])
    skip = {"data_dir", "seed", "n_train", "n_test"}
    return {k: p.default for k, p in sig.parameters.items() if p.kind is p.KEYWORD_ONLY and k not in skip}


def load_dataset(name: str, data_dir: str | os.PathLike | None = None, *, seed: int = 0,
                 n_train: int | None = None, n_test: int | None = None, **params) -> Dataset:
    """Load or generate dataset ``name`` (one of :data:`DATASET_NAMES`).

    ``data_dir`` is read by the file datasets (mnist, cifar10, cifar100; default ``$EDGELEARN_DATA/<name>``) and
    ignored by the others. ``seed`` drives the generated datasets and the digits split. ``n_train``/``n_test``
    keep the first rows of each split (for generated datasets they set how many rows are generated).
    ``params`` are dataset-specific (see :func:`dataset_params`); an unknown one is a DataError.
    """
    key = check_name(name)
    loader = _LOADERS[key]
    allowed = dataset_params(key)
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        accepted = ", ".join(allowed) if allowed else "none"
        raise DataError(f"unknown parameter{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} for dataset "
                        f"{key} (accepted: {accepted})")
    if key in FILE_DATASETS:
        ds = loader(data_dir, n_train=n_train, n_test=n_test, **params)
    else:
        ds = loader(seed=seed, n_train=n_train, n_test=n_test, **params)
    return ds
