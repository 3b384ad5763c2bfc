"""Memory layout of the generated datapath (numpy only, shared by the generator and the cocotb testbenches).

A layer with ``P`` lanes and ``G = ceil(n_out / P)`` groups keeps its weights in ``n_in * G`` words: word
``g * n_in + j`` holds ``W[j, g*P + l]`` in lane ``l`` (bits ``l*width ...``), lanes past ``n_out`` zero; its biases
in ``G`` words the same way (``rows = 1``).
"""
from __future__ import annotations

import numpy as np


def pack(M: np.ndarray, lanes: int, width: int) -> list[int]:
    """(rows, n_out) raw ints -> words (group-major, rows inner)."""
    M = np.asarray(M, dtype=np.int64)
    if M.ndim == 1:
        M = M.reshape(1, -1)
    rows, n_out = M.shape
    groups = -(-n_out // lanes)
    mask = (1 << width) - 1
    words = []
    for g in range(groups):
        for j in range(rows):
            w = 0
            for l in range(lanes):
                i = g * lanes + l
                if i < n_out:
                    w |= (int(M[j, i]) & mask) << (l * width)
            words.append(w)
    return words


def split_words(word: int, lanes: int, sub_lanes: int, width: int) -> list[int]:
    """A word of ``lanes`` lanes as the load port takes it: ``lanes / sub_lanes`` sub-words of ``sub_lanes`` lanes
    each, lanes 0 .. sub_lanes-1 first (a learning layer's load enters through its update lanes)."""
    if sub_lanes < 1 or lanes % sub_lanes:
        raise ValueError(f"sub-words of {sub_lanes} lanes do not divide a word of {lanes}")
    bits = sub_lanes * width
    return [(word >> (s * bits)) & ((1 << bits) - 1) for s in range(lanes // sub_lanes)]


def unpack(words, lanes: int, width: int, signed: bool, n_out: int, rows: int) -> np.ndarray:
    """Inverse of :func:`pack`: words -> (rows, n_out) raw ints (sign-extended when ``signed``)."""
    groups = -(-n_out // lanes)
    out = np.zeros((rows, n_out), dtype=np.int64)
    mask = (1 << width) - 1
    for g in range(groups):
        for j in range(rows):
            w = int(words[g * rows + j])
            for l in range(lanes):
                i = g * lanes + l
                if i < n_out:
                    v = (w >> (l * width)) & mask
                    if signed and v >> (width - 1):
                        v -= 1 << width
                    out[j, i] = v
    return out


def mismatched_bits(a: np.ndarray, b: np.ndarray, width: int) -> int:
    """Number of differing bits between two arrays of raw ints seen as ``width``-bit words."""
    x = (np.asarray(a, dtype=np.int64) ^ np.asarray(b, dtype=np.int64)) & ((1 << width) - 1)
    return int(sum(bin(int(v)).count("1") for v in x.ravel() if v))
