"""Loading a float-trained model into the fixed-point engine: pre-train in float, keep learning on chip.

A ``train`` checkpoint (``OUT/checkpoint.pt``) holds the torch model's state: per layer its weight and bias and,
for the rules with a fixed feedback matrix, that matrix as a buffer (``el_feedback``). Each tensor is quantized into
the engine's format of it with round-to-nearest and saturation (docs/arithmetic.md sections 3-5) -- whatever
rounding the format uses for its *updates*, a one-off load is rounded to nearest -- and the saturated values are
counted, so the user sees what the word length cut.

Feedback goes with the weights where both sides define the same matrix: dfa / sdfa / drtp (the C x n_out
projection), fa and kp (the layer's own B, the transpose of the torch buffer; kp's into its trained format
``fb_q``), and the factors of ldfa / dldfa (torch keeps ``Qt = Q^T`` and ``P`` as parameters ``el_ldfa_q`` /
``el_ldfa_p``; the engine packs ``Q`` over ``P`` in one matrix, ``Q`` in ``fb_q``, ``P`` in ``fb_p`` read with the
layer's extra fractional bits, docs/arithmetic.md §16). The fixed random projections need stored feedback
(``--feedback stored``): a regenerated (LFSR) matrix cannot take loaded values. Layers whose checkpoint has no
matching feedback (trained with another rule, or factors of another rank) keep the engine's own random feedback,
and the report says so.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError
from ..program import DIRECT_RULES

#: the buffer the torch rules keep a fixed feedback matrix in (torch_ref/rules.py)
FEEDBACK_BUFFER = "el_feedback"


def read_checkpoint(path) -> dict[str, np.ndarray]:
    """The model tensors of a ``train`` checkpoint, as float64 arrays by state-dict key."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--init-from: no such file: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's input error
        raise DataError(f"--init-from: {path} is not a readable torch checkpoint ({type(exc).__name__})") from exc
    state = ckpt.get("model") if isinstance(ckpt, dict) else None
    if state is None and isinstance(ckpt, dict) and all(hasattr(v, "shape") for v in ckpt.values()):
        state = ckpt  # a bare state_dict (torch.save(model.state_dict(), ...))
    if not isinstance(state, dict) or not state:
        raise DataError(f"--init-from: {path} holds no model state (expected edgelearn train's checkpoint.pt "
                        "or a torch state_dict)")
    out = {}
    for key, t in state.items():
        if hasattr(t, "detach"):
            out[str(key)] = t.detach().to(torch.float64).cpu().numpy()
    return out


def _quantize(fmt, x: np.ndarray) -> tuple[np.ndarray, int]:
    """Round to nearest, saturate; returns the raw words and how many values saturated."""
    f = fmt.with_(rounding="RND", overflow="SAT")
    raw = f.quantize(x)
    saturated = int(np.count_nonzero((x > f.max_value) | (x < f.min_value)))
    return raw, saturated


def _take(state: dict[str, np.ndarray], key: str, shape: tuple[int, ...], where: str) -> np.ndarray:
    if key not in state:
        raise DataError(f"--init-from: the checkpoint has no {key!r} ({where}); its layers: "
                        f"{', '.join(sorted({k.rsplit('.', 1)[0] for k in state}))}")
    a = state[key]
    if tuple(a.shape) != tuple(shape):
        raise DataError(f"--init-from: {key} has shape {tuple(a.shape)}, the engine's {where} needs {tuple(shape)}")
    return a


def load_float_state(eng, state: dict[str, np.ndarray]) -> dict[str, Any]:
    """Quantize float tensors (torch layout, state-dict keys) into ``eng``; returns what was loaded, per layer and
    tensor: the count of values and of saturated values, and the feedback source."""
    from ..torch_ref.ldfa import P_NAME, Q_NAME  # the reference's parameter names (imports torch)

    report: dict[str, Any] = {}
    checks = []  # everything is read and quantized before the engine changes (no half-loaded engine)
    prec = eng.precision
    for j, fp in enumerate(getattr(prec, "front", None) or []):
        if fp.type != "conv2d":
            continue
        shape = eng.front.W[j].shape  # (C_out, C_in, k, k), torch's layout
        Wf = _take(state, f"{fp.name}.weight", shape, f"conv layer {fp.name}")
        W, sw = _quantize(fp.weight, Wf)
        b, sb = (None, 0)
        if f"{fp.name}.bias" in state:
            b, sb = _quantize(fp.bias, _take(state, f"{fp.name}.bias", (shape[0],), f"conv layer {fp.name}"))
        checks.append(("front", fp.name, W, b, None))
        report[fp.name] = {"weight": {"n": int(W.size), "saturated": sw},
                           "bias": {"n": 0 if b is None else int(b.size), "saturated": sb}}
    for k, lp in enumerate(prec.layers):
        name = lp.name
        Wf = _take(state, f"{name}.weight", (lp.n_out, lp.n_in), f"layer {name}")
        W, sw = _quantize(lp.weight, Wf.T)
        b, sb = None, 0
        if f"{name}.bias" in state:
            b, sb = _quantize(lp.bias, _take(state, f"{name}.bias", (lp.n_out,), f"layer {name}"))
        rep = {"weight": {"n": int(W.size), "saturated": sw},
               "bias": {"n": 0 if b is None else int(b.size), "saturated": sb}}
        B = None
        shape = eng._fb_shapes[k]
        key = f"{name}.{FEEDBACK_BUFFER}"
        rule = eng.rules[k]
        r = eng.program_layers[k].ldfa_rank
        if shape is not None and r and f"{name}.{Q_NAME}" in state and f"{name}.{P_NAME}" in state:
            B, rep["feedback"] = _factors(eng, k, state[f"{name}.{Q_NAME}"], state[f"{name}.{P_NAME}"], shape, r)
        elif shape is not None and key in state and rule == "kp":
            B, sB = _quantize(lp.fb_q or lp.feedback, _take(state, key, shape[::-1], f"layer {name}'s kp feedback").T)
            rep["feedback"] = {"n": int(B.size), "saturated": sB, "source": "checkpoint"}
        elif shape is not None and key in state and not lp.is_output and rule in DIRECT_RULES + ("fa",):
            Bf = state[key] if rule in DIRECT_RULES else state[key].T  # fa: torch (out, in), engine (n_in, n_out)
            if tuple(Bf.shape) != tuple(shape):
                raise DataError(f"--init-from: {key} has shape {tuple(state[key].shape)}, layer {name}'s "
                                f"{rule} feedback needs {tuple(shape) if rule in DIRECT_RULES else tuple(shape[::-1])}")
            if eng.precision.feedback_mode != "stored":
                raise ConfigError(f"--init-from: layer {name}'s feedback comes from the checkpoint, which needs "
                                  "stored feedback (--feedback stored); a regenerated (LFSR) matrix cannot be loaded")
            B, sB = _quantize(lp.feedback, Bf)
            rep["feedback"] = {"n": int(B.size), "saturated": sB, "source": "checkpoint"}
        elif shape is not None:
            rep["feedback"] = {"source": "engine (the checkpoint has no matching feedback for rule " + rule + ")"}
        checks.append(("layer", k, W, b, B))
        report[name] = rep
    for kind, where, W, b, B in checks:
        if kind == "front":
            eng.set_front_weights(where, W, b)
        else:
            eng.set_weights(where, W, b)
            if B is not None:
                eng.set_feedback(where, B)
    return report


def _factors(eng, k: int, Qt: np.ndarray, Pf: np.ndarray, shape: tuple[int, int], r: int):
    """ldfa / dldfa layer k's packed feedback from the checkpoint's factors: ``Q = Qt^T`` (rows x r) in the
    ``fb_q`` format over ``P`` (r x m) in ``fb_p`` with the layer's extra fractional bits (what the engine reads)."""
    lp = eng.precision.layers[k]
    nq = shape[0] - r
    m = eng.num_classes if eng.rules[k] == "dldfa" else lp.n_out
    for a, want, what in ((Qt, (r, nq), "Q^T"), (Pf, (r, m), "P")):
        if tuple(a.shape) != want:
            raise DataError(f"--init-from: layer {lp.name}'s {eng.rules[k]} factor {what} has shape {tuple(a.shape)}, "
                            f"the engine's rank-{r} feedback needs {want} (train with the same rank)")
    Q, sq = _quantize(lp.fb_q, Qt.T)
    P, sp = _quantize(lp.fb_p, Pf * 2.0 ** int(eng.program_layers[k].ldfa_p_shift))
    packed = np.zeros(shape, dtype=np.int64)
    packed[:nq, :r], packed[nq:, :m] = Q, P
    return packed, {"n": int(Q.size + P.size), "saturated": sq + sp, "source": "checkpoint (Q and P)"}


def load_train_checkpoint(eng, path) -> dict[str, Any]:
    """:func:`read_checkpoint` then :func:`load_float_state`."""
    return load_float_state(eng, read_checkpoint(path))
