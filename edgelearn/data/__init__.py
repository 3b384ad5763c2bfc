"""Datasets: MNIST (IDX), CIFAR-10/100 (pickle batches, restricted unpickling), scikit-learn digits, and the
generated tasks of the DRTP and LDFA papers; plus a checksum-verifying downloader (:mod:`.download`).

>>> from edgelearn.data import load_dataset
>>> ds = load_dataset("digits", seed=0)
>>> ds.x_train.shape, ds.output_dim
((1437, 1, 8, 8), 10)
"""
from pathlib import Path

from .dataset import Dataset
from .registry import DATASET_NAMES, FILE_DATASETS, dataset_params, load_dataset

#: the data directory beside a checkout (``../shared/data``: real MNIST and the CIFAR-10 subset on the project's
#: machines and in CI); the default of ``reproduce`` and of the benchmarks, absent on a user's fresh clone
SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"

__all__ = ["Dataset", "DATASET_NAMES", "FILE_DATASETS", "SHARED_DATA", "dataset_params", "load_dataset"]
