"""Generated datasets of the papers: DRTP's synthetic classification and cosine regression, LDFA's low-rank
linear teacher. Each is a deterministic function of ``seed``."""
from __future__ import annotations

import math
from numbers import Real

import numpy as np

from ..errors import DataError
from .dataset import Dataset, check_count


def _check_real(what: str, value, context: str, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(float(value)):
        raise DataError(f"{what} for {context} must be a finite number, got {value!r}")
    if positive and value <= 0:
        raise DataError(f"{what} for {context} must be > 0, got {value!r}")
    return float(value)


def _seed(seed) -> int:
    return check_count("seed", seed, maximum=2**32 - 1)


def make_synthetic(*, seed: int = 0, n_train: int | None = None, n_test: int | None = None,
                   n_features: int = 256, n_informative: int = 128, n_redundant: int = 0, n_classes: int = 10,
                   n_clusters_per_class: int = 5, class_sep: float = 4.5) -> Dataset:
    """DRTP's synthetic classification task (sklearn ``make_classification``), 25k train / 5k test by default.

    One call generates ``n_train + n_test`` examples; the first ``n_train`` are the training set.
    """
    from sklearn.datasets import make_classification

    ctx = "synthetic"
    seed = _seed(seed)
    n_train = 25_000 if n_train is None else check_count("n_train", n_train, minimum=1, context=ctx)
    n_test = 5_000 if n_test is None else check_count("n_test", n_test, context=ctx)
    n_features = check_count("n_features", n_features, minimum=1, context=ctx)
    n_informative = check_count("n_informative", n_informative, minimum=1, maximum=n_features, context=ctx)
    n_redundant = check_count("n_redundant", n_redundant, context=ctx)
    n_classes = check_count("n_classes", n_classes, minimum=2, context=ctx)
    n_clusters_per_class = check_count("n_clusters_per_class", n_clusters_per_class, minimum=1, context=ctx)
    class_sep = _check_real("class_sep", class_sep, ctx, positive=True)
    try:
        x, y = make_classification(
            n_samples=n_train + n_test, n_features=n_features, n_informative=n_informative,
            n_redundant=n_redundant, n_repeated=0, n_classes=n_classes,
            n_clusters_per_class=n_clusters_per_class, class_sep=class_sep, random_state=seed,
        )
    except ValueError as exc:
        raise DataError(f"bad parameters for synthetic: {' '.join(str(exc).split())}") from None
    x = x.astype(np.float32)
    y = y.astype(np.int64)
    return Dataset("synthetic", x[:n_train], y[:n_train], x[n_train:], y[n_train:], task="classification",
                   num_classes=n_classes, input_shape=(n_features,))


def cosine_phases(n_outputs: int) -> np.ndarray:
    """phi_j = -pi/2 + j*pi/(n_outputs-1): DRTP's -pi/2 + j*pi/9 for its 10 outputs."""
    if n_outputs == 1:
        return np.array([-np.pi / 2])
    return -np.pi / 2 + np.arange(n_outputs) * np.pi / (n_outputs - 1)


def cosine_targets(x: np.ndarray, n_outputs: int = 10) -> np.ndarray:
    """y_j = cos(mean(x) + phi_j) for each row of ``x`` (float64)."""
    xbar = np.asarray(x, dtype=np.float64).reshape(len(x), -1).mean(axis=1)
    return np.cos(xbar[:, None] + cosine_phases(n_outputs)[None, :])


def _cosine_split(rng: np.random.Generator, n: int, n_features: int, n_outputs: int):
    means = rng.uniform(-np.pi, np.pi, size=(n, 1))
    x = (means + rng.standard_normal((n, n_features))).astype(np.float32)
    return x, cosine_targets(x, n_outputs).astype(np.float32)


def make_cosine(*, seed: int = 0, n_train: int | None = None, n_test: int | None = None, n_features: int = 256,
                n_outputs: int = 10) -> Dataset:
    """DRTP's regression task: x ~ N(mu, 1)^256 with mu ~ U(-pi, pi) per example; y_j = cos(mean(x) + phi_j).

    5k train / 1k test by default. The train and test sets come from independent streams of ``seed``, so
    changing one size does not change the other set.
    """
    ctx = "cosine"
    seed = _seed(seed)
    n_train = 5_000 if n_train is None else check_count("n_train", n_train, minimum=1, context=ctx)
    n_test = 1_000 if n_test is None else check_count("n_test", n_test, context=ctx)
    n_features = check_count("n_features", n_features, minimum=1, context=ctx)
    n_outputs = check_count("n_outputs", n_outputs, minimum=1, context=ctx)
    rng_train, rng_test = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    x_train, y_train = _cosine_split(rng_train, n_train, n_features, n_outputs)
    x_test, y_test = _cosine_split(rng_test, n_test, n_features, n_outputs)
    return Dataset("cosine", x_train, y_train, x_test, y_test, task="regression", num_classes=None,
                   input_shape=(n_features,), extra={"phases": cosine_phases(n_outputs)})


def make_lowrank(*, seed: int = 0, n_train: int | None = None, n_test: int | None = None, n: int = 128, m: int = 64,
                 d: int = 8, p: int | None = None, noise_std: float = 1.0, normalize: bool = False) -> Dataset:
    """LDFA's linear teacher (section 3): y = A x + xi with A = sum_j v_j u_j^T of rank d.

    u_j in R^n and v_j in R^m are standard Gaussian vectors (so A is m x n), x ~ N(0, I_n), xi ~ N(0, noise_std^2
    I_m). ``p`` (alias ``n_train``) training samples, default 10000; ``n_test`` default 2000. ``normalize=True``
    scales each u_j by 1/sqrt(n), so that A x has variance d per output instead of n*d (not in the paper; handy
    for fixed-point ranges). The teacher is in ``extra["A"]`` (float64, m x n), with ``extra["U"]`` (d x n) and
    ``extra["V"]`` (d x m) holding the u_j and v_j as rows.
    """
    ctx = "lowrank"
    seed = _seed(seed)
    if p is not None and n_train is not None and p != n_train:
        raise DataError(f"lowrank: p={p} and n_train={n_train} disagree (p is the number of training samples)")
    p = p if p is not None else n_train
    p = 10_000 if p is None else check_count("p", p, minimum=1, context=ctx)
    n_test = 2_000 if n_test is None else check_count("n_test", n_test, context=ctx)
    n = check_count("n", n, minimum=1, context=ctx)
    m = check_count("m", m, minimum=1, context=ctx)
    d = check_count("d", d, minimum=1, maximum=min(n, m), context=ctx)
    noise_std = _check_real("noise_std", noise_std, ctx)
    if noise_std < 0:
        raise DataError(f"noise_std for {ctx} must be >= 0, got {noise_std}")
    if not isinstance(normalize, bool):
        raise DataError(f"normalize for {ctx} must be true or false, got {normalize!r}")
    rng_a, rng_train, rng_test = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))
    U = rng_a.standard_normal((d, n))
    V = rng_a.standard_normal((d, m))
    if normalize:
        U /= math.sqrt(n)
    A = V.T @ U  # sum_j v_j u_j^T : R^n -> R^m

    def split(rng: np.random.Generator, count: int):
        x = rng.standard_normal((count, n))
        y = x @ A.T + noise_std * rng.standard_normal((count, m))
        return x.astype(np.float32), y.astype(np.float32)

    x_train, y_train = split(rng_train, p)
    x_test, y_test = split(rng_test, n_test)
    return Dataset("lowrank", x_train, y_train, x_test, y_test, task="regression", num_classes=None,
                   input_shape=(n,), extra={"A": A, "U": U, "V": V, "d": d, "noise_std": noise_std})
