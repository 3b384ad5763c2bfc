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

from ..errors import ConfigError
from ..program import SUPPORT, act_code
from .arith import accumulate_counted, convert_counted
from .engine_kernels import (ACT_HARDTANH, ACT_RELU, ACT_SIGMOID, ACT_TANH, NTENSORS, T_ACCUM, T_ACT,
                             table_lookup)
from .formats import OVERFLOW, ROUNDING

#: layer types of the front end (before flatten): what program.SUPPORT lists for the engine beyond an MLP's
FRONT_TYPES = tuple(t for t in SUPPORT["engine"].layer_types if t not in ("linear", "flatten"))
_RM = ROUNDING
_TRN, _TRN_ZERO, _RND, _RND_ZERO, _RND_INF, _RND_MIN_INF, _RND_CONV = (
    _RM["TRN"], _RM["TRN_ZERO"], _RM["RND"], _RM["RND_ZERO"], _RM["RND_INF"], _RM["RND_MIN_INF"], _RM["RND_CONV"])


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


@numba.njit(cache=True)
def _activate(z, n, act, fa, fy_row, table, tb, rb, y, c_act):
    """y = f(z) in the output format (as a linear layer's forward: docs/arithmetic.md §11), no derivative."""
    wy, fy, sy, ry, oy = fy_row[0], fy_row[1], fy_row[2] != 0, fy_row[3], fy_row[4]
    if act == ACT_TANH or act == ACT_SIGMOID:
        table_lookup(z, n, table, fa, tb, rb, y)
        return
    one = np.int64(1) << fa if fa >= 0 else np.int64(1)
    for i in range(n):
        r = z[i]
        if act == ACT_HARDTANH:
            if r >= one:
                y[i] = convert_counted(np.int64(1), 0, wy, fy, sy, ry, oy, 0, c_act)
            elif r <= -one:
                y[i] = convert_counted(np.int64(-1), 0, wy, fy, sy, ry, oy, 0, c_act)
            else:
                y[i] = convert_counted(r, fa, wy, fy, sy, ry, oy, 0, c_act)
        elif act == ACT_RELU:
            y[i] = 0 if r < 0 else convert_counted(r, fa, wy, fy, sy, ry, oy, 0, c_act)
        else:
            y[i] = convert_counted(r, fa, wy, fy, sy, ry, oy, 0, c_act)


@numba.njit(cache=True)
def conv_forward(X, Wt, b, geo, fx, fw, fb, fa_row, exact, fy_row, act, table, tb, rb, Y, cnt):
    """Y[n] = act(conv(X[n])) for every sample row of X (raw, F_X = fx), Y in the act format (fy_row: W, F, S,
    R, O codes); fa_row: the accumulator's.  ``exact``: the accumulator holds every sum exactly (F_A >= F_W + F_X,
    no overflow possible, proved by the engine), so the sum is taken in any order in int64; else every
    ``acc += w*x`` is an assignment (arith.accumulate_counted) in the order (c, ky, kx) of §15."""
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
                    base = (c * H + oy * S) * Wd + ox * S
                    if is_max:
                        m = x[base]
                        for ky in range(K):
                            for kx in range(K):
                                v = x[base + ky * Wd + kx]
                                if v > m:
                                    m = v
                        y[(c * Ho + oy) * Wo + ox] = m
                    else:
                        s = np.int64(0)
                        for ky in range(K):
                            for kx in range(K):
                                s += x[base + ky * Wd + kx]
                        r = round_div(s, kk, rmode)
                        if s != 0 and r == 0:
                            c_act[1] += 1
                        y[(c * Ho + oy) * Wo + ox] = r


# ---------------------------------------------------------------------------------------------------------------
# float64 kernels (the twin): the same loops with every quantization removed


@numba.njit(cache=True)
def conv_forward_float(X, Wt, b, geo, act, Y):
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
                    base = (c * H + oy * S) * Wd + ox * S
                    if is_max:
                        m = x[base]
                        for ky in range(K):
                            for kx in range(K):
                                m = max(m, x[base + ky * Wd + kx])
                    else:
                        m = 0.0
                        for ky in range(K):
                            for kx in range(K):
                                m += x[base + ky * Wd + kx]
                        m /= K * K
                    y[(c * Ho + oy) * Wo + ox] = m


# ---------------------------------------------------------------------------------------------------------------


class FrontEnd:
    """The engine's front end: per layer its resolved formats (``precision.FrontPrecision``), raw weights (convs)
    and activation table; :meth:`forward` maps raw network inputs to the raw input of the first linear layer."""

    def __init__(self, layers, tables, weights, biases, table_bits: int, range_bits: int):
        self.layers = list(layers)
        self.tables = tables
        self.W = weights      # per layer: (C_out, C_in, k, k) int64 for a conv, None for a pool
        self.b = biases
        self.table_bits, self.range_bits = table_bits, range_bits
        self.geo = [geometry(fp) for fp in self.layers]
        self.exact = [False] * len(self.layers)
        self.cnt = np.zeros((len(self.layers), NTENSORS, 2), dtype=np.int64)

    @property
    def n_in(self) -> int:
        return int(math.prod(self.layers[0].in_shape))

    @property
    def n_out(self) -> int:
        return int(math.prod(self.layers[-1].out_shape))

    def forward(self, X: np.ndarray, count: bool = True) -> np.ndarray:
        """Raw inputs (N, n_in) -> raw front-end outputs (N, n_out), int64; events go to ``self.cnt`` when
        ``count`` (once per call, i.e. per sample visit)."""
        v = np.ascontiguousarray(X, dtype=np.int64)
        cnt = self.cnt if count else np.zeros_like(self.cnt)
        for j, fp in enumerate(self.layers):
            out = np.empty((v.shape[0], int(math.prod(fp.out_shape))), dtype=np.int64)
            if fp.type == "conv2d":
                conv_forward(v, self.W[j], self.b[j], self.geo[j], fp.input.frac, fp.weight.frac, fp.bias.frac,
                             np.array(fmt_cols(fp.accum), dtype=np.int64), self.exact[j],
                             np.array(fmt_cols(fp.act), dtype=np.int64), int(act_code(fp.act_name)), self.tables[j],
                             self.table_bits, self.range_bits, out, cnt[j])
            else:
                pool_forward(v, self.geo[j], fp.type == "maxpool", ROUNDING[fp.act.rounding], out, cnt[j])
            v = out
        return v

    def float_layers(self) -> list[dict]:
        """The layers as the twin runs them: the raw weights as exact floats, the activation by code."""
        out = []
        for j, fp in enumerate(self.layers):
            lay = {"type": fp.type, "geo": self.geo[j], "out_shape": fp.out_shape}
            if fp.type == "conv2d":
                lay.update(W=fp.weight.to_float(self.W[j]), b=fp.bias.to_float(self.b[j]),
                           act=int(act_code(fp.act_name)))
            out.append(lay)
        return out


def float_forward(layers: list[dict], X: np.ndarray) -> np.ndarray:
    """The twin's front end: float64 inputs (N, n_in) -> (N, n_out); ``layers`` as FrontEnd.float_layers()."""
    v = np.ascontiguousarray(X, dtype=np.float64)
    for lay in layers:
        out = np.empty((v.shape[0], int(math.prod(lay["out_shape"]))), dtype=np.float64)
        if lay["type"] == "conv2d":
            conv_forward_float(v, lay["W"], lay["b"], lay["geo"], lay["act"], out)
        else:
            pool_forward_float(v, lay["geo"], lay["type"] == "maxpool", out)
        v = out
    return v
