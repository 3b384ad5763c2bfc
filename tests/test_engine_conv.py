"""The engine's frozen convolutional front end (docs/arithmetic.md §15): integer conv / pooling against an
independent numpy reference, the float twin against torch, engine vs twin at 32 bits, determinism, refusals."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgelearn.cli import main
from edgelearn.errors import ConfigError, RuleError
from edgelearn.fixed import conv
from edgelearn.fixed.arith import accumulate, convert, round_shift
from edgelearn.fixed.engine import FixedEngine
from edgelearn.fixed.formats import ROUNDING
from edgelearn.network import network_from_dict


def conv_spec(act="tanh", pool="maxpool", stride=1, padding=1, out_act="none", loss="bce", rule="drtp",
              conv_rule="shallow", precision=None, two=False):
    """A tiny conv net: 1x8x8 input, 4 kernels 3x3, a 2x2 pool, (a second conv,) fc 16, fc 10."""
    layers = [{"type": "conv2d", "out": 4, "kernel": 3, "stride": stride, "padding": padding, "act": act,
               "name": "conv1"}]
    if pool:
        layers.append({"type": pool, "kernel": 2, "name": "pool1"})
    if two:
        layers.append({"type": "conv2d", "out": 3, "kernel": 2, "act": "hardtanh", "name": "conv2"})
    layers += [{"type": "flatten"}, {"type": "linear", "out": 16, "act": "hardtanh", "name": "fc1"},
               {"type": "linear", "out": 10, "act": out_act, "name": "out"}]
    rules = {"conv1": conv_rule}
    if two:
        rules["conv2"] = "shallow"
    raw = {"name": "tinyconv", "input_shape": [1, 8, 8], "num_classes": 10, "loss": loss, "rule": rule,
           "rules": rules, "layers": layers}
    if precision:
        raw["precision"] = precision
    return network_from_dict(raw)


def samples(n=12, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 64))
    x[:, :20] = 0.0  # zero background, as MNIST's
    return x, rng.integers(0, 10, n)


# ---------------------------------------------------------------------------------------------------------------
# an independent integer reference: zero-padded patches (im2col), exact sums, then §7 / §11 / §15 by hand


def ref_conv(x_raw, W, b, fp, table, tb, rb):
    """(N, C*H*W) raw -> (N, Co*Ho*Wo) raw for one conv layer with an exact accumulator."""
    c, h, w = fp.in_shape
    k, s, pad = fp.kernel, fp.stride, fp.padding
    co, ho, wo = fp.out_shape
    x = np.pad(x_raw.reshape(-1, c, h, w), ((0, 0), (0, 0), (pad, pad), (pad, pad))).astype(object)
    fx, fw, fb, fa = fp.input.frac, fp.weight.frac, fp.bias.frac, fp.accum.frac
    out = np.zeros((x.shape[0], co, ho, wo), dtype=object)
    for oy in range(ho):
        for ox in range(wo):
            patch = x[:, :, oy * s:oy * s + k, ox * s:ox * s + k].reshape(x.shape[0], -1)
            out[:, :, oy, ox] = patch.dot(W.reshape(co, -1).astype(object).T)
    z = (out << (fa - fw - fx)) + (b.astype(object) << (fa - fb))[None, :, None, None]
    z = z.reshape(x.shape[0], -1)
    if fp.act_name == "tanh":
        idx = np.clip(np.array([int(v) >> (fa - (tb - rb - 1)) for v in z.ravel()]) + (1 << (tb - 1)), 0,
                      (1 << tb) - 1)
        return table[idx].reshape(z.shape).astype(np.int64)
    a = fp.act
    r, o = ROUNDING[a.rounding], {"WRAP": 0, "SAT": 1, "SAT_ZERO": 2, "SAT_SYM": 3}[a.overflow]
    zz = np.maximum(z, 0) if fp.act_name == "relu" else z
    return np.array([convert(int(v), fa, a.width, a.frac, a.signed, r, o, 0) for v in zz.ravel()],
                    dtype=np.int64).reshape(z.shape)


def ref_pool(v, fp):
    c, h, w = fp.in_shape
    k = fp.kernel
    ho, wo = h // k, w // k  # stride k: the last odd row / column is not read
    t = v.reshape(-1, c, h, w)[:, :, :ho * k, :wo * k].reshape(-1, c, ho, k, wo, k)
    if fp.type == "maxpool":
        return t.max(axis=(3, 5)).reshape(v.shape[0], -1)
    sums = t.sum(axis=(3, 5)).reshape(v.shape[0], -1)  # 2x2: the mean is a shift by 2 with the format's rounding
    mode = ROUNDING[fp.act.rounding]
    return np.array([round_shift(int(s), 2, mode, 0) for s in sums.ravel()], dtype=np.int64).reshape(sums.shape)


@pytest.mark.parametrize("act, pool, stride, padding, bits", [
    ("tanh", "maxpool", 1, 1, 8), ("relu", "avgpool", 1, 1, 8), ("none", "avgpool", 2, 2, 6),
    ("tanh", None, 2, 0, 16)])
def test_front_end_matches_an_integer_reference(act, pool, stride, padding, bits):
    eng = FixedEngine(conv_spec(act=act, pool=pool, stride=stride, padding=padding), bits=bits, seed=2)
    x, _ = samples()
    X = eng.quantize_inputs(x)
    got = eng.features(X)
    f = eng.front
    v = X.astype(np.int64)
    for j, fp in enumerate(eng.precision.front):
        if fp.type == "conv2d":
            assert f.exact[j]
            v = ref_conv(v, f.W[j], f.b[j], fp, f.tables[j], f.table_bits, f.range_bits)
        else:
            v = ref_pool(v, fp)
    assert got.shape == v.shape and np.array_equal(got, v)
    assert np.count_nonzero(got) > got.size // 4  # a non-trivial output


def test_general_accumulation_path_is_per_term_in_patch_order():
    # a narrow saturating accumulator: every acc += w*x is an assignment, in the order (c, ky, kx)
    prec = {"per_layer": {"conv1": {"accum": "fixed<10,2,TRN,SAT>"}}}
    eng = FixedEngine(conv_spec(act="none", pool=None, precision=prec), bits=8, seed=1)
    assert eng.front.exact == [False]
    x, _ = samples(4)
    X = eng.quantize_inputs(x)
    got = eng.features(X)
    fp = eng.precision.front[0]
    W, b = eng.front.W[0], eng.front.b[0]
    a, y = fp.accum, fp.act
    am = (a.width, a.frac, a.signed, ROUNDING[a.rounding], 1)
    ym = (y.width, y.frac, y.signed, ROUNDING[y.rounding], 1)
    fp_ = fp.weight.frac + fp.input.frac
    want = np.zeros_like(got)
    xs = X.reshape(-1, 1, 8, 8)
    for n in range(X.shape[0]):
        for o in range(4):
            for oy in range(8):
                for ox in range(8):
                    acc = convert(int(b[o]), fp.bias.frac, *am, 0)
                    for ky in range(3):
                        for kx in range(3):
                            iy, ix = oy + ky - 1, ox + kx - 1
                            if 0 <= iy < 8 and 0 <= ix < 8:
                                acc = accumulate(acc, int(W[o, 0, ky, kx]) * int(xs[n, 0, iy, ix]), fp_, *am, 0)
                    want[n, o * 64 + oy * 8 + ox] = convert(acc, a.frac, *ym, 0)
    assert np.array_equal(got, want)
    assert eng.counters["conv1"]["accum"]["overflow"] == 0  # features() alone does not count
    eng.fit(x, np.zeros(4, dtype=np.int64))
    assert eng.counters["conv1"]["accum"]["overflow"] > 0  # the narrow accumulator saturates


def test_round_div_is_round_shift_for_powers_of_two():
    vals = np.arange(-40, 41)
    for mode in range(7):  # every deterministic mode of §3
        for v in vals:
            assert conv.round_div(v, 4, mode) == round_shift(v, 2, mode, 0), (mode, v)
    # 3x3 window: nearest, ties up (RND) / to even (RND_CONV)
    assert [conv.round_div(v, 9, ROUNDING["RND"]) for v in (4, 5, -5, -4, 13)] == [0, 1, -1, 0, 1]
    assert conv.round_div(-5, 9, ROUNDING["TRN"]) == -1 and conv.round_div(-5, 9, ROUNDING["TRN_ZERO"]) == 0


def test_twin_front_end_matches_torch_float64():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 2 * 9 * 9))
    W1, b1 = rng.standard_normal((5, 2, 3, 3)), rng.standard_normal(5)
    W2, b2 = rng.standard_normal((4, 5, 2, 2)), rng.standard_normal(4)
    layers = [
        {"type": "conv2d", "W": W1, "b": b1, "geo": np.array([2, 9, 9, 5, 3, 2, 2, 6, 6]), "act": 1,
         "out_shape": (5, 6, 6)},
        {"type": "maxpool", "geo": np.array([5, 6, 6, 5, 2, 1, 0, 5, 5]), "out_shape": (5, 5, 5)},
        {"type": "conv2d", "W": W2, "b": b2, "geo": np.array([5, 5, 5, 4, 2, 1, 1, 6, 6]), "act": 4,
         "out_shape": (4, 6, 6)},
        {"type": "avgpool", "geo": np.array([4, 6, 6, 4, 2, 2, 0, 3, 3]), "out_shape": (4, 3, 3)},
    ]
    got = conv.float_forward(layers, x)
    t = torch.from_numpy(x).reshape(3, 2, 9, 9)
    t = torch.tanh(F.conv2d(t, torch.from_numpy(W1), torch.from_numpy(b1), stride=2, padding=2))
    t = F.max_pool2d(t, 2, stride=1)
    t = torch.relu(F.conv2d(t, torch.from_numpy(W2), torch.from_numpy(b2), stride=1, padding=1))
    t = F.avg_pool2d(t, 2, stride=2)
    assert np.max(np.abs(got - t.reshape(3, -1).numpy())) < 1e-12


def test_engine_tracks_twin_at_32_bits_front_end_and_a_learning_step():
    # no table activation and nothing the formats saturate (hardtanh, mse with a linear output): the 32-bit
    # engine's conv features and one online step of the FC layers agree with the twin to the formats' LSBs
    wide = "fixed<32,4,RND,SAT>"  # outputs and errors of a linear mse output leave [-1, 1)
    spec = conv_spec(act="hardtanh", pool="avgpool", loss="mse", two=True, precision={"out_act": wide, "error": wide})
    eng = FixedEngine(spec, bits=32, seed=5)
    tw = eng.float_twin()
    x, y = samples(3)
    X = eng.quantize_inputs(x, count=False)
    xq = eng.precision.front[0].input.to_float(X)  # the twin sees the same (quantized) inputs
    fa = eng.precision.layers[0].input.to_float(eng.features(X))
    ft = tw.features(xq)
    assert np.max(np.abs(fa - ft)) < 1e-8 and np.abs(ft).max() > 0.1
    w0 = [w["W"].copy() for w in eng.weights_float()]
    for n in range(3):
        eng.step(X[n], int(y[n]))
        tw.step(xq[n], int(y[n]))
    moved = max(np.abs(w["W"] - a).max() for w, a in zip(eng.weights_float(), w0))
    gap = max(np.abs(w["W"] - t).max() for w, t in zip(eng.weights_float(), tw.W))
    assert moved > 1e-3 and gap < 1e-7, (moved, gap)
    assert np.max(np.abs(eng.output_raw(X) * 2.0 ** -eng.precision.layers[-1].accum.frac - tw.output(xq))) < 1e-6


@pytest.mark.parametrize("mode", ["online", "batch"])
def test_same_seed_same_bits_and_the_fc_layers_learn(mode):
    x, y = samples(40, seed=3)
    runs = []
    for seed in (7, 7, 8):
        eng = FixedEngine(conv_spec(), bits=8, seed=seed, mode=mode, batch_size=1 if mode == "online" else 4,
                          lr_shift=3)
        w0 = eng.weights()[0]["W"].copy()
        eng.fit(x, y, epochs=2)
        runs.append((eng.front.W[0].copy(), eng.weights(), eng.output_raw(eng.quantize_inputs(x, count=False))))
        assert not np.array_equal(eng.weights()[0]["W"], w0)
    (k0, w0, o0), (k1, w1, o1), (k2, w2, _) = runs
    assert np.array_equal(k0, k1) and np.array_equal(o0, o1)
    assert all(np.array_equal(a["W"], b["W"]) and np.array_equal(a["b"], b["b"]) for a, b in zip(w0, w1))
    assert not np.array_equal(k0, k2)


def test_front_end_init_is_the_float_references_he_uniform():
    eng = FixedEngine(conv_spec(), bits=16, seed=0)
    w = eng.precision.front[0].weight.to_float(eng.front.W[0])
    bound = np.sqrt(6.0 / 9)  # fan-in 1 x 3 x 3
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.8 * bound and not eng.front.b[0].any()


def test_learning_conv_layer_is_refused_in_one_line(capsys, tmp_path):
    with pytest.raises(RuleError, match="learning conv kernels .*not in the fixed-point engine yet") as exc:
        FixedEngine(conv_spec(conv_rule="drtp"))
    assert "\n" not in str(exc.value) and "conv1=shallow" in str(exc.value)
    with pytest.raises(ConfigError, match="flatten"):  # a network the front end cannot feed
        FixedEngine(network_from_dict({"name": "t", "input_shape": [1, 8, 8], "num_classes": 10,
                                       "rules": {"c": "shallow"},
                                       "layers": [{"type": "conv2d", "out": 2, "kernel": 3, "name": "c"},
                                                  {"type": "batchnorm"}, {"type": "flatten"},
                                                  {"type": "linear", "out": 10}]}))
    out = tmp_path / "o"
    code = main(["simulate", "-c", "conv-mnist", "--rule", "drtp", "-q", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "learning conv kernels" in err and not out.exists()


def test_conv_networks_go_to_the_engine_only():
    # the engine runs the DRTP paper's random-kernel CONV net; HLS and RTL refuse it through program.SUPPORT
    from edgelearn.hls.kernel import KernelSpec
    from edgelearn.network import load_network
    from edgelearn.rtl.generate import RtlDesign

    eng = FixedEngine(load_network("conv-mnist-random"), bits=8)
    assert eng.sizes == [6272, 1000, 10] and eng.n_inputs == 784 and eng.rules == ["drtp", "drtp"]
    for build in (KernelSpec.from_engine, RtlDesign):
        with pytest.raises(ConfigError, match="conv1: conv2d layers are not implemented by"):
            build(eng)


def test_front_end_outputs_reused_across_epochs_give_the_same_bits(monkeypatch):
    # a 3-epoch fit computes the front end once (FEATURE_CACHE_BYTES); three 1-epoch fits compute it per visit
    x, y = samples(30, seed=4)
    calls = []
    real = conv.FrontEnd.forward
    monkeypatch.setattr(conv.FrontEnd, "forward", lambda self, X, count=True: calls.append(len(X)) or
                        real(self, X, count))
    narrow = {"per_layer": {"conv1": {"accum": "fixed<10,2,TRN,SAT>"}}}  # front-end events to count
    a = FixedEngine(conv_spec(precision=narrow), bits=8, seed=1)
    a.fit(x, y, epochs=3)
    assert calls == [30]
    b = FixedEngine(conv_spec(precision=narrow), bits=8, seed=1)
    for _ in range(3):
        b.fit(x, y, epochs=1)
    assert len(calls) == 4
    assert all(np.array_equal(p["W"], q["W"]) for p, q in zip(a.weights(), b.weights()))
    ca, cb = a.counters, b.counters
    del ca["conv1"]["input"], cb["conv1"]["input"]  # inputs are quantized once per fit call
    assert ca == cb and ca["conv1"]["accum"]["overflow"] > 0 and ca["fc1"]["weight"]["zero"] > 0


def test_weight_file_keeps_the_front_end(tmp_path):
    from edgelearn.fixed.engine_io import load_weights

    x, y = samples(20, seed=6)
    narrow = {"per_layer": {"conv1": {"weight": "fixed<6,1,RND,SAT>"}}}  # a conv format the preset would not give
    eng = FixedEngine(conv_spec(precision=narrow), bits=8, seed=9)
    eng.set_front_weights("conv1", np.arange(36).reshape(4, 1, 3, 3) - 18)  # loaded kernels, not the seed's
    eng.fit(x, y)
    eng.save(tmp_path / "w.npz")
    back = load_weights(tmp_path / "w.npz")
    assert np.array_equal(back.front.W[0], eng.front.W[0])
    assert str(back.precision.front[0].weight) == "fixed<6,1,RND,SAT>"
    X = eng.quantize_inputs(x, count=False)
    assert np.array_equal(back.features(X), eng.features(X))
    eng.fit(x, y)
    back.fit(x, y)
    assert all(np.array_equal(p["W"], q["W"]) for p, q in zip(eng.weights(), back.weights()))
