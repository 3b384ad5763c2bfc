"""The frozen conv front end (hw/el_front.v) feeding the learning datapath, bit for bit with the engine.

A tiny conv net (8x8 input, 2 kernels 3x3, pool 2, fc 6 DRTP, fc 3) through the packaged cocotb testbench's
``mlp_lockstep`` (edgelearn/rtl/bench.py): every feature the front end writes into the first layer, every
prediction and every weight and bias after every sample against the engine's golden trace, with random stream gaps,
a stalling prediction consumer and two mid-run resets. The real-MNIST spoon-like case runs in
benchmarks/bench_rtl_conv.py (its conv takes ~115k cycles a sample: too long for the suite).
"""
from __future__ import annotations

import numpy as np
import pytest
from needs import require_tool


def small_engine(pool: str = "maxpool", padding: int = 0, stride: int = 1, bits: int = 8):
    """8x8 -> conv 2 x 3x3 (tanh, frozen) -> pool 2 -> fc 6 tanh (DRTP) -> fc 3."""
    from edgelearn.fixed.engine import FixedEngine
    from edgelearn.network import network_from_dict

    spec = network_from_dict({
        "name": "tiny-conv", "input_shape": [1, 8, 8], "num_classes": 3, "loss": "bce", "rule": "drtp",
        "rules": {"conv1": "shallow"}, "layers": [
            {"type": "conv2d", "out": 2, "kernel": 3, "stride": stride, "padding": padding, "act": "tanh",
             "name": "conv1"},
            {"type": pool, "kernel": 2, "stride": 2}, {"type": "flatten"},
            {"type": "linear", "out": 6, "act": "tanh", "name": "fc1"},
            {"type": "linear", "out": 3, "name": "out"}]})
    return FixedEngine(spec, bits=bits, seed=0, lr_shift=3, threads=1)


def small_samples(eng, n: int, seed: int):
    """Random raw images over the input range (30 % zero pixels), random labels, every fourth inference only."""
    rng = np.random.default_rng(seed)
    fin = eng.precision.front[0].input
    X = rng.integers(fin.min_raw, fin.max_raw + 1, size=(n, eng.n_inputs))
    X[rng.random(X.shape) < 0.3] = 0
    return X, rng.integers(0, eng.num_classes, size=n), (np.arange(n) % 4) != 3


#: (simulator, pool, padding, stride): Icarus the padded, strided average pool, Verilator the max pool
CASES = [("icarus", "avgpool", 1, 2), ("verilator", "maxpool", 0, 1)]
SAMPLES = 6


@pytest.mark.parametrize("sim,pool,padding,stride", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_conv_front_end_and_every_weight_match_the_engine(sim, pool, padding, stride, tmp_path):
    require_tool(sim)
    from test_mlp import run_design

    eng = small_engine(pool, padding, stride)
    X, y, train = small_samples(eng, SAMPLES, seed=3)
    rep = run_design(eng, X, y, train, tmp_path / "prj", sim, "mlp_lockstep", 2, disturb=True)
    design, g = rep["design"], rep["golden"]
    assert rep["resets"] == 2 and rep["snapshots_compared"] == SAMPLES
    assert rep["features_compared"] == SAMPLES * design.front.n_features
    # the front end wrote exactly the non-zero features (zeros are skipped, as the list does)
    assert rep["feature_writes"] == int(np.count_nonzero(g["front_out"]))
    assert rep["front_bits_mismatched"] == 0, rep.get("first_front_mismatch")
    assert rep["pred_mismatches"] == 0
    assert rep["weight_bits_mismatched"] == 0 and rep["bias_bits_mismatched"] == 0, rep["first_mismatch"]
    assert not np.array_equal(g["W0"][-1], eng.weights()[0]["W"])  # the classifier learned
    # one MAC per cycle: the front end's taps bound a training sample's compute cycles from below
    assert min(rep["compute_cycles"]) >= design.front.mac_cycles


def test_rtl_refuses_a_learning_conv_and_unbuildable_front_ends(tmp_path):
    from edgelearn.errors import ConfigError, RuleError
    from edgelearn.fixed.engine import FixedEngine
    from edgelearn.network import network_from_dict
    from edgelearn.rtl.generate import write_rtl

    def net(rule="shallow", pool=("avgpool", 3), stride=1):
        layers = [{"type": "conv2d", "out": 2, "kernel": 3, "act": "tanh", "name": "conv1", "stride": stride}]
        layers += [{"type": pool[0], "kernel": pool[1], "stride": pool[1]}] if pool else []
        layers += [{"type": "flatten"}, {"type": "linear", "out": 3, "name": "out"}]
        return FixedEngine(network_from_dict({"name": "c", "input_shape": [1, 9, 9], "num_classes": 3,
                                              "loss": "bce", "rule": "drtp", "rules": {"conv1": rule},
                                              "layers": layers}), bits=8, seed=0, threads=1)

    with pytest.raises(RuleError, match="does not learn conv kernels"):
        write_rtl(net(rule="drtp", pool=("maxpool", 2)), tmp_path / "a")
    with pytest.raises(ConfigError, match="power-of-two windows"):
        write_rtl(net(), tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
