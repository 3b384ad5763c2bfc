"""Loss ce (softmax output error, hw/el_softmax.v) in the generated datapath: bits, cycles and resources beside bce.

    .venv/bin/python benchmarks/bench_rtl_ce.py                       # everything (real MNIST from ../shared/data)
    .venv/bin/python benchmarks/bench_rtl_ce.py --only check --samples 6 --icarus-samples 2
    .venv/bin/python benchmarks/bench_rtl_ce.py --only resources

* check: 784-32-10 (tanh, DRTP, 8-bit preset, 16 MAC lanes) on the first real MNIST training images, and 16-12-4
  (3 MAC lanes) on random inputs, each with loss bce and with loss ce on the same samples, lockstep in Verilator
  (--samples) and Icarus (--icarus-samples): every prediction and, after every sample, every weight and bias
  against the engine's golden trace; compute cycles per training sample (last input beat -> idle) and what ce adds
  over bce.
* resources: yosys synth_xilinx + stat of 784-32-10 (16 MAC lanes), ce vs bce (LUT, FF, BRAM36, DSP, LUTRAM).
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "rtl_tb"))
sys.path.insert(0, str(ROOT / "tests"))  # the runner imports the tool gate (needs)
from rtl_bench import MNIST, mnist_samples, parser, run, synth_table  # noqa: E402 (benchmarks/, beside this script)
MNIST_SIZES = (784, 32, 10)


def engine(loss: str, sizes):
    from test_mlp import _spec

    from edgelearn.fixed.engine import FixedEngine

    return FixedEngine(_spec(list(sizes), ["tanh"] * (len(sizes) - 2), loss=loss, name=f"rtl-{loss}"), bits=8,
                       seed=0, lr_shift=4 if sizes[0] == 784 else 3, threads=1)


def bench_check(n_ver: int, n_ica: int, parallel: int) -> None:
    from test_mlp import _random_samples

    from edgelearn.rtl.generate import write_rtl
    from edgelearn.rtl.verify import run_bench

    print("lockstep, every prediction, weight and bias compared with the engine after every sample; 8-bit preset, "
          "DRTP; cycles = compute cycles per training sample (last input beat -> idle)")
    print(f"{'design':<26} {'loss':<4} {'simulator':<9} {'samples':>7} {'pred mm':>8} {'W,b mm':>8} "
          f"{'weights':>10} {'cycles':>8} {'ce - bce':>8} {'sim s':>6}")
    runs = []
    if MNIST.exists():
        runs += [("784-32-10 MNIST", MNIST_SIZES, mnist_samples, parallel, (("verilator", n_ver), ("icarus", n_ica)))]
    else:
        print(f"(no MNIST under {MNIST}: the small config only)")
    runs += [("16-12-4 random", (16, 12, 4), lambda e, n: _random_samples(e, n, seed=7), 3,
              (("verilator", 12), ("icarus", 12)))]
    for label, sizes, samples, par, sims in runs:
        for sim, n in sims:
            if n <= 0:
                continue
            base = None
            for loss in ("bce", "ce"):
                eng = engine(loss, sizes)
                X, y, train = samples(eng, n)
                with tempfile.TemporaryDirectory(prefix="bench-rtl-ce-") as tmp:
                    design = write_rtl(eng, Path(tmp) / "prj", parallel=par)
                    rep = run_bench(eng, design, Path(tmp) / "prj", sim, "mlp_lockstep", X, y, train)
                tr = np.asarray(rep["golden"]["train"], dtype=bool)
                cyc = float(np.mean(np.asarray(rep["compute_cycles"])[tr]))
                bits = rep["weight_bits_mismatched"] + rep["bias_bits_mismatched"]
                extra = "" if base is None else f"{cyc - base:>+8.1f}"
                print(f"{label:<26} {loss:<4} {sim:<9} {rep['samples']:>7} {rep['pred_mismatches']:>8} {bits:>8} "
                      f"{rep['weights_compared']:>10,} {cyc:>8,.1f} {extra:>8} {rep['sim_seconds']:>6.0f}",
                      flush=True)
                base = cyc if base is None else base


def bench_resources(parallel: int) -> None:
    synth_table("784-32-10 tanh DRTP 8-bit preset",
                [(f"loss {loss}", lambda loss=loss: engine(loss, MNIST_SIZES), {}) for loss in ("bce", "ce")],
                parallel)


def main(argv=None) -> None:
    args = parser(__doc__, "784-32-10", samples=6, icarus_samples=0).parse_args(argv)
    run(args, lambda: bench_check(args.samples, args.icarus_samples, args.parallel), lambda: bench_resources(args.parallel))


if __name__ == "__main__":
    main()
