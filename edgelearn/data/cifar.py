"""CIFAR-10 and CIFAR-100 from their "python version" pickle batches, read with the restricted unpickler."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from .dataset import Dataset
from .paths import resolve_data_dir
from .safe_pickle import safe_load

IMAGE_SHAPE = (3, 32, 32)
_ROW = 3 * 32 * 32
_BATCH_RE = re.compile(r"data_batch_(\d+)$")


def _text(key: Any) -> Any:
    return key.decode("latin1") if isinstance(key, bytes) else key


def _batch(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images (N, 3, 32, 32), int64 labels (N,)) from one batch file, validated."""
    obj = safe_load(path)
    if not isinstance(obj, dict):
        raise DataError(f"{path}: not a CIFAR batch (expected a dict, got {type(obj).__name__})")
    entries = {_text(k): v for k, v in obj.items()}
    for key in ("data", label_key):
        if key not in entries:
            raise DataError(f"{path}: not a CIFAR batch (no '{key}' entry)")
    data = entries["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8:
        kind = data.dtype if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{path}: 'data' must be a uint8 array, got {kind}")
    if data.ndim != 2 or data.shape[1] != _ROW:
        raise DataError(f"{path}: 'data' has shape {data.shape}, expected (N, {_ROW})")
    try:
        labels = np.asarray(entries[label_key], dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        raise DataError(f"{path}: '{label_key}' is not a list of integers") from None
    if labels.ndim != 1:
        raise DataError(f"{path}: '{label_key}' has shape {labels.shape}, expected a flat list")
    if len(labels) != len(data):
        raise DataError(f"{path}: count mismatch: {len(data)} images but {len(labels)} labels")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        bad = int(labels.min() if labels.min() < 0 else labels.max())
        raise DataError(f"{path}: label value {bad} out of range 0..{num_classes - 1}")
    return data.reshape(-1, *IMAGE_SHAPE), labels


def _label_names(path: Path, key: str) -> list[str] | None:
    if not path.is_file():
        return None
    meta = safe_load(path)
    names = meta.get(key.encode()) if isinstance(meta, dict) else None
    if names is None and isinstance(meta, dict):
        names = meta.get(key)
    if not isinstance(names, list):
        raise DataError(f"{path}: no '{key}' list in the metadata file")
    return [str(_text(n)) for n in names]


def _to_float(images: np.ndarray, n: int | None, split: str, source: Path, grayscale: bool = False) -> np.ndarray:
    if n is not None and n > len(images):
        raise DataError(f"n_{split}={n} exceeds the {len(images)} {split} examples in {source}")
    x = np.true_divide(images[:n], np.float32(255), dtype=np.float32)
    if grayscale:  # ITU-R BT.601 luma, as PIL's "L" conversion: (N, 1, 32, 32)
        w = np.array([0.299, 0.587, 0.114], dtype=np.float32).reshape(1, 3, 1, 1)
        x = (x * w).sum(axis=1, keepdims=True, dtype=np.float32)
    return x


def _check_grayscale(grayscale) -> bool:
    if not isinstance(grayscale, bool):
        raise DataError(f"grayscale must be true or false, got {grayscale!r}")
    return grayscale


def _class_list(classes, num_classes: int, name: str) -> list[int] | None:
    """``classes``: None (all), an int d (the first d classes, 0..d-1) or a list of distinct class indices."""
    if classes is None:
        return None
    if isinstance(classes, bool):
        raise DataError(f"classes for {name} must be a number of classes or a list of class indices, got {classes!r}")
    if isinstance(classes, int):
        if not 2 <= classes <= num_classes:
            raise DataError(f"classes for {name} must be between 2 and {num_classes}, got {classes}")
        return list(range(classes))
    if isinstance(classes, (list, tuple)) and all(isinstance(c, int) and not isinstance(c, bool) for c in classes):
        if len(set(classes)) != len(classes) or len(classes) < 2 or not all(0 <= c < num_classes for c in classes):
            raise DataError(f"classes for {name} must be at least 2 distinct indices in 0..{num_classes - 1}, "
                            f"got {list(classes)}")
        return list(classes)
    raise DataError(f"classes for {name} must be a number of classes or a list of class indices, got {classes!r}")


def _keep_classes(x: np.ndarray, y: np.ndarray, classes: list[int] | None) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the given classes, in file order, relabelled 0..len(classes)-1 in the order of ``classes``."""
    if classes is None:
        return x, y
    lut = np.full(max(int(y.max(initial=0)), max(classes)) + 1, -1, dtype=np.int64)
    lut[classes] = np.arange(len(classes))
    keep = lut[y] >= 0
    return x[keep], lut[y[keep]]


def cifar10_train_batches(folder: Path) -> list[Path]:
    """The ``data_batch_<k>`` files in ``folder``, in numeric order."""
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _BATCH_RE.match(p.name)) and p.is_file()]
    return [p for _, p in sorted(found)]


def _has_cifar10(folder: Path) -> bool:
    return (folder / "test_batch").is_file() or bool(cifar10_train_batches(folder))


def _has_cifar100(folder: Path) -> bool:
    return (folder / "train").is_file() or (folder / "test").is_file()


def load_cifar10(data_dir: str | os.PathLike | None = None, *, n_train: int | None = None,
                 n_test: int | None = None, grayscale: bool = False, classes=None) -> Dataset:
    """CIFAR-10 from ``data_batch_*`` (whichever exist) and ``test_batch``: (N, 3, 32, 32) float32 in [0, 1]
    (``grayscale``: (N, 1, 32, 32) luma); ``classes`` keeps a subset of the classes (see :func:`_class_list`)."""
    grayscale = _check_grayscale(grayscale)
    keep = _class_list(classes, 10, "cifar10")
    folder = resolve_data_dir("cifar10", data_dir, _has_cifar10, "data_batch_1..5 and test_batch")
    batches = cifar10_train_batches(folder)
    if not batches:
        raise DataError(f"{folder}: no CIFAR-10 training batches (data_batch_1 ... data_batch_5)")
    test_path = folder / "test_batch"
    if not test_path.is_file():
        raise DataError(f"{folder}: missing CIFAR-10 file test_batch")
    parts = [_batch(p, "labels", 10) for p in batches]
    x_train = np.concatenate([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
    y_train = np.concatenate([p[1] for p in parts]) if len(parts) > 1 else parts[0][1]
    x_test, y_test = _batch(test_path, "labels", 10)
    x_train, y_train = _keep_classes(x_train, y_train, keep)
    x_test, y_test = _keep_classes(x_test, y_test, keep)
    extra: dict[str, Any] = {"data_dir": str(folder), "train_files": [p.name for p in batches]}
    names = _label_names(folder / "batches.meta", "label_names")
    if names is not None:
        extra["label_names"] = names if keep is None else [names[c] for c in keep]
    if keep is not None:
        extra["classes"] = keep
    return Dataset(
        "cifar10", _to_float(x_train, n_train, "train", folder, grayscale), y_train[:n_train],
        _to_float(x_test, n_test, "test", test_path, grayscale), y_test[:n_test],
        task="classification", num_classes=10 if keep is None else len(keep),
        input_shape=(1, 32, 32) if grayscale else IMAGE_SHAPE, extra=extra,
    )


def load_cifar100(data_dir: str | os.PathLike | None = None, *, n_train: int | None = None,
                  n_test: int | None = None, label_mode: str = "fine", grayscale: bool = False,
                  classes=None) -> Dataset:
    """CIFAR-100 from ``train`` and ``test``; ``label_mode`` "fine" (100 classes) or "coarse" (20); ``classes``
    keeps a subset (an int d: classes 0..d-1; or a list), relabelled 0..d-1 (LDFA paper Fig. 3c)."""
    if label_mode not in ("fine", "coarse"):
        raise DataError(f"label_mode for cifar100 must be 'fine' or 'coarse', got {label_mode!r}")
    grayscale = _check_grayscale(grayscale)
    num_classes = 100 if label_mode == "fine" else 20
    keep = _class_list(classes, num_classes, "cifar100")
    key = f"{label_mode}_labels"
    folder = resolve_data_dir("cifar100", data_dir, _has_cifar100, "train and test")
    paths = {}
    for split in ("train", "test"):
        paths[split] = folder / split
        if not paths[split].is_file():
            raise DataError(f"{folder}: missing CIFAR-100 file {split}")
    x_train, y_train = _keep_classes(*_batch(paths["train"], key, num_classes), keep)
    x_test, y_test = _keep_classes(*_batch(paths["test"], key, num_classes), keep)
    extra: dict[str, Any] = {"data_dir": str(folder), "label_mode": label_mode}
    names = _label_names(folder / "meta", f"{label_mode}_label_names")
    if names is not None:
        extra["label_names"] = names if keep is None else [names[c] for c in keep]
    if keep is not None:
        extra["classes"] = keep
    return Dataset(
        "cifar100", _to_float(x_train, n_train, "train", paths["train"], grayscale), y_train[:n_train],
        _to_float(x_test, n_test, "test", paths["test"], grayscale), y_test[:n_test],
        task="classification", num_classes=num_classes if keep is None else len(keep),
        input_shape=(1, 32, 32) if grayscale else IMAGE_SHAPE, extra=extra,
    )
