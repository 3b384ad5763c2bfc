"""The one pseudo-random generator of the fixed-point engine, HLS kernel and RTL (docs/arithmetic.md §7).

* 32-bit **Galois** LFSR, right-shifting, characteristic polynomial ``x^32 + x^22 + x^2 + x + 1``
  (maximal length, period ``2**32 - 1``), toggle mask ``TAPS = 0x80200003``::

      step(s):  out = s & 1;  s = s >> 1;  if out: s ^= 0x80200003

* Seeding: ``state = seed mod 2**32``; a zero state (the LFSR's lock-up state) is replaced by
  ``DEFAULT_SEED = 0xACE1ACE1``.
* ``k`` random bits (one *draw*): ``k`` steps; each step's output bit ``out`` is shifted into the draw
  from the right, so the first output bit ends up as the draw's most significant bit::

      bits = 0; repeat k: bits = (bits << 1) | (s & 1); s = step(s)

  Successive draws are therefore disjoint windows of one m-sequence.  A 32-bit draw is never 0.
* Feedback matrices (no storage): ``lfsr_matrix(seed, rows, cols, width)`` fills ``B`` in row-major order,
  one ``width``-bit draw per entry, interpreted as a two's-complement (sign-extended) raw value; the
  entry's value is ``raw * 2**-F`` in whatever fixed-point format the caller chose (e.g. ``fixed<W,1>``
  gives uniform values in ``[-1, 1)``).  ``lfsr_sign_matrix`` gives ``+-1`` entries from one bit each
  (bit 1 -> -1, bit 0 -> +1).

The hardware may unroll ``k`` steps into a constant XOR network: :func:`lfsr_step_masks` and
:func:`lfsr_draw_masks` give, per output bit, the mask of old-state bits to XOR.
"""

from __future__ import annotations

import numba
import numpy as np

from edgelearn.errors import FormatError
from edgelearn.program import row_start_steps

#: Galois toggle mask of x^32 + x^22 + x^2 + x + 1
TAPS = 0x80200003
#: state used when the seed is 0 mod 2**32
DEFAULT_SEED = 0xACE1ACE1
#: state width in bits
STATE_BITS = 32
_MASK32 = 0xFFFFFFFF
#: 2**32 - 1 = 3 * 5 * 17 * 257 * 65537
PERIOD = 2**32 - 1

__all__ = [
    "TAPS", "DEFAULT_SEED", "STATE_BITS", "PERIOD",
    "seed_state", "derive_seed", "lfsr_next", "lfsr_bits", "lfsr_draw32", "lfsr_draw_into",
    "lfsr_matrix", "lfsr_sign_matrix", "lfsr_next_taps",
    "py_lfsr_next", "py_lfsr_bits", "py_lfsr_matrix",
    "lfsr_jump", "row_states", "feedback_value", "lfsr_step_masks", "lfsr_draw_masks",
    "DRAW_HISTORY", "state_after_draw", "draws_start", "draws_extend", "lfsr_draws", "jump_draws",
]


def seed_state(seed: int) -> int:
    """Initial LFSR state for ``seed``: ``seed mod 2**32``, with 0 replaced by :data:`DEFAULT_SEED`."""
    try:
        s = int(seed) & _MASK32
    except (TypeError, ValueError) as exc:
        raise FormatError(f"LFSR seed must be an integer, got {seed!r}") from exc
    return s if s != 0 else DEFAULT_SEED


def derive_seed(base: int, stream: int) -> int:
    """Seed of an independent stream number ``stream`` (e.g. one per layer's feedback matrix) from a base
    seed: ``seed_state(base + 0x9E3779B9 * stream)``."""
    return seed_state((int(base) + 0x9E3779B9 * int(stream)) & _MASK32)


@numba.njit(cache=True, inline="always")
def lfsr_next_taps(state, taps):
    """One step of a right-shifting Galois LFSR with toggle mask ``taps`` (any width <= 62)."""
    lsb = state & 1
    state = state >> 1
    if lsb != 0:
        state = state ^ taps
    return state


@numba.njit(cache=True, inline="always")
def lfsr_next(state):
    """One step of the 32-bit LFSR (state is a non-negative int < 2**32)."""
    return lfsr_next_taps(state, np.int64(TAPS))


@numba.njit(cache=True)
def lfsr_bits(state, k):
    """Draw ``k`` bits (``0 <= k <= 62``): returns ``(new_state, bits)``; first output bit is the MSB."""
    s = np.int64(state) & _MASK32
    bits = np.int64(0)
    for _ in range(k):
        bits = (bits << 1) | (s & 1)
        s = lfsr_next(s)
    return s, bits


def _byte_tables() -> tuple[np.ndarray, np.ndarray]:
    """Byte-sliced tables of the 32-step map (linear over GF(2)): for byte b and value v,
    ``STEP32[b, v]`` / ``DRAW32[b, v]`` are the state after 32 steps / the 32-bit draw from the state
    ``v << 8b``; the results for a full state are the XOR over its four bytes."""
    step = np.zeros((4, 256), dtype=np.int64)
    draw = np.zeros((4, 256), dtype=np.int64)
    img_s, img_d = [], []
    for j in range(STATE_BITS):
        st, bits = 1 << j, 0
        for _ in range(32):
            bits = (bits << 1) | (st & 1)
            out = st & 1
            st >>= 1
            if out:
                st ^= TAPS
        img_s.append(st)
        img_d.append(bits)
    for b in range(4):
        for v in range(256):
            a = d = 0
            for j in range(8):
                if (v >> j) & 1:
                    a ^= img_s[8 * b + j]
                    d ^= img_d[8 * b + j]
            step[b, v] = a
            draw[b, v] = d
    return step, draw


_STEP32, _DRAW32 = _byte_tables()


@numba.njit(cache=True, inline="always")
def lfsr_draw32(state):
    """``lfsr_bits(state, 32)`` computed with byte tables (same result, ~8 lookups): ``(new_state, bits)``."""
    s = np.int64(state) & _MASK32
    b0 = s & 0xFF
    b1 = (s >> 8) & 0xFF
    b2 = (s >> 16) & 0xFF
    b3 = (s >> 24) & 0xFF
    ns = _STEP32[0, b0] ^ _STEP32[1, b1] ^ _STEP32[2, b2] ^ _STEP32[3, b3]
    bits = _DRAW32[0, b0] ^ _DRAW32[1, b1] ^ _DRAW32[2, b2] ^ _DRAW32[3, b3]
    return ns, bits


@numba.njit(cache=True)
def lfsr_draw_into(state_arr, k):
    """Draw ``k`` bits using/updating ``state_arr[0]`` in place (for njit loops); returns the bits."""
    if k == 32:
        s, bits = lfsr_draw32(state_arr[0])
    else:
        s, bits = lfsr_bits(state_arr[0], k)
    state_arr[0] = s
    return bits


@numba.njit(cache=True, inline="always")
def _nb_seed_state(seed):
    s = np.int64(seed) & _MASK32
    return s if s != 0 else np.int64(DEFAULT_SEED)


@numba.njit(cache=True)
def lfsr_matrix(seed, rows, cols, width):
    """Feedback matrix of raw ``width``-bit two's-complement values, shape ``(rows, cols)`` (njit).

    Entry ``(i, j)`` is draw number ``i*cols + j`` (``width`` bits each, ``2 <= width <= 32``) from
    ``seed_state(seed)``, sign-extended.
    """
    if width < 2 or width > 32:
        raise FormatError("feedback entry width must be 2..32 bits")
    if rows < 0 or cols < 0:
        raise FormatError("feedback matrix shape must be non-negative")
    out = np.empty((rows, cols), dtype=np.int64)
    s = _nb_seed_state(seed)
    sign = np.int64(1) << (width - 1)
    for i in range(rows):
        for j in range(cols):
            s, bits = lfsr_bits(s, width)
            out[i, j] = (bits ^ sign) - sign
    return out


@numba.njit(cache=True)
def lfsr_sign_matrix(seed, rows, cols):
    """``+-1`` feedback matrix (njit): one bit per entry in row-major order, bit 1 -> -1, bit 0 -> +1."""
    if rows < 0 or cols < 0:
        raise FormatError("feedback matrix shape must be non-negative")
    out = np.empty((rows, cols), dtype=np.int64)
    s = _nb_seed_state(seed)
    for i in range(rows):
        for j in range(cols):
            out[i, j] = -1 if (s & 1) != 0 else 1
            s = lfsr_next(s)
    return out


def _check_width(width: int) -> int:
    width = int(width)
    if not 2 <= width <= 32:
        raise FormatError(f"feedback entry width must be 2..32 bits, got {width}")
    return width


# ----------------------------------------------------------------------------------------------------
# pure-Python reference (the definition, readable; tests compare the njit kernels with it)


def py_lfsr_next(state: int) -> int:
    out = state & 1
    state >>= 1
    if out:
        state ^= TAPS
    return state


def py_lfsr_bits(state: int, k: int) -> tuple[int, int]:
    bits = 0
    for _ in range(k):
        bits = (bits << 1) | (state & 1)
        state = py_lfsr_next(state)
    return state, bits


def py_lfsr_matrix(seed: int, rows: int, cols: int, width: int) -> list[list[int]]:
    s = seed_state(seed)
    out = []
    for _ in range(rows):
        row = []
        for _ in range(cols):
            s, b = py_lfsr_bits(s, width)
            row.append(b - (1 << width) if b >> (width - 1) else b)
        out.append(row)
    return out


# ----------------------------------------------------------------------------------------------------
# linear-algebra helpers over GF(2): random access and unrolled hardware steps


def _step_matrix_cols() -> list[int]:
    """Column j = image of basis state 1<<j under one step (the step is linear over GF(2))."""
    return [py_lfsr_next(1 << j) for j in range(STATE_BITS)]


def _apply(cols: list[int], state: int) -> int:
    out = 0
    j = 0
    while state:
        if state & 1:
            out ^= cols[j]
        state >>= 1
        j += 1
    return out


def _compose(a: list[int], b: list[int]) -> list[int]:
    """Matrix of ``a(b(x))``."""
    return [_apply(a, c) for c in b]


def _jump_matrix(n: int) -> list[int]:
    """Matrix of 'advance by ``n`` steps' (square-and-multiply of the GF(2) step matrix)."""
    n = int(n) % PERIOD
    mat = _step_matrix_cols()
    out = [1 << j for j in range(STATE_BITS)]
    while n:
        if n & 1:
            out = _compose(mat, out)
        mat = _compose(mat, mat)
        n >>= 1
    return out


def lfsr_jump(state: int, n: int) -> int:
    """State after ``n`` steps, in O(32^3 log n)."""
    return _apply(_jump_matrix(n), int(state) & _MASK32)


def row_states(state: int, rows: int, cols: int, width: int) -> np.ndarray:
    """LFSR state at the start of each row of a row-major (rows, cols) matrix of ``width``-bit draws from
    ``state`` (``program.row_start_steps``): what regenerates one row of a feedback matrix without storing it."""
    step = _jump_matrix(row_start_steps(1, cols, width))
    out = np.empty(int(rows), dtype=np.int64)
    s = int(state) & _MASK32
    for r in range(int(rows)):
        out[r] = s
        s = _apply(step, s)
    return out


def feedback_value(seed: int, row: int, col: int, cols: int, width: int) -> int:
    """Random access to ``lfsr_matrix(seed, rows, cols, width)[row, col]`` without generating the rest."""
    width = _check_width(width)
    s = lfsr_jump(seed_state(seed), (int(row) * int(cols) + int(col)) * width)
    _, b = py_lfsr_bits(s, width)
    return b - (1 << width) if b >> (width - 1) else b


def lfsr_step_masks(k: int) -> list[int]:
    """For the state after ``k`` steps: element ``i`` is the mask of old-state bits whose XOR is new bit ``i``."""
    cols = _step_matrix_cols()
    m = [1 << j for j in range(STATE_BITS)]  # identity, column form
    for _ in range(int(k)):
        m = _compose(cols, m)
    # m[j] = image of basis j; transpose to rows
    return [sum(((m[j] >> i) & 1) << j for j in range(STATE_BITS)) for i in range(STATE_BITS)]


def lfsr_draw_masks(k: int) -> list[int]:
    """For a ``k``-bit draw: element ``i`` is the mask of state bits whose XOR is draw bit ``i`` (bit 0 = LSB)."""
    k = int(k)
    masks = []
    for i in range(k):
        # draw bit i is the output of step number (k-1-i), i.e. bit 0 of the state after k-1-i steps
        rows = lfsr_step_masks(k - 1 - i)
        masks.append(rows[0])
    return masks


# ----------------------------------------------------------------------------------------------------
# word-level generation of consecutive 32-bit draws (the same draws as lfsr_draw32, in the same order)
#
# The output bits a_t of the LFSR satisfy a_t = a_{t-1} ^ a_{t-2} ^ a_{t-22} ^ a_{t-32} (the reciprocal
# polynomial x^32 + x^31 + x^30 + x^10 + 1).  Over GF(2), r(x)^(2^k) = r(x^(2^k)), so the bits also satisfy
# the recurrence with every lag multiplied by 2^k.  With k = 5 the lags (32, 64, 704, 1024 bits) are whole
# draws, and since a draw is a window of 32 consecutive bits, the draws themselves satisfy, bit for bit,
#
#     d[m] = d[m-1] ^ d[m-2] ^ d[m-22] ^ d[m-32]
#
# and, squaring DRAW_LEVEL more times, d[m] = d[m-64] ^ d[m-128] ^ d[m-1408] ^ d[m-2048]: 64 consecutive
# draws are independent of each other, so a loop over them vectorizes (3 XORs per 16 draws).  The state after
# a draw is a GF(2)-linear function of the draw alone (32 consecutive output bits fix the state), which gives
# the LFSR state back at the end of a run (state_after_draw).  tests/test_engine_fast.py checks all of it
# against lfsr_draw32.

#: the draw recurrence is squared this many times: lags 2**DRAW_LEVEL * (1, 2, 22, 32)
DRAW_LEVEL = 6
#: draws a generator needs behind the first one it computes (the largest lag)
DRAW_HISTORY = 32 << DRAW_LEVEL
#: the other three lags of the squared recurrence (64, 128, 1408 draws)
DRAW_LAG1, DRAW_LAG2, DRAW_LAG22 = 1 << DRAW_LEVEL, 2 << DRAW_LEVEL, 22 << DRAW_LEVEL


def _gf2_inverse(cols: list[int]) -> list[int]:
    """Columns of the inverse of the 32x32 GF(2) matrix given by its columns (column j = image of 1 << j)."""
    n = STATE_BITS
    rows = [(sum(((cols[j] >> i) & 1) << j for j in range(n)), 1 << i) for i in range(n)]  # [A | I] by rows
    for c in range(n):
        p = next(r for r in range(c, n) if (rows[r][0] >> c) & 1)
        rows[c], rows[p] = rows[p], rows[c]
        for r in range(n):
            if r != c and (rows[r][0] >> c) & 1:
                rows[r] = (rows[r][0] ^ rows[c][0], rows[r][1] ^ rows[c][1])
    inv_rows = [rows[i][1] for i in range(n)]  # row i of A^-1
    return [sum(((inv_rows[i] >> j) & 1) << i for i in range(n)) for j in range(n)]


def byte_slice_table(cols: list[int]) -> np.ndarray:
    """Byte-sliced table (4, 256) of the GF(2)-linear map whose column j (image of bit j) is ``cols[j]``: the
    image of a 32-bit value is the XOR of ``T[b, byte_b(value)]`` over its four bytes."""
    t = np.zeros((4, 256), dtype=np.int64)
    for b in range(4):
        for v in range(256):
            acc = 0
            for bit in range(8):
                if (v >> bit) & 1:
                    acc ^= cols[8 * b + bit]
            t[b, v] = acc
    return t


def _after_draw_table() -> np.ndarray:
    """Byte-sliced table (4, 256) of the linear map 'value of a 32-bit draw -> LFSR state after that draw'."""
    draw_cols, step_cols = [], []
    for j in range(STATE_BITS):
        st, bits = py_lfsr_bits(1 << j, 32)
        draw_cols.append(bits)
        step_cols.append(st)
    inv = _gf2_inverse(draw_cols)  # draw bit j -> state before the draw
    cols = [_apply(step_cols, inv[j]) for j in range(STATE_BITS)]  # draw bit j -> state after the draw
    return byte_slice_table(cols)


_AFTER_DRAW = _after_draw_table()


@numba.njit(cache=True, inline="always")
def state_after_draw(d):
    """The LFSR state right after the 32-bit draw ``d`` (the draw determines it): ``lfsr_draw32(s) == (n, d)``
    implies ``state_after_draw(d) == n``."""
    d = np.int64(d) & _MASK32
    return _AFTER_DRAW[0, d & 0xFF] ^ _AFTER_DRAW[1, (d >> 8) & 0xFF] ^ _AFTER_DRAW[2, (d >> 16) & 0xFF] \
        ^ _AFTER_DRAW[3, (d >> 24) & 0xFF]


@numba.njit(cache=True)
def draws_start(state, buf):
    """``buf[0:DRAW_HISTORY]`` (uint32) = the first DRAW_HISTORY 32-bit draws from ``state``: 32 by
    lfsr_draw32, then the recurrence at lag 1, 2, 4, ... (each level doubles the draws known)."""
    s = np.int64(state) & _MASK32
    for i in range(32):
        s, d = lfsr_draw32(s)
        buf[i] = d
    lag = 1
    for _ in range(DRAW_LEVEL):  # d[m] = d[m-L] ^ d[m-2L] ^ d[m-22L] ^ d[m-32L] for 32L <= m < 64L
        v = buf[:64 * lag]
        for i in range(32 * lag):
            v[i + 32 * lag] = v[i + 31 * lag] ^ v[i + 30 * lag] ^ v[i + 10 * lag] ^ v[i]
        lag *= 2


@numba.njit(cache=True)
def draws_extend(buf, lo, n):
    """``buf[lo:lo+n]`` (uint32) = the n draws that follow ``buf[:lo]`` (``lo >= DRAW_HISTORY``), by the
    squared recurrence ``d[m] = d[m-64] ^ d[m-128] ^ d[m-1408] ^ d[m-2048]`` (vectorized)."""
    v = buf[lo - DRAW_HISTORY:lo + n]
    for i in range(n):  # non-negative indices: no wrap-around checks, so LLVM vectorizes this loop
        v[i + DRAW_HISTORY] = v[i + DRAW_HISTORY - DRAW_LAG1] ^ v[i + DRAW_HISTORY - DRAW_LAG2] \
            ^ v[i + DRAW_HISTORY - DRAW_LAG22] ^ v[i]


def lfsr_draws(state: int, n: int) -> tuple[int, np.ndarray]:
    """``n`` consecutive 32-bit draws from ``state`` by the word-level generator: ``(state_after, draws)``
    (int64), equal to ``n`` calls of lfsr_draw32."""
    n = int(n)
    buf = np.zeros(max(n, 0) + DRAW_HISTORY, dtype=np.uint32)
    draws_start(np.int64(int(state) & _MASK32), buf)
    if n > DRAW_HISTORY:
        draws_extend(buf, DRAW_HISTORY, n - DRAW_HISTORY)
    out = buf[:n].astype(np.int64)
    return (int(state_after_draw(out[-1])) if n > 0 else int(state) & _MASK32), out


def _draw_jump_powers() -> np.ndarray:
    """(32, 4, 256): byte-sliced tables of 'advance by 2**i draws' (GF(2) matrix squaring)."""
    m = [py_lfsr_bits(1 << j, 32)[0] for j in range(STATE_BITS)]  # one draw = 32 steps
    out = []
    for _ in range(32):
        out.append(byte_slice_table(m))
        m = _compose(m, m)
    return np.ascontiguousarray(np.stack(out))


#: DRAW_JUMPS[i]: byte-sliced table of the state map 'advance by 2**i 32-bit draws'
DRAW_JUMPS = _draw_jump_powers()


@numba.njit(cache=True)
def jump_draws(state, n):
    """The LFSR state ``n`` 32-bit draws after ``state`` (0 <= n < 2**32), by DRAW_JUMPS."""
    s = np.int64(state) & _MASK32
    i = 0
    while n > 0:
        if n & 1:
            s = DRAW_JUMPS[i, 0, s & 0xFF] ^ DRAW_JUMPS[i, 1, (s >> 8) & 0xFF] ^ DRAW_JUMPS[i, 2, (s >> 16) & 0xFF] \
                ^ DRAW_JUMPS[i, 3, (s >> 24) & 0xFF]
        n >>= 1
        i += 1
    return s
