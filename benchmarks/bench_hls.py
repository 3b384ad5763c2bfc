"""C-simulation time of the generated HLS projects vs the fixed-point engine, on the same samples.

    .venv/bin/python benchmarks/bench_hls.py [--config fc1-500] [--n 500]

- inference: hls4ml's compiled C-simulation (`predict`) vs `FixedEngine.output_raw` on N samples (both bit-exact:
  the mismatching bits are counted and printed);
- learning: the learning kernel's C-simulation (g++ -O2 binary: N online DRTP steps, reading tb_data) vs
  N `FixedEngine.step` calls (the kernel binary's time includes reading its input files).
Compilation time is reported separately. Inputs are random in [0, 1): any input exercises bit-exactness.

    .venv/bin/python benchmarks/bench_hls.py --cycles [--data-dir ../shared/data/mnist] [--n 300]

- the learning kernel's expected cycles per sample (`edgelearn.hls.kernel.cycle_model`, a model from the program's
  schedule, not a synthesis report) for FC1-500 and 784-128-10 at 1, 4 and 16 lanes, with every input non-zero and
  with the non-zero inputs of N MNIST test samples (when the data is there), beside the fixed-point engine's
  measured online `FixedEngine.fit_raw` samples/s on the same samples in the same run (numba threads as set by
  NUMBA_NUM_THREADS).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from edgelearn.fixed.engine import FixedEngine
from edgelearn.fixed.lower import lower, trace
from edgelearn.hls.kernel import cycle_model, write_kernel_project
from edgelearn.network import load_network, network_from_dict

MLP_128 = {"name": "mlp-784-128-10", "dataset": "mnist", "input_shape": [1, 28, 28], "num_classes": 10, "loss": "bce",
           "rule": "drtp", "layers": [{"type": "flatten"}, {"type": "linear", "out": 128, "act": "tanh", "name": "fc1"},
                                      {"type": "linear", "out": 10, "name": "out"}]}


def cycles(args) -> None:
    import os

    from edgelearn.data import load_dataset

    try:
        ds = load_dataset("mnist", args.data_dir, n_test=args.n, n_train=1)
        x, src = ds.x_test[:args.n], f"{args.n} MNIST test samples"
    except Exception as exc:  # noqa: BLE001 -- no MNIST here: random inputs, every one non-zero
        x, src = np.random.default_rng(0).random((args.n, 784)), f"{args.n} random inputs ({exc.__class__.__name__})"
    y = np.random.default_rng(1).integers(0, 10, args.n)
    print(f"learning kernel, expected cycles per sample (model, not a synthesis report), 200 MHz, {args.bits}-bit "
          f"preset, DRTP; engine: one online epoch (fit_raw) on {src}, numba threads "
          f"{os.environ.get('NUMBA_NUM_THREADS', 'default')}")
    print("| network | inputs | lanes | cycles/sample | kernel samples/s | inference samples/s | engine samples/s |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for spec in (load_network("fc1-500"), network_from_dict(MLP_128, source="bench_hls")):
        eng = FixedEngine(spec, bits=args.bits, seed=0)
        X = eng.quantize_inputs(x, count=False)
        nnz = np.mean(trace(eng, X, y, True, snapshots=[]).nnz, axis=1)
        eng.set_mode("online")
        eng.fit_raw(X[:2], y[:2])  # JIT warm-up
        eng = FixedEngine(spec, bits=args.bits, seed=0)
        eng.set_mode("online")
        t = time.perf_counter()
        eng.fit_raw(X, y)  # one online epoch: a learning step per sample
        eng_sps = len(y) / (time.perf_counter() - t)
        prog = lower(eng)
        for title, nz in (("every input non-zero", None),
                          ("non-zero of " + src.split(" (")[0] + " (" + ", ".join(f"{v:.0f}" for v in nnz) + ")", nnz)):
            for p in (1, 4, 16):
                c = cycle_model(prog, p, nnz=nz)
                print(f"| {spec.name} {'-'.join(map(str, eng.sizes))} | {title} | {p} | {c['cycles_per_sample']:,} | "
                      f"{c['samples_per_s']:,.0f} | {c['inference_samples_per_s']:,.0f} | {eng_sps:,.0f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="fc1-500")
    ap.add_argument("--bits", type=int, default=8)
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--cycles", action="store_true", help="the kernel's cycle model beside the engine (see above)")
    ap.add_argument("--data-dir", default="../shared/data/mnist", help="MNIST folder (--cycles)")
    args = ap.parse_args()
    if args.cycles:
        return cycles(args)
    from edgelearn.hls.hls4ml_export import convert_engine
    from edgelearn.hls.project import _popcount

    spec = load_network(args.config)
    eng = FixedEngine(spec, bits=args.bits, seed=0)
    rng = np.random.default_rng(0)
    X = eng.quantize_inputs(rng.random((args.n, eng.sizes[0])), count=False)
    y = rng.integers(0, eng.num_classes, args.n)
    eng.output_raw(X[:2])  # JIT warm-up
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        prj = convert_engine(eng, Path(tmp), tb_inputs=X[:8])
        prj.compile()
        t_hls_build = time.perf_counter() - t
        t = time.perf_counter()
        z_hls = prj.predict_raw(X)
        t_hls = time.perf_counter() - t
        t = time.perf_counter()
        z_eng = eng.output_raw(X)
        t_eng = time.perf_counter() - t
        width = eng.precision.layers[-1].accum.width
        bad = int(_popcount((z_hls ^ z_eng) & ((1 << width) - 1)).sum())

        t = time.perf_counter()
        kp = write_kernel_project(eng, Path(tmp) / "kernel", tb_samples=(X, y))
        kp.compile(opt="-O2")
        t_k_build = time.perf_counter() - t
        run = kp.run()
        t_kernel = run.seconds
        ref = FixedEngine(spec, bits=args.bits, seed=0)
        ref.step(X[0], int(y[0]))  # JIT warm-up on a throw-away engine
        ref = FixedEngine(spec, bits=args.bits, seed=0)
        t = time.perf_counter()
        for i in range(args.n):
            ref.step(X[i], int(y[i]))
        t_steps = time.perf_counter() - t
    print(f"{spec.name} {eng.sizes}, {args.bits}-bit preset, {args.n} samples")
    print("| what | C-simulation | engine | engine speed-up |\n|---|---:|---:|---:|")
    print(f"| inference (hls4ml predict vs output_raw) | {args.n / t_hls:,.0f} samples/s | {args.n / t_eng:,.0f} samples/s "
          f"| {t_hls / t_eng:,.0f}x |")
    print(f"| learning (kernel binary vs FixedEngine.step) | {args.n / t_kernel:,.0f} samples/s | "
          f"{args.n / t_steps:,.0f} samples/s | {t_kernel / t_steps:,.1f}x |")
    print(f"mismatching bits, hls4ml vs engine: {bad} over {z_eng.size} outputs; kernel run: outputs "
          f"{run.output_mismatch_bits}, final state {run.state_mismatch_bits}")
    print(f"build: hls4ml convert+compile {t_hls_build:.1f} s, learning kernel generate+g++ -O2 {t_k_build:.1f} s")


if __name__ == "__main__":
    main()
