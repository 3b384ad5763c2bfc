"""The per-neuron stochastic-rounding generators of the ``rng: neuron`` contract (docs/arithmetic.md §9a).

Every output neuron ``i`` of a learning layer ``k`` owns one 32-bit **xorshift** generator (Marsaglia's
``(13, 17, 5)`` triple, period ``2**32 - 1`` over the non-zero states)::

    step(s):  s ^= s << 13 (mod 2**32);  s ^= s >> 17;  s ^= s << 5 (mod 2**32)

A draw is one step; the draw is the new state (``1 <= d < 2**32``), used by stochastic rounding exactly as §9
says (its top ``s`` bits are the ones a rounding by ``s`` bits uses).  Generator ``i`` of layer ``k`` starts from
``derive_seed(derive_seed(seed, ROUNDING_STREAM + k), i)``.  Every STOCH assignment to column ``i`` of the layer
(a weight ``W[j, i]``, its increment in the ``update`` format, the bias ``b[i]``) takes the next draw of generator
``i``, so which hardware lane computes it does not matter: the result is independent of the number of lanes.

Why xorshift: every bit of the next state is the parity of at most 7 bits of the current one (one LUT6 for 30 of
the 32 bits), and in the engine the generators of a row are a contiguous uint32 vector stepped with three shifts and
three xors.  Measured, it buys lane independence, not area or speed: the per-lane rings of states cost more LUTs and
FFs than ``rng: layer``'s parities of one shared state, and the engine's step is as fast (docs/arithmetic.md §9a).
"""

from __future__ import annotations

import numba
import numpy as np

from .lfsr import derive_seed, seed_state

#: Marsaglia's xorshift32 shift triple: left, right, left
XS_A, XS_B, XS_C = 13, 17, 5
_MASK32 = 0xFFFFFFFF

__all__ = ["XS_A", "XS_B", "XS_C", "py_xorshift32", "xorshift32", "neuron_seeds", "xorshift_masks"]


def py_xorshift32(state: int) -> int:
    """One step of the generator on a Python int (the definition the other implementations are tested against)."""
    s = int(state) & _MASK32
    s ^= (s << XS_A) & _MASK32
    s ^= s >> XS_B
    s ^= (s << XS_C) & _MASK32
    return s


@numba.njit(cache=True, inline="always")
def xorshift32(s):
    """One step on a ``np.uint32`` scalar: the new state, which is also the draw.  Numba widens integer
    arithmetic to 64 bits, so every shift result is cut back to 32 bits (a left shift must lose its carry-out
    before the right shift sees it); LLVM narrows these to 32-bit vector shifts."""
    s = np.uint32(s)
    s = np.uint32(s ^ np.uint32(s << np.uint32(XS_A)))
    s = np.uint32(s ^ (s >> np.uint32(XS_B)))
    s = np.uint32(s ^ np.uint32(s << np.uint32(XS_C)))
    return s


def neuron_seeds(layer_seed: int, n_out: int) -> np.ndarray:
    """Start states of the ``n_out`` generators of a layer whose rounding stream seed is ``layer_seed``
    (``derive_seed(seed, ROUNDING_STREAM + k)``): generator ``i`` starts from ``derive_seed(layer_seed, i)``,
    never 0."""
    return np.array([derive_seed(seed_state(layer_seed), i) for i in range(int(n_out))], dtype=np.uint32)


def xorshift_masks() -> list[int]:
    """Per bit ``b`` of the next state, the mask of current-state bits whose parity it is (the hardware's
    XOR network; at most 7 bits each)."""
    cols = []
    for b in range(32):
        m = 0
        for src in range(32):  # bit b of step(e_src), by linearity over GF(2)
            if (py_xorshift32(1 << src) >> b) & 1:
                m |= 1 << src
        cols.append(m)
    return cols
