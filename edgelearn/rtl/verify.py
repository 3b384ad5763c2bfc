"""Golden results of the fixed-point engine for an RTL testbench, and the testbench's summary.

:func:`golden` runs the engine on a sequence of samples exactly as the datapath sees them (one at a time;
training or inference per sample) and records, per sample, the prediction before the update and -- at chosen
samples -- every weight and bias.  The cocotb testbench (``rtl_tb/test_mlp.py``) reads the ``.npz`` and compares
the design with it bit for bit.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from ..fixed.engine_io import clone_engine


def golden(eng, X_raw: np.ndarray, labels: Sequence[int], train: Sequence[bool], snapshots: Sequence[int] | None = None,
           path=None) -> dict[str, np.ndarray]:
    """Run a *copy* of ``eng`` over the samples; ``snapshots``: sample indices after which W and b are recorded
    (default: every sample).  Returns (and writes to ``path`` if given) arrays ``X`` (N, n_in) raw inputs, ``labels``,
    ``train``, ``preds``, ``snap`` (indices), ``W{k}`` (S, n_in, n_out), ``b{k}`` (S, n_out), ``nnz{k}`` (N,) non-zero
    inputs of layer k per sample (for the cycle model)."""
    eng = clone_engine(eng)
    X = np.ascontiguousarray(np.asarray(X_raw, dtype=np.int64))
    labels = np.asarray(labels, dtype=np.int64)
    train = np.asarray(train, dtype=bool)
    N = X.shape[0]
    snap = list(range(N)) if snapshots is None else sorted(set(int(s) for s in snapshots))
    L = len(eng.sizes) - 1
    Ws: list[list[np.ndarray]] = [[] for _ in range(L)]
    bs: list[list[np.ndarray]] = [[] for _ in range(L)]
    preds = np.zeros(N, dtype=np.int64)
    nnz = np.zeros((L, N), dtype=np.int64)
    snapset = set(snap)
    for n in range(N):
        nnz[:, n] = _layer_nnz(eng, X[n])
        preds[n] = int(np.argmax(eng.output_raw(X[n:n + 1])[0]))
        if train[n]:
            eng.step(X[n], int(labels[n]))
        if n in snapset:
            for k, w in enumerate(eng.weights()):
                Ws[k].append(w["W"])
                bs[k].append(w["b"])
    out = {"X": X, "labels": labels, "train": train.astype(np.int64), "preds": preds,
           "snap": np.asarray(snap, dtype=np.int64)}
    for k in range(L):
        out[f"W{k}"] = np.stack(Ws[k]) if Ws[k] else np.zeros((0,) + eng.W[k].shape, dtype=np.int64)
        out[f"b{k}"] = np.stack(bs[k]) if bs[k] else np.zeros((0, eng.sizes[k + 1]), dtype=np.int64)
        out[f"nnz{k}"] = nnz[k]
    if path is not None:
        np.savez(path, **out)
    return out


def _layer_nnz(eng, x: np.ndarray) -> list[int]:
    """Non-zero inputs of every layer for sample x under the engine's current weights (forward only)."""
    from ..fixed import engine_kernels as K

    P = eng.P
    out = []
    v = np.asarray(x, dtype=np.int64)
    cnt = np.zeros((P.shape[0], K.NTENSORS, 2), dtype=np.int64)
    for k in range(P.shape[0]):
        out.append(int(np.count_nonzero(v)))
        if k == P.shape[0] - 1:
            break
        nz = np.empty(v.shape[0], dtype=np.int64)
        n = K.nonzeros(v, nz)
        acc = np.empty(P[k, K.N_OUT], dtype=np.int64)
        z = np.empty(P[k, K.N_OUT], dtype=np.int64)
        K.layer_preact(P, k, eng._Ws[k], eng._bs[k], v, nz, n, acc, z, cnt, 1)
        y = np.empty_like(z)
        g = np.empty_like(z)
        K.layer_activate(P, k, z, eng._tables[k], y, g, cnt)
        v = y
    return out


def read_report(path) -> dict:
    return json.loads(Path(path).read_text())
