"""The on-chip learning kernel: an HLS C++ project (ap_fixed) that infers and learns one sample per call.

:func:`write_kernel_project` turns a :class:`~edgelearn.fixed.engine.FixedEngine` (its network, per-tensor formats,
rules, current weights, feedback matrices and LFSR states) into a Vitis/Vivado HLS project laid out like hls4ml's::

    OUT/
      firmware/
        <name>.cpp          top function: forward, prediction, error, DRTP/sDFA/DFA deltas, updates (one sample)
        <name>.h            its declaration
        parameters.h        per-layer config structs: sizes, ap_fixed types of every tensor, update policies
        el_learn.h          the layer templates (dense, activate, output_error, hidden_delta, update, LFSR)
        tables.h            tanh / sigmoid tables (the engine's, entry for entry)
        feedback.h          feedback matrices B (stored mode) or their LFSR row states (lfsr mode)
      <name>_test.cpp       testbench: reads tb_data, runs every sample, compares outputs and final weights
      tb_data/              tb_weights_init.dat, tb_input_features.dat, tb_labels.dat,
                            tb_output_predictions.dat, tb_weights_final.dat (expected, from the engine)
      build_prj.tcl         Vitis / Vivado HLS script (csim, synth, cosim, export options in build_opt.tcl)
      build_opt.tcl
      build_csim.sh         g++ C-simulation without Xilinx tools
      project.json          network, formats, rules and what the files hold
      README.md

The weights and biases are ports of the top function (BRAM interfaces, updated in place), so the host (or the
testbench) loads any trained state; the LFSR states of the stochastic-rounding streams are a port too.

Bit-exactness: every quantity has the engine's format (``FixedFormat.to_hls()``), every operation is an exact
ap_fixed expression assigned to that type (docs/arithmetic.md), and the order of operations and of the LFSR draws
is the engine's.  :class:`KernelProject` compiles the C-simulation with g++ and runs it; the tests compare it
with :meth:`FixedEngine.step` bit for bit.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError, FormatError
from ..fixed.engine_io import clone_engine  # noqa: F401  (re-exported)
from ..fixed.formats import FixedFormat
from ..fixed.lower import lower, raise_unsupported, trace
from ..program import (FEEDBACK_STREAM, SUPPORT, ActCode, LayerProgram, Program, RuleCode,  # noqa: F401
                       StepOp, fmt_max, signed_bits)
from .toolchain import HLSBuildError, MissingDependencyError, ap_types_dir, compile_cached

TEMPLATES = Path(str(resources.files("edgelearn") / "hls_templates"))  # package data, also in a wheel

#: hidden-layer rules the kernel implements (the output layer always learns from its error)
KERNEL_RULES = SUPPORT["hls"].hidden_rules

from . import DEFAULT_PART  # noqa: E402  (one default part for both HLS projects)

__all__ = ["KERNEL_RULES", "KernelLayer", "KernelSpec", "KernelProject", "KernelRun", "write_kernel_project",
           "exact_decimal"]


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


max_abs = fmt_max


def _fixed_t(width: int, frac: int, signed: bool = True, q: str | None = None, o: str | None = None) -> str:
    base = f"ap_{'' if signed else 'u'}fixed<{width},{width - frac}"
    if q is None and o is None:
        return base + ">"
    return base + f",AP_{q or 'TRN'},AP_{o or 'WRAP'}>"


def _raw_t(f: FixedFormat) -> str:
    return f"ap_{'' if f.signed else 'u'}int<{f.width}>"


def _hls(f: FixedFormat) -> str:
    return f.to_hls()


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
            if lay.has_table and lay.table.size != 1 << prog.table_bits:
                raise FormatError(f"layer {lay.name}: activation table has {lay.table.size} entries, "
                                  f"expected 2**{prog.table_bits}")
            if lay.direct and lay.B.shape != (prog.num_classes, lay.n_out):
                raise FormatError(f"layer {lay.name}: feedback matrix has shape {lay.B.shape}, "
                                  f"expected {(prog.num_classes, lay.n_out)}")
        if prog.output.act_fmt.frac < 0:
            raise FormatError(f"output activation format {prog.output.act_fmt} needs F >= 0 (the target 1.0)")
        if prog.num_classes < 2:
            raise ConfigError("the learning kernel needs at least two classes")
        return cls(prog)

    # ---- state as flat lines (tb_data format) -------------------------------------------------------------------
    def state_lines(self, W=None, b=None, rnd=None) -> list[str]:
        W = self.W if W is None else W
        b = self.b if b is None else b
        rnd = self.rnd_state if rnd is None else rnd
        lines = []
        for k in range(len(self.layers)):
            lines.append(f"W{k} {W[k].size} " + " ".join(map(str, np.asarray(W[k], dtype=np.int64).ravel())))
            lines.append(f"b{k} {b[k].size} " + " ".join(map(str, np.asarray(b[k], dtype=np.int64).ravel())))
        lines.append(f"rnd {len(rnd)} " + " ".join(str(int(v) & 0xFFFFFFFF) for v in rnd))
        return lines


# ----------------------------------------------------------------------------------------------------------------
# C++ generation


def _delta_type(u_max: int, u_frac: int, lr_shift: int, dst: FixedFormat) -> str:
    """Increment rounded to the stored LSB (F = F_dst) with the stored format's rounding, wide enough that it never
    overflows (|Delta| <= ceil(u_max * 2^-s) + 1)."""
    s = u_frac + lr_shift - dst.frac
    if s <= 0:
        dmax = u_max << (-s)
    else:
        dmax = (u_max >> s) + 2
    width = max(signed_bits(dmax) + 1, 2)
    q = "TRN" if dst.rounding == "STOCH" else dst.rounding
    return _fixed_t(width, dst.frac, True, q, "WRAP")


def _upd_policy(name: str, lay: KernelLayer, dst: FixedFormat, u_max: int, u_frac: int) -> str:
    upd = lay.update
    has_u = upd is not None
    lines = [
        f"struct {name} {{",
        f"    typedef {_hls(dst)} w_t;",
        f"    typedef {_delta_type(u_max, u_frac, lay.lr_shift, dst)} delta_t;",
        f"    typedef ap_ufixed<1, {1 - lay.lr_shift}> lr_t;  // exactly 2^-{lay.lr_shift}",
        f"    typedef ap_ufixed<32, {-dst.frac}> draw_t;  // a 32-bit LFSR draw just below the stored LSB",
        f"    static const bool stoch = {'true' if dst.rounding == 'STOCH' else 'false'};",
        f"    static const bool has_update = {'true' if has_u else 'false'};",
    ]
    if has_u:
        lines += [f"    typedef {_hls(upd)} upd_t;",
                  f"    typedef ap_ufixed<32, {-upd.frac}> udraw_t;",
                  f"    static const bool upd_stoch = {'true' if upd.rounding == 'STOCH' else 'false'};"]
    else:
        lines += ["    typedef delta_t upd_t;", "    typedef draw_t udraw_t;", "    static const bool upd_stoch = false;"]
    lines.append("};")
    return "\n".join(lines)


def _layer_types(ks: KernelSpec, lay: KernelLayer) -> dict[str, str]:
    C = ks.num_classes
    t: dict[str, str] = {}
    t["in_t"] = _hls(lay.input)
    t["w_t"] = _hls(lay.weight)
    t["b_t"] = _hls(lay.bias)
    t["acc_t"] = _hls(lay.accum)
    t["act_t"] = _hls(lay.act_fmt)
    t["err_t"] = _hls(lay.error)
    t["fb_t"] = _hls(lay.feedback)
    tb, rb = ks.table_bits, ks.range_bits
    t["idx_t"] = f"ap_fixed<{tb},{rb + 1},AP_TRN,AP_SAT>"
    t["g_t"] = _hls(lay.deriv) if (lay.has_table and lay.need_g) else "ap_uint<1>"
    cb = max(1, math.ceil(math.log2(C)))
    fb = lay.feedback
    out_err = ks.layers[-1].error
    if lay.code == RuleCode.DFA:
        pmax = C * max_abs(fb) * max_abs(out_err)
        t["psum_t"] = _fixed_t(signed_bits(pmax) + 1, fb.frac + out_err.frac)
    else:
        pmax = C * max_abs(fb)
        t["psum_t"] = _fixed_t(signed_bits(pmax) + 1, fb.frac)
    if lay.mult_raw is not None:
        mf = lay.mult_fmt
        t["mult_t"] = _hls(mf)
        t["dm_t"] = _fixed_t(lay.error.width + mf.width + 1, lay.error.frac + mf.frac)
    else:
        t["mult_t"] = "ap_ufixed<1,1>"
        t["dm_t"] = _hls(lay.error)
    del cb
    return t


def _config_struct(ks: KernelSpec, lay: KernelLayer) -> str:
    t = _layer_types(ks, lay)
    k = lay.index
    mult_raw = lay.mult_raw if lay.mult_raw is not None else 1
    mult_frac = lay.mult_frac
    e_max = lay.bias_inc_max
    u_w = lay.weight_inc_max
    f_dm = lay.dm_frac
    table_size = (1 << ks.table_bits) if lay.has_table else 1
    parts = [
        f"// layer {k} ({lay.name}): {lay.n_in} -> {lay.n_out}, activation {lay.act}, rule {lay.role}",
        _upd_policy(f"config{k}_wupd", lay, lay.weight, u_w, f_dm + lay.input.frac),
        _upd_policy(f"config{k}_bupd", lay, lay.bias, e_max, f_dm),
        f"struct config{k} {{",
        f"    static const unsigned n_in = {lay.n_in};",
        f"    static const unsigned n_out = {lay.n_out};",
        f"    static const unsigned n_classes = {ks.num_classes};",
        f"    static const int act = EL_ACT_{lay.act_code.name};",
        f"    static const int rule = EL_RULE_{lay.code.name};",
        f"    static const bool is_output = {'true' if lay.is_output else 'false'};",
        f"    static const bool need_g = {'true' if lay.need_g else 'false'};",
        f"    static const bool fb_lfsr = {'true' if lay.fb_lfsr else 'false'};",
        f"    static const int fb_width = {lay.feedback.width};",
        f"    static const unsigned table_size = {table_size};",
    ]
    for name in ("in_t", "w_t", "b_t", "acc_t", "act_t", "g_t", "err_t", "fb_t", "idx_t", "psum_t", "mult_t", "dm_t"):
        parts.append(f"    typedef {t[name]} {name};")
    parts.append(f"    typedef {_raw_t(lay.act_fmt)} act_raw_t;  // table ROM words: raw bits of act_t")
    parts.append(f"    typedef {_raw_t(lay.feedback)} fb_raw_t;  // feedback ROM words: raw bits of fb_t")
    parts += [
        f"    typedef config{k}_wupd wupd;",
        f"    typedef config{k}_bupd bupd;",
        f"    static double mult_value() {{ return {exact_decimal(mult_raw, mult_frac)}; }}",
        "};",
    ]
    return "\n".join(parts)


def _array_init(values, per_line: int = 16) -> str:
    vals = [str(int(v)) for v in np.asarray(values).ravel()]
    rows = [", ".join(vals[i:i + per_line]) for i in range(0, len(vals), per_line)]
    return "{\n    " + ",\n    ".join(rows) + "}"


def _matrix_init(M: np.ndarray) -> str:
    rows = [_array_init(row) for row in M]
    return "{\n" + ",\n".join(rows) + "}"


def render_parameters(ks: KernelSpec, project: str) -> str:
    L = len(ks.layers)
    guard = "PARAMETERS_H_"
    out = [
        "// Generated by edgelearn (edgelearn export-hls): formats, sizes and rules of the learning kernel.",
        f"// Network {ks.name}: {' -> '.join(map(str, ks.sizes))}, loss {ks.loss}, "
        f"tables 2^{ks.table_bits} entries on [-2^{ks.range_bits}, 2^{ks.range_bits}).",
        f"#ifndef {guard}", f"#define {guard}", "", '#include "ap_fixed.h"', '#include "ap_int.h"',
        '#include "el_learn.h"', "",
        f"#define N_LAYERS {L}", f"#define N_INPUT {ks.sizes[0]}", f"#define N_OUTPUT {ks.sizes[-1]}",
        f"#define EL_LOSS_MSE {1 if ks.loss == 'mse' else 0}", "",
    ]
    for lay in ks.layers:
        out.append(_config_struct(ks, lay))
        out.append("")
    out += ["typedef config0::in_t input_t;", f"typedef config{L - 1}::acc_t result_t;", "", f"#endif  // {guard}", ""]
    return "\n".join(out)


def render_codes() -> str:
    """el_codes.h: the activation and rule codes of edgelearn.program (one numbering for every back end)."""
    out = ["// Generated by edgelearn from edgelearn.program: activation and rule codes.", "#ifndef EL_CODES_H_",
           "#define EL_CODES_H_", ""]
    out += [f"#define EL_ACT_{a.name} {int(a)}" for a in ActCode] + [""]
    out += [f"#define EL_RULE_{r.name} {int(r)}" for r in RuleCode] + ["", "#endif", ""]
    return "\n".join(out)


def render_tables(ks: KernelSpec) -> str:
    out = ["// Generated by edgelearn: activation lookup tables (docs/arithmetic.md section 11), entry for entry the",
           "// tables of the fixed-point engine (edgelearn.fixed.activations): entry i = f(bin centre i) in the",
           "// activation format, rounded AP_RND and saturated AP_SAT, stored as its raw bits (act_raw_t).",
           "// Index = floor(z / bin) + N/2, clamped.",
           "#ifndef TABLES_H_", "#define TABLES_H_", "", '#include "parameters.h"', ""]
    for lay in ks.layers:
        k = lay.index
        if lay.has_table:
            out.append(f"// {lay.act} of layer {k} ({lay.name}), output format {lay.act_fmt}")
            out.append(f"static const config{k}::act_raw_t table{k}[config{k}::table_size] = "
                       f"{_array_init(lay.table)};")
        else:
            out.append(f"static const config{k}::act_raw_t table{k}[1] = {{0}};  // {lay.act}: no table")
        out.append("")
    out += ["#endif", ""]
    return "\n".join(out)


def render_feedback(ks: KernelSpec) -> str:
    C = ks.num_classes
    out = ["// Generated by edgelearn: random feedback of the direct rules (docs/arithmetic.md section 10).",
           "// B (n_classes x n_out) holds W_fb-bit two's-complement LFSR draws in row-major order; stored mode keeps",
           "// it in a ROM, lfsr mode regenerates a row from its start state (the same values, no storage).",
           "#ifndef FEEDBACK_H_", "#define FEEDBACK_H_", "", '#include "parameters.h"', ""]
    for lay in ks.layers:
        k = lay.index
        if lay.direct and not lay.fb_lfsr:
            out.append(f"// layer {k} ({lay.name}): B stored, format {lay.feedback}, seed {lay.fb_seed:#010x}")
            out.append(f"static const config{k}::fb_raw_t B{k}[{C}][{lay.n_out}] = {_matrix_init(lay.B)};")
            out.append(f"static const el::lfsr_t B{k}_rows[{C}] = {{0}};")
        elif lay.direct:
            rows = [int(r) for r in lay.fb_rows]
            out.append(f"// layer {k} ({lay.name}): B regenerated from the LFSR (seed {lay.fb_seed:#010x}), "
                       f"format {lay.feedback}; start state of each row")
            out.append(f"static const config{k}::fb_raw_t B{k}[1][{lay.n_out}] = {{{{0}}}};")
            out.append(f"static const el::lfsr_t B{k}_rows[{C}] = {{" + ", ".join(f"{r:#010x}u" for r in rows) + "};")
        else:
            out.append(f"// layer {k} ({lay.name}): no feedback (rule {lay.role})")
            out.append(f"static const config{k}::fb_raw_t B{k}[1][{lay.n_out}] = {{{{0}}}};")
            out.append(f"static const el::lfsr_t B{k}_rows[1] = {{0}};")
        out.append("")
    out += ["#endif", ""]
    return "\n".join(out)


def _port_list(ks: KernelSpec) -> list[str]:
    ports = ["const input_t x[N_INPUT]", "const unsigned label", "const bool learn", "result_t z_out[N_OUTPUT]",
             "unsigned &pred"]
    for lay in ks.layers:
        k = lay.index
        ports.append(f"config{k}::w_t W{k}[{lay.n_in}][{lay.n_out}]")
        ports.append(f"config{k}::b_t b{k}[{lay.n_out}]")
    ports.append("el::lfsr_t rnd_state[N_LAYERS]")
    return ports


def render_header(ks: KernelSpec, project: str) -> str:
    guard = project.upper() + "_H_"
    ports = ",\n    ".join(_port_list(ks))
    return (f"// Generated by edgelearn: the on-chip learning kernel of {ks.name}.\n"
            f"#ifndef {guard}\n#define {guard}\n\n#include \"parameters.h\"\n\n"
            f"// One sample: forward pass (z_out = output pre-activation, pred = argmax, before any update) and, when\n"
            f"// learn is set, the learning rule's update of every trainable layer (weights/biases updated in place).\n"
            f"void {project}(\n    {ports});\n\n#endif\n")


def render_top(ks: KernelSpec, project: str) -> str:
    L = len(ks.layers)
    lo = L - 1
    body: list[str] = []
    pr = body.append
    pr(f'#include "{project}.h"')
    pr('#include "tables.h"')
    pr('#include "feedback.h"')
    pr("")
    ports = ",\n    ".join(_port_list(ks))
    pr(f"void {project}(\n    {ports}) {{")
    for lay in ks.layers:
        k = lay.index
        pr(f"#pragma HLS INTERFACE mode=ap_memory port=W{k}")
        pr(f"#pragma HLS INTERFACE mode=ap_memory port=b{k}")
    pr("#pragma HLS INTERFACE mode=ap_memory port=rnd_state")
    pr("")
    for lay in ks.layers:
        k = lay.index
        pr(f"    // layer {k} ({lay.name}) work arrays")
        pr(f"    config{k}::acc_t z{k}[{lay.n_out}];")
        pr(f"    config{k}::act_t a{k}[{lay.n_out}];")
        pr(f"    config{k}::g_t g{k}[{lay.n_out}];")
        pr(f"    config{k}::err_t d{k}[{lay.n_out}];")
        if lay.n_out <= 64:
            pr(f"#pragma HLS ARRAY_PARTITION variable=d{k} complete")
        pr(f"    el::lfsr_t rnd{k} = rnd_state[{k}];")
    pr("")
    # the program's schedule, step by step (edgelearn.program.schedule)
    for step in ks.steps:
        k = step.layer
        xin = "x" if k <= 0 else f"a{k - 1}"
        if step.op == StepOp.FORWARD:
            pr(f"    // ---- layer {k} ({ks.layers[k].name}): forward")
            pr(f"    el::dense<config{k}>({xin}, W{k}, b{k}, z{k});")
            pr(f"    el::activate<config{k}>(z{k}, table{k}, a{k}, g{k});")
        elif step.op in (StepOp.INJECT_DRTP, StepOp.HIDDEN_SIGNAL):
            if step.op == StepOp.INJECT_DRTP:
                pr("    // DRTP needs only the label: this layer learns right away")
            pr(f"    el::hidden_delta<config{k}, config{lo}::err_t>(label, d{lo}, g{k}, B{k}, B{k}_rows, d{k});")
        elif step.op == StepOp.PREDICT:
            pr("    // ---- prediction (before any update of the output layer)")
            pr("    for (unsigned c = 0; c < N_OUTPUT; c++)")
            pr(f"        z_out[c] = z{lo}[c];")
            pr(f"    pred = el::argmax<config{lo}::acc_t, N_OUTPUT>(z{lo});")
        elif step.op == StepOp.OUTPUT_ERROR:
            pr("    // ---- output error, then the hidden signals (top-down) and the updates (output layer first)")
            pr(f"    el::output_error<config{lo}>(a{lo}, g{lo}, label, EL_LOSS_MSE, d{lo});")
        elif step.op == StepOp.UPDATE:
            pr("    if (learn)")
            pr(f"        el::update<config{k}>({xin}, d{k}, W{k}, b{k}, rnd{k});")
    for lay in ks.layers:
        pr(f"    rnd_state[{lay.index}] = rnd{lay.index};")
    pr("}")
    pr("")
    return "\n".join(body)


def render_testbench(ks: KernelSpec, project: str) -> str:
    L = len(ks.layers)
    decl, load, dump, cmp = [], [], [], []
    for lay in ks.layers:
        k = lay.index
        decl.append(f"static config{k}::w_t W{k}[{lay.n_in}][{lay.n_out}];")
        decl.append(f"static config{k}::b_t b{k}[{lay.n_out}];")
        load.append(f'    ok &= read_tensor(f, "W{k}", &W{k}[0][0], {lay.n_in * lay.n_out});')
        load.append(f'    ok &= read_tensor(f, "b{k}", b{k}, {lay.n_out});')
        dump.append(f'        write_tensor(fw, "W{k}", &W{k}[0][0], {lay.n_in * lay.n_out});')
        dump.append(f'        write_tensor(fw, "b{k}", b{k}, {lay.n_out});')
        cmp.append(f'        bad += compare_tensor(f, "W{k}", &W{k}[0][0], {lay.n_in * lay.n_out});')
        cmp.append(f'        bad += compare_tensor(f, "b{k}", b{k}, {lay.n_out});')
    args = ", ".join([f"W{lay.index}, b{lay.index}" for lay in ks.layers])
    src = (TEMPLATES / "kernel_test.cpp").read_text()
    return (src.replace("@PROJECT@", project)
            .replace("@N_LAYERS@", str(L))
            .replace("@DECLARE_STATE@", "\n".join(decl))
            .replace("@LOAD_STATE@", "\n".join(load))
            .replace("@DUMP_STATE@", "\n".join(dump))
            .replace("@COMPARE_STATE@", "\n".join(cmp))
            .replace("@STATE_ARGS@", args))


# ----------------------------------------------------------------------------------------------------------------
# project


@dataclass
class KernelRun:
    """Result of one C-simulation run."""

    outputs: np.ndarray  # (N, C) raw output pre-activations, before each sample's update
    preds: np.ndarray  # (N,)
    W: list[np.ndarray]
    b: list[np.ndarray]
    rnd_state: np.ndarray
    output_mismatch_bits: int | None
    state_mismatch_bits: int | None
    seconds: float


class KernelProject:
    """A generated learning-kernel project on disk (see the module docstring)."""

    def __init__(self, path, spec: KernelSpec, project: str = "edgelearn_kernel"):
        self.path = Path(path)
        self.spec = spec
        self.project = project
        self.exe: Path | None = None

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
                      expected_state: tuple | None = None, directory: Path | None = None) -> Path:
        """Write the testbench inputs (raw ints of the input format), labels, the initial state and optionally the
        expected results (engine outputs before each update; final W, b, LFSR states)."""
        d = Path(directory) if directory is not None else self.tb_data
        d.mkdir(parents=True, exist_ok=True)
        X = np.asarray(X_raw, dtype=np.int64).reshape(-1, self.spec.sizes[0])
        lab = np.asarray(labels, dtype=np.int64).reshape(-1)
        if lab.shape[0] != X.shape[0]:
            raise DataError(f"{X.shape[0]} samples but {lab.shape[0]} labels")
        if lab.size and (lab.min() < 0 or lab.max() >= self.spec.num_classes):
            raise DataError(f"labels must be in 0..{self.spec.num_classes - 1}")
        fin = self.spec.layers[0].input
        if X.size and (X.min() < fin.min_raw or X.max() > fin.max_raw):
            raise DataError(f"inputs must be raw integers of the input format {fin}")
        lrn = np.broadcast_to(np.asarray(learn, dtype=np.int64), lab.shape)
        _write_lines(d / "tb_weights_init.dat", self.spec.state_lines())
        _write_lines(d / "tb_input_features.dat", [" ".join(map(str, row)) for row in X])
        _write_lines(d / "tb_labels.dat", [f"{int(a)} {int(b)}" for a, b in zip(lab, lrn)])
        for name in ("tb_output_predictions.dat", "tb_weights_final.dat"):
            (d / name).unlink(missing_ok=True)
        if expected_outputs is not None:
            Z = np.asarray(expected_outputs, dtype=np.int64).reshape(X.shape[0], -1)
            P = np.argmax(Z, axis=1) if expected_preds is None else np.asarray(expected_preds).reshape(-1)
            _write_lines(d / "tb_output_predictions.dat",
                         [" ".join(map(str, row)) + f" {int(p)}" for row, p in zip(Z, P)])
        if expected_state is not None:
            W, b, rnd = expected_state
            _write_lines(d / "tb_weights_final.dat", self.spec.state_lines(W, b, rnd))
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

    def run(self, X_raw=None, labels=None, learn=True, expected=None, timeout: float | None = None) -> KernelRun:
        """Run the C-simulation on (X_raw, labels) -- or on the tb_data already written -- and read its results.

        ``expected`` = (outputs, W, b, rnd) from the engine makes the testbench count mismatching bits itself."""
        if self.exe is None:
            self.compile()
        d = self.tb_data
        if X_raw is not None:
            exp_out = exp_state = None
            if expected is not None:
                exp_out, W, b, rnd = expected
                exp_state = (W, b, rnd)
            d = self.path / "tb_run"
            self.write_tb_data(X_raw, labels, learn, exp_out, None, exp_state, directory=d)
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
        return KernelRun(outputs=arr[:, :C], preds=arr[:, C], W=W, b=b, rnd_state=state["rnd"],
                         output_mismatch_bits=None if om is None or om < 0 else om,
                         state_mismatch_bits=None if sm is None or sm < 0 else sm, seconds=secs)


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


def _render_tcl(project: str, part: str, clock_period: float) -> tuple[str, str]:
    tcl = (TEMPLATES / "kernel_build_prj.tcl").read_text()
    tcl = tcl.replace("@PROJECT@", project).replace("@PART@", part).replace("@CLOCK@", f"{clock_period:g}")
    opt = (TEMPLATES / "kernel_build_opt.tcl").read_text()
    return tcl, opt


def write_kernel_project(eng, out_dir, *, project: str = "edgelearn_kernel", part: str = DEFAULT_PART,
                         clock_period: float = 5.0, tb_samples: tuple | None = None,
                         overwrite: bool = True) -> KernelProject:
    """Generate the learning-kernel project for ``eng`` (its current weights are the initial state) in ``out_dir``.

    ``tb_samples`` = (X_raw, labels): the testbench data; the expected outputs and final state are computed by
    stepping a *copy* of the engine through the samples (the engine passed in is not modified)."""
    if not project.isidentifier():
        raise ConfigError(f"project name {project!r} must be a C identifier")
    ks = KernelSpec.from_engine(eng)
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"{out} exists and is not empty")
    fw = out / "firmware"
    fw.mkdir(parents=True, exist_ok=True)
    shutil.copy2(TEMPLATES / "el_learn.h", fw / "el_learn.h")
    (fw / "el_codes.h").write_text(render_codes())
    (fw / "parameters.h").write_text(render_parameters(ks, project))
    (fw / "tables.h").write_text(render_tables(ks))
    (fw / "feedback.h").write_text(render_feedback(ks))
    (fw / f"{project}.h").write_text(render_header(ks, project))
    (fw / f"{project}.cpp").write_text(render_top(ks, project))
    (out / f"{project}_test.cpp").write_text(render_testbench(ks, project))
    tcl, opt = _render_tcl(project, part, clock_period)
    (out / "build_prj.tcl").write_text(tcl)
    (out / "build_opt.tcl").write_text(opt)
    sh = (TEMPLATES / "kernel_build_csim.sh").read_text().replace("@PROJECT@", project)
    (out / "build_csim.sh").write_text(sh)
    os.chmod(out / "build_csim.sh", 0o755)
    proj = KernelProject(out, ks, project)
    if tb_samples is not None:
        X, y = tb_samples
        exp = engine_reference(eng, X, y)
        proj.write_tb_data(X, y, True, exp[0], None, (exp[1], exp[2], exp[3]))
    meta = {
        "generator": "edgelearn export-hls (learning kernel)", "project": project, "network": ks.name,
        "sizes": ks.sizes, "loss": ks.loss, "rules": ks.meta["rules"], "formats": ks.meta["formats"],
        "activations": [lay.act for lay in ks.layers], "seed": ks.seed,
        "feedback": [{"layer": lay.name, "mode": lay.fb_mode if lay.direct else None,
                      "seed": lay.fb_seed} for lay in ks.layers],
        "part": part, "clock_period_ns": clock_period,
        "top_function": f"{project}(x, label, learn, z_out, pred, W0, b0, ..., rnd_state)",
        "tb_data": {"tb_weights_init.dat": "initial W{k}, b{k} (raw ints, W row-major n_in x n_out), rnd (LFSR states)",
                    "tb_input_features.dat": "one sample per line, raw ints of the input format",
                    "tb_labels.dat": "label and learn flag per sample",
                    "tb_output_predictions.dat": "expected z_out (raw) and pred per sample (engine, before update)",
                    "tb_weights_final.dat": "expected state after all samples (engine)",
                    "csim_results.log / csim_weights.dat": "written by the C-simulation"},
    }
    (out / "project.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
    (out / "README.md").write_text(_readme(ks, project))
    return proj


def engine_reference(eng, X_raw, labels):
    """Step a copy of ``eng`` through the samples: (outputs before each update (N, C), W, b, rnd_state)."""
    X = np.asarray(X_raw, dtype=np.int64).reshape(-1, eng.sizes[0])
    gold = trace(eng, X, labels, True, snapshots=[X.shape[0] - 1] if X.shape[0] else [])
    if not X.shape[0]:
        w = eng.weights()
        return gold.outputs, [x["W"] for x in w], [x["b"] for x in w], gold.rnd_state
    return gold.outputs, [W[-1] for W in gold.W], [b[-1] for b in gold.b], gold.rnd_state


def _readme(ks: KernelSpec, project: str) -> str:
    rules = ", ".join(f"{lay.name}: {lay.role}" for lay in ks.layers)
    return f"""# {project}: on-chip learning kernel for {ks.name}

Generated by `edgelearn export-hls`. Network {' -> '.join(map(str, ks.sizes))}, loss {ks.loss}, rules ({rules}).
One call of `{project}(...)` runs one sample: the forward pass (`z_out`, `pred`, before any update) and, when
`learn` is set, the update of every trainable layer. Weights, biases and the LFSR states of the stochastic
rounding are ports (BRAM), updated in place. C-simulation is bit-exact with the edgelearn fixed-point engine.

With Xilinx tools (edit `build_opt.tcl` to choose the steps; `csim=1 synth=1` by default):

    vitis_hls -f build_prj.tcl                 # Vitis HLS (2022.x-2024.1)
    vitis-run --mode hls --tcl build_prj.tcl   # Vitis 2024.2+
    vivado_hls -f build_prj.tcl "csim=1 synth=1 cosim=0"   # Vivado HLS (options also on the command line)

Without Xilinx tools (g++ and the ap_types headers, e.g. the copy bundled with hls4ml):

    AP_TYPES=/path/to/ap_types ./build_csim.sh

The testbench reads `tb_data/` (raw integers), runs every sample, writes `tb_data/csim_results.log` and
`tb_data/csim_weights.dat`, and compares them bit for bit with the engine's results when
`tb_data/tb_output_predictions.dat` / `tb_data/tb_weights_final.dat` are present (exit status 1 on a mismatch).
"""
