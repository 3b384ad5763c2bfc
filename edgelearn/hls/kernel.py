"""The on-chip learning kernel: an HLS C++ project (ap_fixed) that infers and learns one sample per call.

:func:`write_kernel_project` turns a :class:`~edgelearn.fixed.engine.FixedEngine` (its network, per-tensor formats,
rules, current weights, feedback matrices and LFSR states) into a Vitis/Vivado HLS project laid out like hls4ml's::

    OUT/
      firmware/
        <name>.cpp          top function: forward, prediction, error, hidden signals, feedback steps, updates (one sample)
        <name>.h            its declaration
        parameters.h        per-layer config structs: sizes, ap_fixed types of every tensor, update policies
        el_learn.h          the layer templates (dense, activate, output_error, hidden_delta, update, LFSR)
        el_codes.h          the activation and rule codes (edgelearn.program)
        tables.h            tanh / sigmoid tables (the engine's, entry for entry)
        feedback.h          feedback matrices B (stored mode) or their LFSR row states (lfsr mode)
        el_conv.h, front.h  a network with a frozen conv front end: its layer templates (conv2d, pools) and its
                            kernels, biases and activation tables as ROM constants (docs/arithmetic.md §15)
        el_feedback.h       a network with trained feedback (kp, ldfa, dldfa; docs/arithmetic.md §16): its signal
                            and feedback-step templates; B / Q / P are ports (state), typed in parameters.h
      <name>_test.cpp       testbench: reads tb_data, runs every sample, compares outputs and final weights
      tb_data/              tb_weights_init.dat, tb_input_features.dat, tb_labels.dat,
                            tb_output_predictions.dat, tb_weights_final.dat (expected, from the engine)
      build_prj.tcl         Vitis / Vivado HLS script (csim, synth, cosim, export options in build_opt.tcl)
      build_opt.tcl
      build_csim.sh         g++ C-simulation without Xilinx tools
      project.json          network, formats, rules and what the files hold
      README.md

Every source, script and the README are rendered from the jinja2 templates of ``edgelearn/hls_templates``
(``*.j2``, and ``el_learn.h``, the layer templates, rendered with the lane count only) with the kernel's view of the
engine's lowered program: the word types are derived here, the templates only lay the text out.

The weights and biases are ports of the top function (BRAM interfaces, updated in place), so the host (or the
testbench) loads any trained state; the generators of the stochastic rounding are ports too: one LFSR state per
layer (``rnd_state``, read at the call's start and written back at its end), or under ``rng: neuron``
(docs/arithmetic.md §9a) one xorshift32 state per output neuron (``ns{k}[n_out]``, a memory beside the biases, each
state stepped in place by its lane).  Like the weights they live in memory the host owns, so they survive calls and
a reset of the kernel does not rewind them; the host writes their start states once (the engine's, from
``weights.npz``) before the first call, as it loads the weights.
``interface`` (:data:`INTERFACES`) chooses the port protocols: ``ap_memory`` (raw handshake and memories), ``axi``
(``s_axilite`` control and scalars, ``m_axi`` sample / outputs / LFSR states, weights -- and the per-neuron
generator states -- in BRAM behind AXI BRAM controllers), ``axis`` (as ``axi``, the sample as an AXI4-Stream).
``lanes`` P processes P output neurons per cycle in the forward MAC, signal and update loops (pragmas only: the C
code and its draw order are the same for every P; under ``rng: neuron`` lane l steps only its own columns'
generators, so its draws need no chain across lanes).
:func:`cycle_model` gives the expected cycles per sample from the program's schedule.

Bit-exactness: every quantity has the engine's format (``FixedFormat.to_hls()``), every operation is an exact
ap_fixed expression assigned to that type (docs/arithmetic.md), and the order of operations and of the LFSR draws
is the engine's.  :class:`KernelProject` compiles the C-simulation with g++ and runs it; the tests compare it
with :meth:`FixedEngine.step` bit for bit.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import numpy as np

from ..errors import ConfigError, DataError, FormatError
from ..fixed.activations import SOFTMAX_FRAC
from ..fixed.formats import FixedFormat
from ..fixed.lower import lower, raise_unsupported, trace
from ..fixed.xorshift import XS_A, XS_B, XS_C
from ..program import (LEARNED_FEEDBACK_RULES, OJA_GAIN, OJA_TARGET, SUPPORT, ActCode, LayerProgram, Program,
                       RuleCode, StepOp, fmt_max, signed_bits)
from ..templating import environment
from .toolchain import HLSBuildError, MissingDependencyError, ap_types_dir, compile_cached

TEMPLATES = Path(str(resources.files("edgelearn") / "hls_templates"))  # package data, also in a wheel

#: hidden-layer rules the kernel implements (the output layer always learns from its error)
KERNEL_RULES = SUPPORT["hls"].hidden_rules

from . import DEFAULT_PART  # noqa: E402  (one default part for both HLS projects)
from . import KERNEL_INTERFACES as INTERFACES  # noqa: E402

__all__ = ["KERNEL_RULES", "INTERFACES", "KernelLayer", "KernelSpec", "KernelProject", "KernelRun",
           "write_kernel_project", "exact_decimal", "cycle_model"]


# ----------------------------------------------------------------------------------------------------------------
# helpers


def exact_decimal(raw: int, frac: int) -> str:
    """The exact decimal spelling of ``raw * 2**-frac`` (a dyadic rational has a finite decimal expansion)."""
    raw = int(raw)
    if frac <= 0:
        return str(raw << -frac)
    neg = raw < 0
    q = abs(raw) * 5**frac  # raw / 2^F = raw * 5^F / 10^F
    s = str(q).rjust(frac + 1, "0")
    ip, fp = s[:-frac], s[-frac:].rstrip("0")
    out = ip + ("." + fp if fp else ".0")
    return "-" + out if neg and q else out



def _fixed_t(width: int, frac: int, signed: bool = True, q: str | None = None, o: str | None = None) -> str:
    base = f"ap_{'' if signed else 'u'}fixed<{width},{width - frac}"
    if q is None and o is None:
        return base + ">"
    return base + f",AP_{q or 'TRN'},AP_{o or 'WRAP'}>"


def _raw_t(f: FixedFormat) -> str:
    return f"ap_{'' if f.signed else 'u'}int<{f.width}>"


# ----------------------------------------------------------------------------------------------------------------
# what the kernel implements: the engine's lowered program (edgelearn.program), checked against the kernel's support

#: a layer of the kernel is a layer of the program
KernelLayer = LayerProgram


class KernelSpec:
    """The learning kernel's view of an engine's :class:`~edgelearn.program.Program` (its layers, schedule and
    state), checked for what the kernel implements; every attribute not defined here is the program's."""

    def __init__(self, program: Program):
        self.program = program

    def __getattr__(self, name: str):
        if name == "program":  # not set yet (copy / unpickle)
            raise AttributeError(name)
        return getattr(self.program, name)

    @classmethod
    def from_engine(cls, eng) -> "KernelSpec":
        return cls.from_program(lower(eng))

    @classmethod
    def from_program(cls, prog: Program) -> "KernelSpec":
        raise_unsupported("hls", prog)
        for lay in prog.layers:
            if lay.has_table and lay.act_fmt.frac < 0:
                raise FormatError(f"layer {lay.name}: {lay.act} output format {lay.act_fmt} needs F >= 0")
            rom = "activation" if lay.has_table else "exp" if lay.is_output and prog.loss == "ce" else None
            if rom and lay.table.size != 1 << prog.table_bits:
                raise FormatError(f"layer {lay.name}: {rom} table has {lay.table.size} entries, "
                                  f"expected 2**{prog.table_bits}")
            if lay.direct and lay.B.shape != (prog.num_classes, lay.n_out):
                raise FormatError(f"layer {lay.name}: feedback matrix has shape {lay.B.shape}, "
                                  f"expected {(prog.num_classes, lay.n_out)}")
        if prog.output.act_fmt.frac < 0:
            raise FormatError(f"output activation format {prog.output.act_fmt} needs F >= 0 (the target 1.0)")
        _check_front(prog)
        _check_feedback(prog)
        if prog.num_classes < 2:
            raise ConfigError("the learning kernel needs at least two classes")
        return cls(prog)

    @property
    def n_input(self) -> int:
        """Inputs of one call: the image of a network with a front end, else the first linear layer's inputs."""
        return int(np.prod(self.front[0]["in_shape"])) if self.front else self.sizes[0]

    @property
    def input_format(self) -> FixedFormat:
        return self.front[0]["input"] if self.front else self.layers[0].input

    @property
    def neuron_rng(self) -> bool:
        """rng: neuron (docs/arithmetic.md §9a): per-neuron xorshift32 states instead of one LFSR per layer."""
        return self.program.rng == "neuron"

    def rng_state(self):
        """The stochastic-rounding generators' state the program starts from: the per-layer LFSR states (rng:
        layer), or per layer the (n_out,) xorshift32 states (rng: neuron)."""
        return self.neuron_state if self.neuron_rng else self.rnd_state

    # ---- trained feedback (docs/arithmetic.md §16): kp's B, ldfa's / dldfa's Q and P, state beside the weights
    def fb_ports(self, k: int) -> list[dict[str, Any]]:
        """Layer k's feedback ports: name, rows, cols, C++ word type (fbconfig{k}::q_t / p_t), ``banked`` (the column
        loops over it run the lanes: B's and P's, not Q's rank-r rows); [] without."""
        lay = self.layers[k]
        kind = fb_state(lay)
        if kind is None:
            return []
        nq, r, m = fb_dims(self, lay)
        if kind == "B":
            return [{"name": f"B{k}", "rows": nq, "cols": m, "type": f"fbconfig{k}::q_t", "banked": True}]
        return [{"name": f"Q{k}", "rows": nq, "cols": r, "type": f"fbconfig{k}::q_t", "banked": False},
                {"name": f"P{k}", "rows": r, "cols": m, "type": f"fbconfig{k}::p_t", "banked": True}]

    def all_fb_ports(self) -> list[dict[str, Any]]:
        return [fp for lay in self.layers for fp in self.fb_ports(lay.index)]

    def fb_values(self, packed=None) -> dict[str, np.ndarray]:
        """The feedback ports' raw values (name -> (rows, cols)) from per-layer packed matrices (``eng.B``), by
        default the program's start state."""
        packed = [lay.B for lay in self.layers] if packed is None else packed
        out: dict[str, np.ndarray] = {}
        for lay in self.layers:
            out.update(fb_arrays(self, lay, packed[lay.index]))
        return out

    # ---- state as flat lines (tb_data format) -------------------------------------------------------------------
    def state_lines(self, W=None, b=None, rnd=None, fb=None) -> list[str]:
        """W{k}, b{k}, the generator states (``rnd``, as :meth:`rng_state` returns them) and the trained feedback
        (``fb``, as :meth:`fb_values` returns it) as tb_data lines."""
        W = self.W if W is None else W
        b = self.b if b is None else b
        rnd = self.rng_state() if rnd is None else rnd
        lines = []
        for k in range(len(self.layers)):
            lines.append(f"W{k} {W[k].size} " + " ".join(map(str, np.asarray(W[k], dtype=np.int64).ravel())))
            lines.append(f"b{k} {b[k].size} " + " ".join(map(str, np.asarray(b[k], dtype=np.int64).ravel())))
        words = lambda v: " ".join(str(int(x) & 0xFFFFFFFF) for x in np.asarray(v).ravel())
        if self.neuron_rng:
            lines += [f"ns{k} {np.asarray(v).size} {words(v)}" for k, v in enumerate(rnd)]
        else:
            lines.append(f"rnd {len(rnd)} {words(rnd)}")
        fb = self.fb_values() if fb is None else fb
        lines += [f"{name} {v.size} " + " ".join(map(str, np.asarray(v, dtype=np.int64).ravel()))
                  for name, v in fb.items()]
        return lines


def _check_front(prog: Program) -> None:
    """Refuse (one line) a front end whose words do not chain as the kernel passes them: every layer's input type
    is the previous layer's output type, and the last output type is the first linear layer's input type."""
    prev = None
    for f in prog.front:
        where = f"layer {f['name']}"
        if prev is not None and f["input"].to_hls() != prev.to_hls():
            raise FormatError(f"{where}: input format {f['input']} differs from the previous layer's output {prev}")
        if f["type"] == "conv2d" and f["table"] is not None:
            if f["act"].frac < 0:
                raise FormatError(f"{where}: {f['act_name']} output format {f['act']} needs F >= 0")
            if f["table"].size != 1 << prog.table_bits:
                raise FormatError(f"{where}: activation table has {f['table'].size} entries, "
                                  f"expected 2**{prog.table_bits}")
        prev = f["act"]
    if prev is not None and prev.to_hls() != prog.layers[0].input.to_hls():
        raise FormatError(f"layer {prog.layers[0].name}: input format {prog.layers[0].input} differs from the front "
                          f"end's output {prev}")


# ----------------------------------------------------------------------------------------------------------------
# C++ generation: the templates in edgelearn/hls_templates, rendered from the kernel's view of the program; the
# word types are derived here (the facts), the templates only lay them out


def _delta_type(lay: KernelLayer, u_max: int, u_frac: int, dst: FixedFormat, lr_shift: int | None = None) -> str:
    """Increment rounded to the stored LSB (F = F_dst) with the stored format's rounding, wide enough that it never
    overflows (|Delta| <= ceil(u_max * 2^-s) + 1); ``lr_shift``: the layer's unless given (P's Oja rate)."""
    s = lay.shift_to(u_frac, dst) if lr_shift is None else u_frac + lr_shift - dst.frac
    dmax = u_max << (-s) if s <= 0 else (u_max >> s) + 2
    q = "TRN" if dst.rounding == "STOCH" else dst.rounding
    return _fixed_t(max(signed_bits(dmax) + 1, 2), dst.frac, True, q, "WRAP")


def _upd_policy(name: str, lay: KernelLayer, dst: FixedFormat, u_max: int, u_frac: int,
                lr_shift: int | None = None, upd: Any = "layer") -> dict[str, Any]:
    """What ``el::update`` needs to update the words of ``dst`` (weights or biases) of ``lay``; ``lr_shift`` and
    ``upd`` (the update format) default to the layer's."""
    return {"name": name, "dst": dst, "delta_t": _delta_type(lay, u_max, u_frac, dst, lr_shift),
            "lr_shift": lay.lr_shift if lr_shift is None else lr_shift, "upd": lay.update if upd == "layer" else upd}


def _layer_types(ks: KernelSpec, lay: KernelLayer) -> dict[str, str]:
    """The C++ type of every word of ``lay``, in the order config{k} declares them."""
    fb, out_err = lay.feedback, ks.output.error
    if lay.code == RuleCode.DFA:  # sum over the classes of B * e
        psum_t = _fixed_t(signed_bits(ks.num_classes * fmt_max(fb) * fmt_max(out_err)) + 1, fb.frac + out_err.frac)
    else:  # sum over the classes of +-B
        psum_t = _fixed_t(signed_bits(ks.num_classes * fmt_max(fb)) + 1, fb.frac)
    if lay.mult_raw is not None:
        mult_t, dm_t = lay.mult_fmt.to_hls(), _fixed_t(lay.error.width + lay.mult_fmt.width + 1,
                                                        lay.error.frac + lay.mult_fmt.frac)
    else:
        mult_t, dm_t = "ap_ufixed<1,1>", lay.error.to_hls()
    return {
        "in_t": lay.input.to_hls(), "w_t": lay.weight.to_hls(), "b_t": lay.bias.to_hls(),
        "acc_t": lay.accum.to_hls(), "act_t": lay.act_fmt.to_hls(),
        "g_t": lay.deriv.to_hls() if (lay.has_table and lay.need_g) else "ap_uint<1>",
        "err_t": lay.error.to_hls(), "fb_t": fb.to_hls(),
        "idx_t": f"ap_fixed<{ks.table_bits},{ks.range_bits + 1},AP_TRN,AP_SAT>",
        "psum_t": psum_t, "mult_t": mult_t, "dm_t": dm_t,
    }


def softmax_words(prog: Program) -> dict[str, int] | None:
    """Loss ce: the word widths of the output error's softmax (docs/arithmetic.md §11a), None under another loss.
    ``p_frac`` F = max(F_e, 0); ``sum`` holds S <= C * 2^SOFTMAX_FRAC; ``num`` holds 2 E 2^F + S and 2S."""
    if prog.loss != "ce":
        return None
    C, one = prog.num_classes, 1 << SOFTMAX_FRAC
    F = max(prog.output.error.frac, 0)
    return {"p_frac": F, "exp": SOFTMAX_FRAC + 1, "sum": (C * one).bit_length(),
            "num": max((one << (F + 1)) + C * one, 2 * C * one).bit_length()}


def _softmax_config(ks: KernelSpec, lay: KernelLayer) -> dict[str, Any] | None:
    """What ``el::output_error_ce`` needs in config{k} (the output layer under loss ce), else None."""
    sw = softmax_words(ks.program)
    if not lay.is_output or sw is None:
        return None
    F = sw["p_frac"]
    return {"exp_size": 1 << ks.table_bits, "p_frac": F, "types": {
        "exp_t": f"ap_uint<{sw['exp']}>",
        "sm_idx_t": f"ap_ufixed<{ks.table_bits},{ks.range_bits + 1},AP_TRN,AP_SAT>",
        "sm_sum_t": f"ap_uint<{sw['sum']}>", "sm_num_t": f"ap_uint<{sw['num']}>",
        "p_t": f"ap_ufixed<{F + 1},1>"}}


def _layer_config(ks: KernelSpec, lay: KernelLayer) -> dict[str, Any]:
    """Everything config{k} of parameters.h says about ``lay`` beyond the program's own fields."""
    k = lay.index
    return {
        "lay": lay, "types": _layer_types(ks, lay), "softmax": _softmax_config(ks, lay),
        "wupd": _upd_policy(f"config{k}_wupd", lay, lay.weight, lay.weight_inc_max, lay.dm_frac + lay.input.frac),
        "bupd": _upd_policy(f"config{k}_bupd", lay, lay.bias, lay.bias_inc_max, lay.dm_frac),
        "table_size": (1 << ks.table_bits) if lay.has_table else 1,
        "mult_value": exact_decimal(lay.mult_raw if lay.mult_raw is not None else 1, lay.mult_frac),
    }


def _front_config(ks: KernelSpec, j: int, f: dict[str, Any]) -> dict[str, Any]:
    """What front{j} of parameters.h says about front-end layer ``j`` (docs/arithmetic.md §15): its geometry and the
    C++ type of every word; a pool's exact window sum and, for an average, the mean's raw with two guard bits."""
    c, h, w = f["in_shape"]
    co, ho, wo = f["out_shape"]
    geo = {"c_in": c, "h_in": h, "w_in": w, "c_out": co, "h_out": ho, "w_out": wo, "k": f["kernel"],
           "stride": f["stride"], "pad": f["padding"], "n_in": c * h * w, "size_out": co * ho * wo}
    t = f["act"]
    if f["type"] == "conv2d":
        types = {"in_t": f["input"].to_hls(), "w_t": f["weight"].to_hls(), "b_t": f["bias"].to_hls(),
                 "acc_t": f["accum"].to_hls(), "act_t": t.to_hls(), "w_raw_t": _raw_t(f["weight"]),
                 "b_raw_t": _raw_t(f["bias"]), "act_raw_t": _raw_t(t), "g_t": "ap_uint<1>",
                 "idx_t": f"ap_fixed<{ks.table_bits},{ks.range_bits + 1},AP_TRN,AP_SAT>"}
        table_size = (1 << ks.table_bits) if f["table"] is not None else 1
        return {"j": j, "f": f, "geo": geo, "types": types, "act_code": ActCode[f["act_name"].upper()],
                "table_size": table_size}
    sw = signed_bits(f["kernel"] ** 2 * fmt_max(t)) + 1
    types = {"in_t": t.to_hls(), "act_t": t.to_hls(), "sum_t": _fixed_t(sw, t.frac),
             "guard_t": _fixed_t(sw + 2, t.frac + 2)}
    return {"j": j, "f": f, "geo": geo, "types": types}


def front_configs(ks: KernelSpec) -> list[dict[str, Any]]:
    """The front end's layers as parameters.h, front.h and the top function render them (empty for an MLP)."""
    return [_front_config(ks, j, f) for j, f in enumerate(ks.front)]


# ----------------------------------------------------------------------------------------------------------------
# trained feedback (docs/arithmetic.md §16): kp's B, the factors Q and P of ldfa / dldfa.  They are state, like the
# weights: ports of the top function (memories the host loads, surviving calls), one fbconfig{k} per layer in
# parameters.h and the functions of el_feedback.h


def fb_state(lay: KernelLayer) -> str | None:
    """The feedback words layer ``lay`` keeps as state: "B" (kp's B, n_in x n_out), "QP" (ldfa's Q (n_in x r) and P
    (r x n_out); dldfa's Q (n_out x r) and P (r x C)), or None."""
    if lay.fb_shape is None or lay.rule not in LEARNED_FEEDBACK_RULES:
        return None
    return "B" if lay.rule == "kp" else "QP"


def fb_dims(ks: "KernelSpec", lay: KernelLayer) -> tuple[int, int, int]:
    """(rows of Q or B, rank r (0 for kp), columns of P or B)."""
    if fb_state(lay) == "B":
        return lay.n_in, 0, lay.n_out
    if lay.rule == "dldfa":
        return lay.n_out, lay.ldfa_rank, ks.num_classes
    return lay.n_in, lay.ldfa_rank, lay.n_out


def fb_arrays(ks: "KernelSpec", lay: KernelLayer, packed) -> dict[str, np.ndarray]:
    """Layer ``lay``'s feedback ports (name -> raw (rows, cols)) from the engine's packed matrix (``eng.B[k]``: Q over
    P, lower.py); {} for a layer without trained feedback."""
    kind = fb_state(lay)
    if kind is None:
        return {}
    B = np.asarray(packed, dtype=np.int64)
    k = lay.index
    if kind == "B":
        return {f"B{k}": B.copy()}
    nq, r, m = fb_dims(ks, lay)
    return {f"Q{k}": B[:nq, :r].copy(), f"P{k}": B[nq:nq + r, :m].copy()}


def _p_format(lay: KernelLayer) -> FixedFormat:
    """P's words as the products read them: a frozen P with ``ldfa_p_shift`` extra fractional bits (a wiring
    shift); a P that learns has none."""
    return lay.fb_p.with_(integer=lay.fb_p.integer - lay.ldfa_p_shift)


def _check_feedback(prog: Program) -> None:
    """Refuse (one line) what the kernel's trained-feedback path does not run: a hidden kp / ldfa layer learns from
    the layer above's feedback (kp's B or ldfa's factors), never from its transposed weights."""
    for lay in prog.layers[:-1]:
        if lay.code not in (RuleCode.KP, RuleCode.LDFA):
            continue
        up = prog.layers[lay.index + 1]
        if up.rule not in ("kp", "ldfa") or fb_state(up) is None:
            raise ConfigError(f"layer {lay.name}: rule {lay.rule} learns through the layer above's feedback, and layer "
                              f"{up.name} (rule {up.rule}) has none the HLS learning kernel keeps (kp's B or ldfa's "
                              f"factors)")
    for lay in prog.layers:
        kind = fb_state(lay)
        if kind is None:
            continue
        for f in ((lay.error, prog.output.error) if kind == "QP" else (lay.error,)):
            if not f.signed:
                raise FormatError(f"layer {lay.name}: trained feedback needs a signed error format, got {f}")
        for f in (lay.fb_q, lay.fb_p if kind == "QP" else None):
            if f is not None and f.rounding == "STOCH":
                raise FormatError(f"layer {lay.name}: trained feedback words cannot round STOCH ({f})")


def _fixed_sum(bound: int, frac: int) -> str:
    """An exact sum of raws up to ``bound`` in magnitude, ``frac`` fractional bits (one guard bit)."""
    return _fixed_t(signed_bits(bound) + 1, frac)


def _fb_config(ks: "KernelSpec", lay: KernelLayer) -> dict[str, Any]:
    """What fbconfig{k} of parameters.h says about layer ``lay``'s trained feedback: sizes, which words learn, the
    C++ type of every word and exact sum, and the update policies of Q (or kp's B) and P."""
    k = lay.index
    kind = fb_state(lay)
    nq, r, m = fb_dims(ks, lay)
    q, e = lay.fb_q, lay.error
    if kind == "B":
        # the signal of the layer below: sum over the n_out columns of B * delta (exact); B gets W's increment
        types = {"q_t": q.to_hls(), "u_t": e.to_hls(), "h_t": lay.input.to_hls(),
                 "psum_t": _fixed_sum(m * fmt_max(q) * fmt_max(e), q.frac + e.frac)}
        qupd = _upd_policy(f"fbconfig{k}_qupd", lay, q, fmt_max(e) * fmt_max(lay.input), e.frac + lay.input.frac,
                           upd=None)
        return {"lay": lay, "kind": kind, "nq": nq, "r": 1, "m": m, "types": types, "qupd": qupd, "pupd": None,
                "learn_q": True, "learn_p": False, "oja_target": False, "src_w": e.width, "s_frac": 1}
    p = _p_format(lay)
    # u = P src: ldfa's source is the layer's delta, dldfa's the output error; u takes the source's format
    src = ks.output.error if lay.rule == "dldfa" else e
    h = lay.act_fmt if lay.rule == "dldfa" else lay.input  # the activation Q's increment reads
    sf = src.width + 1  # s = the source read with fs <= W_src + 1 fractional bits: |s| < 1/2
    f_rho = max(p.frac + e.frac, sf)
    rho_max = ((1 << (sf - 1)) << (f_rho - sf)) + ((r * fmt_max(p) * fmt_max(e)) << (f_rho - p.frac - e.frac))
    types = {"q_t": q.to_hls(), "p_t": p.to_hls(), "u_t": src.to_hls(), "e_t": e.to_hls(), "h_t": h.to_hls(),
             "uacc_t": _fixed_sum(m * fmt_max(p) * fmt_max(src), p.frac + src.frac),
             "psum_t": _fixed_sum(r * fmt_max(q) * fmt_max(src), q.frac + src.frac),
             "s_t": f"ap_fixed<{sf},0>", "sraw_t": f"ap_int<{sf}>",
             "aacc_t": _fixed_sum(m * fmt_max(p) * (1 << (sf - 1)), p.frac + sf),
             "racc_t": _fixed_sum(rho_max, f_rho)}
    qupd = _upd_policy(f"fbconfig{k}_qupd", lay, q, fmt_max(src) * fmt_max(h), src.frac + h.frac, upd=None)
    pupd = _upd_policy(f"fbconfig{k}_pupd", lay, p, fmt_max(e) ** 2, 2 * e.frac, lr_shift=lay.lr_shift - OJA_GAIN,
                       upd=None)
    return {"lay": lay, "kind": kind, "nq": nq, "r": r, "m": m, "types": types, "qupd": qupd, "pupd": pupd,
            "learn_q": bool(lay.fb_learn & 1), "learn_p": bool(lay.fb_learn & 2),
            "oja_target": lay.oja_src == OJA_TARGET, "src_w": src.width, "s_frac": sf}


def fb_configs(ks: "KernelSpec") -> list[dict[str, Any]]:
    """The layers with trained feedback as parameters.h and the top function render them (empty without)."""
    return [_fb_config(ks, lay) for lay in ks.layers if fb_state(lay) is not None]


def render_fb_layers(lanes: int = 1) -> str:
    """el_feedback.h, the trained-feedback templates (only written for a network that has some)."""
    return render("el_feedback.h", lanes=lanes)


def _c_array(values, per_line: int = 16) -> str:
    """A C initializer of integers, ``per_line`` a line."""
    vals = [str(int(v)) for v in np.asarray(values).ravel()]
    rows = [", ".join(vals[i:i + per_line]) for i in range(0, len(vals), per_line)]
    return "{\n    " + ",\n    ".join(rows) + "}"


def _c_matrix(M: np.ndarray) -> str:
    return "{\n" + ",\n".join(_c_array(row) for row in M) + "}"


def _environment() -> jinja2.Environment:
    env = environment(TEMPLATES)
    env.filters.update(hls=lambda f: f.to_hls(), raw_t=_raw_t, cbool=lambda v: "true" if v else "false",
                       hex32=lambda v: f"{int(v):#010x}", c_array=_c_array, c_matrix=_c_matrix)
    env.globals.update(ActCode=ActCode, RuleCode=RuleCode, StepOp=StepOp, XS=(XS_A, XS_B, XS_C))
    return env


_ENV = _environment()


def render(template: str, **context) -> str:
    """Render ``edgelearn/hls_templates/<template>``."""
    return _ENV.get_template(template).render(**context)


def render_codes() -> str:
    """el_codes.h: the activation and rule codes of edgelearn.program (one numbering for every back end)."""
    return render("el_codes.h.j2")


def render_parameters(ks: KernelSpec, project: str) -> str:
    return render("parameters.h.j2", ks=ks, project=project, configs=[_layer_config(ks, lay) for lay in ks.layers],
                  fronts=front_configs(ks), fbs=fb_configs(ks))


def render_front(ks: KernelSpec) -> str:
    """front.h: the frozen front end's kernels, biases and activation ROMs (constants of the design)."""
    return render("front.h.j2", ks=ks, fronts=front_configs(ks))


def render_tables(ks: KernelSpec) -> str:
    return render("tables.h.j2", ks=ks)


def render_feedback(ks: KernelSpec) -> str:
    return render("feedback.h.j2", ks=ks)


def render_header(ks: KernelSpec, project: str) -> str:
    return render("kernel.h.j2", ks=ks, project=project)


def render_top(ks: KernelSpec, project: str, lanes: int = 1, interface: str = INTERFACES[0]) -> str:
    dual = " storage_type=ram_2p" if dual_port(lanes, interface) and interface == "ap_memory" else ""
    return render("kernel.cpp.j2", ks=ks, project=project, lanes=lanes, interface=interface, dual=dual)


def render_testbench(ks: KernelSpec, project: str) -> str:
    return render("kernel_test.cpp.j2", ks=ks, project=project)


def render_conv() -> str:
    """el_conv.h, the front end's layer templates (docs/arithmetic.md §15)."""
    return render("el_conv.h")


def render_layers(lanes: int = 1) -> str:
    """el_learn.h, the layer templates, for ``lanes`` output neurons per cycle (1: the one-lane text)."""
    return render("el_learn.h", lanes=lanes)


#: the most lanes the kernel is generated with (a layer whose width is not a multiple of the lane count runs the
#: remaining neurons in a row's last cycle)
MAX_LANES = 256


def dual_port(lanes: int, interface: str) -> bool:
    """Whether the weight and bias ports are declared dual-port (a read and a write port: the update's
    read-modify-write at II = 1).  The one-lane ap_memory kernel leaves it to Vitis HLS, which takes a dual-port RAM
    where that lowers the II (UG1399, "Memory Property on Interface")."""
    return lanes > 1 or interface != "ap_memory"


def check_kernel_options(lanes, interface) -> None:
    if isinstance(lanes, bool) or not isinstance(lanes, (int, np.integer)) or not 1 <= lanes <= MAX_LANES:
        raise ConfigError(f"lanes must be an integer in 1..{MAX_LANES}, got {lanes!r}")
    if interface not in INTERFACES:
        raise ConfigError(f"interface must be one of {', '.join(INTERFACES)}, got {interface!r}")


# ----------------------------------------------------------------------------------------------------------------
# cycle model: the program's schedule, loop by loop, as the kernel's pipelined loops run it (no synthesis report)

#: pipeline depth estimates (cycles from the first read to the last write of one iteration) of the kernel's loops;
#: a pipelined loop of n iterations at II takes ceil(n / P) * II + depth cycles
DEPTH = {"copy": 2, "mac": 4, "act": 4, "fb": 2, "delta": 3, "update": 6, "error": 3, "pool": 3}

CYCLE_MODEL = ("cycles per sample = the sum, over the program's schedule (Program.steps), of each step's pipelined "
               "loops: ceil(trip count / lanes) * II + a pipeline-depth estimate per loop start (DEPTH); the MAC and "
               "update loops restart per non-zero input row (a zero row costs 1 cycle: read and test); II = 1, the "
               "update's read-modify-write included (dual-port weight memories; rng: neuron: the generator states "
               "likewise, one step per lane and assignment); the activation and argmax run one "
               "neuron per cycle; DFA/sDFA count every class (e_c != 0); loss ce adds the softmax, a class per "
               "cycle, and its divider's depth (a stage per numerator bit); a frozen conv front end adds, per output "
               "position, a cycle for the bias, one per kernel tap (padding taps included) and the MAC and activation "
               "depths, a "
               "pool one cycle per window word and its depth (the front end runs one position at a time, whatever "
               "the lanes); trained feedback (kp, ldfa, dldfa) adds its signal's loops (u = P e, a rank-r row per "
               "cycle, or kp's B a row at a time) and its feedback step (B or Q rows per non-zero input, P's "
               "normalisation, Oja's two products and its r update rows). Ignored: the function-call handshakes, "
               "the clock the lanes reach, memory stalls of the AXI ports beyond one burst of the sample. A model, "
               "not a synthesis report.")


def cycle_model(prog: Program, lanes: int = 1, interface: str = INTERFACES[0], nnz=None,
                clock_period: float = 5.0) -> dict[str, Any]:
    """Expected cycles of one call of the kernel (learning and inference) from ``prog``'s schedule.

    ``nnz``: per layer, the (mean) number of non-zero inputs; None: every input non-zero (the worst case)."""
    check_kernel_options(lanes, interface)
    L = len(prog.layers)
    nz = [float(lay.n_in) for lay in prog.layers] if nnz is None else [float(v) for v in nnz]
    C = prog.num_classes

    def loop(n, depth):
        return -(-int(n) // lanes) + DEPTH[depth]

    def rows(lay, depth):  # a row loop over the inputs, the inner loop pipelined (II = 1), zero rows skipped
        k = lay.index
        return nz[k] * (-(-lay.n_out // lanes) + DEPTH[depth]) + (lay.n_in - nz[k])

    def fb_row(lay):
        return loop(lay.n_out, "fb")

    steps = []
    for j, f in enumerate(prog.front):  # the frozen front end, before the schedule (inference and learning alike)
        co, ho, wo = f["out_shape"]
        if f["type"] == "conv2d":
            per = 1 + f["in_shape"][0] * f["kernel"] ** 2 + DEPTH["mac"] + DEPTH["act"]
        else:
            per = f["kernel"] ** 2 + DEPTH["pool"]
        steps.append({"step": f"front({j}) {f['type']}", "cycles": co * ho * wo * per, "learning": False})
    for st in prog.steps:
        k = st.layer
        lay = prog.layers[k] if k >= 0 else None
        if st.op == StepOp.FORWARD:
            c = loop(lay.n_out, "copy") + rows(lay, "mac") + loop(lay.n_out, "copy") \
                + lay.n_out + DEPTH["act"]
        elif st.op == StepOp.HIDDEN_SIGNAL and lay.rule in LEARNED_FEEDBACK_RULES:
            c = _fb_signal_cycles(prog, lay, loop)
        elif st.op == StepOp.FEEDBACK:
            c = _fb_learn_cycles(prog, lay, nz, loop, rows)
        elif st.op in (StepOp.INJECT_DRTP, StepOp.HIDDEN_SIGNAL):
            if lay.code == RuleCode.DRTP:
                c = fb_row(lay) + loop(lay.n_out, "delta")
            else:
                c = loop(lay.n_out, "copy") + C * (fb_row(lay) + loop(lay.n_out, "delta") + 1) \
                    + loop(lay.n_out, "delta")
        elif st.op == StepOp.PREDICT:
            c = 2 * C + 2
        elif st.op == StepOp.OUTPUT_ERROR:
            sw = softmax_words(prog)
            # ce: the max, the exp reads and their sum, then one divider (a stage per numerator bit), a class a cycle
            c = DEPTH["error"] if sw is None else 3 * C + DEPTH["copy"] + DEPTH["fb"] + sw["num"]
        else:  # UPDATE
            # II = 1: dual-port weight memories, declared (lanes, AXI) or chosen by the tool (one-lane ap_memory)
            c = loop(lay.n_out, "delta") + rows(lay, "update") + loop(lay.n_out, "update")
        steps.append({"step": str(st), "cycles": round(c, 1), "learning": st.op in
                      (StepOp.INJECT_DRTP, StepOp.HIDDEN_SIGNAL, StepOp.OUTPUT_ERROR, StepOp.FEEDBACK,
                       StepOp.UPDATE)})
    # the layers' LFSR states read and written back (the per-neuron generators of rng: neuron stay in their memories,
    # stepped in place by the update), the sample read over AXI
    n_input = int(np.prod(prog.front[0]["in_shape"])) if prog.front else prog.sizes[0]
    io = (0 if prog.rng == "neuron" else 2 * L) + ((n_input + DEPTH["copy"]) if interface != "ap_memory" else 0)
    learn = io + sum(s["cycles"] for s in steps)
    infer = learn - sum(s["cycles"] for s in steps if s["learning"])
    mhz = 1000.0 / clock_period
    return {"lanes": int(lanes), "interface": interface, "clock_mhz": round(mhz, 3),
            "nonzero_inputs": [round(v, 2) for v in nz], "steps": steps, "io_cycles": io,
            "cycles_per_sample": round(learn), "inference_cycles_per_sample": round(infer),
            "samples_per_s": round(mhz * 1e6 / learn, 1), "inference_samples_per_s": round(mhz * 1e6 / infer, 1)}


def _fb_signal_cycles(prog: Program, lay: KernelLayer, loop) -> float:
    """A hidden kp / ldfa / dldfa layer's signal (el_feedback.h): through low-rank factors, u = P src (r pipelined
    rows of m) then one output a cycle (the rank-r sum unrolled); through kp's B, a pipelined row per output."""
    fb = lay if lay.rule == "dldfa" else prog.layers[lay.index + 1]
    nq, r, m = fb_dims(prog, fb)
    if fb_state(fb) == "B":
        return lay.n_out * loop(m, "mac")
    return r * (m + DEPTH["mac"]) + lay.n_out + DEPTH["delta"]


def _fb_learn_cycles(prog: Program, lay: KernelLayer, nz, loop, rows) -> float:
    """A feedback step (el_feedback.h): kp's B as W's update; Q's u and rows per non-zero activation (ldfa: the
    input, dldfa: the output), then P's Oja step: the source's maximum, the shift, a = P s, rho, r update rows."""
    nq, r, m = fb_dims(prog, lay)
    if fb_state(lay) == "B":
        return rows(lay, "update")
    c = 0.0
    if lay.fb_learn & 1:
        nzh = nz[lay.index + 1] if lay.rule == "dldfa" else nz[lay.index]
        c += r * (m + DEPTH["mac"]) + nzh * (r + DEPTH["update"]) + (nq - nzh)
    if lay.fb_learn & 2:
        c += 2 * (m + DEPTH["copy"]) + 1 + r * (m + DEPTH["mac"]) + m + DEPTH["delta"] + r * loop(m, "update")
    return c


# ----------------------------------------------------------------------------------------------------------------
# project


@dataclass
class KernelRun:
    """Result of one C-simulation run."""

    outputs: np.ndarray  # (N, C) raw output pre-activations, before each sample's update
    preds: np.ndarray  # (N,)
    W: list[np.ndarray]
    b: list[np.ndarray]
    rnd_state: np.ndarray | list[np.ndarray]  # per-layer LFSR states; rng: neuron: per layer the neuron states
    output_mismatch_bits: int | None
    state_mismatch_bits: int | None
    seconds: float
    #: a network with a front end: the front end's mismatching bits against tb_front_out.dat (None: not compared)
    #: and its raw output per sample (N, N_FEATURES), as the testbench's separate call computed them
    front_mismatch_bits: int | None = None
    features: np.ndarray | None = None
    #: trained feedback (docs/arithmetic.md §16): the final B{k} / Q{k} / P{k} (raw (rows, cols)); {} without
    fb: dict[str, np.ndarray] = field(default_factory=dict)


class KernelProject:
    """A generated learning-kernel project on disk (see the module docstring)."""

    def __init__(self, path, spec: KernelSpec, project: str = "edgelearn_kernel"):
        self.path = Path(path)
        self.spec = spec
        self.project = project
        self.exe: Path | None = None
        self.cycles: dict[str, Any] = {}  # the cycle model (write_kernel_project)

    @property
    def firmware(self) -> Path:
        return self.path / "firmware"

    @property
    def tb_data(self) -> Path:
        return self.path / "tb_data"

    def files(self) -> list[str]:
        return sorted(str(p.relative_to(self.path)) for p in self.path.rglob("*") if p.is_file())

    # ---- testbench data --------------------------------------------------------------------------------------
    def write_tb_data(self, X_raw, labels, learn=True, expected_outputs=None, expected_preds=None,
                      expected_state: tuple | None = None, directory: Path | None = None,
                      initial: tuple | None = None, expected_front=None) -> Path:
        """Write the testbench inputs (raw ints of the input format), labels, the initial state -- the program's, or
        ``initial`` = (W, b, generator states) -- and optionally the expected results (engine outputs before each
        update; final W, b, generator states; ``expected_front``: the front end's raw output per sample)."""
        d = Path(directory) if directory is not None else self.tb_data
        d.mkdir(parents=True, exist_ok=True)
        X = np.asarray(X_raw, dtype=np.int64).reshape(-1, self.spec.n_input)
        lab = np.asarray(labels, dtype=np.int64).reshape(-1)
        if lab.shape[0] != X.shape[0]:
            raise DataError(f"{X.shape[0]} samples but {lab.shape[0]} labels")
        if lab.size and (lab.min() < 0 or lab.max() >= self.spec.num_classes):
            raise DataError(f"labels must be in 0..{self.spec.num_classes - 1}")
        fin = self.spec.input_format
        if X.size and (X.min() < fin.min_raw or X.max() > fin.max_raw):
            raise DataError(f"inputs must be raw integers of the input format {fin}")
        lrn = np.broadcast_to(np.asarray(learn, dtype=np.int64), lab.shape)
        _write_lines(d / "tb_weights_init.dat", self.spec.state_lines(*(initial or ())))
        _write_lines(d / "tb_input_features.dat", [" ".join(map(str, row)) for row in X])
        _write_lines(d / "tb_labels.dat", [f"{int(a)} {int(b)}" for a, b in zip(lab, lrn)])
        for name in ("tb_output_predictions.dat", "tb_weights_final.dat", "tb_front_out.dat"):
            (d / name).unlink(missing_ok=True)
        if expected_front is not None and self.spec.front:
            F = np.asarray(expected_front, dtype=np.int64).reshape(X.shape[0], self.spec.sizes[0])
            _write_lines(d / "tb_front_out.dat", [" ".join(map(str, row)) for row in F])
        if expected_outputs is not None:
            Z = np.asarray(expected_outputs, dtype=np.int64).reshape(X.shape[0], -1)
            P = np.argmax(Z, axis=1) if expected_preds is None else np.asarray(expected_preds).reshape(-1)
            _write_lines(d / "tb_output_predictions.dat",
                         [" ".join(map(str, row)) + f" {int(p)}" for row, p in zip(Z, P)])
        if expected_state is not None:
            # (W, b, generator states) and, with trained feedback, its values (KernelSpec.fb_values)
            _write_lines(d / "tb_weights_final.dat", self.spec.state_lines(*expected_state))
        return d

    # ---- C-simulation ------------------------------------------------------------------------------------------
    def compile(self, opt: str = "-O1", cache: bool = True) -> Path:
        inc = ap_types_dir()
        if inc is None:
            raise MissingDependencyError("the Xilinx ap_types headers were not found: install hls4ml (its package "
                                         "bundles them) or set EDGELEARN_AP_TYPES to a directory with ap_fixed.h")
        srcs = [self.firmware / f"{self.project}.cpp", self.path / f"{self.project}_test.cpp"]
        self.exe = compile_cached(srcs, [self.firmware, inc], f"{self.project}-csim", opt=opt, cache=cache)
        return self.exe

    def run(self, X_raw=None, labels=None, learn=True, expected=None, timeout: float | None = None,
            initial: tuple | None = None, expected_front=None) -> KernelRun:
        """Run the C-simulation on (X_raw, labels) -- or on the tb_data already written -- and read its results.

        ``expected`` = (outputs, W, b, rnd) from the engine makes the testbench count mismatching bits itself;
        ``initial`` = (W, b, rnd) starts from that state (e.g. another run's final state: all the kernel keeps
        between calls is in its memory ports) instead of the program's; ``expected_front`` (a network with a front
        end): its raw output per sample, e.g. ``GoldenTrace.front_out``, compared by the testbench."""
        if self.exe is None:
            self.compile()
        d = self.tb_data
        if X_raw is not None:
            exp_out = exp_state = None
            if expected is not None:  # (outputs, W, b, rnd) and, with trained feedback, its final values
                exp_out, *exp_state = expected
                exp_state = tuple(exp_state)
            d = self.path / "tb_run"
            self.write_tb_data(X_raw, labels, learn, exp_out, None, exp_state, directory=d, initial=initial,
                               expected_front=expected_front)
        t0 = time.perf_counter()
        res = subprocess.run([str(self.exe), str(d)], capture_output=True, text=True, timeout=timeout)
        secs = time.perf_counter() - t0
        if res.returncode not in (0, 1):
            raise HLSBuildError(f"the kernel C-simulation failed (exit {res.returncode}):\n{res.stderr[-3000:]}")
        return self._read_results(d, res.stdout, secs)

    def _read_results(self, d: Path, stdout: str, secs: float) -> KernelRun:
        rows = [list(map(int, ln.split())) for ln in (d / "csim_results.log").read_text().splitlines() if ln.strip()]
        C = self.spec.num_classes
        arr = np.array(rows, dtype=np.int64).reshape(-1, C + 1)
        state = _read_state(d / "csim_weights.dat")
        L = len(self.spec.layers)
        W = [state[f"W{k}"].reshape(self.spec.sizes[k], self.spec.sizes[k + 1]) for k in range(L)]
        b = [state[f"b{k}"] for k in range(L)]
        summary = {}
        for ln in stdout.splitlines():
            if ln.startswith("EDGELEARN CSIM"):
                for tok in ln.split()[2:]:
                    key, _, val = tok.partition("=")
                    summary[key] = int(val) if val.lstrip("-").isdigit() else val
        om = summary.get("output_mismatch_bits")
        sm = summary.get("state_mismatch_bits")
        rnd = [state[f"ns{k}"] for k in range(L)] if self.spec.neuron_rng else state["rnd"]
        fb = {fp["name"]: state[fp["name"]].reshape(fp["rows"], fp["cols"]) for fp in self.spec.all_fb_ports()}
        fm, feats = summary.get("front_mismatch_bits"), None
        if self.spec.front and (d / "csim_features.log").is_file():
            feats = np.array([list(map(int, ln.split())) for ln in (d / "csim_features.log").read_text().splitlines()
                              if ln.strip()], dtype=np.int64).reshape(-1, self.spec.sizes[0])
        return KernelRun(outputs=arr[:, :C], preds=arr[:, C], W=W, b=b, rnd_state=rnd,
                         output_mismatch_bits=None if om is None or om < 0 else om,
                         state_mismatch_bits=None if sm is None or sm < 0 else sm, seconds=secs,
                         front_mismatch_bits=None if fm is None or fm < 0 else fm, features=feats, fb=fb)


def _write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("\n".join(lines) + "\n")


def _read_state(path: Path) -> dict[str, np.ndarray]:
    out = {}
    for ln in path.read_text().splitlines():
        parts = ln.split()
        if not parts:
            continue
        name, n = parts[0], int(parts[1])
        vals = np.array(list(map(int, parts[2:2 + n])), dtype=np.int64)
        if vals.size != n:
            raise HLSBuildError(f"{path}: tensor {name} has {vals.size} values, expected {n}")
        out[name] = vals
    return out


def write_kernel_project(eng, out_dir, *, project: str = "edgelearn_kernel", part: str = DEFAULT_PART,
                         clock_period: float = 5.0, tb_samples: tuple | None = None,
                         overwrite: bool = True, lanes: int = 1, interface: str = INTERFACES[0]) -> KernelProject:
    """Generate the learning-kernel project for ``eng`` (its current weights are the initial state) in ``out_dir``.

    ``tb_samples`` = (X_raw, labels): the testbench data; the expected outputs and final state are computed by
    stepping a *copy* of the engine through the samples (the engine passed in is not modified).  ``lanes`` and
    ``interface``: see the module docstring; the project's ``cycles`` (:func:`cycle_model`, worst case and on the
    testbench samples) land in ``project.json`` and the README."""
    if not project.isidentifier():
        raise ConfigError(f"project name {project!r} must be a C identifier")
    check_kernel_options(lanes, interface)
    ks = KernelSpec.from_engine(eng)
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"{out} exists and is not empty")
    fw = out / "firmware"
    fw.mkdir(parents=True, exist_ok=True)
    (fw / "el_learn.h").write_text(render_layers(lanes))
    (fw / "el_codes.h").write_text(render_codes())
    (fw / "parameters.h").write_text(render_parameters(ks, project))
    (fw / "tables.h").write_text(render_tables(ks))
    (fw / "feedback.h").write_text(render_feedback(ks))
    if ks.all_fb_ports():  # trained feedback (kp, ldfa, dldfa): its layer templates
        (fw / "el_feedback.h").write_text(render_fb_layers(lanes))
    if ks.front:  # the frozen front end: its layer templates and its ROMs
        (fw / "el_conv.h").write_text(render_conv())
        (fw / "front.h").write_text(render_front(ks))
    (fw / f"{project}.h").write_text(render_header(ks, project))
    (fw / f"{project}.cpp").write_text(render_top(ks, project, lanes, interface))
    (out / f"{project}_test.cpp").write_text(render_testbench(ks, project))
    (out / "build_prj.tcl").write_text(render("build_prj.tcl.j2", project=project, part=part,
                                              clock_period=clock_period))
    (out / "build_opt.tcl").write_text(render("build_opt.tcl.j2"))
    (out / "build_csim.sh").write_text(render("build_csim.sh.j2", project=project))
    os.chmod(out / "build_csim.sh", 0o755)
    proj = KernelProject(out, ks, project)
    cycles = {"model": CYCLE_MODEL,
              "worst_case": cycle_model(ks.program, lanes, interface, clock_period=clock_period)}
    if tb_samples is not None:
        X, y = tb_samples
        gold = reference_trace(eng, X, y)
        exp = reference_final(eng, gold)
        # trained feedback: its final values too (the golden trace records W and b only)
        fb_end = (stepwise_reference(eng, X, y)[-1]["fb"],) if ks.all_fb_ports() and len(y) else ()
        proj.write_tb_data(X, y, True, exp[0], None, (exp[1], exp[2], exp[3]) + fb_end,
                           expected_front=gold.front_out)
        if gold.X.shape[0]:
            cycles["testbench"] = cycle_model(ks.program, lanes, interface, nnz=np.mean(gold.nnz, axis=1),
                                              clock_period=clock_period)
    proj.cycles = cycles
    meta = {
        "generator": "edgelearn export-hls (learning kernel)", "project": project, "network": ks.name,
        "sizes": ks.sizes, **({"inputs": ks.n_input, "front_end": _front_meta(ks)} if ks.front else {}),
        "loss": ks.loss,
        "rules": ks.meta["rules"], "formats": ks.meta["formats"],
        "activations": [lay.act for lay in ks.layers], "seed": ks.seed,
        "feedback": [{"layer": lay.name, "mode": lay.fb_mode if lay.direct else None,
                      "seed": lay.fb_seed} for lay in ks.layers],
        "part": part, "clock_period_ns": clock_period, "lanes": lanes, "interface": interface, "cycles": cycles,
        "rng": ks.program.rng,
        "top_function": f"{project}(x, label, learn, z_out, pred, W0, b0, ..., "
                        f"{'ns0, ns1, ...' if ks.neuron_rng else 'rnd_state'})",
        "tb_data": {"tb_weights_init.dat": "initial W{k}, b{k} (raw ints, W row-major n_in x n_out), "
                                           + ("ns{k} (xorshift32 state per output neuron)" if ks.neuron_rng
                                              else "rnd (LFSR states)"),
                    "tb_input_features.dat": "one sample per line, raw ints of the input format",
                    "tb_labels.dat": "label and learn flag per sample",
                    "tb_output_predictions.dat": "expected z_out (raw) and pred per sample (engine, before update)",
                    "tb_weights_final.dat": "expected state after all samples (engine)",
                    **({"tb_front_out.dat": "expected front-end output per sample (raw, engine), compared with the "
                                            "testbench's separate call of the front end (csim_features.log)"}
                       if ks.front else {}),
                    "csim_results.log / csim_weights.dat": "written by the C-simulation"},
    }
    (out / "project.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
    (out / "README.md").write_text(render("README.md.j2", ks=ks, project=project, lanes=lanes,
                                          interface=interface, cycles=cycles))
    return proj


def _front_meta(ks: KernelSpec) -> list[dict[str, Any]]:
    """The front end as project.json lists it: geometry, activation and formats, kernels and biases in ROM."""
    out = []
    for f in ks.front:
        d = {"name": f["name"], "type": f["type"], "in_shape": f["in_shape"], "out_shape": f["out_shape"],
             "kernel": f["kernel"], "stride": f["stride"], "padding": f["padding"], "output": str(f["act"])}
        if f["type"] == "conv2d":
            d.update(activation=f["act_name"], weight=str(f["weight"]), bias=str(f["bias"]), accum=str(f["accum"]),
                     accum_exact=f["accum_exact"], storage="ROM (firmware/front.h)")
        out.append(d)
    return out


def reference_trace(eng, X_raw, labels):
    """The engine's golden trace of the samples (raw images or raw inputs), snapshot after the last one."""
    X = np.asarray(X_raw, dtype=np.int64).reshape(-1, eng.n_inputs)
    return trace(eng, X, labels, True, snapshots=[X.shape[0] - 1] if X.shape[0] else [])


def engine_reference(eng, X_raw, labels):
    """Step a copy of ``eng`` through the samples: (outputs before each update (N, C), W, b, generator states: the
    per-layer LFSR states, or under rng: neuron the per-layer lists of neuron states)."""
    return reference_final(eng, reference_trace(eng, X_raw, labels))


def reference_final(eng, gold):
    """What a kernel run over ``gold``'s samples must end with: (outputs, W, b, generator states)."""
    rnd = gold.neuron_state if eng.precision.rng == "neuron" else gold.rnd_state
    if not gold.X.shape[0]:
        w = eng.weights()
        return gold.outputs, [x["W"] for x in w], [x["b"] for x in w], rnd
    return gold.outputs, [W[-1] for W in gold.W], [b[-1] for b in gold.b], rnd



# ----------------------------------------------------------------------------------------------------------------
# step by step: the kernel's whole state after every learning step against the engine's (trained feedback included)


def stepwise_reference(eng, X_raw, labels) -> list[dict[str, Any]]:
    """Step a *copy* of ``eng`` through the samples; per sample its output (raw, before the update) and prediction,
    then its state after the update: W, b, generator states and the trained feedback's ports (name -> raw)."""
    from ..fixed.weights_file import clone_engine

    eng = clone_engine(eng)
    ks = KernelSpec(lower(eng))
    X = np.asarray(X_raw, dtype=np.int64).reshape(-1, eng.n_inputs)
    out = []
    for n, label in enumerate(np.asarray(labels, dtype=np.int64).reshape(-1)):
        z = np.asarray(eng.output_raw(X[n:n + 1])[0], dtype=np.int64)
        eng.step(X[n], int(label))
        w = eng.weights()
        rnd = ([np.asarray(v, dtype=np.int64).copy() for v in eng.neuron_state] if ks.neuron_rng
               else np.asarray(eng.rnd_state, dtype=np.int64).copy())
        out.append({"outputs": z, "pred": int(np.argmax(z)), "W": [np.asarray(x["W"], dtype=np.int64) for x in w],
                    "b": [np.asarray(x["b"], dtype=np.int64) for x in w], "rnd": rnd, "fb": ks.fb_values(eng.B)})
    return out


def _bits(a, e, width: int) -> int:
    """Mismatching bits of two raw arrays in ``width``-bit words."""
    d = (np.asarray(a, dtype=np.int64) ^ np.asarray(e, dtype=np.int64)).view(np.uint64) & np.uint64((1 << width) - 1)
    return int(sum(bin(int(v)).count("1") for v in d.ravel() if v))


def stepwise_check(proj: "KernelProject", eng, X_raw, labels) -> dict[str, Any]:
    """Run the compiled kernel one sample per call, each call starting from the memories the previous call left
    (W, b, generator states, trained feedback: all the kernel keeps), and count the mismatching bits against the
    engine after every learning step: outputs, predictions, and per tensor over all steps."""
    ks = proj.spec
    ref = stepwise_reference(eng, X_raw, labels)
    X = np.asarray(X_raw, dtype=np.int64).reshape(len(ref), -1)
    lab = np.asarray(labels, dtype=np.int64).reshape(-1)
    lays = {fp["name"]: ks.layers[int(fp["name"][1:])] for fp in ks.all_fb_ports()}
    widths = {name: (lay.fb_p if name[0] == "P" else lay.fb_q).width for name, lay in lays.items()}
    state = None
    res: dict[str, Any] = {"steps": len(ref), "output_bits": 0, "pred_mismatches": 0, "rnd_bits": 0,
                           "tensor_bits": {}}
    tb = res["tensor_bits"]
    for n, r in enumerate(ref):
        run = proj.run(X[n:n + 1], lab[n:n + 1], True, initial=state)
        state = (run.W, run.b, run.rnd_state, run.fb)
        res["output_bits"] += _bits(run.outputs[0], r["outputs"], ks.output.accum.width)
        res["pred_mismatches"] += int(run.preds[0] != r["pred"])
        for k, lay in enumerate(ks.layers):
            tb[f"W{k}"] = tb.get(f"W{k}", 0) + _bits(run.W[k], r["W"][k].reshape(run.W[k].shape), lay.weight.width)
            tb[f"b{k}"] = tb.get(f"b{k}", 0) + _bits(run.b[k], r["b"][k], lay.bias.width)
        for name, v in r["fb"].items():
            tb[name] = tb.get(name, 0) + _bits(run.fb[name], v, widths[name])
        rnd = run.rnd_state if not ks.neuron_rng else np.concatenate([np.ravel(v) for v in run.rnd_state])
        ern = r["rnd"] if not ks.neuron_rng else np.concatenate([np.ravel(v) for v in r["rnd"]])
        res["rnd_bits"] += _bits(rnd, ern, 32)
    res["state_bits"] = sum(tb.values()) + res["rnd_bits"]
    return res
