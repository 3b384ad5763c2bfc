"""rng: neuron (docs/arithmetic.md §9a): one xorshift32 generator per output neuron feeds the STOCH draws.

* the generator: committed conformance vectors (tests/vectors/xorshift32.json: first draws of a few seeds, the start
  states of a small layer) from the Python-int definition, the compiled step equal to it, the hardware's XOR
  network (xorshift_masks) equal to it by linearity;
* the engine against a slow pure-Python transcription of §9 / §9a / §12 written here (Fractions, Python ints, one
  draw per STOCH assignment from generator i of column i): online with zero inputs (rows not written draw nothing),
  an update format (two draws per weight, the update's first), a minibatch (rows touched); the transcription's
  weights after three online steps of a tiny network are committed in the vectors and the engine must give them;
* the result does not depend on the engine's own choice of kernel (int32 row kernel vs the general per-weight
  path); determinism; the states travel through weight files and the golden trace.

Regenerate the vectors (only when the definition changes): ``python tests/test_rng_neuron.py --write``.
"""
from __future__ import annotations

import json
import math
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from edgelearn.errors import ConfigError
from edgelearn.fixed import engine_kernels as K
from edgelearn.fixed.engine import FixedEngine
from edgelearn.fixed.lfsr import derive_seed
from edgelearn.fixed.xorshift import neuron_seeds, py_xorshift32, xorshift32, xorshift_masks
from edgelearn.network import network_from_dict
from edgelearn.program import ROUNDING_STREAM

VECTORS = Path(__file__).parent / "vectors" / "xorshift32.json"
SEEDS = (1, 2, 0x80000000, 0xFFFFFFFF, 0xDEADBEEF)


def _spec(n_in=6, hidden=5, classes=3, rule="drtp", precision=None, act="tanh"):
    return network_from_dict({
        "name": "tiny", "input_shape": [n_in], "num_classes": classes, "loss": "bce", "rule": rule,
        "layers": [{"type": "linear", "out": hidden, "act": act, "name": "fc1"},
                   {"type": "linear", "out": classes, "name": "out"}],
        "precision": {"preset": 8, "rng": "neuron", **(precision or {})}})


# --- the transcription of §9 / §9a / §12 (Python ints and Fractions only) ------------------------------------------


def _draw(states: list[int], i: int) -> int:
    """§9a: a draw is one step of generator i; the draw is the new state."""
    states[i] = py_xorshift32(states[i])
    return states[i]


def _round(value: Fraction, frac: int, rounding: str, take) -> int:
    """§3 / §9: ``value`` rounded to a multiple of 2**-frac, as raw (STOCH: floor(v * 2**F + d * 2**-32), one draw
    taken even when nothing is rounded)."""
    scaled = value * (1 << frac) if frac >= 0 else value / (1 << -frac)
    if rounding == "STOCH":
        return math.floor(scaled + Fraction(take(), 1 << 32))
    if rounding == "TRN":
        return math.floor(scaled)
    assert rounding == "RND"
    return math.floor(scaled + Fraction(1, 2))


def _overflow(r: int, fmt) -> int:
    lo, hi = (-(1 << (fmt.width - 1)), (1 << (fmt.width - 1)) - 1) if fmt.signed else (0, (1 << fmt.width) - 1)
    if fmt.overflow == "SAT":
        return min(max(r, lo), hi)
    assert fmt.overflow == "WRAP"
    return (r - lo) % (1 << fmt.width) + lo


def _lsb(frac: int) -> Fraction:
    return Fraction(1, 1 << frac) if frac >= 0 else Fraction(1 << -frac)


def _update_one(w: int, inc: Fraction, fmt, upd, take) -> int:
    """§12: w + round(increment) into the weight format (the rounded increment is added exactly, then overflow);
    with an update format the increment is assigned to it first (its own draw first), then w + it is assigned to
    the weight format (the weight's draw)."""
    if upd is None:
        return _overflow(w + _round(inc, fmt.frac, fmt.rounding, take), fmt)
    du = _overflow(_round(inc, upd.frac, upd.rounding, take), upd)
    return _overflow(_round(w * _lsb(fmt.frac) + du * _lsb(upd.frac), fmt.frac, fmt.rounding, take), fmt)


def ref_layer_update(lp, W, b, rows, incs, bias_incs, states):
    """Layer update per §9a: rows j ascending (only ``rows``), columns i, then the biases; every STOCH assignment to
    column i takes generator i's next draw.  ``incs[j][i]`` / ``bias_incs[i]`` are the exact increments (values)."""
    for j in rows:
        for i in range(lp.n_out):
            W[j][i] = _update_one(W[j][i], incs[j][i], lp.weight, lp.update, lambda i=i: _draw(states, i))
    for i in range(lp.n_out):
        b[i] = _update_one(b[i], bias_incs[i], lp.bias, lp.update, lambda i=i: _draw(states, i))


def _online_increments(eng, k, shift):
    """Exact increments -eta * delta_i * x_j (values) of layer k for the sample the engine just ran (its modulatory
    signal and its input, which the engine keeps in its work buffers), and the rows written (x_j != 0)."""
    lp = eng.precision.layers[k]
    x = [int(v) for v in eng._acts[k]]
    d = [int(v) for v in eng._ds[k]]
    den = 1 << (lp.error.frac + lp.input.frac + shift)
    incs = [[Fraction(d[i] * x[j], den) for i in range(lp.n_out)] for j in range(lp.n_in)]
    bias = [Fraction(d[i], 1 << (lp.error.frac + shift)) for i in range(lp.n_out)]
    return [j for j in range(lp.n_in) if x[j] != 0], incs, bias


def _to_lists(eng):
    return [[[int(v) for v in row] for row in w["W"]] for w in eng.weights()], \
           [[int(v) for v in w["b"]] for w in eng.weights()]


def _tiny_run(eng, X, labels):
    """Step the engine online through the samples; after each step apply the transcription to the weights before
    it (with the step's signals) and return the transcription's weights / biases / states after every step."""
    W, b = _to_lists(eng)
    states = [[int(v) for v in ns] for ns in eng.neuron_state]
    after = []
    for x, y in zip(X, labels):
        eng.step(x, int(y))
        for k in (0, 1):  # DRTP: the hidden layer updated right after its forward pass, the output layer at the end
            lp = eng.precision.layers[k]
            rows, incs, bias = _online_increments(eng, k, lp.lr_shift)
            ref_layer_update(lp, W[k], b[k], rows, incs, bias, states[k])
        after.append({"W": json.loads(json.dumps(W)), "b": json.loads(json.dumps(b))})
    return after, states


def _tiny_case():
    spec = _spec()
    eng = FixedEngine(spec, seed=3)
    rng = np.random.default_rng(5)
    x = rng.random((3, 6))
    x[x < 0.4] = 0  # rows that are not written draw nothing
    X = eng.quantize_inputs(x)
    assert (X == 0).any()
    return eng, X, [0, 2, 1]


def _make_vectors() -> dict:
    eng, X, labels = _tiny_case()
    W0, b0 = _to_lists(eng)
    after, states = _tiny_run(eng, X, labels)
    layer_seed = derive_seed(7, ROUNDING_STREAM + 1)
    draws = {}
    for s in SEEDS:
        st, out = s, []
        for _ in range(8):
            st = py_xorshift32(st)
            out.append(st)
        draws[f"{s:#010x}"] = out
    return {
        "about": "docs/arithmetic.md §9a (rng: neuron); tests/test_rng_neuron.py writes and checks this file",
        "xorshift32_first_draws": draws,
        "neuron_seeds": {"seed": 7, "layer": 1, "layer_seed": layer_seed, "n_out": 6,
                         "states": [derive_seed(layer_seed, i) for i in range(6)]},
        "tiny_net": {"network": eng.spec.to_dict(), "seed": 3, "X_raw": X.astype(int).tolist(), "labels": labels,
                     "W_init": W0, "b_init": b0, "after_step": after, "neuron_state_end": states},
    }


@pytest.fixture(scope="module")
def vectors():
    return json.loads(VECTORS.read_text())


# --- the generator --------------------------------------------------------------------------------------------------


def test_first_draws_and_seeds_match_the_vectors(vectors):
    for key, want in vectors["xorshift32_first_draws"].items():
        st, got = int(key, 16), []
        for _ in want:
            st = py_xorshift32(st)
            got.append(st)
        assert got == want
    ns = vectors["neuron_seeds"]
    assert derive_seed(ns["seed"], ROUNDING_STREAM + ns["layer"]) == ns["layer_seed"]
    assert neuron_seeds(ns["layer_seed"], ns["n_out"]).tolist() == ns["states"]
    assert all(0 < s < 1 << 32 for s in ns["states"])


def test_compiled_step_equals_the_definition():
    import numba

    @numba.njit
    def run(states, n):
        out = np.empty((n, states.shape[0]), dtype=np.uint32)
        for t in range(n):
            for i in range(states.shape[0]):
                states[i] = xorshift32(states[i])
                out[t, i] = states[i]
        return out

    rng = np.random.default_rng(0)
    st = np.concatenate([np.array([1, 0x80000000, 0xFFFFFFFF, 0x80000001], dtype=np.uint32),
                         rng.integers(1, 1 << 32, 60, dtype=np.uint64).astype(np.uint32)])
    got = run(st.copy(), 5)
    for i, s in enumerate(st.tolist()):
        for t in range(5):
            s = py_xorshift32(s)
            assert int(got[t, i]) == s


def test_xor_network_equals_the_definition():
    masks = xorshift_masks()
    assert max(bin(m).count("1") for m in masks) <= 7
    rng = np.random.default_rng(1)
    for s in [1, 0xFFFFFFFF] + [int(v) for v in rng.integers(1, 1 << 32, 300)]:
        nxt = py_xorshift32(s)
        assert all(bin(s & m).count("1") & 1 == (nxt >> b) & 1 for b, m in enumerate(masks))


# --- the engine against the transcription ---------------------------------------------------------------------------


def test_engine_gives_the_committed_tiny_net(vectors):
    """Three online DRTP steps (zero inputs included) of the tiny network: the engine's weights after every step and
    its generator states at the end are the transcription's committed ones."""
    tiny = vectors["tiny_net"]
    eng = FixedEngine(network_from_dict(tiny["network"]), seed=tiny["seed"])
    W0, b0 = _to_lists(eng)
    assert (W0, b0) == (tiny["W_init"], tiny["b_init"])
    for x, y, want in zip(tiny["X_raw"], tiny["labels"], tiny["after_step"]):
        eng.step(np.array(x), y)
        assert list(_to_lists(eng)) == [want["W"], want["b"]]
    assert [ns.tolist() for ns in eng.neuron_state] == tiny["neuron_state_end"]


def test_engine_equals_transcription_online():
    eng, X, labels = _tiny_case()
    after, states = _tiny_run(eng, X, labels)
    assert list(_to_lists(eng)) == [after[-1]["W"], after[-1]["b"]]
    assert [ns.tolist() for ns in eng.neuron_state] == states


@pytest.mark.parametrize("wfmt", ["fixed<8,2,STOCH,SAT>", "fixed<8,2,STOCH,WRAP>"])
def test_engine_equals_transcription_with_update_format(wfmt):
    """An update format (STOCH): the general per-weight path, two draws of generator i per weight (update first)."""
    eng = FixedEngine(_spec(precision={"update": "fixed<10,0,STOCH,SAT>", "weight": wfmt, "lr_shift": 3}), seed=4)
    assert eng.P[:, K.FAST_W].sum() == 0
    rng = np.random.default_rng(2)
    x = rng.random((4, 6))
    x[x < 0.3] = 0
    X = eng.quantize_inputs(x)
    after, states = _tiny_run(eng, X, [1, 0, 2, 1])
    assert list(_to_lists(eng)) == [after[-1]["W"], after[-1]["b"]]
    assert [ns.tolist() for ns in eng.neuron_state] == states


def test_engine_equals_transcription_minibatch():
    """A minibatch: the rows touched by the batch, ascending; increments the exact sums, shifted by the batch."""
    eng = FixedEngine(_spec(precision={"lr_shift": 2}), seed=6, batch_size=4, mode="batch")
    rng = np.random.default_rng(3)
    x = rng.random((3, 6))
    x[:, [1, 4]] = 0  # rows never touched in the batch
    x[0, 2] = 0
    X = eng.quantize_inputs(x)
    W, b = _to_lists(eng)
    states = [[int(v) for v in ns] for ns in eng.neuron_state]
    eng._run(X, np.array([0, 1, 2]), np.arange(3), 0, 3)  # a partial batch: accumulated, not applied yet
    shift_b = eng.batch_shift
    for k in (0, 1):
        lp = eng.precision.layers[k]
        sh = lp.lr_shift + shift_b
        U = eng._Us[k]
        rows = [j for j in range(lp.n_in) if eng._touched[k][j]]
        incs = [[Fraction(int(U[j, i]), 1 << (lp.error.frac + lp.input.frac + sh)) for i in range(lp.n_out)]
                for j in range(lp.n_in)]
        bias = [Fraction(int(eng._Ubs[k][i]), 1 << (lp.error.frac + sh)) for i in range(lp.n_out)]
        ref_layer_update(lp, W[k], b[k], rows, incs, bias, states[k])
    assert 1 not in [j for j in range(6) if eng._touched[0][j]]
    eng.flush()
    assert list(_to_lists(eng)) == [W, b]
    assert [ns.tolist() for ns in eng.neuron_state] == states


# --- properties ----------------------------------------------------------------------------------------------------


def _general(eng):
    eng.P[:, K.FAST_W] = 0
    eng.P[:, K.FAST_B] = 0
    return eng


@pytest.mark.parametrize("hidden,ov,lr", [(10, "SAT", 6), (70, "WRAP", 6), (33, "SAT", -10)])
def test_result_does_not_depend_on_the_kernel(hidden, ov, lr):
    """The int32 row kernel (short rows, long rows, increments above the LSB: s <= 0, draws taken but unused) and
    the general per-weight path give the same bits, counters and generator states."""
    prec = {"lr_shift": lr, "weight": f"fixed<8,2,STOCH,{ov}>", "bias": f"fixed<8,2,STOCH,{ov}>"}
    spec = _spec(20, hidden, 4, precision=prec)
    rng = np.random.default_rng(hidden)
    x = rng.random((30, 20))
    x[rng.random(x.shape) < 0.5] = 0
    y = rng.integers(0, 4, 30)
    fast = FixedEngine(spec, seed=2)
    assert fast.P[:, K.FAST32_W].all() and fast.P[:, K.RNG_N].all()
    gen = _general(FixedEngine(spec, seed=2))
    for e in (fast, gen):
        e.fit(x, y, epochs=2)
    for a, c in zip(fast.weights(), gen.weights()):
        assert np.array_equal(a["W"], c["W"]) and np.array_equal(a["b"], c["b"])
    assert np.array_equal(fast.cnt, gen.cnt)
    assert all(np.array_equal(a, c) for a, c in zip(fast.neuron_state, gen.neuron_state))
    if lr < 0:
        assert fast.counters["fc1"]["weight"]["overflow"] > 0


def test_deterministic_and_seeded():
    spec = _spec(12, 20, 3)
    rng = np.random.default_rng(9)
    x, y = rng.random((25, 12)), rng.integers(0, 3, 25)
    runs = []
    for seed in (1, 1, 2):
        e = FixedEngine(spec, seed=seed)
        e.fit(x, y)
        runs.append(e)
    assert np.array_equal(runs[0].W[0], runs[1].W[0]) and np.array_equal(runs[0].b[1], runs[1].b[1])
    assert np.array_equal(runs[0].neuron_state[0], runs[1].neuron_state[0])
    assert not np.array_equal(runs[0].neuron_state[0], runs[2].neuron_state[0])
    # rng: neuron does not move the layer LFSRs; rng: layer does not move the neuron generators
    assert np.array_equal(runs[0].rnd_state, FixedEngine(spec, seed=1).rnd_state)
    lay = FixedEngine(_spec(12, 20, 3, precision={"rng": "layer"}), seed=1)
    lay.fit(x, y)
    assert all(np.array_equal(a, c) for a, c in zip(lay.neuron_state, FixedEngine(spec, seed=1).neuron_state))
    assert not np.array_equal(lay.W[0], runs[0].W[0])


def test_states_travel_through_weight_files_and_the_golden_trace(tmp_path):
    """Generators are learned state: a reloaded engine continues exactly as one that never stopped; the golden
    trace and the lowered program carry the per-neuron states and the setting."""
    from edgelearn.fixed.engine_io import load_weights
    from edgelearn.fixed.lower import trace

    spec = _spec(10, 12, 3)
    rng = np.random.default_rng(4)
    x, y = rng.random((20, 10)), rng.integers(0, 3, 20)
    a = FixedEngine(spec, seed=5)
    a.fit(x[:10], y[:10], shuffle=False)
    a.save(tmp_path / "w.npz")
    c = load_weights(tmp_path / "w.npz")
    assert c.precision.rng == "neuron"
    g = trace(c, c.quantize_inputs(x[10:13]), y[10:13])
    for e in (a, c):
        e.fit(x[10:], y[10:], shuffle=False)
    for wa, wc in zip(a.weights(), c.weights()):
        assert np.array_equal(wa["W"], wc["W"]) and np.array_equal(wa["b"], wc["b"])
    assert all(np.array_equal(p, q) for p, q in zip(a.neuron_state, c.neuron_state))
    e = load_weights(tmp_path / "w.npz")
    for xs, ys in zip(e.quantize_inputs(x[10:13]), y[10:13]):
        e.step(xs, int(ys))
    assert [ns.tolist() for ns in g.neuron_state] == [ns.tolist() for ns in e.neuron_state]
    prog = e.program()
    assert prog.rng == "neuron" and [ns.tolist() for ns in prog.neuron_state] == [ns.tolist() for ns in e.neuron_state]
    assert e.describe()["rng"] == "neuron"


def test_bad_rng_setting_is_one_config_error():
    with pytest.raises(ConfigError, match="rng must be one of layer, neuron, got 'lane'"):
        FixedEngine(_spec(precision={"rng": "lane"}))
    assert FixedEngine(_spec(), rng="layer").precision.rng == "layer"  # the argument overrides the network's


def test_command_line_rng(tmp_path, capsys):
    """--rng of the engine-defining commands reaches the engine; with --weights (which carries it) it is refused."""
    from edgelearn.cli import build_parser, main
    from edgelearn.commands.common import engine_from_args

    args = build_parser().parse_args(["rtl", "--rng", "neuron", "--out", str(tmp_path / "o")])
    assert engine_from_args(args, "rtl").precision.rng == "neuron"
    assert build_parser().parse_args(["simulate", "--rng", "neuron"]).rng == "neuron"
    FixedEngine(_spec()).save(tmp_path / "w.npz")
    assert main(["export-hls", "--weights", str(tmp_path / "w.npz"), "--rng", "layer",
                 "--out", str(tmp_path / "h")]) == 2
    assert "drop --rng" in capsys.readouterr().err


if __name__ == "__main__" and "--write" in sys.argv:
    VECTORS.parent.mkdir(exist_ok=True)
    VECTORS.write_text(json.dumps(_make_vectors(), indent=1) + "\n")
    print(f"wrote {VECTORS}")
