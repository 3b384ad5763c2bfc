"""Speed of the fixed-point engine and its float twin on the DRTP paper's CONV network with learning kernels
(conv-mnist: conv1 trained with DRTP, docs/arithmetic.md §15a) beside the same network with frozen random kernels
(conv-mnist-random), online (docs/engine.md, "Convolutional front end").

    python benchmarks/bench_conv_learning.py                 # 200 real MNIST samples, 8-bit, 1 thread
    python benchmarks/bench_conv_learning.py --n 100 --bits 16

One-epoch fits (the frozen front end is then computed at every visit, as the learning one must be), the two
networks interleaved ``--reps`` times (medians), each at the learning rate 2**-9 conv-mnist-random sets. Every figure
of one run is measured side by side: the ratios are meaningful on a loaded machine, the absolute numbers are not.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from edgelearn.data import SHARED_DATA  # noqa: E402 (after the path set-up above)
DEFAULT_DATA = SHARED_DATA / "mnist"
NETWORKS = ("conv-mnist", "conv-mnist-random")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200, help="training samples per fit")
    ap.add_argument("--bits", type=int, default=8)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    args = ap.parse_args()

    from edgelearn.data import load_dataset
    from edgelearn.fixed.engine import FixedEngine
    from edgelearn.network import load_network

    ds = load_dataset("mnist", args.data_dir, n_train=args.n, n_test=10)
    x, y = ds.x_train.reshape(args.n, -1), ds.y_train
    runs: dict[tuple[str, str], list[float]] = {(n, k): [] for n in NETWORKS for k in ("engine", "twin")}
    for _ in range(args.reps):
        for name in NETWORKS:
            eng = FixedEngine(load_network(name), bits=args.bits, seed=0, lr_shift=9)
            X = eng.quantize_inputs(x)
            twin = eng.float_twin()
            eng.fit_raw(X[:5], y[:5])  # compile / load the kernels
            twin.fit(x[:5], y[:5])
            t = time.perf_counter()
            eng.fit_raw(X, y)
            runs[name, "engine"].append(args.n / (time.perf_counter() - t))
            t = time.perf_counter()
            twin.fit(x, y)
            runs[name, "twin"].append(args.n / (time.perf_counter() - t))
    print(f"{args.n} real MNIST samples, {args.bits}-bit preset, lr 2^-9, online, 1 thread, medians of {args.reps} "
          f"interleaved 1-epoch fits (samples/s):")
    print(f"{'network':<20} {'conv1':<8} {'engine':>8} {'twin':>8}")
    for name in NETWORKS:
        kind = "drtp" if name == "conv-mnist" else "frozen"
        print(f"{name:<20} {kind:<8} {np.median(runs[name, 'engine']):8.1f} {np.median(runs[name, 'twin']):8.1f}")


if __name__ == "__main__":
    main()
