"""Trained feedback in the datapath (hw/el_feedback.v beside hw/el_layer.v), bit for bit with the engine.

16-12-8-4 (two tanh hidden layers, 8-bit preset, 2 MAC lanes). ldfa (every layer, rank 2): the hidden layers' signals
come through the factors Q P of the layer above, which learn on chip (Q by its local rule, P by the online Oja step;
the output layer's P from the one-hot target). kp (every layer): through B of the layer above, which gets W's
increment. dldfa (every hidden layer, rank 2): each hidden layer's own Q P of the output error (Q from u y^T, P by
Oja on the output error). Through the packaged cocotb testbench's ``mlp_lockstep``
(edgelearn/rtl/bench.py): every prediction and, after every sample, every weight, bias, Q and P word against the
engine's golden trace, with random stream gaps, a stalling prediction consumer and two mid-run resets. Real MNIST
(784-32-16-10, rank 4) runs in benchmarks/bench_rtl_ldfa.py.
"""
from __future__ import annotations

import numpy as np
import pytest
from needs import require_tool

SAMPLES = 8


def ldfa_engine(sizes=(16, 12, 8, 4), rank: int = 2, bits: int = 8, lr_shift: int = 3, rule: str = "ldfa",
                precision: dict | None = None):
    from edgelearn.fixed.engine import FixedEngine
    from edgelearn.network import network_from_dict

    layers = [{"type": "linear", "out": n, "act": "tanh", "name": f"fc{k + 1}"} for k, n in enumerate(sizes[1:-1])]
    layers.append({"type": "linear", "out": sizes[-1], "name": "out"})
    spec = network_from_dict({"name": f"rtl-{rule}", "input_shape": [sizes[0]], "num_classes": sizes[-1],
                              "loss": "bce", "rule": rule, "rule_params": {} if rule == "kp" else {"rank": rank},
                              "layers": layers, **({"precision": precision} if precision else {})})
    return FixedEngine(spec, bits=bits, seed=0, lr_shift=lr_shift, threads=1)


#: formats beside the preset: kp's B truncating (its own rounding, not W's STOCH); dldfa's output error wider than
#: the hidden layers' (u = P e takes the output's, Oja's a and rho the hidden layer's), fc1's truncating
PRECISION = {"kp": {"fb_q": "fixed<8,2,TRN,SAT>"},
             "dldfa": {"per_layer": {"out": {"error": "fixed<10,2,RND,SAT>"}, "fc1": {"error": "fixed<8,1,TRN,SAT>"}}}}
#: per rule: which layers keep an el_feedback, and the Q / P words (rows x cols) each holds
FEEDBACK = {"ldfa": {1: ((12, 2), (2, 8)), 2: ((8, 2), (2, 4))},
            "kp": {1: ((12, 8), None), 2: ((8, 4), None)},
            "dldfa": {0: ((12, 2), (2, 4)), 1: ((8, 2), (2, 4))}}


# ldfa in both simulators; kp and dldfa in Icarus only (~6 s of CPU each; a Verilator build costs far more), both
# checked in Verilator by benchmarks/bench_rtl_ldfa.py --rule kp --rule dldfa
@pytest.mark.parametrize("rule,sim", [("ldfa", "icarus"), ("ldfa", "verilator"), ("kp", "icarus"),
                                      ("dldfa", "icarus")])
def test_ldfa_factors_and_every_weight_match_the_engine(rule, sim, tmp_path):
    require_tool(sim)
    from test_mlp import _random_samples, run_design

    eng = ldfa_engine(rule=rule, precision=PRECISION.get(rule))
    X, y, train = _random_samples(eng, SAMPLES, seed=7)
    rep = run_design(eng, X, y, train, tmp_path / "prj", sim, "mlp_lockstep", 2, disturb=True)
    g, design = rep["golden"], rep["design"]
    fb = FEEDBACK[rule]
    assert [lay.has_factors for lay in design.layers] == [k in fb for k in range(3)]
    assert rep["resets"] == 2 and rep["snapshots_compared"] == SAMPLES
    # every Q (kp: B) and P word of every el_feedback after every sample
    assert rep["factors_compared"] == SAMPLES * sum(a * b + (p[0] * p[1] if p else 0) for (a, b), p in fb.values())
    assert rep["pred_mismatches"] == 0
    assert rep["weight_bits_mismatched"] == 0 and rep["bias_bits_mismatched"] == 0, rep["first_mismatch"]
    assert rep["q_bits_mismatched"] == 0 and rep["p_bits_mismatched"] == 0, rep.get("first_factor_mismatch")
    # the feedback really learned: Q (B) and P of every el_feedback moved from their draws
    for k, ((nq, r), p) in fb.items():
        lay, B = design.layers[k], g[f"fb{k}"][-1]
        assert not np.array_equal(B[:nq, :r], lay.Q)
        assert p is None or not np.array_equal(B[nq:nq + p[0], :p[1]], lay.Pf)


def test_el_feedback_has_one_p_multiplier(tmp_path):
    """u = P delta, Oja's a = P s and P^T a run in different states, so they share one multiplier: el_feedback
    (default parameters: ldfa, serial Q pass) elaborates to three -- P's, P's increment and Q's increment."""
    require_tool("yosys")
    import subprocess

    from edgelearn.rtl.sim import HW_DIR

    for name in ("q", "p"):
        (tmp_path / f"{name}.hex").write_text("00\n" * 16)
    (tmp_path / "m.ys").write_text(
        f"read_verilog {HW_DIR / 'el_feedback.v'} {HW_DIR / 'el_convert.v'}\nhierarchy -top el_feedback\n"
        "proc\nflatten\nopt -fast\ntee -q -o count.txt select -count t:$mul\n")
    subprocess.run(["yosys", "-q", "-s", "m.ys"], cwd=tmp_path, check=True, capture_output=True, timeout=300)
    assert (tmp_path / "count.txt").read_text().split()[0] == "3"
