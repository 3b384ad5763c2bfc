"""The engine's whole online step against an independent apytypes implementation (tests/oracles/apytypes_step.py),
bit for bit: every weight and bias after a few hundred real samples, 8-bit stochastic (LFSR) and RND updates."""
from __future__ import annotations

import numpy as np
import pytest

from edgelearn.data import load_dataset
from edgelearn.fixed.engine import FixedEngine
from edgelearn.network import network_from_dict
from needs import require_tool
from oracles.apytypes_step import RULES, apytypes_step_factory

N_SAMPLES = 200


def _spec(rule: str):
    return network_from_dict({"name": "apy-step", "input_shape": [64], "num_classes": 10, "loss": "bce",
                              "rule": rule, "layers": [{"type": "linear", "out": 24, "act": "tanh", "name": "fc1"},
                                                       {"type": "linear", "out": 10, "name": "out"}]})


@pytest.mark.parametrize("rounding", ["STOCH", "RND"])
@pytest.mark.parametrize("rule", RULES)
def test_engine_step_bit_identical_to_apytypes(rule, rounding):
    require_tool("apytypes")
    kw = {} if rounding == "STOCH" else {"rounding": [("weight", "RND"), ("bias", "RND")]}
    eng = FixedEngine(_spec(rule), bits=8, seed=3, lr_shift=4, threads=1, **kw)
    assert {eng.precision.layers[k].weight.rounding for k in range(2)} == {rounding}
    ds = load_dataset("digits", seed=0)
    X = eng.quantize_inputs(ds.x_train[:N_SAMPLES].reshape(N_SAMPLES, -1), count=False)
    y = np.asarray(ds.y_train[:N_SAMPLES], dtype=np.int64)
    step, state = apytypes_step_factory(eng)
    W0 = [w.copy() for w in eng.W]
    for i in range(N_SAMPLES):
        step(X[i].astype(np.int64), int(y[i]))
        eng.step(X[i], int(y[i]))
    for k in range(2):
        assert np.array_equal(state["W"][k], eng.W[k].astype(np.int64)), f"W{k} differs from apytypes"
        assert np.array_equal(state["b"][k], eng.b[k]), f"b{k} differs from apytypes"
    # the comparison covers real learning: the output layer moved, the hidden one too unless frozen
    assert not np.array_equal(W0[1], eng.W[1])
    assert np.array_equal(W0[0], eng.W[0]) == (rule == "shallow")
