"""The weight-file format of the fixed-point engine: writer, checked reader, copies of an engine through it.

This module sits below the engine (it never imports ``engine``): the engine saves through it, the lowering copies
an engine through it for the golden trace, and :mod:`edgelearn.fixed.engine_io` binds the reader to ``FixedEngine``
(``load_weights``).  The reader builds whatever engine class it is given.

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
``ns{k}``          (n_out,)                ``rng: neuron`` only: layer k's per-neuron xorshift32 states
                                           (docs/arithmetic.md §9a)
``Wc{j}``, ``bc{j}`` (C_out, C_in, k, k),   kernels and biases of conv layer j of a frozen front end
                   (C_out,)                (j counts every front-end layer, pools included)
``rc{j}``, ``nc{j}`` (1,), (C_out,)         a learning conv layer j's rounding LFSR and per-channel xorshift32
                                           states (docs/arithmetic.md §15a)
=================  ======================  ===========================================================

``meta`` (JSON): ``format`` ("edgelearn-fixed-weights"), ``version`` (1), ``network`` (``NetworkSpec.to_dict()``),
``layers`` (per layer: name, n_in, n_out, rule, act, every tensor format in full hls4ml-like spelling
``fixed<W,I,Q,O>`` with STOCH kept, lr_shift, lr_mult raw/frac, accumulation path, feedback seed/shape/mode),
``bits``, ``seed``, ``feedback_mode``, ``rng`` (absent in older files: ``layer``), ``table_bits``, ``range_bits``,
``samples_seen``, ``counters``; with a conv front end ``front`` (per layer: name, type, formats).
"""
from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, EdgelearnError
from ..fileio import write_bytes_atomic
from ..network import network_from_dict
from . import engine_kernels as K
from .conv import engine_sizes
from .lfsr import STATE_BITS
from .precision import fmt_str

FILE_FORMAT = "edgelearn-fixed-weights"
VERSION = 1


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, data)


def weights_meta(eng) -> dict[str, Any]:
    layers = []
    # feedback shapes, modes and seeds as the engine's lowered layers have them (edgelearn.fixed.lower)
    for k, (lp, lay) in enumerate(zip(eng.precision.layers, eng.program_layers)):
        layers.append({
            "name": lp.name, "n_in": lp.n_in, "n_out": lp.n_out, "rule": eng.rules[k], "act": eng.acts[k],
            "formats": lp.formats(), "lr_shift": lp.lr_shift,
            "lr_mult": None if lp.lr_mult is None else {"value": lp.lr_mult, "raw": lp.lr_mult_raw,
                                                        "frac": lp.lr_mult_frac},
            "accumulation": ["exact", "shift-trn", "shift-rnd", "general"][int(eng.P[k, K.ACC_PATH])],
            "feedback": None if lay.fb_shape is None else {
                "shape": list(lay.fb_shape), "seed": lay.fb_seed, "mode": lay.fb_mode},
        })
        if lay.ldfa_p_seed is not None:  # packed factors (docs/engine.md "Feedback matrices")
            layers[-1]["feedback"].update({
                "layout": "rows [0, n_in): Q (n_in x rank); rows [n_in, n_in + rank): P (rank x n_out)",
                "rank": lay.ldfa_rank, "p_shift": lay.ldfa_p_shift, "p_seed": lay.ldfa_p_seed})
    # a frozen conv front end: its layers' formats (kernels and biases: arrays Wc{j}, bc{j})
    front = [{"name": fp.name, "type": fp.type, "formats": fp.formats(),
              **({"lr_shift": fp.lr_shift} if fp.learns else {})} for fp in eng.precision.front]
    return {
        "format": FILE_FORMAT, "version": VERSION, "network": eng.spec.to_dict(), "layers": layers,
        **({"front": front} if front else {}),
        "bits": eng.bits, "seed": eng.seed, "feedback_mode": eng.precision.feedback_mode, "rng": eng.precision.rng,
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
        if eng.precision.rng == "neuron":
            arrays[f"ns{k}"] = eng.neuron_state[k].astype(np.int64)
    for j in _front_convs(eng):
        arrays[f"Wc{j}"] = eng.front.W[j].astype(np.int64)
        arrays[f"bc{j}"] = eng.front.b[j].astype(np.int64)
    for j in eng.front.learning if eng.front is not None else ():  # a learning conv's STOCH generators (§15a)
        arrays[f"rc{j}"] = eng.front.rnd_state[j].astype(np.int64)
        arrays[f"nc{j}"] = eng.front.neuron_state[j].astype(np.int64)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    _atomic_write(path, buf.getvalue())
    side = path.with_suffix(".json")
    _atomic_write(side, (text + "\n").encode())
    return path, side


_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"
_ABSENT = object()


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _meta_field(path: Path, obj: dict, key: str, where: str, ok, what: str, default=_ABSENT):
    """``obj[key]`` of the metadata, checked with ``ok``; ``where`` locates ``obj`` ("layers[0]", "" at the top)."""
    if key not in obj:
        if default is not _ABSENT:
            return default
        raise DataError(f"{path}: metadata {f'{where!r} ' if where else ''}has no {key!r}")
    v = obj[key]
    if not ok(v):
        raise DataError(f"{path}: metadata {f'{where}.{key}' if where else key!r} must be {what}, got {v!r:.60}")
    return v


def _read_archive(path: Path) -> dict[str, Any]:
    """Every member of the .npz archive ``path``, as numpy arrays (bytes for members that are not .npy)."""
    if not path.is_file():
        raise DataError(f"{path}: no such weight file")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read the weight file ({exc.strerror})") from None
    if not raw:
        raise DataError(f"{path}: empty file, not a weight archive")
    if raw.startswith(_NPY_MAGIC):
        raise DataError(f"{path}: a single .npy array, not a .npz weight archive")
    if not raw.startswith(_ZIP_MAGIC):  # np.load would try to unpickle it
        raise DataError(f"{path}: not a .npz weight archive (no zip signature)")
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as exc:  # of the bytes alone: BadZipFile (CRC), zlib.error, EOFError, TokenError (header)...
        detail = " ".join(str(exc).split())
        raise DataError(f"{path}: corrupt or truncated weight archive ({detail})") from None


def _read_meta(path: Path, data: dict[str, Any]) -> dict[str, Any]:
    """The metadata, its structure and the types of every entry the loader reads checked."""
    if "meta" not in data:
        raise DataError(f"{path}: not an edgelearn weight file (no 'meta' entry)")
    text = data["meta"]
    if not (isinstance(text, np.ndarray) and text.shape == () and text.dtype.kind == "U"):
        raise DataError(f"{path}: the 'meta' entry must be JSON text, got "
                        f"{getattr(text, 'dtype', type(text).__name__)} {getattr(text, 'shape', '')}")
    try:
        meta = json.loads(str(text))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: corrupt metadata ({exc})") from None
    if not isinstance(meta, dict):
        raise DataError(f"{path}: metadata must be a JSON object, got {type(meta).__name__}")
    if meta.get("format") != FILE_FORMAT or meta.get("version") != VERSION:
        raise DataError(f"{path}: unsupported weight file format {meta.get('format')!r} v{meta.get('version')}")
    is_dict, is_str = (lambda v: isinstance(v, dict)), (lambda v: isinstance(v, str))
    count = (lambda v: _is_int(v) and v >= 0)
    net = _meta_field(path, meta, "network", "", is_dict, "an object")
    _meta_field(path, net, "precision", "network", lambda v: v is None or isinstance(v, dict), "an object", None)
    layers = _meta_field(path, meta, "layers", "", lambda v: isinstance(v, list) and v, "a non-empty list")
    _meta_field(path, meta, "bits", "", lambda v: v is None or _is_int(v), "an integer or null")
    _meta_field(path, meta, "seed", "", _is_int, "an integer")
    _meta_field(path, meta, "feedback_mode", "", is_str, "a string")
    _meta_field(path, meta, "rng", "", is_str, "a string", None)  # files before rng: neuron have none
    for key in ("table_bits", "range_bits"):
        _meta_field(path, meta, key, "", _is_int, "an integer")
    for key in ("samples_seen", "epochs_done"):
        _meta_field(path, meta, key, "", count, "a non-negative integer", 0)
    for k, lay in enumerate(layers):
        where = f"layers[{k}]"
        if not isinstance(lay, dict):
            raise DataError(f"{path}: metadata {where!r} must be an object, got {type(lay).__name__}")
        for key in ("name", "rule", "act"):
            _meta_field(path, lay, key, where, is_str, "a string")
        for key in ("n_in", "n_out", "lr_shift"):
            _meta_field(path, lay, key, where, _is_int, "an integer")
        fmts = _meta_field(path, lay, "formats", where, is_dict, "an object")
        for t in fmts:
            _meta_field(path, fmts, t, f"{where}.formats", lambda v: v is None or isinstance(v, str),
                        "a format string or null")
        if k == 0:
            _meta_field(path, fmts, "input", f"{where}.formats", is_str, "a format string")
        mult = _meta_field(path, lay, "lr_mult", where, lambda v: v is None or isinstance(v, dict),
                           "an object or null")
        if mult is not None:
            _meta_field(path, mult, "value", f"{where}.lr_mult",
                        lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "a number")
        _meta_field(path, lay, "feedback", where, lambda v: v is None or (isinstance(v, dict) and "shape" in v),
                    "an object with a 'shape' or null", None)
    return meta


def _int_array(path: Path, data: dict[str, Any], name: str, shape: tuple[int, ...], fmt=None) -> np.ndarray:
    """Member ``name`` as int64 raw values, checked: integer dtype, exact ``shape`` (no broadcasting), inside
    ``fmt``'s storage range."""
    if name not in data:
        raise DataError(f"{path}: no array {name!r} (the network of its metadata needs it)")
    a = data[name]
    if not isinstance(a, np.ndarray):
        raise DataError(f"{path}: {name} is not a numpy array")
    if a.dtype.kind not in "iu":
        raise DataError(f"{path}: {name} has dtype {a.dtype}; raw values are integers")
    if a.shape != tuple(shape):
        raise DataError(f"{path}: {name} must have shape {tuple(shape)}, got {a.shape}")
    if fmt is not None and a.size:
        lo, hi = int(a.min()), int(a.max())
        if lo < fmt.min_raw or hi > fmt.max_raw:
            raise DataError(f"{path}: {name} out of range of {fmt_str(fmt)} (raw {fmt.min_raw}..{fmt.max_raw}, "
                            f"the file has {lo}..{hi})")
    return a.astype(np.int64)


def read_weights(path, engine_cls, check_spec=None):
    """Rebuild an engine of class ``engine_cls`` from a weight file (formats, rules, weights, feedback, LFSR
    states); ``check_spec(spec)`` refuses a network that class cannot run before any array is read.

    Everything is checked before it is used -- the archive, the metadata's structure, every array the network
    needs (and no other), dtypes, shapes, ranges, LFSR states -- and any problem is a :class:`DataError` naming the
    file: a damaged or hand-edited file never loads as a different engine.
    """
    path = Path(path)
    data = _read_archive(path)
    meta = _read_meta(path, data)
    net = dict(meta["network"])
    per_layer = {}
    for lay in meta["layers"]:
        f = {t: v for t, v in lay["formats"].items() if t not in ("input",) and v is not None}
        f["lr_shift"] = lay["lr_shift"]
        if lay["lr_mult"] is not None:
            f["lr_mult"] = lay["lr_mult"]["value"]
        per_layer[lay["name"]] = f
    front = meta.get("front") or []
    if not (isinstance(front, list) and all(isinstance(f, dict) and isinstance(f.get("name"), str) and
                                            isinstance(f.get("formats"), dict) for f in front)):
        raise DataError(f"{path}: metadata 'front' must be a list of layers with a name and formats")
    for lay in front:
        if lay.get("type") == "conv2d":
            per_layer[lay["name"]] = {t: v for t, v in lay["formats"].items() if t != "input" and v is not None}
            if "lr_shift" in lay:  # a learning conv
                per_layer[lay["name"]]["lr_shift"] = lay["lr_shift"]
    prec = dict(net.get("precision") or {})
    prec = {k: v for k, v in prec.items() if k in ("lr_mult_format",)}
    prec.update({"bits": meta["bits"] or 8, "input": (front or meta["layers"])[0]["formats"].get("input"),
                 "feedback_mode": meta["feedback_mode"], "rng": meta.get("rng") or "layer",
                 "table_bits": meta["table_bits"],
                 "range_bits": meta["range_bits"], "per_layer": per_layer})
    net["precision"] = prec
    try:
        spec = network_from_dict(net, source=str(path))
        if check_spec is not None:
            check_spec(spec)
        sizes = engine_sizes(spec)
    except EdgelearnError as exc:
        raise DataError(f"{path}: bad network description: {exc}") from None
    # the file's arrays bound the sizes before the engine allocates anything for them
    for k in range(len(sizes) - 1):
        _int_array(path, data, f"W{k}", (sizes[k], sizes[k + 1]))
        _int_array(path, data, f"b{k}", (sizes[k + 1],))
    try:
        eng = engine_cls(spec, seed=meta["seed"])
    except EdgelearnError as exc:
        raise DataError(f"{path}: bad network description: {exc}") from None
    _check_layers(path, meta["layers"], eng)
    _check_members(path, data, eng)
    for k, lp in enumerate(eng.precision.layers):
        eng.set_weights(k, _int_array(path, data, f"W{k}", (lp.n_in, lp.n_out), lp.weight),
                        _int_array(path, data, f"b{k}", (lp.n_out,), lp.bias))
        if eng._fb_shapes[k] is not None:
            B = _int_array(path, data, f"B{k}", eng._fb_shapes[k], lp.feedback)
            if not eng.P[k, K.FB_LFSR]:
                eng.set_feedback(k, B)
            elif not np.array_equal(B, eng.B[k]):  # lfsr mode regenerates B: a different stored one would be lost
                raise DataError(f"{path}: B{k} differs from the LFSR feedback matrix its seed gives "
                                f"(feedback_mode lfsr regenerates it)")
        if eng.acts[k] in ("tanh", "sigmoid"):  # rebuilt from the formats: another table would be dropped
            table = _int_array(path, data, f"table{k}", eng.tables[k].shape)
            if not np.array_equal(table, eng.tables[k]):
                raise DataError(f"{path}: table{k} differs from the {eng.acts[k]} table its formats give")
    for j in _front_convs(eng):
        fp = eng.precision.front[j]
        eng.set_front_weights(fp.name, _int_array(path, data, f"Wc{j}", eng.front.W[j].shape, fp.weight),
                              _int_array(path, data, f"bc{j}", eng.front.b[j].shape, fp.bias))
    for j in eng.front.learning if eng.front is not None else ():
        for name, dst in ((f"rc{j}", eng.front.rnd_state[j]), (f"nc{j}", eng.front.neuron_state[j])):
            st = _int_array(path, data, name, dst.shape)
            if st.size and (st.min() < 1 or st.max() >= 1 << 32):
                raise DataError(f"{path}: {name} holds a value that is not a non-zero 32-bit generator state")
            dst[:] = st
    eng.rnd_state[:] = _rnd_state(path, data, len(eng.W))
    if eng.precision.rng == "neuron":
        for k, lp in enumerate(eng.precision.layers):
            ns = _int_array(path, data, f"ns{k}", (lp.n_out,))
            if ns.size and (ns.min() < 1 or ns.max() >= 1 << 32):
                raise DataError(f"{path}: ns{k} holds a value that is not a non-zero 32-bit xorshift state")
            eng.neuron_state[k][:] = ns  # in place: the kernels' list holds these arrays
    eng.samples_seen = meta.get("samples_seen", 0)
    eng.epochs_done = meta.get("epochs_done", 0)
    return eng


def _check_layers(path: Path, layers: list[dict], eng) -> None:
    """The metadata's per-layer description is what its network and formats give (else the file was edited):
    every entry the file has is compared with :func:`weights_meta` of the rebuilt engine."""
    if len(layers) != len(eng.W):
        raise DataError(f"{path}: the network has {len(eng.W)} trainable layers, the metadata lists {len(layers)}")
    want = json.loads(json.dumps(weights_meta(eng)["layers"]))  # as the file would hold it
    for lay, ref, name in zip(layers, want, eng.layer_names):
        diff = first_difference(lay, ref)
        if diff:
            key, got, exp = diff
            raise DataError(f"{path}: layer {name}: the file says {key} {got!r:.60}, its network gives {exp!r:.60}")


def first_difference(got, want, key: str = ""):
    """(dotted key, file's value, expected value) of the first entry of ``got`` that differs from ``want``, or
    None; entries the file lacks are not compared."""
    if isinstance(got, dict) and isinstance(want, dict):
        for k, v in got.items():
            diff = first_difference(v, want.get(k), f"{key}.{k}" if key else k)
            if diff:
                return diff
        return None
    return None if got == want and type(got) is type(want) else (key, got, want)


def _check_members(path: Path, data: dict[str, Any], eng) -> None:
    """No array the network does not use (missing ones are found where they are read)."""
    need = {"meta", "rnd_state"}
    for k in range(len(eng.W)):
        need |= {f"W{k}", f"b{k}"}
        if eng._fb_shapes[k] is not None:
            need.add(f"B{k}")
        if eng.acts[k] in ("tanh", "sigmoid"):
            need.add(f"table{k}")
        if eng.precision.rng == "neuron":
            need.add(f"ns{k}")
    need |= {f"{a}c{j}" for j in _front_convs(eng) for a in "Wb"}
    need |= {f"{a}c{j}" for j in (eng.front.learning if eng.front is not None else ()) for a in "rn"}
    extra = sorted(set(data) - need)
    if extra:
        raise DataError(f"{path}: unexpected array {extra[0]!r} (not part of the network of its metadata)")


def _front_convs(eng) -> list[int]:
    """Indices of the conv layers of an engine's frozen front end (none for an MLP)."""
    return [j for j, fp in enumerate(eng.precision.front) if fp.type == "conv2d"]


def _rnd_state(path: Path, data: dict[str, Any], n_layers: int) -> np.ndarray:
    """One LFSR state per layer, each a 32-bit state other than 0 (from 0 the LFSR only ever gives 0, so
    stochastic rounding would silently become truncation)."""
    st = _int_array(path, data, "rnd_state", (n_layers,))
    for k, s in enumerate(data["rnd_state"].tolist()):
        if not 0 <= s < 1 << STATE_BITS:
            raise DataError(f"{path}: rnd_state[{k}] = {s} is not a {STATE_BITS}-bit LFSR state")
        if s == 0:
            raise DataError(f"{path}: rnd_state[{k}] is 0, the LFSR's lock-up state (its stream would stay 0)")
    return st


def clone_engine(eng):
    """An independent copy of an engine (through its weight file, so a copy holds exactly what a file does): same
    class, formats, weights, feedback, LFSR states."""
    with tempfile.TemporaryDirectory(prefix="edgelearn-clone-") as tmp:
        path = Path(tmp) / "state.npz"
        save_weights(eng, path)
        return read_weights(path, type(eng))
