"""Epoch time of ``edgelearn train`` with the old thread setting (the libraries' default: one thread per core)
and the new default (edgelearn/threads.py), side by side (docs/engine.md, "Threads").

    python benchmarks/bench_threads.py                              # fc1-500, MNIST, 1 epoch, batch 60
    python benchmarks/bench_threads.py --n-train 12000 --batch-sizes 60 1024 --repeats 2

Every run is one ``edgelearn train -c CONFIG --device cpu --epochs 1 --no-probe`` in its own process, the settings
alternating (A B A B ...) so that both see the same load; the figure is the training part of the epoch
(``epoch_time_s`` of metrics.json, evaluation excluded), median over the repeats.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "mnist"


def run_one(args, batch: int, threads: int | None, out: Path) -> tuple[float, float]:
    cmd = [sys.executable, "-m", "edgelearn", "train", "-c", args.config, "--data-dir", str(args.data_dir),
           "--device", "cpu", "--epochs", "1", "--no-probe", "--quiet", "--no-resume", "--batch-size", str(batch),
           "--out", str(out)]
    if args.n_train:
        cmd += ["--n-train", str(args.n_train)]
    if threads is not None:
        cmd += ["--threads", str(threads)]
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                                             "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")}
    env["PYTHONPATH"] = str(ROOT)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    m = json.loads((out / "metrics.json").read_text())
    return m["epochs"][-1]["epoch_time_s"], wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", "-c", default="fc1-500")
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--n-train", type=int, help="first N training samples (default: the whole epoch)")
    ap.add_argument("--batch-sizes", nargs="+", type=int, default=[60])
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()

    from edgelearn.threads import default_threads, physical_cores

    cores = physical_cores()
    load = os.getloadavg()[0]
    print(f"{args.config}, 1 epoch on {args.n_train or 'all'} MNIST samples, CPU, {cores} physical core(s), "
          f"load average {load:.1f} at the start", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_threads.") as tmp:
        for batch in args.batch_sizes:
            settings = [("before: library default", cores), (f"after: default ({default_threads(batch)})", None)]
            if default_threads(batch) == cores:
                settings[1] = ("after: default (1 thread)", 1)  # the other choice, to see the difference
            times: dict[str, list[tuple[float, float]]] = {name: [] for name, _ in settings}
            for r in range(args.repeats):
                for i, (name, threads) in enumerate(settings):
                    times[name].append(run_one(args, batch, threads, Path(tmp) / f"b{batch}-{r}-{i}"))
            for name, threads in settings:
                ep = statistics.median(t for t, _ in times[name])
                wall = statistics.median(w for _, w in times[name])
                n = threads if threads is not None else default_threads(batch)
                rows.append((batch, name, n, ep, wall))
                print(f"batch {batch}: {name}: {n} thread(s): epoch {ep:.2f} s, process {wall:.1f} s", flush=True)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    print()
    print("| batch | setting | threads | epoch training time | whole process |")
    print("|---:|---|---:|---:|---:|")
    for batch, name, n, ep, wall in rows:
        print(f"| {batch} | {name.split(':')[0]} | {n} | {ep:.2f} s | {wall:.1f} s |")


if __name__ == "__main__":
    main()
