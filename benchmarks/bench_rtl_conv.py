"""The SPOON-like datapath (frozen conv front end + DRTP classifier, hw/el_front.v): bits, cycles and resources.

    .venv/bin/python benchmarks/bench_rtl_conv.py                        # everything (real MNIST from ../shared/data)
    .venv/bin/python benchmarks/bench_rtl_conv.py --only check --samples 8 --icarus-samples 2
    .venv/bin/python benchmarks/bench_rtl_conv.py --only resources

* check: spoon-like (conv8 5x5 - maxpool 2 - fc128 tanh DRTP - fc10, 8-bit preset) on the first real MNIST training
  images, lockstep in Verilator (--samples) and Icarus (--icarus-samples): every feature the front end writes into
  the first layer, every prediction and, after every sample, every weight and bias against the engine's golden
  trace; plus a small config with padding, stride 2 and a 2x2 average pool (random 8x8 images) in both
  simulators. Compute cycles per training sample (last input beat -> idle) beside the ideal: the conv's taps x
  output positions (one MAC per cycle) plus the MLP's MACs / lanes.
* resources: yosys synth_xilinx + stat of spoon-like, inference only vs DRTP learning (LUT, FF, BRAM36, DSP).
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "rtl_tb"))
sys.path.insert(0, str(ROOT / "tests"))  # the runner imports the tool gate (needs)
from rtl_bench import mnist_samples, parser, run, synth_table  # noqa: E402 (benchmarks/, beside this script)


def spoon_engine(bits: int = 8):
    from edgelearn.fixed.engine import FixedEngine
    from edgelearn.network import load_network

    return FixedEngine(load_network("spoon-like"), bits=bits, seed=0, threads=1)


def _row(label: str, sim: str, rep: dict, design) -> str:
    g = rep["golden"]
    nnz = np.stack([g[f"nnz{k}"] for k in range(len(design.layers))], axis=1)
    tr = np.asarray(g["train"], dtype=bool)
    ideal = np.mean([design.ideal_cycles(list(r), True) for r in nnz[tr]])
    comp = float(np.mean(np.asarray(rep["compute_cycles"])[tr]))
    bits = rep["weight_bits_mismatched"] + rep["bias_bits_mismatched"] + rep.get("front_bits_mismatched", 0)
    return (f"{label:<34} {sim:<9} {rep['samples']:>7} {rep['pred_mismatches']:>9} {bits:>11} "
            f"{rep['features_compared']:>9,} {rep['weights_compared']:>11,} {comp:>10,.0f} {ideal:>10,.0f} "
            f"{comp / ideal:>6.3f} {design.front.mac_cycles:>9,} {rep['sim_seconds']:>7.0f}")


def bench_check(n_ver: int, n_ica: int, parallel: int) -> None:
    from test_conv import small_engine, small_samples

    from edgelearn.rtl.generate import write_rtl
    from edgelearn.rtl.verify import run_bench

    print(f"lockstep, every feature, prediction, weight and bias compared with the engine after every sample; "
          f"{parallel} MAC lanes per linear layer, one in the front end; cycles per training sample")
    print(f"{'design':<34} {'simulator':<9} {'samples':>7} {'pred. mm':>9} {'bits mm':>11} {'features':>9} "
          f"{'weights':>11} {'cycles':>10} {'ideal':>10} {'ratio':>6} {'front MAC':>9} {'sim s':>7}")
    runs = [("spoon-like, real MNIST, 8-bit", spoon_engine, lambda e, n: mnist_samples(e, n), n_ver, n_ica),
            ("small: pad 1, stride 2, avgpool 2", small_engine, lambda e, n: small_samples(e, n, seed=5), 8, 8)]
    for label, make, samples, nv, ni in runs:
        for sim, n in (("verilator", nv), ("icarus", ni)):
            if n <= 0:
                continue
            eng = make() if make is spoon_engine else make(pool="avgpool", padding=1, stride=2)
            X, y, train = samples(eng, n)
            with tempfile.TemporaryDirectory(prefix="bench-rtl-conv-") as tmp:
                design = write_rtl(eng, Path(tmp) / "prj", parallel=parallel)
                rep = run_bench(eng, design, Path(tmp) / "prj", sim, "mlp_lockstep", X, y, train)
            print(_row(label, sim, rep, design), flush=True)


def bench_resources(parallel: int) -> None:
    synth_table("spoon-like 8-bit preset (one MAC lane in the front end)",
                [(label, spoon_engine, {"learning": learning})
                 for label, learning in (("inference only", False), ("DRTP learning", True))], parallel)


def main(argv=None) -> None:
    args = parser(__doc__, "the spoon-like network's linear layers", samples=8, icarus_samples=2).parse_args(argv)
    run(args, lambda: bench_check(args.samples, args.icarus_samples, args.parallel), lambda: bench_resources(args.parallel))


if __name__ == "__main__":
    main()
