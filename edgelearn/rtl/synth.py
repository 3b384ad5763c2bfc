"""Resource estimate of a generated design with yosys (``synth_xilinx``; ``stat -json``): LUT, FF, DSP, BRAM.

yosys maps to Xilinx 7-series cells by default; the counts are an estimate for comparing designs (with and without
the learning logic, different parallelism), not a placed-and-routed result.  The counts are read from ``stat -json``
(``STAT_FILE``), whose layout is stable across yosys versions, unlike the text table of ``stat``.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

from ..errors import ConfigError

#: the ``stat -json`` report written next to the log
STAT_FILE = "stat.json"
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
    class, the raw cell table and the yosys run time.  The log goes to ``prj/yosys.log``, the counts to
    ``prj/stat.json``."""
    exe = require_yosys()
    prj = Path(prj)
    if top is None:
        top = json.loads((prj / "design.json").read_text())["top"]
    files = (prj / "filelist.f").read_text().split()
    stat_path = prj / STAT_FILE
    stat_path.unlink(missing_ok=True)  # a report of an earlier run must not stand in for this one
    # the text table stays in the log for people; the counts come from the JSON
    script = "\n".join([f"read_verilog -defer {f}" for f in files] +
                       [f"hierarchy -top {top}", f"synth_xilinx -top {top} -flatten", "stat",
                        f"tee -q -o {STAT_FILE} stat -json"]) + "\n"
    (prj / "synth.ys").write_text(script)
    t0 = time.perf_counter()
    res = subprocess.run([exe, "-q", "-l", "yosys.log", "-s", "synth.ys"], cwd=prj, capture_output=True, text=True,
                         timeout=timeout)
    secs = time.perf_counter() - t0
    log = (prj / "yosys.log").read_text() if (prj / "yosys.log").exists() else res.stdout + res.stderr
    if res.returncode != 0:
        tail = (res.stderr or log).strip().splitlines()[-3:]
        raise ConfigError(f"yosys failed on {prj}: {' | '.join(tail)}")
    try:
        text = stat_path.read_text()
    except OSError:
        raise ConfigError(f"yosys wrote no {stat_path}; see {prj / 'yosys.log'}") from None
    cells = parse_stat_json(text, where=str(stat_path))
    return {"resources": resources(cells), "cells": cells, "seconds": secs}


def resources(cells: dict[str, int]) -> dict[str, float]:
    """Cell counts per resource class (:data:`CLASSES`), and BRAM in RAMB36 equivalents."""
    out: dict[str, float] = {cls: sum(n for c, n in cells.items() if c in names) for cls, names in CLASSES.items()}
    out["BRAM"] = out["BRAM36"] + out["BRAM18"] / 2
    return out


def parse_stat_json(text: str, where: str = "stat -json") -> dict[str, int]:
    """Cell counts by type from yosys ``stat -json`` output: the ``design`` totals, or the only module's counts
    when yosys gave no totals.  Anything else is an error, never an empty table (which would read as zero LUTs)."""
    try:
        data = json.loads(text)
    except ValueError:
        raise ConfigError(f"{where}: not a yosys stat -json report (unreadable JSON)") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: not a yosys stat -json report")
    stats = data.get("design")
    if stats is None:
        modules = data.get("modules")
        if not isinstance(modules, dict) or len(modules) != 1:
            n = len(modules) if isinstance(modules, dict) else 0
            raise ConfigError(f"{where}: no design totals and {n} modules; cannot read the cell counts")
        stats = next(iter(modules.values()))
    by_type = stats.get("num_cells_by_type") if isinstance(stats, dict) else None
    total = stats.get("num_cells") if isinstance(stats, dict) else None
    if not isinstance(by_type, dict) or isinstance(total, bool) or not isinstance(total, int):
        raise ConfigError(f"{where}: no num_cells / num_cells_by_type; cannot read the cell counts")
    cells: dict[str, int] = {}
    for name, n in by_type.items():
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ConfigError(f"{where}: cell count of {name} is {n!r}, not a count")
        name = name[1:] if name.startswith("\\") else name  # escaped identifiers of user cells
        cells[name] = cells.get(name, 0) + n
    if sum(cells.values()) != total:
        raise ConfigError(f"{where}: the cell counts by type add up to {sum(cells.values())}, not num_cells {total}")
    return cells
