"""Engine training speed of this tree beside another git revision, measured alternately in one run.

    python benchmarks/compare_revisions.py 783faa0            # fc1-1000, 8-bit, online DRTP, real MNIST
    python benchmarks/compare_revisions.py HEAD~3 -n 2000 --rounds 4
    python benchmarks/compare_revisions.py HEAD --cpu-time    # a loaded machine: each process's CPU time
    python benchmarks/compare_revisions.py 3254155 --worktree /tmp/base   # keep the checkout (and its numba cache)

The other revision is checked out into a temporary git worktree; each round runs one short measurement process per
tree (before, after, before, after, ...), so both see the same machine load over time, and the table shows the best
samples/s of every tree and variant (preset STOCH weight update under rng: layer and rng: neuron, and
round-to-nearest). Each process trains a fresh engine on the same samples in the same order; the bits it ends with
(weights, biases, LFSR and per-neuron generator states, event counters) are hashed, so a speed change that also
changed the results shows as a differing hash.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
from edgelearn.data import SHARED_DATA  # noqa: E402 (after the path set-up above)
DEFAULT_DATA = SHARED_DATA / "mnist"

# run inside each tree (its own edgelearn on sys.path): the public API both revisions share
MEASURE = r"""
import hashlib, json, sys, time
import numpy as np
from edgelearn.data import load_dataset
from edgelearn.fixed.engine import FixedEngine
from edgelearn.network import load_network

cfg, data_dir, n, reps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
clock = time.process_time if sys.argv[5] == "cpu" else time.perf_counter
ds = load_dataset("mnist", data_dir, n_train=n, n_test=10)
spec = load_network(cfg)
out = {}
for name, kw in (("STOCH", {}), ("STOCH neuron", {"rng": "neuron"}),
                 ("RND", {"rounding": [("weight", "RND"), ("bias", "RND")]})):
    best, digest = 0.0, None
    for _ in range(reps + 1):  # the first pass compiles (or loads the cache)
        eng = FixedEngine(spec, bits=8, seed=0, **kw)
        X = eng.quantize_inputs(ds.x_train)
        t0 = clock()
        eng.fit_raw(X, ds.y_train, shuffle=False)
        rate = len(X) / (clock() - t0)
        if _ > 0:
            best = max(best, rate)
        h = hashlib.sha256()
        for w in eng.weights():
            h.update(np.ascontiguousarray(w["W"]).tobytes())
            h.update(np.ascontiguousarray(w["b"]).tobytes())
        h.update(np.ascontiguousarray(eng.rnd_state).tobytes())
        for ns in eng.neuron_state:
            h.update(np.ascontiguousarray(ns).tobytes())
        h.update(np.ascontiguousarray(eng.cnt).tobytes())
        digest = h.hexdigest()[:16]
    out[name] = {"samples_per_s": best, "weights_sha256": digest}
print(json.dumps(out))
"""


def measure(tree: Path, args) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree), "NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-c", MEASURE, args.config, args.data_dir, str(args.n), str(args.reps),
                        "cpu" if args.cpu_time else "wall"],
                       cwd=tree, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"compare_revisions: measurement in {tree} failed:\n{r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def _commit(cwd: Path, revision: str) -> str | None:
    r = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}"], cwd=cwd,
                       capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else None


def _holds(tree: Path, revision: str) -> bool:
    """Whether ``tree`` is a kept worktree already at ``revision``'s commit."""
    if not tree.is_dir():
        return False
    have = _commit(tree, "HEAD")
    return have is not None and have == _commit(ROOT, revision)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("revision", help="the git revision to compare this tree with")
    ap.add_argument("--config", default="fc1-1000")
    ap.add_argument("--data-dir", default=str(DEFAULT_DATA))
    ap.add_argument("-n", type=int, default=3000, help="training samples per timed pass")
    ap.add_argument("--reps", type=int, default=2, help="timed passes per process")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds (one process per tree each)")
    ap.add_argument("--cpu-time", action="store_true",
                    help="time each pass with its process's CPU time (a loaded machine takes whole time slices away)")
    ap.add_argument("--worktree", type=Path, default=None,
                    help="check the revision out here and keep it: its numba cache spares the next run the kernels' "
                         "compilation (reused while it holds the same commit)")
    args = ap.parse_args()
    if not Path(args.data_dir).is_dir():
        raise SystemExit(f"compare_revisions: MNIST not found in {args.data_dir} (pass --data-dir)")
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="edgelearn-rev-") as tmp:
        other = args.worktree.resolve() if args.worktree else Path(tmp) / "tree"
        if other.exists() and not _holds(other, args.revision):
            raise SystemExit(f"compare_revisions: {other} is not a worktree at {args.revision}: remove it "
                             f"(git worktree remove) or pass another --worktree")
        if not other.exists():
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(other), args.revision],
                           check=True, capture_output=True)
        try:
            best: dict[str, dict[str, float]] = {"before": {}, "after": {}}
            digests: dict[str, dict[str, str]] = {"before": {}, "after": {}}
            for rnd in range(args.rounds):
                for label, tree in (("before", other), ("after", ROOT)):
                    res = measure(tree, args)
                    for name, v in res.items():
                        best[label][name] = max(best[label].get(name, 0.0), v["samples_per_s"])
                        digests[label][name] = v["weights_sha256"]
                    print(f"round {rnd + 1} {label:6s} " + "  ".join(
                        f"{k} {v['samples_per_s']:,.0f}/s" for k, v in res.items()), flush=True)
        finally:
            if not args.worktree:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(other)], check=False,
                               capture_output=True)
    print(f"\n{args.config}, 8-bit, online, {args.n} MNIST samples, 1 thread, best of {args.rounds} x {args.reps} "
          f"passes ({'CPU' if args.cpu_time else 'wall'} time); before = {args.revision}, after = this tree; "
          f"load {load0:.1f} at the start, {os.getloadavg()[0]:.1f} at the end\n")
    print("| weight update | before (samples/s) | after (samples/s) | after / before | same bits |")
    print("|---|---:|---:|---:|---|")
    for name in best["after"]:
        b, a = best["before"][name], best["after"][name]
        same = "yes" if digests["before"][name] == digests["after"][name] else "NO"
        print(f"| {name} | {b:,.0f} | {a:,.0f} | {a / b:.2f} | {same} |")


if __name__ == "__main__":
    main()
