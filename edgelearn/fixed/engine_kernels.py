"""Numba kernels of the fixed-point engine: forward, modulatory signals and weight updates on raw integers.

Every rounding/overflow goes through :mod:`edgelearn.fixed.arith` (``convert_counted``, ``accumulate_counted``,
``update_weight_counted``) or through an inlined fast path that the tests prove identical to it; every random
draw through :func:`edgelearn.fixed.lfsr.lfsr_draw32`.  The order of operations is docs/engine.md
("Order of operations") on top of docs/arithmetic.md.

Layouts: a layer's weights ``W`` are ``(n_in, n_out)`` (hls4ml order: ``W[j, i]`` connects input ``j`` to
output ``i``), stored in the smallest integer dtype holding the weight format; everything else is int64.
Per-layer settings travel in one int64 matrix ``P[k, :]`` (column indices below).
"""
from __future__ import annotations

import numba
import numpy as np
from numba import prange

from .arith import accumulate_counted, convert_counted, update_weight_counted
from .lfsr import lfsr_bits, lfsr_draw32

# --- columns of the per-layer parameter matrix P --------------------------------------------------------------
N_IN, N_OUT, F_X = 0, 1, 2
W_W, F_W, S_W, R_W, O_W = 3, 4, 5, 6, 7
W_B, F_B, S_B, R_B, O_B = 8, 9, 10, 11, 12
W_A, F_A, S_A, R_A, O_A, ACC_PATH, ACC_SHIFT = 13, 14, 15, 16, 17, 18, 19
W_Y, F_Y, S_Y, R_Y, O_Y, ACT = 20, 21, 22, 23, 24, 25
W_G, F_G, S_G, R_G, O_G = 26, 27, 28, 29, 30
W_E, F_E, S_E, R_E, O_E = 31, 32, 33, 34, 35
HAS_U, W_U, F_U, S_U, R_U, O_U = 36, 37, 38, 39, 40, 41
LR, M_RAW, F_M = 42, 43, 44
RULE, W_FB, F_FB, FB_LFSR, PROP_B, IS_OUT, TB, RB, STOCH_ANY, LOSS, FAST_W, FAST_B = (
    45, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56)
NPARAM = 57

# activation kinds
ACT_NONE, ACT_TANH, ACT_SIGMOID, ACT_HARDTANH, ACT_RELU = 0, 1, 2, 3, 4
# rule codes
R_BP, R_FA, R_DFA, R_SDFA, R_DRTP, R_SHALLOW = 0, 1, 2, 3, 4, 5
# counter tensors
T_INPUT, T_WEIGHT, T_BIAS, T_ACCUM, T_ACT, T_DERIV, T_ERROR, T_UPDATE = 0, 1, 2, 3, 4, 5, 6, 7
NTENSORS = 8
# accumulation paths
ACC_EXACT, ACC_SHIFT_TRN, ACC_SHIFT_RND, ACC_GENERAL = 0, 1, 2, 3

_MASK32 = 0xFFFFFFFF


# =============================================================================================================
# assignment (docs/arithmetic.md §5): inlined fast path for TRN/RND + WRAP/SAT, arith.convert_counted otherwise


@numba.njit(cache=True, inline="always")
def cv(r, src_frac, width, frac, signed, rmode, omode, cnt):
    """``arith.convert_counted(r, src_frac, width, frac, signed, rmode, omode, 0, cnt)`` (no STOCH draw).

    TRN and RND with WRAP or SAT on moderate values are computed inline (tests/test_engine.py proves the
    identity on random values); everything else calls the primitive."""
    s = src_frac - frac
    if (rmode == 0 or rmode == 2) and omode <= 1 and width < 64 and -60 < s < 61 \
            and -(np.int64(1) << (60 + min(s, 0))) < r < (np.int64(1) << (60 + min(s, 0))):
        if s <= 0:
            v = r << (-s)
        elif rmode == 0:
            v = r >> s
        else:
            v = (r + (np.int64(1) << (s - 1))) >> s
        if signed:
            lo = -(np.int64(1) << (width - 1))
            hi = (np.int64(1) << (width - 1)) - 1
        else:
            lo = np.int64(0)
            hi = (np.int64(1) << width) - 1
        if v > hi or v < lo:
            cnt[0] += 1
            if omode == 1:
                v = hi if v > hi else lo
            else:
                m = v & ((np.int64(1) << width) - 1)
                if signed:
                    sg = np.int64(1) << (width - 1)
                    m = (m ^ sg) - sg
                v = m
        if r != 0 and v == 0:
            cnt[1] += 1
        return v
    return convert_counted(r, src_frac, width, frac, signed, rmode, omode, 0, cnt)


# =============================================================================================================
# forward


@numba.njit(cache=True, inline="always")
def _mac_range(W, x, nz, nnz, acc, lo, hi, path, s):
    """acc[lo:hi] = sum over non-zero inputs of W[j, i] * x[j] (exact, or each product rounded by ``s`` bits
    with TRN / RND when ``path`` says so).  Zero inputs contribute an exact 0 and are skipped."""
    for i in range(lo, hi):
        acc[i] = 0
    if path == ACC_EXACT:
        for t in range(nnz):
            j = nz[t]
            xj = x[j]
            w = W[j]
            for i in range(lo, hi):
                acc[i] += w[i] * xj
    else:
        add = 0
        if path == ACC_SHIFT_RND:
            add = np.int64(1) << (s - 1)
        for t in range(nnz):
            j = nz[t]
            xj = x[j]
            w = W[j]
            for i in range(lo, hi):
                acc[i] += (w[i] * xj + add) >> s


@numba.njit(cache=True, parallel=True)
def _mac_par(W, x, nz, nnz, acc, nblk, path, s):
    n_out = W.shape[1]
    bs = (n_out + nblk - 1) // nblk
    for b in prange(nblk):
        lo = b * bs
        hi = min(n_out, lo + bs)
        _mac_range(W, x, nz, nnz, acc, lo, hi, path, s)


@numba.njit(cache=True)
def layer_preact(P, k, W, b, x, nz, nnz, acc, z, cnt, nblk):
    """Pre-activations z (raw, accumulator format) of layer k for input x (raw, F_X)."""
    n_out = P[k, N_OUT]
    fp = P[k, F_W] + P[k, F_X]
    wa, fa, sa, ra, oa = P[k, W_A], P[k, F_A], P[k, S_A] != 0, P[k, R_A], P[k, O_A]
    path = P[k, ACC_PATH]
    if path != ACC_GENERAL:
        s = P[k, ACC_SHIFT]
        if nblk > 1 and n_out >= 64:
            _mac_par(W, x, nz, nnz, acc, nblk, path, s)
        else:
            _mac_range(W, x, nz, nnz, acc, 0, n_out, path, s)
        lsh = fa - fp if path == ACC_EXACT else 0
        bsh = fa - P[k, F_B]
        if bsh >= 0:  # the bias enters the accumulator exactly (no overflow is possible on this path)
            for i in range(n_out):
                z[i] = (b[i] << bsh) + (np.int64(acc[i]) << lsh)
        else:
            for i in range(n_out):
                # acc = b (assignment to the accumulator), then the products
                bi = cv(b[i], P[k, F_B], wa, fa, sa, ra, oa, cnt[k, T_ACCUM])
                z[i] = bi + (np.int64(acc[i]) << lsh)
    else:
        for i in range(n_out):
            a = convert_counted(b[i], P[k, F_B], wa, fa, sa, ra, oa, 0, cnt[k, T_ACCUM])
            for t in range(nnz):
                j = nz[t]
                a = accumulate_counted(a, np.int64(W[j, i]) * x[j], fp, wa, fa, sa, ra, oa, 0, cnt[k, T_ACCUM])
            z[i] = a


@numba.njit(cache=True)
def layer_activate(P, k, z, table, y, g, cnt):
    """y = f(z) in the activation format; g = f'(z) (derivative format, or an exact 0/1 mask)."""
    n_out = P[k, N_OUT]
    fa = P[k, F_A]
    wy, fy, sy, ry, oy = P[k, W_Y], P[k, F_Y], P[k, S_Y] != 0, P[k, R_Y], P[k, O_Y]
    wg, fg, sg, rg, og = P[k, W_G], P[k, F_G], P[k, S_G] != 0, P[k, R_G], P[k, O_G]
    kind = P[k, ACT]
    tb, rb = P[k, TB], P[k, RB]
    need_g = P[k, IS_OUT] == 0 or P[k, LOSS] == 1
    c_act = cnt[k, T_ACT]
    c_der = cnt[k, T_DERIV]
    for i in range(n_out):
        r = z[i]
        if kind == ACT_TANH or kind == ACT_SIGMOID:
            # table index: arithmetic shift of the raw input, clamped (docs/arithmetic.md §11)
            n = np.int64(1) << tb
            sh = fa - (tb - rb - 1)
            if sh >= 0:
                idx = r >> (sh if sh < 63 else 63)
            else:
                rr = r
                if rr > n:
                    rr = n
                elif rr < -n:
                    rr = -n
                idx = rr << (-sh if -sh < 40 else 40)
            idx += n >> 1
            if idx < 0:
                idx = 0
            elif idx > n - 1:
                idx = n - 1
            t = table[idx]
            y[i] = t
            if need_g:
                if kind == ACT_TANH:
                    d = (np.int64(1) << (2 * fy)) - t * t
                else:
                    d = t * ((np.int64(1) << fy) - t)
                g[i] = cv(d, 2 * fy, wg, fg, sg, rg, og, c_der)
        elif kind == ACT_HARDTANH:
            one = np.int64(1) << fa if fa >= 0 else np.int64(1)
            if r >= one:
                y[i] = convert_counted(np.int64(1), 0, wy, fy, sy, ry, oy, 0, c_act)
            elif r <= -one:
                y[i] = convert_counted(np.int64(-1), 0, wy, fy, sy, ry, oy, 0, c_act)
            else:
                y[i] = convert_counted(r, fa, wy, fy, sy, ry, oy, 0, c_act)
            g[i] = 1 if -one < r < one else 0
        elif kind == ACT_RELU:
            y[i] = 0 if r < 0 else convert_counted(r, fa, wy, fy, sy, ry, oy, 0, c_act)
            g[i] = 1 if r > 0 else 0
        else:
            y[i] = cv(r, fa, wy, fy, sy, ry, oy, c_act)
            g[i] = 1


@numba.njit(cache=True)
def nonzeros(x, nz):
    n = 0
    for j in range(x.shape[0]):
        if x[j] != 0:
            nz[n] = j
            n += 1
    return n


# =============================================================================================================
# modulatory signals


@numba.njit(cache=True)
def output_error(P, k, y, label, e, cnt):
    """e = y* - y (bce: sigmoid output) or (y* - y) * f'(z) (mse), assigned to the error format."""
    n_out = P[k, N_OUT]
    fy = P[k, F_Y]
    we, fe, se, re_, oe = P[k, W_E], P[k, F_E], P[k, S_E] != 0, P[k, R_E], P[k, O_E]
    for c in range(n_out):
        t = (np.int64(1) << fy) if c == label else np.int64(0)
        e[c] = cv(t - y[c], fy, we, fe, se, re_, oe, cnt[k, T_ERROR])


@numba.njit(cache=True)
def output_error_mse(P, k, y, g, label, e, cnt):
    n_out = P[k, N_OUT]
    fy = P[k, F_Y]
    kind = P[k, ACT]
    fg = P[k, F_G] if (kind == ACT_TANH or kind == ACT_SIGMOID) else 0
    we, fe, se, re_, oe = P[k, W_E], P[k, F_E], P[k, S_E] != 0, P[k, R_E], P[k, O_E]
    for c in range(n_out):
        t = (np.int64(1) << fy) if c == label else np.int64(0)
        e[c] = convert_counted((t - y[c]) * g[c], fy + fg, we, fe, se, re_, oe, 0, cnt[k, T_ERROR])


@numba.njit(cache=True)
def _fb_row(P, k, B, fb_states, row, buf):
    """Row ``row`` of layer k's feedback matrix (raw): stored, or regenerated from its LFSR row state."""
    n = buf.shape[0]
    if P[k, FB_LFSR] == 0:
        for i in range(n):
            buf[i] = B[row, i]
    else:
        wb = P[k, W_FB]
        sign = np.int64(1) << (wb - 1)
        s = fb_states[row]
        for i in range(n):
            s, bits = lfsr_bits(s, wb)
            buf[i] = (bits ^ sign) - sign


@numba.njit(cache=True)
def hidden_delta(P, k, label, B, fb_states, e_out, fk_out, g, delta, p, buf, W_up, B_up, d_up, f_up, prop_b, cnt):
    """delta_k = p ⊙ g assigned to the error format, p the projected signal of the layer's rule:

    drtp  p_i = B[label, i]                          (F_FB)
    sdfa  p_i = sum_c B[c, i] sign(e_c)              (F_FB)
    dfa   p_i = sum_c B[c, i] e_c                    (F_FB + F_E(out))
    bp/fa p_j = sum_i M[j, i] delta_up_i             M = W_{k+1} (bp) or B_{k+1} (fa above), (F_M + F_E(k+1))
    """
    n = P[k, N_OUT]
    rule = P[k, RULE]
    kind = P[k, ACT]
    fg = P[k, F_G] if (kind == ACT_TANH or kind == ACT_SIGMOID) else 0
    we, fe, se, re_, oe = P[k, W_E], P[k, F_E], P[k, S_E] != 0, P[k, R_E], P[k, O_E]
    fp = 0
    if rule == R_DRTP:
        _fb_row(P, k, B, fb_states, label, p)
        fp = P[k, F_FB]
    elif rule == R_SDFA or rule == R_DFA:
        for i in range(n):
            p[i] = 0
        C = e_out.shape[0]
        for c in range(C):
            ec = e_out[c]
            if rule == R_SDFA:
                ec = 1 if ec > 0 else (-1 if ec < 0 else 0)
            if ec == 0:
                continue
            _fb_row(P, k, B, fb_states, c, buf)
            for i in range(n):
                p[i] += buf[i] * ec
        fp = P[k, F_FB] if rule == R_SDFA else P[k, F_FB] + fk_out
    else:  # bp / fa: through the layer above
        n_up = d_up.shape[0]
        for j in range(n):
            acc = np.int64(0)
            if prop_b:
                for i in range(n_up):
                    acc += B_up[j, i] * d_up[i]
            else:
                for i in range(n_up):
                    acc += np.int64(W_up[j, i]) * d_up[i]
            p[j] = acc
        fp = f_up
    c_err = cnt[k, T_ERROR]
    for i in range(n):
        delta[i] = cv(p[i] * g[i], fp + fg, we, fe, se, re_, oe, c_err)


@numba.njit(cache=True)
def fa_rows_lfsr(P, k, fb_states, n_in, n_out):
    """The whole (n_in, n_out) FA matrix of layer k regenerated from its LFSR row states."""
    out = np.empty((n_in, n_out), dtype=np.int64)
    buf = np.empty(n_out, dtype=np.int64)
    for j in range(n_in):
        _fb_row(P, k, out, fb_states, j, buf)
        out[j, :] = buf
    return out


# =============================================================================================================
# weight update (docs/arithmetic.md §12; draws §9; order docs/engine.md)


@numba.njit(cache=True, inline="always")
def _fast_delta(u, s, rmode, rnd):
    """round_shift(u, s, rmode, rnd) for TRN / RND / STOCH with 0 < s <= 32, or s <= 0 (exact)."""
    if s <= 0:
        return u << (-s)
    if rmode == 0:
        return u >> s
    if rmode == 2:
        return (u + (np.int64(1) << (s - 1))) >> s
    return (u + ((rnd & _MASK32) >> (32 - s))) >> s


@numba.njit(cache=True)
def _apply_one(P, k, w, u, ufrac, shift, fmt_w, fmt_r, fmt_o, fmt_f, fmt_s, rnd_state, cnt, t_w):
    """Generic assignment of one increment u (F = ufrac, learning rate 2**-shift) into w, with the optional
    update format (docs/engine.md); draws one 32-bit LFSR value per STOCH assignment."""
    if P[k, HAS_U] != 0:
        rnd = np.int64(0)
        if P[k, R_U] == 7:
            rnd_state[k], rnd = lfsr_draw32(rnd_state[k])
        dlt = convert_counted(u, ufrac + shift, P[k, W_U], P[k, F_U], P[k, S_U] != 0, P[k, R_U], P[k, O_U], rnd,
                              cnt[k, T_UPDATE])
        fu = P[k, F_U]
        if fu > fmt_f:
            tot = (np.int64(w) << (fu - fmt_f)) + dlt
            sf = fu
        else:
            tot = np.int64(w) + (dlt << (fmt_f - fu))
            sf = fmt_f
        rnd = np.int64(0)
        if fmt_r == 7:
            rnd_state[k], rnd = lfsr_draw32(rnd_state[k])
        return convert_counted(tot, sf, fmt_w, fmt_f, fmt_s, fmt_r, fmt_o, rnd, cnt[k, t_w])
    rnd = np.int64(0)
    if fmt_r == 7:
        rnd_state[k], rnd = lfsr_draw32(rnd_state[k])
    return update_weight_counted(w, u, ufrac, shift, fmt_w, fmt_f, fmt_s, fmt_r, fmt_o, rnd, cnt[k, t_w])


@numba.njit(cache=True, inline="always")
def _sat_or_wrap(v, lo, hi, width, signed, omode):
    if omode == 1:
        return hi if v > hi else lo
    mask = (np.int64(1) << width) - 1
    r = v & mask
    if signed:
        sgn = np.int64(1) << (width - 1)
        r = (r ^ sgn) - sgn
    return r


@numba.njit(cache=True, inline="always")
def _jump(J, s):
    """LFSR state after a fixed number of draws (a GF(2)-linear map, byte-sliced table J (4, 256))."""
    return J[0, s & 0xFF] ^ J[1, (s >> 8) & 0xFF] ^ J[2, (s >> 16) & 0xFF] ^ J[3, (s >> 24) & 0xFF]


def _packed_table():
    from .lfsr import _DRAW32, _STEP32  # the byte-sliced tables behind lfsr.lfsr_draw32

    return (_STEP32 & _MASK32) | ((_DRAW32 & _MASK32) << 32)


#: STEP32 and DRAW32 packed in one word (state in the low half, draw in the high half): one lookup per byte
_PACKED32 = _packed_table()


@numba.njit(cache=True, inline="always")
def draw32_packed(s):
    """Same as lfsr.lfsr_draw32(s) -> (new_state, draw) with one packed lookup per state byte."""
    v = _PACKED32[0, s & 0xFF] ^ _PACKED32[1, (s >> 8) & 0xFF] ^ _PACKED32[2, (s >> 16) & 0xFF] \
        ^ _PACKED32[3, (s >> 24) & 0xFF]
    return v & _MASK32, (v >> 32) & _MASK32


@numba.njit(cache=True)
def fill_draws(st, J, buf, s):
    """Draw ``buf.shape[0]`` 32-bit values (one row of weight assignments) from state ``st``; store the STOCH
    addend ``d >> (32 - s)`` (the top s bits, docs/arithmetic.md §9; ``d << (s - 32)`` if s > 32) and return
    the state after the row.  Four interleaved chains start at draws 0, m, 2m, 3m (J jumps m = n // 4 draws),
    giving exactly the draws of one sequential stream in the same order."""
    n = buf.shape[0]
    m = n // 4
    s0 = st
    s1 = _jump(J, s0)
    s2 = _jump(J, s1)
    s3 = _jump(J, s2)
    if s <= 0:
        sh = 32
    else:
        sh = 32 - s
    for i in range(m):
        s0, r0 = draw32_packed(s0)
        s1, r1 = draw32_packed(s1)
        s2, r2 = draw32_packed(s2)
        s3, r3 = draw32_packed(s3)
        if sh >= 0:
            buf[i] = r0 >> sh
            buf[i + m] = r1 >> sh
            buf[i + 2 * m] = r2 >> sh
            buf[i + 3 * m] = r3 >> sh
        else:
            buf[i] = r0 << (-sh)
            buf[i + m] = r1 << (-sh)
            buf[i + 2 * m] = r2 << (-sh)
            buf[i + 3 * m] = r3 << (-sh)
    for i in range(4 * m, n):
        s3, r3 = draw32_packed(s3)
        buf[i] = r3 >> sh if sh >= 0 else r3 << (-sh)
    return s3


@numba.njit(cache=True, inline="always")
def _stoch_elem(w, i, u, s, rnd, lo, hi, width, signed, omode):
    """One STOCH weight assignment (update_weight_counted fast path); returns (zero, overflow) events."""
    d = _fast_delta(u, s, 7, rnd)
    z = 1 if (d == 0 and u != 0) else 0
    v = np.int64(w[i]) + d
    o = 0
    if v > hi or v < lo:
        o = 1
        v = _sat_or_wrap(v, lo, hi, width, signed, omode)
    w[i] = v
    return z, o


@numba.njit(cache=True)
def _update_rows_fast(W, x, nz, nnz, dm, s, rmode, omode, width, signed, rnd_state, k, J, cw):
    """Fast path of update_weight_counted (no update format; TRN/RND/STOCH, 0 < s <= 32 or s <= 0; WRAP/SAT).

    STOCH: one 32-bit draw per weight written, in row-major order of the rows written (docs/engine.md).  Each
    row's draws are produced by four interleaved LFSR chains started at draw 0, m, 2m, 3m of the row
    (m = n_out // 4; J jumps a state by m draws), so the four dependency chains run in parallel; the draws
    and their order are those of one sequential stream."""
    lo = -(np.int64(1) << (width - 1)) if signed else np.int64(0)
    hi = (np.int64(1) << (width - 1)) - 1 if signed else (np.int64(1) << width) - 1
    n_out = W.shape[1]
    zc = 0
    oc = 0
    st = rnd_state[k]
    if rmode == 7:
        buf = np.empty(n_out, dtype=np.int64)
        sh = 32 - s if s > 0 else 32
        for t in range(nnz):
            j = nz[t]
            xj = x[j]
            w = W[j]
            if n_out < 64:  # short rows: one chain (same draws)
                for i in range(n_out):
                    st, r0 = draw32_packed(st)
                    buf[i] = r0 >> sh
            else:
                st = fill_draws(st, J, buf, s)
            if omode == 1:
                for i in range(n_out):
                    u = dm[i] * xj
                    d = (u + buf[i]) >> s if s > 0 else u << (-s)
                    zc += (d == 0) & (u != 0)
                    v = np.int64(w[i]) + d
                    vc = min(max(v, lo), hi)
                    oc += v != vc
                    w[i] = vc
            else:
                for i in range(n_out):
                    u = dm[i] * xj
                    d = (u + buf[i]) >> s if s > 0 else u << (-s)
                    zc += (d == 0) & (u != 0)
                    v = np.int64(w[i]) + d
                    if v > hi or v < lo:
                        oc += 1
                        v = _sat_or_wrap(v, lo, hi, width, signed, omode)
                    w[i] = v
    elif omode == 1 and s > 0:
        add = np.int64(0) if rmode == 0 else (np.int64(1) << (s - 1))
        for t in range(nnz):
            j = nz[t]
            xj = x[j]
            w = W[j]
            for i in range(n_out):
                u = dm[i] * xj
                d = (u + add) >> s
                zc += (d == 0) & (u != 0)
                v = np.int64(w[i]) + d
                vc = min(max(v, lo), hi)
                oc += v != vc
                w[i] = vc
    else:
        for t in range(nnz):
            j = nz[t]
            xj = x[j]
            w = W[j]
            for i in range(n_out):
                u = dm[i] * xj
                d = _fast_delta(u, s, rmode, 0)
                zc += (d == 0) & (u != 0)
                v = np.int64(w[i]) + d
                if v > hi or v < lo:
                    oc += 1
                    v = _sat_or_wrap(v, lo, hi, width, signed, omode)
                w[i] = v
    rnd_state[k] = st
    cw[0] += oc
    cw[1] += zc


@numba.njit(cache=True, inline="always")
def _row_update(w, lo_i, hi_i, xj, dm, buf, s, stoch, add, lo, hi, width, signed, omode):
    """Fast-path assignments of w[lo_i:hi_i] (one row); buf holds the STOCH addends. Returns (zero, overflow)."""
    zc = 0
    oc = 0
    if omode == 1:
        for i in range(lo_i, hi_i):
            u = dm[i] * xj
            a = buf[i] if stoch else add
            d = (u + a) >> s if s > 0 else u << (-s)
            zc += (d == 0) & (u != 0)
            v = np.int64(w[i]) + d
            vc = min(max(v, lo), hi)
            oc += v != vc
            w[i] = vc
    else:
        for i in range(lo_i, hi_i):
            u = dm[i] * xj
            a = buf[i] if stoch else add
            d = (u + a) >> s if s > 0 else u << (-s)
            zc += (d == 0) & (u != 0)
            v = np.int64(w[i]) + d
            if v > hi or v < lo:
                oc += 1
                v = _sat_or_wrap(v, lo, hi, width, signed, omode)
            w[i] = v
    return zc, oc


@numba.njit(cache=True, parallel=True)
def update_rows_par(W, x, nz, nnz, dm, s, rmode, omode, width, signed, rnd_state, k, Jrow, Joff, Jin, nblk, cw):
    """update_rows_fast split over ``nblk`` blocks of outputs run in parallel (same result and draws).

    Row t's draws start at state Jrow^t(st); block b of a row starts Joff[b] draws later and fills its part with
    four interleaved chains (Jin[b] jumps a quarter of the block)."""
    lo = -(np.int64(1) << (width - 1)) if signed else np.int64(0)
    hi = (np.int64(1) << (width - 1)) - 1 if signed else (np.int64(1) << width) - 1
    n_out = W.shape[1]
    stoch = rmode == 7
    add = np.int64(0) if (rmode == 0 or s <= 0) else (np.int64(1) << (s - 1))
    rs = np.empty(nnz + 1, dtype=np.int64)
    rs[0] = rnd_state[k]
    if stoch:
        for t in range(nnz):
            rs[t + 1] = _jump(Jrow, rs[t])
    bsz = (n_out + nblk - 1) // nblk
    zcs = np.zeros(nblk, dtype=np.int64)
    ocs = np.zeros(nblk, dtype=np.int64)
    for b in prange(nblk):
        lo_i = b * bsz
        hi_i = min(n_out, lo_i + bsz)
        buf = np.zeros(n_out, dtype=np.int64)
        zc = 0
        oc = 0
        for t in range(nnz):
            j = nz[t]
            if stoch and hi_i > lo_i:
                fill_draws(_jump(Joff[b], rs[t]), Jin[b], buf[lo_i:hi_i], s)
            a, o = _row_update(W[j], lo_i, hi_i, x[j], dm, buf, s, stoch, add, lo, hi, width, signed, omode)
            zc += a
            oc += o
        zcs[b] = zc
        ocs[b] = oc
    if stoch:
        rnd_state[k] = rs[nnz]
    cw[0] += ocs.sum()
    cw[1] += zcs.sum()


@numba.njit(cache=True)
def _update_bias_fast(b, dm, s, rmode, omode, width, signed, rnd_state, k, cb):
    lo = -(np.int64(1) << (width - 1)) if signed else np.int64(0)
    hi = (np.int64(1) << (width - 1)) - 1 if signed else (np.int64(1) << width) - 1
    st = rnd_state[k]
    for i in range(b.shape[0]):
        rnd = np.int64(0)
        if rmode == 7:
            st, rnd = lfsr_draw32(st)
        u = dm[i]
        d = _fast_delta(u, s, rmode, rnd)
        if d == 0 and u != 0:
            cb[1] += 1
        v = b[i] + d
        if v > hi or v < lo:
            cb[0] += 1
            v = _sat_or_wrap(v, lo, hi, width, signed, omode)
        b[i] = v
    rnd_state[k] = st


@numba.njit(cache=True)
def layer_update(P, k, W, b, x, nz, nnz, dm, U, Ub, batch_shift, rnd_state, J3, cnt, nblk):
    """Apply increments to layer k: weights rows j with x_j != 0 (in that order, outputs i inner), then biases.

    Online: ``U`` is None-like (size 0) and u_ji = dm_i * x_j; batch: ``U`` holds the accumulated sums and
    ``x`` is the 'touched' flag of each row (rows never touched in the batch are skipped).
    ``dm`` = delta (times the optional multiplier), F = F_E + F_M.
    """
    n_out = P[k, N_OUT]
    fe = P[k, F_E] + P[k, F_M]
    shift = P[k, LR] + batch_shift
    ww, fw, swg, rw, ow = P[k, W_W], P[k, F_W], P[k, S_W] != 0, P[k, R_W], P[k, O_W]
    wb, fb, sb, rb, ob = P[k, W_B], P[k, F_B], P[k, S_B] != 0, P[k, R_B], P[k, O_B]
    batch = U.shape[0] > 0
    ufrac = fe + P[k, F_X]
    s = ufrac + shift - fw
    if not batch and P[k, FAST_W] != 0 and nblk > 1 and n_out >= 256 and J3.shape[0] == 2 + 2 * nblk:
        update_rows_par(W, x, nz, nnz, dm, s, rw, ow, ww, swg, rnd_state, k, J3[1], J3[2:2 + nblk],
                        J3[2 + nblk:2 + 2 * nblk], nblk, cnt[k, T_WEIGHT])
    elif not batch and P[k, FAST_W] != 0:
        _update_rows_fast(W, x, nz, nnz, dm, s, rw, ow, ww, swg, rnd_state, k, J3[0], cnt[k, T_WEIGHT])
    else:
        for t in range(nnz):
            j = nz[t]
            for i in range(n_out):
                u = U[j, i] if batch else dm[i] * x[j]
                W[j, i] = _apply_one(P, k, W[j, i], u, ufrac, shift, ww, rw, ow, fw, swg, rnd_state, cnt, T_WEIGHT)
    if not batch and P[k, FAST_B] != 0:
        _update_bias_fast(b, dm, fe + shift - fb, rb, ob, wb, sb, rnd_state, k, cnt[k, T_BIAS])
        return
    for i in range(n_out):
        u = Ub[i] if batch else dm[i]
        b[i] = _apply_one(P, k, b[i], u, fe, shift, wb, rb, ob, fb, sb, rnd_state, cnt, T_BIAS)


# =============================================================================================================
# one sample / a run of samples


@numba.njit(cache=True)
def train_samples(X, labels, order, start, stop, P, Ws, bs, Bs, fbst, tables, acts, zs, gs, ds, ps, bufs, nzs,
                  accs, Us, Ubs, touched, rnd_state, Js, cnt, nblk, online, batch_size, batch_shift, in_batch):
    """Train on samples order[start:stop] (online, or minibatch of ``batch_size``; ``in_batch[0]`` carries the
    number of samples accumulated so far across calls).  Returns the number of samples whose prediction
    (argmax of the output pre-activation, before the update) was right."""
    K = P.shape[0]
    correct = 0
    for n in range(start, stop):
        idx = order[n]
        label = labels[idx]
        x0 = acts[0]
        xr = X[idx]
        for j in range(x0.shape[0]):
            x0[j] = xr[j]
        # ---- forward, layer by layer; DRTP / frozen layers need nothing from above: update right away
        for k in range(K):
            nnz = nonzeros(acts[k], nzs[k])
            layer_preact(P, k, Ws[k], bs[k], acts[k], nzs[k], nnz, accs[k], zs[k], cnt, nblk)
            layer_activate(P, k, zs[k], tables[k], acts[k + 1], gs[k], cnt)
            if P[k, IS_OUT] == 0 and P[k, RULE] == R_DRTP:
                hidden_delta(P, k, label, Bs[k], fbst[k], ds[K - 1], 0, gs[k], ds[k], ps[k], bufs[k],
                             Ws[k], Bs[k], ds[k], 0, False, cnt)
                _accumulate_or_update(P, k, Ws[k], bs[k], acts[k], nzs[k], nnz, ds[k], Us[k], Ubs[k], touched[k],
                                      online, batch_shift, rnd_state, Js[k], cnt, nblk)
        # prediction
        zo = zs[K - 1]
        best = 0
        for c in range(1, zo.shape[0]):
            if zo[c] > zo[best]:
                best = c
        if best == label:
            correct += 1
        # ---- output error and the signals of the layers that need it (top-down, before any of them updates)
        ko = K - 1
        if P[ko, LOSS] == 0:
            output_error(P, ko, acts[K], label, ds[ko], cnt)
        else:
            output_error_mse(P, ko, acts[K], gs[ko], label, ds[ko], cnt)
        for k in range(K - 2, -1, -1):
            r = P[k, RULE]
            if r == R_DRTP or r == R_SHALLOW:
                continue
            prop_b = P[k + 1, PROP_B] != 0
            hidden_delta(P, k, label, Bs[k], fbst[k], ds[ko], P[ko, F_E], gs[k], ds[k], ps[k], bufs[k],
                         Ws[k + 1], Bs[k + 1], ds[k + 1], P[k + 1, F_E], prop_b, cnt)
        for k in range(K - 1, -1, -1):
            r = P[k, RULE]
            if r == R_SHALLOW or (r == R_DRTP and P[k, IS_OUT] == 0):
                continue
            nnz = nonzeros(acts[k], nzs[k])
            _accumulate_or_update(P, k, Ws[k], bs[k], acts[k], nzs[k], nnz, ds[k], Us[k], Ubs[k], touched[k],
                                  online, batch_shift, rnd_state, Js[k], cnt, nblk)
        if not online:
            in_batch[0] += 1
            if in_batch[0] == batch_size:
                apply_batch(P, Ws, bs, Us, Ubs, touched, nzs, batch_shift, rnd_state, Js, cnt)
                in_batch[0] = 0
    return correct


@numba.njit(cache=True)
def _scaled_delta(P, k, d, out):
    m = P[k, M_RAW]
    if P[k, F_M] == 0 and m == 0:
        for i in range(d.shape[0]):
            out[i] = d[i]
    else:
        for i in range(d.shape[0]):
            out[i] = d[i] * m


@numba.njit(cache=True)
def _accumulate_or_update(P, k, W, b, x, nz, nnz, d, U, Ub, touched, online, batch_shift, rnd_state, J, cnt,
                          nblk):
    n_out = P[k, N_OUT]
    dm = np.empty(n_out, dtype=np.int64)
    _scaled_delta(P, k, d, dm)
    if online:
        layer_update(P, k, W, b, x, nz, nnz, dm, np.empty((0, 0), dtype=np.int64), np.empty(0, dtype=np.int64),
                     0, rnd_state, J, cnt, nblk)
    else:
        for t in range(nnz):
            j = nz[t]
            xj = x[j]
            touched[j] = 1
            for i in range(n_out):
                U[j, i] += dm[i] * xj
        for i in range(n_out):
            Ub[i] += dm[i]


@numba.njit(cache=True)
def apply_batch(P, Ws, bs, Us, Ubs, touched, nzs, batch_shift, rnd_state, Js, cnt):
    K = P.shape[0]
    for k in range(K):
        r = P[k, RULE]
        if r == R_SHALLOW:
            continue
        nnz = nonzeros(touched[k], nzs[k])
        layer_update(P, k, Ws[k], bs[k], touched[k], nzs[k], nnz, np.empty(0, dtype=np.int64), Us[k], Ubs[k],
                     batch_shift, rnd_state, Js[k], cnt, 1)
        for t in range(nnz):
            j = nzs[k][t]
            Us[k][j, :] = 0
            touched[k][j] = 0
        Ubs[k][:] = 0


# =============================================================================================================
# inference


@numba.njit(cache=True, parallel=True)
def predict(X, P, Ws, bs, tables, out_z):
    """Output pre-activations (raw) for every row of X (parallel over samples; counters are not touched)."""
    N = X.shape[0]
    K = P.shape[0]
    for n in prange(N):
        cnt = np.zeros((K, NTENSORS, 2), dtype=np.int64)
        x = np.empty(X.shape[1], dtype=np.int64)
        for j in range(X.shape[1]):
            x[j] = X[n, j]
        for k in range(K):
            n_in = P[k, N_IN]
            n_out = P[k, N_OUT]
            nz = np.empty(n_in, dtype=np.int64)
            nnz = nonzeros(x, nz)
            acc = np.empty(n_out, dtype=np.int64)
            z = np.empty(n_out, dtype=np.int64)
            layer_preact(P, k, Ws[k], bs[k], x, nz, nnz, acc, z, cnt, 1)
            if k == K - 1:
                for i in range(n_out):
                    out_z[n, i] = z[i]
            else:
                y = np.empty(n_out, dtype=np.int64)
                g = np.empty(n_out, dtype=np.int64)
                layer_activate(P, k, z, tables[k], y, g, cnt)
                x = y


@numba.njit(cache=True)
def row_states(state, rows, cols, width):
    """LFSR state at the start of each row of a row-major (rows, cols) matrix of width-bit draws."""
    out = np.empty(rows, dtype=np.int64)
    s = np.int64(state)
    for r in range(rows):
        out[r] = s
        for _ in range(cols):
            s, _b = lfsr_bits(s, width)
    return out
