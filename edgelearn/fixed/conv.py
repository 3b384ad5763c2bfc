"""The frozen convolutional front end of the fixed-point engine and of its float twin.

A network the engine runs is an optional front end of ``conv2d`` / ``maxpool`` / ``avgpool`` layers, ``flatten``,
then the learning linear layers.  The front end is frozen in this milestone (rule ``shallow``: random kernels from
the seed, or loaded), so a sample's front-end output is a pure function of the sample: the engine computes it and
feeds the linear layers with it as their input.  The arithmetic is docs/arithmetic.md §15: a conv output is the dot
product of its (zero-padded) input patch with the kernel, accumulated per §7 in the patch order (c, ky, kx); max
pooling compares raw integers; average pooling sums exactly, then divides by the window size with the tensor
format's rounding (a shift for power-of-two windows).

Layouts: a conv's weights are ``(C_out, C_in, k, k)`` (torch's), every tensor is C-order ``(C, H, W)`` flattened.
"""
from __future__ import annotations

import math

import numba
import numpy as np

from ..errors import ConfigError, FormatError
from ..program import CONV_FEEDBACK_STREAM, CONV_ROUNDING_STREAM, SUPPORT, act_code, rule_code
from .activations import table_deriv, table_saturation
from .arith import accumulate_counted, convert_counted, update_weight_counted
from .engine_kernels import (ACT_HARDTANH, ACT_RELU, ACT_SIGMOID, ACT_TANH, NTENSORS, R_DRTP, R_SDFA, T_ACCUM, T_ACT,
                             T_BIAS, T_DERIV, T_ERROR, T_WEIGHT, piecewise_act, table_lookup)
from .formats import OVERFLOW, ROUNDING
from .lfsr import derive_seed, lfsr_draw32, lfsr_matrix, seed_state
from .xorshift import neuron_seeds, xorshift32

#: layer types of the front end (before flatten): what program.SUPPORT lists for the engine beyond an MLP's
FRONT_TYPES = tuple(t for t in SUPPORT["engine"].layer_types if t not in ("linear", "flatten"))
_RM = ROUNDING
_TRN, _TRN_ZERO, _RND, _RND_ZERO, _RND_INF, _RND_MIN_INF, _RND_CONV, _STOCH = (
    _RM["TRN"], _RM["TRN_ZERO"], _RM["RND"], _RM["RND_ZERO"], _RM["RND_INF"], _RM["RND_MIN_INF"], _RM["RND_CONV"],
    _RM["STOCH"])


def split_network(spec) -> tuple[list, list]:
    """(front-end layers, linear layers) of a network the engine runs; ConfigError for any other network."""
    layers = spec.layers
    i = 0
    while i < len(layers) and layers[i].type in FRONT_TYPES:
        i += 1
    front, rest = layers[:i], layers[i:]
    bad = sorted({layer.type for layer in rest if layer.type not in ("linear", "flatten")})
    if bad or not rest or rest[-1].type != "linear":
        raise ConfigError(f"{spec.name}: the fixed-point engine runs MLPs (flatten + linear layers), optionally "
                          f"behind a front end of {'/'.join(FRONT_TYPES)} layers; this network has "
                          f"{', '.join(bad) or 'a non-linear last layer'}"
                          f"{' after its front end' if front and bad else ''}")
    linear = [layer for layer in rest if layer.type == "linear"]
    if front and len(linear[0].in_shape) != 1:
        raise ConfigError(f"{spec.name}: a flatten layer must come between the front end and {linear[0].name}")
    return front, linear


def engine_sizes(spec) -> list[int]:
    """[n_in, n_1, ..., n_out] of the linear layers (n_in: the flattened front-end output, or the input)."""
    _, linear = split_network(spec)
    return [int(math.prod(linear[0].in_shape))] + [int(layer.params["out"]) for layer in linear]


def geometry(fp) -> np.ndarray:
    """A front-end layer's geometry as the kernels take it: C_in, H, W, C_out, k, stride, padding, H_out, W_out
    (a pool: C_out = C_in, no padding)."""
    c, h, w = fp.in_shape
    co, ho, wo = fp.out_shape
    return np.array([c, h, w, co, fp.kernel, fp.stride, fp.padding, ho, wo], dtype=np.int64)


def fmt_cols(f) -> list[int]:
    """A format as the kernels take it: width, fractional bits, signedness, rounding and overflow codes."""
    return [f.width, f.frac, int(f.signed), ROUNDING[f.rounding], OVERFLOW[f.overflow]]


# ---------------------------------------------------------------------------------------------------------------
# integer kernels (one call per layer over a block of samples; counters to cnt[T_*, 0 overflow / 1 zero])


@numba.njit(cache=True, inline="always")
def _out_range(k, s, pad, n_in, n_out):
    """Outputs o in [lo, hi) whose input o*s + k - pad lies in [0, n_in) (the others read the zero padding)."""
    lo = 0
    if pad - k > 0:
        lo = (pad - k + s - 1) // s
    hi = (n_in - 1 - k + pad) // s + 1 if n_in - 1 - k + pad >= 0 else 0
    return lo, min(hi, n_out)


@numba.njit(cache=True, inline="always")
def _window(x, base, Wd, K, is_max):
    """Max or sum of one K x K pooling window starting at flat index ``base`` (rows of width ``Wd``), in ``x``'s
    own type: the raw integers of the engine or the twin's floats, one loop for both."""
    m = x[base]
    s = x[base] - x[base]
    for ky in range(K):
        for kx in range(K):
            v = x[base + ky * Wd + kx]
            if v > m:
                m = v
            s += v
    return m if is_max else s


@numba.njit(cache=True)
def _activate(z, n, act, fa, fy_row, table, tb, rb, y, c_act):
    """y = f(z) in the output format (as a linear layer's forward: docs/arithmetic.md §11), no derivative."""
    wy, fy, sy, ry, oy = fy_row[0], fy_row[1], fy_row[2] != 0, fy_row[3], fy_row[4]
    if act == ACT_TANH or act == ACT_SIGMOID:
        table_lookup(z, n, table, fa, tb, rb, y)
        return
    for i in range(n):
        y[i] = piecewise_act(act, z[i], fa, wy, fy, sy, ry, oy, c_act)


@numba.njit(cache=True)
def conv_forward(X, Wt, b, geo, fx, fw, fb, fa_row, exact, fy_row, act, table, tb, rb, Y, cnt, Z):
    """Y[n] = act(conv(X[n])) for every sample row of X (raw, F_X = fx), Y in the act format (fy_row: W, F, S,
    R, O codes); fa_row: the accumulator's.  ``exact``: the accumulator holds every sum exactly (F_A >= F_W + F_X,
    no overflow possible, proved by the engine), so the sum is taken in any order in int64; else every
    ``acc += w*x`` is an assignment (arith.accumulate_counted) in the order (c, ky, kx) of §15.  Z: the
    pre-activations of the last sample (what a learning layer's derivative reads), or a (0,) array."""
    C, H, Wd, Co, K, S, PAD, Ho, Wo = geo[0], geo[1], geo[2], geo[3], geo[4], geo[5], geo[6], geo[7], geo[8]
    wa, fa, sa, ra, oa = fa_row[0], fa_row[1], fa_row[2] != 0, fa_row[3], fa_row[4]
    fp = fw + fx
    npos = Ho * Wo
    z = np.zeros(Co * npos, dtype=np.int64)
    bias = np.zeros(Co, dtype=np.int64)
    c_acc = cnt[T_ACCUM]
    c_act = cnt[T_ACT]
    for n in range(X.shape[0]):
        x = X[n]
        # acc = b: one assignment per output; the same bias (and its events) at every position of a channel
        for o in range(Co):
            ev = np.zeros(2, dtype=np.int64)
            bias[o] = convert_counted(b[o], fb, wa, fa, sa, ra, oa, 0, ev)
            c_acc[0] += ev[0] * npos
            c_acc[1] += ev[1] * npos
        if exact:
            lsh = fa - fp
            for o in range(Co):
                base = o * npos
                for t in range(npos):
                    z[base + t] = 0
                for c in range(C):
                    for ky in range(K):
                        ylo, yhi = _out_range(ky, S, PAD, H, Ho)
                        for kx in range(K):
                            w = np.int64(Wt[o, c, ky, kx])
                            if w == 0:
                                continue
                            xlo, xhi = _out_range(kx, S, PAD, Wd, Wo)
                            for oy in range(ylo, yhi):
                                xrow = (c * H + oy * S + ky - PAD) * Wd + kx - PAD
                                orow = base + oy * Wo
                                if S == 1:  # contiguous rows: a vector loop
                                    for ox in range(xlo, xhi):
                                        z[orow + ox] += w * x[xrow + ox]
                                else:
                                    for ox in range(xlo, xhi):
                                        z[orow + ox] += w * x[xrow + ox * S]
                for t in range(npos):
                    z[base + t] = bias[o] + (z[base + t] << lsh)
        else:
            for o in range(Co):
                for oy in range(Ho):
                    for ox in range(Wo):
                        a = bias[o]
                        for c in range(C):
                            for ky in range(K):
                                iy = oy * S + ky - PAD
                                if iy < 0 or iy >= H:
                                    continue  # a padding term: w * 0 adds nothing (§15)
                                for kx in range(K):
                                    ix = ox * S + kx - PAD
                                    if ix < 0 or ix >= Wd:
                                        continue
                                    a = accumulate_counted(a, np.int64(Wt[o, c, ky, kx]) * x[(c * H + iy) * Wd + ix],
                                                           fp, wa, fa, sa, ra, oa, 0, c_acc)
                        z[o * npos + oy * Wo + ox] = a
        _activate(z, Co * npos, act, fa, fy_row, table, tb, rb, Y[n], c_act)
        if Z.shape[0] == z.shape[0]:
            Z[:] = z


@numba.njit(cache=True)
def round_div(v, d, mode):
    """v / d rounded to an integer with rounding ``mode`` (d >= 1): the §3 table with 2**s replaced by d
    (quotient floor(v/d), remainder compared with d/2); equal to round_shift for d = 2**s."""
    q = v // d
    rem = v - q * d
    neg = v < 0
    if mode == _TRN or rem == 0:
        return q
    if mode == _TRN_ZERO:
        return q + 1 if neg else q
    two = 2 * rem
    if mode == _RND:
        return q + 1 if two >= d else q
    if mode == _RND_ZERO:
        return q + 1 if (two > d or (two == d and neg)) else q
    if mode == _RND_INF:
        return q + 1 if (two > d or (two == d and not neg)) else q
    if mode == _RND_MIN_INF:
        return q + 1 if two > d else q
    if mode == _RND_CONV:
        return q + 1 if (two > d or (two == d and (q & 1) != 0)) else q
    return q  # STOCH is refused for activation formats (precision.py)


@numba.njit(cache=True)
def pool_forward(X, geo, is_max, rmode, Y, cnt):
    """Max pooling (exact: the largest raw integer of the window) or average pooling (exact sum, then
    round_div by k*k with the tensor's rounding; the mean of in-range values cannot overflow)."""
    C, H, Wd, K, S, Ho, Wo = geo[0], geo[1], geo[2], geo[4], geo[5], geo[7], geo[8]
    kk = K * K
    c_act = cnt[T_ACT]
    for n in range(X.shape[0]):
        x = X[n]
        y = Y[n]
        for c in range(C):
            for oy in range(Ho):
                for ox in range(Wo):
                    v = _window(x, (c * H + oy * S) * Wd + ox * S, Wd, K, is_max)
                    if is_max:
                        y[(c * Ho + oy) * Wo + ox] = v
                    else:
                        s = v
                        r = round_div(s, kk, rmode)
                        if s != 0 and r == 0:
                            c_act[1] += 1
                        y[(c * Ho + oy) * Wo + ox] = r


# ---------------------------------------------------------------------------------------------------------------
# float64 kernels (the twin): the same loops with every quantization removed


@numba.njit(cache=True)
def conv_forward_float(X, Wt, b, geo, act, Y, Z):
    C, H, Wd, Co, K, S, PAD, Ho, Wo = geo[0], geo[1], geo[2], geo[3], geo[4], geo[5], geo[6], geo[7], geo[8]
    npos = Ho * Wo
    for n in range(X.shape[0]):
        x = X[n]
        y = Y[n]
        for o in range(Co):
            base = o * npos
            for t in range(npos):
                y[base + t] = b[o]
            for c in range(C):
                for ky in range(K):
                    ylo, yhi = _out_range(ky, S, PAD, H, Ho)
                    for kx in range(K):
                        w = Wt[o, c, ky, kx]
                        xlo, xhi = _out_range(kx, S, PAD, Wd, Wo)
                        for oy in range(ylo, yhi):
                            xrow = (c * H + oy * S + ky - PAD) * Wd + kx - PAD
                            orow = base + oy * Wo
                            for ox in range(xlo, xhi):
                                y[orow + ox] += w * x[xrow + ox * S]
        if Z.shape[0] == Co * npos:
            Z[:] = y[:Co * npos]
        for i in range(Co * npos):
            v = y[i]
            if act == ACT_TANH:
                y[i] = np.tanh(v)
            elif act == ACT_SIGMOID:
                y[i] = 1.0 / (1.0 + np.exp(-v))
            elif act == ACT_HARDTANH:
                y[i] = min(1.0, max(-1.0, v))
            elif act == ACT_RELU:
                y[i] = v if v > 0 else 0.0


@numba.njit(cache=True)
def pool_forward_float(X, geo, is_max, Y):
    C, H, Wd, K, S, Ho, Wo = geo[0], geo[1], geo[2], geo[4], geo[5], geo[7], geo[8]
    for n in range(X.shape[0]):
        x = X[n]
        y = Y[n]
        for c in range(C):
            for oy in range(Ho):
                for ox in range(Wo):
                    m = _window(x, (c * H + oy * S) * Wd + ox * S, Wd, K, is_max)
                    if not is_max:
                        m /= K * K
                    y[(c * Ho + oy) * Wo + ox] = m


# ---------------------------------------------------------------------------------------------------------------
# learning conv layers (docs/arithmetic.md §15a): one sample, after its linear layers' step


@numba.njit(cache=True)
def _signal(rule, label, B, e_out, p):
    """p[u] = B[label, u] (drtp), sum_c B[c, u] e_c (dfa) or sum_c B[c, u] sign(e_c) (sdfa), c ascending, exact."""
    n = p.shape[0]
    if rule == R_DRTP:
        for u in range(n):
            p[u] = B[label, u]
        return
    for u in range(n):
        p[u] = 0
    for c in range(B.shape[0]):
        ec = e_out[c]
        if ec == 0:
            continue
        if rule == R_SDFA:
            sg = 1 if ec > 0 else -1
            for u in range(n):
                p[u] += B[c, u] * sg
        else:
            for u in range(n):
                p[u] += B[c, u] * ec


@numba.njit(cache=True)
def _route(p, y, geo, pgeo, pr):
    """pr = the point's signal p on the conv's outputs: through a max pool (pgeo[0] > 0: its geometry) to the
    argmax of each window -- the first in window order (ky, kx) on ties, as pool_forward's strict ``>`` -- summed
    where windows overlap; without a pool p itself."""
    if pgeo[0] == 0:
        pr[:] = p
        return
    pr[:] = 0
    C, H, Wd, K, S, Ho, Wo = pgeo[0], pgeo[1], pgeo[2], pgeo[4], pgeo[5], pgeo[7], pgeo[8]
    u = 0
    for c in range(C):
        for oy in range(Ho):
            for ox in range(Wo):
                if p[u] != 0:
                    base = (c * H + oy * S) * Wd + ox * S
                    best = base
                    for ky in range(K):
                        for kx in range(K):
                            i = base + ky * Wd + kx
                            if y[i] > y[best]:
                                best = i
                    pr[best] += p[u]
                u += 1


@numba.njit(cache=True)
def conv_learn(x, W, b, geo, z, y, act, fa, fy, ysat, pgeo, rule, label, B, e_out, fp, rows, fx, lr, rng_n, rnd_state,
               ns, cnt, p, pr, dl):
    """One online step of a learning conv layer (docs/arithmetic.md §15a), raw: the signal p at the layer's point
    (F = fp), routed to its outputs (pr), delta = pr * f'(z) assigned to the error format where pr != 0, the exact
    kernel and bias increments over the positions with delta != 0, then every kernel weight (C order) and every bias
    assigned with the weight / bias format (one draw each if STOCH: the layer's LFSR rnd_state[0], or output
    channel o's xorshift32 ns[o] under rng: neuron).  rows: the deriv, error, weight, bias formats (fmt_cols);
    ysat: the activation's saturation raw (activations.table_saturation; f' = 0 there)."""
    C, H, Wd, Co, K, S, PAD, Ho, Wo = geo[0], geo[1], geo[2], geo[3], geo[4], geo[5], geo[6], geo[7], geo[8]
    npos = Ho * Wo
    _signal(rule, label, B, e_out, p)
    _route(p, y, geo, pgeo, pr)
    wg, fg, sg, rg, og = rows[0, 0], rows[0, 1], rows[0, 2] != 0, rows[0, 3], rows[0, 4]
    we, fe, se, re_, oe = rows[1, 0], rows[1, 1], rows[1, 2] != 0, rows[1, 3], rows[1, 4]
    table_act = act == ACT_TANH or act == ACT_SIGMOID
    fd = fp + (fg if table_act else 0)
    onea = np.int64(1) << fa if fa >= 0 else np.int64(1)
    for i in range(Co * npos):
        if pr[i] == 0:
            dl[i] = 0  # no signal routed here: delta is exactly 0, nothing computed (event-driven)
            continue
        if table_act:
            g = convert_counted(table_deriv(act == ACT_TANH, y[i], fy, ysat), 2 * fy, wg, fg, sg, rg, og, 0,
                                cnt[T_DERIV])
        elif act == ACT_HARDTANH:
            g = np.int64(1) if -onea < z[i] < onea else np.int64(0)
        elif act == ACT_RELU:
            g = np.int64(1) if z[i] > 0 else np.int64(0)
        else:
            g = np.int64(1)
        dl[i] = convert_counted(pr[i] * g, fd, we, fe, se, re_, oe, 0, cnt[T_ERROR])
    ww, fw, sw, rw, ow = rows[2, 0], rows[2, 1], rows[2, 2] != 0, rows[2, 3], rows[2, 4]
    wb, fb, sb, rb, ob = rows[3, 0], rows[3, 1], rows[3, 2] != 0, rows[3, 3], rows[3, 4]
    U = np.zeros(C * K * K, dtype=np.int64)
    ubs = np.zeros(Co, dtype=np.int64)
    for o in range(Co):
        ub = _increments(x, dl, o, geo, U)
        t = 0
        for c in range(C):
            for ky in range(K):
                for kx in range(K):
                    rnd = np.int64(0)
                    if rw == _STOCH:
                        rnd = _draw(rng_n, rnd_state, ns, o)
                    W[o, c, ky, kx] = update_weight_counted(W[o, c, ky, kx], U[t], fe + fx, lr, ww, fw, sw, rw, ow,
                                                            rnd, cnt[T_WEIGHT])
                    t += 1
        ubs[o] = ub
    # the biases after every kernel weight (only the draw order sees it: the channels' sums are independent)
    for o in range(Co):
        rnd = np.int64(0)
        if rb == _STOCH:
            rnd = _draw(rng_n, rnd_state, ns, o)
        b[o] = update_weight_counted(b[o], ubs[o], fe, lr, wb, fb, sb, rb, ob, rnd, cnt[T_BIAS])


@numba.njit(cache=True)
def _increments(x, dl, o, geo, U):
    """Output channel o's kernel increments U[(c*K + ky)*K + kx] = sum over its positions with dl != 0 of
    dl * x (the zero-padded patch; exact in int64, the engine's, or float64, the twin's) and returns its bias
    increment, the sum of those dl."""
    C, H, Wd, K, S, PAD, Ho, Wo = geo[0], geo[1], geo[2], geo[4], geo[5], geo[6], geo[7], geo[8]
    npos = Ho * Wo
    U[:] = 0
    ub = U[0] * 0
    for oy in range(Ho):
        for ox in range(Wo):
            d = dl[o * npos + oy * Wo + ox]
            if d == 0:
                continue
            ub += d
            for c in range(C):
                for ky in range(K):
                    iy = oy * S + ky - PAD
                    if iy < 0 or iy >= H:
                        continue
                    for kx in range(K):
                        ix = ox * S + kx - PAD
                        if 0 <= ix < Wd:
                            U[(c * K + ky) * K + kx] += d * x[(c * H + iy) * Wd + ix]
    return ub


@numba.njit(cache=True, inline="always")
def _draw(rng_n, rnd_state, ns, o):
    """The next 32-bit draw of output channel o: the layer's LFSR (rng: layer) or channel o's xorshift32."""
    if rng_n:
        d = xorshift32(ns[o])
        ns[o] = d
        return np.int64(d)
    rnd_state[0], d = lfsr_draw32(rnd_state[0])
    return d


@numba.njit(cache=True)
def conv_learn_float(x, W, b, geo, z, y, act, pgeo, rule, label, B, e_out, lr, p, pr):
    """conv_learn in float64 (the twin): exact derivative from the exact activation, no rounding anywhere."""
    C, H, Wd, Co, K, S, PAD, Ho, Wo = geo[0], geo[1], geo[2], geo[3], geo[4], geo[5], geo[6], geo[7], geo[8]
    npos = Ho * Wo
    _signal(rule, label, B, e_out, p)
    _route(p, y, geo, pgeo, pr)
    for i in range(Co * npos):
        if pr[i] == 0.0:
            continue
        if act == ACT_TANH or act == ACT_SIGMOID:
            g = 1.0 - y[i] * y[i] if act == ACT_TANH else y[i] * (1.0 - y[i])
        elif act == ACT_HARDTANH:
            g = 1.0 if -1.0 < z[i] < 1.0 else 0.0
        elif act == ACT_RELU:
            g = 1.0 if z[i] > 0 else 0.0
        else:
            g = 1.0
        pr[i] *= g
    U = np.zeros(C * K * K)
    for o in range(Co):
        ub = _increments(x, pr, o, geo, U)
        W[o] += lr * U.reshape(C, K, K)
        b[o] += lr * ub


# ---------------------------------------------------------------------------------------------------------------


def point_pool(layers, j: int) -> int | None:
    """Index of the max pool that ends learning conv ``j``'s segment (its signal's injection point is that pool's
    output, as the float reference's), None when the conv's own output is the point; ConfigError for a point the
    engine does not route a signal through (an average pool, or two pools in a row)."""
    fp = layers[j]
    if j + 1 >= len(layers) or layers[j + 1].type == "conv2d":
        return None
    nxt = layers[j + 1]
    if nxt.type != "maxpool" or (j + 2 < len(layers) and layers[j + 2].type != "conv2d"):
        raise ConfigError(f"layer {fp.name}: a learning conv layer (rule {fp.rule}) must be followed by one max pool "
                          f"or none before the next conv / flatten in the fixed-point engine (the signal's routing "
                          f"through {nxt.type} is not defined, docs/arithmetic.md §15a)")
    return j + 1


def _mag(f) -> int:
    return max(-f.min_raw, f.max_raw)


def check_conv_learning(layers, j: int, n_classes: int, out_error) -> None:
    """Refuse (one line) a learning conv layer the engine cannot run bit-exactly in int64: a missing signal format,
    a point it cannot route to (point_pool), or formats whose exact intermediates (§15a: the signal, signal x
    derivative, the kernel increment summed over every output position) could pass 2**63.  (An update format named
    for a conv layer is refused where the formats are resolved, precision._front_layer.)"""
    fp = layers[j]
    where = f"layer {fp.name}"
    for t in ("deriv", "error", "feedback"):
        if getattr(fp, t) is None:
            raise ConfigError(f"{where}: precision.{t} is not set (a learning conv layer needs it)")
    q = point_pool(layers, j)
    co, ho, wo = fp.out_shape
    # |p| at the point, then summed over the windows that overlap one output (ceil(k/s)**2 with a pool)
    p = _mag(fp.feedback) * (1 if fp.rule == "drtp" else n_classes * (_mag(out_error) if fp.rule == "dfa" else 1))
    if q is not None:
        p *= math.ceil(layers[q].kernel / layers[q].stride) ** 2
    g = _mag(fp.deriv) if fp.act_name in ("tanh", "sigmoid") else 1
    u = ho * wo * _mag(fp.error) * _mag(fp.input)
    for what, v in (("the routed signal times the derivative", p * g), ("the kernel increment", u)):
        if v >= 1 << 63:
            raise FormatError(f"{where}: {what} can reach {v.bit_length()} bits, past the engine's int64 "
                              f"(docs/arithmetic.md §15a); use narrower error / deriv / feedback / input formats")


class FrontEnd:
    """The engine's front end: per layer its resolved formats (``precision.FrontPrecision``), raw weights (convs)
    and activation table; :meth:`forward` maps raw network inputs to the raw input of the first linear layer.
    Conv layers with a learning rule (``fp.learns``) keep their sample's input, pre-activation and output
    (:meth:`forward` with ``keep``) and learn from them in :meth:`learn` (docs/arithmetic.md §15a)."""

    def __init__(self, layers, tables, weights, biases, table_bits: int, range_bits: int):
        self.layers = list(layers)
        self.tables = tables
        self.W = weights      # per layer: (C_out, C_in, k, k) int64 for a conv, None for a pool
        self.b = biases
        self.table_bits, self.range_bits = table_bits, range_bits
        self.geo = [geometry(fp) for fp in self.layers]
        self.exact = [False] * len(self.layers)
        self.cnt = np.zeros((len(self.layers), NTENSORS, 2), dtype=np.int64)
        #: per learning layer j: its feedback B (raw, classes x point units), STOCH states, point pool geometry
        self.B: dict[int, np.ndarray] = {}
        self.rnd_state: dict[int, np.ndarray] = {}
        self.neuron_state: dict[int, np.ndarray] = {}
        self.rng_neuron = False
        self._kept: dict[int, tuple] = {}

    def init_learning(self, seed: int, n_classes: int, rng_neuron: bool) -> None:
        """Feedback and STOCH generators of the learning conv layers (docs/arithmetic.md §15a): B (classes x point
        units) from the layer's own feedback stream as a linear layer's, LFSR draws of the feedback width; the
        layer's rounding LFSR and, under rng: neuron, one xorshift32 per output channel started from it."""
        self.rng_neuron = bool(rng_neuron)
        for j in self.learning:
            fp = self.layers[j]
            q = point_pool(self.layers, j)
            n_point = int(math.prod(self.layers[q].out_shape if q is not None else fp.out_shape))
            self.B[j] = np.ascontiguousarray(lfsr_matrix(derive_seed(seed, CONV_FEEDBACK_STREAM + j), n_classes,
                                                         n_point, fp.feedback.width), dtype=np.int64)
            state = seed_state(derive_seed(seed, CONV_ROUNDING_STREAM + j))
            self.rnd_state[j] = np.array([state], dtype=np.int64)
            self.neuron_state[j] = neuron_seeds(state, fp.out_shape[0])

    @property
    def learning(self) -> list[int]:
        """Indices of the conv layers that learn."""
        return [j for j, fp in enumerate(self.layers) if fp.learns]

    @property
    def n_in(self) -> int:
        return int(math.prod(self.layers[0].in_shape))

    @property
    def n_out(self) -> int:
        return int(math.prod(self.layers[-1].out_shape))

    def pool_geo(self, j: int) -> np.ndarray:
        """The geometry of the max pool after learning conv j (zeros: none)."""
        q = point_pool(self.layers, j)
        return self.geo[q] if q is not None else np.zeros(9, dtype=np.int64)

    def forward(self, X: np.ndarray, count: bool = True, keep: bool = False) -> np.ndarray:
        """Raw inputs (N, n_in) -> raw front-end outputs (N, n_out), int64; events go to ``self.cnt`` when
        ``count`` (once per call, i.e. per sample visit). ``keep`` (one sample): the learning layers keep their
        input, pre-activation and output for :meth:`learn`."""
        v = np.ascontiguousarray(X, dtype=np.int64)
        cnt = self.cnt if count else np.zeros_like(self.cnt)
        for j, fp in enumerate(self.layers):
            out = np.empty((v.shape[0], int(math.prod(fp.out_shape))), dtype=np.int64)
            if fp.type == "conv2d":
                z = np.empty(out.shape[1] if keep and fp.learns else 0, dtype=np.int64)
                conv_forward(v, self.W[j], self.b[j], self.geo[j], fp.input.frac, fp.weight.frac, fp.bias.frac,
                             np.array(fmt_cols(fp.accum), dtype=np.int64), self.exact[j],
                             np.array(fmt_cols(fp.act), dtype=np.int64), int(act_code(fp.act_name)), self.tables[j],
                             self.table_bits, self.range_bits, out, cnt[j], z)
                if z.shape[0]:
                    self._kept[j] = (v[0], z, out[0])
            else:
                pool_forward(v, self.geo[j], fp.type == "maxpool", ROUNDING[fp.act.rounding], out, cnt[j])
            v = out
        return v

    def learn(self, label: int, e_out: np.ndarray, fe_out: int) -> None:
        """One online step of every learning conv layer from the sample :meth:`forward` kept; ``e_out``: the output
        error (raw, ``fe_out`` fractional bits) of the same sample (dfa, sdfa)."""
        for j in self.learning:
            fp = self.layers[j]
            x, z, y = self._kept.pop(j)
            code = int(rule_code(fp.rule))
            fpt = fp.feedback.frac + (fe_out if fp.rule == "dfa" else 0)
            rows = np.array([fmt_cols(f) for f in (fp.deriv, fp.error, fp.weight, fp.bias)], dtype=np.int64)
            B = self.B[j]
            conv_learn(x, self.W[j], self.b[j], self.geo[j], z, y, int(act_code(fp.act_name)), fp.accum.frac,
                       fp.act.frac, table_saturation(fp.act.width, max(fp.act.frac, 0), fp.act.signed),
                       self.pool_geo(j), code, int(label), B, np.asarray(e_out, dtype=np.int64), fpt,
                       rows, fp.input.frac, int(fp.lr_shift), self.rng_neuron, self.rnd_state[j],
                       self.neuron_state[j], self.cnt[j], np.empty(B.shape[1], dtype=np.int64),
                       np.empty(y.shape[0], dtype=np.int64), np.empty(y.shape[0], dtype=np.int64))

    def float_layers(self) -> list[dict]:
        """The layers as the twin runs them: the raw weights as exact floats, the activation by code; a learning
        conv also its rule code, feedback (float), learning rate and point pool."""
        out = []
        for j, fp in enumerate(self.layers):
            lay = {"type": fp.type, "geo": self.geo[j], "out_shape": fp.out_shape}
            if fp.type == "conv2d":
                lay.update(W=fp.weight.to_float(self.W[j]), b=fp.bias.to_float(self.b[j]),
                           act=int(act_code(fp.act_name)))
            if fp.learns:
                lay.update(rule=int(rule_code(fp.rule)), B=fp.feedback.to_float(self.B[j]),
                           lr=2.0 ** -fp.lr_shift, pgeo=self.pool_geo(j))
            out.append(lay)
        return out


def float_forward(layers: list[dict], X: np.ndarray, keep: bool = False) -> np.ndarray:
    """The twin's front end: float64 inputs (N, n_in) -> (N, n_out); ``layers`` as FrontEnd.float_layers(). ``keep``
    (one sample): a learning layer's dict keeps its input, pre-activation and output under "kept"."""
    v = np.ascontiguousarray(X, dtype=np.float64)
    for lay in layers:
        out = np.empty((v.shape[0], int(math.prod(lay["out_shape"]))), dtype=np.float64)
        if lay["type"] == "conv2d":
            z = np.empty(out.shape[1] if keep and "rule" in lay else 0)
            conv_forward_float(v, lay["W"], lay["b"], lay["geo"], lay["act"], out, z)
            if z.shape[0]:
                lay["kept"] = (v[0], z, out[0])
        else:
            pool_forward_float(v, lay["geo"], lay["type"] == "maxpool", out)
        v = out
    return v


def float_learn(layers: list[dict], label: int, e_out: np.ndarray) -> None:
    """The twin's FrontEnd.learn: every learning conv from the sample float_forward kept."""
    for lay in layers:
        if "rule" not in lay:
            continue
        x, z, y = lay.pop("kept")
        conv_learn_float(x, lay["W"], lay["b"], lay["geo"], z, y, lay["act"], lay["pgeo"], lay["rule"], int(label),
                         lay["B"], np.asarray(e_out, dtype=np.float64), lay["lr"], np.empty(lay["B"].shape[1]),
                         np.empty(y.shape[0]))
