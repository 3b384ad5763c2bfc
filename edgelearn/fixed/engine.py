"""The bit-accurate fixed-point learning engine for MLPs (Numba).

    from edgelearn.fixed.engine import FixedEngine
    eng = FixedEngine(spec, bits=8, seed=0)          # spec: a NetworkSpec (default: the embedded digits MLP)
    eng.fit(x_train, y_train, epochs=1, mode="online")
    eng.evaluate(x_test, y_test)                      # accuracy in [0, 1]
    eng.counters                                      # {layer: {tensor: {"overflow": n, "zero": n}}}
    eng.save("weights.npz")                           # raw ints + formats + network (weights_file.py)
    twin = eng.float_twin()                           # the same algorithm in float64 (twin.py), same init

Everything the engine computes is defined by docs/arithmetic.md (primitives) and docs/engine.md (order of
operations, draw schedule, learning rule per layer).
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numba
import numpy as np
from .typed_list import List

from ..errors import ConfigError, DataError, FormatError, RuleError
from ..program import (ACT_NAMES, FEEDBACK_STREAM, LDFA_P_STREAM, ROUNDING_STREAM, SUPPORT,  # noqa: F401 (re-exported)
                       LEARNED_FEEDBACK_RULES, OJA_GAIN, RuleCode, layers_schedule, sample_order, schedule,
                       schedule_array)
from . import engine_kernels as K
from .conv import FrontEnd, check_conv_learning, engine_sizes, fmt_cols as _fmt_cols, split_network
from .formats import AccumulatorFormat, FixedFormat
from .lfsr import derive_seed, lfsr_matrix, seed_state
from .lower import act_table, lower, lower_layers
from .precision import Precision, bits_for, max_abs_raw, resolve_precision
from .twin import FloatTwin
from .weights_file import save_weights
from .xorshift import neuron_seeds

SUPPORTED_RULES = SUPPORT["engine"].hidden_rules
TENSOR_NAMES = ("input", "weight", "bias", "accum", "act", "deriv", "error", "update")
INT64_LIMIT = (1 << 63) - 1
#: memory a multi-epoch fit may spend on the front-end outputs of its samples (computed once, reused every epoch;
#: full MNIST through conv-mnist at 8 bits: 60,000 x 6,272 int8 = 376 MB)
FEATURE_CACHE_BYTES = 512 << 20


def check_spec(spec) -> None:
    """Raise ConfigError/RuleError if the engine cannot run this network."""
    front, lin = split_network(spec)
    for layer in front:
        if layer.type != "conv2d":
            continue
        act = layer.params.get("act", "none")
        if act not in SUPPORT["engine"].acts:
            raise ConfigError(f"{spec.name}: layer {layer.name}: activation {act!r} is not supported by the "
                              f"fixed-point engine ({', '.join(ACT_NAMES)})")
        rule = spec.layer_rule(layer)
        if rule not in SUPPORT["engine"].conv_rules:
            raise RuleError(f"layer {layer.name}: the fixed-point engine learns conv kernels with "
                            f"{', '.join(r for r in SUPPORT['engine'].conv_rules if r != 'shallow')} "
                            f"(docs/arithmetic.md §15a), not {rule!r}; or freeze the layer with rule shallow "
                            f"(--layer-rule {layer.name}=shallow)")
    if spec.task != "classification":
        raise ConfigError(f"{spec.name}: the fixed-point engine runs classification networks (task is {spec.task})")
    if spec.loss not in SUPPORT["engine"].losses:
        raise ConfigError(f"{spec.name}: loss {spec.loss!r} is not supported by the fixed-point engine "
                          f"(bce with sigmoid outputs, ce with softmax, or mse)")
    if spec.loss == "ce" and lin[-1].params.get("act", "none") != "none":
        raise ConfigError(f"{spec.name}: loss ce applies the softmax to the output layer's logits: its activation "
                          f"must be none, got {lin[-1].params.get('act')!r}")
    for k, layer in enumerate(lin):
        act = layer.params.get("act", "none")
        if act not in SUPPORT["engine"].acts:
            raise ConfigError(f"{spec.name}: layer {layer.name}: activation {act!r} is not supported by the "
                              f"fixed-point engine ({', '.join(ACT_NAMES)})")
        rule = spec.layer_rule(layer)
        if rule not in SUPPORTED_RULES:
            raise RuleError(f"rule {rule!r} (layer {layer.name}) is not supported by the fixed-point engine; "
                            f"choose one of {', '.join(SUPPORTED_RULES)}")
        if rule in LEARNED_FEEDBACK_RULES:
            _check_learned_feedback(spec, rule)
        explicit = layer.name in spec.rules or str(spec.site_names().index(layer.name)) in spec.rules
        if rule == "shallow" and k == len(lin) - 1 and explicit:
            raise RuleError(f"rule 'shallow' freezes hidden layers; {layer.name!r} is the output layer, "
                            f"which is always trained")


def _check_learned_feedback(spec, rule: str) -> None:
    """Settings of kp / ldfa / dldfa the engine does not model (docs/arithmetic.md §16), refused with one line."""
    rp = spec.rule_params
    key = "kp_decay" if rule == "kp" else "ldfa_decay"
    lam = rp.get(key, 0)
    if lam not in (0, 0.0, None):
        raise RuleError(f"rule {rule}: the fixed-point engine has no {key} (lambda * eta is below the LSB of the "
                        f"trained words, docs/arithmetic.md §16); set rule_params.{key}: 0")
    if rule == "dldfa" and rp.get("dldfa_source", "output") != "output":
        raise RuleError("rule dldfa: the fixed-point engine sends the output error (dldfa_source: output), not "
                        f"{rp.get('dldfa_source')!r}")
    for flag in ("ldfa_train_q", "ldfa_train_p"):
        if not isinstance(rp.get(flag, True), bool):
            raise RuleError(f"rule_params.{flag} must be true or false, got {rp.get(flag)!r}")
    if rp.get("ldfa_output_p", "targets") not in ("targets", "error"):
        raise RuleError(f"rule_params.ldfa_output_p must be one of targets, error, got {rp.get('ldfa_output_p')!r}")


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


class FixedEngine:
    """Bit-accurate fixed-point MLP learner (see module docstring)."""

    def __init__(self, spec=None, *, bits: int | None = None, seed: int = 0, rule: str | None = None,
                 formats: dict[str, str] | None = None, rounding=None, overflow=None, lr_shift: int | None = None,
                 feedback: str | None = None, rng: str | None = None, batch_size: int = 1, mode: str | None = None,
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
                                                        overflow=overflow, lr_shift=lr_shift, feedback_mode=feedback,
                                                        rng=rng)
        self.bits = self.precision.bits
        self.sizes = engine_sizes(spec)
        linear = split_network(spec)[1]
        self.layer_names = [layer.name for layer in linear]
        self.rules = [spec.layer_rule(layer) for layer in linear]
        if self.rules[-1] == "shallow":  # a network-wide 'shallow' freezes the hidden layers; the output learns
            self.rules[-1] = "bp"
        self.acts = [layer.params.get("act", "none") for layer in linear]
        if spec.loss == "bce":
            self.acts[-1] = "sigmoid"
        self.num_classes = self.sizes[-1]
        self.batch_size = self._check_batch(batch_size)
        self.mode = mode or ("online" if self.batch_size == 1 else "batch")
        if self.mode not in ("online", "batch"):
            raise ConfigError(f"mode must be 'online' or 'batch', got {self.mode!r}")
        if self.mode == "online" and self.batch_size != 1:
            raise ConfigError("online mode updates after every sample (batch_size must be 1)")
        # recorded only: training runs on one thread (row- and column-parallel kernels lost to the sequential ones
        # in benchmarks/bench_engine.py); predict() runs over samples on numba's threads
        self.threads = max(1, int(threads or 1))
        if precision is None and lr_shift is None:
            self._preset_lr_shifts()
        try:
            self._build_params()
        except FormatError as exc:
            raise self._word_length_error(exc, bits, dict(formats=formats, rounding=rounding, overflow=overflow,
                                                          lr_shift=lr_shift, feedback_mode=feedback, rng=rng)) from None
        self._check_learning_mode()
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
        # dldfa: Q (n_out x r) P (r x C) of the output error
        cap = min(lp.n_out, self.num_classes) if self.rules[k] == "dldfa" else min(lp.n_in, lp.n_out)
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
        n_out = self.num_classes if self.rules[k] == "dldfa" else self.precision.layers[k].n_out
        return max(0, int(round(0.5 * math.log2(n_out / 3.0))))

    def ldfa_flag(self, key: str) -> bool:
        """``rule_params.ldfa_train_q`` / ``ldfa_train_p`` (default true, as the float rule)."""
        return bool(self.spec.rule_params.get(key, True))

    def learns_feedback(self) -> bool:
        return any(lay.learns_feedback for lay in self.program_layers)

    def _check_learning_mode(self) -> None:
        self._check_conv_online(self.mode)
        if self.mode != "online" and self.learns_feedback():
            raise ConfigError("trained feedback (kp, ldfa, dldfa) learns online in the fixed-point engine (batch "
                              "size 1): its minibatch form is not defined yet")

    def _check_conv_online(self, mode: str) -> None:
        if mode != "online" and any(fp.learns for fp in self.precision.front):
            raise ConfigError("learning conv kernels run online in the fixed-point engine (batch size 1): their "
                              "minibatch form is not defined yet")

    def _preset_lr_shifts(self) -> None:
        """Layers whose learning rate the network does not set take their rule's preset shift
        (presets.lr_shift_for): the DRTP-tuned 2**-6 makes FA's float twin diverge and BP's lag (docs/engine.md)."""
        from .presets import lr_shift_for

        raw = self.spec.precision or {}
        if "lr_shift" in raw:
            return
        per_layer = raw.get("per_layer") or {}
        for k, lp in enumerate(self.precision.layers):
            if "lr_shift" not in (per_layer.get(lp.name) or {}):
                lp.lr_shift = lr_shift_for(self.rules[k], self.bits, self.sizes)
        for fp in self.precision.front:  # a learning conv: its rule's preset at the linear layers' fan-in
            if fp.learns and "lr_shift" not in (per_layer.get(fp.name) or {}):
                fp.lr_shift = lr_shift_for(fp.rule, self.bits, self.sizes)

    def _range_check(self) -> None:
        """The int64 range checks of every layer (as _build_params runs them); the error carries the layer."""
        for k, lp in enumerate(self.precision.layers):
            try:
                self._acc_path(lp, f"layer {lp.name}")
                self._check_ranges(k, lp, f"layer {lp.name}")
            except FormatError as exc:
                exc.layer = k
                raise

    def _word_length_error(self, exc: FormatError, bits_arg, resolve_kw: dict) -> FormatError:
        """A preset word length past what the rule's int64 arithmetic allows: the error names the largest preset
        that passes every range check on this network (same overrides), so the user knows what to ask for."""
        from .presets import MIN_BITS

        if self.bits is None:
            return exc
        try:
            self._range_check()
        except FormatError as first:
            layer = getattr(first, "layer", None)
        else:  # pragma: no cover - _build_params failed on something else
            return exc
        failed, limit = self.precision, None
        for b in range(self.bits - 1, MIN_BITS - 1, -1):
            try:
                self.precision = resolve_precision(self.spec, bits=b, **resolve_kw)
                if resolve_kw.get("lr_shift") is None:
                    self._preset_lr_shifts()
                self._range_check()
            except FormatError:
                continue
            limit = b
            break
        self.precision = failed
        if limit is None or layer is None:
            return exc
        what = "--bits" if bits_arg is not None else "precision bits"
        err = FormatError(f"{what} {self.bits}: rule {self.rules[layer]} supports up to {limit} bits on "
                          f"{self.spec.name} ({'-'.join(map(str, self.sizes))}) because {exc}")
        err.max_bits = limit
        return err

    def _build_params(self) -> None:
        prec = self.precision
        L = len(prec.layers)
        P = np.zeros((L, K.NPARAM), dtype=np.int64)
        acc32 = True
        self.program_layers = lower_layers(self)
        # the per-sample schedule the compiled step runs (the same list the HLS kernel and the RTL follow)
        self._steps = schedule_array(layers_schedule(self.program_layers))
        self._fb_shapes: list[tuple[int, int] | None] = [lay.fb_shape for lay in self.program_layers]
        for k, lp in enumerate(prec.layers):
            where = f"layer {lp.name}"
            lay = self.program_layers[k]
            fmts = {}
            for t, f in (("W", lp.weight), ("B", lp.bias), ("A", lp.accum), ("Y", lp.act), ("G", lp.deriv),
                         ("E", lp.error), ("U", lp.update), ("Q", lp.fb_q), ("PF", lp.fb_p)):
                fmts.update(zip(K._fmt_cols(t), _fmt_cols(f) if f is not None else (0,) * 5))
            # ---- accumulation path and worst cases (docs/engine.md "Range checks")
            path, shift, fits32 = self._acc_path(lp, where)
            acc32 &= fits32
            # fast weight/bias update eligibility (online, no update format)
            s = lay.shift_to(lay.dm_frac + lp.input.frac, lp.weight)
            fast_w = (lp.update is None and lp.weight.rounding in ("TRN", "RND", "STOCH")
                      and lp.weight.overflow in ("WRAP", "SAT") and s <= 32)
            fast_b = (lp.update is None and lp.bias.rounding in ("TRN", "RND", "STOCH")
                      and lp.bias.overflow in ("WRAP", "SAT") and lay.shift_to(lay.dm_frac, lp.bias) <= 32)
            P[k] = K.param_row(
                **fmts, N_IN=lp.n_in, N_OUT=lp.n_out, F_X=lp.input.frac, ACC_PATH=path, ACC_SHIFT=shift,
                ACT=lay.act_code, HAS_U=lp.update is not None, LR=lp.lr_shift, M_RAW=lay.mult_raw or 0,
                F_M=lay.mult_frac, RULE=lay.code, W_FB=(lp.fb_q or lp.feedback).width,
                F_FB=(lp.fb_q or lp.feedback).frac, FB_LEARN=lay.fb_learn, OJA_SRC=lay.oja_src,
                FB_LFSR=lay.fb_lfsr, IS_OUT=lp.is_output, TB=prec.table_bits, RB=prec.range_bits,
                PROP_B=(K.PROP_FA if lay.rule in ("fa", "kp") else K.PROP_LOWRANK if lay.rule == "ldfa" else K.PROP_W)
                if k > 0 else K.PROP_W,
                STOCH_ANY=any(f is not None and f.rounding == "STOCH" for f in (lp.weight, lp.bias, lp.update)),
                LOSS=K.LOSS_CODES[self.spec.loss], FAST_W=fast_w, FAST_B=fast_b,
                ACC32=path == K.ACC_EXACT and fits32, MAC16=path == K.ACC_EXACT and fits32 and self._mac_fits16(lp),
                FAST32_W=fast_w and self._update_fits(lp, s, 32),
                FAST16_W=fast_w and self._update_fits(lp, s, 32) and self._update_fits(lp, s, 16),
                SHORT_R=K._short_rows(lp.n_out) if lp.n_out < K.SHORT_ROW else 1, LDFA_PS=lay.ldfa_p_shift,
                RNG_N=prec.rng == "neuron")
            self._check_ranges(k, lp, where)
            if lay.learns_feedback:
                self._check_feedback_learning(k, lp, lay, where)
        self.P = P
        self.acc_dtype = np.int32 if acc32 else np.int64
        self.w_dtype = _storage_dtype([lp.weight for lp in prec.layers])
        # raw network inputs and the first linear layer's inputs (the front end's output) share one dtype
        fins = [prec.layers[0].input] + [fp.input for fp in prec.front[:1]]
        self.x_dtype = np.int32 if all(f.width < 32 or (f.width == 32 and f.signed) for f in fins) else np.int64
        # conv layers: the exact int64 sum where the accumulator provably holds it, else per-term assignments
        self._front_exact = []
        for fp in prec.front:
            self._front_exact.append(fp.type == "conv2d" and
                                     self._acc_path(fp, f"layer {fp.name}")[0] == K.ACC_EXACT and
                                     fp.accum.frac >= fp.bias.frac)
        for j, fp in enumerate(prec.front):
            if fp.learns:
                check_conv_learning(prec.front, j, self.num_classes, prec.layers[-1].error)

    @staticmethod
    def _mac_fits16(lp) -> bool:
        """The exact int32 accumulation also runs on int16 weights and inputs (engine_kernels.mac16) when both
        formats' raw values fit int16 (the int32 sums are ACC32's proof)."""
        return max(max_abs_raw(lp.weight), max_abs_raw(lp.input)) < (1 << 15)

    @staticmethod
    def _update_fits(lp, s: int, bits: int) -> bool:
        """The online weight update runs in ``bits``-wide lanes when, from the formats, the increment dm*x (aligned:
        << -s when s <= 0), the rounded increment d and w + d (+ 2**W of headroom for the WRAP arithmetic) stay below
        2**(bits-1), and a row's event counts fit a lane sum.  int32 (engine_kernels.update_rows32): the STOCH/RND
        addend (< 2**s) is added to dm*x, so that sum must fit too, and s <= 30.  int16 (update_rows16): ``u +
        addend`` is never formed (its carry is a comparison), and s <= 15."""
        lim = (1 << (bits - 1)) - 1
        mult = abs(lp.lr_mult_raw) if lp.lr_mult is not None else 1
        umax = max_abs_raw(lp.error) * mult * max_abs_raw(lp.input)
        if s > (30 if bits == 32 else 15):
            return False
        if s <= 0:
            umax <<= -s
        add = (1 << s) - 1 if s > 0 and bits == 32 else 0  # int16 lanes never form u + addend
        dmax = umax if s <= 0 else ((umax + add) >> s) + 1
        return (umax + add <= lim and max_abs_raw(lp.weight) + dmax + (1 << lp.weight.width) <= lim
                and lp.n_out <= lim)

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

    def _check_feedback_learning(self, k: int, lp, lay, where: str) -> None:
        """Trained feedback: no learning-rate multiplier (its words take the layer's power-of-two rate), and the
        exact intermediates of feedback_learn inside int64 (docs/arithmetic.md §16)."""
        if lp.lr_mult is not None:
            raise FormatError(f"{where}: trained feedback ({self.rules[k]}) takes the power-of-two learning rate "
                              f"only; drop lr_mult")
        if lp.lr_shift - OJA_GAIN < -16 and lay.fb_learn & 2:
            raise FormatError(f"{where}: lr_shift {lp.lr_shift} leaves no room for P's Oja rate")
        m = self.num_classes if self.rules[k] == "dldfa" or lay.oja_src else lp.n_out
        pmax, emax = max_abs_raw(lp.fb_p) if lp.fb_p is not None else 0, max_abs_raw(lp.error)
        f_pe = (lp.fb_p.frac + lay.ldfa_p_shift if lp.fb_p is not None else 0) + lp.error.frac  # P^T a
        for v, what in ((emax * max(max_abs_raw(lp.input), max_abs_raw(lp.act)), "the feedback increment"),
                        (m * pmax * emax, "P's Oja projection"),
                        (lay.ldfa_rank * pmax * emax + (1 << max(0, f_pe)), "P's Oja residual"),
                        (emax * emax, "P's Oja increment")):
            if v > INT64_LIMIT:
                raise FormatError(f"{where}: {what} could overflow int64 (needs {bits_for(v)} bits); use narrower "
                                  f"formats")

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
            elif rule == "dldfa":  # u = P e (assigned to the output error format), then p = Q u
                qm = max_abs_raw(lp.fb_q)
                need(C * max_abs_raw(lp.fb_p) * max_abs_raw(out.error), "the dldfa bottleneck signal")
                p = self.ldfa_rank(k) * qm * max_abs_raw(out.error)
            elif rule in ("bp", "fa", "ldfa", "kp"):
                up = lay[k + 1]
                if self.rules[k + 1] == "ldfa":  # u = P d_up (assigned to up.error), then p = Q u
                    need(up.n_out * max_abs_raw(up.fb_p) * max_abs_raw(up.error), "the ldfa bottleneck signal")
                    p = self.ldfa_rank(k + 1) * max_abs_raw(up.fb_q) * max_abs_raw(up.error)
                else:
                    m = (max_abs_raw(up.feedback) if self.rules[k + 1] == "fa" else max_abs_raw(up.fb_q)
                         if self.rules[k + 1] == "kp" else max_abs_raw(up.weight))
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
            lay = self.program_layers[k]
            shape, fseed = lay.fb_shape, lay.fb_seed
            if shape is None:
                self.B.append(np.zeros((1, 1), dtype=np.int64))
            elif lay.ldfa_rank:  # stored factors: Q from the layer's feedback stream, P from its own
                r = lay.ldfa_rank
                nq, m = shape[0] - r, (self.num_classes if lay.rule == "dldfa" else lp.n_out)
                packed = np.zeros(shape, dtype=np.int64)
                # a Q that learns starts at the float reference's He-uniform scale, sqrt(6 / fan-in) ~ 2**-qs: its
                # draws take qs fewer LFSR bits (the format keeps its range for what Q learns); a frozen Q keeps fa's
                # scale (docs/arithmetic.md §16)
                qs = max(0, round(0.5 * math.log2(nq / 6.0))) if lay.fb_learn & 1 else 0
                packed[:nq, :r] = lfsr_matrix(fseed, nq, r, max(2, lp.fb_q.width - qs))
                # a P that learns: its draws take ps fewer bits (uniform on [-2**-ps, 2**-ps), as a frozen P)
                ps = self.ldfa_p_shift(k) if lay.fb_learn & 2 else 0
                packed[nq:, :m] = lfsr_matrix(lay.ldfa_p_seed, r, m, max(2, lp.fb_p.width - ps))
                self.B.append(packed)
            else:  # kp's B: fa's draws, in the width of its trained format
                self.B.append(np.ascontiguousarray(lfsr_matrix(fseed, shape[0], shape[1],
                                                               (lp.fb_q or lp.feedback).width), dtype=np.int64))
            self.fb_states.append(lay.fb_rows if lay.fb_rows is not None else np.zeros(1, dtype=np.int64))
            self.tables.append(lay.table if lay.table is not None else np.zeros(1, dtype=np.int64))
        self.jump_tables = [self._jumps(lp.n_out) if self.P[k, K.STOCH_ANY] else np.zeros((1, 4, 256), np.int64)
                            for k, lp in enumerate(prec.layers)]
        self.front = self._init_front() if prec.front else None
        self.rnd_state = np.array([seed_state(derive_seed(self.seed, ROUNDING_STREAM + k))
                                   for k in range(len(prec.layers))], dtype=np.int64)
        # rng: neuron (docs/arithmetic.md §9a): one xorshift32 state per output neuron, started from the layer's
        # rounding seed; kept (unused) under rng: layer so that every kernel call has the same types
        self.neuron_state: list[np.ndarray] = [neuron_seeds(int(self.rnd_state[k]), lp.n_out)
                                               for k, lp in enumerate(prec.layers)]
        self.cnt = np.zeros((len(prec.layers), K.NCOUNT, 2), dtype=np.int64)
        self._alloc_work()

    def _init_front(self) -> FrontEnd:
        """The frozen front end at its random init: He-uniform kernels (the float reference's init,
        torch_ref.build.he_uniform_) drawn from the seed's own stream per conv layer, rounded to nearest into the
        weight format (as the linear layers' init); zero biases (docs/engine.md "Convolutional front end")."""
        prec = self.precision
        Ws, bs, tables = [], [], []
        for j, fp in enumerate(prec.front):
            if fp.type != "conv2d":
                Ws.append(None)
                bs.append(None)
                tables.append(np.zeros(1, dtype=np.int64))
                continue
            rng = np.random.default_rng([self.seed & 0xFFFFFFFF, 0x1417, 0xC0, j])
            bound = math.sqrt(6.0 / fp.n_in)
            w0 = rng.uniform(-bound, bound, size=(fp.out_shape[0],) + (fp.in_shape[0], fp.kernel, fp.kernel))
            Ws.append(np.ascontiguousarray(fp.weight.with_(rounding="RND", overflow="SAT").quantize(w0),
                                           dtype=np.int64))
            bs.append(np.zeros(fp.out_shape[0], dtype=np.int64))
            table = act_table(fp.act_name, fp.act, prec)
            tables.append(table if table is not None else np.zeros(1, dtype=np.int64))
        front = FrontEnd(prec.front, tables, Ws, bs, prec.table_bits, prec.range_bits)
        front.exact = list(self._front_exact)
        front.init_learning(self.seed, self.num_classes, prec.rng == "neuron")
        return front

    @property
    def n_inputs(self) -> int:
        """Inputs per sample of the network (the front end's, else the first linear layer's)."""
        return self.front.n_in if self.front is not None else self.sizes[0]

    def features(self, X_raw: np.ndarray, count: bool = False) -> np.ndarray:
        """Raw network inputs -> raw inputs of the first linear layer (the front end's output; identity for an
        MLP). Frozen conv layers make this a pure function of the sample."""
        if self.front is None:
            return X_raw
        return np.ascontiguousarray(self.front.forward(X_raw, count=count), dtype=self.x_dtype)

    def set_front_weights(self, name: str, W_raw, b_raw=None) -> None:
        """Load a frozen conv layer's raw kernels (C_out, C_in, k, k) and biases (checked against its formats);
        to load float kernels, quantize them first (``fmt.quantize``)."""
        fronts = {fp.name: j for j, fp in enumerate(self.precision.front) if fp.type == "conv2d"}
        if name not in fronts:
            raise ConfigError(f"no conv layer {name!r} in the front end ({', '.join(fronts) or 'none'})")
        j = fronts[name]
        fp = self.precision.front[j]
        for arr, shape, f, what in ((W_raw, self.front.W[j].shape, fp.weight, "kernels"),
                                    (b_raw, self.front.b[j].shape, fp.bias, "biases")):
            if arr is None:
                continue
            arr = np.asarray(arr)
            if arr.shape != shape:
                raise DataError(f"layer {name}: {what} must have shape {shape}, got {arr.shape}")
            if not np.issubdtype(arr.dtype, np.integer):
                raise DataError(f"layer {name}: {what} must be raw integers of {f}")
            if arr.size and (arr.min() < f.min_raw or arr.max() > f.max_raw):
                raise DataError(f"layer {name}: {what} out of range of {f}")
        self.front.W[j][...] = np.asarray(W_raw, dtype=np.int64)
        if b_raw is not None:
            self.front.b[j][...] = np.asarray(b_raw, dtype=np.int64)

    def _jumps(self, n_out: int) -> np.ndarray:
        """Jump table of one layer's stochastic-rounding stream: [0] a quarter row (the four interleaved chains
        of engine_kernels.fill_draws)."""
        return np.ascontiguousarray(np.stack([jump_table(n_out // 4)]))

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
        self._dbufs = List([np.zeros(K.stream_size(n) if self.P[k, K.FAST32_W] else 1, dtype=np.uint32)
                            for k, n in enumerate(sizes[1:])])
        self._dmetas = List([np.zeros(5, dtype=np.int64) for _ in sizes[1:]])
        self._refresh_lists()

    def _refresh_lists(self) -> None:
        self._Ws = List(self.W)
        self._bs = List(self.b)
        self._Bs = List(self.B)
        self._fbst = List(self.fb_states)
        self._tables = List(self.tables)
        self._Js = List(self.jump_tables)
        self._Ns = List(self.neuron_state)

    # ------------------------------------------------------------------------------------------------------------
    # data

    def quantize_inputs(self, x, count: bool = True) -> np.ndarray:
        """Float inputs (N, *input_shape) -> raw ints of the input format (N, n_in); NaN/Inf raise DataError."""
        arr = np.asarray(x)
        if arr.ndim < 1:
            raise DataError("inputs must be an array of samples")
        n_in = self.n_inputs
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
        fmt = self.precision.front[0].input if self.front is not None else self.precision.layers[0].input
        raw = fmt.quantize(flat)
        if count:
            wide = AccumulatorFormat(min(fmt.width + 16, 64), fmt.integer + 16 - max(0, fmt.width + 16 - 64),
                                     fmt.signed, fmt.rounding, "SAT")
            rw = wide.quantize(flat)
            cnt = self.front.cnt if self.front is not None else self.cnt
            cnt[0, K.T_INPUT, 0] += int((rw != raw).sum())
            cnt[0, K.T_INPUT, 1] += int(((flat != 0) & (raw == 0)).sum())
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

    def _run(self, X: np.ndarray, labels: np.ndarray, order: np.ndarray, start: int, stop: int) -> int:
        """Train on order[start:stop]; returns the number of right predictions (before each update)."""
        return int(K.train_samples(
            X, labels, order, start, stop, self._steps, self.P, self._Ws, self._bs, self._Bs, self._fbst, self._tables,
            self._acts, self._zs, self._gs, self._ds, self._ps, self._bufs, self._nzs, self._accs, self._Us,
            self._Ubs, self._touched, self.rnd_state, self._Js, self.cnt, self.mode == "online", self.batch_size,
            self.batch_shift, self._in_batch, self._dbufs, self._dmetas, self._Ns))

    def flush(self) -> None:
        """Apply a partly accumulated minibatch (called at the end of every epoch in batch mode)."""
        if self.mode == "batch" and self._in_batch[0] > 0:
            K.apply_batch(self.P, self._Ws, self._bs, self._Us, self._Ubs, self._touched, self._nzs,
                          self.batch_shift, self.rnd_state, self._Js, self.cnt, self._Ns)
            self._in_batch[0] = 0

    def set_mode(self, mode: str = "online", batch_size: int | None = None) -> None:
        if mode not in ("online", "batch"):
            raise ConfigError(f"mode must be 'online' or 'batch', got {mode!r}")
        bsz = 1 if mode == "online" else self._check_batch(batch_size or self.spec.train.get("batch_size", 32))
        if bsz != self.batch_size or mode != self.mode:
            self.flush()
            self._check_conv_online(mode)
            if mode != "online" and self.learns_feedback():
                raise ConfigError("trained feedback (kp, ldfa, dldfa) learns online in the fixed-point engine "
                                  "(batch size 1): its minibatch form is not defined yet")
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
        feats = self._cached_features(X, epochs, chunk)
        for _ in range(epochs):
            order = sample_order(self.seed, self.epochs_done, N, shuffle)
            correct = 0
            for start in range(0, N, chunk):
                stop = min(N, start + chunk)
                if self.front is None:
                    correct += self._run(X, labels, order, start, stop)
                elif self.front.learning:
                    correct += self._run_front_learning(X, labels, order[start:stop])
                else:  # the chunk's front-end outputs, in visiting order (docs/engine.md "Convolutional front end")
                    idx = order[start:stop]
                    F = (self.features(X[idx], count=True) if feats is None
                         else np.ascontiguousarray(feats[idx], dtype=self.x_dtype))
                    correct += self._run(F, np.ascontiguousarray(labels[idx]),
                                         np.arange(stop - start, dtype=np.int64), 0, stop - start)
                if callback is not None:
                    callback(stop - start)
            self.flush()
            self.epochs_done += 1
            self.samples_seen += N
            rec = {"epoch": self.epochs_done, "train_accuracy_online": correct / max(N, 1)}
            self.history.append(rec)
            out.append(rec)
        return out

    def _run_front_learning(self, X: np.ndarray, labels: np.ndarray, idx: np.ndarray) -> int:
        """Online samples ``idx`` through a front end whose conv layers learn (docs/arithmetic.md §15a): per sample
        the front end's forward (kept), the linear layers' step, then the conv layers' step from its output error."""
        correct = 0
        one = np.zeros(1, dtype=np.int64)
        fe_out = int(self.P[-1, K.F_E])
        for i in idx:
            F = np.ascontiguousarray(self.front.forward(X[i:i + 1], count=True, keep=True), dtype=self.x_dtype)
            correct += self._run(F, labels[i:i + 1], one, 0, 1)
            self.front.learn(int(labels[i]), self._ds[-1], fe_out)
        return correct

    def _cached_features(self, X: np.ndarray, epochs: int, chunk: int) -> np.ndarray | None:
        """Front-end outputs of every sample, computed once for a multi-epoch fit when they fit in
        FEATURE_CACHE_BYTES (stored in the smallest integer type of their format): frozen layers give a sample the
        same bits every epoch, so this is the per-visit computation done once. Its events are those of one visit
        times ``epochs``, as a per-visit count gives (docs/engine.md "Convolutional front end")."""
        if self.front is None or epochs < 2 or self.front.learning:  # learning kernels: new features every visit
            return None
        dt = _storage_dtype([self.precision.layers[0].input])
        if X.shape[0] * self.sizes[0] * np.dtype(dt).itemsize > FEATURE_CACHE_BYTES:
            return None
        before = self.front.cnt.copy()
        feats = np.empty((X.shape[0], self.sizes[0]), dtype=dt)
        for a in range(0, X.shape[0], chunk):
            feats[a:a + chunk] = self.front.forward(X[a:a + chunk], count=True)
        self.front.cnt += (self.front.cnt - before) * (epochs - 1)
        return feats

    def step(self, x_raw, label: int) -> None:
        """One online update on one sample given as raw ints of the input format (shape (n_in,))."""
        X = np.ascontiguousarray(np.asarray(x_raw, dtype=np.int64).reshape(1, -1), dtype=self.x_dtype)
        if X.shape[1] != self.n_inputs:
            raise DataError(f"step: the sample has {X.shape[1]} inputs, the network expects {self.n_inputs}")
        if self.mode != "online":
            self.set_mode("online")
        lab = self._labels(np.array([label]), 1)
        if self.front is not None and self.front.learning:
            self._run_front_learning(X, lab, np.zeros(1, dtype=np.int64))
        else:
            self._run(self.features(X, count=True), lab, np.zeros(1, dtype=np.int64), 0, 1)
        self.samples_seen += 1

    # ------------------------------------------------------------------------------------------------------------
    # inference

    def output_raw(self, X_raw: np.ndarray) -> np.ndarray:
        """Raw output pre-activations (accumulator format of the output layer) for raw inputs."""
        X = np.ascontiguousarray(X_raw, dtype=self.x_dtype)
        out = np.zeros((X.shape[0], self.sizes[-1]), dtype=np.int64)
        # front-end outputs in blocks: a whole test set of them would not fit in memory (conv-mnist: 6272 each)
        step = max(1, X.shape[0]) if self.front is None else 1000
        for a in range(0, X.shape[0], step):
            K.predict(self.features(X[a:a + step]), self.P, self._Ws, self._bs, self._tables, out[a:a + step])
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
        for j, fp in enumerate(self.precision.front):  # frozen: no weight, derivative, error or update events
            tensors = (("input",) if j == 0 else ()) + (("accum", "act") if fp.type == "conv2d" else
                                                        ("act",) if fp.type == "avgpool" else ())
            if fp.learns:
                tensors += ("weight", "bias", "deriv", "error")
            if tensors:
                out[fp.name] = {t: {"overflow": int(self.front.cnt[j, TENSOR_NAMES.index(t), 0]),
                                    "zero": int(self.front.cnt[j, TENSOR_NAMES.index(t), 1])} for t in tensors}
        for k, name in enumerate(self.layer_names):
            d = {}
            for t, tname in enumerate(TENSOR_NAMES):
                if tname == "input" and (k > 0 or self.front is not None):
                    continue
                if tname == "update" and self.precision.layers[k].update is None:
                    continue
                if tname == "deriv" and not self._uses_deriv(k):
                    continue
                d[tname] = {"overflow": int(self.cnt[k, t, 0]), "zero": int(self.cnt[k, t, 1])}
            for t, tname in ((K.T_FBQ, "fb_q"), (K.T_FBP, "fb_p")):  # trained feedback: its increments
                if self.P[k, K.FB_LEARN] & (1 if tname == "fb_q" else 2):
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
        if self.front is not None:
            self.front.cnt[:] = 0

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
            f = (lp.fb_q or lp.feedback).to_float(B)
            r = self.program_layers[k].ldfa_rank
            if r:  # P's rows: their own format, with LDFA_PS extra fractional bits
                f[B.shape[0] - r:] = lp.fb_p.to_float(B[B.shape[0] - r:]) * 2.0 ** -int(self.P[k, K.LDFA_PS])
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
        return FloatTwin.from_engine(self)

    def program(self):
        """The on-chip program of this engine in its current state (edgelearn.program), what HLS and RTL read."""
        return lower(self)

    def layer_nonzeros(self, x_raw, cnt: np.ndarray) -> list[int]:
        """Non-zero inputs of every layer for one raw sample under the current weights (forward only; the counters
        go to ``cnt``, not the engine's)."""
        P = self.P
        out = []
        v = np.asarray(self.features(np.asarray(x_raw, dtype=np.int64).reshape(1, -1))[0], dtype=np.int64)
        for k in range(P.shape[0]):
            out.append(int(np.count_nonzero(v)))
            if k == P.shape[0] - 1:
                break
            nz = np.empty(v.shape[0], dtype=np.int64)
            n = K.nonzeros(v, nz)
            acc = np.empty(P[k, K.N_OUT], dtype=np.int64)
            z = np.empty(P[k, K.N_OUT], dtype=np.int64)
            K.layer_preact(P, k, self._Ws[k], self._bs[k], v, nz, n, acc, z, cnt)
            y = np.empty_like(z)
            g = np.empty_like(z)
            K.layer_activate(P, k, z, self._tables[k], y, g, cnt)
            v = y
        return out

    def formats(self) -> dict[str, Any]:
        return self.precision.to_dict()

    def describe(self) -> dict[str, Any]:
        return {
            "network": self.spec.name, "sizes": self.sizes, "rules": dict(zip(self.layer_names, self.rules)),
            "bits": self.bits, "seed": self.seed, "mode": self.mode, "batch_size": self.batch_size,
            "feedback_mode": self.precision.feedback_mode, "rng": self.precision.rng, "formats": self.formats(),
            "accumulation": {name: ["exact", "shift-trn", "shift-rnd", "general"][int(self.P[k, K.ACC_PATH])]
                             for k, name in enumerate(self.layer_names)},
            "storage": {"weights": np.dtype(self.w_dtype).name, "accumulator": np.dtype(self.acc_dtype).name},
            "front_end": [{"name": fp.name, "type": fp.type, "shape": list(fp.out_shape), "rule": fp.rule,
                           "accumulation": "exact" if self.front.exact[j] else "general"} if fp.type == "conv2d"
                          else {"name": fp.name, "type": fp.type, "shape": list(fp.out_shape)}
                          for j, fp in enumerate(self.precision.front)],
        }

    def save(self, path) -> None:
        save_weights(self, path)
