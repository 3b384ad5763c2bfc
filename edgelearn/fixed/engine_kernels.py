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
from numba import prange, types
from numba.extending import intrinsic

from ..program import FB_LEARN_P, FB_LEARN_Q, OJA_GAIN, OJA_TARGET, ActCode, RuleCode, StepOp
from .activations import softmax_probs, table_deriv, table_saturation
from .arith import accumulate_counted, convert_counted, update_weight_counted
from .formats import OVERFLOW, ROUNDING
from .xorshift import xorshift32
from .lfsr import (DRAW_HISTORY, DRAW_LAG1, DRAW_LAG2, DRAW_LAG22, PERIOD, byte_slice_table, draws_extend,
                   draws_start, jump_draws, lfsr_bits, lfsr_draw32, lfsr_jump, state_after_draw)

# --- the per-layer parameter record: one int64 row P[k, :] per layer, its columns named in one list ---------------


def _fmt_cols(t: str) -> tuple[str, ...]:
    """Columns of one tensor format: width, fractional bits, signedness, rounding and overflow codes."""
    return (f"W_{t}", f"F_{t}", f"S_{t}", f"R_{t}", f"O_{t}")


PARAM_COLUMNS = (
    "N_IN", "N_OUT", "F_X",                       # sizes; fractional bits of the input
    *_fmt_cols("W"), *_fmt_cols("B"),             # weight, bias
    *_fmt_cols("A"), "ACC_PATH", "ACC_SHIFT",     # accumulator and its accumulation path (ACC_* below)
    *_fmt_cols("Y"), "ACT",                       # activation format and kind (ActCode)
    *_fmt_cols("G"), *_fmt_cols("E"),             # derivative, error
    "HAS_U", *_fmt_cols("U"),                     # the optional update format
    "LR", "M_RAW", "F_M",                         # learning-rate shift, multiplier (raw, fractional bits)
    "RULE", "W_FB", "F_FB", "FB_LFSR", "PROP_B",  # rule (RuleCode), feedback format, regenerated B, PROP_* below
    "IS_OUT", "TB", "RB", "STOCH_ANY", "LOSS",    # output layer, table bits / range, any STOCH tensor, 0 bce 1 mse
    "FAST_W", "FAST_B",                           # fast weight / bias update eligible (online, no update format)
    # int32 fast paths, each proved overflow-free from the formats by the engine (docs/engine.md "Range checks"):
    # ACC32 the exact accumulation; FAST32_W the online weight update (increment, addend, w + delta); FAST16_W the
    # same in int16 lanes (update_rows16, only with FAST32_W); MAC16 the ACC32 accumulation with weights and inputs
    # in int16 (mac16, pairs of products per multiply-add instruction; only with ACC32)
    "ACC32", "FAST32_W", "FAST16_W", "MAC16",
    "SHORT_R",                                    # rows per flat block of the short-row kernels (_short_rows)
    "LDFA_PS",                                    # ldfa: extra fractional bits of the factor P (a wiring shift)
    "RNG_N",                                      # STOCH draws from per-neuron xorshift32 (rng: neuron, §9a)
    # trained feedback (docs/arithmetic.md §16): the format of kp's B / the factor Q (fb_q; W_FB, F_FB repeat its
    # width and fractional bits for those rules), of the factor P (fb_p), which words learn (program.FB_LEARN_*),
    # the error P's Oja step reads (program.OJA_*)
    *_fmt_cols("Q"), *_fmt_cols("PF"), "FB_LEARN", "OJA_SRC",
)
NPARAM = len(PARAM_COLUMNS)
(N_IN, N_OUT, F_X, W_W, F_W, S_W, R_W, O_W, W_B, F_B, S_B, R_B, O_B, W_A, F_A, S_A, R_A, O_A, ACC_PATH, ACC_SHIFT,
 W_Y, F_Y, S_Y, R_Y, O_Y, ACT, W_G, F_G, S_G, R_G, O_G, W_E, F_E, S_E, R_E, O_E, HAS_U, W_U, F_U, S_U, R_U, O_U,
 LR, M_RAW, F_M, RULE, W_FB, F_FB, FB_LFSR, PROP_B, IS_OUT, TB, RB, STOCH_ANY, LOSS, FAST_W, FAST_B, ACC32, FAST32_W,
 FAST16_W, MAC16, SHORT_R, LDFA_PS, RNG_N, W_Q, F_Q, S_Q, R_Q, O_Q, W_PF, F_PF, S_PF, R_PF, O_PF, FB_LEARN,
 OJA_SRC) = range(NPARAM)
assert all(globals()[c] == i for i, c in enumerate(PARAM_COLUMNS))  # the names above follow the list


def param_row(**values: int) -> np.ndarray:
    """One layer's row of P from its named columns (every column must be given)."""
    missing = set(PARAM_COLUMNS) - set(values)
    extra = set(values) - set(PARAM_COLUMNS)
    if missing or extra:
        raise KeyError(f"parameter columns missing {sorted(missing)}, unknown {sorted(extra)}")
    return np.array([int(values[c]) for c in PARAM_COLUMNS], dtype=np.int64)


# rounding and overflow codes (formats.ROUNDING / OVERFLOW) the kernels branch on
RM_TRN, RM_RND, RM_STOCH = ROUNDING["TRN"], ROUNDING["RND"], ROUNDING["STOCH"]
OV_WRAP, OV_SAT = OVERFLOW["WRAP"], OVERFLOW["SAT"]
assert (OV_WRAP, OV_SAT) == (0, 1)  # "omode <= OV_SAT" reads "WRAP or SAT"

# activation kinds and rule codes (edgelearn.program), as plain ints for the compiled code
ACT_NONE, ACT_TANH, ACT_SIGMOID, ACT_HARDTANH, ACT_RELU = (int(a) for a in (
    ActCode.NONE, ActCode.TANH, ActCode.SIGMOID, ActCode.HARDTANH, ActCode.RELU))
R_BP, R_FA, R_DFA, R_SDFA, R_DRTP, R_SHALLOW, R_LDFA, R_OUTPUT, R_KP, R_DLDFA = (int(r) for r in (
    RuleCode.BP, RuleCode.FA, RuleCode.DFA, RuleCode.SDFA, RuleCode.DRTP, RuleCode.SHALLOW, RuleCode.LDFA,
    RuleCode.OUTPUT, RuleCode.KP, RuleCode.DLDFA))
# LOSS: the output layer's loss
LOSS_BCE, LOSS_MSE, LOSS_CE = 0, 1, 2
#: loss name -> LOSS code
LOSS_CODES = {"bce": LOSS_BCE, "mse": LOSS_MSE, "ce": LOSS_CE}
# PROP_B: how the signal of layer k - 1 passes layer k: through W_k (0), fa's B_k (1), or ldfa's factors (2)
PROP_W, PROP_FA, PROP_LOWRANK = 0, 1, 2
# the schedule's operations (program.StepOp), as plain ints for the compiled code
OP_FORWARD, OP_INJECT_DRTP, OP_PREDICT, OP_OUTPUT_ERROR, OP_HIDDEN_SIGNAL, OP_UPDATE, OP_FEEDBACK = (int(o) for o in (
    StepOp.FORWARD, StepOp.INJECT_DRTP, StepOp.PREDICT, StepOp.OUTPUT_ERROR, StepOp.HIDDEN_SIGNAL, StepOp.UPDATE,
    StepOp.FEEDBACK))
# counter tensors
T_INPUT, T_WEIGHT, T_BIAS, T_ACCUM, T_ACT, T_DERIV, T_ERROR, T_UPDATE = 0, 1, 2, 3, 4, 5, 6, 7
NTENSORS = 8
# the engine's counters also count the trained feedback's increments (kp's B / Q, P), after the tensors above
T_FBQ, T_FBP = 8, 9
NCOUNT = 10
# accumulation paths
ACC_EXACT, ACC_SHIFT_TRN, ACC_SHIFT_RND, ACC_GENERAL = 0, 1, 2, 3

_MASK32 = 0xFFFFFFFF


# =============================================================================================================
# Shifts at the lanes' width.  Numba types every arithmetic result on int32 operands as int64, and LLVM cannot
# narrow a shift by a run-time amount back to 32 bits, which halves the SIMD width of the update loops and leaves
# them dominated by 64-bit shifts.  These emit the instruction at the operand's width (int32; int16 for the int16
# lanes below); callers guarantee 0 <= n < width.


def _shift(name, op, ty, doc):
    """A right shift of one integer type by a run-time amount, emitted at that width (``op``: LLVM's ashr / lshr)."""
    def shift(typingctx, a, n):
        def codegen(context, builder, signature, args):
            return getattr(builder, op)(args[0], args[1])
        return ty(ty, ty), codegen
    shift.__name__ = shift.__qualname__ = name
    shift.__doc__ = doc
    return intrinsic(shift)


sra32 = _shift("sra32", "ashr", types.int32, "Arithmetic right shift of an int32 by ``n`` (0 <= n < 32), as int32.")
srl32 = _shift("srl32", "lshr", types.uint32, "Logical right shift of a uint32 by ``n`` (0 <= n < 32), as uint32.")


@intrinsic
def splat16(typingctx, arr, idx, v):
    """arr[idx:idx + 16] = v for a contiguous int16 or int32 array, as one vector store (the caller keeps it in
    bounds)."""
    if not (isinstance(arr, types.Array) and arr.dtype in (types.int16, types.int32) and arr.layout == "C"):
        return None
    bits = arr.dtype.bitwidth
    sig = types.void(arr, types.intp, arr.dtype)

    def codegen(context, builder, signature, args):
        from llvmlite import ir

        a = context.make_array(signature.args[0])(context, builder, args[0])
        ptr = builder.gep(a.data, [args[1]])
        vty = ir.VectorType(ir.IntType(bits), 16)
        vec = ir.Constant(vty, ir.Undefined)
        for i in range(16):
            vec = builder.insert_element(vec, args[2], ir.Constant(ir.IntType(32), i))
        builder.store(vec, builder.bitcast(ptr, vty.as_pointer()), align=bits // 8)
        return context.get_dummy_value()
    return sig, codegen


# =============================================================================================================
# assignment (docs/arithmetic.md §5): inlined fast path for TRN/RND + WRAP/SAT, arith.convert_counted otherwise


@numba.njit(cache=True, inline="always")
def cv(r, src_frac, width, frac, signed, rmode, omode, cnt):
    """``arith.convert_counted(r, src_frac, width, frac, signed, rmode, omode, 0, cnt)`` (no STOCH draw).

    TRN and RND with WRAP or SAT on moderate values are computed inline (tests/test_engine.py proves the
    identity on random values); everything else calls the primitive."""
    s = src_frac - frac
    if (rmode == RM_TRN or rmode == RM_RND) and omode <= OV_SAT and width < 64 and -60 < s < 61 \
            and -(np.int64(1) << (60 + min(s, 0))) < r < (np.int64(1) << (60 + min(s, 0))):
        if s <= 0:
            v = r << (-s)
        elif rmode == RM_TRN:
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
            if omode == OV_SAT:
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


@numba.njit(cache=True)
def cv_array(src, n, src_frac, width, frac, signed, rmode, omode, cnt, dst):
    """``dst[i] = cv(src[i], ...)`` for i < n (``dst`` may be ``src``), counters included.

    TRN / RND with WRAP / SAT run as one branch-free loop (vectorized) after a check that every value is in
    the range where cv's inline path applies; anything else goes element by element through cv."""
    s = src_frac - frac
    if not ((rmode == RM_TRN or rmode == RM_RND) and omode <= OV_SAT and width < 64 and -60 < s < 61):
        for i in range(n):
            dst[i] = cv(src[i], src_frac, width, frac, signed, rmode, omode, cnt)
        return
    lim = np.int64(1) << (60 + min(s, 0))
    bad = False
    for i in range(n):
        r = src[i]
        bad |= (r >= lim) | (r <= -lim)
    if bad:
        for i in range(n):
            dst[i] = cv(src[i], src_frac, width, frac, signed, rmode, omode, cnt)
        return
    if signed:
        lo = -(np.int64(1) << (width - 1))
        hi = (np.int64(1) << (width - 1)) - 1
    else:
        lo = np.int64(0)
        hi = (np.int64(1) << width) - 1
    mask = (np.int64(1) << width) - 1
    ls = -s if s < 0 else 0
    rs = s if s > 0 else 0
    add = (np.int64(1) << (s - 1)) if (rmode == RM_RND and s > 0) else np.int64(0)
    ov = 0
    zr = 0
    if omode == OV_SAT:
        for i in range(n):
            r = src[i]
            v = ((r << ls) + add) >> rs
            vc = min(max(v, lo), hi)
            ov += vc != v
            zr += (r != 0) & (vc == 0)
            dst[i] = vc
    else:
        for i in range(n):
            r = src[i]
            v = ((r << ls) + add) >> rs
            vc = ((v - lo) & mask) + lo
            ov += vc != v
            zr += (r != 0) & (vc == 0)
            dst[i] = vc
    cnt[0] += ov
    cnt[1] += zr


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


@numba.njit(cache=True, inline="always")
def _mac32_cols(W, xv, nz, nnz, acc, lo, hi):
    """acc[lo:hi] = sum_t W[nz[t], lo:hi] * xv[t] in int32, four rows per pass over the accumulator."""
    for i in range(lo, hi):
        acc[i] = 0
    t = 0
    while t + 4 <= nnz:
        w0, w1, w2, w3 = W[nz[t]], W[nz[t + 1]], W[nz[t + 2]], W[nz[t + 3]]
        x0, x1, x2, x3 = xv[t], xv[t + 1], xv[t + 2], xv[t + 3]
        for i in range(lo, hi):
            acc[i] = np.int32(acc[i] + w0[i] * x0 + w1[i] * x1 + w2[i] * x2 + w3[i] * x3)
        t += 4
    while t < nnz:
        w0 = W[nz[t]]
        x0 = xv[t]
        for i in range(lo, hi):
            acc[i] = np.int32(acc[i] + w0[i] * x0)
        t += 1


@numba.njit(cache=True, inline="always")
def _nz_int32(x, nz, nnz):
    xv = np.empty(nnz, dtype=np.int32)  # the non-zero inputs as int32 (keeps every product a 32-bit multiply)
    for t in range(nnz):
        xv[t] = np.int32(x[nz[t]])
    return xv


@numba.njit(cache=True)
def mac32(W, x, nz, nnz, acc):
    """acc[:] = sum over the non-zero inputs of W[j, i] * x[j], exact in int32 (the engine proves
    ``n_in * max|w x| < 2**31`` for the layer, so no partial sum can leave int32).  Four rows per pass over
    ``acc`` (one load and store of the accumulator per four multiply-adds); the int32 truncations let LLVM
    use 32-bit SIMD multiplies."""
    _mac32_cols(W, _nz_int32(x, nz, nnz), nz, nnz, acc, 0, W.shape[1])


@intrinsic
def madd16x4(typingctx, acc, i, w0, w1, w2, w3, x01, x23):
    """acc[i:i + 16] += w0[i:i + 16]*x0 + w1[..]*x1 + w2[..]*x2 + w3[..]*x3 in int32, the inputs packed in pairs
    (``x01 = x0 & 0xFFFF | x1 << 16``).  The caller guarantees that every weight and input fits int16 and every
    partial sum int32 (P[k, MAC16]), and keeps i + 16 in bounds.  Written as int16 products summed in adjacent
    pairs, the pattern LLVM lowers to one pmaddwd per 8 columns and pair of rows (vpmaddwd on AVX2, half the
    width on SSE2): no CPU-specific intrinsic, so every target compiles it, with the same bits.  int8 rows are
    interleaved and sign-extended per 8 columns."""
    rows = (w0, w1, w2, w3)
    if not (isinstance(acc, types.Array) and acc.dtype in (types.int32, types.int64) and acc.layout == "C"
            and all(isinstance(w, types.Array) and isinstance(w.dtype, types.Integer) and w.layout == "C"
                    and w.dtype == w0.dtype for w in rows)):
        return None
    bits, abits = w0.dtype.bitwidth, acc.dtype.bitwidth
    sig = types.void(acc, types.intp, w0, w1, w2, w3, types.int32, types.int32)

    def codegen(context, builder, signature, args):
        from llvmlite import ir

        i16, i32 = ir.IntType(16), ir.IntType(32)

        def vec(t, n):
            return ir.VectorType(t, n)

        def at(k, ty):  # pointer to element i of array argument k, as a vector pointer
            a = context.make_array(signature.args[k])(context, builder, args[k])
            return builder.bitcast(builder.gep(a.data, [args[1]]), ty.as_pointer())

        def take(v, idx):
            return builder.shuffle_vector(v, v, ir.Constant(vec(i32, len(idx)), list(idx)))

        ws = [builder.load(at(2 + r, vec(ir.IntType(bits), 16)), align=1) for r in range(4)]
        if bits < 16:
            ws = [builder.sext(w, vec(i16, 16)) for w in ws]
        elif bits > 16:  # exact: the weights fit int16 (P[k, MAC16])
            ws = [builder.trunc(w, vec(i16, 16)) for w in ws]
        total = None
        for r in (0, 2):
            xs = ir.Constant(vec(i32, 8), ir.Undefined)
            for q in range(8):
                xs = builder.insert_element(xs, args[6 + r // 2], ir.Constant(i32, q))
            xw = builder.sext(builder.bitcast(xs, vec(i16, 16)), vec(i32, 16))
            halves = []
            for h in (0, 8):  # columns h..h+7: the two rows interleaved, then products summed in pairs
                pair = builder.shuffle_vector(ws[r], ws[r + 1], ir.Constant(
                    vec(i32, 16), [v for c in range(h, h + 8) for v in (c, 16 + c)]))
                p = builder.mul(builder.sext(pair, vec(i32, 16)), xw)
                halves.append(builder.add(take(p, range(0, 16, 2)), take(p, range(1, 16, 2))))
            s = builder.shuffle_vector(halves[0], halves[1], ir.Constant(vec(i32, 16), list(range(16))))
            total = s if total is None else builder.add(total, s)
        if abits > 32:  # an int64 accumulator (the engine's, when another layer needs 64 bits) holds the same sums
            total = builder.sext(total, vec(ir.IntType(abits), 16))
        ap = at(0, vec(ir.IntType(abits), 16))
        builder.store(builder.add(builder.load(ap, align=abits // 8), total), ap, align=abits // 8)
        return context.get_dummy_value()
    return sig, codegen


@numba.njit(cache=True, inline="always")
def _pair16(a, b):
    """Two int16 values packed into an int32 (a in the low half), as madd16x4 reads them."""
    return np.int32((np.int32(a) & 0xFFFF) | (np.int32(b) << 16))


@numba.njit(cache=True)
def mac16(W, x, nz, nnz, acc):
    """mac32 with weights and inputs in int16 (P[k, MAC16]): four rows per pass over ``acc``, 16 columns per
    madd16x4 (the products of two rows summed by one multiply-add instruction); the same exact int32 sums."""
    n = W.shape[1]
    n16 = n - n % 16
    for i in range(n):
        acc[i] = 0
    t = 0
    while t + 4 <= nnz:
        j0, j1, j2, j3 = nz[t], nz[t + 1], nz[t + 2], nz[t + 3]
        w0, w1, w2, w3 = W[j0], W[j1], W[j2], W[j3]
        x01, x23 = _pair16(x[j0], x[j1]), _pair16(x[j2], x[j3])
        for i in range(0, n16, 16):
            madd16x4(acc, i, w0, w1, w2, w3, x01, x23)
        y0, y1, y2, y3 = np.int32(x[j0]), np.int32(x[j1]), np.int32(x[j2]), np.int32(x[j3])
        for i in range(n16, n):
            acc[i] = np.int32(acc[i] + w0[i] * y0 + w1[i] * y1 + w2[i] * y2 + w3[i] * y3)
        t += 4
    while t < nnz:
        w0 = W[nz[t]]
        y0 = np.int32(x[nz[t]])
        for i in range(n):
            acc[i] = np.int32(acc[i] + w0[i] * y0)
        t += 1


@numba.njit(cache=True)
def layer_preact(P, k, W, b, x, nz, nnz, acc, z, cnt):
    """Pre-activations z (raw, accumulator format) of layer k for input x (raw, F_X)."""
    n_out = P[k, N_OUT]
    fp = P[k, F_W] + P[k, F_X]
    wa, fa, sa, ra, oa = P[k, W_A], P[k, F_A], P[k, S_A] != 0, P[k, R_A], P[k, O_A]
    path = P[k, ACC_PATH]
    if path != ACC_GENERAL:
        s = P[k, ACC_SHIFT]
        if path == ACC_EXACT and P[k, ACC32] != 0 and n_out < SHORT_ROW:
            mac32_short(W, x, acc, P[k, SHORT_R])
        elif path == ACC_EXACT and P[k, ACC32] != 0:
            if P[k, MAC16] != 0:
                mac16(W, x, nz, nnz, acc)
            else:
                mac32(W, x, nz, nnz, acc)
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


@numba.njit(cache=True, inline="always")
def piecewise_act(kind, r, fa, wy, fy, sy, ry, oy, c_act):
    """y = f(r) for the activations computed by assignment (hard-tanh, ReLU, identity; docs/arithmetic.md §11),
    ``r`` raw with ``fa`` fractional bits: one definition for the linear layers and the conv front end."""
    if kind == ACT_HARDTANH:
        one = np.int64(1) << fa if fa >= 0 else np.int64(1)
        if r >= one:
            return convert_counted(np.int64(1), 0, wy, fy, sy, ry, oy, 0, c_act)
        if r <= -one:
            return convert_counted(np.int64(-1), 0, wy, fy, sy, ry, oy, 0, c_act)
    elif kind == ACT_RELU and r < 0:
        return np.int64(0)
    return convert_counted(r, fa, wy, fy, sy, ry, oy, 0, c_act)


@numba.njit(cache=True)
def layer_activate(P, k, z, table, y, g, cnt):
    """y = f(z) in the activation format; g = f'(z) (derivative format, or an exact 0/1 mask)."""
    n_out = P[k, N_OUT]
    fa = P[k, F_A]
    wy, fy, sy, ry, oy = P[k, W_Y], P[k, F_Y], P[k, S_Y] != 0, P[k, R_Y], P[k, O_Y]
    wg, fg, sg, rg, og = P[k, W_G], P[k, F_G], P[k, S_G] != 0, P[k, R_G], P[k, O_G]
    kind = P[k, ACT]
    tb, rb = P[k, TB], P[k, RB]
    need_g = P[k, IS_OUT] == 0 or P[k, LOSS] == LOSS_MSE
    c_act = cnt[k, T_ACT]
    c_der = cnt[k, T_DERIV]
    if kind == ACT_TANH or kind == ACT_SIGMOID:
        # table index and entry (table_lookup), then the derivative (table_deriv), as branch-free loops
        table_lookup(z, n_out, table, fa, tb, rb, y)
        if need_g:
            t_sat = table_saturation(wy, fy, sy)
            is_tanh = kind == ACT_TANH
            for i in range(n_out):
                g[i] = table_deriv(is_tanh, y[i], fy, t_sat)
            cv_array(g, n_out, 2 * fy, wg, fg, sg, rg, og, c_der, g)
        return
    for i in range(n_out):
        r = z[i]
        if kind == ACT_HARDTANH:
            one = np.int64(1) << fa if fa >= 0 else np.int64(1)
            y[i] = piecewise_act(kind, r, fa, wy, fy, sy, ry, oy, c_act)
            g[i] = 1 if -one < r < one else 0
        elif kind == ACT_RELU:
            y[i] = piecewise_act(kind, r, fa, wy, fy, sy, ry, oy, c_act)
            g[i] = 1 if r > 0 else 0
        else:
            y[i] = cv(r, fa, wy, fy, sy, ry, oy, c_act)
            g[i] = 1


@numba.njit(cache=True)
def table_lookup(z, n, table, fa, tb, rb, y):
    """y[i] = table[index(z[i])] for i < n (docs/arithmetic.md §11: arithmetic shift of the raw input, clamped)."""
    size = np.int64(1) << tb
    half = size >> 1
    sh = fa - (tb - rb - 1)
    if sh >= 0:
        sh = min(sh, 63)
        for i in range(n):
            idx = min(max((z[i] >> sh) + half, 0), size - 1)
            y[i] = table[idx]
    else:
        ls = min(-sh, 40)
        for i in range(n):
            rr = min(max(z[i], -size), size)
            idx = min(max((rr << ls) + half, 0), size - 1)
            y[i] = table[idx]


@numba.njit(cache=True)
def nonzeros(x, nz):
    """nz[:n] = the indices j with x[j] != 0, ascending; returns n (branch-free: every index is written)."""
    n = 0
    for j in range(x.shape[0]):
        nz[n] = j
        n += x[j] != 0
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
def output_error_ce(P, k, y, label, table, e, cnt):
    """e = y* - softmax(y) (loss ce; y: the logits, activation none), assigned to the error format: the softmax
    as activations.softmax_probs defines it, with the error format's fractional bits (at least 0)."""
    n_out = P[k, N_OUT]
    we, fe, se, re_, oe = P[k, W_E], P[k, F_E], P[k, S_E] != 0, P[k, R_E], P[k, O_E]
    pf = fe if fe > 0 else 0
    p = np.empty(n_out, dtype=np.int64)
    softmax_probs(y, n_out, P[k, F_Y], table, P[k, TB], P[k, RB], pf, p)
    for c in range(n_out):
        t = (np.int64(1) << pf) if c == label else np.int64(0)
        e[c] = cv(t - p[c], pf, we, fe, se, re_, oe, cnt[k, T_ERROR])


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
def hidden_delta(P, k, label, B, fb_states, e_out, fk_out, g, delta, p, buf, W_up, B_up, d_up, f_up, prop, cnt):
    """delta_k = p ⊙ g assigned to the error format, p the projected signal of the layer's rule:

    drtp  p_i = B[label, i]                          (F_FB)
    sdfa  p_i = sum_c B[c, i] sign(e_c)              (F_FB)
    dfa   p_i = sum_c B[c, i] e_c                    (F_FB + F_E(out))
    bp/fa p_j = sum_i M[j, i] delta_up_i             M = W_{k+1} (bp) or B_{k+1} (fa above), (F_M + F_E(k+1))
    ldfa  u_t = sum_i Pf[t, i] delta_up_i, Pf's entries read with LDFA_PS extra fractional bits (F_PF + LDFA_PS +
          F_E(k+1)), assigned to the error format of layer k+1 (r values, t ascending),
          p_j = sum_t Q[j, t] u_t                    (F_FB(k+1) + F_E(k+1))
          B_up packs ldfa's factors: rows [0, n) Q (n x r), rows [n, n + r) Pf (r x n_up)
    dldfa u_t = sum_c Pf[t, c] e_c (F_PF + LDFA_PS + F_E(out)), assigned to the output layer's error format,
          p_j = sum_t Q[j, t] u_t                    (F_FB + F_E(out)); B packs Q (n x r) over Pf (r x C)
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
    elif rule == R_DLDFA:
        ko = P.shape[0] - 1
        r = B.shape[0] - n
        _lowrank_u(B, n, r, e_out, P[k, F_PF] + P[k, LDFA_PS] + fk_out, P, ko, cnt[ko, T_ERROR], buf)
        for j in range(n):
            acc = np.int64(0)
            for t in range(r):
                acc += B[j, t] * buf[t]
            p[j] = acc
        fp = P[k, F_FB] + fk_out
    elif prop == PROP_LOWRANK:  # ldfa above: through its rank-r bottleneck
        n_up = d_up.shape[0]
        r = B_up.shape[0] - n
        for t in range(r):
            acc = np.int64(0)
            for i in range(n_up):
                acc += B_up[n + t, i] * d_up[i]
            buf[t] = acc
        cv_array(buf, r, P[k + 1, F_PF] + P[k + 1, LDFA_PS] + P[k + 1, F_E], P[k + 1, W_E], P[k + 1, F_E],
                 P[k + 1, S_E] != 0,
                 P[k + 1, R_E], P[k + 1, O_E], cnt[k + 1, T_ERROR], buf)
        for j in range(n):
            acc = np.int64(0)
            for t in range(r):
                acc += B_up[j, t] * buf[t]
            p[j] = acc
        fp = f_up
    else:  # bp / fa: through the layer above
        n_up = d_up.shape[0]
        for j in range(n):
            acc = np.int64(0)
            if prop == PROP_FA:
                for i in range(n_up):
                    acc += B_up[j, i] * d_up[i]
            else:
                for i in range(n_up):
                    acc += np.int64(W_up[j, i]) * d_up[i]
            p[j] = acc
        fp = f_up
    c_err = cnt[k, T_ERROR]
    for i in range(n):
        p[i] = p[i] * g[i]  # exact (p is scratch)
    cv_array(p, n, fp + fg, we, fe, se, re_, oe, c_err, delta)


@numba.njit(cache=True)
def _lowrank_u(B, n, r, d, src_frac, P, kf, c, u):
    """u_t = sum_i Pf[t, i] d_i (exact, i ascending; Pf = B's rows [n, n + r)), assigned to layer kf's error
    format (counted in ``c``): the r-dimensional error of a low-rank feedback."""
    for t in range(r):
        acc = np.int64(0)
        for i in range(d.shape[0]):
            acc += B[n + t, i] * d[i]
        u[t] = acc
    cv_array(u, r, src_frac, P[kf, W_E], P[kf, F_E], P[kf, S_E] != 0, P[kf, R_E], P[kf, O_E], c, u)


@numba.njit(cache=True)
def feedback_learn(P, k, label, B, x, y, d, e_out, cnt):
    """Layer k's trained feedback (docs/arithmetic.md §16), before its weight update, from pre-update values.

    ``x``: the layer's input, ``y``: its output activation, ``d``: its delta, ``e_out``: the output error.
    kp      B[j, i] += 2**-LR d_i x_j                     (fb_q: W's increment, rounded to B's LSB)
    ldfa    u = Pf d (as the signal of the layer below), Q[j, t] += 2**-LR u_t x_j, then Oja on Pf
    dldfa   u = Pf e_out, Q[j, t] += 2**-LR u_t y_j (the activation the signal is delivered to), then Oja on Pf
    Oja     s = the source (d, the one-hot target, or e_out) with its binary point moved so that max |s_i| is in
            [1/4, 1/2) (a leading-one detector, no division); a = Pf s, then rho = s - Pf^T a, each assigned to the
            layer's error format; Pf[t, i] += 2**-(LR - OJA_GAIN) a_t rho_i (fb_p, LDFA_PS extra fractional bits).
    Each increment is rounded to its word's LSB with the word's rounding (RND / TRN), then added with its
    overflow mode (counted: fb_q in T_FBQ, fb_p in T_FBP; the recomputed u, and a, rho are not counted).
    """
    learn = P[k, FB_LEARN]
    lr = P[k, LR]
    fe = P[k, F_E]
    wq, fq, sq, rq, oq = P[k, W_Q], P[k, F_Q], P[k, S_Q] != 0, P[k, R_Q], P[k, O_Q]
    cq = cnt[k, T_FBQ]
    scratch = np.zeros(2, dtype=np.int64)
    rule = P[k, RULE]
    if rule == R_KP or (rule == R_OUTPUT and P[k, PROP_B] == PROP_FA):  # kp: W's own increment d_i x_j
        fx = P[k, F_X]
        for j in range(x.shape[0]):
            xj = np.int64(x[j])
            if xj == 0:
                continue
            for i in range(d.shape[0]):
                B[j, i] = update_weight_counted(B[j, i], d[i] * xj, fe + fx, lr, wq, fq, sq, rq, oq, 0, cq)
        return
    direct = rule == R_DLDFA
    n = y.shape[0] if direct else x.shape[0]
    r = B.shape[0] - n
    fpf = P[k, F_PF] + P[k, LDFA_PS]
    src = e_out if direct else d
    kf = P.shape[0] - 1 if direct else k
    u = np.empty(r, dtype=np.int64)
    if learn & FB_LEARN_Q:
        _lowrank_u(B, n, r, src, fpf + P[kf, F_E], P, kf, scratch, u)
        h = y if direct else x
        fh = P[k, F_Y] if direct else P[k, F_X]
        for j in range(n):
            hj = np.int64(h[j])
            if hj == 0:
                continue
            for t in range(r):
                B[j, t] = update_weight_counted(B[j, t], u[t] * hj, P[kf, F_E] + fh, lr, wq, fq, sq, rq, oq, 0, cq)
    if not learn & FB_LEARN_P:
        return
    m = src.shape[0]
    s = np.empty(m, dtype=np.int64)
    if P[k, OJA_SRC] == OJA_TARGET:
        for i in range(m):
            s[i] = 1 if i == label else 0
    else:
        for i in range(m):
            s[i] = src[i]
    big = np.int64(0)
    for i in range(m):
        big = max(big, abs(s[i]))
    if big == 0:  # no error, nothing to learn (the float rule: a batch without variance)
        return
    fs = np.int64(1)  # the moved binary point: max |s| * 2**-fs in [1/4, 1/2), i.e. 2**(fs-2) <= max |s| < 2**(fs-1)
    while big >= (np.int64(1) << (fs - 1)):
        fs += 1
    we_, se_, re_, oe_ = P[k, W_E], P[k, S_E] != 0, P[k, R_E], P[k, O_E]
    a = np.empty(r, dtype=np.int64)
    for t in range(r):
        acc = np.int64(0)
        for i in range(m):
            acc += B[n + t, i] * s[i]
        a[t] = acc
    cv_array(a, r, fpf + fs, we_, fe, se_, re_, oe_, scratch, a)
    rho = np.empty(m, dtype=np.int64)
    fa = fpf + fe  # Pf^T a; s aligned to it (s < 2**(fs - 1), so a left shift by fa - fs stays below 2**(fa - 1))
    for i in range(m):
        acc = np.int64(0)
        for t in range(r):
            acc += B[n + t, i] * a[t]
        if fa >= fs:
            rho[i] = (s[i] << (fa - fs)) - acc
        else:
            rho[i] = s[i] - (acc << (fs - fa))
    cv_array(rho, m, max(fa, fs), we_, fe, se_, re_, oe_, scratch, rho)
    wp, sp, rp, op = P[k, W_PF], P[k, S_PF] != 0, P[k, R_PF], P[k, O_PF]
    cp = cnt[k, T_FBP]
    for t in range(r):
        at = a[t]
        for i in range(m):
            B[n + t, i] = update_weight_counted(B[n + t, i], at * rho[i], 2 * fe, lr - OJA_GAIN, wp, fpf, sp, rp,
                                                op, 0, cp)


# =============================================================================================================
# weight update (docs/arithmetic.md §12; draws §9; order docs/engine.md)


@numba.njit(cache=True, inline="always")
def _fast_delta(u, s, rmode, rnd):
    """round_shift(u, s, rmode, rnd) for TRN / RND / STOCH with 0 < s <= 32, or s <= 0 (exact)."""
    if s <= 0:
        return u << (-s)
    if rmode == RM_TRN:
        return u >> s
    if rmode == RM_RND:
        return (u + (np.int64(1) << (s - 1))) >> s
    return (u + ((rnd & _MASK32) >> (32 - s))) >> s


@numba.njit(cache=True, inline="always")
def _take(P, k, rnd_state, ns, i):
    """The next 32-bit draw for an assignment to column ``i`` of layer ``k`` (docs/arithmetic.md §9a): from the
    layer's LFSR (rng: layer) or from column i's xorshift32 generator ``ns[i]`` (rng: neuron)."""
    if P[k, RNG_N] != 0:
        d = xorshift32(ns[i])
        ns[i] = d
        return np.int64(d)
    rnd_state[k], rnd = lfsr_draw32(rnd_state[k])
    return rnd


@numba.njit(cache=True)
def _apply_one(P, k, w, u, ufrac, shift, fmt_w, fmt_r, fmt_o, fmt_f, fmt_s, rnd_state, ns, i, cnt, t_w):
    """Generic assignment of one increment u (F = ufrac, learning rate 2**-shift) into w (column ``i``), with the
    optional update format (docs/engine.md); one 32-bit draw (_take) per STOCH assignment, the update's first."""
    if P[k, HAS_U] != 0:
        rnd = np.int64(0)
        if P[k, R_U] == RM_STOCH:
            rnd = _take(P, k, rnd_state, ns, i)
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
        if fmt_r == RM_STOCH:
            rnd = _take(P, k, rnd_state, ns, i)
        return convert_counted(tot, sf, fmt_w, fmt_f, fmt_s, fmt_r, fmt_o, rnd, cnt[k, t_w])
    rnd = np.int64(0)
    if fmt_r == RM_STOCH:
        rnd = _take(P, k, rnd_state, ns, i)
    return update_weight_counted(w, u, ufrac, shift, fmt_w, fmt_f, fmt_s, fmt_r, fmt_o, rnd, cnt[k, t_w])


@numba.njit(cache=True, inline="always")
def word_range(width, signed):
    """The integer range (lo, hi) of a width-bit word and its bit mask: the bounds the overflow modes apply."""
    lo = -(np.int64(1) << (width - 1)) if signed else np.int64(0)
    hi = (np.int64(1) << (width - 1)) - 1 if signed else (np.int64(1) << width) - 1
    return lo, hi, (np.int64(1) << width) - 1


@numba.njit(cache=True, inline="always")
def split_shift(s):
    """An update's shift s as the kernels apply it: a right shift sp >= 0 of the increment and a factor mul
    (2^-s for s < 0: the exact increment u << -s, folded into the signal)."""
    return (s if s > 0 else 0), np.int64(1) << (-s if s < 0 else 0)


@numba.njit(cache=True, inline="always")
def _sat_or_wrap(v, lo, hi, width, signed, omode):
    if omode == OV_SAT:
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


@numba.njit(cache=True)
def _update_rows_fast(W, x, nz, nnz, dm, s, rmode, omode, width, signed, rnd_state, k, J, cw):
    """Fast path of update_weight_counted (no update format; TRN/RND/STOCH, 0 < s <= 32 or s <= 0; WRAP/SAT).

    STOCH: one 32-bit draw per weight written, in row-major order of the rows written (docs/engine.md).  Each
    row's draws are produced by four interleaved LFSR chains started at draw 0, m, 2m, 3m of the row
    (m = n_out // 4; J jumps a state by m draws), so the four dependency chains run in parallel; the draws
    and their order are those of one sequential stream."""
    lo, hi, _ = word_range(width, signed)
    n_out = W.shape[1]
    zc = 0
    oc = 0
    st = rnd_state[k]
    if rmode == RM_STOCH:
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
            if omode == OV_SAT:
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
    elif omode == OV_SAT and s > 0:
        add = np.int64(0) if rmode == RM_TRN else (np.int64(1) << (s - 1))
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


@numba.njit(cache=True)
def _update_bias_fast(b, dm, s, rmode, omode, width, signed, rnd_state, k, cb):
    lo, hi, _ = word_range(width, signed)
    st = rnd_state[k]
    for i in range(b.shape[0]):
        rnd = np.int64(0)
        if rmode == RM_STOCH:
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


# ---- buffered stochastic-rounding stream: a layer's LFSR draws generated 16 at a time ----------------------------
#
# dbuf (uint32) holds a window of the layer's draw sequence and dmeta (int64[5]) = [valid, state, pos, -, taken]:
# the next draw goes to dbuf[pos], dbuf[pos - DRAW_HISTORY:pos] are the draws before it (what the recurrence of
# lfsr.draws_extend needs: d[m] = d[m-64] ^ d[m-128] ^ d[m-1408] ^ d[m-2048]), and ``state`` is the LFSR state
# at dbuf[pos] (the engine's rnd_state).  The update kernels generate each row's draws inside their own loop, so
# the draws are exactly lfsr_draw32's, in the same order.  The window survives between samples and is reused when
# rnd_state still equals ``state`` (the state determines the stream), else it restarts from rnd_state.

#: draws the buffer holds beyond the history before the window moves back to its start
STREAM_ROOM = 1 << 15
#: dmeta[0] of a window holding whole draws / their top halves (stream16_open, below)
STREAM_W32, STREAM_HI16 = 1, 2


def stream_size(n_out: int) -> int:
    """Length of a layer's draw buffer (a row or the biases take at most n_out draws at a time)."""
    return DRAW_HISTORY + STREAM_ROOM + int(n_out)


def _back_table() -> np.ndarray:
    """Byte-sliced table (4, 256) of the LFSR map 'DRAW_HISTORY draws back' (GF(2)-linear)."""
    return byte_slice_table([lfsr_jump(1 << j, PERIOD - 32 * DRAW_HISTORY) for j in range(32)])


_BACK = _back_table()


@numba.njit(cache=True)
def stream_open(dbuf, dmeta, state):
    """Position the stream at LFSR state ``state``: reuse the window when it stands there already, else
    generate the DRAW_HISTORY draws that lead to ``state`` (from the state that many draws earlier)."""
    state = np.int64(state) & _MASK32
    dmeta[4] = 0
    if dmeta[0] == STREAM_W32 and dmeta[1] == state:
        return
    draws_start(_jump(_BACK, state), dbuf)
    dmeta[0], dmeta[1], dmeta[2] = STREAM_W32, state, DRAW_HISTORY


@numba.njit(cache=True)
def stream_room(dbuf, dmeta, n):
    """Index where the next n draws go (moves the history back to the start of dbuf when needed)."""
    pos = dmeta[2]
    if pos + n > dbuf.shape[0]:
        dbuf[0:DRAW_HISTORY] = dbuf[pos - DRAW_HISTORY:pos]  # no overlap: pos >= 2 * DRAW_HISTORY here
        pos = DRAW_HISTORY
        dmeta[2] = pos
    return pos


@numba.njit(cache=True, inline="always")
def stream_advance(dmeta, n):
    dmeta[2] += n
    dmeta[4] += n


@numba.njit(cache=True)
def stream_close(dbuf, dmeta):
    """The LFSR state after the draws taken since stream_open (also the stream's new position)."""
    if dmeta[4] > 0:
        dmeta[1] = state_after_draw(dbuf[dmeta[2] - 1])
        dmeta[4] = 0
    return dmeta[1]


# The same stream, top halves only (layers whose every streamed addend has at most 16 bits: the int16 kernels).  The
# recurrence is bitwise, so the draws' top 16 bits satisfy it on their own: 16 draws per 3 vector XORs of 16-bit
# lanes, and a loop with no 32-bit value in it runs at twice the lanes.  The window lives in the layer's draw buffer
# viewed as uint16 (dmeta[0] says which layout it holds); the state at close is the state at open jumped by the draws
# taken (lfsr.jump_draws), as the low halves are never made.

@numba.njit(cache=True, inline="always")
def hi16_window(dbuf):
    """The top-halves window of a layer's draw buffer: the same memory viewed as uint16 (twice the entries; a
    smaller window measured slower)."""
    return dbuf.view(np.uint16)


@numba.njit(cache=True)
def stream16_open(dbuf, dmeta, state):
    """stream_open for the top-halves window (hi16_window)."""
    state = np.int64(state) & _MASK32
    dmeta[4] = 0
    if dmeta[0] == STREAM_HI16 and dmeta[1] == state:
        return
    h = hi16_window(dbuf)
    full = np.empty(DRAW_HISTORY, dtype=np.uint32)
    draws_start(_jump(_BACK, state), full)
    for i in range(DRAW_HISTORY):
        h[i] = np.uint16(full[i] >> 16)
    dmeta[0], dmeta[1], dmeta[2] = STREAM_HI16, state, DRAW_HISTORY


@numba.njit(cache=True)
def stream16_close(dmeta):
    """stream_close of the top-halves window: the state at open, jumped by the draws taken."""
    if dmeta[4] > 0:
        dmeta[1] = jump_draws(dmeta[1], dmeta[4])
        dmeta[4] = 0
    return dmeta[1]


@numba.njit(cache=True, inline="always")
def _row32(w, dmm, xj, dbuf, p0, use_draws, sh, s, add, lo, hi, mask, sat):
    """One row of int32 weight assignments: ``w[i] = O(w[i] + ((dmm[i]*xj + a_i) >> s))`` with a_i the top
    ``32 - sh`` bits of the draw generated into ``dbuf[p0 + i]`` (STOCH; same recurrence as lfsr.draws_extend) or
    the constant ``add`` (TRN: 0, RND: half an LSB); O is SAT or WRAP.  Returns (increments that rounded to zero,
    overflow events).  Four branch-free loop bodies."""
    n = w.shape[0]
    zc = np.int32(0)
    oc = np.int32(0)
    s32 = np.int32(s)
    sh32 = np.uint32(sh)
    a32 = np.int32(add)
    lo32, hi32, m32 = np.int32(lo), np.int32(hi), np.int32(mask)
    H = DRAW_HISTORY
    if use_draws:
        v = dbuf[p0 - H:p0 + n]  # v[i + H] is the draw of weight i; non-negative indices vectorize
        if sat:
            for i in range(n):
                r = v[i + H - DRAW_LAG1] ^ v[i + H - DRAW_LAG2] ^ v[i + H - DRAW_LAG22] ^ v[i]
                v[i + H] = r
                u = np.int32(dmm[i] * xj)
                d = sra32(np.int32(u + np.int32(srl32(r, sh32))), s32)
                zc = np.int32(zc + ((d == 0) & (u != 0)))
                t = np.int32(w[i] + d)
                tc = min(max(t, lo32), hi32)
                oc = np.int32(oc + (t != tc))
                w[i] = tc
        else:
            for i in range(n):
                r = v[i + H - DRAW_LAG1] ^ v[i + H - DRAW_LAG2] ^ v[i + H - DRAW_LAG22] ^ v[i]
                v[i + H] = r
                u = np.int32(dmm[i] * xj)
                d = sra32(np.int32(u + np.int32(srl32(r, sh32))), s32)
                zc = np.int32(zc + ((d == 0) & (u != 0)))
                t = np.int32(w[i] + d)
                tc = np.int32((np.int32(t - lo32) & m32) + lo32)
                oc = np.int32(oc + (t != tc))
                w[i] = tc
    elif sat:
        for i in range(n):
            u = np.int32(dmm[i] * xj)
            d = sra32(np.int32(u + a32), s32)
            zc = np.int32(zc + ((d == 0) & (u != 0)))
            t = np.int32(w[i] + d)
            tc = min(max(t, lo32), hi32)
            oc = np.int32(oc + (t != tc))
            w[i] = tc
    else:
        for i in range(n):
            u = np.int32(dmm[i] * xj)
            d = sra32(np.int32(u + a32), s32)
            zc = np.int32(zc + ((d == 0) & (u != 0)))
            t = np.int32(w[i] + d)
            tc = np.int32((np.int32(t - lo32) & m32) + lo32)
            oc = np.int32(oc + (t != tc))
            w[i] = tc
    return zc, oc


@numba.njit(cache=True)
def update_rows32(W, x, nz, nnz, dm, s, rmode, omode, width, signed, dbuf, dmeta, cw):
    """Online weight update of the rows with x_j != 0 in int32 (P[k, FAST32_W]: the engine proved that
    ``dm*x`` plus the addend, the increment and ``w + increment`` fit; docs/engine.md "Range checks"): the same
    assignments, draws and counters as _update_rows_fast / arith.update_weight_counted.  STOCH: one draw per
    weight written, rows in order, from the layer's buffered stream (stream_open first)."""
    n_out = W.shape[1]
    lo, hi, mask = word_range(width, signed)
    stoch = rmode == RM_STOCH
    # s <= 0: the increment u << -s is exact; the shift is folded into dm (STOCH draws are taken, addend 0)
    sp, mul = split_shift(s)
    dmm = np.empty(n_out, dtype=np.int32)
    for i in range(n_out):
        dmm[i] = np.int32(dm[i] * mul)
    use_draws = stoch and s > 0
    add = (np.int64(1) << (s - 1)) if (rmode == RM_RND and s > 0) else np.int64(0)
    sh = 32 - sp
    sat = omode == OV_SAT
    zc = 0
    oc = 0
    for t in range(nnz):
        j = nz[t]
        p0 = 0
        if stoch:
            p0 = stream_room(dbuf, dmeta, n_out)
            if not use_draws:
                draws_extend(dbuf, p0, n_out)
        z, o = _row32(W[j], dmm, np.int32(x[j]), dbuf, p0, use_draws, sh, sp, add, lo, hi, mask, sat)
        if stoch:
            stream_advance(dmeta, n_out)
        zc += z
        oc += o
    cw[0] += oc
    cw[1] += zc


@numba.njit(cache=True, inline="always")
def _flat32(w, dmt, xe, dr, use_draws, sh, add, s, lo, hi, mask, sat):
    """w[l] = O(w[l] + ((dmt[l]*xe[l] + a_l) >> s)) in int32 (the short-row path), a_l the top ``32 - sh`` bits of
    the draw dr[l] (STOCH) or the constant ``add``; returns (zero, overflow) events."""
    zc = np.int32(0)
    oc = np.int32(0)
    s32 = np.int32(s)
    sh32 = np.uint32(sh)
    a32 = np.int32(add)
    lo32, hi32, m32 = np.int32(lo), np.int32(hi), np.int32(mask)
    n = w.shape[0]
    for i in range(n):
        u = np.int32(dmt[i] * xe[i])
        a = np.int32(srl32(dr[i], sh32)) if use_draws else a32
        d = sra32(np.int32(u + a), s32)
        zc = np.int32(zc + ((d == 0) & (u != 0)))
        t = np.int32(w[i] + d)
        tc = min(max(t, lo32), hi32) if sat else np.int32((np.int32(t - lo32) & m32) + lo32)
        oc = np.int32(oc + (t != tc))
        w[i] = tc
    return zc, oc


#: short rows (n_out below this) are updated and accumulated as flat runs of whole rows
SHORT_ROW = 64


@numba.njit(cache=True, inline="always")
def _spread(out, q, n, v):
    """out[q*n + i] = v for i < n, written as one 16/32/64-lane store (the lanes past n are scratch the next row
    overwrites; ``out`` has SHORT_ROW lanes of slack)."""
    base = q * n
    for c in range(0, n, 16):
        splat16(out, base + c, v)


def _short_rows(n_out: int) -> int:
    """Rows per flat block of the short-row kernels: about 512 weights, a multiple of 16 when possible."""
    from math import gcd

    base = 16 // gcd(n_out, 16)
    return base * max(1, 512 // (base * n_out))


@numba.njit(cache=True)
def update_short32(W, x, nz, nnz, dm, s, rmode, omode, width, signed, dbuf, dmeta, R, cw):
    """update_rows32 for short rows (n_out < SHORT_ROW): runs of consecutive written rows are contiguous in W and
    their draws consecutive in the stream, so up to R rows (P[k, SHORT_R]) are one flat loop (the inputs x_j of the
    run are laid out per weight first, a row per vector store).  Same assignments, draws, order and counters."""
    n_out = W.shape[1]
    Wf = W.reshape(W.shape[0] * n_out)
    lo, hi, mask = word_range(width, signed)
    stoch = rmode == RM_STOCH
    sp, mul = split_shift(s)
    use_draws = stoch and s > 0
    add = (np.int64(1) << (s - 1)) if (rmode == RM_RND and s > 0) else np.int64(0)
    sh = np.uint32(32 - sp)
    dmt = np.empty(R * n_out, dtype=np.int32)
    for q in range(R):
        for i in range(n_out):
            dmt[q * n_out + i] = np.int32(dm[i] * mul)
    xe = np.empty(R * n_out + SHORT_ROW, dtype=np.int32)
    zc = 0
    oc = 0
    t = 0
    while t < nnz:
        j0 = nz[t]
        r = 1
        while r < R and t + r < nnz and nz[t + r] == j0 + r:
            r += 1
        L = r * n_out
        for q in range(r):
            _spread(xe, q, n_out, np.int32(x[j0 + q]))
        p0 = 0
        if stoch:
            p0 = stream_room(dbuf, dmeta, L)
            draws_extend(dbuf, p0, L)
            stream_advance(dmeta, L)
        z, o = _flat32(Wf[j0 * n_out:j0 * n_out + L], dmt[:L], xe[:L], dbuf[p0:p0 + L], use_draws, sh, add, sp, lo, hi,
                       mask, omode == OV_SAT)
        zc += z
        oc += o
        t += r
    cw[0] += oc
    cw[1] += zc


# ---- 16-bit lanes (P[k, FAST16_W]): the online weight update of narrow formats, twice the lanes of int32 ------------
#
# The engine proves from the formats (FixedEngine._update_fits16) that dm*x (aligned) fits int16, 0 <= s <= 15 and
# w + d (+ 2**W of headroom for WRAP) fits int16: the 8-bit preset (|dm*x| <= 128*255, s = 15 / 14) qualifies.  Only
# ``u + addend`` may need 17 bits; it is never formed: with u = (u >> s)*2**s + (u & m), m = 2**s - 1, and an addend
# 0 <= a <= m,
#     (u + a) >> s = (u >> s) + [(u & m) + a >= 2**s] = (u >> s) + [a > (~u & m)]
# a comparison of two int16 in [0, 2**15).  The STOCH addend (the draw's top s bits) comes from the top-halves stream
# (stream16_open).  The zero-event count uses u == 0 <=> dm_i == 0 (x_j != 0 on a written row, and u == 0 always
# rounds to 0): zero events = (increments d == 0) - rows x (dm_i == 0), so a lane counts d == 0 only.


sra16 = _shift("sra16", "ashr", types.int16, "Arithmetic right shift of an int16 by ``n`` (0 <= n < 16), as int16.")
srl16 = _shift("srl16", "lshr", types.uint16, "Logical right shift of a uint16 by ``n`` (0 <= n < 16), as uint16.")


@intrinsic
def narrow16(typingctx, v, w):
    """An int16 weight that the caller proved within the row's dtype (w's), as that dtype.  int8 rows: clamped to
    the int8 range first, which changes nothing but lets LLVM store 32 lanes with one saturating pack (vpacksswb)
    instead of a mask and an unsigned pack."""
    if not (v == types.int16 and isinstance(w, types.Array) and isinstance(w.dtype, types.Integer)
            and w.dtype.bitwidth >= 8):
        return None
    bits = w.dtype.bitwidth

    def codegen(context, builder, signature, args):
        from llvmlite import ir

        x = args[0]
        if bits >= 16:
            return builder.sext(x, ir.IntType(bits)) if bits > 16 else x
        lim = (1 << (bits - 1)) - 1
        hi, lo = ir.Constant(x.type, lim), ir.Constant(x.type, -lim - 1)
        x = builder.select(builder.icmp_signed(">", x, hi), hi, x)
        x = builder.select(builder.icmp_signed("<", x, lo), lo, x)
        return builder.trunc(x, ir.IntType(bits))
    return w.dtype(types.int16, w), codegen


@numba.njit(cache=True, inline="always")
def _lane16(w, dmi, xj, a, s16, m16, lo16, hi16, mk16, sat):
    """One int16 weight assignment: (new weight, its increment d, the unclamped w + d)."""
    u = np.int16(dmi * xj)
    c = np.int16(a > np.int16(np.int16(~u) & m16))
    d = np.int16(sra16(u, s16) + c)
    t = np.int16(w + d)
    tc = min(max(t, lo16), hi16) if sat else np.int16(np.int16(np.int16(t - lo16) & mk16) + lo16)
    return tc, d, t


@numba.njit(cache=True, inline="always")
def _row16(w, dmm, xj, hbuf, p0, use_draws, sh, s, add, lo, hi, mask, sat):
    """_row32 in int16 lanes (P[k, FAST16_W]) on the top-halves stream ``hbuf`` (the addend: the top s bits of the
    draw, ``sh = 16 - s``): the same assignments; returns (increments d == 0, overflow events)."""
    n = w.shape[0]
    zc = np.int16(0)
    ec = np.int16(0)  # lanes count t == tc (no overflow), events = n - ec: one vector op fewer than t != tc
    s16 = np.int16(s)
    sh16 = np.uint16(sh)
    m16 = np.int16((1 << s) - 1)
    a16 = np.int16(add)
    lo16, hi16, mk16 = np.int16(lo), np.int16(hi), np.int16(mask)
    x16 = np.int16(xj)
    H = DRAW_HISTORY
    if use_draws:
        v = hbuf[p0 - H:p0 + n]  # v[i + H]: the top half of weight i's draw
        for i in range(n):
            r = np.uint16(v[i + H - DRAW_LAG1] ^ v[i + H - DRAW_LAG2] ^ v[i + H - DRAW_LAG22] ^ v[i])
            v[i + H] = r
            a = np.int16(srl16(r, sh16))
            tc, d, t = _lane16(w[i], dmm[i], x16, a, s16, m16, lo16, hi16, mk16, sat)
            zc = np.int16(zc + (d == 0))
            ec = np.int16(ec + (t == tc))
            w[i] = narrow16(tc, w)
    else:
        for i in range(n):
            tc, d, t = _lane16(w[i], dmm[i], x16, a16, s16, m16, lo16, hi16, mk16, sat)
            zc = np.int16(zc + (d == 0))
            ec = np.int16(ec + (t == tc))
            w[i] = narrow16(tc, w)
    return zc, np.int16(n - ec)


@numba.njit(cache=True)
def update_rows16(W, x, nz, nnz, dm, s, rmode, omode, width, signed, dbuf, dmeta, cw):
    """update_rows32 in int16 lanes (P[k, FAST16_W], the engine's proof above), STOCH draws from the top-halves
    stream (stream16_open first): the same assignments, draws, order and counters."""
    hbuf = hi16_window(dbuf)
    n_out = W.shape[1]
    lo, hi, mask = word_range(width, signed)
    stoch = rmode == RM_STOCH
    sp, mul = split_shift(s)
    dmm = np.empty(n_out, dtype=np.int16)
    dz = 0  # lanes whose increment is 0 on every written row (dm_i == 0)
    for i in range(n_out):
        dmm[i] = np.int16(dm[i] * mul)
        dz += dm[i] == 0
    use_draws = stoch and s > 0
    add = (np.int64(1) << (s - 1)) if (rmode == RM_RND and s > 0) else np.int64(0)
    sh = 16 - sp
    sat = omode == OV_SAT
    zc = 0
    oc = 0
    for t in range(nnz):
        j = nz[t]
        p0 = 0
        if stoch:
            p0 = stream_room(hbuf, dmeta, n_out)
            if not use_draws:
                draws_extend(hbuf, p0, n_out)
        if sat:
            z, o = _row16(W[j], dmm, x[j], hbuf, p0, use_draws, sh, sp, add, lo, hi, mask, True)
        else:
            z, o = _row16(W[j], dmm, x[j], hbuf, p0, use_draws, sh, sp, add, lo, hi, mask, False)
        if stoch:
            stream_advance(dmeta, n_out)
        zc += z
        oc += o
    cw[0] += oc
    cw[1] += zc - nnz * dz


@numba.njit(cache=True, inline="always")
def _flat16(w, dmt, xe, dr, use_draws, sh, add, s, lo, hi, mask, sat):
    """_flat32 in int16 lanes (P[k, FAST16_W]), ``dr`` the draws' top halves; returns (increments d == 0, overflow
    events)."""
    zc = np.int16(0)
    ec = np.int16(0)  # as _row16: a lane counts t == tc
    s16 = np.int16(s)
    sh16 = np.uint16(sh)
    m16 = np.int16((1 << s) - 1)
    a16 = np.int16(add)
    lo16, hi16, mk16 = np.int16(lo), np.int16(hi), np.int16(mask)
    n = w.shape[0]
    if use_draws:  # two loops: a select inside one keeps LLVM from vectorising it
        for i in range(n):
            tc, d, t = _lane16(w[i], dmt[i], xe[i], np.int16(srl16(dr[i], sh16)), s16, m16, lo16, hi16, mk16, sat)
            zc = np.int16(zc + (d == 0))
            ec = np.int16(ec + (t == tc))
            w[i] = narrow16(tc, w)
    else:
        for i in range(n):
            tc, d, t = _lane16(w[i], dmt[i], xe[i], a16, s16, m16, lo16, hi16, mk16, sat)
            zc = np.int16(zc + (d == 0))
            ec = np.int16(ec + (t == tc))
            w[i] = narrow16(tc, w)
    return zc, np.int16(n - ec)


@numba.njit(cache=True)
def update_short16(W, x, nz, nnz, dm, s, rmode, omode, width, signed, dbuf, dmeta, R, cw):
    """update_short32 in int16 lanes (P[k, FAST16_W]), STOCH draws from the top-halves stream: the same assignments,
    draws, order and counters."""
    hbuf = hi16_window(dbuf)
    n_out = W.shape[1]
    Wf = W.reshape(W.shape[0] * n_out)
    lo, hi, mask = word_range(width, signed)
    stoch = rmode == RM_STOCH
    sp, mul = split_shift(s)
    use_draws = stoch and s > 0
    add = (np.int64(1) << (s - 1)) if (rmode == RM_RND and s > 0) else np.int64(0)
    sh = 16 - sp
    dmt = np.empty(R * n_out, dtype=np.int16)
    for q in range(R):
        for i in range(n_out):
            dmt[q * n_out + i] = np.int16(dm[i] * mul)
    dz = 0
    for i in range(n_out):
        dz += dm[i] == 0
    xe = np.empty(R * n_out + SHORT_ROW, dtype=np.int16)
    zc = 0
    oc = 0
    t = 0
    while t < nnz:
        j0 = nz[t]
        r = 1
        while r < R and t + r < nnz and nz[t + r] == j0 + r:
            r += 1
        L = r * n_out
        for q in range(r):
            _spread(xe, q, n_out, np.int16(x[j0 + q]))
        p0 = 0
        if stoch:
            p0 = stream_room(hbuf, dmeta, L)
            draws_extend(hbuf, p0, L)
            stream_advance(dmeta, L)
        if omode == OV_SAT:
            z, o = _flat16(Wf[j0 * n_out:j0 * n_out + L], dmt[:L], xe[:L], hbuf[p0:p0 + L], use_draws, sh, add, sp,
                           lo, hi, mask, True)
        else:
            z, o = _flat16(Wf[j0 * n_out:j0 * n_out + L], dmt[:L], xe[:L], hbuf[p0:p0 + L], use_draws, sh, add, sp,
                           lo, hi, mask, False)
        zc += z
        oc += o
        t += r
    cw[0] += oc
    cw[1] += zc - nnz * dz


@numba.njit(cache=True)
def mac32_short(W, x, acc, R):
    """mac32 for short rows (n_out < SHORT_ROW), dense: blocks of R whole rows are one flat run of W, multiplied
    by the inputs laid out per weight (a row per vector store) and summed into R * n_out int32 lanes, folded at
    the end (zero inputs add an exact 0: the exact path does not depend on skipping them)."""
    n_in, n_out = W.shape
    Wf = W.reshape(n_in * n_out)
    L = R * n_out
    lanes = np.zeros(L, dtype=np.int32)
    xe = np.empty(L + SHORT_ROW, dtype=np.int32)
    nb = n_in // R
    for blk in range(nb):
        j0 = blk * R
        for q in range(R):
            _spread(xe, q, n_out, np.int32(x[j0 + q]))
        wb = Wf[blk * L:(blk + 1) * L]
        for l in range(L):
            lanes[l] = np.int32(lanes[l] + np.int32(wb[l] * xe[l]))
    for i in range(n_out):
        a = np.int32(0)
        for q in range(R):
            a = np.int32(a + lanes[q * n_out + i])
        for j in range(nb * R, n_in):
            a = np.int32(a + np.int32(W[j, i] * np.int32(x[j])))
        acc[i] = a


@numba.njit(cache=True)
def update_bias_stream(b, dm, s, rmode, omode, width, signed, dbuf, dmeta, cb):
    """_update_bias_fast (TRN / RND / STOCH with s <= 32, WRAP / SAT) as branch-free loops, the STOCH draws taken
    from the buffered stream (same draws, same order, same counters): whole draws (uint32) or their top halves
    (uint16, s <= 16)."""
    lo, hi, mask = word_range(width, signed)
    n = b.shape[0]
    p0 = 0
    if rmode == RM_STOCH:
        p0 = stream_room(dbuf, dmeta, n)
        draws_extend(dbuf, p0, n)
        stream_advance(dmeta, n)
    dr = dbuf[p0:p0 + n] if rmode == RM_STOCH else dbuf[0:0]
    ls = -s if s < 0 else 0
    rs = s if s > 0 else 0
    add = (np.int64(1) << (s - 1)) if (rmode == RM_RND and s > 0) else np.int64(0)
    use_draws = rmode == RM_STOCH and s > 0
    sh = 8 * dbuf.itemsize - rs  # the addend: the draw's top rs bits
    ad = np.empty(n, dtype=np.int64)
    if use_draws:
        for i in range(n):
            ad[i] = np.int64(dr[i]) >> sh
    else:
        for i in range(n):
            ad[i] = add
    zc = 0
    oc = 0
    if omode == OV_SAT:
        for i in range(n):
            u = dm[i]
            d = ((u << ls) + ad[i]) >> rs
            zc += (d == 0) & (u != 0)
            v = b[i] + d
            vc = min(max(v, lo), hi)
            oc += v != vc
            b[i] = vc
    else:
        for i in range(n):
            u = dm[i]
            d = ((u << ls) + ad[i]) >> rs
            zc += (d == 0) & (u != 0)
            v = b[i] + d
            vc = ((v - lo) & mask) + lo
            oc += v != vc
            b[i] = vc
    cb[0] += oc
    cb[1] += zc


# ---- rng: neuron (docs/arithmetic.md §9a): column i's draws come from its own xorshift32 state ns[i] ---------------


@numba.njit(cache=True, inline="always")
def _xs_lane(d, dmi, xj, w, sh, keep, s32, lo32, hi32, m32, sat):
    """One STOCH weight assignment of update_rows_xs32: (new weight, 1 if a non-zero increment rounded to 0,
    1 if it overflowed); the addend is the top 32 - sh bits of draw d, masked by ``keep``."""
    u = np.int32(dmi * xj)
    dl = sra32(np.int32(u + np.int32(srl32(d, sh) & keep)), s32)
    v = np.int32(w + dl)
    vc = min(max(v, lo32), hi32) if sat else np.int32((np.int32(v - lo32) & m32) + lo32)
    return vc, np.int32((dl == 0) & (u != 0)), np.int32(v != vc)


@numba.njit(cache=True)
def update_rows_xs32(W, x, nz, nnz, dm, s, omode, width, signed, ns, cw):
    """update_rows32 for STOCH weights under rng: neuron: the online update of the rows with x_j != 0 in int32 (same
    proof of range, P[k, FAST32_W]), the assignment to W[j, i] taking the next draw of generator ns[i].  Four rows
    per pass over the states: generator i steps four times in a register, one after the other as §9a orders the
    rows, and its state, dm_i and the event counts are loaded and stored once per four rows; every lane is
    branch-free and independent of the others (LLVM vectorises the pass; three shifts and xors per draw).  Same
    assignments and counters as arith.update_weight_counted."""
    n_out = W.shape[1]
    lo, hi, mask = word_range(width, signed)
    sp, mul = split_shift(s)  # s <= 0: the exact increment u << -s, the shift folded into dm
    dmm = np.empty(n_out, dtype=np.int32)
    for i in range(n_out):
        dmm[i] = np.int32(dm[i] * mul)
    # the addend: the draw's top sp bits; sp = 0 adds nothing (a 32-bit shift is undefined: masked instead), the draw
    # is still taken (§9)
    sh = np.uint32(32 - sp if sp > 0 else 0)
    keep = np.uint32(0xFFFFFFFF if sp > 0 else 0)
    s32 = np.int32(sp)
    lo32, hi32, m32 = np.int32(lo), np.int32(hi), np.int32(mask)
    zl = np.zeros(n_out, dtype=np.int32)  # per-lane event counts (a horizontal sum per row costs more)
    ol = np.zeros(n_out, dtype=np.int32)
    if omode == OV_SAT:  # a constant flag in each copy of the inlined loops: no select between SAT and WRAP per lane
        _xs_rows(W, x, nz, nnz, dmm, ns, zl, ol, sh, keep, s32, lo32, hi32, m32, True)
    else:
        _xs_rows(W, x, nz, nnz, dmm, ns, zl, ol, sh, keep, s32, lo32, hi32, m32, False)
    zc = 0
    oc = 0
    for i in range(n_out):
        zc += zl[i]
        oc += ol[i]
    cw[0] += oc
    cw[1] += zc


@numba.njit(cache=True, inline="always")
def _xs_rows(W, x, nz, nnz, dmm, ns, zl, ol, sh, keep, s32, lo32, hi32, m32, sat):
    """The rows of update_rows_xs32, four per pass over the generators."""
    n_out = W.shape[1]
    t = 0
    while t + 4 <= nnz:
        w0, w1, w2, w3 = W[nz[t]], W[nz[t + 1]], W[nz[t + 2]], W[nz[t + 3]]
        x0, x1, x2, x3 = (np.int32(x[nz[t]]), np.int32(x[nz[t + 1]]), np.int32(x[nz[t + 2]]),
                          np.int32(x[nz[t + 3]]))
        for i in range(n_out):
            dmi = dmm[i]
            d = xorshift32(ns[i])
            w0[i], z0, o0 = _xs_lane(d, dmi, x0, w0[i], sh, keep, s32, lo32, hi32, m32, sat)
            d = xorshift32(d)
            w1[i], z1, o1 = _xs_lane(d, dmi, x1, w1[i], sh, keep, s32, lo32, hi32, m32, sat)
            d = xorshift32(d)
            w2[i], z2, o2 = _xs_lane(d, dmi, x2, w2[i], sh, keep, s32, lo32, hi32, m32, sat)
            d = xorshift32(d)
            w3[i], z3, o3 = _xs_lane(d, dmi, x3, w3[i], sh, keep, s32, lo32, hi32, m32, sat)
            ns[i] = d
            zl[i] = np.int32(zl[i] + z0 + z1 + z2 + z3)
            ol[i] = np.int32(ol[i] + o0 + o1 + o2 + o3)
        t += 4
    while t < nnz:
        w0 = W[nz[t]]
        x0 = np.int32(x[nz[t]])
        for i in range(n_out):
            d = xorshift32(ns[i])
            ns[i] = d
            w0[i], z0, o0 = _xs_lane(d, dmm[i], x0, w0[i], sh, keep, s32, lo32, hi32, m32, sat)
            zl[i] = np.int32(zl[i] + z0)
            ol[i] = np.int32(ol[i] + o0)
        t += 1


@numba.njit(cache=True, inline="always")
def _xs_draws16(ns, hh, r):
    """The next r (1..4) draws of every generator ns[i], one row of hh per draw: their top halves (uint16)."""
    n = ns.shape[0]
    if r == 4:
        h0, h1, h2, h3 = hh[0], hh[1], hh[2], hh[3]
        for i in range(n):
            d = xorshift32(ns[i])
            h0[i] = np.uint16(d >> 16)
            d = xorshift32(d)
            h1[i] = np.uint16(d >> 16)
            d = xorshift32(d)
            h2[i] = np.uint16(d >> 16)
            d = xorshift32(d)
            h3[i] = np.uint16(d >> 16)
            ns[i] = d
    else:
        for q in range(r):
            hq = hh[q]
            for i in range(n):
                d = xorshift32(ns[i])
                ns[i] = d
                hq[i] = np.uint16(d >> 16)


@numba.njit(cache=True, inline="always")
def _row_h16(w, dmm, xj, hr, use_draws, sh, s, lo, hi, mask, sat):
    """One row of int16 STOCH assignments, the addend the top s bits of the draw whose top half is hr[i]
    (``sh = 16 - s``; none when s = 0); returns (increments d == 0, overflow events)."""
    n = w.shape[0]
    zc = np.int16(0)
    oc = np.int16(0)
    s16 = np.int16(s)
    sh16 = np.uint16(sh)
    m16 = np.int16((1 << s) - 1)
    lo16, hi16, mk16 = np.int16(lo), np.int16(hi), np.int16(mask)
    x16 = np.int16(xj)
    if use_draws:  # two loops: a select inside one keeps LLVM from vectorising it
        for i in range(n):
            tc, d, t = _lane16(w[i], dmm[i], x16, np.int16(srl16(hr[i], sh16)), s16, m16, lo16, hi16, mk16, sat)
            zc = np.int16(zc + (d == 0))
            oc = np.int16(oc + (t != tc))
            w[i] = narrow16(tc, w)
    else:
        for i in range(n):
            tc, d, t = _lane16(w[i], dmm[i], x16, np.int16(0), s16, m16, lo16, hi16, mk16, sat)
            zc = np.int16(zc + (d == 0))
            oc = np.int16(oc + (t != tc))
            w[i] = narrow16(tc, w)
    return zc, oc


@numba.njit(cache=True)
def update_rows_xs16(W, x, nz, nnz, dm, s, omode, width, signed, ns, cw):
    """update_rows_xs32 in int16 lanes (P[k, FAST16_W]): the generators step in their own 32-bit pass, four rows at a
    time (generator i's draws in row order, §9a), keeping the top halves; the rows are then updated in int16 lanes
    (update_rows16's arithmetic).  Same assignments, draws and counters."""
    n_out = W.shape[1]
    lo, hi, mask = word_range(width, signed)
    sp, mul = split_shift(s)  # s <= 0: the exact increment u << -s (the draw is still taken)
    dmm = np.empty(n_out, dtype=np.int16)
    dz = 0
    for i in range(n_out):
        dmm[i] = np.int16(dm[i] * mul)
        dz += dm[i] == 0
    use_draws = sp > 0
    sh = 16 - sp
    hh = np.empty((4, n_out), dtype=np.uint16)
    zc = 0
    oc = 0
    t = 0
    while t < nnz:
        r = min(4, nnz - t)
        _xs_draws16(ns, hh, r)
        for q in range(r):
            j = nz[t + q]
            if omode == OV_SAT:
                z, o = _row_h16(W[j], dmm, x[j], hh[q], use_draws, sh, sp, lo, hi, mask, True)
            else:
                z, o = _row_h16(W[j], dmm, x[j], hh[q], use_draws, sh, sp, lo, hi, mask, False)
            zc += z
            oc += o
        t += r
    cw[0] += oc
    cw[1] += zc - nnz * dz


@numba.njit(cache=True)
def update_bias_xs(b, dm, s, rmode, omode, width, signed, ns, cb):
    """_update_bias_fast under rng: neuron: the STOCH draw of b[i] is the next of generator ns[i]."""
    lo, hi, _ = word_range(width, signed)
    for i in range(b.shape[0]):
        rnd = np.int64(0)
        if rmode == RM_STOCH:
            d = xorshift32(ns[i])
            ns[i] = d
            rnd = np.int64(d)
        u = dm[i]
        dl = _fast_delta(u, s, rmode, rnd)
        if dl == 0 and u != 0:
            cb[1] += 1
        v = b[i] + dl
        if v > hi or v < lo:
            cb[0] += 1
            v = _sat_or_wrap(v, lo, hi, width, signed, omode)
        b[i] = v


@numba.njit(cache=True)
def layer_update(P, k, W, b, x, nz, nnz, dm, U, Ub, batch_shift, rnd_state, J3, cnt, dbuf, dmeta, ns):
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
    if P[k, RNG_N] != 0:  # rng: neuron (docs/arithmetic.md §9a): ns[i] is column i's generator
        fast32 = not batch and P[k, FAST_W] != 0 and P[k, FAST32_W] != 0
        if fast32 and P[k, FAST16_W] != 0 and rw == RM_STOCH and n_out >= SHORT_ROW:
            update_rows_xs16(W, x, nz, nnz, dm, s, ow, ww, swg, ns, cnt[k, T_WEIGHT])
        elif fast32 and rw == RM_STOCH:
            update_rows_xs32(W, x, nz, nnz, dm, s, ow, ww, swg, ns, cnt[k, T_WEIGHT])
        elif fast32 and P[k, FAST16_W] != 0:  # TRN / RND weights draw nothing
            update_rows16(W, x, nz, nnz, dm, s, rw, ow, ww, swg, dbuf, dmeta, cnt[k, T_WEIGHT])
        elif fast32:
            update_rows32(W, x, nz, nnz, dm, s, rw, ow, ww, swg, dbuf, dmeta, cnt[k, T_WEIGHT])
        else:
            for t in range(nnz):
                j = nz[t]
                for i in range(n_out):
                    u = U[j, i] if batch else dm[i] * x[j]
                    W[j, i] = _apply_one(P, k, W[j, i], u, ufrac, shift, ww, rw, ow, fw, swg, rnd_state, ns, i, cnt,
                                         T_WEIGHT)
        if not batch and P[k, FAST_B] != 0:
            update_bias_xs(b, dm, fe + shift - fb, rb, ob, wb, sb, ns, cnt[k, T_BIAS])
        else:
            for i in range(n_out):
                u = Ub[i] if batch else dm[i]
                b[i] = _apply_one(P, k, b[i], u, fe, shift, wb, rb, ob, fb, sb, rnd_state, ns, i, cnt, T_BIAS)
        return
    if not batch and P[k, FAST_W] != 0 and P[k, FAST32_W] != 0:
        stoch_b = P[k, FAST_B] != 0 and rb == RM_STOCH
        streamed = rw == RM_STOCH or stoch_b
        # int16 lanes, their draws from the top-halves stream, when every streamed addend has at most 16 bits
        hi16 = P[k, FAST16_W] != 0 and (not stoch_b or fe + shift - fb <= 16)
        d0, m0 = dbuf, dmeta
        if streamed and hi16:
            stream16_open(d0, m0, rnd_state[k])
        elif streamed:
            stream_open(d0, m0, rnd_state[k])
        if n_out < SHORT_ROW and hi16:
            update_short16(W, x, nz, nnz, dm, s, rw, ow, ww, swg, d0, m0, P[k, SHORT_R], cnt[k, T_WEIGHT])
        elif n_out < SHORT_ROW:
            update_short32(W, x, nz, nnz, dm, s, rw, ow, ww, swg, d0, m0, P[k, SHORT_R], cnt[k, T_WEIGHT])
        elif hi16:
            update_rows16(W, x, nz, nnz, dm, s, rw, ow, ww, swg, d0, m0, cnt[k, T_WEIGHT])
        else:
            update_rows32(W, x, nz, nnz, dm, s, rw, ow, ww, swg, d0, m0, cnt[k, T_WEIGHT])
        if P[k, FAST_B] != 0 and hi16:
            update_bias_stream(b, dm, fe + shift - fb, rb, ob, wb, sb, hi16_window(d0), m0, cnt[k, T_BIAS])
        elif P[k, FAST_B] != 0:
            update_bias_stream(b, dm, fe + shift - fb, rb, ob, wb, sb, d0, m0, cnt[k, T_BIAS])
        if streamed and hi16:
            rnd_state[k] = stream16_close(m0)
        elif streamed:
            rnd_state[k] = stream_close(d0, m0)
        if P[k, FAST_B] != 0:
            return
    elif not batch and P[k, FAST_W] != 0:
        _update_rows_fast(W, x, nz, nnz, dm, s, rw, ow, ww, swg, rnd_state, k, J3[0], cnt[k, T_WEIGHT])
    else:
        for t in range(nnz):
            j = nz[t]
            for i in range(n_out):
                u = U[j, i] if batch else dm[i] * x[j]
                W[j, i] = _apply_one(P, k, W[j, i], u, ufrac, shift, ww, rw, ow, fw, swg, rnd_state, ns, i, cnt,
                                     T_WEIGHT)
    if not batch and P[k, FAST_B] != 0:
        _update_bias_fast(b, dm, fe + shift - fb, rb, ob, wb, sb, rnd_state, k, cnt[k, T_BIAS])
        return
    for i in range(n_out):
        u = Ub[i] if batch else dm[i]
        b[i] = _apply_one(P, k, b[i], u, fe, shift, wb, rb, ob, fb, sb, rnd_state, ns, i, cnt, T_BIAS)


# =============================================================================================================
# one sample / a run of samples


@numba.njit(cache=True, inline="always")
def argmax_first(z):
    """Index of the largest entry, the first on ties: the prediction every back end makes."""
    best = 0
    for c in range(1, z.shape[0]):
        if z[c] > z[best]:
            best = c
    return best


@numba.njit(cache=True)
def train_samples(X, labels, order, start, stop, steps, P, Ws, bs, Bs, fbst, tables, acts, zs, gs, ds, ps, bufs,
                  nzs, accs, Us, Ubs, touched, rnd_state, Js, cnt, online, batch_size, batch_shift, in_batch,
                  dbufs, dmetas, Ns):
    """Train on samples order[start:stop] (online, or minibatch of ``batch_size``; ``in_batch[0]`` carries the
    number of samples accumulated so far across calls; dbufs / dmetas: each layer's buffered draw streams; Ns: each
    layer's per-neuron generator states under rng: neuron).
    Each sample runs the lowered schedule ``steps`` ((op, layer) rows, ``program.schedule_array``), the one
    per-sample program the HLS kernel and the RTL also follow. Returns the number of samples whose prediction
    (argmax of the output pre-activation, before the update) was right."""
    K = P.shape[0]
    ko = K - 1
    nnzs = np.zeros(K, dtype=np.int64)
    correct = 0
    for n in range(start, stop):
        idx = order[n]
        label = labels[idx]
        x0 = acts[0]
        xr = X[idx]
        for j in range(x0.shape[0]):
            x0[j] = xr[j]
        for s in range(steps.shape[0]):
            op = steps[s, 0]
            k = steps[s, 1]
            if op == OP_FORWARD:
                nnzs[k] = nonzeros(acts[k], nzs[k])
                layer_preact(P, k, Ws[k], bs[k], acts[k], nzs[k], nnzs[k], accs[k], zs[k], cnt)
                layer_activate(P, k, zs[k], tables[k], acts[k + 1], gs[k], cnt)
            elif op == OP_INJECT_DRTP:
                # DRTP's signal needs only the label: the layer learns right after its forward pass
                hidden_delta(P, k, label, Bs[k], fbst[k], ds[ko], 0, gs[k], ds[k], ps[k], bufs[k],
                             Ws[k], Bs[k], ds[k], 0, PROP_W, cnt)
            elif op == OP_PREDICT:
                if argmax_first(zs[ko]) == label:
                    correct += 1
            elif op == OP_OUTPUT_ERROR:
                if P[k, LOSS] == LOSS_BCE:
                    output_error(P, k, acts[k + 1], label, ds[k], cnt)
                elif P[k, LOSS] == LOSS_CE:
                    output_error_ce(P, k, acts[k + 1], label, tables[k], ds[k], cnt)
                else:
                    output_error_mse(P, k, acts[k + 1], gs[k], label, ds[k], cnt)
            elif op == OP_HIDDEN_SIGNAL:
                prop = P[k + 1, PROP_B]
                # the product M d_up has the fractional bits of M (weights, or the feedback) plus the error's
                f_up = P[k + 1, F_E] + (P[k + 1, F_FB] if prop != PROP_W else P[k + 1, F_W])
                hidden_delta(P, k, label, Bs[k], fbst[k], ds[ko], P[ko, F_E], gs[k], ds[k], ps[k], bufs[k],
                             Ws[k + 1], Bs[k + 1], ds[k + 1], f_up, prop, cnt)
            elif op == OP_FEEDBACK:
                feedback_learn(P, k, label, Bs[k], acts[k], acts[k + 1], ds[k], ds[ko], cnt)
            elif op == OP_UPDATE:
                # layer k's input (acts[k]) is unchanged since its forward pass: its non-zeros still hold
                _accumulate_or_update(P, k, Ws[k], bs[k], acts[k], nzs[k], nnzs[k], ds[k], Us[k], Ubs[k],
                                      touched[k], online, batch_shift, rnd_state, Js[k], cnt, dbufs[k], dmetas[k],
                                      Ns[k])
        if not online:
            in_batch[0] += 1
            if in_batch[0] == batch_size:
                apply_batch(P, Ws, bs, Us, Ubs, touched, nzs, batch_shift, rnd_state, Js, cnt, Ns)
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
                          dbuf, dmeta, ns):
    n_out = P[k, N_OUT]
    dm = np.empty(n_out, dtype=np.int64)
    _scaled_delta(P, k, d, dm)
    if online:
        layer_update(P, k, W, b, x, nz, nnz, dm, np.empty((0, 0), dtype=np.int64), np.empty(0, dtype=np.int64),
                     0, rnd_state, J, cnt, dbuf, dmeta, ns)
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
def apply_batch(P, Ws, bs, Us, Ubs, touched, nzs, batch_shift, rnd_state, Js, cnt, Ns):
    K = P.shape[0]
    no_buf = np.zeros(0, dtype=np.uint32)  # batch updates draw sequentially (no buffered stream)
    no_meta = np.zeros(5, dtype=np.int64)
    for k in range(K):
        r = P[k, RULE]
        if r == R_SHALLOW:
            continue
        nnz = nonzeros(touched[k], nzs[k])
        layer_update(P, k, Ws[k], bs[k], touched[k], nzs[k], nnz, np.empty(0, dtype=np.int64), Us[k], Ubs[k],
                     batch_shift, rnd_state, Js[k], cnt, no_buf, no_meta, Ns[k])
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
            layer_preact(P, k, Ws[k], bs[k], x, nz, nnz, acc, z, cnt)
            if k == K - 1:
                for i in range(n_out):
                    out_z[n, i] = z[i]
            else:
                y = np.empty(n_out, dtype=np.int64)
                g = np.empty(n_out, dtype=np.int64)
                layer_activate(P, k, z, tables[k], y, g, cnt)
                x = y
