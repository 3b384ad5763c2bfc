"""Weight files of the fixed-point engine: what the HLS and RTL generators read.

A weight file is ``NAME.npz`` (numpy archive) with a human-readable sidecar ``NAME.json`` holding the same
metadata; the archive alone is enough to load (its ``meta`` entry is the JSON text).  Both are written to a
temporary file and renamed, so a reader never sees a half-written file.

Arrays (all int64 raw values; value = raw * 2**-F with F from the layer's format):

=================  ======================  ===========================================================
``W{k}``           (n_in, n_out)           weights of trainable layer k, hls4ml order: ``W[j, i]``
                                           connects input j to output i
``b{k}``           (n_out,)                biases
``B{k}``           (C, n_out) or           feedback matrix (direct rules / FA), absent when unused;
                   (n_in, n_out)           equal to ``lfsr_matrix(feedback_seed, rows, cols, W_fb)``
``table{k}``       (2**table_bits,)        tanh / sigmoid table of the layer's activation (if any)
``rnd_state``      (L,)                    LFSR state of each layer's stochastic-rounding stream
=================  ======================  ===========================================================

``meta`` (JSON): ``format`` ("edgelearn-fixed-weights"), ``version`` (1), ``network`` (``NetworkSpec.to_dict()``),
``layers`` (per layer: name, n_in, n_out, rule, act, every tensor format in full hls4ml-like spelling
``fixed<W,I,Q,O>`` with STOCH kept, lr_shift, lr_mult raw/frac, accumulation path, feedback seed/shape/mode),
``bits``, ``seed``, ``feedback_mode``, ``table_bits``, ``range_bits``, ``samples_seen``, ``counters``.
"""
from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError
from . import engine_kernels as K
from .lfsr import derive_seed

FILE_FORMAT = "edgelearn-fixed-weights"
VERSION = 1


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def weights_meta(eng) -> dict[str, Any]:
    from .engine import FEEDBACK_STREAM, LDFA_P_STREAM

    layers = []
    for k, lp in enumerate(eng.precision.layers):
        shape = eng._fb_shapes[k]
        layers.append({
            "name": lp.name, "n_in": lp.n_in, "n_out": lp.n_out, "rule": eng.rules[k], "act": eng.acts[k],
            "formats": lp.formats(), "lr_shift": lp.lr_shift,
            "lr_mult": None if lp.lr_mult is None else {"value": lp.lr_mult, "raw": lp.lr_mult_raw,
                                                        "frac": lp.lr_mult_frac},
            "accumulation": ["exact", "shift-trn", "shift-rnd", "general"][int(eng.P[k, K.ACC_PATH])],
            "feedback": None if shape is None else {
                "shape": list(shape), "seed": derive_seed(eng.seed, FEEDBACK_STREAM + k),
                "mode": "lfsr" if eng.P[k, K.FB_LFSR] else "stored"},
        })
        if eng.rules[k] == "ldfa" and shape is not None:  # packed factors (docs/engine.md "Feedback matrices")
            layers[-1]["feedback"].update({
                "layout": "rows [0, n_in): Q (n_in x rank); rows [n_in, n_in + rank): P (rank x n_out)",
                "rank": eng.ldfa_rank(k), "p_shift": eng.ldfa_p_shift(k),
                "p_seed": derive_seed(eng.seed, LDFA_P_STREAM + k)})
    return {
        "format": FILE_FORMAT, "version": VERSION, "network": eng.spec.to_dict(), "layers": layers,
        "bits": eng.bits, "seed": eng.seed, "feedback_mode": eng.precision.feedback_mode,
        "table_bits": eng.precision.table_bits, "range_bits": eng.precision.range_bits,
        "samples_seen": eng.samples_seen, "epochs_done": eng.epochs_done, "counters": eng.counters,
        "layout": "W{k}[j, i] connects input j to output i (hls4ml order); raw int64, value = raw * 2**-F",
    }


def save_weights(eng, path) -> tuple[Path, Path]:
    """Write ``path`` (.npz appended if missing) and its ``.json`` sidecar atomically; returns both paths."""
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    meta = weights_meta(eng)
    text = json.dumps(meta, indent=2, sort_keys=False)
    arrays: dict[str, np.ndarray] = {"meta": np.array(text), "rnd_state": eng.rnd_state.copy()}
    for k in range(len(eng.W)):
        arrays[f"W{k}"] = eng.W[k].astype(np.int64)
        arrays[f"b{k}"] = eng.b[k].astype(np.int64)
        if eng._fb_shapes[k] is not None:
            arrays[f"B{k}"] = eng.B[k].astype(np.int64)
        if eng.acts[k] in ("tanh", "sigmoid"):
            arrays[f"table{k}"] = eng.tables[k].astype(np.int64)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    _atomic_write(path, buf.getvalue())
    side = path.with_suffix(".json")
    _atomic_write(side, (text + "\n").encode())
    return path, side


def load_weights(path):
    """Rebuild a :class:`FixedEngine` from a weight file (formats, rules, weights, feedback, LFSR states)."""
    from ..network import network_from_dict
    from .engine import FixedEngine

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such weight file")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable .npz weight file ({exc})") from None
    if "meta" not in data:
        raise DataError(f"{path}: not an edgelearn weight file (no 'meta' entry)")
    try:
        meta = json.loads(str(data["meta"]))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: corrupt metadata ({exc})") from None
    if meta.get("format") != FILE_FORMAT or meta.get("version") != VERSION:
        raise DataError(f"{path}: unsupported weight file format {meta.get('format')!r} v{meta.get('version')}")
    net = dict(meta["network"])
    per_layer = {}
    for lay in meta["layers"]:
        f = {t: v for t, v in lay["formats"].items() if t not in ("input",) and v is not None}
        f["lr_shift"] = lay["lr_shift"]
        if lay["lr_mult"] is not None:
            f["lr_mult"] = lay["lr_mult"]["value"]
        per_layer[lay["name"]] = f
    prec = dict(net.get("precision") or {})
    prec = {k: v for k, v in prec.items() if k in ("lr_mult_format",)}
    prec.update({"bits": meta["bits"] or 8, "input": meta["layers"][0]["formats"]["input"],
                 "feedback_mode": meta["feedback_mode"], "table_bits": meta["table_bits"],
                 "range_bits": meta["range_bits"], "per_layer": per_layer})
    net["precision"] = prec
    try:
        spec = network_from_dict(net, source=str(path))
    except ConfigError as exc:
        raise DataError(f"{path}: bad network description: {exc}") from None
    eng = FixedEngine(spec, seed=int(meta["seed"]))
    for k in range(len(eng.W)):
        eng.set_weights(k, data[f"W{k}"], data[f"b{k}"])
        if f"B{k}" in data and not eng.P[k, K.FB_LFSR]:
            eng.set_feedback(k, data[f"B{k}"])
    eng.rnd_state[:] = data["rnd_state"]
    eng.samples_seen = int(meta.get("samples_seen", 0))
    eng.epochs_done = int(meta.get("epochs_done", 0))
    return eng


def clone_engine(eng):
    """An independent copy of an engine (through its weight file): same formats, weights, feedback, LFSR states."""
    with tempfile.TemporaryDirectory(prefix="edgelearn-clone-") as tmp:
        path = Path(tmp) / "state.npz"
        eng.save(path)
        return load_weights(path)
