"""The bit-accurate fixed-point learning engine for MLPs (Numba).

    from edgelearn.fixed.engine import FixedEngine
    eng = FixedEngine(spec, bits=8, seed=0)          # spec: a NetworkSpec (default: the embedded digits MLP)
    eng.fit(x_train, y_train, epochs=1, mode="online")
    eng.evaluate(x_test, y_test)                      # accuracy in [0, 1]
    eng.counters                                      # {layer: {tensor: {"overflow": n, "zero": n}}}
    eng.save("weights.npz")                           # raw ints + formats + network (engine_io.py)
    twin = eng.float_twin()                           # the same algorithm in float64 (twin.py), same init

Everything the engine computes is defined by docs/arithmetic.md (primitives) and docs/engine.md (order of
operations, draw schedule, learning rule per layer).
"""
from __future__ import annotations

import math
import time
from typing import Any, Callable

import numba
import numpy as np
from numba.typed import List

from ..errors import ConfigError, DataError, FormatError, RuleError
from . import engine_kernels as K
from .activations import sigmoid_table, tanh_table
from .formats import OVERFLOW, ROUNDING, AccumulatorFormat, FixedFormat
from .lfsr import derive_seed, lfsr_matrix, seed_state
from .precision import Precision, bits_for, max_abs_raw, resolve_precision

SUPPORTED_RULES = ("drtp", "sdfa", "dfa", "fa", "bp", "shallow", "ldfa")
RULE_CODES = {"bp": K.R_BP, "fa": K.R_FA, "dfa": K.R_DFA, "sdfa": K.R_SDFA, "drtp": K.R_DRTP, "shallow": K.R_SHALLOW,
              "ldfa": K.R_LDFA}
ACT_CODES = {"none": K.ACT_NONE, "tanh": K.ACT_TANH, "sigmoid": K.ACT_SIGMOID, "hardtanh": K.ACT_HARDTANH,
             "relu": K.ACT_RELU}
TENSOR_NAMES = ("input", "weight", "bias", "accum", "act", "deriv", "error", "update")
#: LFSR stream numbers (derive_seed(seed, stream)): feedback matrix of layer k, stochastic rounding of layer k
FEEDBACK_STREAM, ROUNDING_STREAM, LDFA_P_STREAM = 16, 32, 48
INT64_LIMIT = (1 << 63) - 1


def check_spec(spec) -> None:
    """Raise ConfigError/RuleError if the engine cannot run this network."""
    if not spec.is_mlp():
        kinds = sorted({layer.type for layer in spec.layers if layer.type not in ("linear", "flatten")})
        raise ConfigError(f"{spec.name}: the fixed-point engine runs MLPs (flatten + linear layers); "
                          f"this network has {', '.join(kinds) or 'a non-linear last layer'}")
    if spec.task != "classification":
        raise ConfigError(f"{spec.name}: the fixed-point engine runs classification networks (task is {spec.task})")
    if spec.loss not in ("bce", "mse"):
        raise ConfigError(f"{spec.name}: loss {spec.loss!r} is not supported by the fixed-point engine "
                          f"(bce with sigmoid outputs, or mse)")
    lin = spec.trainable_layers
    for k, layer in enumerate(lin):
        act = layer.params.get("act", "none")
        if act not in ACT_CODES:
            raise ConfigError(f"{spec.name}: layer {layer.name}: activation {act!r} is not supported by the "
                              f"fixed-point engine ({', '.join(ACT_CODES)})")
        rule = spec.layer_rule(layer)
        if rule not in SUPPORTED_RULES:
            raise RuleError(f"rule {rule!r} (layer {layer.name}) is not supported by the fixed-point engine; "
                            f"choose one of {', '.join(SUPPORTED_RULES)}")
        explicit = layer.name in spec.rules or str(k) in spec.rules
        if rule == "shallow" and k == len(lin) - 1 and explicit:
            raise RuleError(f"rule 'shallow' freezes hidden layers; {layer.name!r} is the output layer, "
                            f"which is always trained")


def sample_order(seed: int, epoch: int, n: int, shuffle: bool = True) -> np.ndarray:
    """The order samples are visited in epoch ``epoch`` (shared by the engine and its float twin)."""
    if not shuffle:
        return np.arange(n, dtype=np.int64)
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x5EED, int(epoch)]).permutation(n).astype(np.int64)


def _storage_dtype(fmts: list[FixedFormat]):
    lo = min(-(1 << (f.width - 1)) if f.signed else 0 for f in fmts)
    hi = max((1 << (f.width - 1)) - 1 if f.signed else (1 << f.width) - 1 for f in fmts)
    for dt in (np.int8, np.int16, np.int32, np.int64):
        info = np.iinfo(dt)
        if info.min <= lo and hi <= info.max:
            return dt
    return np.int64  # pragma: no cover


_JUMP_CACHE: dict[int, np.ndarray] = {}


def jump_table(draws: int) -> np.ndarray:
    """Byte-sliced table (4, 256) of the LFSR state map 'advance by ``draws`` 32-bit draws' (GF(2)-linear):
    the state after the jump is the XOR of ``T[b, byte_b(state)]``.  Built from lfsr.lfsr_jump."""
    if draws not in _JUMP_CACHE:
        from .lfsr import byte_slice_table, lfsr_jump

        _JUMP_CACHE[draws] = byte_slice_table([lfsr_jump(1 << j, 32 * draws) for j in range(32)])
    return _JUMP_CACHE[draws]


def _fmt_cols(f: FixedFormat) -> list[int]:
    return [f.width, f.frac, int(f.signed), ROUNDING[f.rounding], OVERFLOW[f.overflow]]


class FixedEngine:
    """Bit-accurate fixed-point MLP learner (see module docstring)."""

    def __init__(self, spec=None, *, bits: int | None = None, seed: int = 0, rule: str | None = None,
                 formats: dict[str, str] | None = None, rounding=None, overflow=None, lr_shift: int | None = None,
                 feedback: str | None = None, batch_size: int = 1, mode: str | None = None,
                 threads: int | None = None,
                 precision: Precision | None = None):
        if spec is None:
            from ..network import default_network
            spec = default_network()
        if rule is not None:
            spec = spec.with_rule(rule)
        check_spec(spec)
        self.spec = spec
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise ConfigError(f"seed must be an integer, got {seed!r}")
        self.seed = int(seed)
        self.precision = precision or resolve_precision(spec, bits=bits, formats=formats, rounding=rounding,
                                                        overflow=overflow, lr_shift=lr_shift, feedback_mode=feedback)
        self.bits = self.precision.bits
        self.sizes = spec.mlp_sizes()
        self.layer_names = [layer.name for layer in spec.trainable_layers]
        self.rules = [spec.layer_rule(layer) for layer in spec.trainable_layers]
        if self.rules[-1] == "shallow":  # a network-wide 'shallow' freezes the hidden layers; the output learns
            self.rules[-1] = "bp"
        self.acts = [layer.params.get("act", "none") for layer in spec.trainable_layers]
        if spec.loss == "bce":
            self.acts[-1] = "sigmoid"
        self.num_classes = self.sizes[-1]
        self.batch_size = self._check_batch(batch_size)
        self.mode = mode or ("online" if self.batch_size == 1 else "batch")
        if self.mode not in ("online", "batch"):
            raise ConfigError(f"mode must be 'online' or 'batch', got {self.mode!r}")
        if self.mode == "online" and self.batch_size != 1:
            raise ConfigError("online mode updates after every sample (batch_size must be 1)")
        # threads > 1: row-parallel weight updates of wide layers; both paths give the same bits and the engine
        # times them and runs the faster one ("auto", see _run); "on" / "off" force one
        self.threads = max(1, int(threads or 1))
        self.parallel = "auto"
        self._rates = {1: 0.0, self.threads: 0.0}  # samples/s last measured per block count
        self._probe_wait = 0  # chunks until the other path is timed again
        self._probe_gap = 1
        self._build_params()
        self._init_state()
        self.epochs_done = 0
        self.samples_seen = 0
        self.history: list[dict[str, Any]] = []

    # ------------------------------------------------------------------------------------------------------------
    # construction

    @staticmethod
    def _check_batch(batch_size) -> int:
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ConfigError(f"batch size must be a positive integer, got {batch_size!r}")
        return int(batch_size)

    @property
    def batch_shift(self) -> int:
        """Extra right shift of a minibatch update: ceil(log2(batch_size)) (the mean for powers of two)."""
        return max(0, math.ceil(math.log2(self.batch_size))) if self.batch_size > 1 else 0

    def ldfa_rank(self, k: int) -> int:
        """Rank r of layer k's ldfa feedback: ``rule_params.rank`` (a number, ``full``, or a mapping layer name ->
        rank with an optional ``default``; default 10), at most min(n_in, n_out)."""
        lp = self.precision.layers[k]
        rank = self.spec.rule_params.get("rank", 10)
        if isinstance(rank, dict):
            rank = rank.get(lp.name, rank.get("default", "full"))
        cap = min(lp.n_in, lp.n_out)
        if rank == "full":
            return cap
        if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or rank < 1:
            raise ConfigError(f"layer {lp.name}: ldfa rank must be a positive integer or 'full' in the fixed-point "
                              f"engine, got {rank!r}")
        return min(int(rank), cap)

    def ldfa_p_shift(self, k: int) -> int:
        """Extra fractional bits of layer k's ldfa factor P: round(log2(sqrt(n_out / 3))), at least 0, so that a
        row of uniform entries in [-1, 1) has about unit norm, as the float reference's orthonormal P rows do
        (docs/engine.md). Free in hardware: the binary point of P's products moves."""
        n_out = self.precision.layers[k].n_out
        return max(0, int(round(0.5 * math.log2(n_out / 3.0))))

    def _build_params(self) -> None:
        prec = self.precision
        L = len(prec.layers)
        P = np.zeros((L, K.NPARAM), dtype=np.int64)
        acc32 = True
        self._fb_shapes: list[tuple[int, int] | None] = []
        for k, lp in enumerate(prec.layers):
            where = f"layer {lp.name}"
            rule = self.rules[k]
            P[k, K.N_IN], P[k, K.N_OUT], P[k, K.F_X] = lp.n_in, lp.n_out, lp.input.frac
            P[k, K.W_W:K.O_W + 1] = _fmt_cols(lp.weight)
            P[k, K.W_B:K.O_B + 1] = _fmt_cols(lp.bias)
            P[k, K.W_A:K.O_A + 1] = _fmt_cols(lp.accum)
            P[k, K.W_Y:K.O_Y + 1] = _fmt_cols(lp.act)
            P[k, K.ACT] = ACT_CODES[self.acts[k]]
            P[k, K.W_G:K.O_G + 1] = _fmt_cols(lp.deriv)
            P[k, K.W_E:K.O_E + 1] = _fmt_cols(lp.error)
            if lp.update is not None:
                P[k, K.HAS_U] = 1
                P[k, K.W_U:K.O_U + 1] = _fmt_cols(lp.update)
            P[k, K.LR] = lp.lr_shift
            P[k, K.M_RAW], P[k, K.F_M] = (lp.lr_mult_raw, lp.lr_mult_frac) if lp.lr_mult is not None else (0, 0)
            P[k, K.RULE] = RULE_CODES[rule]
            P[k, K.W_FB], P[k, K.F_FB] = lp.feedback.width, lp.feedback.frac
            P[k, K.IS_OUT] = int(lp.is_output)
            P[k, K.TB], P[k, K.RB] = prec.table_bits, prec.range_bits
            P[k, K.LOSS] = 0 if self.spec.loss == "bce" else 1
            P[k, K.PROP_B] = (K.PROP_FA if rule == "fa" else K.PROP_LOWRANK if rule == "ldfa" else K.PROP_W) \
                if k > 0 else K.PROP_W
            stoch = any(f is not None and f.rounding == "STOCH" for f in (lp.weight, lp.bias, lp.update))
            P[k, K.STOCH_ANY] = int(stoch)
            direct = (not lp.is_output) and rule in ("drtp", "sdfa", "dfa")
            P[k, K.FB_LFSR] = int(direct and prec.feedback_mode == "lfsr")
            if direct:
                self._fb_shapes.append((self.num_classes, lp.n_out))
            elif rule == "fa" and k > 0:
                self._fb_shapes.append((lp.n_in, lp.n_out))
            elif rule == "ldfa" and k > 0:  # Q (n_in x r) over P (r x n_out), packed (engine_kernels.hidden_delta)
                r = self.ldfa_rank(k)
                self._fb_shapes.append((lp.n_in + r, max(r, lp.n_out)))
                P[k, K.LDFA_PS] = self.ldfa_p_shift(k)
            else:
                self._fb_shapes.append(None)
            # ---- accumulation path and worst cases (docs/engine.md "Range checks")
            path, shift, fits32 = self._acc_path(lp, where)
            P[k, K.ACC_PATH], P[k, K.ACC_SHIFT] = path, shift
            P[k, K.ACC32] = int(path == K.ACC_EXACT and fits32)
            P[k, K.SHORT_R] = K._short_rows(lp.n_out) if lp.n_out < K.SHORT_ROW else 1
            acc32 &= fits32
            self._check_ranges(k, lp, where)
        # fast weight/bias update eligibility (online, no update format)
        for k, lp in enumerate(prec.layers):
            s = lp.error.frac + (lp.lr_mult_frac if lp.lr_mult is not None else 0) + lp.input.frac + lp.lr_shift \
                - lp.weight.frac
            P[k, K.FAST_W] = int(lp.update is None and lp.weight.rounding in ("TRN", "RND", "STOCH")
                                 and lp.weight.overflow in ("WRAP", "SAT") and s <= 32)
            sb = s - lp.input.frac - lp.bias.frac + lp.weight.frac
            P[k, K.FAST_B] = int(lp.update is None and lp.bias.rounding in ("TRN", "RND", "STOCH")
                                 and lp.bias.overflow in ("WRAP", "SAT") and sb <= 32)
            P[k, K.FAST32_W] = int(P[k, K.FAST_W] != 0 and self._update_fits32(lp, s))
        self.P = P
        self.acc_dtype = np.int32 if acc32 else np.int64
        self.w_dtype = _storage_dtype([lp.weight for lp in prec.layers])
        fin = prec.layers[0].input
        self.x_dtype = np.int32 if (fin.width < 32 or (fin.width == 32 and fin.signed)) else np.int64

    @staticmethod
    def _update_fits32(lp, s: int) -> bool:
        """The online weight update runs in int32 (engine_kernels.update_rows32) when, from the formats, the
        increment dm*x (aligned: << -s when s <= 0) plus the STOCH/RND addend (< 2**s), the rounded increment d
        and w + d (+ 2**W of headroom for the WRAP arithmetic) all stay below 2**31, and 0 < s <= 30 or s <= 0."""
        lim = (1 << 31) - 1
        mult = abs(lp.lr_mult_raw) if lp.lr_mult is not None else 1
        umax = max_abs_raw(lp.error) * mult * max_abs_raw(lp.input)
        if s > 30:
            return False
        if s <= 0:
            umax <<= -s
            add = 0
            dmax = umax
        else:
            add = (1 << s) - 1
            dmax = ((umax + add) >> s) + 1
        return umax + add <= lim and max_abs_raw(lp.weight) + dmax + (1 << lp.weight.width) <= lim

    def _acc_path(self, lp, where: str) -> tuple[int, int, bool]:
        fp = lp.weight.frac + lp.input.frac
        fa = lp.accum.frac
        pmax = max_abs_raw(lp.weight) * max_abs_raw(lp.input)
        bmax = max_abs_raw(lp.bias)
        bconv = bmax << (fa - lp.bias.frac) if fa >= lp.bias.frac else (bmax >> (lp.bias.frac - fa)) + 1
        hi = (1 << (lp.accum.width - 1)) - 1 if lp.accum.signed else (1 << lp.accum.width) - 1
        n = lp.n_in
        # fast paths need a signed accumulator that no bias + n_in products can overflow (docs/engine.md)
        if lp.accum.signed and fa >= fp:
            total = bconv + n * (pmax << (fa - fp))
            if total <= hi:
                return K.ACC_EXACT, 0, n * pmax < (1 << 31)
        elif lp.accum.signed and lp.accum.rounding in ("TRN", "RND"):
            s = fp - fa
            per = (pmax >> s) + 1
            total = bconv + n * per
            if total <= hi and pmax + (1 << s) <= INT64_LIMIT:
                mode = K.ACC_SHIFT_TRN if lp.accum.rounding == "TRN" else K.ACC_SHIFT_RND
                return mode, s, n * per < (1 << 31) and pmax < (1 << 31)
        # general path: every acc += p assignment through arith.accumulate_counted; its exact intermediate must fit
        amax = max(hi, (1 << (lp.accum.width - 1)))
        need = (amax << (fp - fa)) + pmax if fp > fa else amax + (pmax << (fa - fp))
        if need > INT64_LIMIT or pmax > INT64_LIMIT:
            raise FormatError(
                f"{where}: the accumulator could overflow int64: an exact intermediate needs {bits_for(need)} bits "
                f"(weight {lp.weight} x input {lp.input}, {n} terms, accumulator {lp.accum}); use narrower "
                f"formats or an accumulator with fewer fractional bits")
        return K.ACC_GENERAL, 0, False

    def _check_ranges(self, k: int, lp, where: str) -> None:
        prec = self.precision
        lay = prec.layers

        def need(v: int, what: str) -> None:
            if v > INT64_LIMIT:
                raise FormatError(f"{where}: {what} could overflow int64 (needs {bits_for(v)} bits); "
                                  f"use narrower formats")

        act = self.acts[k]
        gmax = max_abs_raw(lp.deriv) if act in ("tanh", "sigmoid") else 1
        if act in ("tanh", "sigmoid") and (not lp.is_output or self.spec.loss == "mse"):
            if lp.act.frac < 0:
                raise FormatError(f"{where}: activation format {lp.act} needs F >= 0 for the table derivative")
            need(max(1 << (2 * lp.act.frac), max_abs_raw(lp.act) ** 2), f"the derivative of {act} ({lp.act})")
        emax = max_abs_raw(lp.error)
        if lp.is_output:
            gout = gmax if self.spec.loss == "mse" else 1
            need(((1 << max(lp.act.frac, 0)) + max_abs_raw(lp.act)) * gout, "the output error")
        else:
            rule = self.rules[k]
            C = self.num_classes
            fb = max_abs_raw(lp.feedback)
            out = lay[-1]
            if rule == "drtp":
                p = fb
            elif rule == "sdfa":
                p = C * fb
            elif rule == "dfa":
                p = C * fb * max_abs_raw(out.error)
            elif rule in ("bp", "fa", "ldfa"):
                up = lay[k + 1]
                if self.rules[k + 1] == "ldfa":  # u = P d_up (assigned to up.error), then p = Q u
                    need(up.n_out * max_abs_raw(up.feedback) * max_abs_raw(up.error), "the ldfa bottleneck signal")
                    p = self.ldfa_rank(k + 1) * max_abs_raw(up.feedback) * max_abs_raw(up.error)
                else:
                    m = max_abs_raw(up.feedback) if self.rules[k + 1] == "fa" else max_abs_raw(up.weight)
                    p = up.n_out * m * max_abs_raw(up.error)
            else:
                p = 0
            need(p * gmax, f"the modulatory signal of rule {rule}")
        mult = lp.lr_mult_raw if lp.lr_mult is not None else 1
        umax = emax * mult * max_abs_raw(lp.input) * self.batch_size
        need(umax, "the weight increment")
        ubias = emax * mult * self.batch_size
        for what, u, f_src, f in (("weight", umax, lp.error.frac + lp.input.frac, lp.weight),
                                  ("bias", ubias, lp.error.frac, lp.bias)):
            s = f_src + (lp.lr_mult_frac if lp.lr_mult is not None else 0) + lp.lr_shift - f.frac
            if s < 0:
                need(u << (-s), f"the {what} increment aligned to the {what} LSB")
            if lp.update is not None:
                need((max_abs_raw(f) << max(0, lp.update.frac - f.frac)) + (max_abs_raw(lp.update) << max(0, f.frac - lp.update.frac)),
                     f"the {what} + update sum")

    def _init_state(self) -> None:
        prec = self.precision
        rng = np.random.default_rng([self.seed & 0xFFFFFFFF, 0x1417])
        self.W: list[np.ndarray] = []
        self.b: list[np.ndarray] = []
        self.B: list[np.ndarray] = []
        self.fb_states: list[np.ndarray] = []
        self.tables: list[np.ndarray] = []
        for k, lp in enumerate(prec.layers):
            bound = math.sqrt(6.0 / lp.n_in)
            w0 = rng.uniform(-bound, bound, size=(lp.n_in, lp.n_out))
            init_fmt = lp.weight.with_(rounding="RND", overflow="SAT")
            self.W.append(init_fmt.quantize(w0).astype(self.w_dtype))
            self.b.append(np.zeros(lp.n_out, dtype=np.int64))
            shape = self._fb_shapes[k]
            fseed = derive_seed(self.seed, FEEDBACK_STREAM + k)
            if shape is None:
                self.B.append(np.zeros((1, 1), dtype=np.int64))
                self.fb_states.append(np.zeros(1, dtype=np.int64))
            elif self.rules[k] == "ldfa":  # stored factors: Q from the layer's feedback stream, P from its own
                r = shape[0] - lp.n_in
                packed = np.zeros(shape, dtype=np.int64)
                packed[:lp.n_in, :r] = lfsr_matrix(fseed, lp.n_in, r, lp.feedback.width)
                packed[lp.n_in:, :lp.n_out] = lfsr_matrix(derive_seed(self.seed, LDFA_P_STREAM + k), r, lp.n_out,
                                                          lp.feedback.width)
                self.B.append(packed)
                self.fb_states.append(np.zeros(1, dtype=np.int64))
            else:
                self.B.append(np.ascontiguousarray(lfsr_matrix(fseed, shape[0], shape[1], lp.feedback.width),
                                                   dtype=np.int64))
                self.fb_states.append(K.row_states(np.int64(seed_state(fseed)), shape[0], shape[1],
                                                   lp.feedback.width))
            if self.acts[k] == "tanh":
                self.tables.append(tanh_table(lp.act, prec.table_bits, prec.range_bits).astype(np.int64))
            elif self.acts[k] == "sigmoid":
                self.tables.append(sigmoid_table(lp.act, prec.table_bits, prec.range_bits).astype(np.int64))
            else:
                self.tables.append(np.zeros(1, dtype=np.int64))
        self.jump_tables = [self._jumps(lp.n_out) if self.P[k, K.STOCH_ANY] else np.zeros((1, 4, 256), np.int64)
                            for k, lp in enumerate(prec.layers)]
        self.rnd_state = np.array([seed_state(derive_seed(self.seed, ROUNDING_STREAM + k))
                                   for k in range(len(prec.layers))], dtype=np.int64)
        self.cnt = np.zeros((len(prec.layers), K.NTENSORS, 2), dtype=np.int64)
        self._alloc_work()

    def _jumps(self, n_out: int) -> np.ndarray:
        """Jump tables of one layer's stochastic-rounding stream: [0] a quarter row (the sequential kernel);
        with threads > 1 also [1] a row, [2:2+T] block offsets, [2+T:] a quarter block (the parallel kernel)."""
        tabs = [jump_table(n_out // 4)]
        T = self.threads
        if T > 1 and n_out >= 256:
            bsz = -(-n_out // T)
            lens = [max(0, min(n_out, (b + 1) * bsz) - b * bsz) for b in range(T)]
            tabs += [jump_table(n_out)] + [jump_table(b * bsz) for b in range(T)] + [jump_table(n // 4) for n in lens]
        return np.ascontiguousarray(np.stack(tabs))

    def _alloc_work(self) -> None:
        sizes = self.sizes
        L = len(sizes) - 1
        self._acts = List([np.zeros(n, dtype=np.int64) for n in sizes])
        self._zs = List([np.zeros(n, dtype=np.int64) for n in sizes[1:]])
        self._gs = List([np.zeros(n, dtype=np.int64) for n in sizes[1:]])
        self._ds = List([np.zeros(n, dtype=np.int64) for n in sizes[1:]])
        self._ps = List([np.zeros(n, dtype=np.int64) for n in sizes[1:]])
        self._bufs = List([np.zeros(n, dtype=np.int64) for n in sizes[1:]])
        self._nzs = List([np.zeros(n, dtype=np.int64) for n in sizes[:-1]])
        self._accs = List([np.zeros(n, dtype=self.acc_dtype) for n in sizes[1:]])
        if self.mode == "batch":
            self._Us = List([np.zeros((sizes[k], sizes[k + 1]), dtype=np.int64) for k in range(L)])
        else:
            self._Us = List([np.zeros((1, 1), dtype=np.int64) for k in range(L)])
        self._Ubs = List([np.zeros(n, dtype=np.int64) for n in sizes[1:]])
        self._touched = List([np.zeros(n, dtype=np.int64) for n in sizes[:-1]])
        self._in_batch = np.zeros(1, dtype=np.int64)
        # buffered stochastic-rounding streams (engine_kernels.stream_open): a cache of each layer's next draws,
        # rebuilt from rnd_state whenever it does not stand at rnd_state
        # (one stream per thread for the row-parallel update of wide layers, engine_kernels.update_rows32_par)
        parts = [self.threads if (self.threads > 1 and n >= K.SHORT_ROW) else 1 for n in sizes[1:]]
        self._dbufs = List([np.zeros((t, K.stream_size(n) if self.P[k, K.FAST32_W] else 1), dtype=np.uint32)
                            for k, (t, n) in enumerate(zip(parts, sizes[1:]))])
        self._dmetas = List([np.zeros((t, 5), dtype=np.int64) for t in parts])
        self._refresh_lists()

    def _refresh_lists(self) -> None:
        self._Ws = List(self.W)
        self._bs = List(self.b)
        self._Bs = List(self.B)
        self._fbst = List(self.fb_states)
        self._tables = List(self.tables)
        self._Js = List(self.jump_tables)

    # ------------------------------------------------------------------------------------------------------------
    # data

    def quantize_inputs(self, x, count: bool = True) -> np.ndarray:
        """Float inputs (N, *input_shape) -> raw ints of the input format (N, n_in); NaN/Inf raise DataError."""
        arr = np.asarray(x)
        if arr.ndim < 1:
            raise DataError("inputs must be an array of samples")
        n_in = self.sizes[0]
        if arr.ndim == 1:
            arr = arr[None]
        flat = arr.reshape(arr.shape[0], -1)
        if flat.shape[1] != n_in:
            raise DataError(f"inputs have {flat.shape[1]} features per sample, the network expects {n_in}")
        if not np.issubdtype(flat.dtype, np.number):
            raise DataError(f"inputs must be numeric, got dtype {flat.dtype}")
        flat = flat.astype(np.float64, copy=False)
        if not np.isfinite(flat).all():
            bad = int((~np.isfinite(flat)).sum())
            raise DataError(f"inputs contain {bad} NaN/Inf value(s); the fixed-point engine needs finite data")
        fmt = self.precision.layers[0].input
        raw = fmt.quantize(flat)
        if count:
            wide = AccumulatorFormat(min(fmt.width + 16, 64), fmt.integer + 16 - max(0, fmt.width + 16 - 64),
                                     fmt.signed, fmt.rounding, "SAT")
            rw = wide.quantize(flat)
            self.cnt[0, K.T_INPUT, 0] += int((rw != raw).sum())
            self.cnt[0, K.T_INPUT, 1] += int(((flat != 0) & (raw == 0)).sum())
        return np.ascontiguousarray(raw, dtype=self.x_dtype)

    def _labels(self, y, n: int) -> np.ndarray:
        lab = np.asarray(y)
        if lab.shape != (n,):
            raise DataError(f"labels must have shape ({n},), got {lab.shape}")
        if not np.issubdtype(lab.dtype, np.integer):
            if np.issubdtype(lab.dtype, np.floating) and np.all(np.isfinite(lab)) and np.all(lab == np.round(lab)):
                lab = lab.astype(np.int64)
            else:
                raise DataError("labels must be integer class indices")
        if n and (lab.min() < 0 or lab.max() >= self.num_classes):
            raise DataError(f"labels must be in 0..{self.num_classes - 1}, got {lab.min()}..{lab.max()}")
        return lab.astype(np.int64)

    # ------------------------------------------------------------------------------------------------------------
    # training

    #: samples of a chunk spent timing the path not in use (threads > 1, parallel "auto")
    PROBE = 64

    def _run(self, X: np.ndarray, labels: np.ndarray, order: np.ndarray, start: int, stop: int) -> int:
        """Train on order[start:stop].  With threads > 1 and parallel "auto" the row-parallel and the sequential
        update (bit-identical) are both timed: the sequential path first, then every few chunks up to PROBE
        samples on the path not in use, 4 at a time, given up once they have taken twice what the path in use
        needs for PROBE samples; the rest of the chunk runs on the faster one.  A losing probe doubles the gap
        to the next (up to 64 chunks).  On a busy machine the parallel path can take milliseconds per sample."""
        if self.threads <= 1 or self.parallel == "off":
            return self._run_blocks(X, labels, order, start, stop, 1)
        if self.parallel == "on":
            return self._run_blocks(X, labels, order, start, stop, self.threads)
        T, correct = self.threads, 0
        if self._rates[1] <= 0 and stop - start > 2 * self.PROBE:
            t = time.perf_counter()
            correct += self._run_blocks(X, labels, order, start, start + self.PROBE, 1)
            self._rates[1] = self.PROBE / max(time.perf_counter() - t, 1e-9)
            start += self.PROBE
        best = T if self._rates[T] > self._rates[1] else 1
        other = 1 if best == T else T
        if self._probe_wait <= 0 and self._rates[best] > 0 and stop - start > 2 * self.PROBE:
            limit = 2 * self.PROBE / self._rates[best]
            t = time.perf_counter()
            done = 0
            while done < self.PROBE and time.perf_counter() - t < limit:
                correct += self._run_blocks(X, labels, order, start + done, start + done + 4, other)
                done += 4
            self._rates[other] = done / max(time.perf_counter() - t, 1e-9)
            start += done
            won = self._rates[other] > self._rates[best]
            self._probe_gap = 1 if won else min(2 * self._probe_gap, 64)
            self._probe_wait = self._probe_gap
            if won:
                best = other
        self._probe_wait -= 1
        t = time.perf_counter()
        correct += self._run_blocks(X, labels, order, start, stop, best)
        if stop - start >= self.PROBE:
            self._rates[best] = (stop - start) / max(time.perf_counter() - t, 1e-9)
        return correct

    def _run_blocks(self, X: np.ndarray, labels: np.ndarray, order: np.ndarray, start: int, stop: int,
                    nblk: int) -> int:
        return int(K.train_samples(
            X, labels, order, start, stop, self.P, self._Ws, self._bs, self._Bs, self._fbst, self._tables,
            self._acts, self._zs, self._gs, self._ds, self._ps, self._bufs, self._nzs, self._accs, self._Us,
            self._Ubs, self._touched, self.rnd_state, self._Js, self.cnt, nblk, self.mode == "online", self.batch_size,
            self.batch_shift, self._in_batch, self._dbufs, self._dmetas))

    def flush(self) -> None:
        """Apply a partly accumulated minibatch (called at the end of every epoch in batch mode)."""
        if self.mode == "batch" and self._in_batch[0] > 0:
            K.apply_batch(self.P, self._Ws, self._bs, self._Us, self._Ubs, self._touched, self._nzs,
                          self.batch_shift, self.rnd_state, self._Js, self.cnt)
            self._in_batch[0] = 0

    def set_mode(self, mode: str = "online", batch_size: int | None = None) -> None:
        if mode not in ("online", "batch"):
            raise ConfigError(f"mode must be 'online' or 'batch', got {mode!r}")
        bsz = 1 if mode == "online" else self._check_batch(batch_size or self.spec.train.get("batch_size", 32))
        if bsz != self.batch_size or mode != self.mode:
            self.flush()
            self.batch_size = bsz
            self.mode = mode
            for k, lp in enumerate(self.precision.layers):
                self._check_ranges(k, lp, f"layer {lp.name}")
            self._alloc_work()

    def fit(self, x, y, epochs: int = 1, mode: str | None = None, batch_size: int | None = None,
            shuffle: bool = True, callback: Callable[[int], None] | None = None,
            chunk: int = 2000) -> list[dict[str, Any]]:
        """Train for ``epochs`` passes over (x, y); ``callback(n_samples_done)`` after every chunk.

        ``mode``: "online" (update after every sample) or "batch" (sum ``batch_size`` samples' increments in
        exact int64 accumulators, apply once); default: the engine's current mode."""
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
            raise ConfigError(f"epochs must be a non-negative integer, got {epochs!r}")
        if mode is not None:
            self.set_mode(mode, batch_size if batch_size is not None else (self.batch_size if mode == self.mode else None))
        X = self.quantize_inputs(x)
        labels = self._labels(y, X.shape[0])
        return self.fit_raw(X, labels, epochs, shuffle, callback, chunk)

    def fit_raw(self, X: np.ndarray, labels: np.ndarray, epochs: int = 1, shuffle: bool = True,
                callback: Callable[[int], None] | None = None, chunk: int = 2000) -> list[dict[str, Any]]:
        X = np.ascontiguousarray(X, dtype=self.x_dtype)
        N = X.shape[0]
        out = []
        for _ in range(epochs):
            order = sample_order(self.seed, self.epochs_done, N, shuffle)
            correct = 0
            for start in range(0, N, chunk):
                stop = min(N, start + chunk)
                correct += self._run(X, labels, order, start, stop)
                if callback is not None:
                    callback(stop - start)
            self.flush()
            self.epochs_done += 1
            self.samples_seen += N
            rec = {"epoch": self.epochs_done, "train_accuracy_online": correct / max(N, 1)}
            self.history.append(rec)
            out.append(rec)
        return out

    def step(self, x_raw, label: int) -> None:
        """One online update on one sample given as raw ints of the input format (shape (n_in,))."""
        X = np.ascontiguousarray(np.asarray(x_raw, dtype=np.int64).reshape(1, -1), dtype=self.x_dtype)
        if X.shape[1] != self.sizes[0]:
            raise DataError(f"step: the sample has {X.shape[1]} inputs, the network expects {self.sizes[0]}")
        if self.mode != "online":
            self.set_mode("online")
        lab = self._labels(np.array([label]), 1)
        self._run(X, lab, np.zeros(1, dtype=np.int64), 0, 1)
        self.samples_seen += 1

    # ------------------------------------------------------------------------------------------------------------
    # inference

    def output_raw(self, X_raw: np.ndarray) -> np.ndarray:
        """Raw output pre-activations (accumulator format of the output layer) for raw inputs."""
        X = np.ascontiguousarray(X_raw, dtype=self.x_dtype)
        out = np.zeros((X.shape[0], self.sizes[-1]), dtype=np.int64)
        if X.shape[0]:
            K.predict(X, self.P, self._Ws, self._bs, self._tables, out)
        return out

    def predict(self, x) -> np.ndarray:
        """Predicted classes (argmax of the output pre-activation; ties -> lowest index)."""
        return np.argmax(self.output_raw(self.quantize_inputs(x, count=False)), axis=1)

    def evaluate(self, x, y) -> float:
        pred = self.predict(x)
        lab = self._labels(y, pred.shape[0])
        return float((pred == lab).mean()) if len(lab) else float("nan")

    # ------------------------------------------------------------------------------------------------------------
    # state, counters, twin

    @property
    def counters(self) -> dict[str, dict[str, dict[str, int]]]:
        """Per layer, per tensor: ``overflow`` (saturation/wrap events) and ``zero`` (non-zero values -- for
        weight/bias: non-zero increments -- that rounded to 0)."""
        out: dict[str, dict[str, dict[str, int]]] = {}
        for k, name in enumerate(self.layer_names):
            d = {}
            for t, tname in enumerate(TENSOR_NAMES):
                if tname == "input" and k > 0:
                    continue
                if tname == "update" and self.precision.layers[k].update is None:
                    continue
                if tname == "deriv" and not self._uses_deriv(k):
                    continue
                d[tname] = {"overflow": int(self.cnt[k, t, 0]), "zero": int(self.cnt[k, t, 1])}
            out[name] = d
        return out

    def _uses_deriv(self, k: int) -> bool:
        """The derivative format is used by table activations of layers that need f'(z)."""
        if self.acts[k] not in ("tanh", "sigmoid"):
            return False
        if self.precision.layers[k].is_output:
            return self.spec.loss == "mse"
        return self.rules[k] != "shallow"

    def reset_counters(self) -> None:
        self.cnt[:] = 0

    def weights(self) -> list[dict[str, np.ndarray]]:
        """Raw weights per layer: ``W`` (n_in, n_out) int64 and ``b`` (n_out,) int64 (copies)."""
        return [{"W": W.astype(np.int64), "b": b.copy()} for W, b in zip(self.W, self.b)]

    def weights_float(self) -> list[dict[str, np.ndarray]]:
        out = []
        for lp, W, b in zip(self.precision.layers, self.W, self.b):
            out.append({"W": lp.weight.to_float(W.astype(np.int64)), "b": lp.bias.to_float(b)})
        return out

    def feedback_float(self) -> list[np.ndarray | None]:
        out = []
        for k, (lp, B, shape) in enumerate(zip(self.precision.layers, self.B, self._fb_shapes)):
            if shape is None:
                out.append(None)
                continue
            f = lp.feedback.to_float(B)
            if self.P[k, K.PROP_B] == K.PROP_LOWRANK:  # P's rows carry LDFA_PS extra fractional bits
                f[lp.n_in:] *= 2.0 ** -int(self.P[k, K.LDFA_PS])
            out.append(f)
        return out

    def set_weights(self, k: int, W_raw, b_raw=None) -> None:
        """Overwrite layer k's raw weights (n_in, n_out) and biases (checked against the formats)."""
        lp = self.precision.layers[k]
        W_raw = np.asarray(W_raw)
        if W_raw.shape != (lp.n_in, lp.n_out):
            raise DataError(f"layer {lp.name}: weights must have shape {(lp.n_in, lp.n_out)}, got {W_raw.shape}")
        for arr, f, what in ((W_raw, lp.weight, "weights"), (b_raw, lp.bias, "biases")):
            if arr is None:
                continue
            arr = np.asarray(arr)
            if arr.size and (arr.min() < f.min_raw or arr.max() > f.max_raw):
                raise DataError(f"layer {lp.name}: {what} out of range of {f}")
        self.W[k][...] = W_raw.astype(self.w_dtype)
        if b_raw is not None:
            self.b[k][...] = np.asarray(b_raw, dtype=np.int64).reshape(lp.n_out)

    def set_feedback(self, k: int, B_raw) -> None:
        """Replace layer k's stored feedback matrix (raw, in the feedback format); stored mode only."""
        shape = self._fb_shapes[k]
        if shape is None:
            raise ConfigError(f"layer {self.layer_names[k]} has no feedback matrix under rule {self.rules[k]}")
        if self.P[k, K.FB_LFSR]:
            raise ConfigError("set_feedback needs feedback_mode 'stored' (lfsr regenerates B from its seed)")
        B_raw = np.asarray(B_raw, dtype=np.int64)
        if B_raw.shape != shape:
            raise DataError(f"feedback of layer {self.layer_names[k]} must have shape {shape}, got {B_raw.shape}")
        self.B[k][...] = B_raw

    def float_twin(self):
        """A float64 twin of this engine in its *current* state (same weights, B, learning rates, order)."""
        from .twin import FloatTwin
        return FloatTwin.from_engine(self)

    def formats(self) -> dict[str, Any]:
        return self.precision.to_dict()

    def describe(self) -> dict[str, Any]:
        return {
            "network": self.spec.name, "sizes": self.sizes, "rules": dict(zip(self.layer_names, self.rules)),
            "bits": self.bits, "seed": self.seed, "mode": self.mode, "batch_size": self.batch_size,
            "feedback_mode": self.precision.feedback_mode, "formats": self.formats(),
            "accumulation": {name: ["exact", "shift-trn", "shift-rnd", "general"][int(self.P[k, K.ACC_PATH])]
                             for k, name in enumerate(self.layer_names)},
            "storage": {"weights": np.dtype(self.w_dtype).name, "accumulator": np.dtype(self.acc_dtype).name},
        }

    def save(self, path) -> None:
        from .engine_io import save_weights
        save_weights(self, path)
