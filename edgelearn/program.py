"""The lowered on-chip learning program: what every back end of an MLP runs, defined once.

The fixed-point engine (``edgelearn.fixed``), its float twin, the HLS learning kernel (``edgelearn.hls.kernel``) and
the generated Verilog datapath (``edgelearn.rtl.generate``) all run the same per-sample program.  This module holds
its vocabulary -- rule and activation codes, LFSR stream numbers, the feedback row-state formula, which back end
supports which network -- and the lowered records: :class:`LayerProgram` per trainable layer and :class:`Program`
(the layers, the learning schedule as an ordered list of :class:`Step`, and the state the program starts from).
``edgelearn.fixed.lower.lower(engine)`` builds a :class:`Program` from an engine; the back ends read nothing else.

A leaf: numpy and the standard library only, so every part of the package can import it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import numpy as np


class RuleCode(IntEnum):
    """How a trainable layer learns: one numbering for the engine, the C++ kernel and the Verilog."""

    BP = 0
    FA = 1
    DFA = 2
    SDFA = 3
    DRTP = 4
    SHALLOW = 5   # frozen (a hidden layer at its random init; also every layer of an inference-only datapath)
    LDFA = 6
    OUTPUT = 7    # the output layer: learns from its own error, whatever the network's rule
    KP = 8        # fa whose feedback B gets the forward weight's increment
    DLDFA = 9     # direct low-rank feedback Q P of the output error


class ActCode(IntEnum):
    NONE = 0
    TANH = 1
    SIGMOID = 2
    HARDTANH = 3
    RELU = 4


def rule_code(name: str) -> RuleCode:
    return RuleCode[name.upper()]


def act_code(name: str) -> ActCode:
    return ActCode[name.upper()]


ACT_NAMES = tuple(a.name.lower() for a in ActCode)
#: activations read from a ROM table (docs/arithmetic.md section 11); their derivative comes from the table entry
TABLE_ACTS = ("tanh", "sigmoid")
#: hidden rules whose signal is a random projection B (n_classes x n_out) of the label or the output error
DIRECT_RULES = ("drtp", "sdfa", "dfa")

#: rules whose feedback learns on chip (docs/arithmetic.md §16): kp's B; ldfa's and dldfa's factors Q and P
LEARNED_FEEDBACK_RULES = ("kp", "ldfa", "dldfa")
#: FB_LEARN bits of a layer: its B / Q learns, its P learns (Oja)
FB_LEARN_Q, FB_LEARN_P = 1, 2
#: the error P's online Oja step reads (docs/arithmetic.md §16): the layer's own delta, the one-hot target (ldfa at
#: the output layer, the float rule's default), the output error (dldfa)
OJA_OWN, OJA_TARGET, OJA_OUTPUT = 0, 1, 2
#: P's Oja step takes 2**OJA_GAIN times the layer's learning rate: it reads the source normalised to a maximum
#: |component| in [1/4, 1/2), where the float rule's C / max(diag C) has a maximum diagonal of 1 (a factor 4**2)
OJA_GAIN = 4

#: LFSR stream numbers (``lfsr.derive_seed(seed, stream + k)`` for layer k): the feedback matrix, the stochastic
#: rounding of the weight updates, ldfa's second factor P
FEEDBACK_STREAM, ROUNDING_STREAM, LDFA_P_STREAM = 16, 32, 48
#: the same two streams of a learning conv layer, front-end layer j (docs/arithmetic.md §15a): ``stream + j``
CONV_FEEDBACK_STREAM, CONV_ROUNDING_STREAM = 64, 80


def row_start_steps(row: int, cols: int, width: int) -> int:
    """LFSR steps from the start of a row-major (rows, cols) matrix of ``width``-bit draws to the start of ``row``:
    the offset a back end jumps by to regenerate one row of a feedback matrix without storing it."""
    return int(row) * int(cols) * int(width)


def sample_order(seed: int, epoch: int, n: int, shuffle: bool = True) -> np.ndarray:
    """The order samples are visited in epoch ``epoch`` (the engine and its float twin)."""
    if not shuffle:
        return np.arange(n, dtype=np.int64)
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x5EED, int(epoch)]).permutation(n).astype(np.int64)


# ----------------------------------------------------------------------------------------------------------------
# which back end supports which network (the refusals of every back end read this table)


@dataclass(frozen=True)
class Support:
    """What one back end implements."""

    name: str                    # as the back end's errors spell it
    lacks: str                   # how its errors say it lacks a rule
    hidden_rules: tuple[str, ...]
    acts: tuple[str, ...]
    layer_types: tuple[str, ...]
    losses: tuple[str, ...] = ("bce", "mse")
    update_format: bool = True   # a separate format for the increments (``update``)
    lr_mult: bool = True         # a learning-rate multiplier beside the power-of-two shift
    minibatch: bool = True
    why: str = ""                # why a hidden rule it lacks is missing
    conv_rules: tuple[str, ...] = ("shallow",)  # rules a conv2d layer may have (shallow: frozen kernels)


SUPPORT: dict[str, Support] = {
    "engine": Support("the fixed-point engine", "is not supported by the fixed-point engine",
                      ("drtp", "sdfa", "dfa", "fa", "bp", "shallow", "ldfa", "kp", "dldfa"), ACT_NAMES,
                      ("linear", "flatten", "conv2d", "maxpool", "avgpool"),
                      losses=("bce", "mse", "ce"), conv_rules=("shallow", "drtp", "dfa", "sdfa")),
    # the kernel learns one sample per call; a minibatch engine is exported with its state and stepped online
    "hls": Support("the HLS learning kernel", "is not implemented by the HLS learning kernel",
                   ("drtp", "sdfa", "dfa", "shallow", "ldfa", "kp", "dldfa"), ACT_NAMES,
                   ("linear", "flatten", "conv2d", "maxpool", "avgpool"),
                   losses=("bce", "mse", "ce"),
                   why="bp/fa need the transposed weights of the layer above, which the kernel does not keep"),
    "rtl": Support("the generated datapath", "has no generated datapath",
                   ("drtp", "sdfa", "dfa", "shallow", "ldfa", "kp", "dldfa"),
                   ACT_NAMES, ("linear", "flatten", "conv2d", "maxpool", "avgpool"), losses=("bce", "mse", "ce"),
                   update_format=False, lr_mult=False, minibatch=False,
                   why="bp/fa need the transposed weights of the layer above (kp keeps its own B)"),
}


def unsupported(backend: str, prog: "Program") -> list[tuple[str, str]]:
    """What ``backend`` lacks to run ``prog``: (kind, one-line reason) pairs, kind one of ``layer``, ``loss``,
    ``minibatch``, ``rule``, ``act``, ``update``, ``lr_mult`` (each back end raises its own error for the first)."""
    s = SUPPORT[backend]
    out = []
    for lay in prog.front:
        if lay["type"] not in s.layer_types:
            out.append(("layer", f"{prog.name}: layer {lay['name']}: {lay['type']} layers are not implemented by "
                                 f"{s.name} (it runs {', '.join(s.layer_types)} layers)"))
        elif lay.get("rule", "shallow") not in s.conv_rules:
            out.append(("rule", f"{prog.name}: layer {lay['name']}: {s.name} does not learn conv kernels (rule "
                                f"{lay['rule']!r}; conv layers: {', '.join(s.conv_rules)})"))
    if prog.loss not in s.losses:
        out.append(("loss", f"{prog.name}: loss {prog.loss!r} is not supported by {s.name} "
                            f"({' or '.join(s.losses)})"))
    if not s.minibatch and (prog.meta.get("mode", "online") != "online" or prog.meta.get("batch_size", 1) != 1):
        out.append(("minibatch", f"{s.name} learns online (one sample at a time); the engine is in minibatch mode"))
    for lay in prog.layers:
        where = f"layer {lay.name}"
        if not lay.is_output and lay.rule not in s.hidden_rules:
            out.append(("rule", f"{where}: rule {lay.rule!r} {s.lacks} (hidden layers: "
                                f"{', '.join(s.hidden_rules)}{'; ' + s.why if s.why else ''})"))
        if lay.act not in s.acts:
            out.append(("act", f"{where}: activation {lay.act!r} is not supported by {s.name}"))
        if lay.update is not None and not s.update_format:
            out.append(("update", f"{where}: {s.name} has no separate update format (drop 'update')"))
        if lay.mult_raw is not None and not s.lr_mult:
            out.append(("lr_mult", f"{where}: {s.name} has no learning-rate multiplier (power-of-two lr_shift "
                                   f"only)"))
    return out


def support_matrix() -> dict[str, dict[str, bool]]:
    """rule -> back end -> supported on a hidden layer (docs/architecture.md prints it)."""
    rules = [r.name.lower() for r in RuleCode if r not in (RuleCode.OUTPUT,)]
    return {r: {b: r in s.hidden_rules for b, s in SUPPORT.items()} for r in rules}


# ----------------------------------------------------------------------------------------------------------------
# word bounds (every back end sizes its words from these)


def max_abs(width: int, signed: bool) -> int:
    """Largest |raw| of a ``width``-bit word."""
    return (1 << (width - 1)) if signed else (1 << width) - 1


def signed_bits(v: int) -> int:
    """Width of a signed word holding every integer in [-v, v]."""
    return int(v).bit_length() + 1


def fmt_max(f) -> int:
    return max_abs(f.width, f.signed)


# ----------------------------------------------------------------------------------------------------------------
# the lowered records


@dataclass
class LayerProgram:
    """One trainable layer as every back end runs it (formats are ``FixedFormat`` objects, resolved)."""

    index: int
    name: str
    n_in: int
    n_out: int
    rule: str              # the layer's rule ("output" for the output layer, see ``code``)
    code: RuleCode
    act: str
    act_code: ActCode
    is_output: bool
    input: Any
    weight: Any
    bias: Any
    accum: Any
    act_fmt: Any
    deriv: Any
    error: Any
    update: Any | None
    feedback: Any
    lr_shift: int
    mult_raw: int | None      # learning-rate multiplier (raw) and its frac bits, None: none
    mult_frac: int
    mult_fmt: Any | None
    need_g: bool              # the layer needs f'(z) (hidden layers that learn; the output under mse)
    table: np.ndarray | None  # tanh / sigmoid ROM (raw act_fmt words)
    fb_mode: str | None       # "stored" / "lfsr" for direct rules, "stored" for fa / ldfa, None without feedback
    fb_shape: tuple[int, int] | None
    fb_seed: int | None
    fb_rows: np.ndarray | None  # LFSR state at the start of each row of B (regenerated feedback)
    B: np.ndarray | None        # the feedback values (raw, feedback format) when the program starts
    ldfa_rank: int = 0
    ldfa_p_shift: int = 0
    ldfa_p_seed: int | None = None
    #: feedback that learns on chip (docs/arithmetic.md §16): FB_LEARN_* bits, the formats of B / Q (fb_q) and P
    #: (fb_p), and the error P's Oja step reads (OJA_*)
    fb_learn: int = 0
    fb_q: Any = None
    fb_p: Any = None
    oja_src: int = OJA_OWN
    #: ``(lo, hi)``: a table output ``t <= lo`` or ``t >= hi`` (raw) reads as saturated and f' is exactly 0 there
    #: (docs/arithmetic.md §11, ``activations.table_sat_bounds``); ``(0, 0)`` without a table
    table_sat: tuple[int, int] = (0, 0)

    @property
    def learns_feedback(self) -> bool:
        return self.fb_learn != 0

    @property
    def has_table(self) -> bool:
        return self.act in TABLE_ACTS

    @property
    def role(self) -> str:
        """The rule as the hardware back ends name it: "output" for the output layer."""
        return "output" if self.is_output else self.rule

    @property
    def direct(self) -> bool:
        """A hidden layer whose signal is the random projection B of the label or the output error."""
        return not self.is_output and self.rule in DIRECT_RULES

    @property
    def fb_lfsr(self) -> bool:
        return self.direct and self.fb_mode == "lfsr"

    @property
    def learns(self) -> bool:
        return self.code != RuleCode.SHALLOW

    # ---- bounds of the update words, derived once for every back end
    @property
    def mult_max(self) -> int:
        return abs(self.mult_raw) if self.mult_raw is not None else 1

    @property
    def dm_frac(self) -> int:
        """Fractional bits of the scaled error dm = delta * multiplier."""
        return self.error.frac + (self.mult_frac if self.mult_raw is not None else 0)

    @property
    def bias_inc_max(self) -> int:
        """Largest |dm| (the bias increment before the learning-rate shift)."""
        return fmt_max(self.error) * self.mult_max

    @property
    def weight_inc_max(self) -> int:
        """Largest |dm * x| (the weight increment before the learning-rate shift)."""
        return self.bias_inc_max * fmt_max(self.input)

    def shift_to(self, u_frac: int, dst) -> int:
        """Bits dropped when an increment with ``u_frac`` fractional bits, times 2**-lr_shift, meets dst's LSB."""
        return u_frac + self.lr_shift - dst.frac


class StepOp(IntEnum):
    FORWARD = 0        # pre-activation and activation of layer k
    INJECT_DRTP = 1    # DRTP's signal of layer k from the label alone (during the forward pass)
    PREDICT = 2        # argmax of the output pre-activation (before any update of the output layer)
    OUTPUT_ERROR = 3   # the output layer's error
    HIDDEN_SIGNAL = 4  # layer k's modulatory signal from the output error / the layer above
    UPDATE = 5         # layer k's weights and biases (online) or its increments (minibatch)
    FEEDBACK = 6       # layer k's trained feedback (kp's B, ldfa's Q and P), right before its update


@dataclass(frozen=True)
class Step:
    op: StepOp
    layer: int = -1

    def __str__(self) -> str:
        return self.op.name.lower() + (f"({self.layer})" if self.layer >= 0 else "")


def schedule(codes: list[RuleCode], learn_fb: list[bool] | None = None) -> list[Step]:
    """The per-sample learning schedule of layers with these codes (docs/engine.md "Order of operations"):
    forward layer by layer, a DRTP layer learning right after it ran; the prediction; the output error; the other
    hidden signals top-down, before any of those layers updates; the updates top-down, each preceded by the layer's
    feedback step where its feedback learns (``learn_fb[k]``; it reads the layer's pre-update factors only)."""
    learn_fb = learn_fb or [False] * len(codes)
    L = len(codes)
    steps: list[Step] = []
    for k, c in enumerate(codes):
        steps.append(Step(StepOp.FORWARD, k))
        if c == RuleCode.DRTP:
            steps += [Step(StepOp.INJECT_DRTP, k), Step(StepOp.UPDATE, k)]
    steps += [Step(StepOp.PREDICT), Step(StepOp.OUTPUT_ERROR, L - 1)]
    for k in range(L - 2, -1, -1):
        if codes[k] not in (RuleCode.DRTP, RuleCode.SHALLOW):
            steps.append(Step(StepOp.HIDDEN_SIGNAL, k))
    for k in range(L - 1, -1, -1):
        if learn_fb[k]:
            steps.append(Step(StepOp.FEEDBACK, k))
        if codes[k] not in (RuleCode.DRTP, RuleCode.SHALLOW):
            steps.append(Step(StepOp.UPDATE, k))
    return steps


def layers_schedule(layers: list[LayerProgram]) -> list[Step]:
    """The schedule of lowered layers (their codes and which feedback learns)."""
    return schedule([lay.code for lay in layers], [lay.learns_feedback for lay in layers])


def schedule_array(steps: list[Step]) -> np.ndarray:
    """The schedule as an int64 (n, 2) array of (op, layer), for the compiled kernels."""
    return np.array([(int(s.op), s.layer) for s in steps], dtype=np.int64).reshape(-1, 2)


#: sources of the stochastic-rounding draws (docs/arithmetic.md §9a): one LFSR per learning layer, or one xorshift32
#: generator per output neuron; and the default
RNG_MODES = ("layer", "neuron")
DEFAULT_RNG = "layer"


@dataclass
class Program:
    """A lowered network: its layers, its per-sample schedule and the state it starts from."""

    name: str
    loss: str
    sizes: list[int]
    layers: list[LayerProgram]
    steps: list[Step]
    table_bits: int
    range_bits: int
    seed: int
    feedback_mode: str
    W: list[np.ndarray]          # raw int64 (n_in, n_out) per layer
    b: list[np.ndarray]
    rnd_state: np.ndarray        # LFSR state of each layer's stochastic-rounding stream (rng: layer)
    meta: dict[str, Any] = field(default_factory=dict)
    #: source of the STOCH draws (RNG_MODES, docs/arithmetic.md §9a)
    rng: str = DEFAULT_RNG
    #: rng: neuron: per layer the int64 (n_out,) xorshift32 states of its output neurons (kept under rng: layer too)
    neuron_state: list[np.ndarray] = field(default_factory=list)
    #: the front end before the linear layers, one dict per layer (lower.lower_front: geometry, formats, raw
    #: kernels and biases, activation ROM); empty for an MLP
    front: list[dict[str, Any]] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return self.sizes[-1]

    @property
    def output(self) -> LayerProgram:
        return self.layers[-1]


# ----------------------------------------------------------------------------------------------------------------
# the golden trace: the engine's run of a sample sequence, what the HLS and RTL checks compare against


@dataclass
class GoldenTrace:
    """Per sample: the inputs (raw), label, train flag, output pre-activation and prediction *before* the sample's
    update, the non-zero inputs of every layer; at the snapshot samples every weight and bias after the update;
    the rounding streams' LFSR states at the end, and (``neuron_state``) every layer's per-neuron xorshift32 states
    at the end (docs/arithmetic.md §9a; what rng: neuron back ends compare)."""

    X: np.ndarray
    labels: np.ndarray
    train: np.ndarray
    outputs: np.ndarray          # (N, C) raw
    preds: np.ndarray
    snap: np.ndarray             # sample indices of the snapshots
    W: list[np.ndarray]          # per layer (S, n_in, n_out)
    b: list[np.ndarray]          # per layer (S, n_out)
    nnz: list[np.ndarray]        # per layer (N,)
    rnd_state: np.ndarray
    neuron_state: list[np.ndarray] = field(default_factory=list)  # per layer (n_out,) int64
    #: a network with a front end: per sample the front end's raw output (the first linear layer's input), computed
    #: before the sample's update; (N, 0) for an MLP
    front_out: np.ndarray | None = None
    #: per layer whose feedback learns on chip, at the snapshot samples its packed feedback words (S, rows, cols)
    #: (kp's B, ldfa's Q over P, as ``FixedEngine.B``); None for the other layers
    fb: list[np.ndarray | None] = field(default_factory=list)

    def to_arrays(self) -> dict[str, np.ndarray]:
        out = {"X": self.X, "labels": self.labels, "train": self.train.astype(np.int64), "outputs": self.outputs,
               "preds": self.preds, "snap": self.snap, "rnd_state": self.rnd_state}
        for k in range(len(self.W)):
            out[f"W{k}"], out[f"b{k}"], out[f"nnz{k}"] = self.W[k], self.b[k], self.nnz[k]
        for k, ns in enumerate(self.neuron_state):
            out[f"ns{k}"] = ns
        if self.front_out is not None and self.front_out.size:
            out["front_out"] = self.front_out
        for k, fb in enumerate(self.fb):
            if fb is not None:
                out[f"fb{k}"] = fb
        return out

    @classmethod
    def from_arrays(cls, d) -> "GoldenTrace":
        L = sum(1 for key in d if str(key).startswith("nnz"))
        return cls(X=d["X"], labels=d["labels"], train=np.asarray(d["train"]).astype(bool), outputs=d["outputs"],
                   preds=d["preds"], snap=d["snap"], W=[d[f"W{k}"] for k in range(L)],
                   b=[d[f"b{k}"] for k in range(L)], nnz=[d[f"nnz{k}"] for k in range(L)], rnd_state=d["rnd_state"],
                   neuron_state=[d[f"ns{k}"] for k in range(L) if f"ns{k}" in d],
                   front_out=d["front_out"] if "front_out" in d else None,
                   fb=[d[f"fb{k}"] if f"fb{k}" in d else None for k in range(L)])

    def save(self, path) -> None:
        np.savez(path, **self.to_arrays())

    @classmethod
    def load(cls, path) -> "GoldenTrace":
        with np.load(path) as z:
            return cls.from_arrays({k: z[k] for k in z.files})
