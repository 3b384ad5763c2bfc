"""Bit-exact fixed-point kernels (Xilinx ``ap_fixed`` semantics), written once.

Every function here operates on *raw* integers: a value ``v`` in a format with ``F`` fractional bits is
stored as the int64 ``r`` with ``v = r * 2**-F``.  All kernels are ``@numba.njit(cache=True)`` and take
plain ints so the engine can call them from its own njit code.  The single written definition of the
arithmetic is ``docs/arithmetic.md``; the section numbers quoted below refer to it.

Mode codes (see :data:`edgelearn.fixed.formats.ROUNDING` / :data:`~edgelearn.fixed.formats.OVERFLOW`)::

    rounding: TRN=0 TRN_ZERO=1 RND=2 RND_ZERO=3 RND_INF=4 RND_MIN_INF=5 RND_CONV=6 STOCH=7
    overflow: WRAP=0 SAT=1 SAT_ZERO=2 SAT_SYM=3

Range of validity: raw values are int64; destination widths are 2..64 for signed, 2..63 for unsigned.
Intermediate exact values (an input shifted left, a sum of two aligned operands) must fit in int64,
except in :func:`convert` where a left shift that leaves int64 is still handled exactly (it can only
overflow the destination).
"""

from __future__ import annotations

import numba
import numpy as np

from edgelearn.fixed.lfsr import lfsr_draw_into

# rounding codes (mirrors formats.ROUNDING; duplicated as plain ints so njit code can use them)
TRN = 0
TRN_ZERO = 1
RND = 2
RND_ZERO = 3
RND_INF = 4
RND_MIN_INF = 5
RND_CONV = 6
STOCH = 7
# overflow codes (mirrors formats.OVERFLOW)
WRAP = 0
SAT = 1
SAT_ZERO = 2
SAT_SYM = 3

#: number of random bits one stochastic rounding consumes (one ``lfsr_bits(state, 32)`` draw)
STOCH_BITS = 32

_MASK32 = 0xFFFFFFFF

__all__ = [
    "TRN", "TRN_ZERO", "RND", "RND_ZERO", "RND_INF", "RND_MIN_INF", "RND_CONV", "STOCH",
    "WRAP", "SAT", "SAT_ZERO", "SAT_SYM", "STOCH_BITS",
    "round_shift", "overflow", "overflow_counted", "convert", "convert_counted",
    "raw_min", "raw_max", "shift_left_fits",
    "accumulate", "accumulate_counted", "mul", "update_weight", "update_weight_counted",
    "convert_array", "convert_array_counted",
]


@numba.njit(cache=True, inline="always")
def _round_core(q, rem, s, mode, rnd, neg):
    """Rounding decision for ``r = q * 2**s + rem`` with ``0 <= rem < 2**s``, ``1 <= s <= 62``.

    ``neg`` is ``r < 0``.  Returns the rounded quotient (docs/arithmetic.md section 3).
    """
    if mode == TRN:
        return q
    half = np.int64(1) << (s - 1)
    if mode == TRN_ZERO:
        return q + 1 if (neg and rem != 0) else q
    if mode == RND:
        return q + 1 if rem >= half else q
    if mode == RND_ZERO:
        return q + 1 if (rem > half or (rem == half and neg)) else q
    if mode == RND_INF:
        return q + 1 if (rem > half or (rem == half and not neg)) else q
    if mode == RND_MIN_INF:
        return q + 1 if rem > half else q
    if mode == RND_CONV:
        return q + 1 if (rem > half or (rem == half and (q & 1) != 0)) else q
    if mode == STOCH:
        u = rnd & _MASK32
        if s <= 32:
            u = u >> (32 - s)
        else:
            u = u << (s - 32)
        return q + ((rem + u) >> s)
    # unknown mode: behave as TRN (mode codes are validated in formats.py)
    return q


@numba.njit(cache=True)
def round_shift(r, s, mode, rnd):
    """Exact ``r * 2**-s`` rounded to an integer with rounding ``mode`` (s > 0), exact left shift (s <= 0).

    ``rnd`` is the 32-bit stochastic draw used by STOCH (``floor(r*2**-s + rnd*2**-32)``), ignored
    otherwise.  For ``s <= 0`` the result is ``r << -s`` (the caller guarantees it fits in int64;
    :func:`convert` handles the case where it does not).
    """
    r = np.int64(r)
    s = np.int64(s)
    if s <= 0:
        if s <= -64:
            return np.int64(0)
        return r << (-s)
    neg = r < 0
    if s > 62:
        # Reduce to a 62-bit shift with a sticky bit: keeps floor, tie detection, parity and the STOCH
        # carry exact (docs/arithmetic.md section 3, "very large shifts").
        t = s - 62
        if t >= 63:
            if r < 0:
                r = np.int64(-1)
            elif r > 0:
                r = np.int64(1)
        else:
            low = r & ((np.int64(1) << t) - 1)
            r = r >> t
            if low != 0:
                r = r | 1
        s = np.int64(62)
    q = r >> s
    rem = r & ((np.int64(1) << s) - 1)
    return _round_core(q, rem, s, mode, rnd, neg)


@numba.njit(cache=True, inline="always")
def raw_min(width, signed):
    """Smallest raw value of a ``width``-bit (un)signed word."""
    if signed:
        return -(np.int64(1) << (width - 1))
    return np.int64(0)


@numba.njit(cache=True, inline="always")
def raw_max(width, signed):
    """Largest raw value of a ``width``-bit (un)signed word."""
    if signed:
        return (np.int64(1) << (width - 1)) - 1
    return (np.int64(1) << width) - 1


@numba.njit(cache=True, inline="always")
def _wrap(r, width, signed):
    if width >= 64:
        return r
    mask = (np.int64(1) << width) - 1
    v = r & mask
    if signed:
        sign = np.int64(1) << (width - 1)
        v = (v ^ sign) - sign
    return v


@numba.njit(cache=True, inline="always")
def _overflow_core(r, width, signed, mode):
    """Returns ``(value, event)``; ``event`` is True when the overflow mode had to act."""
    if signed and width >= 64:
        if mode == SAT_SYM and r == np.int64(-9223372036854775807) - 1:
            return r + 1, True
        return r, False
    lo = raw_min(width, signed)
    hi = raw_max(width, signed)
    sym = mode == SAT_SYM and signed
    if r > hi or r < lo or (sym and r == lo):
        if mode == WRAP:
            return _wrap(r, width, signed), True
        if mode == SAT_ZERO:
            return np.int64(0), True
        if r > hi:
            return hi, True
        if sym:
            return -hi, True
        return lo, True
    return r, False


@numba.njit(cache=True)
def overflow_counted(r, width, signed, mode, counters):
    """:func:`overflow`, also incrementing ``counters[0]`` when the value was out of range (or, for
    SAT_SYM signed, equal to the excluded minimum)."""
    v, ev = _overflow_core(np.int64(r), width, signed, mode)
    if ev:
        counters[0] += 1
    return v


@numba.njit(cache=True)
def overflow(r, width, signed, mode):
    """Apply overflow ``mode`` to the exact integer ``r`` for a ``width``-bit (un)signed word.

    WRAP: two's complement wrap to ``width`` bits; SAT: clamp to [min, max]; SAT_ZERO: out of range -> 0;
    SAT_SYM: signed clamp to [-max, max] (the in-range value min is also mapped to -max, as Xilinx does),
    unsigned: as SAT.
    """
    return _overflow_core(np.int64(r), width, signed, mode)[0]


@numba.njit(cache=True, inline="always")
def shift_left_fits(r, n):
    """True when ``r << n`` (n >= 0) is exact in int64."""
    if r == 0 or n == 0:
        return True
    if n >= 63:
        return False
    return ((r << n) >> n) == r


@numba.njit(cache=True, inline="always")
def _convert_core(r, src_frac, width, frac, signed, rmode, omode, rnd):
    """Returns ``(value, overflow_event, nonzero_became_zero)``."""
    s = np.int64(src_frac) - np.int64(frac)
    if s < 0 and not shift_left_fits(r, -s):
        # exact value outside int64: certainly outside any destination range
        if omode == WRAP:
            if -s >= 64:
                return np.int64(0), True, True
            v = _wrap(r << (-s), width, signed)
            return v, True, v == 0
        if omode == SAT_ZERO:
            return np.int64(0), True, True
        if r > 0:
            return raw_max(width, signed), True, False
        if signed and omode == SAT_SYM:
            return -raw_max(width, signed), True, False
        return raw_min(width, signed), True, raw_min(width, signed) == 0
    v = round_shift(r, s, rmode, rnd)
    out, ev = _overflow_core(v, width, signed, omode)
    return out, ev, (r != 0 and out == 0)


@numba.njit(cache=True)
def convert_counted(r, src_frac, width, frac, signed, rmode, omode, rnd, counters):
    """:func:`convert`, also counting events into ``counters`` (int64 array, length >= 2):

    ``counters[0] += 1`` when the rounded value overflowed the destination (any overflow mode, also
    WRAP; for signed SAT_SYM also the value min), ``counters[1] += 1`` when a non-zero input became 0.
    """
    v, ev, zeroed = _convert_core(np.int64(r), src_frac, width, frac, signed, rmode, omode, rnd)
    if ev:
        counters[0] += 1
    if zeroed:
        counters[1] += 1
    return v


@numba.njit(cache=True)
def convert(r, src_frac, width, frac, signed, rmode, omode, rnd):
    """Re-express raw ``r`` (``src_frac`` fractional bits) in the destination format.

    Destination: ``width`` bits, ``frac`` fractional bits, ``signed``; rounding ``rmode`` applied first
    (``round_shift`` by ``src_frac - frac``), then overflow ``omode``.  ``rnd``: 32-bit draw for STOCH.
    This is exactly the Xilinx ``ap_fixed`` assignment ``dst = src``.
    """
    return _convert_core(np.int64(r), src_frac, width, frac, signed, rmode, omode, rnd)[0]


@numba.njit(cache=True, inline="always")
def mul(a, b):
    """Full-precision product of two raw values: ``frac(a*b) = frac(a) + frac(b)`` (no rounding)."""
    return np.int64(a) * np.int64(b)


@numba.njit(cache=True)
def accumulate_counted(acc, p, p_frac, width, frac, signed, rmode, omode, rnd, counters):
    """``acc += p`` in HLS semantics: the exact sum of ``acc`` (``frac`` fractional bits) and ``p``
    (``p_frac`` fractional bits) is narrowed to the accumulator format (width, frac, signed, modes)."""
    acc = np.int64(acc)
    p = np.int64(p)
    if p_frac > frac:
        total = (acc << (p_frac - frac)) + p
        return convert_counted(total, p_frac, width, frac, signed, rmode, omode, rnd, counters)
    total = acc + (p << (frac - p_frac))
    return convert_counted(total, frac, width, frac, signed, rmode, omode, rnd, counters)


@numba.njit(cache=True)
def accumulate(acc, p, p_frac, width, frac, signed, rmode, omode, rnd):
    """See :func:`accumulate_counted`."""
    acc = np.int64(acc)
    p = np.int64(p)
    if p_frac > frac:
        return convert((acc << (p_frac - frac)) + p, p_frac, width, frac, signed, rmode, omode, rnd)
    return convert(acc + (p << (frac - p_frac)), frac, width, frac, signed, rmode, omode, rnd)


@numba.njit(cache=True)
def update_weight_counted(w, u, u_frac, lr_shift, width, frac, signed, rmode, omode, rnd, counters):
    """Weight update ``w_new = w + round(u * 2**-lr_shift)`` (docs/arithmetic.md section 12).

    ``u`` is the exact signed increment term (already carrying the descent sign) with ``u_frac``
    fractional bits; the learning rate is ``2**-lr_shift``.  The increment is first rounded to the
    weight's LSB with the weight format's rounding mode (``counters[1]`` counts non-zero increments
    that round to 0), then added to ``w`` exactly and the weight format's overflow mode is applied
    (``counters[0]`` counts overflow/saturation events).
    """
    s = np.int64(u_frac) + np.int64(lr_shift) - np.int64(frac)
    d = round_shift(u, s, rmode, rnd)
    if u != 0 and d == 0:
        counters[1] += 1
    return overflow_counted(np.int64(w) + d, width, signed, omode, counters)


@numba.njit(cache=True)
def update_weight(w, u, u_frac, lr_shift, width, frac, signed, rmode, omode, rnd):
    """See :func:`update_weight_counted`."""
    s = np.int64(u_frac) + np.int64(lr_shift) - np.int64(frac)
    d = round_shift(u, s, rmode, rnd)
    return overflow(np.int64(w) + d, width, signed, omode)


@numba.njit(cache=True)
def convert_array_counted(raw, src_frac, width, frac, signed, rmode, omode, lfsr_state, counters):
    """Element-wise :func:`convert_counted` over an int64 array (any shape, C order).

    With ``rmode == STOCH`` one 32-bit draw ``lfsr_bits(state, 32)`` is taken per element in C order from
    ``lfsr_state`` (int64 array of length >= 1, updated in place).  Returns a new int64 array.
    """
    flat = raw.ravel()
    out = np.empty(flat.size, dtype=np.int64)
    for i in range(flat.size):
        rnd = np.int64(0)
        if rmode == STOCH:
            rnd = lfsr_draw_into(lfsr_state, 32)
        out[i] = convert_counted(flat[i], src_frac, width, frac, signed, rmode, omode, rnd, counters)
    return out.reshape(raw.shape)


@numba.njit(cache=True)
def convert_array(raw, src_frac, width, frac, signed, rmode, omode, lfsr_state):
    """Element-wise :func:`convert` over an array; see :func:`convert_array_counted`."""
    counters = np.zeros(2, dtype=np.int64)
    return convert_array_counted(raw, src_frac, width, frac, signed, rmode, omode, lfsr_state, counters)
