"""Measure an area file for ``edgelearn report --area``: ``edgelearn rtl --synth`` (yosys synth_xilinx) of the
learning datapath for every rule and word length, the resources of each as one row (edgelearn/report/area.py).

    .venv/bin/python scripts/area_sweep.py --config fc1-500 --rules drtp,sdfa,dfa,shallow --bits 4,6,8,12,16 \
        --parallel 16 --out docs/results/area-fc1-500.json

Resumable: rows already in --out are kept and not measured again, and the file is rewritten after every
synthesis, so an interrupted sweep continues where it stopped. The RTL projects go to --work (default: a folder
in the system's temporary directory); they are not needed afterwards.
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edgelearn.fileio import write_json_atomic
from edgelearn.report.area import AREA_FORMAT, AREA_VERSION, validate_area


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--rules", default="drtp,sdfa,dfa,shallow", help="hidden rules the RTL generator builds")
    ap.add_argument("--bits", default="4,6,8,12,16")
    ap.add_argument("--parallel", type=int, default=16, help="MAC lanes per layer")
    ap.add_argument("--out", required=True, help="the area file (JSON) to write or complete")
    ap.add_argument("--work", default=None, help="folder of the RTL projects")
    a = ap.parse_args()
    out = Path(a.out)
    work = Path(a.work or tempfile.mkdtemp(prefix="area-sweep-"))
    rules = [r for r in a.rules.split(",") if r]
    bits = [int(b) for b in a.bits.split(",") if b]
    command = " ".join(shlex.quote(x) for x in ["scripts/area_sweep.py", *sys.argv[1:]])
    data = {"format": AREA_FORMAT, "version": AREA_VERSION, "config": a.config, "parallel": a.parallel,
            "target": "xilinx", "tool": "edgelearn rtl --synth (yosys synth_xilinx -flatten; stat)",
            "command": command, "rows": []}
    if out.exists():
        old = validate_area(json.loads(out.read_text()), str(out))
        if (old.get("config"), old.get("parallel")) != (a.config, a.parallel):
            sys.exit(f"area_sweep: {out} holds {old.get('config')} at {old.get('parallel')} lanes; "
                     "choose another --out")
        data = {**old, "command": command}
    done = {(r["rule"], r["bits"]) for r in data["rows"]}
    for rule in rules:
        for b in bits:
            if (rule, b) in done:
                continue
            prj = work / f"{rule}-{b}b"
            t0 = time.perf_counter()
            cmd = [sys.executable, "-m", "edgelearn", "rtl", "--config", a.config, "--rule", rule, "--bits", str(b),
                   "--parallel", str(a.parallel), "--out", str(prj), "--synth"]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode:
                sys.exit(f"area_sweep: {' '.join(cmd)} failed:\n{proc.stderr.strip()}")
            res = json.loads((prj / "resources.json").read_text())
            design = json.loads((prj / "design.json").read_text())
            data["network"], data["sizes"] = design.get("network"), design.get("sizes")
            row = {"rule": rule, "bits": b, "rounding": "preset",
                   **{k: v for k, v in res["resources"].items() if k in ("LUT", "FF", "DSP", "BRAM", "LUTRAM",
                                                                          "CARRY")},
                   "synth_seconds": round(res["seconds"], 1)}
            data["rows"].append(row)
            write_json_atomic(out, data, indent=1)
            print(f"{rule:8s} {b:3d} bits: LUT {row['LUT']:>7,.0f}  FF {row['FF']:>7,.0f}  DSP {row['DSP']:>4.0f}  "
                  f"BRAM {row['BRAM']:>5g}  ({time.perf_counter() - t0:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
