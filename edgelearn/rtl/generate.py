"""Generate the on-chip learning datapath of an MLP: a Verilog top level around ``hw/el_layer.v``.

:func:`write_rtl` takes a :class:`~edgelearn.fixed.engine.FixedEngine` -- its network, per-tensor formats, rules,
current (initial or trained) weights, feedback matrices and LFSR states -- and writes::

    OUT/
      <top>.v          the top level: sample stream in, prediction stream out, weight read-back, one el_layer per layer
      hdl/             the hand-written modules (copies of hw/el_layer.v, hw/el_convert.v)
      mem/             $readmemh files: w<k>.hex (weights, P per word), b<k>.hex, t<k>.hex (tanh / sigmoid table),
                       q<k>.hex, p<k>.hex (ldfa: the factors Q^T and P of layer k, kept in hdl/el_feedback.v),
                       fb<k>.hex (stored feedback B) or fbst<k>.hex (LFSR row states of B)
      filelist.f       the sources in compile order
      design.json      network, formats, parallelism, ports, memory layout, cycle model

The top level and the file list are rendered from the jinja2 templates ``hw/el_mlp.v.j2`` and ``hw/filelist.f.j2``
(no Verilog is written by code here).

The design computes exactly what the engine computes (docs/arithmetic.md, docs/engine.md); ``rtl_tb/`` proves it
weight by weight in Icarus and Verilator.  Everything the generator cannot build is rejected here, with a one-line
error, before any file is written.
"""
from __future__ import annotations

import json
import math
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import numpy as np

from ..errors import ConfigError, FormatError
from ..fixed.engine_kernels import LOSS_CODES
from ..fixed.formats import OVERFLOW, ROUNDING, FixedFormat
from ..fixed.lfsr import TAPS
from ..fixed.lower import lower, raise_unsupported
from ..fixed.xorshift import xorshift_masks
from ..hls.kernel import softmax_words
from ..program import (DIRECT_RULES, FB_LEARN_P, FB_LEARN_Q, LEARNED_FEEDBACK_RULES, OJA_GAIN,  # noqa: F401
                       OJA_TARGET, SUPPORT, ActCode, LayerProgram, RuleCode)
from ..templating import environment
from . import layout
from .front import front_of
from .sim import HW_DIR
from .verilog_words import VERILOG_KEYWORDS

#: hidden-layer rules the datapath implements (the output layer always learns from its error)
RTL_RULES = SUPPORT["rtl"].hidden_rules
HW_FILES = ("el_convert.v", "el_layer.v")
#: the front end of a network with one (edgelearn.rtl.front)
HW_FRONT_FILES = ("el_front.v",)
#: the trained feedback of kp / ldfa / dldfa layers (only in a design that has some)
HW_FEEDBACK_FILES = ("el_feedback.v",)
#: the output error's softmax under loss ce (only in a learning design with that loss)
HW_SOFTMAX_FILES = ("el_softmax.v",)
#: el_layer's LOSS codes: the engine's (the loss a design implements is the engine's loss)
HW_LOSS_CODES = LOSS_CODES


def hw_module_names() -> set[str]:
    """Every module the hw files define (a file may hold helpers beside its own module): names a generated top
    level must not take."""
    names = set()
    for f in HW_FILES + HW_FRONT_FILES + HW_FEEDBACK_FILES + HW_SOFTMAX_FILES:
        names.update(re.findall(r"^\s*module\s+([A-Za-z_][A-Za-z0-9_$]*)", (HW_DIR / f).read_text(), re.M))
    return names
#: the codes el_layer.v distinguishes, passed to every instance as parameters (R_*, A_*)
HW_RULE_CODES = (RuleCode.DRTP, RuleCode.SDFA, RuleCode.DFA, RuleCode.SHALLOW, RuleCode.OUTPUT)
HW_ACT_CODES = (ActCode.TANH, ActCode.SIGMOID, ActCode.HARDTANH, ActCode.RELU)
MAX_PARALLEL = 64
MAX_WORDS = 1 << 24          # weight words per layer (address width <= 24)
MAX_NEURONS = 1 << 16


@dataclass
class RtlLayer:
    """A layer of the program (every attribute not defined here is the :class:`LayerProgram`'s) as the datapath
    holds it: its MAC lanes and its state."""

    lp: LayerProgram
    lanes: int
    W: np.ndarray
    b: np.ndarray
    rnd_state: int
    #: rng neuron: the generator state of every output neuron (n_out uint32); None under rng layer
    rng_states: np.ndarray | None = None
    #: lanes of the update datapath (divides ``lanes``): a word of ``lanes`` weights updates in lanes / this cycles
    update_lanes: int = 0
    #: weights (and biases) a write of the load port carries: a learning layer's load enters through its update
    #: lanes (``update_lanes``), a frozen layer's (or any of an inference-only design) a whole word (``lanes``)
    load_lanes: int = 0
    #: the raw feedback words this layer keeps in its el_feedback, None without: ldfa's factors Q (n_in x r) and P
    #: (r x n_out), dldfa's Q (n_out x r) and P (r x C), kp's B as Q (n_in x n_out, no P)
    Q: np.ndarray | None = None
    Pf: np.ndarray | None = None
    #: the layer whose output stream the el_feedback observes (x) and whose projection reads its Q (ldfa, kp: the
    #: layer below; dldfa: the layer itself)
    fb_at: int = -1

    def __getattr__(self, name: str):
        if name == "lp":
            raise AttributeError(name)
        return getattr(self.lp, name)

    @property
    def rule(self) -> str:
        return self.lp.role

    @property
    def groups(self) -> int:
        return -(-self.n_out // self.lanes)

    @property
    def words(self) -> int:
        return self.n_in * self.groups

    @property
    def has_factors(self) -> bool:
        return self.Q is not None

    @property
    def fb_rank(self) -> int:
        """Rows of the signal u the el_feedback sends (ldfa / dldfa: r; kp: n_out, u = delta)."""
        return int(self.Q.shape[1])

    @property
    def fb_m(self) -> int:
        """Entries of the source vector (P's columns): the layer's outputs, the classes for dldfa."""
        return int(self.Pf.shape[1]) if self.Pf is not None else self.fb_rank


def layer_update_lanes(lanes: int, parallel: int, update_lanes: int) -> int:
    """The update lanes of a layer with ``lanes`` MAC lanes when the design has ``parallel`` MAC and
    ``update_lanes`` update lanes (a divisor of ``parallel``): the same ratio where it divides the layer's lanes,
    else the largest divisor of the lanes below it (a layer narrower than ``parallel``: its update is slower, never
    faster, than ``parallel / update_lanes`` cycles per word)."""
    target = max(1, lanes * update_lanes // parallel)
    return max(q for q in range(1, target + 1) if lanes % q == 0)


def draw_masks(lanes: int, rem: int) -> tuple[int, int, int]:
    """The stochastic-rounding draws of one update word as parities of the LFSR state (el_layer's RND_MX, RND_MF,
    RND_MR): ``lanes`` consecutive 32-bit draws of the stream (docs/arithmetic.md §8, the first output bit is the
    draw's MSB), bit ``b`` of lane ``l`` the parity of ``state & mask[l*32 + b]``; and the state after ``lanes``
    and after ``rem`` draws, bit ``i`` the parity of ``state & mask[i]``.  Masks are packed 32 bits each, element
    0 in the least significant bits.  The same bits as stepping the LFSR, at a logic depth that does not grow
    with the number of lanes."""
    m = [1 << i for i in range(32)]  # state bit i as a mask of the starting state's bits
    mx = mf = mr = 0
    for lane in range(lanes):
        for j in range(32):  # one Galois step: out = s & 1; s >>= 1; if out: s ^= TAPS
            mx |= m[0] << ((lane * 32 + 31 - j) * 32)
            out = m[0]
            m = m[1:] + [0]
            m = [v ^ out if (TAPS >> i) & 1 else v for i, v in enumerate(m)]
        if lane == rem - 1:
            mr = sum(v << (32 * i) for i, v in enumerate(m))
        if lane == lanes - 1:
            mf = sum(v << (32 * i) for i, v in enumerate(m))
    return mx, mf, mr


#: the xorshift32 step as an XOR network (el_layer's XS_MASK): bit b of the next state is the parity of the state
#: under bits b*32 .. b*32+31
XS_MASK = sum(m << (32 * b) for b, m in enumerate(xorshift_masks()))


def ring_init(states: np.ndarray) -> int:
    """The initial value of an rng-neuron ring (el_layer's RNG_INIT): generator ``i = g*P + l`` (lane ``l`` of
    group ``g``) at bits ``32*i``, so that slot ``g`` holds the states of group ``g``; padding lanes 0."""
    return sum(int(v) << (32 * i) for i, v in enumerate(np.asarray(states, dtype=np.uint32)))


def clog2(n: int) -> int:
    """Bits of an index of ``n`` values: at least one, so that a one-entry range still has a port."""
    return max(1, math.ceil(math.log2(n)))


def _environment() -> jinja2.Environment:
    """The generated text files (top level, file list) are rendered from the templates of hw/."""
    env = environment(HW_DIR)
    env.globals.update(clog2=clog2)
    return env


_ENV = _environment()


def _fmt_params(prefix: str, f: FixedFormat, signed: bool = True, modes: bool = True) -> dict[str, int]:
    d = {f"{prefix}W": f.width, f"{prefix}F": f.frac}
    if signed:
        d[f"{prefix}S"] = int(f.signed)
    if modes:
        d[f"{prefix}R"] = ROUNDING[f.rounding]
        d[f"{prefix}O"] = OVERFLOW[f.overflow]
    return d


class RtlDesign:
    """What the generated datapath implements: an engine's lowered program (edgelearn.program), checked for
    buildability, with the datapath's parallelism."""

    def __init__(self, eng, parallel: int = 4, top: str = "el_mlp", learning: bool = True,
                 update_lanes: int | None = None):
        if isinstance(parallel, bool) or not isinstance(parallel, (int, np.integer)) or not 1 <= parallel <= MAX_PARALLEL:
            raise ConfigError(f"parallel MAC units must be an integer in 1..{MAX_PARALLEL}, got {parallel!r}")
        if update_lanes is None:
            update_lanes = parallel
        if (isinstance(update_lanes, bool) or not isinstance(update_lanes, (int, np.integer))
                or not 1 <= update_lanes <= parallel or parallel % update_lanes):
            raise ConfigError(f"update lanes must divide the {parallel} MAC lanes (1..{parallel}), "
                              f"got {update_lanes!r}")
        self.update_lanes = int(update_lanes)
        hw_modules = hw_module_names()
        if not top.isidentifier() or not top.isascii() or top in hw_modules or top in VERILOG_KEYWORDS:
            raise ConfigError(f"--top {top!r} is not a usable Verilog module name (an identifier that is neither a "
                              f"Verilog keyword nor one of the modules {', '.join(sorted(hw_modules))})")
        self.top = top
        self.parallel = int(parallel)
        self.learning = bool(learning)  # False: the same network as an inference-only datapath (no update logic)
        prog = self.program = lower(eng)
        raise_unsupported("rtl", prog)
        self.name = prog.name
        self.loss = prog.loss
        self.sizes = list(prog.sizes)
        self.num_classes = prog.num_classes
        self.table_bits = prog.table_bits
        self.range_bits = prog.range_bits
        self.seed = prog.seed
        self.rng = prog.rng
        if self.num_classes < 2:
            raise ConfigError("the datapath needs at least two classes")
        if not 1 <= self.table_bits <= 16:
            raise FormatError(f"table_bits {self.table_bits} out of range for a ROM (1..16)")
        self.layers: list[RtlLayer] = []
        for k, lp in enumerate(prog.layers):
            where = f"layer {lp.name}"
            if not 1 <= lp.n_in <= MAX_NEURONS or not 1 <= lp.n_out <= MAX_NEURONS:
                raise ConfigError(f"{where}: {lp.n_in} -> {lp.n_out} is out of range (1..{MAX_NEURONS} per side)")
            lanes = min(self.parallel, lp.n_out)
            groups = -(-lp.n_out // lanes)
            if lp.n_in * groups > MAX_WORDS:
                raise ConfigError(f"{where}: {lp.n_in * groups} weight words exceed the generator's limit "
                                  f"({MAX_WORDS}); use more parallel MAC units")
            if lp.accum.width > 64:
                raise FormatError(f"{where}: accumulator {lp.accum} wider than 64 bits")
            if lp.has_table and lp.act_fmt.frac < 0:
                raise FormatError(f"{where}: {lp.act} output format {lp.act_fmt} needs F >= 0")
            if lp.act == "hardtanh" and lp.accum.frac < 0:
                raise FormatError(f"{where}: hard-tanh needs an accumulator with F >= 0 (got {lp.accum})")
            if lp.is_output and lp.act_fmt.frac < 0:
                raise FormatError(f"output activation format {lp.act_fmt} needs F >= 0 (the target 1.0)")
            for t in ("weight", "bias"):
                if getattr(lp, t).width > 32:
                    raise FormatError(f"{where}: {t} format wider than 32 bits")
            self.layers.append(RtlLayer(lp=lp, lanes=lanes, W=prog.W[k], b=prog.b[k],
                                        rnd_state=int(prog.rnd_state[k]) & 0xFFFFFFFF,
                                        rng_states=prog.neuron_state[k] if self.rng == "neuron" else None,
                                        update_lanes=(uq := layer_update_lanes(lanes, self.parallel,
                                                                               self.update_lanes)),
                                        load_lanes=uq if self.learning and lp.code != RuleCode.SHALLOW else lanes))
        self.front = front_of(prog, self.layers[0].input)  # the frozen conv front end, or None (an MLP)
        self._lowrank(prog)

    def _lowrank(self, prog) -> None:
        """Trained feedback (docs/rtl.md "Trained LDFA feedback", "kp", "dldfa"): ldfa and kp with every layer of the
        rule, each layer k >= 1 keeping its factors Q P (kp: its B) in an el_feedback beside it that serves layer
        k - 1; dldfa with every hidden layer dldfa, each keeping its own Q P; refuse (one line) the rest."""
        lays = self.layers
        if not self.learning:
            return
        rules = [lay.lp.rule for lay in lays]
        trained = [r for r in rules[:-1] if r in LEARNED_FEEDBACK_RULES]
        rule = trained[0] if trained else None
        if rule is not None and any(r != rule for r in (rules[:-1] if rule == "dldfa" else rules)):
            raise ConfigError(f"the datapath builds {rule} only with every {'hidden ' if rule == 'dldfa' else ''}"
                              f"layer {rule} (rules: {', '.join(rules)})")
        for lay in lays:  # e.g. the output layer's kp B above drtp hidden layers: nothing would read it
            if lay.learns_feedback and lay.lp.rule != rule:
                raise ConfigError(f"layer {lay.name}: trained {lay.lp.rule} feedback has no generated datapath "
                                  f"beside hidden rules {', '.join(rules[:-1])}")
        if rule is None:
            return
        if self.front is not None:
            raise ConfigError(f"the datapath builds {rule} without a front end")
        for lay in (lays[:-1] if rule == "dldfa" else lays[1:]):
            q, p = lay.fb_q, lay.fb_p if rule != "kp" else lay.fb_q
            if "STOCH" in (q.rounding, p.rounding):
                words = "B" if rule == "kp" else "Q and P"
                raise FormatError(f"layer {lay.name}: {rule}'s {words} round RND or TRN in the datapath")
            B = np.asarray(lay.B, dtype=np.int64)
            if rule == "kp":
                lay.Q, lay.fb_at = B[:lay.n_in, :lay.n_out].copy(), lay.index - 1
                continue
            r = lay.ldfa_rank
            nq, m = (lay.n_out, self.num_classes) if rule == "dldfa" else (lay.n_in, lay.n_out)
            lay.Q, lay.Pf = B[:nq, :r].copy(), B[nq:nq + r, :m].copy()
            lay.fb_at = lay.index if rule == "dldfa" else lay.index - 1

    def fb_serving(self, k: int) -> RtlLayer | None:
        """The layer whose el_feedback observes layer k's output stream and serves its projection, or None."""
        return next((lay for lay in self.layers if lay.has_factors and lay.fb_at == k), None)

    def fb_u_format(self, lay: RtlLayer) -> FixedFormat:
        """The format of the signal u an el_feedback sends: the layer's error (ldfa, kp), the output error (dldfa)."""
        return self.layers[-1].error if lay.fb_at == lay.index else lay.error

    @property
    def has_p(self) -> bool:
        """Some el_feedback keeps a factor P (ldfa, dldfa; kp has none)."""
        return any(lay.Pf is not None for lay in self.layers)

    @property
    def has_factors(self) -> bool:
        return any(lay.has_factors for lay in self.layers)

    # ------------------------------------------------------------------------------------------------------------
    # memory images

    @staticmethod
    def _hex(values, width: int) -> str:
        digits = max(1, -(-width // 4))
        mask = (1 << width) - 1
        return "\n".join(f"{int(v) & mask:0{digits}x}" for v in values) + "\n"

    def weight_words(self, lay: RtlLayer, W: np.ndarray | None = None) -> list[int]:
        return layout.pack(lay.W if W is None else W, lay.lanes, lay.weight.width)

    def bias_words(self, lay: RtlLayer, b: np.ndarray | None = None) -> list[int]:
        return layout.pack(lay.b if b is None else b, lay.lanes, lay.bias.width)

    def fb_row_states(self, lay: RtlLayer) -> list[int]:
        return [int(r) for r in lay.fb_rows]

    # ------------------------------------------------------------------------------------------------------------
    # Verilog

    def layer_params(self, lay: RtlLayer) -> dict[str, Any]:
        k = lay.index
        out = self.layers[-1]
        p: dict[str, Any] = {
            "N_IN": lay.n_in, "N_OUT": lay.n_out, "P": lay.lanes, "UQ": lay.update_lanes, "NCLS": self.num_classes,
            **{f"R_{c.name}": int(c) for c in HW_RULE_CODES}, **{f"A_{c.name}": int(c) for c in HW_ACT_CODES},
            "TRAIN": int(self.learning), "UPD_MUL": "UPD_MUL",
            "RULE": int(lay.code) if self.learning else int(RuleCode.SHALLOW),
            "IS_OUT": int(lay.is_output), "LOSS": HW_LOSS_CODES[self.loss], "ACT": int(lay.act_code),
        }
        p.update(_fmt_params("X", lay.input, modes=False))
        p.update(_fmt_params("W", lay.weight))
        p.update(_fmt_params("B", lay.bias))
        p.update(_fmt_params("A", lay.accum))
        p.update(_fmt_params("Y", lay.act_fmt))
        p.update(_fmt_params("G", lay.deriv))
        p["YSAT_LO"], p["YSAT_HI"] = lay.table_sat
        p.update(_fmt_params("E", lay.error))
        p.update({"FBW": lay.feedback.width, "FBF": lay.feedback.frac,
                  "FB_LFSR": int(lay.fb_lfsr),
                  "EOW": out.error.width, "EOF": out.error.frac, "EOS": int(out.error.signed),
                  "LR": lay.lr_shift, "TB": self.table_bits, "RB": self.range_bits,
                  "RND_SEED": f"32'h{lay.rnd_state:08x}",
                  "W_INIT": f'"mem/w{k}.hex"', "B_INIT": f'"mem/b{k}.hex"', "T_INIT": f'"mem/t{k}.hex"',
                  "FB_INIT": f'"mem/fb{k}.hex"', "FBST_INIT": f'"mem/fbst{k}.hex"',
                  "FBW_INIT": f'"mem/fbw{k}.hex"'})
        up = self.fb_serving(k) if self.learning else None
        if up is not None:
            # the signal through an el_feedback: u (r rows; kp: u = delta, n_out rows) in its format, Q (kp: B) from
            # there -- the layer above's (ldfa, kp) or the layer's own (dldfa)
            uf = self.fb_u_format(up)
            p.update({f"R_{lay.code.name}": int(lay.code), "NPR": up.fb_rank, "FBW": up.fb_q.width, "FBF": up.fb_q.frac,
                      "EOW": uf.width, "EOF": uf.frac, "EOS": int(uf.signed)})
        if self.learning and "STOCH" in (lay.weight.rounding, lay.bias.rounding) and self.rng == "neuron":
            p.update({"RNG_NEURON": 1, "XS_MASK": f"1024'h{XS_MASK:x}",
                      "RNG_INIT": f"{lay.groups * lay.lanes * 32}'h{ring_init(lay.rng_states):x}"})
        elif self.learning and "STOCH" in (lay.weight.rounding, lay.bias.rounding):
            # one draw word per update sub-word: UQ draws, REM % UQ in the last group's partial sub-word
            q = lay.update_lanes
            mx, mf, mr = draw_masks(q, (lay.n_out - (lay.groups - 1) * lay.lanes) % q)
            p.update({"RND_MX": f"{lay.lanes * 1024}'h{mx:x}", "RND_MF": f"1024'h{mf:x}", "RND_MR": f"1024'h{mr:x}"})
        return p

    def feedback_params(self, lay: RtlLayer) -> dict[str, Any]:
        """The el_feedback of layer ``lay``: sizes, formats, learning rates, which words learn."""
        k = lay.index
        below = self.layers[lay.fb_at]
        direct = lay.fb_at == k  # dldfa: the source is the output error, x the layer's own output
        src_out = lay.is_output or direct
        p: dict[str, Any] = {
            "NQ": int(lay.Q.shape[0]), "R": lay.fb_rank, "M": lay.fb_m, "QP": below.lanes,
            "SPL": lay.fb_m if src_out else lay.lanes, "SG": 1 if src_out else lay.groups,
            "NCLS": self.num_classes}
        p.update(_fmt_params("X", lay.act_fmt if direct else lay.input, modes=False))
        p.update(_fmt_params("E", self.fb_u_format(lay)))
        p.update(_fmt_params("Q", lay.fb_q))
        if lay.Pf is not None:
            pf = lay.fb_p.with_(integer=lay.fb_p.integer - lay.ldfa_p_shift)  # P as the products read it
            p.update(_fmt_params("P", pf))
        if direct:  # Oja's a and rho in the hidden layer's error format, u in the output's
            p.update(_fmt_params("K", lay.error))
        if lay.Pf is None:  # kp: B at W's pace, a word of the layer below's lanes per cycle
            p.update({"HAS_P": 0, "QPAR": 1})
        p.update({"LR": lay.lr_shift, "PLR": lay.lr_shift - OJA_GAIN,
                  "LEARN_Q": int(bool(lay.fb_learn & FB_LEARN_Q)), "LEARN_P": int(bool(lay.fb_learn & FB_LEARN_P)),
                  "OJA_TGT": int(lay.oja_src == OJA_TARGET),
                  "Q_INIT": f'"mem/q{k}.hex"', "P_INIT": f'"mem/p{k}.hex"', "RAW": self.ports()["rd_addr"]})
        return p

    @property
    def has_softmax(self) -> bool:
        """Loss ce in a learning design: the output error comes from an el_softmax (docs/rtl.md "Loss ce")."""
        return self.learning and self.loss == "ce"

    def softmax_params(self) -> dict[str, Any]:
        """The el_softmax of a ce design: the logits' and the error's formats, the exp ROM, the exact widths."""
        out = self.layers[-1]
        sw = softmax_words(self.program)
        p: dict[str, Any] = {"NCLS": self.num_classes}
        p.update(_fmt_params("Y", out.act_fmt, modes=False))
        p.update({"TB": self.table_bits, "RB": self.range_bits, "XW": sw["exp"], "SW": sw["sum"], "NW": sw["num"],
                  "PF": sw["p_frac"]})
        p.update(_fmt_params("E", out.error))
        p["X_INIT"] = '"mem/exp.hex"'
        return p

    def q_words(self, lay: RtlLayer, Q: np.ndarray | None = None) -> list[int]:
        """Q^T in the served layer's word layout: word t*G + g = Q[g*P .. g*P+P-1, t] (P, G: the lanes and groups of
        the layer below for ldfa / kp, of the layer itself for dldfa)."""
        Q = lay.Q if Q is None else Q
        lanes = self.layers[lay.fb_at].lanes
        return [w for t in range(Q.shape[1]) for w in layout.pack(Q[:, t][None, :], lanes, lay.fb_q.width)]

    @property
    def label_width(self) -> int:
        return clog2(self.num_classes)

    @property
    def n_inputs(self) -> int:
        """Beats of a sample: the image's pixels with a front end, else the first layer's inputs."""
        return self.front.n_pixels if self.front else self.layers[0].n_in

    def ports(self) -> dict[str, int]:
        lays = self.layers
        return {
            "s_data": (self.front.input if self.front else lays[0].input).width,
            "s_label": self.label_width,
            "m_pred": self.label_width,
            "rd_layer": clog2(len(lays)),
            "rd_addr": max([clog2(lay.words) for lay in lays] + [clog2(len(self.q_words(lay))) for lay in lays
                           if lay.has_factors] + [clog2(lay.Pf.size) for lay in lays if lay.Pf is not None]),
            "rd_wdata": max(lay.lanes * lay.weight.width for lay in lays),
            "rd_bdata": max(lay.lanes * lay.bias.width for lay in lays),
            "wr_wdata": max(lay.load_lanes * lay.weight.width for lay in lays),
            "wr_bdata": max(lay.load_lanes * lay.bias.width for lay in lays),
            **({"rd_qdata": max(self.layers[lay.fb_at].lanes * lay.fb_q.width for lay in lays if lay.has_factors)}
               if self.has_factors else {}),
            **({"rd_pdata": max(lay.fb_p.width for lay in lays if lay.Pf is not None)} if self.has_p else {}),
        }

    def render_top(self) -> str:
        """The top level (hw/el_mlp.v.j2)."""
        return _ENV.get_template("el_mlp.v.j2").render(design=self, ports=self.ports())

    # ------------------------------------------------------------------------------------------------------------
    # cycle model (what the testbench measures against)

    def ideal_cycles(self, nnz: list[int], train: bool) -> int:
        """MAC operations of one sample / parallel lanes: forward nnz_k * n_out per layer, plus the same again
        for every layer that updates (rows with a non-zero input), plus C * n_out for the sdfa / dfa projection."""
        total = 0.0
        for lay, n in zip(self.layers, nnz):
            macs = n * lay.n_out
            total += macs / lay.lanes
            if train and lay.rule != "shallow":  # the update runs on the update lanes
                total += macs / lay.update_lanes
            if train and lay.rule in ("sdfa", "dfa"):  # the projection of the output error through B
                total += self.num_classes * lay.n_out / lay.lanes
            up = self.fb_serving(lay.index)
            if train and up is not None:  # u through Q (kp: B) of the layer above, or dldfa's own
                total += up.fb_rank * lay.n_out / lay.lanes
        if self.front is not None:  # the front end's MACs, one per cycle
            total += self.front.ideal_cycles
        return int(math.ceil(total))

    def meta(self) -> dict[str, Any]:
        return {
            "format": "edgelearn-rtl", "version": 1, "top": self.top, "network": self.name, "sizes": self.sizes,
            "loss": self.loss, "parallel": self.parallel, "update_lanes": self.update_lanes, "learning": self.learning,
            "seed": self.seed, "rng": self.rng,
            "ports": self.ports(), "n_inputs": self.n_inputs,
            **({"front": self.front.meta()} if self.front else {}),
            "table_bits": self.table_bits, "range_bits": self.range_bits,
            "layers": [{
                "name": l.name, "n_in": l.n_in, "n_out": l.n_out, "lanes": l.lanes, "update_lanes": l.update_lanes,
                "load_lanes": l.load_lanes,
                "groups": l.groups,
                "words": l.words, "rule": l.rule, "act": l.act, "lr_shift": l.lr_shift, "feedback_mode": l.fb_mode
                if l.rule in DIRECT_RULES else None, "rnd_state": l.rnd_state,
                "formats": {t: _spell(getattr(l, a)) for t, a in (
                    ("input", "input"), ("weight", "weight"), ("bias", "bias"), ("accum", "accum"),
                    ("act", "act_fmt"), ("deriv", "deriv"), ("error", "error"), ("feedback", "feedback"))},
                "memories": {"weights": f"mem/w{l.index}.hex", "biases": f"mem/b{l.index}.hex",
                             **({"table": f"mem/t{l.index}.hex"} if l.table is not None
                                and not (l.is_output and self.loss == "ce") else {}),
                             **({"exp_table": "mem/exp.hex"} if l.is_output and self.has_softmax else {}),
                             **({"feedback": f"mem/fbst{l.index}.hex" if l.fb_mode == "lfsr"
                                 else f"mem/fb{l.index}.hex" if l.rule == "drtp" else f"mem/fbw{l.index}.hex"}
                                if l.rule in DIRECT_RULES else {})},
                **({"factors": self._factors_meta(l)} if l.has_factors else {}),
            } for l in self.layers],
        }

    def _factors_meta(self, lay: RtlLayer) -> dict[str, Any]:
        below = self.layers[lay.fb_at]
        hp = lay.Pf is not None
        return {"rank": lay.fb_rank, "nq": int(lay.Q.shape[0]), "m": lay.fb_m, "q_lanes": below.lanes,
                "q_groups": below.groups, "q_words": lay.fb_rank * below.groups,
                "p_entries": int(lay.Pf.size) if hp else 0,
                "fb_learn": lay.fb_learn, "oja_target": lay.oja_src == OJA_TARGET,
                "formats": {"fb_q": _spell(lay.fb_q), **({"fb_p": _spell(lay.fb_p)} if hp else {})},
                "memories": {"q": f"mem/q{lay.index}.hex", **({"p": f"mem/p{lay.index}.hex"} if hp else {})}}

    # ------------------------------------------------------------------------------------------------------------

    def files(self) -> dict[str, str]:
        """Every generated file: relative path -> text."""
        out: dict[str, str] = {f"{self.top}.v": self.render_top()}
        for lay in self.layers:
            k = lay.index
            out[f"mem/w{k}.hex"] = self._hex(self.weight_words(lay), lay.lanes * lay.weight.width)
            out[f"mem/b{k}.hex"] = self._hex(self.bias_words(lay), lay.lanes * lay.bias.width)
            if lay.table is not None and lay.is_output and self.loss == "ce":  # the softmax's exp ROM
                if self.has_softmax:
                    out["mem/exp.hex"] = self._hex(lay.table, softmax_words(self.program)["exp"])
            elif lay.table is not None:
                out[f"mem/t{k}.hex"] = self._hex(lay.table, lay.act_fmt.width)
            if lay.rule in DIRECT_RULES:
                if lay.fb_mode == "lfsr":
                    out[f"mem/fbst{k}.hex"] = self._hex(self.fb_row_states(lay), 32)
                elif lay.rule == "drtp":  # one entry per read (the label's row)
                    out[f"mem/fb{k}.hex"] = self._hex(lay.B.ravel(), lay.feedback.width)
                else:  # sdfa / dfa: P entries of a row per read, word c*G + g
                    words = [w for c in range(self.num_classes)
                             for w in layout.pack(lay.B[c:c + 1], lay.lanes, lay.feedback.width)]
                    out[f"mem/fbw{k}.hex"] = self._hex(words, lay.lanes * lay.feedback.width)
        for lay in self.layers:
            if lay.has_factors:
                out[f"mem/q{lay.index}.hex"] = self._hex(self.q_words(lay), self.layers[lay.fb_at].lanes
                                                         * lay.fb_q.width)
                if lay.Pf is not None:
                    out[f"mem/p{lay.index}.hex"] = self._hex(lay.Pf.ravel(), lay.fb_p.width)
        hw_files = (HW_FILES + (HW_FRONT_FILES if self.front else ()) + (HW_FEEDBACK_FILES if self.has_factors else ())
                    + (HW_SOFTMAX_FILES if self.has_softmax else ()))
        if self.front:
            out.update(self.front.files(self._hex))
        for f in hw_files:
            out[f"hdl/{f}"] = (HW_DIR / f).read_text()
        out["filelist.f"] = _ENV.get_template("filelist.f.j2").render(hw_files=hw_files, top=self.top)
        out["design.json"] = json.dumps(self.meta(), indent=1) + "\n"
        return out


def _spell(f: FixedFormat) -> str:
    return f"{'' if f.signed else 'u'}fixed<{f.width},{f.integer},{f.rounding},{f.overflow}>"


def write_rtl(eng, out, *, parallel: int = 4, top: str = "el_mlp", learning: bool = True,
              update_lanes: int | None = None) -> RtlDesign:
    """Check that the engine's network can be built, then write the design into ``out`` (see module docstring).

    Files are written to a temporary folder beside ``out`` and moved into place, so a failure leaves nothing
    half-written."""
    design = RtlDesign(eng, parallel=parallel, top=top, learning=learning, update_lanes=update_lanes)
    files = design.files()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        for rel, text in files.items():
            p = tmp / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text)
    except BaseException:  # a full disk, Ctrl-C: no half-written folder left beside ``out``, ``out`` untouched
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        for rel in files:  # replace the generated files, keep anything else (e.g. simulation builds)
            dst = out / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            (tmp / rel).replace(dst)
        shutil.rmtree(tmp)
    else:
        tmp.replace(out)
    return design
