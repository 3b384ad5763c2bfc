"""The :class:`Dataset` container shared by every loader and generator."""
from __future__ import annotations

import operator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..errors import DataError

TASKS = ("classification", "regression")


def check_count(what: str, value: Any, *, minimum: int = 0, maximum: int | None = None, context: str = "") -> int:
    """Validate a non-negative integer parameter (a row count, a dimension) and return it as ``int``."""
    where = f" for {context}" if context else ""
    if isinstance(value, bool):
        raise DataError(f"{what}{where} must be an integer, got {value!r}")
    try:
        n = operator.index(value)
    except TypeError:
        raise DataError(f"{what}{where} must be an integer, got {value!r}") from None
    if n < minimum:
        raise DataError(f"{what}{where} must be >= {minimum}, got {n}")
    if maximum is not None and n > maximum:
        raise DataError(f"{what}{where} must be <= {maximum}, got {n}")
    return n


@dataclass(eq=False)
class Dataset:
    """A train/test split held in memory as numpy arrays.

    ``x_*`` are float32 with shape ``(N, *input_shape)``; images are ``(N, C, H, W)`` scaled to [0, 1].
    ``y_*`` are int64 class labels for classification, float32 ``(N, m)`` targets for regression.
    ``extra`` carries dataset-specific side information (label names, the teacher matrix of ``lowrank``...).
    """

    name: str
    x_train: np.ndarray = field(repr=False)
    y_train: np.ndarray = field(repr=False)
    x_test: np.ndarray = field(repr=False)
    y_test: np.ndarray = field(repr=False)
    task: str
    num_classes: int | None
    input_shape: tuple[int, ...]
    extra: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise DataError(f"dataset {self.name}: task must be one of {', '.join(TASKS)}, got {self.task!r}")
        if self.task == "classification" and not self.num_classes:
            raise DataError(f"dataset {self.name}: a classification dataset needs num_classes")
        if self.task == "regression" and self.num_classes is not None:
            raise DataError(f"dataset {self.name}: a regression dataset has num_classes=None")
        self.input_shape = tuple(int(d) for d in self.input_shape)
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if len(x) != len(y):
                raise DataError(f"dataset {self.name}: {split} split has {len(x)} inputs but {len(y)} targets")
            if tuple(x.shape[1:]) != self.input_shape:
                raise DataError(
                    f"dataset {self.name}: {split} inputs have shape {tuple(x.shape[1:])} per example, "
                    f"expected {self.input_shape}"
                )

    @property
    def output_dim(self) -> int:
        """Number of network outputs: ``num_classes``, or the target dimension ``m`` for regression."""
        if self.task == "classification":
            return int(self.num_classes)
        return int(self.y_train.shape[1]) if self.y_train.ndim > 1 else 1

    @property
    def n_train(self) -> int:
        return len(self.x_train)

    @property
    def n_test(self) -> int:
        return len(self.x_test)

    def subset(self, n_train: int | None = None, n_test: int | None = None) -> "Dataset":
        """The first ``n_train`` training and ``n_test`` test rows (``None`` keeps a split whole). Deterministic."""
        n_train = self.n_train if n_train is None else check_count(
            "n_train", n_train, maximum=self.n_train, context=f"{self.name} ({self.n_train} training examples)")
        n_test = self.n_test if n_test is None else check_count(
            "n_test", n_test, maximum=self.n_test, context=f"{self.name} ({self.n_test} test examples)")
        return replace(
            self,
            x_train=self.x_train[:n_train], y_train=self.y_train[:n_train],
            x_test=self.x_test[:n_test], y_test=self.y_test[:n_test],
            extra=dict(self.extra),
        )

    def class_counts(self, split: str = "train") -> np.ndarray:
        """Examples per class in ``split`` ("train" or "test"); classification only."""
        if self.task != "classification":
            raise DataError(f"dataset {self.name} is a regression task: it has no class counts")
        if split not in ("train", "test"):
            raise DataError(f"split must be 'train' or 'test', got {split!r}")
        y = self.y_train if split == "train" else self.y_test
        return np.bincount(y, minlength=self.num_classes)

    def __repr__(self) -> str:
        classes = f", num_classes={self.num_classes}" if self.num_classes else ""
        return (f"Dataset(name={self.name!r}, task={self.task!r}, train={self.n_train}, test={self.n_test}, "
                f"input_shape={self.input_shape}, output_dim={self.output_dim}{classes})")
