"""C-simulation time of the generated HLS projects vs the fixed-point engine, on the same samples.

    .venv/bin/python benchmarks/bench_hls.py [--config fc1-500] [--n 500]

- inference: hls4ml's compiled C-simulation (`predict`) vs `FixedEngine.output_raw` on N samples (both bit-exact:
  the mismatching bits are counted and printed);
- learning: the learning kernel's C-simulation (g++ -O2 binary: N online DRTP steps, reading tb_data) vs
  N `FixedEngine.step` calls (the kernel binary's time includes reading its input files).
Compilation time is reported separately. Inputs are random in [0, 1): any input exercises bit-exactness.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from edgelearn.fixed.engine import FixedEngine
from edgelearn.hls.hls4ml_export import convert_engine
from edgelearn.hls.kernel import write_kernel_project
from edgelearn.hls.project import _popcount
from edgelearn.network import load_network


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="fc1-500")
    ap.add_argument("--bits", type=int, default=8)
    ap.add_argument("--n", type=int, default=500)
    args = ap.parse_args()
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
