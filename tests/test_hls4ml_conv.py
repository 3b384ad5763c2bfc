"""The hls4ml inference project of a conv network (docs/hls.md "hls4ml inference of conv networks"): Brevitas ->
QONNX -> hls4ml's streaming conv / pool layers, C-simulated with g++ and compared with the engine's forward pass
bit for bit."""
import functools

import numpy as np
import pytest

from edgelearn.errors import EdgelearnError, FormatError
from edgelearn.network import network_from_dict
from needs import require_tool

require_tool("hls4ml", "g++", "ap_types", allow_module_level=True)
from edgelearn.fixed import FixedEngine  # noqa: E402
from edgelearn.fixed.weights_file import clone_engine  # noqa: E402
from edgelearn.hls import hls4ml_export as hx  # noqa: E402
from edgelearn.hls import project as hls  # noqa: E402
from edgelearn.hls.brevitas_model import check_exportable  # noqa: E402
from edgelearn.hls.project import _popcount  # noqa: E402

# 8x8 digits: a conv with padding (tanh), a max pool and an average pool (ties: RND_CONV), then the linear layers
TINY = [{"type": "conv2d", "out": 2, "kernel": 3, "stride": 1, "padding": 1, "act": "tanh", "name": "conv1"},
        {"type": "maxpool", "kernel": 2, "stride": 2},
        {"type": "avgpool", "kernel": 2, "stride": 2},
        {"type": "flatten"}, {"type": "linear", "out": 10, "name": "out"}]


def tiny_engine(layers=TINY, **kw):
    spec = network_from_dict({"name": "hls4ml-conv", "dataset": "digits", "input_shape": [1, 8, 8],
                              "num_classes": 10, "loss": "bce", "rule": "drtp",
                              "rules": {la["name"]: "shallow" for la in layers if la["type"] == "conv2d"},
                              "layers": layers}, source="hls4ml-conv")
    return FixedEngine(spec, seed=1, bits=8, rounding=[(None, "RND_CONV")], **kw)  # its random initial weights


def bits(a, b, width):
    return int(_popcount((np.asarray(a) ^ np.asarray(b)) & ((1 << width) - 1)).sum())


# hls4ml's 1x1-conv pass copies the Conv2D's strategy 'latency' over the configured 'Latency' and says so
@pytest.mark.filterwarnings("ignore:Overriding attribute 'strategy' of layer .*latency -> Latency")
def test_conv_network_through_hls4ml_is_bit_exact_and_transposed_taps_are_caught(tmp_path, monkeypatch):
    # TINY with a 1x1 conv2 (2 products per position: Latency) and conv1 (18) over an unroll limit lowered to 16:
    # conv1 goes Resource.  Its accumulator saturates, so only a reuse factor that is a multiple of its patch (9)
    # keeps the engine's order: kernel 0 sums +1.9 x3 (saturating) then -1.9 x3, where reuse factor 3 would
    # alternate them.  Likewise the dense layer out (4x10, one channel: the engine's feature order) past a limit
    # of 20: its accumulator saturates, so reuse factor 4 (inputs in order), not 2 (0, 2, 1, 3), on output 0's
    # +1.9, -1.9, +1.9, -1.9 after a bias of 1.  (Forced to 3 / 2: 21 / 28 mismatching bits here, docs/hls.md)
    layers = [TINY[0], {"type": "conv2d", "out": 1, "kernel": 1, "act": "relu", "name": "conv2"}] + TINY[1:]
    eng = tiny_engine(layers, formats={"conv1.accum": "fixed<9,3,RND,SAT>", "out.accum": "fixed<10,3,RND,SAT>"})
    W = eng.front.W[0].copy()
    W[0, 0] = np.rint(np.array([[1.9] * 3, [-1.9] * 3, [0] * 3]) * 2 ** eng.precision.front[0].weight.frac)
    eng.set_front_weights("conv1", W, eng.front.b[0])
    W = eng.W[-1].copy()
    W[:, 0] = np.rint(np.array([1.9, -1.9, 1.9, -1.9]) * 2 ** eng.precision.layers[-1].weight.frac)
    b = eng.b[-1].copy()
    b[0] = 2 ** eng.precision.layers[-1].bias.frac  # 1.0: bias + inputs 0 and 2 pass 4, the accumulator's range
    eng.set_weights(0, W, b)
    assert [bool(e) for e in eng.front.exact] == [False, True, False, False]
    monkeypatch.setattr(hx, "plan_conv", functools.partial(hx.plan_conv, limit=16))
    monkeypatch.setattr(hx, "plan_dense", functools.partial(hx.plan_dense, limit=20))
    X, y, source = hls.tb_samples(eng, 6, None, None, eng.seed)
    assert source.startswith("digits")
    # both projects, no warning: the hls4ml project of a conv network is written
    res = hls.export_hls(eng, tmp_path / "out", n_tb=6)
    assert res.hls4ml is not None and res.kernel is not None and res.summary["warnings"] == []
    info = res.summary["hls4ml"]
    assert info["io_type"] == "io_stream"
    assert [(la["kind"], la["layer"], la["strategy"], la["reuse_factor"], la["unrolled_multiplications"])
            for la in info["layers"]] == [("conv2d", "conv1", "Resource", 9, 2), ("conv2d", "conv2", "Latency", 1, 2),
                                          ("dense", "out", "Resource", 4, 10)]
    assert (tmp_path / "out" / "hls4ml_model.fml").is_file()
    fo = eng.precision.layers[-1].accum
    z = res.hls4ml.predict_raw(X)
    ze = eng.output_raw(X)
    assert bits(z, ze, fo.width) == 0 and np.array_equal(z.argmax(1), ze.argmax(1))
    assert np.count_nonzero(eng.features(X)) > 20 and len(np.unique(ze)) > 20
    # a deliberate fault: the engine with every kernel's taps transposed (ky <-> kx) differs from the project
    bad = clone_engine(eng)
    bad.set_front_weights("conv1", eng.front.W[0].transpose(0, 1, 3, 2), eng.front.b[0])
    assert bits(z, bad.output_raw(X), fo.width) > 0


def test_conv_plan_past_the_unroll_limit():
    # the default limit keeps TINY's conv on Latency; past it Resource: any accepted factor for an exact
    # accumulator (9x2: 3, 6 products a step), a multiple of the patch for one that can saturate (9, 2 a step)
    assert [(p.strategy, p.reuse_factor) for p in hx.plan_conv(tiny_engine())] == [("Latency", 1)]
    assert [(p.strategy, p.reuse_factor) for p in hx.plan_conv(tiny_engine(), limit=8)] == [("Resource", 3)]
    narrow = tiny_engine(formats={"conv1.accum": "fixed<9,3,RND,SAT>"})
    assert [(p.strategy, p.reuse_factor) for p in hx.plan_conv(narrow, limit=8)] == [("Resource", 9)]
    assert [(p.strategy, p.reuse_factor) for p in hx.plan_conv(narrow, limit=1)] == [("Resource", 18)]


def test_dense_plan_past_the_unroll_limit():
    # the dense layer out (8x10 after TINY's front end) likewise: any accepted factor for an exact accumulator
    # (8x10 over 40: 2), a multiple of its 8 inputs for one that can saturate (8, 10 products a step)
    assert [(p.strategy, p.reuse_factor) for p in hx.plan_dense(tiny_engine())] == [("Latency", 1)]
    assert [(p.strategy, p.reuse_factor) for p in hx.plan_dense(tiny_engine(), limit=40)] == [("Resource", 2)]
    narrow = tiny_engine(formats={"out.accum": "fixed<10,3,RND,SAT>"})
    assert [(p.strategy, p.reuse_factor, p.notes) for p in hx.plan_dense(narrow, limit=40)] == [("Resource", 8, [])]
    assert [(p.strategy, p.reuse_factor) for p in hx.plan_dense(narrow, limit=4)] == [("Resource", 40)]
    # a given reuse factor out of order: an explicit Resource is refused (one line), a chosen one stays Latency
    with pytest.raises(FormatError, match="layer out: strategy Resource with reuse factor 2 reorders .* "
                                          r"multiple of its 8 inputs keeps the order \(8, 16, 40, 80\)") as exc:
        hx.plan_dense(narrow, "Resource", 2, limit=40)
    assert "\n" not in str(exc.value)
    assert [(p.strategy, p.reuse_factor) for p in hx.plan_dense(narrow, "Resource", 16)] == [("Resource", 16)]
    (p,) = hx.plan_dense(narrow, None, 2, limit=40)
    assert (p.strategy, p.reuse_factor) == ("Latency", 2) and "kept on Latency" in p.notes[0]


def test_conv_layers_hls4ml_cannot_carry_exactly_are_refused_with_one_line(tmp_path):
    cases = [
        ([dict(TINY[0]), {"type": "maxpool", "kernel": 3, "stride": 1}] + TINY[3:], (), "stride = kernel"),
        ([dict(TINY[0]), {"type": "avgpool", "kernel": 3, "stride": 3}] + TINY[3:], (), "power-of-two"),
        ([dict(TINY[0]), dict(TINY[0], name="conv2")] + TINY[1:], (("conv2.accum", "fixed<9,3,RND,SAT>"),),
         "channels-last"),
    ]
    for layers, formats, why in cases:
        eng = tiny_engine(layers, formats=dict(formats))
        with pytest.raises(EdgelearnError, match=why) as exc:
            check_exportable(eng)
        assert "\n" not in str(exc.value)
    # the default export then writes the learning kernel alone and names the reason in one warning line
    res = hls.export_hls(eng, tmp_path / "k", n_tb=2)
    assert res.hls4ml is None and res.kernel is not None
    [w] = res.summary["warnings"]
    assert w.startswith(hls.HLS4ML_SKIPPED) and "layer conv2" in w
    with pytest.raises(EdgelearnError, match="channels-last"):
        hls.export_hls(eng, tmp_path / "h", n_tb=2, kernel=False)
