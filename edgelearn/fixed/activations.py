"""Hardware-exact activations on raw fixed-point values (docs/arithmetic.md §10).

* hard-tanh: exact clamp of the input to [-1, 1], then an ordinary assignment (round + overflow) to the
  output format.  Derivative mask: 1 when ``-1 < z < 1`` (open interval, as PyTorch), else 0.
* ReLU: ``max(z, 0)`` then assignment; derivative mask ``z > 0``.
* tanh / sigmoid: lookup tables of ``N = 2**table_bits`` entries (default 1024) covering the input range
  ``[-2**range_bits, 2**range_bits)`` (default [-8, 8)); bin width ``2**(range_bits + 1 - table_bits)``
  (default 2**-6).  Index = ``clamp((r >> (F_in - (table_bits - range_bits - 1))) + N/2, 0, N-1)`` --
  an arithmetic shift (floor) of the raw input, so inputs below/above the range use the first/last
  entry.  Entry ``i`` = ``f`` evaluated (in IEEE double) at the bin *centre*
  ``c_i = (i - N/2 + 1/2) * 2**(range_bits + 1 - table_bits)``, converted to the table's output format
  with round-to-nearest-ties-up (AP_RND) and AP_SAT, i.e. ``ap_fixed<W,I,AP_RND,AP_SAT>(f(c_i))``.
* tanh' = 1 - t^2 from the table output ``t`` (exact, ``2*F_t`` fractional bits) and sigmoid' =
  s * (1 - s) (exact, ``2*F_s`` fractional bits), then an ordinary assignment to the derivative format.
  Where the output format cannot hold 1, its largest value ``T`` (the table's end entry) stands for the
  saturated output: ``|t| >= T`` (tanh) and ``s >= T`` or ``s <= 1 - T`` (sigmoid) give a derivative of exactly
  0 (``table_saturation``, ``table_deriv``), else a saturated 8-bit unit would keep learning at 2 LSB forever.
* step(z) = 1 if z > 0 else 0; sign(z) in {-1, 0, +1} with sign(0) = 0 (DRTP / sign-DFA).
"""

from __future__ import annotations

import numba
import numpy as np

from edgelearn.errors import FormatError
from edgelearn.fixed.arith import convert
from edgelearn.fixed.formats import FixedFormat, parse_format

#: default table size exponent: N = 2**10 = 1024 entries (as hls4ml's default table_size)
TABLE_BITS = 10
#: default input range exponent: inputs in [-2**3, 2**3) = [-8, 8)
RANGE_BITS = 3

__all__ = [
    "TABLE_BITS", "RANGE_BITS", "SOFTMAX_FRAC", "softmax_exp_table", "softmax_index", "softmax_probs",
    "table_centres", "tanh_table", "sigmoid_table", "lut_index", "lut_lookup", "lut_apply_array",
    "table_saturation", "table_sat_bounds", "table_deriv", "tanh_deriv", "sigmoid_deriv",
    "hard_tanh", "hard_tanh_deriv_mask", "relu", "relu_deriv_mask", "step", "sign",
]


def _check_table(table_bits: int, range_bits: int) -> tuple[int, int]:
    table_bits, range_bits = int(table_bits), int(range_bits)
    if not 1 <= table_bits <= 20:
        raise FormatError(f"table_bits must be 1..20, got {table_bits}")
    if not -16 <= range_bits <= 16:
        raise FormatError(f"range_bits must be -16..16, got {range_bits}")
    return table_bits, range_bits


def table_centres(table_bits: int = TABLE_BITS, range_bits: int = RANGE_BITS) -> np.ndarray:
    """Bin centres ``c_i = (i - N/2 + 1/2) * 2**(range_bits + 1 - table_bits)`` (exact doubles)."""
    table_bits, range_bits = _check_table(table_bits, range_bits)
    n = 1 << table_bits
    i = np.arange(n, dtype=np.float64)
    return np.ldexp(i - n / 2 + 0.5, range_bits + 1 - table_bits)


def _entry_format(out_fmt) -> FixedFormat:
    f = parse_format(out_fmt)
    return f.with_(rounding="RND", overflow="SAT")


def tanh_table(out_fmt, table_bits: int = TABLE_BITS, range_bits: int = RANGE_BITS) -> np.ndarray:
    """Raw int64 tanh table in ``out_fmt`` (its W, I, signedness; entries rounded RND, saturated SAT)."""
    return _entry_format(out_fmt).quantize(np.tanh(table_centres(table_bits, range_bits)))


def sigmoid_table(out_fmt, table_bits: int = TABLE_BITS, range_bits: int = RANGE_BITS) -> np.ndarray:
    """Raw int64 sigmoid table, ``1 / (1 + exp(-c))`` in double, same rules as :func:`tanh_table`."""
    c = table_centres(table_bits, range_bits)
    return _entry_format(out_fmt).quantize(1.0 / (1.0 + np.exp(-c)))


@numba.njit(cache=True, inline="always")
def _bin_of(r, in_frac, table_bits, range_bits):
    """floor(z / bin) of raw ``r`` (``in_frac`` fractional bits), bin = 2**(range_bits + 1 - table_bits): an
    arithmetic right shift, or a left shift of ``r`` saturated to +-N first (so it cannot leave int64; the callers
    clamp anything beyond +-N anyway)."""
    n = np.int64(1) << table_bits
    sh = np.int64(in_frac) - (np.int64(table_bits) - np.int64(range_bits) - 1)
    r = np.int64(r)
    if sh >= 0:
        return r >> (sh if sh < 63 else 63)
    if r > n:
        r = n
    elif r < -n:
        r = -n
    return r << (-sh if -sh < 40 else 40)


@numba.njit(cache=True)
def lut_index(r, in_frac, table_bits, range_bits):
    """Table index of raw input ``r`` (``in_frac`` fractional bits): floor(z / bin) + N/2, clamped."""
    n = np.int64(1) << table_bits
    idx = _bin_of(r, in_frac, table_bits, range_bits) + (n >> 1)
    if idx < 0:
        return np.int64(0)
    if idx > n - 1:
        return n - 1
    return idx


@numba.njit(cache=True)
def lut_lookup(r, in_frac, table, table_bits, range_bits):
    """Table output (raw, in the table's format) for raw input ``r``."""
    return table[lut_index(r, in_frac, table_bits, range_bits)]


@numba.njit(cache=True)
def lut_apply_array(raw, in_frac, table, table_bits, range_bits):
    """Element-wise :func:`lut_lookup` over an int64 array (any shape)."""
    flat = raw.ravel()
    out = np.empty(flat.size, dtype=np.int64)
    for i in range(flat.size):
        out[i] = table[lut_index(flat[i], in_frac, table_bits, range_bits)]
    return out.reshape(raw.shape)


# ---- softmax of the output error under loss ce (docs/arithmetic.md "Softmax error")

#: fractional bits of the exp table's entries (ufixed<SOFTMAX_FRAC + 1, 1>: exp(0) = 1.0 is representable)
SOFTMAX_FRAC = 16


def softmax_exp_table(table_bits: int = TABLE_BITS, range_bits: int = RANGE_BITS) -> np.ndarray:
    """Raw exp table: entry ``i`` = ``exp(-i * bin)`` (the bin's *lower* edge, so the largest logit weighs exactly
    1.0) with ``bin = 2**(range_bits + 1 - table_bits)`` -- the tanh tables' bin width, over differences in
    ``[0, 2**(range_bits + 1))`` -- rounded to nearest (ties up) at SOFTMAX_FRAC fractional bits."""
    table_bits, range_bits = _check_table(table_bits, range_bits)
    i = np.arange(1 << table_bits, dtype=np.float64)
    return np.floor(np.exp(-np.ldexp(i, range_bits + 1 - table_bits)) * 2.0 ** SOFTMAX_FRAC + 0.5).astype(np.int64)


@numba.njit(cache=True)
def softmax_index(d, in_frac, table_bits, range_bits):
    """Exp-table index of a logit difference ``d >= 0`` (raw, ``in_frac`` fractional bits): floor(d / bin),
    clamped to the last entry."""
    n = np.int64(1) << table_bits
    idx = _bin_of(d, in_frac, table_bits, range_bits)
    return idx if idx < n - 1 else n - 1


@numba.njit(cache=True)
def softmax_probs(y, n, in_frac, table, table_bits, range_bits, p_frac, p):
    """``p[c]`` = softmax of the raw logits ``y[:n]`` with ``p_frac`` fractional bits: ``E_c`` = the exp table at
    ``max(y) - y_c``, ``S = sum E_c`` (exact), ``p_c = floor((2 E_c 2**p_frac + S) / (2 S))`` -- the quotient
    rounded to nearest, ties up; one divider, as hardware would share it over the classes."""
    m = y[0]
    for c in range(1, n):
        if y[c] > m:
            m = y[c]
    S = np.int64(0)
    for c in range(n):
        p[c] = table[softmax_index(m - y[c], in_frac, table_bits, range_bits)]
        S += p[c]
    for c in range(n):
        p[c] = ((p[c] << (p_frac + 1)) + S) // (2 * S)


@numba.njit(cache=True, inline="always")
def table_saturation(width, frac, signed):
    """The raw table output that stands for the saturated value 1 (``frac >= 0``): 1 itself (``2**frac``) where
    the format holds it, else the format's largest value -- the end entry every input beyond the table's
    saturation point reads (docs/arithmetic.md §11)."""
    one = np.int64(1) << frac
    top = (np.int64(1) << (width - 1)) - 1 if signed else (np.int64(1) << width) - 1
    return one if one <= top else top


def table_sat_bounds(act: str, fmt: FixedFormat) -> tuple[int, int]:
    """``(lo, hi)``: the raw outputs of table activation ``act`` in format ``fmt`` at or beyond which it reads as
    saturated (``t <= lo`` or ``t >= hi``: f' = 0), as ``table_deriv`` applies them; the hardware compares these."""
    f = max(fmt.frac, 0)
    t_sat = int(table_saturation(fmt.width, f, fmt.signed))
    return (-t_sat, t_sat) if act == "tanh" else ((1 << f) - t_sat, t_sat)


@numba.njit(cache=True, inline="always")
def table_deriv(is_tanh, t, t_frac, t_sat):
    """The exact derivative of a table activation from its output ``t`` (``t_frac >= 0`` fractional bits), at
    ``2*t_frac`` fractional bits: tanh ``1 - t*t``, sigmoid ``t * (1 - t)``; exactly 0 where ``t`` is saturated,
    ``|t| >= t_sat`` (tanh) or ``t >= t_sat`` / ``t <= 1 - t_sat`` (sigmoid), ``t_sat = table_saturation(...)``."""
    one = np.int64(1) << t_frac
    t = np.int64(t)
    if is_tanh:
        if t >= t_sat or t <= -t_sat:
            return np.int64(0)
        return (one << t_frac) - t * t
    if t >= t_sat or t <= one - t_sat:
        return np.int64(0)
    return t * (one - t)


@numba.njit(cache=True)
def tanh_deriv(t, t_frac, width, frac, signed, rmode, omode, rnd, t_sat):
    """tanh' from the table output ``t`` (``table_deriv``), assigned to the derivative format."""
    return convert(table_deriv(True, t, t_frac, t_sat), 2 * t_frac, width, frac, signed, rmode, omode, rnd)


@numba.njit(cache=True)
def sigmoid_deriv(s, s_frac, width, frac, signed, rmode, omode, rnd, s_sat):
    """sigmoid' from the table output ``s`` (``table_deriv``), assigned to the derivative format."""
    return convert(table_deriv(False, s, s_frac, s_sat), 2 * s_frac, width, frac, signed, rmode, omode, rnd)


@numba.njit(cache=True, inline="always")
def _one_threshold(frac):
    # smallest raw r with r * 2**-frac >= 1
    if frac >= 0:
        return np.int64(1) << frac
    return np.int64(1)


@numba.njit(cache=True)
def hard_tanh(r, in_frac, width, frac, signed, rmode, omode, rnd):
    """``clamp(z, -1, 1)`` (exact) assigned to the output format (width, frac, signed, modes)."""
    t = _one_threshold(in_frac)
    if r >= t:
        return convert(np.int64(1), 0, width, frac, signed, rmode, omode, rnd)
    if r <= -t:
        return convert(np.int64(-1), 0, width, frac, signed, rmode, omode, rnd)
    return convert(r, in_frac, width, frac, signed, rmode, omode, rnd)


@numba.njit(cache=True)
def hard_tanh_deriv_mask(r, in_frac):
    """1 when ``-1 < z < 1`` (strict, 0 at the boundaries), else 0."""
    t = _one_threshold(in_frac)
    return np.int64(1) if (-t < r < t) else np.int64(0)


@numba.njit(cache=True)
def relu(r, in_frac, width, frac, signed, rmode, omode, rnd):
    """``max(z, 0)`` assigned to the output format."""
    if r < 0:
        return np.int64(0)
    return convert(r, in_frac, width, frac, signed, rmode, omode, rnd)


@numba.njit(cache=True)
def relu_deriv_mask(r):
    """1 when ``z > 0`` else 0 (0 at z = 0, as PyTorch)."""
    return np.int64(1) if r > 0 else np.int64(0)


@numba.njit(cache=True)
def step(r):
    """Heaviside step: 1 when ``z > 0`` else 0."""
    return np.int64(1) if r > 0 else np.int64(0)


@numba.njit(cache=True)
def sign(r):
    """-1, 0 or +1 (sign(0) = 0).  As a value in a format with F >= 0 fractional bits: ``sign(r) << F``."""
    if r > 0:
        return np.int64(1)
    if r < 0:
        return np.int64(-1)
    return np.int64(0)
