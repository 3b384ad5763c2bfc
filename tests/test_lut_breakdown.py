"""Where the LUTs go (edgelearn.rtl.synth.charge_logic, benchmarks/lut_breakdown.py) on hand-built netlists."""
from __future__ import annotations

import pytest

from edgelearn.rtl.synth import charge_logic


def _cell(kind, ins, outs):
    conns = {**{f"I{k}": [b] for k, b in enumerate(ins)}, **{f"O{k}": [b] for k, b in enumerate(outs)}}
    dirs = {**{f"I{k}": "input" for k in range(len(ins))}, **{f"O{k}": "output" for k in range(len(outs))}}
    return {"type": kind, "connections": conns, "port_directions": dirs, "attributes": {}}


def _ff(d, q):
    return {"type": "FDRE", "connections": {"D": [d], "Q": [q], "C": ["0"]},
            "port_directions": {"D": "input", "Q": "output", "C": "input"}, "attributes": {}}


def test_each_logic_cell_is_shared_evenly_between_the_items_it_reaches():
    mod = {"ports": {"o": {"direction": "output", "bits": [10]}},
           "netnames": {"u.a": {"bits": [1], "hide_name": 0}, "u.g_lane[0].b": {"bits": [7], "hide_name": 0},
                        "u.g_lane[1].b": {"bits": [8], "hide_name": 0}, "$tmp": {"bits": [2], "hide_name": 1}},
           "cells": {"ff_a": _ff(11, 1), "lut1": _cell("LUT2", [1, 1], [2]), "lut2": _cell("LUT1", [2], [3]),
                     "ff_b0": _ff(3, 7), "ff_b1": _ff(3, 8), "lut3": _cell("LUT1", [2], [10]),
                     "carry": _cell("CARRY4", [1], [11]), "lut4": _cell("LUT1", [1], [12])}}
    charge, types = charge_logic(mod)
    # lut2 reaches both lanes of b (one item, indices folded), lut3 the output, lut1 both: half each
    assert charge == pytest.approx({"u.g_lane[*].b (FDRE)": 1.5, "output o": 1.5, "u.a (FDRE)": 1.0,
                                    "(drives nothing)": 1.0})
    assert types == {"FDRE": 3, "LUT2": 1, "LUT1": 3, "CARRY4": 1}


def test_a_chain_longer_than_the_recursion_limit_is_charged_to_its_end():
    n = 5000
    cells = {f"l{k}": _cell("LUT1", [k], [k + 1]) for k in range(n)}
    cells["ff"] = _ff(n, n + 1)
    mod = {"ports": {}, "netnames": {"r": {"bits": [n + 1], "hide_name": 0}}, "cells": cells}
    charge, _ = charge_logic(mod)
    assert charge == pytest.approx({"r (FDRE)": float(n)})
