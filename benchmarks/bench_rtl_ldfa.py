"""Trained feedback (ldfa, kp, dldfa) in the generated datapath (hw/el_feedback.v): bits, cycles and resources
beside DRTP.

    .venv/bin/python benchmarks/bench_rtl_ldfa.py                          # everything (real MNIST from ../shared/data)
    .venv/bin/python benchmarks/bench_rtl_ldfa.py --only check --samples 8 --icarus-samples 4
    .venv/bin/python benchmarks/bench_rtl_ldfa.py --only resources
    .venv/bin/python benchmarks/bench_rtl_ldfa.py --rule kp --rule dldfa   # those rules (and ldfa, drtp) side by side

* check (each --rule, default ldfa; kp on every layer, dldfa on every hidden layer):
  784-32-16-10 (tanh, every layer ldfa, rank 4, 8-bit preset) on the first real MNIST training images, and
  16-12-8-4 (rank 2) on random inputs, lockstep in Verilator (--samples) and Icarus (--icarus-samples): every
  prediction and, after every sample, every weight, bias, Q and P word against the engine's golden trace; then the
  DRTP design of the same sizes on the same samples (Verilator). Compute cycles per training sample (last input
  beat -> idle) beside the ideal: MACs / lanes (forward, update, the projection of u through Q), plus, for ldfa, the
  feedback's MACs at one per cycle (u = P delta, Q's increments, Oja's a, rho and P's increments).
* resources: yosys synth_xilinx + stat of 784-32-16-10, ldfa vs DRTP (LUT, FF, BRAM36, DSP, LUTRAM).
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
MNIST_SIZES = (784, 32, 16, 10)


def engine(rule: str, sizes, rank: int):
    from test_rtl_ldfa import ldfa_engine

    from edgelearn.fixed.engine import FixedEngine
    from edgelearn.network import network_from_dict

    if rule in ("ldfa", "kp", "dldfa"):
        return ldfa_engine(sizes, rank=rank, lr_shift=4 if sizes[0] == 784 else 3, rule=rule)
    eng = ldfa_engine(sizes, rank=rank)  # the same network, drtp
    d = eng.spec.to_dict()
    d["rule"] = rule
    return FixedEngine(network_from_dict(d), bits=8, seed=0, lr_shift=4 if sizes[0] == 784 else 3, threads=1)


def feedback_macs(design) -> int:
    """One MAC per cycle in each el_feedback: u (r m), Q's increments (r x the Q words' lanes: the pass walks every
    lane), Oja's a and rho (2 r m) and P's increments (r m); kp: B's increments only (u = delta, no P)."""
    total = 0
    for lay in design.layers:
        if lay.has_factors:
            r, m, at = lay.fb_rank, lay.fb_m, design.layers[lay.fb_at]
            total += (4 * r * m if lay.Pf is not None else 0) + r * at.groups * at.lanes
    return total


def _row(label: str, sim: str, rep: dict, design) -> str:
    g = rep["golden"]
    nnz = np.stack([g[f"nnz{k}"] for k in range(len(design.layers))], axis=1)
    tr = np.asarray(g["train"], dtype=bool)
    ideal = np.mean([design.ideal_cycles(list(r), True) for r in nnz[tr]])
    fb = feedback_macs(design)
    comp = float(np.mean(np.asarray(rep["compute_cycles"])[tr]))
    bits = rep["weight_bits_mismatched"] + rep["bias_bits_mismatched"]
    fbits = rep.get("q_bits_mismatched", 0) + rep.get("p_bits_mismatched", 0)
    return (f"{label:<30} {sim:<9} {rep['samples']:>7} {rep['pred_mismatches']:>8} {bits:>8} {fbits:>8} "
            f"{rep['weights_compared']:>10,} {rep.get('factors_compared', 0):>8,} {comp:>8,.0f} {ideal:>8,.0f} "
            f"{fb:>8,} {comp / (ideal + fb):>6.3f} {rep['sim_seconds']:>6.0f}")


def bench_check(n_ver: int, n_ica: int, parallel: int, rules=("ldfa",)) -> None:
    from test_mlp import _random_samples

    from edgelearn.rtl.generate import write_rtl
    from edgelearn.rtl.verify import run_bench

    print(f"lockstep, every prediction, weight, bias, Q and P word compared with the engine after every sample; "
          f"8-bit preset; cycles per training sample; ideal = MACs / lanes, fb = the feedback's MACs (one per cycle)")
    print(f"{'design':<30} {'simulator':<9} {'samples':>7} {'pred mm':>8} {'W,b mm':>8} {'Q,P mm':>8} "
          f"{'weights':>10} {'Q,P':>8} {'cycles':>8} {'ideal':>8} {'fb MACs':>8} {'ratio':>6} {'sim s':>6}")
    runs = []
    if MNIST.exists():
        runs += [(f"784-32-16-10 r4 MNIST, {rule}", rule, MNIST_SIZES, 4, mnist_samples, parallel, sims)
                 for rule, sims in [(r, (("verilator", n_ver), ("icarus", n_ica))) for r in rules]
                 + [("drtp", (("verilator", n_ver),))]]
    else:
        print(f"(no MNIST under {MNIST}: the small config only)")
    runs += [(f"16-12-8-4 r2 random, {rule}", rule, (16, 12, 8, 4), 2, lambda e, n: _random_samples(e, n, seed=7), 2,
              sims) for rule, sims in [(r, (("verilator", 16), ("icarus", 16))) for r in rules]
             + [("drtp", (("verilator", 16),))]]
    for label, rule, sizes, rank, samples, par, sims in runs:
        for sim, n in sims:
            if n <= 0:
                continue
            eng = engine(rule, sizes, rank)
            X, y, train = samples(eng, n)
            with tempfile.TemporaryDirectory(prefix="bench-rtl-ldfa-") as tmp:
                design = write_rtl(eng, Path(tmp) / "prj", parallel=par)
                rep = run_bench(eng, design, Path(tmp) / "prj", sim, "mlp_lockstep", X, y, train)
            print(_row(label, sim, rep, design), flush=True)


def bench_resources(parallel: int, rules=("ldfa",)) -> None:
    synth_table("784-32-16-10 8-bit preset",
                [(f"{rule} learning", lambda rule=rule: engine(rule, MNIST_SIZES, 4), {}) for rule in ("drtp", *rules)],
                parallel)


def main(argv=None) -> None:
    ap = parser(__doc__, "784-32-16-10", samples=8, icarus_samples=4)
    ap.add_argument("--rule", action="append", choices=("ldfa", "kp", "dldfa"),
                    help="trained-feedback rule beside drtp (repeatable; default ldfa)")
    args = ap.parse_args(argv)
    rules = tuple(args.rule or ("ldfa",))
    run(args, lambda: bench_check(args.samples, args.icarus_samples, args.parallel, rules), lambda: bench_resources(args.parallel, rules))


if __name__ == "__main__":
    main()
