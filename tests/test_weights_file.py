"""Corrupt or malformed engine weight files (issue 15): every command that reads one prints one line naming the file
and what is wrong, exits 2 and writes nothing; a file written by FixedEngine.save still loads bit for bit."""
from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
from helpers import cli_one_line_error

from edgelearn.errors import DataError
from edgelearn.fixed.engine import FixedEngine
from edgelearn.fixed.engine_io import load_weights
from edgelearn.network import default_network, network_from_dict


def _train(eng: FixedEngine, seed: int = 0) -> FixedEngine:
    """A few online steps, so weights and LFSR states differ from their initial values."""
    rng = np.random.default_rng(seed)
    x = rng.random((40, eng.sizes[0]))
    eng.fit(x, rng.integers(0, eng.num_classes, 40), shuffle=False)
    return eng


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """The embedded digits MLP (drtp, tanh/sigmoid tables, STOCH weights, a stored B0) after some learning."""
    path = tmp_path_factory.mktemp("weights") / "good.npz"
    eng = _train(FixedEngine(default_network(), seed=1))
    eng.save(path)
    return path, eng


def _members(path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _rewrite(src, dst, drop=(), meta_json=None, **arrays):
    """A copy of the archive ``src`` with members dropped, replaced or added (``meta_json``: new metadata)."""
    data = _members(src)
    for k in drop:
        del data[k]
    if meta_json is not None:
        data["meta"] = np.array(json.dumps(meta_json))
    data.update(arrays)
    np.savez_compressed(dst, **data)


def _meta(src) -> dict:
    return json.loads(str(_members(src)["meta"]))


def _truncated(src, dst):
    raw = src.read_bytes()
    dst.write_bytes(raw[: len(raw) // 2])


def _flipped(src, dst):
    """One byte flipped in the middle of W0's compressed data (headers intact)."""
    raw = bytearray(src.read_bytes())
    info = zipfile.ZipFile(io.BytesIO(bytes(raw))).getinfo("W0.npy")
    name_len, extra_len = int.from_bytes(raw[info.header_offset + 26:info.header_offset + 28], "little"), \
        int.from_bytes(raw[info.header_offset + 28:info.header_offset + 30], "little")
    pos = info.header_offset + 30 + name_len + extra_len + info.compress_size // 2
    raw[pos] ^= 0xFF
    dst.write_bytes(bytes(raw))


def _npy_renamed(src, dst):
    with open(dst, "wb") as fh:
        np.save(fh, _members(src)["W0"])


def _meta_without_layers(src, dst):
    meta = _meta(src)
    del meta["layers"]
    _rewrite(src, dst, meta_json=meta)


def _out_of_range(src, dst):
    W0 = _members(src)["W0"].copy()
    W0[3, 5] = 1 << 20  # fixed<8,2>: raw values in [-128, 127]
    _rewrite(src, dst, W0=W0)


# name -> (how to build the bad file from the good one, what the message must say)
CASES = {
    "truncated": (_truncated, "corrupt or truncated"),
    "flipped_byte": (_flipped, "corrupt or truncated"),
    "empty": (lambda src, dst: dst.write_bytes(b""), "empty file"),
    "npy_renamed": (_npy_renamed, "a single .npy array"),
    "missing_W1": (lambda src, dst: _rewrite(src, dst, drop=["W1"]), "no array 'W1'"),
    "meta_without_layers": (_meta_without_layers, "metadata has no 'layers'"),
    "meta_a_list": (lambda src, dst: _rewrite(src, dst, meta_json=[1, 2]), "metadata must be a JSON object, got list"),
    "float_weights": (lambda src, dst: _rewrite(src, dst, W0=_members(src)["W0"] + 0.5),
                      "W0 has dtype float64; raw values are integers"),
    "weights_out_of_range": (_out_of_range, "W0 out of range of fixed<8,2,STOCH,SAT> (raw -128..127, the file has"),
    "rnd_state_shape_1": (lambda src, dst: _rewrite(src, dst, rnd_state=np.array([12345], dtype=np.int64)),
                          "rnd_state must have shape (2,), got (1,)"),
    "rnd_state_all_zero": (lambda src, dst: _rewrite(src, dst, rnd_state=np.zeros(2, dtype=np.int64)),
                           "lock-up state"),
    "B_wrong_shape": (lambda src, dst: _rewrite(src, dst, B0=_members(src)["B0"][:, :-1]),
                      "B0 must have shape (10, 128), got (10, 127)"),
}


@pytest.fixture(params=sorted(CASES))
def bad(request, good, tmp_path):
    make, match = CASES[request.param]
    path = tmp_path / f"{request.param}.npz"
    make(good[0], path)
    return path, match


def test_saved_file_loads_bit_for_bit(good):
    path, eng = good
    back = load_weights(path)
    for a, b in zip(eng.weights(), back.weights()):
        assert np.array_equal(a["W"], b["W"]) and np.array_equal(a["b"], b["b"])
    assert np.array_equal(back.B[0], eng.B[0]) and np.array_equal(back.rnd_state, eng.rnd_state)
    assert back.samples_seen == eng.samples_seen == 40


def test_load_weights_names_the_file_and_the_problem(bad):
    path, match = bad
    with pytest.raises(DataError) as exc:
        load_weights(path)
    msg = str(exc.value)
    assert msg.startswith(f"{path}: ") and match in msg and "\n" not in msg, msg


@pytest.mark.parametrize("command", ["rtl", "export-hls"])
def test_cli_one_line_exit_2_nothing_written(command, bad, tmp_path, capsys):
    path, match = bad
    out = tmp_path / "out"
    extra = ["--no-hls4ml"] if command == "export-hls" else []
    cli_one_line_error(capsys, [command, "--weights", str(path), "--out", str(out), *extra], match)
    assert not out.exists()


# --- more of the same kind, through load_weights ----------------------------------------------------------------


def _load_error(path, match):
    with pytest.raises(DataError, match=match) as exc:
        load_weights(path)
    assert str(exc.value).startswith(f"{path}: ")


def test_missing_file_and_a_zip_of_other_things(tmp_path):
    _load_error(tmp_path / "none.npz", "no such weight file")
    with zipfile.ZipFile(tmp_path / "other.npz", "w") as z:
        z.writestr("readme.txt", "not an array")
    _load_error(tmp_path / "other.npz", "no 'meta' entry")


@pytest.mark.parametrize("edit, match", [
    (lambda m: m.update(format="something-else"), "unsupported weight file format 'something-else'"),
    (lambda m: m.update(version=2), "v2"),
    (lambda m: m.pop("network"), "metadata has no 'network'"),
    (lambda m: m.update(seed="1"), "metadata 'seed' must be an integer"),
    (lambda m: m.update(samples_seen=-1), "metadata 'samples_seen' must be a non-negative integer"),
    (lambda m: m["layers"][0].pop("formats"), r"metadata 'layers\[0\]' has no 'formats'"),
    (lambda m: m["layers"][0]["formats"].update(weight=8), r"'layers\[0\].formats.weight' must be a format string"),
    (lambda m: m["layers"][1].update(rule="fa"), "layer out: the file says rule 'fa', its network gives 'drtp'"),
    (lambda m: m["layers"].pop(), "2 trainable layers, the metadata lists 1"),
    # the loader takes the input format of layer 0 only: another one of layer 1 would be dropped
    (lambda m: m["layers"][1]["formats"].update(input="fixed<8,3,RND,SAT>"),
     "layer out: the file says formats.input 'fixed<8,3,RND,SAT>', its network gives 'fixed<8,1,RND,SAT>'"),
    (lambda m: m["layers"][0]["feedback"].update(seed=7), "layer fc1: the file says feedback.seed 7"),
    (lambda m: m["layers"][1].update(accumulation="general"), "the file says accumulation 'general'"),
    (lambda m: m["layers"][0]["feedback"].update(shape=[10, 64]),
     r"layer fc1: the file says feedback.shape \[10, 64\], its network gives \[10, 128\]"),
    # checked against the arrays before the engine would allocate 64 x 10**30 weights
    (lambda m: m["network"]["layers"][1].update(out=10**30), rf"W0 must have shape \(64, {10**30}\), got \(64, 128\)"),
    (lambda m: m["layers"][0]["formats"].update(weight="fixed<0,0>"), "bad network description"),
    (lambda m: m["network"].update(layers=[]), "bad network description"),
])
def test_bad_metadata(good, tmp_path, edit, match):
    meta = _meta(good[0])
    edit(meta)
    path = tmp_path / "w.npz"
    _rewrite(good[0], path, meta_json=meta)
    _load_error(path, match)


def test_meta_that_is_not_text(good, tmp_path):
    path = tmp_path / "w.npz"
    _rewrite(good[0], path, meta=np.arange(3))
    _load_error(path, "'meta' entry must be JSON text")
    _rewrite(good[0], path, meta=np.array("{not json"))
    _load_error(path, "corrupt metadata")


@pytest.mark.parametrize("edit, match", [
    (lambda d: d.update(b1=d["b1"].astype(np.float32)), "b1 has dtype float32; raw values are integers"),
    (lambda d: d.update(b1=d["b1"] > 0), "b1 has dtype bool; raw values are integers"),
    (lambda d: d.update(W1=d["W1"].T.copy()), r"W1 must have shape \(128, 10\), got \(10, 128\)"),
    (lambda d: d.update(b0=d["b0"].reshape(1, -1)), r"b0 must have shape \(128,\), got \(1, 128\)"),
    (lambda d: d.update(b1=np.full(10, -(1 << 40))), "b1 out of range of fixed<"),
    (lambda d: d.update(B0=d["B0"] * 4), "B0 out of range of fixed<"),
    (lambda d: d.update(rnd_state=np.array([1, 1 << 32])), r"rnd_state\[1\] = 4294967296 is not a 32-bit LFSR state"),
    (lambda d: d.update(rnd_state=np.array([-5, 7])), r"rnd_state\[0\] = -5 is not a 32-bit LFSR state"),
    (lambda d: d.update(rnd_state=np.array([9, 0])), r"rnd_state\[1\] is 0, the LFSR's lock-up state"),
    (lambda d: d.update(rnd_state=d["rnd_state"].astype(np.float64)), "rnd_state has dtype float64"),
    (lambda d: d.update(table0=d["table0"][:-1]), r"table0 must have shape \(1024,\)"),
    (lambda d: d.update(table1=d["table1"] + 1), "table1 differs from the sigmoid table"),
    (lambda d: d.update(B1=np.zeros((10, 10), np.int64)), "unexpected array 'B1'"),
    (lambda d: d.pop("table0"), "no array 'table0'"),
    (lambda d: d.pop("rnd_state"), "no array 'rnd_state'"),
])
def test_bad_arrays(good, tmp_path, edit, match):
    data = _members(good[0])
    edit(data)
    path = tmp_path / "w.npz"
    np.savez_compressed(path, **data)
    _load_error(path, match)


def test_lfsr_feedback_must_be_the_regenerated_matrix(tmp_path):
    """In lfsr mode B is regenerated from its seed, so a stored B that differs would be silently dropped."""
    spec = network_from_dict({"name": "t", "input_shape": [12], "num_classes": 4, "rule": "dfa",
                              "precision": {"preset": 8, "feedback_mode": "lfsr"},
                              "layers": [{"type": "linear", "out": 8, "act": "relu", "name": "fc1"},
                                         {"type": "linear", "out": 4, "name": "out"}]})
    eng = _train(FixedEngine(spec, seed=3))
    eng.save(tmp_path / "good.npz")
    back = load_weights(tmp_path / "good.npz")
    assert np.array_equal(back.B[0], eng.B[0]) and np.array_equal(back.rnd_state, eng.rnd_state)
    B0 = _members(tmp_path / "good.npz")["B0"].copy()
    B0[0, 0] += 1 if B0[0, 0] < 127 else -1
    _rewrite(tmp_path / "good.npz", tmp_path / "bad.npz", B0=B0)
    _load_error(tmp_path / "bad.npz", "B0 differs from the LFSR feedback matrix")
