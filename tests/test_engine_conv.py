"""The engine's frozen convolutional front end (docs/arithmetic.md §15): integer conv / pooling against an
independent numpy reference, the float twin against torch, engine vs twin at 32 bits, determinism, refusals."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgelearn.cli import main
from edgelearn.errors import ConfigError, FormatError, RuleError
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


def test_conv_rules_the_engine_does_not_learn_with_are_refused_in_one_line(capsys, tmp_path):
    with pytest.raises(RuleError, match="learns conv kernels with drtp, dfa, sdfa .*not 'bp'") as exc:
        FixedEngine(conv_spec(conv_rule="bp"))
    assert "\n" not in str(exc.value) and "conv1=shallow" in str(exc.value)
    with pytest.raises(ConfigError, match="flatten"):  # a network the front end cannot feed
        FixedEngine(network_from_dict({"name": "t", "input_shape": [1, 8, 8], "num_classes": 10,
                                       "rules": {"c": "shallow"},
                                       "layers": [{"type": "conv2d", "out": 2, "kernel": 3, "name": "c"},
                                                  {"type": "batchnorm"}, {"type": "flatten"},
                                                  {"type": "linear", "out": 10}]}))
    out = tmp_path / "o"
    code = main(["simulate", "-c", "conv-mnist", "--rule", "fa", "-q", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "learns conv kernels with" in err and not out.exists()


def test_learning_conv_kernels_go_to_the_engine_only():
    # the engine runs the DRTP paper's CONV net with random (frozen) and trained kernels; HLS and RTL take the frozen
    # front end and refuse learning kernels through program.SUPPORT
    from edgelearn.hls.kernel import KernelSpec
    from edgelearn.network import load_network
    from edgelearn.rtl.generate import RtlDesign

    for name in ("conv-mnist-random", "conv-mnist"):  # random (frozen) and trained kernels
        eng = FixedEngine(load_network(name), bits=8)
        assert eng.sizes == [6272, 1000, 10] and eng.n_inputs == 784 and eng.rules == ["drtp", "drtp"]
        assert eng.precision.front[0].learns == (name == "conv-mnist")
        for build in (KernelSpec.from_engine, RtlDesign):
            if name == "conv-mnist":
                with pytest.raises(RuleError, match="conv1: .* does not learn conv kernels"):
                    build(eng)
            else:
                assert build(eng) is not None


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


# ---------------------------------------------------------------------------------------------------------------
# learning conv kernels (docs/arithmetic.md §15a)


def ref_conv_step(eng, W, b, state, x_raw, label, e_out):
    """One §15a step of conv1 (tanh, 2x2 max pool) from kernels W, biases b and LFSR state ``state``, transcribed
    with python integers; returns the new (W, b). The forward output comes from ref_conv (checked above), B from
    the LFSR matrix of the layer's stream, ``e_out``: the sample's output error (dfa)."""
    from edgelearn.fixed.arith import update_weight
    from edgelearn.fixed.lfsr import derive_seed, lfsr_draw32, lfsr_matrix
    from edgelearn.program import CONV_FEEDBACK_STREAM

    fp, f = eng.precision.front[0], eng.front
    W, b = W.copy(), b.copy()
    co, ho, wo = fp.out_shape
    y = ref_conv(np.asarray(x_raw, dtype=np.int64)[None], W, b, fp, f.tables[0], f.table_bits, f.range_bits)
    y = y[0].reshape(co, ho, wo).astype(object)
    B = lfsr_matrix(derive_seed(eng.seed, CONV_FEEDBACK_STREAM), 10, co * (ho // 2) * (wo // 2),
                    fp.feedback.width).astype(object)
    if fp.rule == "drtp":
        p, fsig = B[label], fp.feedback.frac
    else:  # dfa
        p, fsig = sum(B[c] * int(e_out[c]) for c in range(10)), fp.feedback.frac + eng.precision.layers[-1].error.frac
    p = p.reshape(co, ho // 2, wo // 2)
    r = np.zeros((co, ho, wo), dtype=object)
    for o in range(co):
        for py in range(ho // 2):
            for px in range(wo // 2):
                a = int(np.argmax(y[o, 2 * py:2 * py + 2, 2 * px:2 * px + 2].astype(np.int64).ravel()))  # first max
                r[o, 2 * py + a // 2, 2 * px + a % 2] += p[o, py, px]
    mode = lambda fmt: (fmt.width, fmt.frac, fmt.signed, ROUNDING[fmt.rounding], 1)  # noqa: E731 (SAT everywhere)
    fy = fp.act.frac
    top = min(1 << fy, (1 << (fp.act.width - 1)) - 1)  # tanh output read as saturated (arithmetic.md §11)
    delta = np.zeros_like(r)
    for i in zip(*np.nonzero(r)):
        g = convert(int((1 << 2 * fy) - y[i] * y[i]) if abs(int(y[i])) < top else 0, 2 * fy, *mode(fp.deriv), 0)
        delta[i] = convert(int(r[i] * g), fsig + fp.deriv.frac, *mode(fp.error), 0)
    k, pad = fp.kernel, fp.padding
    xp = np.pad(np.asarray(x_raw, dtype=np.int64).reshape(fp.in_shape), ((0, 0), (pad, pad), (pad, pad)))
    U = np.zeros(W.shape, dtype=object)
    for o, oy, ox in zip(*np.nonzero(delta)):
        U[o] += delta[o, oy, ox] * xp[:, oy:oy + k, ox:ox + k].astype(object)
    fe, fx, lr = fp.error.frac, fp.input.frac, fp.lr_shift
    for idx in np.ndindex(W.shape):  # C order, one draw per STOCH assignment
        d = 0
        if fp.weight.rounding == "STOCH":
            state, d = lfsr_draw32(state)
        W[idx] = update_weight(int(W[idx]), int(U[idx]), fe + fx, lr, *mode(fp.weight), d)
    for o in range(co):
        d = 0
        if fp.bias.rounding == "STOCH":
            state, d = lfsr_draw32(state)
        b[o] = update_weight(int(b[o]), int(delta[o].sum()), fe, lr, *mode(fp.bias), d)
    return W, b


@pytest.mark.parametrize("rule, bits", [("drtp", 8), ("dfa", 8), ("drtp", 16)])
def test_learning_conv_step_matches_an_integer_transcription(rule, bits):
    eng = FixedEngine(conv_spec(conv_rule=rule), bits=bits, seed=3, lr_shift=2)
    assert eng.precision.front[0].learns and eng.front.learning == [0]
    x, y = samples(3, seed=1)
    X = eng.quantize_inputs(x, count=False)
    for n in range(3):  # consecutive steps: the kernels and the draw stream carry over
        W0, b0, s0 = eng.front.W[0].copy(), eng.front.b[0].copy(), int(eng.front.rnd_state[0][0])
        eng.step(X[n], int(y[n]))
        W, b = ref_conv_step(eng, W0, b0, s0, X[n], int(y[n]), eng._ds[-1].copy())  # the sample's output error
        assert np.array_equal(eng.front.W[0], W) and np.array_equal(eng.front.b[0], b)
        assert not np.array_equal(W, W0)


@pytest.mark.parametrize("rule", ["drtp", "dfa", "sdfa"])
def test_twin_conv_step_equals_the_float_references_sgd_step(rule):
    # torch_ref's rule on the same net (conv1 tanh + max pool, point after the pool) with SGD at batch 1 and the
    # twin's learning rates (report.online.sgd_scale), from the twin's weights and feedback: the same step
    from edgelearn.report.online import sgd_scale
    from edgelearn.torch_ref import build_model, convert_network

    shift = 3
    spec = conv_spec(conv_rule=rule, rule=rule)
    eng = FixedEngine(spec, bits=16, seed=1, lr_shift=shift)
    twin = eng.float_twin()
    model = build_model(spec, seed=0).double()
    sites = convert_network(model, spec, rule=rule).sites
    learner = sites[0].rule.learner
    conv_lay = twin.front[0]
    with torch.no_grad():
        for k, s in enumerate(sites):
            W, b, B = ((conv_lay["W"], conv_lay["b"], conv_lay["B"]) if k == 0 else
                       (twin.W[k - 1].T, twin.b[k - 1], twin.B[k - 1]))
            s.module.weight.copy_(torch.from_numpy(np.ascontiguousarray(W)))
            s.module.bias.copy_(torch.from_numpy(b))
            if getattr(s.module, "el_feedback", None) is not None:
                assert s.module.el_feedback.shape == B.shape  # (classes, point units)
                s.module.el_feedback.copy_(torch.from_numpy(B))
    x, y = samples(3, seed=2)
    k0 = conv_lay["W"].copy()
    for n in range(3):
        twin.step(x[n], int(y[n]))
        model.zero_grad(set_to_none=True)
        learner.train_step(torch.from_numpy(x[n]).reshape(1, 1, 8, 8), torch.tensor([int(y[n])]))
        with torch.no_grad():
            for s in sites:
                lr = 2.0 ** -shift * sgd_scale(rule, s.is_output, 10, 1)
                s.module.weight -= lr * s.module.weight.grad
                s.module.bias -= lr * s.module.bias.grad
        np.testing.assert_allclose(sites[0].module.weight.detach().numpy(), conv_lay["W"], rtol=0, atol=1e-12)
        np.testing.assert_allclose(sites[0].module.bias.detach().numpy(), conv_lay["b"], rtol=0, atol=1e-12)
        np.testing.assert_allclose(sites[1].module.weight.detach().numpy().T, twin.W[0], rtol=0, atol=1e-12)
    assert np.abs(conv_lay["W"] - k0).max() > 1e-3  # the kernels moved


@pytest.mark.parametrize("rule, bits", [("drtp", 32), ("sdfa", 32), ("dfa", 20)])
def test_learning_conv_engine_tracks_its_twin(rule, bits):
    # dfa's signal (a sum over the classes of B * e) times the derivative caps its word length (§15a range check);
    # deltas (a sum over the classes for dfa / sdfa) in a wide error format: nothing saturates
    prec = {"error": f"fixed<{bits},5,RND,SAT>"}
    eng = FixedEngine(conv_spec(conv_rule=rule, act="hardtanh", precision=prec), bits=bits, seed=4, lr_shift=6)
    tw = eng.float_twin()
    x, y = samples(6, seed=5)
    X = eng.quantize_inputs(x, count=False)
    xq = eng.precision.front[0].input.to_float(X)
    k0 = tw.front[0]["W"].copy()
    for n in range(6):
        eng.step(X[n], int(y[n]))
        tw.step(xq[n], int(y[n]))
    fp = eng.precision.front[0]
    moved = np.abs(tw.front[0]["W"] - k0).max()
    gap = np.abs(fp.weight.to_float(eng.front.W[0]) - tw.front[0]["W"]).max()
    gap_b = np.abs(fp.bias.to_float(eng.front.b[0]) - tw.front[0]["b"]).max()
    tol = moved * (1e-6 if bits == 32 else 5e-3)  # 20 bits: activations and deltas have 2**-19 LSBs
    assert moved > 1e-2 and gap < tol and gap_b < tol, (moved, gap, gap_b)


def test_learning_conv_same_seed_same_bits_and_no_feature_cache(monkeypatch):
    x, y = samples(16, seed=3)
    runs = []
    for seed, rng in ((7, "layer"), (7, "layer"), (8, "layer"), (7, "neuron")):
        eng = FixedEngine(conv_spec(conv_rule="sdfa"), bits=8, seed=seed, rng=rng, lr_shift=3)
        eng.fit(x, y, epochs=2)  # two epochs: the frozen front end's feature cache would serve stale kernels
        runs.append(eng.front.W[0].copy())
    assert np.array_equal(runs[0], runs[1]) and not np.array_equal(runs[0], runs[2])
    assert not np.array_equal(runs[0], runs[3])  # rng: neuron takes its draws from per-channel generators
    assert set(eng.counters["conv1"]) >= {"weight", "bias", "deriv", "error"}
    assert eng.describe()["front_end"][0]["rule"] == "sdfa"


def test_learning_conv_refusals_are_one_line():
    with pytest.raises(ConfigError, match="learning conv kernels run online") as exc:
        FixedEngine(conv_spec(conv_rule="drtp"), bits=8, mode="batch", batch_size=4)
    assert "\n" not in str(exc.value)
    eng = FixedEngine(conv_spec(conv_rule="drtp"), bits=8)
    with pytest.raises(ConfigError, match="learning conv kernels run online"):
        eng.set_mode("batch", 4)
    with pytest.raises(ConfigError, match="one max pool or none"):
        FixedEngine(conv_spec(conv_rule="dfa", pool="avgpool"), bits=8)
    with pytest.raises(FormatError, match="conv1: the routed signal times the derivative can reach"):
        FixedEngine(conv_spec(conv_rule="dfa"), bits=32)
    # a frozen conv (shallow) keeps its records: no signal formats
    assert "error" not in FixedEngine(conv_spec(), bits=8).formats()["layers"]["conv1"]
    # an update format named for a conv layer would go unused (its increments round into the weight format):
    # refused naming the layer (--format or the config's per_layer); a network-wide one is the linear layers' (§15a)
    for rule in ("drtp", "shallow"):
        with pytest.raises(FormatError, match="layer conv1: precision.update is not supported") as exc:
            FixedEngine(conv_spec(conv_rule=rule), bits=8, formats={"conv1.update": "fixed<16,4,STOCH>"})
        assert "\n" not in str(exc.value)
    with pytest.raises(FormatError, match="layer conv1: precision.update"):
        FixedEngine(conv_spec(conv_rule="drtp", precision={"per_layer": {"conv1": {"update": "fixed<16,4>"}}}),
                    bits=8)
    eng = FixedEngine(conv_spec(conv_rule="drtp"), bits=8, formats={"update": "fixed<16,4>"})
    assert eng.precision.layers[0].update is not None


def test_weight_file_keeps_a_learning_conv_layer(tmp_path):
    # kernels, the layer's own learning rate and its draw stream: the loaded engine continues bit for bit
    from edgelearn.fixed.engine_io import load_weights

    x, y = samples(8, seed=6)
    prec = {"per_layer": {"conv1": {"lr_shift": 3}}}
    eng = FixedEngine(conv_spec(conv_rule="drtp", precision=prec), bits=8, seed=9)
    eng.fit(x, y)
    eng.save(tmp_path / "w.npz")
    back = load_weights(tmp_path / "w.npz")
    assert back.precision.front[0].lr_shift == 3 and back.front.rnd_state[0][0] == eng.front.rnd_state[0][0]
    eng.fit(x, y)
    back.fit(x, y)
    assert np.array_equal(back.front.W[0], eng.front.W[0]) and np.array_equal(back.front.b[0], eng.front.b[0])
