"""The generated learning datapath: cycles vs the ideal, training vs inference, simulator speed, resources.

    .venv/bin/python benchmarks/bench_rtl.py                 # everything (MNIST from ../shared/data if present)
    .venv/bin/python benchmarks/bench_rtl.py --only cycles   # or: speed, resources, regression

* cycles: 784-128-10 (tanh, 8-bit preset, DRTP) on real MNIST images (digits 64-128-10 without the data), for
  several numbers of parallel MAC units: compute cycles per training sample and per inference sample (from the
  sample's last input beat to idle, Verilator, every weight checked against the engine), beside the ideal
  MAC operations / MAC units (forward: non-zero inputs x outputs per layer; training adds the same again for every
  layer that updates).
* speed: cycles per second of Verilator and Icarus on the same design and samples (cocotb-driven stream).
* resources: yosys synth_xilinx + stat, the same network with and without the learning logic: stochastic rounding
  with the draws of rng layer (one LFSR per layer) and of rng neuron (one xorshift32 per neuron), and
  round-to-nearest (no draws), to show what the draws cost; the learning overhead in LUTs and in a total area
  that counts block RAM (AREA_MODEL); --update-lanes 16,8,4: each learning design at those update lanes (the
  half-rate update).
* ice40: yosys synth_ice40 + nextpnr-ice40 (--parts UP5K, HX8K), 64-32-10 at 2 MAC lanes, inference only vs DRTP
  with stochastic rounding (--ice40-rows: rng layer, rng neuron, rng neuron with 1 update lane): LUT4 / FF / BRAM /
  DSP and fmax (min / median / max over --seeds placement seeds).
* regression: wall time of the RTL test suite (pytest rtl_tb).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "rtl_tb"))
sys.path.insert(0, str(ROOT / "tests"))  # test_mlp imports the tool gate (needs)
MNIST = ROOT.parent / "shared" / "data" / "mnist"


def _data(n_train: int, n_test: int):
    from edgelearn.data import load_dataset

    if (MNIST / "train-images-idx3-ubyte.gz").exists() or (MNIST / "train-images-idx3-ubyte").exists():
        return "mnist", load_dataset("mnist", MNIST, n_train=n_train, n_test=n_test)
    return "digits", load_dataset("digits", seed=0)


def _engine(n_in: int, hidden: int = 128, bits: int = 8, rounding=None, rng=None):
    from edgelearn.fixed.engine import FixedEngine
    from test_mlp import _spec

    return FixedEngine(_spec([n_in, hidden, 10], ["tanh"], name=f"mlp-{n_in}-{hidden}-10"), bits=bits, seed=0,
                       lr_shift=4, rounding=rounding, rng=rng, threads=1)


def bench_cycles(parallels, n: int) -> None:
    from test_mlp import run_design

    name, ds = _data(n, n)
    n_in = int(np.prod(ds.x_train.shape[1:]))
    print(f"cycles per sample, {n_in}-128-10 tanh, 8-bit preset, DRTP, {n} real {name} samples (Verilator; "
          f"compute = last input beat -> idle; every weight compared with the engine after every sample)")
    print(f"{'MAC units':>9} {'train':>9} {'ideal':>9} {'ratio':>6} {'infer':>9} {'ideal':>9} {'ratio':>6} "
          f"{'train/infer':>11} {'input beats':>11} {'mismatching bits':>16}")
    for P in parallels:
        eng = _engine(n_in)
        X = eng.quantize_inputs(ds.x_train[:n], count=False).astype(np.int64)
        y = np.asarray(ds.y_train[:n], dtype=np.int64)
        with tempfile.TemporaryDirectory(prefix="bench-rtl-") as tmp:
            rows = {}
            for mode, train in (("train", np.ones(n, bool)), ("infer", np.zeros(n, bool))):
                rep = run_design(eng, X, y, train, Path(tmp) / mode, "verilator", "mlp_lockstep", P,
                                 snapshots=[n - 1])
                g, design = rep["golden"], rep["design"]
                nnz = np.stack([g[f"nnz{k}"] for k in range(len(design.layers))], axis=1)
                ideal = np.mean([design.ideal_cycles(list(r), mode == "train") for r in nnz])
                rows[mode] = (float(np.mean(rep["compute_cycles"])), float(ideal),
                              rep["weight_bits_mismatched"] + rep["bias_bits_mismatched"] + rep["pred_mismatches"])
        tr, ti = rows["train"], rows["infer"]
        print(f"{P:>9} {tr[0]:>9.0f} {tr[1]:>9.0f} {tr[0] / tr[1]:>6.2f} {ti[0]:>9.0f} {ti[1]:>9.0f} "
              f"{ti[0] / ti[1]:>6.2f} {tr[0] / ti[0]:>11.2f} {n_in:>11} {tr[2] + ti[2]:>16}", flush=True)


def bench_speed(n: int) -> None:
    from edgelearn.fixed.engine import FixedEngine
    from edgelearn.data import load_dataset
    from test_mlp import run_design

    eng = FixedEngine(None, bits=8, seed=0, lr_shift=4, threads=1)
    ds = load_dataset("digits", seed=0)
    X = eng.quantize_inputs(ds.x_train[:n], count=False).astype(np.int64)
    y = np.asarray(ds.y_train[:n], dtype=np.int64)
    train = np.ones(n, dtype=bool)
    print(f"simulator speed: digits 64-128-10, 16 MAC lanes, {n} training samples streamed back to back (cocotb)")
    res = {}
    with tempfile.TemporaryDirectory(prefix="bench-rtl-") as tmp:
        for sim in ("verilator", "icarus"):
            t0 = time.perf_counter()
            rep = run_design(eng, X, y, train, Path(tmp) / sim, sim, "mlp_stream", 16, snapshots=[n - 1])
            wall = time.perf_counter() - t0
            res[sim] = rep
            run_s = rep["sim_seconds"]
            print(f"  {sim:<9} build + run {wall:6.1f} s, simulation {run_s:6.1f} s for {rep['cycles_total']:,.0f} "
                  f"cycles = {rep['cycles_total'] / run_s:,.0f} cycles/s; mismatching bits "
                  f"{rep['weight_bits_mismatched'] + rep['bias_bits_mismatched']}", flush=True)
    v, i = res["verilator"], res["icarus"]
    print(f"  Verilator / Icarus: {(v['cycles_total'] / v['sim_seconds']) / (i['cycles_total'] / i['sim_seconds']):.1f}x "
          f"cycles/s (stream throughput {v['cycles_per_sample']:.0f} cycles per training sample incl. 64 input beats)")


#: the synth_xilinx rows: key -> (label, rounding, rng, learning)
RESOURCE_ROWS = {"infer": ("inference only", None, None, False),
                 "layer": ("DRTP learning, stochastic, rng layer", None, "layer", True),
                 "neuron": ("DRTP learning, stochastic, rng neuron", None, "neuron", True),
                 "rnd": ("DRTP learning, round-to-nearest weights", [(None, "RND")], None, True)}


def bench_resources(n_in: int, P: int, rows=("infer", "layer", "neuron", "rnd"), update_lanes=(None,)) -> None:
    from edgelearn.rtl.generate import write_rtl
    from edgelearn.rtl.synth import synthesize

    print(f"resources (yosys synth_xilinx; stat), {n_in}-128-10 tanh, 8-bit preset, {P} MAC lanes per layer")
    cols = ("LUT", "FF", "DSP", "BRAM", "LUTRAM", "SRL", "CARRY", "AREA_LE")
    print("  AREA_LE: total area in LUT-equivalents, edgelearn.rtl.synth.area_le (max(LUT + LUTRAM + SRL, FF / 2) + "
          "40 per RAMB36 + 20 per DSP48, the 7-series tile sizes)")
    print(f"  {'design':<52}" + "".join(f"{c:>9}" for c in cols))
    base = None
    designs = [(RESOURCE_ROWS[k], q) for k in ["infer"] + [r for r in rows if r != "infer"]
               for q in ((None,) if k == "infer" else update_lanes)]
    with tempfile.TemporaryDirectory(prefix="bench-rtl-") as tmp:
        for (label, rnd, rng, learn), q in designs:
            eng = _engine(n_in, rounding=rnd, rng=rng)
            if q is not None:
                label = f"{label}, {q} update lanes"
            prj = Path(tmp) / label.replace(" ", "_").replace(",", "")
            write_rtl(eng, prj, parallel=P, learning=learn, update_lanes=q)
            r = synthesize(prj)["resources"]
            print(f"  {label:<52}" + "".join(f"{r[c]:>9g}" for c in cols), flush=True)
            if base is None:
                base = r
            else:
                print(f"  {'  learning adds':<52}" + "".join(
                    f"{(100 * (r[c] - base[c]) / base[c]) if base[c] else float('nan'):>8.0f}%" for c in cols))


#: the iCE40 rows: label -> (rng, learning, update lanes (None: all P))
ICE40_ROWS = {"infer": ("inference only", None, False, None),
              "layer": ("DRTP learning, stochastic, rng layer", "layer", True, None),
              "neuron": ("DRTP learning, stochastic, rng neuron", "neuron", True, None),
              "neuron-half": ("DRTP, rng neuron, half-rate update", "neuron", True, "half")}


def _critical_path(log: Path) -> str:
    """The cells of nextpnr's critical path of the clock (register to register, the path fmax is read from; not
    the I/O paths reported after it) in ``log``, source to sink, one line: the signals whose logic it crosses (yosys
    names a LUT after the signal it computes, ``<signal>_SB_LUT4_...``), and the number of LUTs on it."""
    cells, on = [], False
    for ln in log.read_text().splitlines():
        if "Critical path report" in ln:
            on = "posedge -> posedge" in ln and not cells
        elif on and ("Source " in ln or "Sink " in ln):
            cells.append(ln.split("Source " if "Source " in ln else "Sink ", 1)[1].strip())
    luts = len({c.rsplit(".", 1)[0] for c in cells if c.endswith(".O")})
    names = [c.split("_SB_")[0].split("$")[0] for c in cells]
    return f"{luts} LUTs: " + " -> ".join(n for i, n in enumerate(names) if i == 0 or n != names[i - 1])


def bench_ice40(n_in: int, hidden: int, P: int, seeds, parts, rows, keep: str | None = None,
                part_rows: dict | None = None) -> None:
    from edgelearn.rtl.generate import write_rtl
    from edgelearn.rtl.synth import synthesize_ice40

    print(f"iCE40 (yosys synth_ice40, nextpnr-ice40 seeds {','.join(map(str, seeds))}), {n_in}-{hidden}-10 tanh, "
          f"8-bit preset, {P} MAC lanes per layer; fmax in MHz")
    cols = ("LUT4", "FF", "CARRY", "BRAM", "DSP")
    print(f"  {'part':<11}{'design':<38}" + "".join(f"{c:>7}" for c in cols) +
          f"{'fmax min':>10}{'median':>8}{'max':>8}{'vs infer':>9}")
    with tempfile.TemporaryDirectory(prefix="bench-rtl-") as tmp:
        for part in parts:
            base = None
            for row in ["infer"] + [r for r in (part_rows or {}).get(part, rows) if r != "infer"]:
                label, rng, learn, q = ICE40_ROWS[row]
                prj = Path(keep or tmp) / f"{part}-{row}"
                write_rtl(_engine(n_in, hidden, rng=rng), prj, parallel=P, learning=learn,
                          update_lanes=None if q is None else max(1, P // 2))
                r = synthesize_ice40(prj, part, seeds=seeds)
                f = r["fmax"]
                base = base or f["median"]
                print(f"  {part:<11}{label:<38}" + "".join(f"{r['resources'][c]:>7}" for c in cols) +
                      f"{f['min']:>10.1f}{f['median']:>8.1f}{f['max']:>8.1f}{100 * f['median'] / base:>8.0f}%",
                      flush=True)
                for seed in seeds:
                    print(f"    critical path, seed {seed}: {_critical_path(prj / f'nextpnr_{part}_s{seed}.log')}",
                          flush=True)


def bench_regression() -> None:
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "rtl_tb"], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ})
    print(f"RTL regression (pytest rtl_tb, Icarus + Verilator): {time.perf_counter() - t0:.0f} s wall; "
          f"{res.stdout.strip().splitlines()[-1] if res.stdout.strip() else res.stderr[-200:]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=("cycles", "speed", "resources", "ice40", "regression"), action="append")
    ap.add_argument("--parallel", default="1,4,16,64", help="MAC units to measure (default 1,4,16,64)")
    ap.add_argument("--samples", type=int, default=10, help="samples per cycle measurement (default 10)")
    ap.add_argument("--speed-samples", type=int, default=100)
    ap.add_argument("--resources-inputs", default="64,784", help="inputs of the synth_xilinx networks (default 64,784)")
    ap.add_argument("--resources-rows", default="infer,layer,neuron,rnd",
                    help=f"synth_xilinx designs, of {','.join(RESOURCE_ROWS)} (default: all)")
    ap.add_argument("--update-lanes", default="",
                    help="update lanes of the learning designs of --only resources, e.g. 16,8,4 (default: all lanes)")
    ap.add_argument("--seeds", default="1,2,3", help="nextpnr placement seeds of the iCE40 runs (default 1,2,3)")
    ap.add_argument("--parts", default="ice40-up5k,ice40-hx8k", help="iCE40 parts (default ice40-up5k,ice40-hx8k)")
    ap.add_argument("--ice40-rows", default="infer,layer,neuron",
                    help=f"iCE40 designs, of {','.join(ICE40_ROWS)} (default infer,layer,neuron)")
    ap.add_argument("--up5k-rows", default=None, help="iCE40 designs on the UP5K (default: --ice40-rows)")
    ap.add_argument("--keep", default=None, help="keep the iCE40 projects (logs, reports) in this folder")
    a = ap.parse_args()
    from edgelearn.rtl import sim as rsim

    rsim.tool_env()
    only = set(a.only or ("cycles", "speed", "resources", "ice40", "regression"))
    print(f"machine load {os.getloadavg()[0]:.1f} (2 cores)")
    if "cycles" in only:
        bench_cycles([int(p) for p in a.parallel.split(",")], a.samples)
    if "speed" in only:
        bench_speed(a.speed_samples)
    if "resources" in only:
        for n_in in a.resources_inputs.split(","):
            bench_resources(int(n_in), 16, a.resources_rows.split(","),
                            [int(q) for q in a.update_lanes.split(",")] if a.update_lanes else [None])
    if "ice40" in only:
        bench_ice40(64, 32, 2, [int(s) for s in a.seeds.split(",")], a.parts.split(","), a.ice40_rows.split(","),
                    keep=a.keep, part_rows={"ice40-up5k": a.up5k_rows.split(",")} if a.up5k_rows else None)
    if "regression" in only:
        bench_regression()


if __name__ == "__main__":
    main()
