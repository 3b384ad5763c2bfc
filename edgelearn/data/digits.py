"""scikit-learn's 8x8 digits (ships with scikit-learn): the embedded default dataset."""
from __future__ import annotations

import numpy as np

from .dataset import Dataset, check_count

N_DIGITS = 1797
DEFAULT_TEST_SIZE = 360


def load_digits_dataset(*, seed: int = 0, n_train: int | None = None, n_test: int | None = None,
                        test_size: int = DEFAULT_TEST_SIZE) -> Dataset:
    """Digits as (N, 1, 8, 8) float32 in [0, 1] (pixel/16), stratified split 1437/360 by ``seed``.

    ``n_train``/``n_test`` then keep the first rows of each split.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    seed = check_count("seed", seed, maximum=2**32 - 1)
    test_size = check_count("test_size", test_size, minimum=10, maximum=N_DIGITS - 10, context="digits")
    bunch = load_digits()
    x = (bunch.data.astype(np.float32) / np.float32(16)).reshape(-1, 1, 8, 8)
    y = bunch.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=test_size, random_state=seed, stratify=y)
    ds = Dataset("digits", np.ascontiguousarray(x_train), y_train, np.ascontiguousarray(x_test), y_test,
                 task="classification", num_classes=10, input_shape=(1, 8, 8))
    if n_train is not None or n_test is not None:
        ds = ds.subset(n_train, n_test)
    return ds

