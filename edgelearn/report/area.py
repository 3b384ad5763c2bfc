"""Area files: the FPGA resources of the generated learning datapath per rule and word length, which
``edgelearn report --area FILE`` sets beside the test accuracy (a table and ``accuracy_vs_area.png``).

An area file is JSON::

    {"format": "edgelearn-area", "version": 1,
     "network": "fc1-500", "sizes": [784, 500, 10], "parallel": 16, "target": "xilinx",
     "command": "...",                                   # how it was measured (free text, optional)
     "rows": [{"rule": "drtp", "bits": 8, "rounding": "preset", "LUT": 7404, "FF": 3591, "DSP": 28, "BRAM": 27},
              ...]}

Every row needs ``bits`` and ``LUT``; ``FF``, ``DSP``, ``BRAM`` (RAMB36 equivalents) and anything else are kept
when present. ``rule`` names the hidden layers' rule (a row without one holds for every rule), ``rounding`` the
report's rounding key of the weight/bias updates (``preset``, the default, or ``RND``, ``STOCH``, ...): the
stochastic rounding's random bits are a large part of the learning logic, so an area is matched with the accuracy
of the same rounding. ``scripts/area_sweep.py`` writes such a file from ``edgelearn rtl --synth``.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ..errors import ConfigError

AREA_FORMAT = "edgelearn-area"
AREA_VERSION = 1
#: the copy of the area file kept in a report folder, so a later ``--render-only`` draws the same plot
AREA_FILE = "area.json"
#: resource columns of the report's table, in this order (the first is the plot's x axis)
AREA_COLUMNS = ("LUT", "FF", "DSP", "BRAM")
#: a row's rule that holds for every rule
ANY_RULE = "*"


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0


def validate_area(data: Any, where: str) -> dict[str, Any]:
    """The area file ``data`` with every row's rule and rounding filled in; :class:`ConfigError` (one line naming
    ``where``) for anything that is not an area file."""
    if not isinstance(data, dict) or data.get("format") != AREA_FORMAT:
        raise ConfigError(f"{where}: not an area file (expected \"format\": \"{AREA_FORMAT}\")")
    if data.get("version") != AREA_VERSION:
        raise ConfigError(f"{where}: area file version {data.get('version')!r}, this edgelearn reads {AREA_VERSION}")
    rows = data.get("rows")
    if not isinstance(rows, list) or not rows:
        raise ConfigError(f"{where}: an area file needs a non-empty \"rows\" list")
    seen, clean = set(), []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ConfigError(f"{where}: row {i} is not an object")
        bits = row.get("bits")
        if not isinstance(bits, int) or isinstance(bits, bool) or bits < 1:
            raise ConfigError(f"{where}: row {i}: \"bits\" must be a positive integer, got {bits!r}")
        for col in AREA_COLUMNS:
            if (col in row or col == "LUT") and not _number(row.get(col)):
                raise ConfigError(f"{where}: row {i}: \"{col}\" must be a non-negative number, got {row.get(col)!r}")
        rule, rounding = row.get("rule", ANY_RULE), row.get("rounding", "preset")
        if not isinstance(rule, str) or not isinstance(rounding, str):
            raise ConfigError(f"{where}: row {i}: \"rule\" and \"rounding\" must be strings")
        key = (rule, bits, rounding)
        if key in seen:
            raise ConfigError(f"{where}: row {i}: a second row for rule {rule}, {bits} bits, rounding {rounding}")
        seen.add(key)
        clean.append({**row, "rule": rule, "rounding": rounding})
    return {**data, "rows": clean}


def load_area(path: str | Path) -> dict[str, Any]:
    """Read and check an area file."""
    try:
        text = Path(path).read_bytes()  # json.loads decodes it: a binary file is then 'not JSON'
    except OSError as e:
        raise ConfigError(f"cannot read the area file {path}: {e.strerror or e}") from None
    try:
        data = json.loads(text)
    except ValueError:
        raise ConfigError(f"{path}: not JSON (an area file is JSON, docs/reports.md)") from None
    return validate_area(data, str(path))


def area_of(area: dict[str, Any], rule: str, bits: int, rounding: str) -> dict[str, Any] | None:
    """The row of ``rule`` at ``bits`` and ``rounding``; a row for every rule when the rule has none of its own."""
    rows = [r for r in area["rows"] if r["bits"] == bits and r["rounding"] == rounding]
    return next((r for r in rows if r["rule"] == rule), None) or next((r for r in rows if r["rule"] == ANY_RULE),
                                                                      None)
