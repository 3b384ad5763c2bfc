"""Fixed-point formats: Xilinx ``ap_fixed<W, I, Q, O>`` / ``ap_ufixed`` and hls4ml ``fixed<W, I, Q, O>``.

A value ``v`` of a format with ``F = W - I`` fractional bits is stored as the int64 raw ``r``,
``v = r * 2**-F``.  The written definition is ``docs/arithmetic.md``.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import ClassVar

import numba
import numpy as np

from edgelearn.errors import FormatError
from edgelearn.fixed.lfsr import lfsr_draw_into, seed_state

ROUNDING = {"TRN": 0, "TRN_ZERO": 1, "RND": 2, "RND_ZERO": 3, "RND_INF": 4, "RND_MIN_INF": 5, "RND_CONV": 6, "STOCH": 7}
OVERFLOW = {"WRAP": 0, "SAT": 1, "SAT_ZERO": 2, "SAT_SYM": 3}

#: limits on the integer-bit count relative to the width: ``-64 <= I <= W + 64`` i.e. ``-64 <= F <= W + 64``
MAX_EXTRA_BITS = 64

__all__ = [
    "ROUNDING", "OVERFLOW", "FixedFormat", "AccumulatorFormat", "parse_format", "quantize_array",
]


def _norm_mode(name, table: dict, what: str) -> str:
    if not isinstance(name, str):
        raise FormatError(f"{what} mode must be a string, got {name!r}")
    n = name.strip().upper()
    if n.startswith("AP_"):
        n = n[3:]
    if n not in table:
        raise FormatError(f"unknown {what} mode {name!r} (expected one of {', '.join(table)})")
    return n


def _as_int(v, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise FormatError(f"{what} must be an integer, got {v!r}")
    return int(v)


@dataclass(frozen=True)
class FixedFormat:
    """A stored fixed-point format (2..32 bits).  See :class:`AccumulatorFormat` for wide accumulators."""

    width: int
    integer: int
    signed: bool = True
    rounding: str = "TRN"
    overflow: str = "WRAP"

    MAX_WIDTH: ClassVar[int] = 32

    def __post_init__(self):
        w = _as_int(self.width, "fixed-point width W")
        i = _as_int(self.integer, "fixed-point integer bits I")
        if not isinstance(self.signed, (bool, np.bool_)):
            raise FormatError(f"signed must be a bool, got {self.signed!r}")
        signed = bool(self.signed)
        max_w = self.MAX_WIDTH if (signed or self.MAX_WIDTH < 64) else 63
        if not 2 <= w <= max_w:
            kind = "accumulator" if self.MAX_WIDTH > 32 else "stored fixed-point"
            raise FormatError(f"{kind} width W={w} out of range (must be 2..{max_w})")
        if not -MAX_EXTRA_BITS <= i <= w + MAX_EXTRA_BITS:
            raise FormatError(
                f"integer bits I={i} out of range for W={w} (must be {-MAX_EXTRA_BITS}..{w + MAX_EXTRA_BITS})"
            )
        object.__setattr__(self, "width", w)
        object.__setattr__(self, "integer", i)
        object.__setattr__(self, "signed", signed)
        object.__setattr__(self, "rounding", _norm_mode(self.rounding, ROUNDING, "rounding"))
        object.__setattr__(self, "overflow", _norm_mode(self.overflow, OVERFLOW, "overflow"))

    # -- derived quantities -------------------------------------------------------------------------
    @property
    def frac(self) -> int:
        """Fractional bits ``F = W - I`` (may be negative or larger than W)."""
        return self.width - self.integer

    @property
    def min_raw(self) -> int:
        """Smallest storable raw value (storage range; SAT_SYM saturates to ``-max_raw`` instead)."""
        return -(1 << (self.width - 1)) if self.signed else 0

    @property
    def max_raw(self) -> int:
        return (1 << (self.width - 1)) - 1 if self.signed else (1 << self.width) - 1

    @property
    def lsb(self) -> float:
        """Value of one LSB, ``2**-F``."""
        return math.ldexp(1.0, -self.frac)

    @property
    def min_value(self) -> float:
        return math.ldexp(float(self.min_raw), -self.frac)

    @property
    def max_value(self) -> float:
        return math.ldexp(float(self.max_raw), -self.frac)

    @property
    def rmode(self) -> int:
        """Rounding mode code for the njit kernels."""
        return ROUNDING[self.rounding]

    @property
    def omode(self) -> int:
        """Overflow mode code for the njit kernels."""
        return OVERFLOW[self.overflow]

    def kernel_args(self) -> tuple[int, int, bool, int, int]:
        """``(width, frac, signed, rmode, omode)`` -- the destination arguments of ``arith.convert``."""
        return self.width, self.frac, self.signed, self.rmode, self.omode

    # -- parsing / printing -------------------------------------------------------------------------
    _RE: ClassVar[re.Pattern] = re.compile(r"^\s*(ap_)?(u)?(fixed|int)\s*<(.*)>\s*$", re.IGNORECASE)

    @classmethod
    def parse(cls, text) -> "FixedFormat":
        """Parse hls4ml / Vivado syntax: ``fixed<8,3>``, ``ufixed<8,0,RND,SAT_SYM>``, ``ap_fixed<16,6>``,
        ``ap_ufixed<8,2,AP_RND,AP_SAT>``, ``ap_fixed<8,3,AP_RND,AP_SAT,0>``, ``int<8>``, ``ap_uint<8>``."""
        if isinstance(text, FixedFormat):
            return cls(text.width, text.integer, text.signed, text.rounding, text.overflow)
        if not isinstance(text, str):
            raise FormatError(f"fixed-point format must be a string like 'fixed<8,3>', got {text!r}")
        m = cls._RE.match(text)
        if not m:
            raise FormatError(f"cannot parse fixed-point format {text!r} (expected e.g. 'fixed<8,3,RND,SAT>')")
        signed = m.group(2) is None
        kind = m.group(3).lower()
        args = [a.strip() for a in m.group(4).split(",")]
        if any(a == "" for a in args):
            raise FormatError(f"empty parameter in fixed-point format {text!r}")

        def num(a: str, what: str) -> int:
            if not re.fullmatch(r"[+-]?\d+", a):
                raise FormatError(f"{what} must be an integer in fixed-point format {text!r}, got {a!r}")
            return int(a)

        if kind == "int":
            if len(args) != 1:
                raise FormatError(f"integer format {text!r} takes exactly one parameter (the width)")
            w = num(args[0], "width")
            return cls(w, w, signed)
        if not 2 <= len(args) <= 5:
            raise FormatError(f"fixed-point format {text!r} needs 2 to 5 parameters <W,I[,Q[,O[,N]]]>")
        w = num(args[0], "width W")
        i = num(args[1], "integer bits I")
        q = args[2] if len(args) > 2 else "TRN"
        o = args[3] if len(args) > 3 else "WRAP"
        if len(args) > 4:
            n = num(args[4], "saturation bits N")
            if n != 0:
                raise FormatError(f"saturation bits N={n} in {text!r} are not supported (only N=0)")
        return cls(w, i, signed, q, o)

    def _params(self, prefix: str) -> str:
        q = "TRN" if self.rounding == "STOCH" else self.rounding
        if q == "TRN" and self.overflow == "WRAP":
            return f"{self.width},{self.integer}"
        return f"{self.width},{self.integer},{prefix}{q},{prefix}{self.overflow}"

    def to_hls(self) -> str:
        """Vivado/Vitis HLS type, e.g. ``ap_fixed<8,3,AP_RND_CONV,AP_SAT>``.

        STOCH has no ap_fixed equivalent and is rendered as AP_TRN: the HLS/RTL kernels add the LFSR draw
        explicitly before the truncating assignment (docs/arithmetic.md §8)."""
        return f"ap_{'' if self.signed else 'u'}fixed<{self._params('AP_')}>"

    def to_hls4ml(self) -> str:
        """hls4ml precision string, e.g. ``fixed<8,3,RND_CONV,SAT>`` (STOCH rendered as TRN)."""
        return f"{'' if self.signed else 'u'}fixed<{self._params('')}>"

    def __str__(self) -> str:
        return self.to_hls4ml()

    def with_(self, **changes) -> "FixedFormat":
        """Copy with some fields changed (validated)."""
        try:
            return dataclasses.replace(self, **changes)
        except TypeError as exc:
            raise FormatError(f"invalid format field in {sorted(changes)}: {exc}") from exc

    # -- conversions ----------------------------------------------------------------------------------
    def quantize(self, x, rng_state=None) -> np.ndarray:
        """Float -> raw int64 with this format's rounding then overflow, exactly (docs/arithmetic.md §5).

        ``rng_state`` is used only by STOCH: ``None`` -> a fresh LFSR from ``DEFAULT_SEED``; an int -> a
        fresh LFSR from that seed; an int64 array of length 1 -> that state, advanced in place (one 32-bit
        draw per element, C order).  NaN raises :class:`FormatError`; +-inf behave as huge finite values.
        """
        arr = np.asarray(x, dtype=np.float64)
        if np.isnan(arr).any():
            raise FormatError(f"cannot quantize NaN to {self}")
        if isinstance(rng_state, np.ndarray):
            if rng_state.dtype != np.int64 or rng_state.size < 1:
                raise FormatError("rng_state array must be int64 with at least one element")
            state = rng_state.reshape(-1)
            if state[0] & 0xFFFFFFFF == 0:
                state[0] = seed_state(0)
        else:
            state = np.array([seed_state(0 if rng_state is None else rng_state)], dtype=np.int64)
        flat = np.ascontiguousarray(arr).reshape(-1)
        out = quantize_array(flat, self.frac, self.width, self.signed, self.rmode, self.omode, state)
        if isinstance(rng_state, np.ndarray):
            rng_state.reshape(-1)[0] = state[0]
        return out.reshape(arr.shape)

    def to_float(self, raw) -> np.ndarray:
        """Raw -> float64 (exact for |raw| < 2**53)."""
        return np.ldexp(np.asarray(raw, dtype=np.int64).astype(np.float64), -self.frac)


@dataclass(frozen=True)
class AccumulatorFormat(FixedFormat):
    """A wide (accumulator / intermediate) format: up to 64 bits signed, 63 unsigned."""

    MAX_WIDTH: ClassVar[int] = 64


def parse_format(text_or_format, accumulator: bool = False) -> FixedFormat:
    """Parse a format string or pass a :class:`FixedFormat` through (``accumulator=True`` allows W <= 64)."""
    cls = AccumulatorFormat if accumulator else FixedFormat
    if isinstance(text_or_format, FixedFormat) and type(text_or_format) is cls:
        return text_or_format
    return cls.parse(text_or_format)


# ------------------------------------------------------------------------------------------------------
# float -> raw kernel (exact)

_TWO32 = 4294967296.0


@numba.njit(cache=True)
def _quantize_one(x, frac, width, signed, rmode, omode, rnd):
    # y = x * 2**frac exactly (power-of-two scaling; ldexp is correctly rounded even near underflow)
    y = math.ldexp(x, frac)
    if y == 0.0 and x != 0.0:
        # underflowed to zero: the value is a tiny non-zero number of the sign of x
        tiny = True
        neg = x < 0.0
        mag_int = 0.0
        g = 0.0
    else:
        tiny = False
        neg = y < 0.0
        a = -y if neg else y
        mag_int = np.floor(a)  # integer part of |y| (float)
        g = a - mag_int  # exact fractional part of |y| in [0, 1)
    lo = -(np.int64(1) << (width - 1)) if signed else np.int64(0)
    if signed:
        hi = (np.int64(1) << (width - 1)) - 1 if width < 64 else np.int64(9223372036854775807)
    else:
        hi = (np.int64(1) << width) - 1
    if mag_int >= 9223372036854775808.0:  # |y| >= 2**63 (or inf): outside every destination range
        if omode == 0:  # WRAP: exact low W bits (fmod is exact; huge doubles are multiples of 2**W)
            if math.isinf(mag_int):
                return np.int64(0)
            if width < 64:
                mm = np.fmod(mag_int, math.ldexp(1.0, width))
            else:
                mm = np.fmod(mag_int, 18446744073709551616.0)
                if mm >= 9223372036854775808.0:
                    mm -= 18446744073709551616.0
            v = np.int64(mm)
            if neg:
                v = -v
            if width < 64:
                v = v & ((np.int64(1) << width) - 1)
                if signed:
                    sign = np.int64(1) << (width - 1)
                    v = (v ^ sign) - sign
            return v
        if omode == 2:  # SAT_ZERO
            return np.int64(0)
        if not neg:
            return hi
        if signed and omode == 3:
            return -hi
        return lo
    m = np.int64(mag_int)
    if tiny:
        gt_half = False
        eq_half = False
        nonzero = True
        # STOCH: |y| is below 2**-32 * 2**-1000, so g * 2**32 < 1
        g32 = 0.0
    else:
        gt_half = g > 0.5
        eq_half = g == 0.5
        nonzero = g != 0.0
        g32 = g * _TWO32  # exact
    # decide the rounded integer in sign-magnitude form
    if rmode == 0:  # TRN (floor)
        r = -(m + (1 if nonzero else 0)) if neg else m
    elif rmode == 1:  # TRN_ZERO
        r = -m if neg else m
    elif rmode == 2:  # RND: half toward +inf
        if neg:
            r = -(m + (1 if gt_half else 0))
        else:
            r = m + (1 if (gt_half or eq_half) else 0)
    elif rmode == 3:  # RND_ZERO: half toward zero
        mm = m + (1 if gt_half else 0)
        r = -mm if neg else mm
    elif rmode == 4:  # RND_INF: half away from zero
        mm = m + (1 if (gt_half or eq_half) else 0)
        r = -mm if neg else mm
    elif rmode == 5:  # RND_MIN_INF: half toward -inf
        if neg:
            r = -(m + (1 if (gt_half or eq_half) else 0))
        else:
            r = m + (1 if gt_half else 0)
    elif rmode == 6:  # RND_CONV: half to even
        mm = m + (1 if (gt_half or (eq_half and (m & 1) == 1)) else 0)
        r = -mm if neg else mm
    else:  # STOCH: floor(y + rnd * 2**-32)
        rr = np.float64(rnd & 0xFFFFFFFF)
        if neg:
            # y = -m - g ; floor(y + d) = -m - 1 + [d >= g]  (g > 0), -m  (g == 0)
            if not nonzero:
                r = -m
            elif tiny:
                r = -m if rr >= 1.0 else -m - 1
            else:
                r = -m if rr >= g32 else -m - 1
        else:
            r = m + (1 if g32 + rr >= _TWO32 else 0)
    # overflow
    if r > hi or r < lo or (omode == 3 and signed and r == lo):
        if omode == 0:
            if width >= 64:
                return r
            v = r & ((np.int64(1) << width) - 1)
            if signed:
                sign = np.int64(1) << (width - 1)
                v = (v ^ sign) - sign
            return v
        if omode == 2:
            return np.int64(0)
        if r > hi:
            return hi
        if signed and omode == 3:
            return -hi
        return lo
    return r


@numba.njit(cache=True)
def quantize_array(x, frac, width, signed, rmode, omode, lfsr_state):
    """Float64 1-D array -> raw int64 (njit); STOCH takes one 32-bit draw per element from ``lfsr_state[0]``."""
    out = np.empty(x.size, dtype=np.int64)
    for i in range(x.size):
        rnd = np.int64(0)
        if rmode == 7:
            rnd = lfsr_draw_into(lfsr_state, 32)
        out[i] = _quantize_one(x[i], frac, width, signed, rmode, omode, rnd)
    return out
