"""Resource estimate of a generated design with yosys (``synth_xilinx``; ``stat``): LUT, FF, DSP, BRAM.

yosys maps to Xilinx 7-series cells by default; the counts are an estimate for comparing designs (with and without
the learning logic, different parallelism), not a placed-and-routed result.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

from ..errors import ConfigError

#: cell-name prefixes -> resource class (7-series primitives as emitted by synth_xilinx)
CLASSES = {
    "LUT": ("LUT1", "LUT2", "LUT3", "LUT4", "LUT5", "LUT6"),
    "LUTRAM": ("RAM16X1D", "RAM32X1D", "RAM64X1D", "RAM128X1D", "RAM256X1S", "RAM32M", "RAM64M", "RAM16X1S",
               "RAM32X1S", "RAM64X1S", "RAM128X1S", "RAM32M16", "RAM64M8"),
    "FF": ("FDRE", "FDSE", "FDCE", "FDPE", "FDRE_1", "FDSE_1", "FDCE_1", "FDPE_1"),
    "DSP": ("DSP48E1", "DSP48E2"),
    "BRAM36": ("RAMB36E1", "RAMB36E2"),
    "BRAM18": ("RAMB18E1", "RAMB18E2"),
    "CARRY": ("CARRY4", "CARRY8"),
    "MUXF": ("MUXF7", "MUXF8"),
    "SRL": ("SRL16E", "SRLC32E"),
}


def require_yosys() -> str:
    exe = shutil.which("yosys")
    if exe is None:
        raise ConfigError("yosys not found: install it (apt install yosys), or run scripts/setup.sh")
    return exe


def synthesize(prj: Path, top: str | None = None, timeout: float = 1800) -> dict:
    """Run ``synth_xilinx -flatten; stat`` on the design in ``prj`` (its filelist.f); returns the cell counts per
    class, the raw cell table and the yosys run time.  The log goes to ``prj/yosys.log``."""
    exe = require_yosys()
    prj = Path(prj)
    if top is None:
        import json

        top = json.loads((prj / "design.json").read_text())["top"]
    files = (prj / "filelist.f").read_text().split()
    script = "\n".join([f"read_verilog -defer {f}" for f in files] +
                       [f"hierarchy -top {top}", f"synth_xilinx -top {top} -flatten", "stat"]) + "\n"
    (prj / "synth.ys").write_text(script)
    t0 = time.perf_counter()
    res = subprocess.run([exe, "-q", "-l", "yosys.log", "-s", "synth.ys"], cwd=prj, capture_output=True, text=True,
                         timeout=timeout)
    secs = time.perf_counter() - t0
    log = (prj / "yosys.log").read_text() if (prj / "yosys.log").exists() else res.stdout + res.stderr
    if res.returncode != 0:
        tail = (res.stderr or log).strip().splitlines()[-3:]
        raise ConfigError(f"yosys failed on {prj}: {' | '.join(tail)}")
    cells = parse_stat(log)
    out = {cls: sum(n for c, n in cells.items() if c in names) for cls, names in CLASSES.items()}
    out["BRAM"] = out["BRAM36"] + out["BRAM18"] / 2  # in RAMB36 equivalents
    return {"resources": out, "cells": cells, "seconds": secs}


def parse_stat(log: str) -> dict[str, int]:
    """Cell counts of the last ``stat`` report in a yosys log."""
    part = log[log.rfind("Number of cells"):]
    cells: dict[str, int] = {}
    for m in re.finditer(r"^\s+(\$?[A-Za-z_][\w$]*)\s+(\d+)\s*$", part, re.M):
        cells[m.group(1)] = cells.get(m.group(1), 0) + int(m.group(2))
    return cells
