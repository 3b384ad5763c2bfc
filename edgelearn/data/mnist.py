"""MNIST from its original IDX files (gzip or raw)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import DataError
from .dataset import Dataset
from .idx import IMAGES_MAGIC, LABELS_MAGIC, read_idx
from .paths import resolve_data_dir

MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
NUM_CLASSES = 10


def find_idx_file(folder: Path, stem: str) -> Path | None:
    """``stem`` in ``folder``: raw first, then ``.gz``; also the ``train-images.idx3-ubyte`` spelling."""
    for base in dict.fromkeys((stem, stem.replace("-idx", ".idx"))):
        for cand in (folder / base, folder / f"{base}.gz"):
            if cand.is_file():
                return cand
    return None


def _has_mnist(folder: Path) -> bool:
    return any(find_idx_file(folder, stem) for stem in MNIST_FILES.values())


def mnist_dir(data_dir: str | os.PathLike | None) -> Path:
    return resolve_data_dir("mnist", data_dir, _has_mnist, ", ".join(MNIST_FILES.values()) + ", raw or .gz")


def mnist_files(folder: Path) -> dict[str, Path]:
    """The four IDX files in ``folder``; DataError naming the first missing one."""
    found = {}
    for key, stem in MNIST_FILES.items():
        path = find_idx_file(folder, stem)
        if path is None:
            raise DataError(f"{folder}: missing MNIST file {stem} (or {stem}.gz)")
        found[key] = path
    return found


def _split(files: dict[str, Path], split: str, n: int | None) -> tuple[np.ndarray, np.ndarray]:
    img_path, lbl_path = files[f"{split}_images"], files[f"{split}_labels"]
    images = read_idx(img_path, IMAGES_MAGIC)
    labels = read_idx(lbl_path, LABELS_MAGIC)
    if images.dtype != np.uint8 or labels.dtype != np.uint8:
        raise DataError(f"{img_path}: MNIST images and labels must be unsigned bytes")
    if len(images) != len(labels):
        raise DataError(
            f"{img_path.parent}: count mismatch: {img_path.name} has {len(images)} images "
            f"but {lbl_path.name} has {len(labels)} labels"
        )
    if len(labels) and int(labels.max()) >= NUM_CLASSES:
        raise DataError(f"{lbl_path}: label value {int(labels.max())} out of range 0..{NUM_CLASSES - 1}")
    if n is not None:
        if n > len(images):
            raise DataError(f"n_{split}={n} exceeds the {len(images)} {split} examples in {img_path}")
        images, labels = images[:n], labels[:n]
    x = np.true_divide(images[:, None, :, :], np.float32(255), dtype=np.float32)
    return x, labels.astype(np.int64)


def load_mnist(data_dir: str | os.PathLike | None = None, *, n_train: int | None = None,
               n_test: int | None = None) -> Dataset:
    """MNIST as (N, 1, 28, 28) float32 in [0, 1] with int64 labels."""
    folder = mnist_dir(data_dir)
    files = mnist_files(folder)
    x_train, y_train = _split(files, "train", n_train)
    x_test, y_test = _split(files, "test", n_test)
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(f"{folder}: train images are {x_train.shape[2:]} but test images are {x_test.shape[2:]}")
    return Dataset("mnist", x_train, y_train, x_test, y_test, task="classification", num_classes=NUM_CLASSES,
                   input_shape=x_train.shape[1:], extra={"data_dir": str(folder)})
