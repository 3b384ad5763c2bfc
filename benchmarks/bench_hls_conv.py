"""C-simulation of the HLS learning kernel behind a frozen conv front end against the engine, on real MNIST.

Per configuration the engine (8-bit preset, seed 0) first learns online from ``--train`` MNIST training images (the
linear layers; the conv kernels stay frozen at their random init), then the kernel is generated from it, compiled
with g++ and run over ``--n`` MNIST test images, one call (front end, inference, one learning step) each.  The
table gives the mismatching bits against the engine's golden trace: the front end's output of every sample
(``GoldenTrace.front_out``, from the testbench's own call of the front end), the outputs and predictions before
every update, and the final state (weights, biases, generator states); then the cycle model (docs/hls.md, 200 MHz,
one lane): the front end's cycles and the whole call's, learning and inference, on the testbench images.
The last row is a deliberate fault: spoon-like with every kernel's taps transposed (ky <-> kx) in the generated
ROM (firmware/front.h) -- it must mismatch.  Each row compiles one binary (about 15 s of CPU).

    NUMBA_NUM_THREADS=1 .venv/bin/python benchmarks/bench_hls_conv.py [--n 100] [--train 2000] [--data-dir DIR]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from edgelearn.data import SHARED_DATA, load_dataset
from edgelearn.fixed import FixedEngine
from edgelearn.fixed.lower import trace
from edgelearn.hls.kernel import KernelSpec, render_front, write_kernel_project
from edgelearn.network import load_network, network_from_dict

DATA = SHARED_DATA / "mnist"

# spoon-like with a strided, padded conv (relu) and an average pool: conv8 5x5 stride 2 padding 2 -> 8x14x14,
# avgpool 2 -> 8x7x7 (392 features), fc128 tanh (drtp), fc10
STRIDED = {"layers": [
    {"type": "conv2d", "out": 8, "kernel": 5, "stride": 2, "padding": 2, "act": "relu", "name": "conv1"},
    {"type": "avgpool", "kernel": 2, "stride": 2}, {"type": "flatten"},
    {"type": "linear", "out": 128, "act": "tanh", "name": "fc1"}, {"type": "linear", "out": 10, "name": "out"}]}

CONFIGS = [  # title, network changes, rng, fault
    ("spoon-like", {}, "layer", False),
    ("spoon-like", {}, "neuron", False),
    ("spoon-like, conv stride 2 padding 2 relu, avgpool 2", STRIDED, "layer", False),
    ("spoon-like, FAULT: kernel taps transposed in the ROM", {}, "layer", True),
]


def engine(changes, rng, ds):
    spec = load_network("spoon-like")
    if changes:
        spec = network_from_dict({**spec.to_dict(), **changes}, source="spoon-like-strided")
    eng = FixedEngine(spec, bits=8, seed=0, rng=rng)
    eng.fit(ds.x_train, ds.y_train, epochs=1)
    return eng


def transposed_front(proj) -> None:
    """Rewrite the project's front.h with every conv kernel's taps transposed (the fault row)."""
    prog = proj.spec.program
    front = [dict(f, W=f["W"].transpose(0, 1, 3, 2).copy()) if f["type"] == "conv2d" else f for f in prog.front]
    bad = KernelSpec(type(prog)(**{**prog.__dict__, "front": front}))
    (proj.firmware / "front.h").write_text(render_front(bad))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100, help="MNIST test images in the testbench (one learning step each)")
    ap.add_argument("--train", type=int, default=2000, help="MNIST training images the engine learns from first")
    ap.add_argument("--data-dir", default=str(DATA))
    args = ap.parse_args(argv)
    ds = load_dataset("mnist", args.data_dir, n_train=args.train, n_test=args.n)
    print(f"MNIST: {args.train} training images (engine, online, before export), {args.n} test images "
          f"(testbench: one kernel call each)\n")
    print("| network | rng | features | front-end bits | output bits | state bits | front cycles | "
          "cycles/sample (learning) | (inference) | C-sim s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for title, changes, rng, fault in CONFIGS:
        eng = engine(changes, rng, ds)
        X = eng.quantize_inputs(ds.x_test[:args.n], count=False)
        y = np.asarray(ds.y_test[:args.n], dtype=np.int64)
        with tempfile.TemporaryDirectory(prefix="bench-hls-conv-") as tmp:
            proj = write_kernel_project(eng, Path(tmp) / "k", tb_samples=(X, y))
            if fault:
                transposed_front(proj)
            proj.compile()
            run = proj.run()
        gold = trace(eng, X, y, snapshots=[])
        assert np.array_equal(run.preds, gold.preds) or fault
        cyc = proj.cycles["testbench"]
        fc = sum(s["cycles"] for s in cyc["steps"] if s["step"].startswith("front"))
        print(f"| {title} | {rng} | {eng.sizes[0]} | {run.front_mismatch_bits} | {run.output_mismatch_bits} | "
              f"{run.state_mismatch_bits} | {fc:,} | {cyc['cycles_per_sample']:,} | "
              f"{cyc['inference_cycles_per_sample']:,} | {run.seconds:.1f} |", flush=True)


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"\n({time.perf_counter() - t0:.0f} s)")
