"""Trained LDFA feedback in the datapath (hw/el_feedback.v beside hw/el_layer.v), bit for bit with the engine.

16-12-8-4 (two tanh hidden layers, every layer ldfa, rank 2, 8-bit preset, 2 MAC lanes): the hidden layers' signals
come through the factors Q P of the layer above, which learn on chip (Q by its local rule, P by the online Oja step;
the output layer's P from the one-hot target). Through the packaged cocotb testbench's ``mlp_lockstep``
(edgelearn/rtl/bench.py): every prediction and, after every sample, every weight, bias, Q and P word against the
engine's golden trace, with random stream gaps, a stalling prediction consumer and two mid-run resets. Real MNIST
(784-32-16-10, rank 4) runs in benchmarks/bench_rtl_ldfa.py.
"""
from __future__ import annotations

import numpy as np
import pytest
from needs import require_tool

SAMPLES = 8


def ldfa_engine(sizes=(16, 12, 8, 4), rank: int = 2, bits: int = 8, lr_shift: int = 3):
    from edgelearn.fixed.engine import FixedEngine
    from edgelearn.network import network_from_dict

    layers = [{"type": "linear", "out": n, "act": "tanh", "name": f"fc{k + 1}"} for k, n in enumerate(sizes[1:-1])]
    layers.append({"type": "linear", "out": sizes[-1], "name": "out"})
    spec = network_from_dict({"name": "rtl-ldfa", "input_shape": [sizes[0]], "num_classes": sizes[-1],
                              "loss": "bce", "rule": "ldfa", "rule_params": {"rank": rank}, "layers": layers})
    return FixedEngine(spec, bits=bits, seed=0, lr_shift=lr_shift, threads=1)


@pytest.mark.parametrize("sim", ["icarus", "verilator"])
def test_ldfa_factors_and_every_weight_match_the_engine(sim, tmp_path):
    require_tool(sim)
    from test_mlp import _random_samples, run_design

    eng = ldfa_engine()
    X, y, train = _random_samples(eng, SAMPLES, seed=7)
    rep = run_design(eng, X, y, train, tmp_path / "prj", sim, "mlp_lockstep", 2, disturb=True)
    g, design = rep["golden"], rep["design"]
    assert [lay.has_factors for lay in design.layers] == [False, True, True]
    assert rep["resets"] == 2 and rep["snapshots_compared"] == SAMPLES
    # Q (12 x 2, 8 x 2) and P (2 x 8, 2 x 4) of layers 1 and 2 after every sample
    assert rep["factors_compared"] == SAMPLES * (12 * 2 + 2 * 8 + 8 * 2 + 2 * 4)
    assert rep["pred_mismatches"] == 0
    assert rep["weight_bits_mismatched"] == 0 and rep["bias_bits_mismatched"] == 0, rep["first_mismatch"]
    assert rep["q_bits_mismatched"] == 0 and rep["p_bits_mismatched"] == 0, rep.get("first_factor_mismatch")
    # the feedback really learned: Q and P of both layers moved from their draws
    for k, lay in ((1, design.layers[1]), (2, design.layers[2])):
        B = g[f"fb{k}"][-1]
        assert not np.array_equal(B[:lay.n_in, :2], lay.Q) and not np.array_equal(B[lay.n_in:lay.n_in + 2, :lay.n_out],
                                                                                  lay.Pf)
