"""The frozen convolutional front end of a generated datapath (``hw/el_front.v``, docs/rtl.md "Convolutional front
end"): what the generator builds from the lowered program's ``front`` (edgelearn.fixed.lower.lower_front).

The datapath implements one conv2d (rule ``shallow``: kernels and biases in ROMs), optionally followed by one max
pool or one average pool with a power-of-two window (the division is a shift, docs/arithmetic.md §15); everything
else is refused here, with one line, before any file is written.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError, FormatError
from ..fixed.formats import FixedFormat
from ..program import ActCode, act_code

#: pool codes of el_front.v's POOL parameter
POOL_CODES = {None: 0, "maxpool": 1, "avgpool": 2}
#: width of el_front.v's loop counters (its CW): every extent of the front end is below 2**COUNTER_BITS
COUNTER_BITS = 16
MAX_EXTENT = 1 << COUNTER_BITS
#: the front end's memory images ($readmemh): kernels in torch's (C_out, C_in, k, k) order, biases, activation table
MEM = {"kernels": "mem/cw.hex", "biases": "mem/cb.hex", "table": "mem/ct.hex"}


@dataclass
class RtlFront:
    """The conv layer (a ``Program.front`` dict) and the pool after it (or None), as el_front.v computes them."""

    conv: dict[str, Any]
    pool: dict[str, Any] | None

    @property
    def input(self) -> FixedFormat:
        return self.conv["input"]

    @property
    def output(self) -> FixedFormat:
        return (self.pool or self.conv)["act"]

    @property
    def n_pixels(self) -> int:
        return int(np.prod(self.conv["in_shape"]))

    @property
    def n_features(self) -> int:
        return int(np.prod((self.pool or self.conv)["out_shape"]))

    @property
    def taps(self) -> int:
        c_in, k = self.conv["in_shape"][0], self.conv["kernel"]
        return c_in * k * k

    @property
    def window(self) -> int:
        return self.pool["kernel"] if self.pool else 1

    @property
    def mac_cycles(self) -> int:
        """MACs el_front.v issues per sample (one per cycle): every tap of every conv output of every pooling
        window (a conv output in two overlapping windows is computed twice; one in none is not computed)."""
        return self.n_features * self.window ** 2 * self.taps

    @property
    def ideal_cycles(self) -> int:
        """The engine's MACs per sample: taps x conv output positions, one MAC unit."""
        co, ho, wo = self.conv["out_shape"]
        return co * ho * wo * self.taps

    def params(self, num_classes: int) -> dict[str, Any]:
        from .generate import HW_ACT_CODES, _fmt_params

        cv, pl = self.conv, self.pool
        c, h, w = cv["in_shape"]
        co, ho, wo = cv["out_shape"]
        _, hp, wp = (pl or cv)["out_shape"]
        pk = self.window
        p: dict[str, Any] = {
            "C": c, "H": h, "WD": w, "CO": co, "K": cv["kernel"], "S": cv["stride"], "PAD": cv["padding"],
            "HO": ho, "WO": wo, "POOL": POOL_CODES[pl["type"] if pl else None], "PK": pk,
            "PS": pl["stride"] if pl else 1, "PSH": (pk * pk).bit_length() - 1, "HP": hp, "WP": wp,
            **{f"A_{a.name}": int(a) for a in HW_ACT_CODES}, "ACT": int(act_code(cv["act_name"])),
        }
        p.update(_fmt_params("X", cv["input"], modes=False))
        p.update(_fmt_params("W", cv["weight"], modes=False))
        p.update(_fmt_params("B", cv["bias"], modes=False))
        p.update(_fmt_params("A", cv["accum"]))
        p.update(_fmt_params("Y", cv["act"]))
        p.update({"NCLS": num_classes, "CW": COUNTER_BITS,
                  **{name: f'"{MEM[m]}"' for name, m in (("W_INIT", "kernels"), ("B_INIT", "biases"),
                                                         ("T_INIT", "table"))}})
        return p

    def files(self, hexf) -> dict[str, str]:
        cv = self.conv
        out = {MEM["kernels"]: hexf(np.asarray(cv["W"]).ravel(), cv["weight"].width),
               MEM["biases"]: hexf(np.asarray(cv["b"]).ravel(), cv["bias"].width)}
        if cv["table"] is not None:
            out[MEM["table"]] = hexf(cv["table"], cv["act"].width)
        return out

    def meta(self) -> dict[str, Any]:
        from .generate import _spell

        cv = self.conv
        return {"layers": [{k: v for k, v in lay.items() if k in ("name", "type", "in_shape", "out_shape", "kernel",
                                                                   "stride", "padding", "act_name")}
                           for lay in (cv, self.pool) if lay],
                "formats": {t: _spell(cv[t]) for t in ("input", "weight", "bias", "accum", "act")},
                "n_pixels": self.n_pixels, "n_features": self.n_features, "taps": self.taps,
                "mac_cycles": self.mac_cycles, "ideal_cycles": self.ideal_cycles,
                "memories": {k: v for k, v in MEM.items() if k != "table" or cv["table"] is not None}}


def front_of(prog, first_input: FixedFormat) -> RtlFront | None:
    """The program's front end as el_front.v builds it (None for an MLP); ConfigError / FormatError, one line, for
    a front end it cannot build.  ``first_input``: the first linear layer's input format (the features')."""
    front = list(prog.front or [])
    if not front:
        return None
    types = [lay["type"] for lay in front]
    if types[0] != "conv2d" or len(front) > 2 or (len(front) == 2 and types[1] not in ("maxpool", "avgpool")):
        raise ConfigError(f"{prog.name}: the generated datapath's front end is one conv2d, optionally followed by "
                          f"one maxpool or avgpool (this network has {' - '.join(types)})")
    conv, pool = front[0], (front[1] if len(front) == 2 else None)
    where = f"layer {conv['name']}"
    if pool is not None and pool["type"] == "avgpool" and pool["kernel"] & (pool["kernel"] - 1):
        raise ConfigError(f"layer {pool['name']}: the generated datapath averages power-of-two windows only (a "
                          f"shift; kernel {pool['kernel']})")
    if pool is not None and pool.get("padding", 0):
        raise ConfigError(f"layer {pool['name']}: pooling with padding is not built")
    extents = [*conv["in_shape"], *conv["out_shape"], conv["kernel"]]
    if max(extents) >= MAX_EXTENT or conv["stride"] >= MAX_EXTENT:
        raise ConfigError(f"{where}: an extent of {max(extents)} is out of range (< {MAX_EXTENT})")
    if conv["accum"].width > 64:
        raise FormatError(f"{where}: accumulator {conv['accum']} wider than 64 bits")
    if conv["table"] is not None and conv["act"].frac < 0:
        raise FormatError(f"{where}: {conv['act_name']} output format {conv['act']} needs F >= 0")
    if act_code(conv["act_name"]) == ActCode.HARDTANH and conv["accum"].frac < 0:
        raise FormatError(f"{where}: hard-tanh needs an accumulator with F >= 0 (got {conv['accum']})")
    for t in ("weight", "bias"):
        if conv[t].width > 32:
            raise FormatError(f"{where}: {t} format wider than 32 bits")
    rf = RtlFront(conv=conv, pool=pool)
    out = rf.output
    if (out.width, out.frac, out.signed) != (first_input.width, first_input.frac, first_input.signed):
        raise FormatError(f"{where}: the front end's output format {out} differs from the first linear layer's "
                          f"input format {first_input}")
    return rf
