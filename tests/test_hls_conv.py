"""The HLS learning kernel behind a frozen conv front end (docs/hls.md "Frozen conv front end"): one call takes one
image, runs conv2d / maxpool / avgpool from ROM, then the linear layers' inference and update; g++ C-simulation
compared with the fixed-point engine bit for bit, the front end's output with the golden trace's ``front_out``."""
import numpy as np
import pytest

from edgelearn.errors import EdgelearnError
from edgelearn.network import network_from_dict
from needs import require_tool

require_tool("g++", "ap_types", allow_module_level=True)
from edgelearn.data import load_dataset  # noqa: E402
from edgelearn.fixed import FixedEngine  # noqa: E402
from edgelearn.fixed.lower import trace  # noqa: E402
from edgelearn.fixed.weights_file import clone_engine  # noqa: E402
from edgelearn.hls import project as hls  # noqa: E402
from edgelearn.hls.kernel import KernelSpec, cycle_model, write_kernel_project  # noqa: E402

# 8x8 digits: conv stride 2 with padding (tanh), a 2x2 average pool (ties: RND_CONV), a second conv with padding
# and a narrow accumulator that rounds every product (the patch order is the definition), an overlapping max pool,
# a 3x3 average pool (a divisor that is not a power of two), then the learning linear layers
FRONT = [{"type": "conv2d", "out": 4, "kernel": 3, "stride": 2, "padding": 1, "act": "tanh", "name": "conv1"},
         {"type": "avgpool", "kernel": 2, "stride": 1},
         {"type": "conv2d", "out": 6, "kernel": 2, "stride": 1, "padding": 1, "act": "relu", "name": "conv2"},
         {"type": "maxpool", "kernel": 2, "stride": 1},
         {"type": "avgpool", "kernel": 3, "stride": 1},
         {"type": "flatten"},
         {"type": "linear", "out": 16, "act": "tanh", "name": "fc1"}, {"type": "linear", "out": 10, "name": "out"}]


def conv_engine(layers=FRONT, rules=None, formats=(("conv2.accum", "fixed<9,3,RND,SAT>"),)):
    spec = network_from_dict({"name": "hls-conv", "dataset": "digits", "input_shape": [1, 8, 8], "num_classes": 10,
                              "loss": "bce", "rule": "drtp", "rules": rules or {"conv1": "shallow", "conv2": "shallow"},
                              "layers": layers}, source="hls-conv")
    eng = FixedEngine(spec, seed=1, bits=8, rounding=[(None, "RND_CONV")], formats=dict(formats))
    ds = load_dataset("digits", n_train=150)
    eng.fit(ds.x_train, ds.y_train, epochs=1)
    return eng


def test_conv_front_kernel_is_bit_exact_and_a_transposed_kernel_is_caught(tmp_path):
    eng = conv_engine()
    assert [f["accum_exact"] for f in eng.program().front if f["type"] == "conv2d"] == [True, False]
    X, y, _ = hls.tb_samples(eng, 10, None, None, eng.seed)
    proj = write_kernel_project(eng, tmp_path / "k", tb_samples=(X, y))
    gold = trace(eng, X, y)
    run = proj.run()
    assert run.output_mismatch_bits == 0 and run.state_mismatch_bits == 0 and run.front_mismatch_bits == 0
    assert np.array_equal(run.features, gold.front_out) and np.count_nonzero(gold.front_out) > 20
    assert np.array_equal(run.preds, gold.preds)
    assert any((a != w["W"]).any() for a, w in zip(run.W, eng.weights()))  # the linear layers learned
    top = (proj.firmware / "edgelearn_kernel.cpp").read_text()
    assert "edgelearn_kernel_front(x, feat);" in top and "el::update<config0>(feat, d0, W0, b0, rnd0);" in top
    # a deliberate fault: conv1's kernels with ky and kx swapped, on the engine's side; the same binary must
    # then differ in the front end's output and in the outputs the linear layers compute from it
    bad = clone_engine(eng)
    bad.set_front_weights("conv1", eng.front.W[0].transpose(0, 1, 3, 2), eng.front.b[0])
    gb = trace(bad, X, y, snapshots=[len(y) - 1])
    r2 = proj.run(X, y, expected=(gb.outputs, [w[-1] for w in gb.W], [b[-1] for b in gb.b], gb.rnd_state),
                  expected_front=gb.front_out)
    assert r2.front_mismatch_bits > 0 and r2.output_mismatch_bits > 0 and r2.state_mismatch_bits > 0


def test_front_end_in_the_cycle_model_and_the_refusals(tmp_path):
    eng = conv_engine()
    prog = eng.program()
    cyc = cycle_model(prog)
    steps = cyc["steps"]
    front = steps[:len(prog.front)]
    assert [s["step"] for s in front] == [f"front({j}) {f['type']}" for j, f in enumerate(prog.front)]
    conv1 = prog.front[0]
    taps = conv1["in_shape"][0] * conv1["kernel"] ** 2
    assert front[0]["cycles"] > int(np.prod(conv1["out_shape"])) * taps  # a tap a cycle per position, and more
    # the front end runs for inference too, and costs the same with more lanes (one position at a time)
    assert cyc["inference_cycles_per_sample"] > sum(s["cycles"] for s in front)
    assert [s["cycles"] for s in cycle_model(prog, lanes=4)["steps"][:len(front)]] == [s["cycles"] for s in front]
    # hls4ml cannot stream this front end's overlapping pools exactly: the learning kernel alone, and the reason
    # in one warning line (tests/test_hls4ml_conv.py exports a conv network hls4ml carries)
    res = hls.export_hls(eng, tmp_path / "both", n_tb=2)
    assert res.hls4ml is None and res.kernel is not None
    [w] = res.summary["warnings"]
    assert w.startswith(hls.HLS4ML_SKIPPED) and "stride = kernel" in w and "\n" not in w
    assert (tmp_path / "both" / "learning_kernel" / "firmware" / "front.h").is_file()
    # a conv layer that learns is refused with one line (program.SUPPORT: engine-only)
    learning = FRONT[:1] + [{"type": "maxpool", "kernel": 2, "stride": 2}] + FRONT[5:]
    with pytest.raises(EdgelearnError, match="does not learn conv kernels") as exc:
        KernelSpec.from_engine(conv_engine(learning, {"conv1": "drtp"}, ()))
    assert "\n" not in str(exc.value)
