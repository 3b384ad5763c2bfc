"""Per-tensor, per-layer fixed-point formats of the engine, resolved from a network's ``precision:`` block.

YAML (every key optional; formats in hls4ml syntax, docs/engine.md)::

    precision:
      preset: 8              # or bits: 8 -- start from the --bits preset (presets.py); default 8
      input:   "ufixed<8,0,RND,SAT>"     # network input (first layer only)
      weight:  "fixed<8,2,STOCH,SAT>"    # stored weights (and the increment's rounding, arithmetic.md §12)
      bias:    "fixed<8,2,STOCH,SAT>"
      accum:   auto                      # MAC accumulator = pre-activation z; 'auto' or a format (<= 64 bits)
      act:     "fixed<8,1,RND,SAT>"      # hidden activations y_k (tanh/sigmoid table output, hard-tanh...)
      out_act: "ufixed<8,0,RND,SAT>"     # output activation (sigmoid for loss bce)
      deriv:   "ufixed<8,1,RND,SAT>"     # f'(z) of table activations (tanh: 1-t^2, sigmoid: s(1-s))
      error:   "fixed<8,1,RND,SAT>"      # modulatory signal: e = y* - y (output), delta_k (hidden)
      update:  null                      # optional: format of the increment before it is added (§engine)
      feedback: "fixed<8,1>"             # B entries (raw LFSR draws of W bits)
      fb_q: "fixed<8,1,RND,SAT>"         # feedback that learns: kp's B, ldfa's / dldfa's factor Q
      fb_p: "fixed<8,1,RND,SAT>"         # ldfa's / dldfa's factor P (plus its ps extra fractional bits)
      feedback_mode: stored              # stored | lfsr (regenerated from the seed, same values)
      rng: layer                         # STOCH draws: layer (one LFSR per layer) | neuron (xorshift32 per
                                         # output neuron), docs/arithmetic.md §9a
      lr_shift: 6                        # eta = 2**-lr_shift
      lr_mult: null                      # optional fixed-point multiplier m: eta = m * 2**-lr_shift
      lr_mult_format: "ufixed<8,1,RND,SAT>"
      table_bits: 10                     # tanh/sigmoid tables: 2**table_bits entries on [-2**range_bits, ...)
      range_bits: 3
      per_layer:                         # overrides for one layer (by name), same keys except input/tables
        fc1: {weight: "fixed<8,1,STOCH,SAT>", lr_shift: 7}

Overrides from the command line (``--format TENSOR=FMT`` with TENSOR ``weight`` or ``fc1.weight``,
``--rounding [TENSOR=]MODE``, ``--overflow [TENSOR=]MODE``, ``--lr-shift``) are applied on top.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError, FormatError
from ..program import DEFAULT_RNG, RNG_MODES
from ..word_length import MAX_BITS, MIN_BITS
from .formats import OVERFLOW, ROUNDING, AccumulatorFormat, FixedFormat, parse_format
from .conv import engine_sizes, split_network
from .presets import DEFAULT_BITS, logit_format, preset

#: every tensor that has a format
TENSORS = ("input", "weight", "bias", "accum", "act", "out_act", "deriv", "error", "update", "feedback", "fb_q", "fb_p")
#: rules whose feedback the engine stores in the trained-feedback formats: kp's B (fb_q), the factors Q (fb_q) and
#: P (fb_p) of ldfa / dldfa (docs/arithmetic.md §16)
FB_Q_RULES = ("kp", "ldfa", "dldfa")
FB_P_RULES = ("ldfa", "dldfa")
#: tensors whose rounding may be STOCH (their assignments consume LFSR draws, docs/engine.md)
STOCH_TENSORS = ("weight", "bias", "update")
LAYER_SETTINGS = ("lr_shift", "lr_mult")
#: the learning-rate shifts a layer may use (eta = 2**-lr_shift)
LR_SHIFT_RANGE = (-16, 62)
GLOBAL_SETTINGS = ("preset", "bits", "feedback_mode", "rng", "lr_mult_format", "table_bits", "range_bits", "per_layer",
                   "lr_shift", "lr_mult")
FEEDBACK_MODES = ("stored", "lfsr")


@dataclass
class LayerPrecision:
    """Resolved formats of one trainable layer (``None`` = tensor not used / exact)."""

    name: str
    index: int
    n_in: int
    n_out: int
    is_output: bool
    input: FixedFormat  # format of this layer's input (network input or previous layer's act)
    weight: FixedFormat
    bias: FixedFormat
    accum: AccumulatorFormat
    act: FixedFormat
    deriv: FixedFormat
    error: FixedFormat
    update: FixedFormat | None
    feedback: FixedFormat
    lr_shift: int
    lr_mult: float | None
    lr_mult_raw: int = 0
    lr_mult_frac: int = 0
    accum_auto: bool = False
    fb_q: FixedFormat | None = None  # trained feedback (FB_Q_RULES / FB_P_RULES), None for other rules
    fb_p: FixedFormat | None = None

    def formats(self) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for t in ("input", "weight", "bias", "accum", "act", "deriv", "error", "update", "feedback"):
            f = getattr(self, t)
            out[t] = fmt_str(f)
        for t in ("fb_q", "fb_p"):  # only the layers whose rule has them: other rules' records stay as they were
            if getattr(self, t) is not None:
                out[t] = fmt_str(getattr(self, t))
        return out


@dataclass
class FrontPrecision:
    """Resolved formats of one layer of the frozen convolutional front end (docs/arithmetic.md §15): a conv2d has
    input, weight, bias, accum and act formats like a linear layer; a pool's output keeps its input's format."""

    name: str
    index: int                     # position in the front end
    type: str                      # conv2d, maxpool, avgpool
    in_shape: tuple[int, ...]      # (C, H, W)
    out_shape: tuple[int, ...]
    kernel: int
    stride: int
    padding: int
    act_name: str                  # the conv's activation ("none" for pools)
    input: FixedFormat
    act: FixedFormat               # the layer's output format (a pool: its input's)
    weight: FixedFormat | None = None
    bias: FixedFormat | None = None
    accum: AccumulatorFormat | None = None
    accum_auto: bool = False
    # a conv that learns (rule drtp / dfa / sdfa, docs/arithmetic.md §15a): its signal's formats and learning rate
    rule: str = "shallow"
    deriv: FixedFormat | None = None
    error: FixedFormat | None = None
    feedback: FixedFormat | None = None
    lr_shift: int = 0

    @property
    def learns(self) -> bool:
        return self.type == "conv2d" and self.rule != "shallow"

    @property
    def n_in(self) -> int:
        """Terms of one output's sum: the fan-in C_in * k * k of a conv (the window k * k of a pool)."""
        return (self.in_shape[0] if self.type == "conv2d" else 1) * self.kernel * self.kernel

    def formats(self) -> dict[str, str | None]:
        if self.type != "conv2d":
            return {"input": fmt_str(self.input), "act": fmt_str(self.act)}
        learned = ("deriv", "error", "feedback") if self.learns else ()  # frozen layers' records stay as they were
        return {t: fmt_str(getattr(self, t)) for t in ("input", "weight", "bias", "accum", "act") + learned}


@dataclass
class Precision:
    """Resolved precision of a whole network: the linear layers (``layers``) behind an optional frozen
    convolutional front end (``front``)."""

    layers: list[LayerPrecision]
    bits: int | None
    feedback_mode: str = "stored"
    rng: str = DEFAULT_RNG
    table_bits: int = 10
    range_bits: int = 3
    lr_mult_format: FixedFormat | None = None
    config: dict[str, Any] = field(default_factory=dict)  # the merged mapping (for results.json)
    front: list[FrontPrecision] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "bits": self.bits,
            "feedback_mode": self.feedback_mode,
            "rng": self.rng,
            "table_bits": self.table_bits,
            "range_bits": self.range_bits,
            "layers": {**{fp.name: fp.formats() for fp in self.front},
                       **{lp.name: {**lp.formats(), "lr_shift": lp.lr_shift, "lr_mult": lp.lr_mult}
                          for lp in self.layers}},
        }


def fmt_str(f: FixedFormat | None) -> str | None:
    """Full, lossless spelling of a format (modes always printed; STOCH kept, unlike ``to_hls4ml``)."""
    if f is None:
        return None
    return f"{'' if f.signed else 'u'}fixed<{f.width},{f.integer},{f.rounding},{f.overflow}>"


def _fmt(value: Any, what: str, accumulator: bool = False) -> FixedFormat:
    try:
        return parse_format(value, accumulator=accumulator)
    except FormatError as exc:
        raise FormatError(f"{what}: {exc}") from None


def _int_setting(value: Any, what: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"{what} must be an integer in {lo}..{hi}, got {value!r}")
    return int(value)


def _apply_modes(mapping: dict[str, Any], modes: list[tuple[str | None, str]], kind: str, layer: str) -> None:
    """Set the rounding/overflow of formats in ``mapping`` (one layer's) in place, ``kind`` 'rounding' or
    'overflow'.  A mode without a target applies to every tensor except the accumulator (a global STOCH only
    to the tensors that support it); ``weight=MODE`` to that tensor of every layer; ``fc1.weight=MODE`` to one."""
    for target, mode in modes:
        if target is None:
            names = [t for t in TENSORS if t != "accum"]
            if kind == "rounding" and mode == "STOCH":
                names = [t for t in names if t in STOCH_TENSORS]
        else:
            lname, _, tname = target.rpartition(".")
            if lname and lname != layer:
                continue
            names = [tname]
        for t in names:
            v = mapping.get(t)
            if v is None or v == "auto":
                continue
            f = _fmt(v, f"precision.{t}", accumulator=(t == "accum"))
            try:
                mapping[t] = f.with_(**{kind: mode})
            except FormatError as exc:
                raise FormatError(f"--{kind} {mode}: {exc}") from None


def parse_mode_overrides(items: list[str] | None, kind: str) -> list[tuple[str | None, str]]:
    """``['RND', 'weight=STOCH', 'fc1.error=TRN']`` -> [(None,'RND'), ('weight','STOCH'), ...] (validated)."""
    table = ROUNDING if kind == "rounding" else OVERFLOW
    out: list[tuple[str | None, str]] = []
    for item in items or []:
        target, sep, mode = str(item).rpartition("=")
        target = target.strip() if sep else None
        m = mode.strip().upper()
        if m.startswith("AP_"):
            m = m[3:]
        if m not in table:
            raise FormatError(f"--{kind} {item}: unknown {kind} mode {mode!r} (expected one of {', '.join(table)})")
        if target is not None:
            _check_tensor_target(target, f"--{kind} {item}")
        out.append((target, m))
    return out


def _check_tensor_target(target: str, what: str) -> None:
    tname = target.rpartition(".")[2]
    if tname not in TENSORS:
        raise ConfigError(f"{what}: unknown tensor {tname!r} (known: {', '.join(TENSORS)})")


def parse_format_overrides(items: list[str] | None) -> dict[str, str]:
    """``['weight=fixed<8,2>', 'fc1.act=fixed<8,1>']`` -> mapping (validated syntax)."""
    out: dict[str, str] = {}
    for item in items or []:
        target, sep, fmt = str(item).partition("=")
        if not sep or not target.strip() or not fmt.strip():
            raise ConfigError(f"--format expects TENSOR=FORMAT (e.g. weight=fixed<8,2,STOCH,SAT>), got {item!r}")
        target = target.strip()
        _check_tensor_target(target, f"--format {item}")
        tname = target.rpartition(".")[2]
        if not (tname == "accum" and fmt.strip() == "auto"):
            _fmt(fmt.strip(), f"--format {target}", accumulator=(tname == "accum"))
        out[target] = fmt.strip()
    return out


def resolve_precision(spec, bits: int | None = None, formats: dict[str, str] | None = None,
                      rounding: list[tuple[str | None, str]] | None = None,
                      overflow: list[tuple[str | None, str]] | None = None,
                      lr_shift: int | None = None, feedback_mode: str | None = None,
                      rng: str | None = None) -> Precision:
    """Merge preset, ``spec.precision`` and overrides into per-layer formats (validated)."""
    raw = copy.deepcopy(spec.precision or {})
    if not isinstance(raw, dict):
        raise ConfigError("precision must be a mapping")
    unknown = set(raw) - set(TENSORS) - set(GLOBAL_SETTINGS)
    if unknown:
        raise ConfigError(f"{spec.source}: precision: unknown key(s) {', '.join(sorted(unknown))}; "
                          f"known: {', '.join(TENSORS + GLOBAL_SETTINGS)}")
    if bits is None:
        b = raw.get("bits", raw.get("preset", DEFAULT_BITS))
        if isinstance(b, str) and b.lower().rstrip("bit").isdigit():
            b = int(b.lower().rstrip("bit"))
        if isinstance(b, bool) or not isinstance(b, int) or not MIN_BITS <= b <= MAX_BITS:
            # the config's word length, not --bits: preset()'s message would name the option
            raise ConfigError(f"{spec.source}: precision bits {b!r} out of range (presets exist for "
                              f"{MIN_BITS}..{MAX_BITS} bits)")
        bits = b
    base = preset(bits)
    if getattr(spec, "loss", None) == "ce":
        base["out_act"] = logit_format(bits)  # logits for the softmax, not sigmoid probabilities
    merged: dict[str, Any] = dict(base)
    # with an explicit --bits the network's own formats still apply unless the command line overrides them
    for k, v in raw.items():
        if k in TENSORS or k in ("lr_shift", "lr_mult"):
            merged[k] = v
    per_layer = raw.get("per_layer") or {}
    if not isinstance(per_layer, dict):
        raise ConfigError(f"{spec.source}: precision.per_layer must be a mapping layer-name -> settings")
    front_specs, linear = split_network(spec)
    names = [layer.name for layer in spec.trainable_layers]  # per_layer may set a conv layer's formats too
    for lname, sub in per_layer.items():
        if lname not in names:
            raise ConfigError(f"{spec.source}: precision.per_layer names {lname!r}, not a trainable layer "
                              f"({', '.join(names)})")
        if not isinstance(sub, dict):
            raise ConfigError(f"{spec.source}: precision.per_layer.{lname} must be a mapping")
        bad = set(sub) - (set(TENSORS) - {"input"}) - set(LAYER_SETTINGS)
        if bad:
            raise ConfigError(f"{spec.source}: precision.per_layer.{lname}: unknown key(s) {', '.join(sorted(bad))}")
    cli_global: dict[str, str] = {}
    cli_layer: dict[str, dict[str, str]] = {}
    for target, fmt in (formats or {}).items():
        lname, _, tname = target.rpartition(".")
        if lname:
            if lname not in names:
                raise ConfigError(f"--format {target}: no trainable layer {lname!r} ({', '.join(names)})")
            cli_layer.setdefault(lname, {})[tname] = fmt
        else:
            cli_global[tname] = fmt
    merged.update(cli_global)
    if lr_shift is not None:  # named by its option here; a config's value is named by its layer below
        merged["lr_shift"] = _int_setting(lr_shift, "--lr-shift", *LR_SHIFT_RANGE)
    fb_mode = feedback_mode or raw.get("feedback_mode", "stored")
    if fb_mode not in FEEDBACK_MODES:
        raise ConfigError(f"feedback_mode must be one of {', '.join(FEEDBACK_MODES)}, got {fb_mode!r}")
    rng_mode = rng or raw.get("rng", DEFAULT_RNG)
    if rng_mode not in RNG_MODES:
        raise ConfigError(f"rng must be one of {', '.join(RNG_MODES)}, got {rng_mode!r}")
    table_bits = _int_setting(raw.get("table_bits", 10), "precision.table_bits", 1, 20)
    range_bits = _int_setting(raw.get("range_bits", 3), "precision.range_bits", -16, 16)
    mult_fmt = _fmt(raw.get("lr_mult_format", "ufixed<8,1,RND,SAT>"), "precision.lr_mult_format")
    sizes = engine_sizes(spec)
    front: list[FrontPrecision] = []
    prev_act: FixedFormat | None = None
    for j, layer in enumerate(front_specs):
        prev_act = _front_layer(j, layer, prev_act, merged, per_layer, cli_layer, rounding, overflow)
        if layer.type == "conv2d":
            prev_act.rule = spec.layer_rule(layer)
            lm = {**merged, **per_layer.get(layer.name, {}), **cli_layer.get(layer.name, {})}
            if lr_shift is not None and "lr_shift" not in cli_layer.get(layer.name, {}):
                lm["lr_shift"] = lr_shift
            if prev_act.learns:
                prev_act.lr_shift = _int_setting(lm.get("lr_shift"), f"layer {layer.name}: lr_shift", *LR_SHIFT_RANGE)
        front.append(prev_act)
        prev_act = prev_act.act
    layers: list[LayerPrecision] = []
    names = [layer.name for layer in linear]
    K = len(names)
    for k, lname in enumerate(names):
        m = dict(merged)
        m.update(per_layer.get(lname, {}))
        m.update(cli_layer.get(lname, {}))
        if lr_shift is not None and "lr_shift" not in cli_layer.get(lname, {}):
            m["lr_shift"] = lr_shift
        is_out = k == K - 1
        own = set(per_layer.get(lname, {})) | set(cli_layer.get(lname, {}))
        if is_out and "act" not in own:
            m["act"] = m.get("out_act")  # the output layer's activation format is out_act unless set per layer
        for kind, modes in (("rounding", rounding), ("overflow", overflow)):
            if modes:
                _apply_modes(m, modes, kind, lname)
        where = f"layer {lname}"
        f = {}
        for t in ("input", "weight", "bias", "act", "deriv", "error", "feedback"):
            if m.get(t) is None:
                raise ConfigError(f"{where}: precision.{t} is not set")
            f[t] = _fmt(m[t], f"{where}: precision.{t}")
        upd = None if m.get("update") in (None, "none", "null") else _fmt(m["update"], f"{where}: precision.update")
        rule = spec.layer_rule(linear[k])
        for t, rules in (("fb_q", FB_Q_RULES), ("fb_p", FB_P_RULES)):
            if rule in rules:
                if m.get(t) is None:
                    raise ConfigError(f"{where}: precision.{t} is not set")
                f[t] = _fmt(m[t], f"{where}: precision.{t}")
                # the draw order of STOCH on these words is not defined yet (docs/arithmetic.md §16)
                if f[t].rounding not in ("RND", "TRN"):
                    raise FormatError(f"{where}: the trained feedback {t} ({f[t]}) rounds RND or TRN in the "
                                      f"fixed-point engine, not {f[t].rounding}")
        for t in ("input", "act", "deriv", "error", "feedback"):
            if f[t].rounding == "STOCH":
                raise FormatError(f"{where}: STOCH rounding is supported for {', '.join(STOCH_TENSORS)} only, "
                                  f"not for {t} ({f[t]})")
        in_fmt = f["input"] if prev_act is None else prev_act
        sh = _int_setting(m.get("lr_shift"), f"{where}: lr_shift", *LR_SHIFT_RANGE)
        mult = m.get("lr_mult")
        mult_raw, mult_frac = 0, 0
        if mult is not None:
            if isinstance(mult, bool) or not isinstance(mult, (int, float)) or not math.isfinite(mult) or mult <= 0:
                raise ConfigError(f"{where}: lr_mult must be a positive number, got {mult!r}")
            mult_raw = int(mult_fmt.quantize(float(mult)))
            mult_frac = mult_fmt.frac
            if mult_raw <= 0:
                raise FormatError(f"{where}: lr_mult {mult} is 0 in {mult_fmt}")
        acc_v = m.get("accum", "auto")
        lp = LayerPrecision(
            name=lname, index=k, n_in=sizes[k], n_out=sizes[k + 1], is_output=is_out,
            input=in_fmt, weight=f["weight"], bias=f["bias"], accum=None, act=f["act"], deriv=f["deriv"],
            error=f["error"], update=upd, feedback=f["feedback"], lr_shift=sh,
            lr_mult=None if mult is None else float(mult), lr_mult_raw=mult_raw, lr_mult_frac=mult_frac,
            fb_q=f.get("fb_q"), fb_p=f.get("fb_p"),
        )
        if acc_v in (None, "auto"):
            lp.accum = auto_accumulator(lp)
            lp.accum_auto = True
        else:
            lp.accum = _fmt(acc_v, f"{where}: precision.accum", accumulator=True)
            if lp.accum.rounding == "STOCH":
                raise FormatError(f"{where}: STOCH rounding is not supported for the accumulator")
        layers.append(lp)
        prev_act = f["act"]
    cfg = {k: (fmt_str(v) if isinstance(v, FixedFormat) else v) for k, v in merged.items()}
    cfg["feedback_mode"] = fb_mode
    cfg["rng"] = rng_mode
    if per_layer:
        cfg["per_layer"] = copy.deepcopy(per_layer)
    return Precision(layers=layers, bits=bits, feedback_mode=fb_mode, rng=rng_mode, table_bits=table_bits,
                     range_bits=range_bits, lr_mult_format=mult_fmt, config=cfg, front=front)


def _front_layer(j: int, layer, prev: FixedFormat | None, merged: dict[str, Any], per_layer: dict, cli_layer: dict,
                 rounding, overflow) -> FrontPrecision:
    """Formats of front-end layer ``j``: a conv2d takes the network's (or its own per_layer) input, weight, bias,
    accum and act formats as a linear layer does; a pool passes its input's format on."""
    p = layer.params
    kernel = int(p["kernel"])
    common = dict(name=layer.name, index=j, type=layer.type, in_shape=tuple(layer.in_shape),
                  out_shape=tuple(layer.out_shape), kernel=kernel, stride=int(p.get("stride") or kernel),
                  padding=int(p.get("padding", 0)))
    where = f"layer {layer.name}"
    if layer.type != "conv2d":
        if prev is None:
            prev = _fmt(merged.get("input"), f"{where}: precision.input")
        return FrontPrecision(**common, act_name="none", input=prev, act=prev)
    m = dict(merged)
    m.update(per_layer.get(layer.name, {}))
    m.update(cli_layer.get(layer.name, {}))
    own = {**per_layer.get(layer.name, {}), **cli_layer.get(layer.name, {})}
    if own.get("update") not in (None, "none", "null"):
        # a conv's increments go straight into its weight / bias formats (§15a): a named update format would be
        # silently unused, so say so (a network-wide one is the linear layers', docs/arithmetic.md)
        raise FormatError(f"{where}: precision.update is not supported for a conv layer (its kernel and bias "
                          f"increments are rounded straight into the weight and bias formats, docs/arithmetic.md "
                          f"§15a); set it for the linear layers only")
    for kind, modes in (("rounding", rounding), ("overflow", overflow)):
        if modes:
            _apply_modes(m, modes, kind, layer.name)
    f = {}
    for t in ("input", "weight", "bias", "act"):
        if m.get(t) is None:
            raise ConfigError(f"{where}: precision.{t} is not set")
        f[t] = _fmt(m[t], f"{where}: precision.{t}")
    for t in ("input", "act"):
        if f[t].rounding == "STOCH":
            raise FormatError(f"{where}: STOCH rounding is supported for {', '.join(STOCH_TENSORS)} only, "
                              f"not for {t} ({f[t]})")
    for t in ("deriv", "error", "feedback"):  # a learning conv's signal (§15a); unused while frozen
        if m.get(t) is not None:
            f[t] = _fmt(m[t], f"{where}: precision.{t}")
            if f[t].rounding == "STOCH":
                raise FormatError(f"{where}: STOCH rounding is supported for {', '.join(STOCH_TENSORS)} only, "
                                  f"not for {t} ({f[t]})")
    fp = FrontPrecision(**common, act_name=p.get("act", "none"), input=f["input"] if prev is None else prev,
                        act=f["act"], weight=f["weight"], bias=f["bias"], deriv=f.get("deriv"),
                        error=f.get("error"), feedback=f.get("feedback"))
    acc_v = m.get("accum", "auto")
    if acc_v in (None, "auto"):
        fp.accum, fp.accum_auto = auto_accumulator(fp), True
    else:
        fp.accum = _fmt(acc_v, f"{where}: precision.accum", accumulator=True)
        if fp.accum.rounding == "STOCH":
            raise FormatError(f"{where}: STOCH rounding is not supported for the accumulator")
    return fp


# ---------------------------------------------------------------------------------------------------------------
# worst-case magnitudes (raw) and the automatic accumulator


def max_abs_raw(f: FixedFormat) -> int:
    """Largest |raw| a format can hold."""
    return (1 << (f.width - 1)) if f.signed else (1 << f.width) - 1


def bits_for(v: int) -> int:
    """Signed two's-complement width needed to hold every integer in [-v, v]."""
    return int(v).bit_length() + 1


def auto_accumulator(lp: LayerPrecision) -> AccumulatorFormat:
    """Smallest accumulator with F_acc = F_w + F_x that cannot overflow (bias + n_in products), if that fits
    int64 (<= 62 bits plus sign); otherwise fewer fractional bits (products then truncate, TRN)."""
    fp = lp.weight.frac + lp.input.frac
    pmax = max_abs_raw(lp.weight) * max_abs_raw(lp.input)
    fa = max(fp, lp.bias.frac)
    total = lp.n_in * (pmax << (fa - fp)) + (max_abs_raw(lp.bias) << (fa - lp.bias.frac))
    w = bits_for(total)
    if w > 63:
        drop = w - 63
        fa -= drop
        total = lp.n_in * ((pmax >> max(0, fp - fa)) + 1) + (max_abs_raw(lp.bias) >> max(0, lp.bias.frac - fa)) + 1
        w = bits_for(total)
        while w > 63:
            fa -= 1
            total = lp.n_in * ((pmax >> max(0, fp - fa)) + 1) + (max_abs_raw(lp.bias) >> max(0, lp.bias.frac - fa)) + 1
            w = bits_for(total)
    return AccumulatorFormat(w, w - fa, True, "TRN", "SAT")
