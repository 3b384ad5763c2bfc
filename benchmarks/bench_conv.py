"""Speed of the fixed-point engine on the DRTP paper's CONV network with random kernels (docs/engine.md,
"Convolutional front end"), beside the float reference at batch 1.

    python benchmarks/bench_conv.py                   # 1,000 real MNIST samples, 8-bit DRTP, 1 thread
    python benchmarks/bench_conv.py --n 300 --bits 16

conv-mnist-random: conv 32 5x5 pad 2 (frozen, tanh) - maxpool 2x2 - fc 1000 tanh (DRTP) - fc 10 sigmoid, online.
Engine: 2-epoch fits with the front end computed once and reused (engine.FEATURE_CACHE_BYTES) and computed at every
visit, interleaved three times (medians), and the front end alone. Torch (float32, torch.no_grad, 1 thread): natural (new
tensors per step) and in place (addmv / addr_ for the FC layers; conv2d has no in-place form), the same frozen conv
and DRTP update. Every figure of one run is measured side by side: the ratios are meaningful on a loaded machine,
the absolute numbers are not.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from edgelearn.data import SHARED_DATA  # noqa: E402 (after the path set-up above)
DEFAULT_DATA = SHARED_DATA / "mnist"


def samples(data_dir: Path, n: int):
    from edgelearn.data import load_dataset

    if data_dir.is_dir():
        ds = load_dataset("mnist", data_dir, n_train=n, n_test=10)
        return ds.x_train.reshape(n, -1), ds.y_train, "real MNIST"
    rng = np.random.default_rng(0)  # MNIST-like: ~19 % non-zero pixels
    x = rng.random((n, 784)).astype(np.float32)
    x[rng.random((n, 784)) < 0.81] = 0.0
    return x, rng.integers(0, 10, n), "synthetic MNIST-like"


def bench_engine(x, y, bits: int, reps: int = 3) -> dict[str, float]:
    """Samples/s of 2-epoch online fits with the front end computed once and reused, and with it computed at every
    visit (FEATURE_CACHE_BYTES = 0), interleaved ``reps`` times (medians); and of the front end alone."""
    from edgelearn.fixed import engine as E
    from edgelearn.network import load_network

    spec = load_network("conv-mnist-random")
    cap = E.FEATURE_CACHE_BYTES
    runs: dict[str, list[float]] = {"cached": [], "online": []}
    for _ in range(reps):
        for name, limit in (("cached", cap), ("online", 0)):
            E.FEATURE_CACHE_BYTES = limit
            eng = E.FixedEngine(spec, bits=bits, seed=0)
            X = eng.quantize_inputs(x)
            eng.fit_raw(X[:10], y[:10])  # compile
            t = time.perf_counter()
            eng.fit_raw(X, y, epochs=2)
            runs[name].append(2 * len(X) / (time.perf_counter() - t))
    E.FEATURE_CACHE_BYTES = cap
    t = time.perf_counter()
    eng.features(X)
    out = {k: float(np.median(v)) for k, v in runs.items()}
    out["front"] = len(X) / (time.perf_counter() - t)
    out["pairs"] = runs
    return out


def bench_torch(x, y, reps: int = 1) -> dict[str, float]:
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    K = (torch.rand(32, 1, 5, 5, generator=g) * 2 - 1) * (6 / 25) ** 0.5
    W1 = (torch.rand(1000, 6272, generator=g) * 2 - 1) * (6 / 6272) ** 0.5
    W2 = (torch.rand(10, 1000, generator=g) * 2 - 1) * (6 / 1000) ** 0.5
    b1, b2 = torch.zeros(1000), torch.zeros(10)
    B = torch.rand(10, 1000, generator=g) * 2 - 1
    xs = torch.from_numpy(np.asarray(x, dtype=np.float32)).reshape(-1, 1, 1, 28, 28)
    eye = torch.eye(10)
    lr_h, lr_o = 2.0 ** -12, 2.0 ** -12

    def front(xi):
        return F.max_pool2d(torch.tanh(F.conv2d(xi, K, padding=2)), 2).reshape(-1)

    def natural(xi, c):
        nonlocal W1, W2, b1, b2
        v = front(xi)
        y1 = torch.tanh(W1 @ v + b1)
        d1 = B[c] * (1 - y1 * y1)
        W1 = W1 + lr_h * torch.outer(d1, v)
        b1 = b1 + lr_h * d1
        e = eye[c] - torch.sigmoid(W2 @ y1 + b2)
        W2 = W2 + lr_o * torch.outer(e, y1)
        b2 = b2 + lr_o * e

    def inplace(xi, c):
        v = front(xi)
        y1 = torch.addmv(b1, W1, v).tanh_()
        d1 = y1.mul(y1).neg_().add_(1).mul_(B[c])
        W1.addr_(d1, v, alpha=lr_h)
        b1.add_(d1, alpha=lr_h)
        e = eye[c].sub(torch.addmv(b2, W2, y1).sigmoid_())
        W2.addr_(e, y1, alpha=lr_o)
        b2.add_(e, alpha=lr_o)

    from bench_engine import time_steps

    return time_steps({"natural": natural, "inplace": inplace}, xs, y, reps, warm=10, clock=time.perf_counter)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1000, help="training samples timed (default 1000)")
    ap.add_argument("--bits", type=int, default=8)
    ap.add_argument("--data-dir", default=str(DEFAULT_DATA))
    args = ap.parse_args()
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")
    x, y, what = samples(Path(args.data_dir), args.n)
    eng = bench_engine(x, y, args.bits)
    tor = bench_torch(x, y)
    print(f"conv-mnist-random, online DRTP, {args.n} {what} samples, 1 thread, load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print("| run | samples/s | vs torch natural | vs torch in place |")
    print("|---|---|---|---|")
    rows = [(f"engine {args.bits}-bit, 2-epoch fit, front end at every visit", eng["online"]),
            (f"engine {args.bits}-bit, 2-epoch fit, front end computed once", eng["cached"]),
            ("torch float32 batch 1, natural", tor["natural"]),
            ("torch float32 batch 1, in place (addmv/addr_)", tor["inplace"])]
    for name, v in rows:
        print(f"| {name} | {v:,.0f} | {v / tor['natural']:.2f}x | {v / tor['inplace']:.2f}x |")
    print("engine runs (samples/s, interleaved): once " + " ".join(f"{v:.1f}" for v in eng["pairs"]["cached"]) +
          " | every visit " + " ".join(f"{v:.1f}" for v in eng["pairs"]["online"]))
    print(f"engine front end alone (conv + tanh table + maxpool): {eng['front']:,.0f} samples/s; "
          f"share of a step that computes it: {eng['online'] / eng['front']:.0%}")


if __name__ == "__main__":
    main()
