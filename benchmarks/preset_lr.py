"""Learning-rate shifts of the engine presets, per rule and word length (docs/engine.md, "Learning-rate presets").

    python benchmarks/preset_lr.py                          # fc2-500 on MNIST, 1 epoch, rules x bits x shifts
    python benchmarks/preset_lr.py --n-train 10000 --jobs 2 --shifts 6 7 8 9 10 --rules fa bp --bits 8 16

Every cell is one ``edgelearn simulate -c CONFIG --dataset DATASET --epochs 1 --bits B --rule R --lr-shift S``
in its own process (``--jobs`` at a time, niced); the table gives the fixed-point test accuracy, the float twin's,
and the shift chosen per (rule, bits): the one whose *worse* of the two accuracies is highest -- a shift where
the fixed engine is good but the twin diverged (or the reverse) is not a preset anyone can trust.  ``preset``
marks the shift ``edgelearn.fixed.presets.lr_shift_for`` picks today, so the table shows whether it still
matches the measurement.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "mnist"


def run_cell(args, rule: str, bits: int, shift: int | None, tmp: Path) -> dict:
    out = tmp / f"{rule}-{bits}-{shift}"
    cmd = [sys.executable, "-m", "edgelearn", "simulate", "-c", args.config, "--dataset", args.dataset,
           "--data-dir", str(args.data_dir), "--epochs", str(args.epochs), "--bits", str(bits), "--rule", rule,
           "--seed", str(args.seed), "--out", str(out), "--quiet"]
    if shift is not None:
        cmd += ["--lr-shift", str(shift)]
    if args.n_train:
        cmd += ["--n-train", str(args.n_train)]
    if args.n_test:
        cmd += ["--n-test", str(args.n_test)]
    # one thread per run: several runs share the machine (docs/engine.md, "Threads")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    proc = subprocess.run(["nice", "-n", str(args.nice), *cmd], cwd=ROOT, env=env, capture_output=True, text=True)
    secs = time.perf_counter() - t0
    if proc.returncode != 0:
        return {"rule": rule, "bits": bits, "shift": shift, "error": proc.stderr.strip().splitlines()[-1:]}
    res = json.loads((out / "results.json").read_text())
    shifts = {v["lr_shift"] for v in res["formats"]["layers"].values()}
    return {"rule": rule, "bits": bits, "shift": shift if shift is not None else sorted(shifts),
            "fixed": res["test_accuracy"], "twin": res["float_test_accuracy"], "seconds": round(secs, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", "-c", default="fc2-500")
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--rules", nargs="+", default=["fa", "bp", "dfa", "ldfa", "drtp"])
    ap.add_argument("--bits", nargs="+", type=int, default=[8, 16])
    ap.add_argument("--shifts", nargs="*", type=int, default=[6, 7, 8, 9, 10],
                    help="lr shifts of the grid (none: with --presets, only the presets)")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--n-train", type=int, help="first N training samples (default: all)")
    ap.add_argument("--n-test", type=int, help="first N test samples (default: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--nice", type=int, default=10)
    ap.add_argument("--cells", nargs="+", metavar="RULE:BITS:SHIFT",
                    help="run only these cells (instead of rules x bits x shifts); the table still lists the grid")
    ap.add_argument("--presets", action="store_true", help="also run every (rule, bits) without --lr-shift")
    ap.add_argument("--json", type=Path, help="write the cells to this file (after every cell)")
    ap.add_argument("--resume", type=Path, help="cells of an earlier run (its --json) not to run again")
    args = ap.parse_args()

    from edgelearn.fixed.presets import lr_shift_for
    from edgelearn.network import load_network

    spec = load_network(args.config)
    cells = [(r, b, s) for r in args.rules for b in args.bits for s in args.shifts]
    if args.cells:
        cells = [(c.split(":")[0], int(c.split(":")[1]), int(c.split(":")[2])) for c in args.cells]
    if args.presets:
        cells += [(r, b, None) for r in args.rules for b in args.bits]
    old = json.loads(args.resume.read_text()) if args.resume and args.resume.exists() else []
    old = [x for x in old if "error" not in x and (x["rule"], x["bits"], x["shift"]) in cells]
    cells = [c for c in cells if c not in {(x["rule"], x["bits"], x["shift"]) for x in old}]
    print(f"{spec.name} {spec.mlp_sizes()} on {args.dataset}, {args.epochs} epoch(s), "
          f"n_train {args.n_train or 'all'}, n_test {args.n_test or 'all'}, seed {args.seed}, {len(cells)} runs "
          f"({len(old)} reused), "
          f"{args.jobs} at a time", flush=True)
    with tempfile.TemporaryDirectory(prefix="preset_lr.") as tmp, ThreadPoolExecutor(args.jobs) as pool:
        futs = [pool.submit(run_cell, args, r, b, s, Path(tmp)) for r, b, s in cells]
        rows = list(old)
        for f in futs:
            row = f.result()
            rows.append(row)
            print(json.dumps(row), flush=True)
            if args.json:
                args.json.write_text(json.dumps(rows, indent=1) + "\n")

    print()
    print("| rule | bits | lr_shift | fixed-point test acc. | float twin | gap (points) | chosen | preset |")
    print("|---|---:|---:|---:|---:|---:|:---:|:---:|")
    for r in args.rules:
        for b in args.bits:
            grid = sorted((x for x in rows if x["rule"] == r and x["bits"] == b and isinstance(x["shift"], int)),
                          key=lambda x: x["shift"])
            ok = [x for x in grid if "error" not in x]
            best = max(ok, key=lambda x: (min(x["fixed"], x["twin"]), x["fixed"])) if ok else None
            cur = lr_shift_for(r, b, spec.mlp_sizes())
            for x in grid:
                if "error" in x:
                    print(f"| {r} | {b} | {x['shift']} | error: {' '.join(x['error'])} | | | | |")
                    continue
                print(f"| {r} | {b} | {x['shift']} | {100 * x['fixed']:.2f} % | {100 * x['twin']:.2f} % | "
                      f"{100 * (x['twin'] - x['fixed']):+.2f} | {'*' if x is best else ''} | "
                      f"{'p' if x['shift'] == cur else ''} |")
            for x in rows:
                if x["rule"] == r and x["bits"] == b and not isinstance(x["shift"], int) and "error" not in x:
                    print(f"| {r} | {b} | preset {x['shift']} | {100 * x['fixed']:.2f} % | {100 * x['twin']:.2f} % | "
                          f"{100 * (x['twin'] - x['fixed']):+.2f} | | p |")


if __name__ == "__main__":
    main()
