"""Where a generated design's Xilinx LUTs go: yosys ``synth_xilinx -flatten`` (the flow of
``edgelearn.rtl.synth.synthesize``), ``write_json``, then each LUT / CARRY4 / MUXF charged to the registers,
memories, DSPs and top-level outputs its output reaches through combinational cells (shared evenly between the
items it reaches).  An item is a register or memory name with its bit and lane indices folded (``g_lane[*]``), so
the per-lane copies of one datapath register add up; the top items are printed per layer instance.

    .venv/bin/python benchmarks/lut_breakdown.py --inputs 64 --parallel 16 --update-lanes 4 --rows infer,neuron

(digits-sized 64-128-10 by default, the engines of ``bench_rtl._engine``).  An estimate for choosing cuts: module
boundaries are flattened, so a LUT shared by two items counts half in each.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from edgelearn.rtl.synth import LOGIC, charge_logic, require_yosys, resources

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def synth_json(prj: Path, timeout: float) -> dict:
    """``synth_xilinx -flatten`` on ``prj`` (as ``synthesize`` does), the netlist as yosys JSON."""
    top = json.loads((prj / "design.json").read_text())["top"]
    files = (prj / "filelist.f").read_text().split()
    script = "\n".join([f"read_verilog -defer {f}" for f in files] +
                       [f"hierarchy -top {top}", f"synth_xilinx -top {top} -flatten", "stat",
                        "write_json netlist.json"]) + "\n"
    (prj / "breakdown.ys").write_text(script)
    subprocess.run([require_yosys(), "-q", "-l", "breakdown.log", "-s", "breakdown.ys"], cwd=prj, check=True,
                   timeout=timeout)
    data = json.loads((prj / "netlist.json").read_text())
    return data["modules"][top]


def report(title: str, charge: dict[str, float], types: dict[str, int], top: int) -> None:
    n_logic = sum(n for t, n in types.items() if LOGIC.match(t))
    r = resources(types)
    print(f"{title}: {r['LUT']:g} LUT, {r['CARRY']:g} CARRY4, {r['MUXF']:g} MUXF ({n_logic} cells charged), "
          f"{r['FF']:g} FF, {r['DSP']:g} DSP, {r['BRAM']:g} BRAM36, {r['LUTRAM']:g} LUTRAM, {r['SRL']:g} SRL, "
          f"area {r['AREA_LE']:g} LUT-eq.")
    per_inst: dict[str, dict[str, float]] = defaultdict(dict)
    for it, v in charge.items():
        first = it.split(" ")[0].split("=")[0]  # the item's own name (charge_logic: instance path first)
        inst = first.split(".", 1)[0] if "." in first else "(top)"
        per_inst[inst][it] = v
    for inst, items in sorted(per_inst.items(), key=lambda kv: -sum(kv[1].values())):
        print(f"  {inst}: {sum(items.values()):.0f}")
        for it, v in sorted(items.items(), key=lambda kv: -kv[1])[:top]:
            if v >= 0.5:
                print(f"    {v:8.1f}  {it}")


def main() -> None:
    import bench_rtl
    from edgelearn.rtl.generate import write_rtl

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--inputs", type=int, default=64)
    ap.add_argument("--parallel", type=int, default=16)
    ap.add_argument("--update-lanes", type=int, default=4)
    ap.add_argument("--rows", default="infer,neuron", help=f"of {','.join(bench_rtl.RESOURCE_ROWS)}")
    ap.add_argument("--top", type=int, default=25, help="items printed per layer")
    ap.add_argument("--keep", help="write the projects (and netlist.json) here instead of a temporary folder")
    ap.add_argument("--timeout", type=float, default=7200)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="lut-breakdown-") as tmp:
        base = Path(a.keep) if a.keep else Path(tmp)
        for row in a.rows.split(","):
            label, rnd, rng, learn = bench_rtl.RESOURCE_ROWS[row]
            eng = bench_rtl._engine(a.inputs, rounding=rnd, rng=rng)
            q = a.update_lanes if learn else None
            prj = base / f"{row}-{q}"
            write_rtl(eng, prj, parallel=a.parallel, learning=learn, update_lanes=q)
            charge, types = charge_logic(synth_json(prj, a.timeout))
            report(f"{a.inputs}-128-10, {a.parallel} MAC lanes, {label}"
                   + (f", {q} update lanes" if q else ""), charge, types, a.top)


if __name__ == "__main__":
    main()
