"""The float twin: the engine's algorithm in float64 with every quantization removed.

Same initial weights (the engine's quantized init, as exact floats), same feedback values ``B``, same learning
rates ``2**-lr_shift`` (times the multiplier), same rules, same sample order, same update order -- but exact
``tanh``/``sigmoid`` and derivatives, no rounding and no saturation anywhere.  Comparing an engine with its
twin separates the cost of the word length from the cost of the learning rule.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numba
import numpy as np
from .typed_list import List

from ..errors import DataError
from ..program import FB_LEARN_P, FB_LEARN_Q, OJA_GAIN, OJA_TARGET, RuleCode, sample_order, schedule, schedule_array
from . import engine_kernels as K
from .conv import float_forward, float_learn

_ACT_TANH, _ACT_SIGMOID, _ACT_HARDTANH, _ACT_RELU = K.ACT_TANH, K.ACT_SIGMOID, K.ACT_HARDTANH, K.ACT_RELU


@numba.njit(cache=True)
def _act(kind, z, y, g):
    for i in range(z.shape[0]):
        v = z[i]
        if kind == _ACT_TANH:
            t = np.tanh(v)
            y[i] = t
            g[i] = 1.0 - t * t
        elif kind == _ACT_SIGMOID:
            s = 1.0 / (1.0 + np.exp(-v))
            y[i] = s
            g[i] = s * (1.0 - s)
        elif kind == _ACT_HARDTANH:
            y[i] = min(1.0, max(-1.0, v))
            g[i] = 1.0 if -1.0 < v < 1.0 else 0.0
        elif kind == _ACT_RELU:
            y[i] = v if v > 0 else 0.0
            g[i] = 1.0 if v > 0 else 0.0
        else:
            y[i] = v
            g[i] = 1.0


@numba.njit(cache=True)
def _forward(W, b, x, z):
    n_out = W.shape[1]
    for i in range(n_out):
        z[i] = b[i]
    for j in range(x.shape[0]):
        xj = x[j]
        if xj == 0.0:
            continue
        w = W[j]
        for i in range(n_out):
            z[i] += w[i] * xj


@numba.njit(cache=True)
def _p_times(Bp, n, v):
    """P v through packed factors: P is Bp's rows from n on (r x len(v)), each sum in index order."""
    r = Bp.shape[0] - n
    u = np.zeros(r)
    for t in range(r):
        acc = 0.0
        for i in range(v.shape[0]):
            acc += Bp[n + t, i] * v[i]
        u[t] = acc
    return u


@numba.njit(cache=True)
def _lowrank(Bp, src, g, d):
    """d = (Q (P src)) * g through packed factors: Q in Bp's first n = len(d) rows (n x r), P below (r x len(src))."""
    n = d.shape[0]
    r = Bp.shape[0] - n
    u = _p_times(Bp, n, src)
    for j in range(n):
        acc = 0.0
        for t in range(r):
            acc += Bp[j, t] * u[t]
        d[j] = acc * g[j]


@numba.njit(cache=True)
def _delta(rule, label, B, e_out, g, d, W_up, B_up, d_up, prop):
    n = d.shape[0]
    if rule == K.R_DRTP:
        for i in range(n):
            d[i] = B[label, i] * g[i]
    elif rule == K.R_SDFA or rule == K.R_DFA:
        for i in range(n):
            d[i] = 0.0
        for c in range(e_out.shape[0]):
            ec = e_out[c]
            if rule == K.R_SDFA:
                ec = 1.0 if ec > 0 else (-1.0 if ec < 0 else 0.0)
            for i in range(n):
                d[i] += B[c, i] * ec
        for i in range(n):
            d[i] *= g[i]
    elif rule == K.R_DLDFA:  # Q (P e): B packs Q (rows < n) and P (rows >= n, r x C)
        _lowrank(B, e_out, g, d)
    elif prop == K.PROP_LOWRANK:  # ldfa above: Q (P d_up), B_up packs Q (rows < n) and P (rows >= n)
        _lowrank(B_up, d_up, g, d)
    else:
        M = B_up if prop == K.PROP_FA else W_up
        for j in range(n):
            acc = 0.0
            for i in range(d_up.shape[0]):
                acc += M[j, i] * d_up[i]
            d[j] = acc * g[j]


@numba.njit(cache=True)
def _feedback_learn(rule, prop, learn, oja_src, label, B, x, y, d, e_out, lr):
    """engine_kernels.feedback_learn in float64 (docs/arithmetic.md §16): kp's B gets W's increment; ldfa's /
    dldfa's Q gets u h^T (u = P d, or P e_out for dldfa with h the layer's output), then P the online Oja step on
    the source normalised by the same power of two (max |s| in [1/4, 1/2)), at 2**OJA_GAIN times the rate."""
    if prop == K.PROP_FA and rule != K.R_DLDFA:  # kp
        for j in range(x.shape[0]):
            xj = x[j]
            if xj == 0.0:
                continue
            for i in range(d.shape[0]):
                B[j, i] += lr * (d[i] * xj)
        return
    direct = rule == K.R_DLDFA
    n = y.shape[0] if direct else x.shape[0]
    r = B.shape[0] - n
    src = e_out if direct else d
    m = src.shape[0]
    if learn & FB_LEARN_Q:
        u = _p_times(B, n, src)
        h = y if direct else x
        for j in range(n):
            hj = h[j]
            if hj == 0.0:
                continue
            for t in range(r):
                B[j, t] += lr * (u[t] * hj)
    if not learn & FB_LEARN_P:
        return
    s = np.zeros(m)
    for i in range(m):
        s[i] = (1.0 if i == label else 0.0) if oja_src == OJA_TARGET else src[i]
    big = np.max(np.abs(s))
    if big == 0.0:
        return
    scale = 2.0 ** -(math.frexp(big)[1] + 1)  # big = f 2**e, f in [1/2, 1): max |s| * scale in [1/4, 1/2)
    for i in range(m):
        s[i] *= scale
    a = _p_times(B, n, s)
    rho = np.zeros(m)
    for i in range(m):
        acc = 0.0
        for t in range(r):
            acc += B[n + t, i] * a[t]
        rho[i] = s[i] - acc
    lp = lr * 2.0 ** OJA_GAIN
    for t in range(r):
        for i in range(m):
            B[n + t, i] += lp * (a[t] * rho[i])


@numba.njit(cache=True)
def _update(W, b, x, d, lr):
    n_out = W.shape[1]
    for j in range(x.shape[0]):
        xj = x[j]
        if xj == 0.0:
            continue
        w = W[j]
        for i in range(n_out):
            w[i] += lr * (d[i] * xj)
    for i in range(n_out):
        b[i] += lr * d[i]


@numba.njit(cache=True)
def _accum(U, Ub, x, d):
    for j in range(x.shape[0]):
        xj = x[j]
        if xj == 0.0:
            continue
        for i in range(U.shape[1]):
            U[j, i] += d[i] * xj
    for i in range(Ub.shape[0]):
        Ub[i] += d[i]


@numba.njit(cache=True)
def _train(X, labels, order, start, stop, steps, rules, acts, loss, lrs, prop_b, Ws, bs, Bs, xs, zs, gs, ds, Us,
           Ubs, online, batch_size, batch_scale, in_batch, fb_learn, oja_src):
    """The engine's per-sample schedule ``steps`` (program.schedule_array) in float64."""
    L = rules.shape[0]
    correct = 0
    for n in range(start, stop):
        idx = order[n]
        label = labels[idx]
        x0 = xs[0]
        for j in range(x0.shape[0]):
            x0[j] = X[idx, j]
        for s in range(steps.shape[0]):
            op = steps[s, 0]
            k = steps[s, 1]
            if op == K.OP_FORWARD:
                _forward(Ws[k], bs[k], xs[k], zs[k])
                _act(acts[k], zs[k], xs[k + 1], gs[k])
            elif op == K.OP_INJECT_DRTP:
                _delta(rules[k], label, Bs[k], ds[L - 1], gs[k], ds[k], Ws[k], Bs[k], ds[k], K.PROP_W)
            elif op == K.OP_PREDICT:
                if K.argmax_first(zs[L - 1]) == label:
                    correct += 1
            elif op == K.OP_OUTPUT_ERROR:
                yo = xs[k + 1]
                eo = ds[k]
                if loss == K.LOSS_CE:  # exact softmax of the logits (the engine: a table and a divider)
                    m = yo.max()
                    S = 0.0
                    for c in range(yo.shape[0]):
                        S += np.exp(yo[c] - m)
                    for c in range(yo.shape[0]):
                        eo[c] = (1.0 if c == label else 0.0) - np.exp(yo[c] - m) / S
                else:
                    for c in range(yo.shape[0]):
                        t = 1.0 if c == label else 0.0
                        eo[c] = (t - yo[c]) * (gs[k][c] if loss == K.LOSS_MSE else 1.0)
            elif op == K.OP_HIDDEN_SIGNAL:
                _delta(rules[k], label, Bs[k], ds[L - 1], gs[k], ds[k], Ws[k + 1], Bs[k + 1], ds[k + 1],
                       prop_b[k + 1])
            elif op == K.OP_FEEDBACK:
                _feedback_learn(rules[k], prop_b[k], fb_learn[k], oja_src[k], label, Bs[k], xs[k], xs[k + 1], ds[k],
                                ds[L - 1], lrs[k])
            elif op == K.OP_UPDATE:
                if online:
                    _update(Ws[k], bs[k], xs[k], ds[k], lrs[k])
                else:
                    _accum(Us[k], Ubs[k], xs[k], ds[k])
        if not online:
            in_batch[0] += 1
            if in_batch[0] == batch_size:
                _apply(rules, Ws, bs, Us, Ubs, lrs, batch_scale)
                in_batch[0] = 0
    return correct


@numba.njit(cache=True)
def _apply(rules, Ws, bs, Us, Ubs, lrs, batch_scale):
    for k in range(rules.shape[0]):
        if rules[k] == K.R_SHALLOW:
            continue
        W = Ws[k]
        U = Us[k]
        f = lrs[k] * batch_scale
        for j in range(W.shape[0]):
            for i in range(W.shape[1]):
                W[j, i] += f * U[j, i]
                U[j, i] = 0.0
        for i in range(bs[k].shape[0]):
            bs[k][i] += f * Ubs[k][i]
            Ubs[k][i] = 0.0


@numba.njit(cache=True, parallel=True)
def _predict(X, acts, Ws, bs, out):
    L = acts.shape[0]
    for n in numba.prange(X.shape[0]):
        x = X[n].copy()
        for k in range(L):
            z = np.empty(Ws[k].shape[1])
            _forward(Ws[k], bs[k], x, z)
            if k == L - 1:
                out[n, :] = z
            else:
                y = np.empty_like(z)
                g = np.empty_like(z)
                _act(acts[k], z, y, g)
                x = y


class FloatTwin:
    """Float64 twin of a :class:`~edgelearn.fixed.engine.FixedEngine` (build it with ``engine.float_twin()``)."""

    def __init__(self, sizes, rules, acts, loss, lrs, weights, biases, feedback, prop_b, seed, batch_size=1,
                 batch_shift=0, epochs_done=0, mode="online", front=None, fb_learn=None, oja_src=None):
        self.sizes = list(sizes)
        #: the frozen front end (conv.FrontEnd.float_layers()), None for an MLP
        self.front = front
        self.n_inputs = int(np.prod(front[0]["geo"][:3])) if front else self.sizes[0]
        self.rules = np.asarray(rules, dtype=np.int64)
        # the engine's lowered per-sample schedule (rules are the lowered codes: OUTPUT for the output layer)
        L = len(self.rules)
        #: trained feedback per layer (program.FB_LEARN_* bits) and the error P's Oja step reads (program.OJA_*)
        self.fb_learn = np.zeros(L, dtype=np.int64) if fb_learn is None else np.asarray(fb_learn, dtype=np.int64)
        self.oja_src = np.zeros(L, dtype=np.int64) if oja_src is None else np.asarray(oja_src, dtype=np.int64)
        self._steps = schedule_array(schedule([RuleCode(int(r)) for r in self.rules],
                                              [bool(v) for v in self.fb_learn]))
        self.acts = np.asarray(acts, dtype=np.int64)
        self.loss = loss
        self.loss_code = K.LOSS_CODES[loss]
        self.lrs = np.asarray(lrs, dtype=np.float64)
        self.W = [np.array(w, dtype=np.float64) for w in weights]
        self.b = [np.array(b, dtype=np.float64) for b in biases]
        self.B = [np.zeros((1, 1)) if B is None else np.array(B, dtype=np.float64) for B in feedback]
        self.prop_b = np.asarray(prop_b, dtype=np.int64)
        self.seed = seed
        self.batch_size = batch_size
        self.mode = mode
        self.batch_scale = 2.0 ** -batch_shift
        self.epochs_done = epochs_done
        self.history: list[dict[str, Any]] = []
        self._alloc()

    @classmethod
    def from_engine(cls, eng) -> "FloatTwin":
        lrs = []
        for lp in eng.precision.layers:
            lr = 2.0 ** -lp.lr_shift
            if lp.lr_mult is not None:
                lr *= lp.lr_mult_raw * 2.0 ** -lp.lr_mult_frac
            lrs.append(lr)
        wf = eng.weights_float()
        fb = eng.feedback_float()
        tw = cls(eng.sizes, [int(r) for r in eng.P[:, K.RULE]], [int(a) for a in eng.P[:, K.ACT]], eng.spec.loss,
                 lrs, [w["W"] for w in wf], [w["b"] for w in wf], fb, [int(v) for v in eng.P[:, K.PROP_B]],
                 eng.seed, eng.batch_size, eng.batch_shift, eng.epochs_done, eng.mode,
                 eng.front.float_layers() if eng.front is not None else None,
                 [int(v) for v in eng.P[:, K.FB_LEARN]], [int(v) for v in eng.P[:, K.OJA_SRC]])
        tw.num_classes = eng.num_classes
        return tw

    def _alloc(self) -> None:
        s = self.sizes
        L = len(s) - 1
        self._xs = List([np.zeros(n) for n in s])
        self._zs = List([np.zeros(n) for n in s[1:]])
        self._gs = List([np.zeros(n) for n in s[1:]])
        self._ds = List([np.zeros(n) for n in s[1:]])
        if self.mode == "batch":
            self._Us = List([np.zeros((s[k], s[k + 1])) for k in range(L)])
        else:
            self._Us = List([np.zeros((1, 1)) for _ in range(L)])
        self._Ubs = List([np.zeros(n) for n in s[1:]])
        self._in_batch = np.zeros(1, dtype=np.int64)
        self._Ws, self._bs, self._Bs = List(self.W), List(self.b), List(self.B)

    @staticmethod
    def _inputs(x, n_in) -> np.ndarray:
        arr = np.asarray(x, dtype=np.float64)
        arr = arr.reshape(arr.shape[0], -1) if arr.ndim > 1 else arr.reshape(1, -1)
        if arr.shape[1] != n_in:
            raise DataError(f"inputs have {arr.shape[1]} features per sample, the network expects {n_in}")
        if not np.isfinite(arr).all():
            raise DataError("inputs contain NaN/Inf values")
        return np.ascontiguousarray(arr)

    def features(self, X: np.ndarray) -> np.ndarray:
        """Float inputs -> the first linear layer's inputs (the front end's output; identity for an MLP)."""
        return X if self.front is None else float_forward(self.front, X)

    def fit(self, x, y, epochs: int = 1, shuffle: bool = True, callback: Callable[[int], None] | None = None,
            chunk: int = 2000):
        X = self._inputs(x, self.n_inputs)
        labels = np.asarray(y, dtype=np.int64)
        N = X.shape[0]
        for _ in range(epochs):
            order = sample_order(self.seed, self.epochs_done, N, shuffle)
            correct = 0
            for start in range(0, N, chunk):
                stop = min(N, start + chunk)
                Xc, lc, oc, a, z = X, labels, order, start, stop
                if self.learns_front:  # one sample at a time: the kernels change between samples
                    for i in order[start:stop]:
                        correct += self._step_front(X[i:i + 1], int(labels[i]))
                    a = z  # nothing left for the chunk call below
                elif self.front is not None:  # the chunk's front-end outputs in visiting order, as the engine
                    idx = order[start:stop]
                    Xc, lc = self.features(X[idx]), np.ascontiguousarray(labels[idx])
                    oc, a, z = np.arange(stop - start, dtype=np.int64), 0, stop - start
                correct += _train(Xc, lc, oc, a, z, self._steps, self.rules, self.acts, self.loss_code, self.lrs,
                                  self.prop_b, self._Ws, self._bs, self._Bs, self._xs, self._zs, self._gs, self._ds,
                                  self._Us, self._Ubs, self.mode == "online", self.batch_size, self.batch_scale,
                                  self._in_batch, self.fb_learn, self.oja_src)
                if callback is not None:
                    callback(stop - start)
            if self.mode == "batch" and self._in_batch[0] > 0:
                _apply(self.rules, self._Ws, self._bs, self._Us, self._Ubs, self.lrs, self.batch_scale)
                self._in_batch[0] = 0
            self.epochs_done += 1
            self.history.append({"epoch": self.epochs_done, "train_accuracy_online": correct / max(N, 1)})
        return self.history

    @property
    def learns_front(self) -> bool:
        return self.front is not None and any("rule" in lay for lay in self.front)

    def _step_front(self, X: np.ndarray, label: int) -> int:
        """One online sample through a front end whose conv layers learn (as FixedEngine._run_front_learning):
        the front end's forward (kept), the linear layers' step, the conv layers' step from the output error."""
        F = float_forward(self.front, X, keep=True)
        L = len(self.rules)
        right = _train(F, np.array([label], dtype=np.int64), np.zeros(1, dtype=np.int64), 0, 1, self._steps,
                       self.rules, self.acts, self.loss_code, self.lrs, self.prop_b, self._Ws, self._bs, self._Bs,
                       self._xs, self._zs, self._gs, self._ds, self._Us, self._Ubs, True, 1, 1.0, self._in_batch,
                       self.fb_learn, self.oja_src)
        float_learn(self.front, label, self._ds[L - 1])
        return right

    def step(self, x, label: int) -> None:
        if self.learns_front:
            self._step_front(self._inputs(np.asarray(x, dtype=np.float64).reshape(1, -1), self.n_inputs), label)
            return
        X = self.features(self._inputs(np.asarray(x, dtype=np.float64).reshape(1, -1), self.n_inputs))
        _train(X, np.array([label], dtype=np.int64), np.zeros(1, dtype=np.int64), 0, 1, self._steps, self.rules,
               self.acts, self.loss_code, self.lrs, self.prop_b, self._Ws, self._bs, self._Bs, self._xs, self._zs,
               self._gs, self._ds, self._Us, self._Ubs, True, 1, 1.0, self._in_batch, self.fb_learn, self.oja_src)

    def output(self, x) -> np.ndarray:
        X = self._inputs(x, self.n_inputs)
        out = np.zeros((X.shape[0], self.sizes[-1]))
        step = max(1, X.shape[0]) if self.front is None else 1000
        for a in range(0, X.shape[0], step):
            _predict(np.ascontiguousarray(self.features(X[a:a + step])), self.acts, self._Ws, self._bs,
                     out[a:a + step])
        return out

    def predict(self, x) -> np.ndarray:
        return np.argmax(self.output(x), axis=1)

    def evaluate(self, x, y) -> float:
        pred = self.predict(x)
        return float((pred == np.asarray(y)).mean()) if len(pred) else float("nan")
