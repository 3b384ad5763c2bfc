"""Trained feedback (kp, ldfa, dldfa) in the HLS learning kernel: g++ C-simulation against the fixed-point engine after
every learning step, and the cycle model of the feedback step (docs/hls.md "Trained feedback").

Each configuration's engine first learns online for one epoch (``--n-train`` samples: its feedback is trained, not
at its random start), then the kernel is generated from that state, compiled with g++ (about 15 s of CPU per binary)
and run two ways over ``--n`` test samples: the testbench over all samples (outputs and predictions before each
update, the final W, b, LFSR states, Q, P or B), and one call per sample, each starting from the memories the
previous call left, compared with the engine after every step (per tensor, summed over the steps).  Lanes only add
pragmas: every lane count must end in the same state.

    NUMBA_NUM_THREADS=1 .venv/bin/python benchmarks/bench_hls_ldfa.py [--n 16] [--lanes 1 4] [--mnist DIR]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from edgelearn.data import SHARED_DATA, load_dataset
from edgelearn.fixed import FixedEngine
from edgelearn.hls.kernel import stepwise_check, write_kernel_project
from edgelearn.network import network_from_dict

RULE_PARAMS = {"rank": 4, "kp_decay": 0.0, "ldfa_decay": 0.0}  # the engine refuses decay (docs/arithmetic.md §16)


def mlp(name, dataset, shape, hidden, rule):
    """An MLP whose first hidden layer is ReLU and the others tanh (both activations on the feedback path)."""
    layers = [{"type": "flatten"}] + [{"type": "linear", "out": n, "act": "relu" if i == 0 else "tanh",
                                       "name": f"fc{i + 1}"} for i, n in enumerate(hidden)]
    layers.append({"type": "linear", "out": 10, "name": "out"})
    return network_from_dict({"name": name, "dataset": dataset, "input_shape": shape, "num_classes": 10,
                              "loss": "bce", "rule": rule, "rule_params": RULE_PARAMS, "layers": layers}, source=name)


def check(label, spec, ds, args, bits=12):
    eng = FixedEngine(spec, seed=1, bits=bits)
    eng.fit(ds.x_train[:args.n_train], ds.y_train[:args.n_train], epochs=1)
    X = eng.quantize_inputs(ds.x_test[:args.n].reshape(args.n, -1), count=False)
    y = np.asarray(ds.y_test[:args.n])
    finals = []
    for lanes in args.lanes:
        with tempfile.TemporaryDirectory(prefix="bench-hls-ldfa-") as tmp:
            proj = write_kernel_project(eng, Path(tmp) / "k", tb_samples=(X, y), lanes=lanes)
            proj.compile()
            run = proj.run()
            st = stepwise_check(proj, eng, X, y)
            start = proj.spec.fb_values()
            changed = sum(int((run.fb[n] != v).sum()) for n, v in start.items())
            total = sum(v.size for v in start.values())
            finals.append([np.asarray(a) for a in (*run.W, *run.b, *run.fb.values())])
            fb_bits = {n: st["tensor_bits"][n] for n in start}
            wb_bits = sum(v for n, v in st["tensor_bits"].items() if n not in start)
            cyc = proj.cycles
            fbc = sum(s["cycles"] for s in cyc["testbench"]["steps"] if s["step"].startswith("feedback"))
            print(f"| {label} | {lanes} | {run.output_mismatch_bits} / {run.state_mismatch_bits} | "
                  f"{st['output_bits']} / {st['pred_mismatches']} | {wb_bits} | "
                  f"{', '.join(f'{n} {v}' for n, v in fb_bits.items())} | {changed}/{total} | "
                  f"{cyc['worst_case']['cycles_per_sample']:,} | {cyc['testbench']['cycles_per_sample']:,} | "
                  f"{fbc:,.0f} |", flush=True)
    if len(finals) < 2:
        return
    same = all(len(f) == len(finals[0]) and all((a == b).all() for a, b in zip(f, finals[0])) for f in finals)
    print(f"|  | same final state for lanes {', '.join(map(str, args.lanes))}: {'yes' if same else 'NO'} |"
          + " |" * 8, flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=16, help="test samples, one learning step each")
    ap.add_argument("--n-train", type=int, default=300, help="online samples the engine learns before the export")
    ap.add_argument("--lanes", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--mnist", default=str(SHARED_DATA / "mnist"),
                    help="MNIST folder (the 784-64-32-10 run; skipped when absent)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    print(f"{args.n} test samples after {args.n_train} online training samples; 12-bit preset, rank 4; per-step bits "
          f"summed over the {args.n} steps")
    print("| network, rule | lanes | testbench output / final-state bits | per-step output bits / wrong predictions | "
          "per-step W, b bits | per-step feedback bits | feedback words changed | cycles/sample worst case | "
          "cycles/sample (test inputs) | of which feedback steps |")
    print("|---|---:|---:|---:|---:|---|---:|---:|---:|---:|")
    digits = load_dataset("digits", n_train=args.n_train)
    for rule in ("ldfa", "kp", "dldfa"):
        check(f"digits 64-32-16-10, {rule}", mlp("fb-digits", "digits", [1, 8, 8], [32, 16], rule), digits, args)
    if Path(args.mnist).is_dir():
        mn = load_dataset("mnist", data_dir=args.mnist, n_train=args.n_train, n_test=args.n)
        args.lanes = args.lanes[:1]
        check("MNIST 784-64-32-10, ldfa", mlp("fb-mnist", "mnist", [1, 28, 28], [64, 32], "ldfa"), mn, args)
    else:
        print(f"(MNIST not found at {args.mnist}: its run skipped)")
    print(f"({time.perf_counter() - t0:.0f} s wall, {time.process_time():.0f} s CPU in this process; g++ runs in "
          f"child processes)")


if __name__ == "__main__":
    main()
