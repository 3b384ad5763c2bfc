"""Datasets: real MNIST / CIFAR-10 files (skipped when ../shared/data is absent), generated IDX and pickle files
for every failure mode, the generated tasks of the papers, and the ``edgelearn data`` command."""
from __future__ import annotations

import gzip
import hashlib
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from edgelearn.cli import main
from edgelearn.data import DATASET_NAMES, Dataset, dataset_params, load_dataset
from edgelearn.data.idx import IMAGES_MAGIC, LABELS_MAGIC, encode_idx, parse_idx, read_idx
from edgelearn.data.safe_pickle import safe_loads
from edgelearn.data.synthetic import cosine_targets
from edgelearn.errors import DataError, EdgelearnError
from needs import SHARED_DATA, require_data

MNIST_DIR = SHARED_DATA / "mnist"
CIFAR_DIR = SHARED_DATA / "cifar10-subset"

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
CIFAR_SUBSET_COUNTS = [396, 366, 420, 384, 422, 393, 414, 385, 407, 413]


def one_line_error(excinfo: pytest.ExceptionInfo) -> str:
    msg = str(excinfo.value)
    assert msg and "\n" not in msg, f"error message is not one line: {msg!r}"
    assert isinstance(excinfo.value, EdgelearnError)
    return msg


# ----------------------------------------------------------------------------------------------- file fixtures
def write_mnist(folder: Path, n_train: int = 30, n_test: int = 12, *, gz: bool = True, seed: int = 0) -> dict:
    """A tiny but valid MNIST folder (IDX files); returns the uint8 arrays written."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test)[::-1] % 10).astype(np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for stem, arr in arrays.items():
        data = encode_idx(arr)
        if gz:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / stem).write_bytes(data)
    return arrays


def cifar_batch(n: int, seed: int, *, label_keys=(b"labels",), num_classes: int = 10) -> dict:
    rng = np.random.default_rng(seed)
    batch = {b"batch_label": b"testing batch", b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
             b"filenames": [b"img_%d.png" % i for i in range(n)]}
    for key in label_keys:
        batch[key] = [int(v) for v in rng.integers(0, num_classes, n)]
    return batch


def write_pickle(path: Path, obj) -> None:
    path.write_bytes(pickle.dumps(obj, protocol=2))


def write_cifar10(folder: Path, sizes=(20, 15), n_test: int = 10) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    batches = {}
    for k, n in enumerate(sizes, start=1):
        batches[f"data_batch_{k}"] = cifar_batch(n, seed=k)
        write_pickle(folder / f"data_batch_{k}", batches[f"data_batch_{k}"])
    batches["test_batch"] = cifar_batch(n_test, seed=99)
    write_pickle(folder / "test_batch", batches["test_batch"])
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    write_pickle(folder / "batches.meta", {b"label_names": names, b"num_cases_per_batch": 10000})
    return batches


class Evil:
    """Unpickling this would run a shell command."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


# ------------------------------------------------------------------------------------------------ real MNIST
@pytest.fixture(scope="module")
def mnist() -> Dataset:
    return load_dataset("mnist", require_data(MNIST_DIR, "real MNIST"))


@pytest.mark.data
def test_mnist_real_shapes_ranges_and_class_counts(mnist):
    assert mnist.name == "mnist" and mnist.task == "classification" and mnist.num_classes == 10
    assert mnist.x_train.shape == (60000, 1, 28, 28) and mnist.x_test.shape == (10000, 1, 28, 28)
    assert mnist.x_train.dtype == np.float32 and mnist.y_train.dtype == np.int64
    assert mnist.input_shape == (1, 28, 28) and mnist.output_dim == 10
    assert mnist.x_train.min() == 0.0 and mnist.x_train.max() == 1.0
    assert np.bincount(mnist.y_train).tolist() == MNIST_TRAIN_COUNTS
    assert np.bincount(mnist.y_test).tolist() == MNIST_TEST_COUNTS


@pytest.mark.data
def test_mnist_real_round_trips_to_original_md5(mnist):
    # re-encoding the loaded arrays as IDX must give back the original files byte for byte (README md5s)
    labels = encode_idx(mnist.y_train.astype(np.uint8))
    assert hashlib.md5(labels).hexdigest() == "a25bea736e30d166cdddb491f175f624"
    test_images = encode_idx(np.rint(mnist.x_test[:, 0] * 255).astype(np.uint8))
    assert hashlib.md5(test_images).hexdigest() == "2646ac647ad5339dbf082846283269ea"


@pytest.mark.data
def test_mnist_real_n_train_is_first_rows(mnist):
    small = load_dataset("mnist", MNIST_DIR, n_train=100, n_test=7)
    assert small.x_train.shape == (100, 1, 28, 28) and small.x_test.shape == (7, 1, 28, 28)
    np.testing.assert_array_equal(small.x_train, mnist.x_train[:100])
    np.testing.assert_array_equal(small.y_test, mnist.y_test[:7])
    sub = mnist.subset(100, 7)
    np.testing.assert_array_equal(sub.y_train, small.y_train)
    with pytest.raises(DataError) as ei:
        mnist.subset(n_train=60001)
    assert "60000" in one_line_error(ei)


# ------------------------------------------------------------------------------------------- IDX and MNIST files
@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
def test_mnist_generated_folder_loads_exactly(tmp_path, gz):
    arrays = write_mnist(tmp_path, gz=gz)
    ds = load_dataset("mnist", tmp_path)
    assert ds.x_train.shape == (30, 1, 28, 28) and ds.x_test.shape == (12, 1, 28, 28)
    np.testing.assert_array_equal(np.rint(ds.x_train[:, 0] * 255).astype(np.uint8),
                                  arrays["train-images-idx3-ubyte"])
    np.testing.assert_allclose(ds.x_test[:, 0], arrays["t10k-images-idx3-ubyte"] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(ds.y_test, arrays["t10k-labels-idx1-ubyte"])
    assert ds.y_train.dtype == np.int64


def test_mnist_found_via_env_var_and_subfolder(tmp_path, monkeypatch):
    write_mnist(tmp_path / "mnist")
    monkeypatch.setenv("EDGELEARN_DATA", str(tmp_path))
    assert load_dataset("mnist").n_train == 30
    monkeypatch.delenv("EDGELEARN_DATA")
    assert load_dataset("mnist", tmp_path).n_test == 12  # <dir>/mnist is found too


def test_no_data_dir_and_no_env_var(monkeypatch):
    monkeypatch.delenv("EDGELEARN_DATA", raising=False)
    with pytest.raises(DataError) as ei:
        load_dataset("mnist")
    assert one_line_error(ei) == "no data directory given for mnist; pass --data-dir or set EDGELEARN_DATA"


def test_missing_dir_and_missing_file(tmp_path):
    with pytest.raises(DataError) as ei:
        load_dataset("mnist", tmp_path / "nowhere")
    assert "does not exist" in one_line_error(ei) and "nowhere" in str(ei.value)
    with pytest.raises(DataError) as ei:
        load_dataset("mnist", tmp_path)  # exists but empty
    assert "no mnist files" in one_line_error(ei)
    write_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError) as ei:
        load_dataset("mnist", tmp_path)
    assert "t10k-labels-idx1-ubyte" in one_line_error(ei)


def test_truncated_idx_is_rejected(tmp_path):
    write_mnist(tmp_path, gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError) as ei:
        load_dataset("mnist", tmp_path)
    msg = one_line_error(ei)
    assert "truncated" in msg and "train-images-idx3-ubyte" in msg
    path.write_bytes(path.read_bytes()[:10])  # not even a whole header
    with pytest.raises(DataError, match="truncated"):
        read_idx(path, IMAGES_MAGIC)


@pytest.mark.data
def test_truncated_copy_of_real_labels(tmp_path):
    require_data(MNIST_DIR, "real MNIST")
    raw = gzip.decompress((MNIST_DIR / "t10k-labels-idx1-ubyte.gz").read_bytes())
    assert len(raw) == 8 + 10000
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(raw[:5000])
    with pytest.raises(DataError) as ei:
        read_idx(tmp_path / "t10k-labels-idx1-ubyte", LABELS_MAGIC)
    assert "truncated" in one_line_error(ei) and "(10000,)" in str(ei.value)


def test_trailing_bytes_are_rejected():
    data = encode_idx(np.zeros(5, np.uint8)) + b"\x00\x00"
    with pytest.raises(DataError, match="trailing"):
        parse_idx(data, "x.idx", LABELS_MAGIC)


def test_bad_magic_is_rejected(tmp_path):
    write_mnist(tmp_path, gz=False)
    # a labels file where the images should be
    (tmp_path / "train-images-idx3-ubyte").write_bytes(encode_idx(np.zeros(30, np.uint8)))
    with pytest.raises(DataError) as ei:
        load_dataset("mnist", tmp_path)
    msg = one_line_error(ei)
    assert "bad magic number 2049" in msg and "expected 2051" in msg and "train-images" in msg
    with pytest.raises(DataError, match="not an IDX file"):
        parse_idx(b"PK\x03\x04" + bytes(100), "archive.zip")


def test_corrupt_and_truncated_gzip_are_rejected(tmp_path):
    write_mnist(tmp_path)
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    good = path.read_bytes()
    path.write_bytes(b"this is not gzip data at all")
    with pytest.raises(DataError) as ei:
        load_dataset("mnist", tmp_path)
    assert "corrupt gzip" in one_line_error(ei) and "train-labels" in str(ei.value)
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError) as ei:
        load_dataset("mnist", tmp_path)
    assert "truncated gzip" in one_line_error(ei)
    path.write_bytes(good[:10] + bytes(b ^ 0xFF for b in good[10:-8]) + good[-8:])  # flipped deflate stream
    with pytest.raises(DataError) as ei:
        load_dataset("mnist", tmp_path)
    one_line_error(ei)


def test_image_label_count_mismatch(tmp_path):
    write_mnist(tmp_path, gz=False)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(encode_idx(np.zeros(11, np.uint8)))
    with pytest.raises(DataError) as ei:
        load_dataset("mnist", tmp_path)
    msg = one_line_error(ei)
    assert "count mismatch" in msg and "12 images" in msg and "11 labels" in msg


def test_out_of_range_label(tmp_path):
    write_mnist(tmp_path, gz=False)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(encode_idx(np.full(12, 10, np.uint8)))
    with pytest.raises(DataError, match="label value 10"):
        load_dataset("mnist", tmp_path)


# ---------------------------------------------------------------------------------------------------- CIFAR
@pytest.fixture(scope="module")
def cifar_subset() -> Dataset:
    return load_dataset("cifar10", require_data(CIFAR_DIR, "CIFAR-10 subset"))


@pytest.mark.data
def test_cifar10_real_subset(cifar_subset):
    ds = cifar_subset
    assert ds.x_train.shape == (4000, 3, 32, 32) and ds.x_test.shape == (1000, 3, 32, 32)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0 and ds.x_train.max() == 1.0
    assert np.bincount(ds.y_train, minlength=10).tolist() == CIFAR_SUBSET_COUNTS
    # README: image 0 of data_batch_1 is a frog (label 6) whose red channel starts 59 43 50 68 98
    assert ds.y_train[0] == 6 and ds.extra["label_names"][6] == "frog"
    assert np.rint(ds.x_train[0, 0, 0, :5] * 255).astype(int).tolist() == [59, 43, 50, 68, 98]
    assert ds.extra["train_files"] == ["data_batch_1"]


def test_cifar10_generated_batches_in_order(tmp_path):
    batches = write_cifar10(tmp_path / "cifar-10-batches-py", sizes=(20, 15))
    ds = load_dataset("cifar10", tmp_path)  # finds the archive folder inside
    assert ds.x_train.shape == (35, 3, 32, 32) and ds.x_test.shape == (10, 3, 32, 32)
    expected = np.concatenate([batches["data_batch_1"][b"data"], batches["data_batch_2"][b"data"]])
    np.testing.assert_array_equal(np.rint(ds.x_train * 255).astype(np.uint8).reshape(35, -1), expected)
    # channel layout: the first 1024 bytes of a row are the red plane, row-major
    np.testing.assert_array_equal(np.rint(ds.x_test[3, 0] * 255).astype(np.uint8),
                                  batches["test_batch"][b"data"][3, :1024].reshape(32, 32))
    assert ds.y_train.tolist() == batches["data_batch_1"][b"labels"] + batches["data_batch_2"][b"labels"]
    small = load_dataset("cifar10", tmp_path, n_train=5, n_test=3)
    np.testing.assert_array_equal(small.x_train, ds.x_train[:5])
    assert small.n_test == 3


def test_cifar_legacy_numpy_module_path(tmp_path):
    # batches pickled by numpy 1.x name numpy.core.multiarray._reconstruct
    folder = tmp_path / "c"
    batches = write_cifar10(folder, sizes=(6,), n_test=4)
    raw = (folder / "data_batch_1").read_bytes()
    legacy = raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert legacy != raw
    (folder / "data_batch_1").write_bytes(legacy)
    ds = load_dataset("cifar10", folder)
    np.testing.assert_array_equal(np.rint(ds.x_train * 255).astype(np.uint8).reshape(6, -1),
                                  batches["data_batch_1"][b"data"])


def test_restricted_unpickler_refuses_os_system(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(Evil(marker), protocol=2)
    with pytest.raises(DataError) as ei:
        safe_loads(payload, "evil.pkl")
    msg = one_line_error(ei)
    assert "refusing to unpickle" in msg and "system" in msg
    # the same payload as a CIFAR batch
    folder = tmp_path / "cifar"
    write_cifar10(folder, sizes=(4,), n_test=2)
    (folder / "data_batch_1").write_bytes(pickle.dumps({b"data": Evil(marker)}, protocol=2))
    with pytest.raises(DataError) as ei:
        load_dataset("cifar10", folder)
    assert "data_batch_1" in one_line_error(ei) and "refusing" in str(ei.value)
    assert not marker.exists(), "the malicious pickle ran a command"


def test_restricted_unpickler_refuses_other_globals():
    for obj in (Path("/etc/passwd"), np.array([object()], dtype=object), {"f": eval}):
        with pytest.raises(DataError, match="refusing to unpickle"):
            safe_loads(pickle.dumps(obj, protocol=2), "x.pkl")


def test_corrupt_cifar_batches(tmp_path):
    folder = tmp_path / "c"
    write_cifar10(folder, sizes=(8,), n_test=4)
    good = (folder / "data_batch_1").read_bytes()
    (folder / "data_batch_1").write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError) as ei:
        load_dataset("cifar10", folder)
    assert "truncated pickle" in one_line_error(ei) and "data_batch_1" in str(ei.value)
    (folder / "data_batch_1").write_bytes(b"\x80\x02garbage")
    with pytest.raises(DataError) as ei:
        load_dataset("cifar10", folder)
    one_line_error(ei)
    bad = cifar_batch(8, 1)
    bad[b"data"] = bad[b"data"][:, :100]
    write_pickle(folder / "data_batch_1", bad)
    with pytest.raises(DataError, match=r"shape \(8, 100\)"):
        load_dataset("cifar10", folder)
    bad = cifar_batch(8, 1)
    bad[b"labels"] = bad[b"labels"][:5]
    write_pickle(folder / "data_batch_1", bad)
    with pytest.raises(DataError, match="8 images but 5 labels"):
        load_dataset("cifar10", folder)
    write_pickle(folder / "data_batch_1", [1, 2, 3])
    with pytest.raises(DataError, match="expected a dict"):
        load_dataset("cifar10", folder)
    write_pickle(folder / "data_batch_1", cifar_batch(8, 1))
    (folder / "test_batch").unlink()
    with pytest.raises(DataError, match="test_batch"):
        load_dataset("cifar10", folder)


def test_cifar100_fine_and_coarse(tmp_path):
    keys = (b"fine_labels", b"coarse_labels")
    train = cifar_batch(12, 1, label_keys=keys, num_classes=20)
    train[b"fine_labels"] = [int(v) for v in np.arange(12) * 8]  # up to 88 < 100
    write_pickle(tmp_path / "train", train)
    write_pickle(tmp_path / "test", cifar_batch(5, 2, label_keys=keys, num_classes=20))
    write_pickle(tmp_path / "meta", {b"fine_label_names": [b"c%d" % i for i in range(100)],
                                     b"coarse_label_names": [b"s%d" % i for i in range(20)]})
    fine = load_dataset("cifar100", tmp_path)
    assert fine.num_classes == 100 and fine.y_train.tolist() == train[b"fine_labels"]
    assert fine.x_train.shape == (12, 3, 32, 32) and fine.extra["label_names"][88] == "c88"
    coarse = load_dataset("cifar100", tmp_path, label_mode="coarse")
    assert coarse.num_classes == 20 and coarse.y_train.tolist() == train[b"coarse_labels"]
    with pytest.raises(DataError, match="label_mode"):
        load_dataset("cifar100", tmp_path, label_mode="medium")


# ----------------------------------------------------------------------------------------- generated datasets
def test_digits_split():
    ds = load_dataset("digits", seed=0)
    assert ds.x_train.shape == (1437, 1, 8, 8) and ds.x_test.shape == (360, 1, 8, 8)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0
    counts = np.bincount(ds.y_test, minlength=10)
    assert counts.sum() == 360 and counts.min() >= 35 and counts.max() <= 37  # stratified
    again = load_dataset("digits", seed=0)
    np.testing.assert_array_equal(ds.x_test, again.x_test)
    other = load_dataset("digits", seed=1)
    assert not np.array_equal(ds.y_test, other.y_test)
    # the split is a partition of the 1797 digits
    assert sorted(np.concatenate([ds.y_train, ds.y_test]).tolist()) == sorted(
        np.concatenate([other.y_train, other.y_test]).tolist())
    assert load_dataset("digits", n_train=100, n_test=50).x_train.shape == (100, 1, 8, 8)


def test_synthetic_paper_defaults_and_determinism():
    ds = load_dataset("synthetic")
    assert (ds.n_train, ds.n_test) == (25000, 5000) and ds.input_shape == (256,)
    assert ds.x_train.dtype == np.float32 and ds.num_classes == 10
    assert set(np.unique(ds.y_train)) == set(range(10))
    a = load_dataset("synthetic", seed=3, n_train=300, n_test=100)
    b = load_dataset("synthetic", seed=3, n_train=300, n_test=100)
    c = load_dataset("synthetic", seed=4, n_train=300, n_test=100)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.x_train, c.x_train)
    assert load_dataset("synthetic", n_train=50, n_test=10, n_classes=3, n_clusters_per_class=1).num_classes == 3
    with pytest.raises(DataError) as ei:
        load_dataset("synthetic", n_train=50, n_test=10, n_informative=2, n_classes=10)
    assert "synthetic" in one_line_error(ei)


def test_cosine_targets_follow_the_formula():
    ds = load_dataset("cosine", seed=0)
    assert (ds.n_train, ds.n_test) == (5000, 1000) and ds.input_shape == (256,)
    assert ds.task == "regression" and ds.num_classes is None and ds.output_dim == 10
    assert ds.y_train.dtype == np.float32 and ds.y_train.shape == (5000, 10)
    phi = -np.pi / 2 + np.arange(10) * np.pi / 9
    xbar = ds.x_train.astype(np.float64).mean(axis=1)
    np.testing.assert_allclose(ds.y_train, np.cos(xbar[:, None] + phi), atol=1e-6)
    np.testing.assert_allclose(ds.y_test, cosine_targets(ds.x_test), atol=1e-6)
    # one mean per example, uniform in [-pi, pi]; unit variance around it
    assert -np.pi - 0.5 < xbar.min() < -2.9 and 2.9 < xbar.max() < np.pi + 0.5
    assert abs(np.std(ds.x_train - xbar[:, None].astype(np.float32)) - 1.0) < 0.02
    again = load_dataset("cosine", seed=0)
    np.testing.assert_array_equal(ds.x_train, again.x_train)
    np.testing.assert_array_equal(ds.y_test, again.y_test)
    assert not np.array_equal(ds.x_train, load_dataset("cosine", seed=1).x_train)


def test_lowrank_teacher():
    ds = load_dataset("lowrank", seed=0)
    A = ds.extra["A"]
    assert A.shape == (64, 128) and np.linalg.matrix_rank(A) == 8
    assert ds.x_train.shape == (10000, 128) and ds.y_train.shape == (10000, 64) and ds.n_test == 2000
    assert ds.task == "regression" and ds.output_dim == 64
    np.testing.assert_allclose(A, sum(np.outer(v, u) for u, v in zip(ds.extra["U"], ds.extra["V"])), atol=1e-9)
    noise = ds.y_train - ds.x_train.astype(np.float64) @ A.T
    assert abs(noise.std() - 1.0) < 0.02 and abs(noise.mean()) < 0.02
    small = load_dataset("lowrank", seed=5, d=3, p=500, n_test=100, n=20, m=10)
    assert np.linalg.matrix_rank(small.extra["A"]) == 3 and small.x_train.shape == (500, 20)
    same = load_dataset("lowrank", seed=5, d=3, n_train=500, n_test=100, n=20, m=10)
    np.testing.assert_array_equal(small.y_train, same.y_train)
    np.testing.assert_array_equal(small.extra["A"], same.extra["A"])
    assert not np.array_equal(small.extra["A"], load_dataset("lowrank", seed=6, d=3, p=50, n=20, m=10).extra["A"])
    normed = load_dataset("lowrank", seed=0, normalize=True, p=2000)
    assert 2.0 < (normed.x_train.astype(np.float64) @ normed.extra["A"].T).std() < 4.5  # ~ sqrt(d)
    with pytest.raises(DataError, match="disagree"):
        load_dataset("lowrank", p=100, n_train=200)
    with pytest.raises(DataError, match="d for lowrank"):
        load_dataset("lowrank", d=65)


# ------------------------------------------------------------------------------------------- API and errors
def test_names_and_unknowns():
    assert DATASET_NAMES == ("mnist", "cifar10", "cifar100", "digits", "synthetic", "cosine", "lowrank")
    assert dataset_params("lowrank")["d"] == 8
    assert dataset_params("cifar100") == {"label_mode": "fine", "grayscale": False, "classes": None}
    with pytest.raises(DataError) as ei:
        load_dataset("mnsit")
    assert "did you mean mnist" in one_line_error(ei)
    with pytest.raises(DataError) as ei:
        load_dataset("cosine", n_features=8, depth=3)
    assert "depth" in one_line_error(ei) and "n_features" in str(ei.value)
    for bad in (-1, 2.5, "10", True):
        with pytest.raises(DataError):
            load_dataset("cosine", n_train=bad, n_test=5)


def test_dataset_container():
    ds = load_dataset("cosine", n_train=20, n_test=10, n_features=4, n_outputs=3)
    sub = ds.subset(5)
    assert sub.n_train == 5 and sub.n_test == 10 and sub.output_dim == 3 and sub.name == "cosine"
    np.testing.assert_array_equal(sub.y_train, ds.y_train[:5])
    assert "train=20" in repr(ds)
    with pytest.raises(DataError):
        Dataset("bad", np.zeros((3, 2), np.float32), np.zeros(2, np.int64), np.zeros((1, 2), np.float32),
                np.zeros(1, np.int64), task="classification", num_classes=2, input_shape=(2,))
    with pytest.raises(DataError, match="class counts"):
        ds.class_counts()


# ------------------------------------------------------------------------------------------------------ CLI
def test_cli_missing_data_dir(tmp_path, capsys):
    rc = main(["data", "info", "mnist", "--data-dir", str(tmp_path / "missing")])
    err = capsys.readouterr().err
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "does not exist" in lines[0] and lines[0].startswith("edgelearn data: error:")


def test_cli_info_tables(tmp_path, capsys):
    assert main(["data", "info", "digits", "--seed", "0"]) == 0
    out = capsys.readouterr().out
    assert "1437" in out and "360" in out and "float32" in out and "examples per class" in out
    write_mnist(tmp_path)
    assert main(["data", "info", "mnist", "--data-dir", str(tmp_path)]) == 0
    assert "(30, 1, 28, 28)" in capsys.readouterr().out
    assert main(["data", "info", "lowrank", "-p", "d=4", "--n-train", "200", "--n-test", "50"]) == 0
    assert "rank 4" in capsys.readouterr().out
    assert main(["data", "info", "lowrank", "-p", "oops"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
    assert main(["data", "info", "imagenet"]) == 2
    assert "unknown dataset" in capsys.readouterr().err
