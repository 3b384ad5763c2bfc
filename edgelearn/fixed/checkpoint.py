"""Epoch checkpoints of a fixed-point simulation: the engine's whole state and its float twin's, in one file.

``edgelearn simulate`` writes one after every epoch and resumes from it, so that a long run (hours for the CONV
networks on MNIST) survives an interruption and still ends with the bits of an uninterrupted run: the engine's
part is its weight file (weights, feedback, LFSR and xorshift states, epochs done; edgelearn.fixed.weights_file)
plus what that file does not hold (the event counters, the learning history), the twin's part its float64 words.
"""
from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError
from ..fileio import write_bytes_atomic
from . import engine_kernels as K
from .engine import check_spec
from .weights_file import first_difference, read_weights, save_weights

#: the file a simulation's output folder holds while (and after) it runs
FILE_NAME = "checkpoint.npz"


def save(path, eng, twin, run: dict[str, Any]) -> None:
    """Write the state of ``eng`` and ``twin`` (None: no twin) after an epoch to ``path``, atomically; ``run``
    identifies the simulation (its network, formats, data and seed: a resume must match it)."""
    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="edgelearn-ckpt-", dir=path.parent) as tmp:
        wpath = Path(tmp) / "engine.npz"
        save_weights(eng, wpath)
        engine_file = np.frombuffer(wpath.read_bytes(), dtype=np.uint8)
    state = {"run": run, "epochs_done": eng.epochs_done, "history": eng.history,
             "twin_history": None if twin is None else twin.history}
    arrays = {"state": np.array(json.dumps(state)), "engine": engine_file, "cnt": eng.cnt}
    if eng.front is not None:
        arrays["front_cnt"] = eng.front.cnt
    if twin is not None:
        for k in range(len(twin.W)):
            arrays[f"tW{k}"], arrays[f"tb{k}"], arrays[f"tB{k}"] = twin.W[k], twin.b[k], twin.B[k]
        for j, lay in enumerate(twin.front or ()):
            if lay["type"] == "conv2d":
                arrays[f"tWc{j}"], arrays[f"tbc{j}"] = lay["W"], lay["b"]
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    write_bytes_atomic(path, buf.getvalue())


def load(path, eng, twin, run: dict[str, Any]) -> int:
    """Restore ``eng`` and ``twin`` (built for ``run`` as the interrupted simulation built them, data quantized)
    from the checkpoint at ``path``; returns the epochs it holds. A checkpoint of another run, or a file that is not
    a whole checkpoint, is a :class:`ConfigError` naming it."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
        state = json.loads(str(data["state"]))
        if not isinstance(state, dict):
            raise TypeError("state")
    except Exception as exc:  # noqa: BLE001 - any damage is the same message
        raise ConfigError(f"{path}: cannot read the checkpoint ({type(exc).__name__}); delete it or use "
                          f"--no-resume") from None
    held = state.get("run")
    if held != run:
        diff = first_difference(held, run) or first_difference(run, held)
        what = f"{diff[0]} ({diff[1]!r} there, {diff[2]!r} now)" if diff else "configuration"
        raise ConfigError(f"{path.parent} holds a simulation with another {what}; use another --out or --no-resume")
    try:
        return _restore(data, state, eng, twin)
    except DataError as exc:  # the engine's part, checked by the weight-file reader
        raise ConfigError(f"{path}: damaged engine state ({exc})") from None
    except (KeyError, ValueError, TypeError) as exc:  # a member missing or of another shape
        raise ConfigError(f"{path}: damaged checkpoint ({type(exc).__name__}: {exc}); delete it or use "
                          f"--no-resume") from None


def _restore(data: dict[str, np.ndarray], state: dict[str, Any], eng, twin) -> int:
    if (twin is None) != (state["twin_history"] is None):
        raise ValueError(f"written {'without' if twin is not None else 'with'} the float twin")
    with tempfile.TemporaryDirectory(prefix="edgelearn-ckpt-") as tmp:
        wpath = Path(tmp) / "engine.npz"
        wpath.write_bytes(data["engine"].tobytes())
        src = read_weights(wpath, type(eng), check_spec)
    _copy_engine(src, eng)
    eng.cnt[...] = data["cnt"]  # after the data's quantization, which counted its input events again
    if eng.front is not None:
        eng.front.cnt[...] = data["front_cnt"]
    eng.history[:] = state["history"]
    if twin is not None:
        for k in range(len(twin.W)):  # in place: the kernels' typed lists hold these arrays
            twin.W[k][...], twin.b[k][...], twin.B[k][...] = data[f"tW{k}"], data[f"tb{k}"], data[f"tB{k}"]
        for j, lay in enumerate(twin.front or ()):
            if lay["type"] == "conv2d":
                lay["W"][...], lay["b"][...] = data[f"tWc{j}"], data[f"tbc{j}"]
        twin.epochs_done = state["epochs_done"]
        twin.history[:] = state["twin_history"]
    return int(state["epochs_done"])


def _copy_engine(src, eng) -> None:
    """Everything a weight file holds, from the engine read from it into ``eng`` (whose arrays the kernels hold)."""
    for k in range(len(eng.W)):
        eng.set_weights(k, src.W[k], src.b[k])
        if eng._fb_shapes[k] is not None and not eng.P[k, K.FB_LFSR]:
            eng.set_feedback(k, src.B[k])
        if eng.precision.rng == "neuron":
            eng.neuron_state[k][...] = src.neuron_state[k]
    if eng.front is not None:
        for j, fp in enumerate(eng.precision.front):
            if fp.type == "conv2d":
                eng.front.W[j][...], eng.front.b[j][...] = src.front.W[j], src.front.b[j]
        for j in eng.front.learning:
            eng.front.rnd_state[j][...] = src.front.rnd_state[j]
            eng.front.neuron_state[j][...] = src.front.neuron_state[j]
    eng.rnd_state[...] = src.rnd_state
    eng.samples_seen, eng.epochs_done = src.samples_seen, src.epochs_done
