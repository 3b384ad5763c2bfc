"""Trained feedback in the HLS learning kernel (docs/arithmetic.md §16, docs/hls.md): kp's B and the factors Q, P of
ldfa / dldfa are ports of the kernel (state the host loads, surviving calls), learned by the feedback step before
each layer's update; g++ C-simulation against the fixed-point engine bit for bit, after every learning step.

One compile covers the three rules and the three signal paths: fc1 dldfa (the output error through its own Q P),
fc2 ldfa (its signal through fc3's kp B), fc3 kp (through the output layer's ldfa factors), the output layer ldfa
(P's Oja step on the one-hot target); ReLU and tanh hidden layers.
"""
import numpy as np
import pytest

from edgelearn.errors import ConfigError
from edgelearn.fixed import FixedEngine
from edgelearn.network import network_from_dict
from edgelearn.program import unsupported
from needs import require_tool

require_tool("g++", "ap_types", allow_module_level=True)
from edgelearn.hls import kernel  # noqa: E402

MIX = {"name": "fb-mix", "input_shape": [12], "num_classes": 4, "loss": "bce", "rule": "ldfa",
       "rules": {"fc1": "dldfa", "fc2": "ldfa", "fc3": "kp", "out": "ldfa"},
       "rule_params": {"rank": 2, "kp_decay": 0.0, "ldfa_decay": 0.0},
       "layers": [{"type": "linear", "out": 10, "act": "relu", "name": "fc1"},
                  {"type": "linear", "out": 8, "act": "tanh", "name": "fc2"},
                  {"type": "linear", "out": 6, "act": "relu", "name": "fc3"},
                  {"type": "linear", "out": 4, "name": "out"}]}


def _engine(**net):
    return FixedEngine(network_from_dict(dict(MIX, **net), source="fb-mix"), seed=3, bits=12)


def _samples(eng, n=6):
    rng = np.random.default_rng(0)
    return eng.quantize_inputs(rng.random((n, 12)), count=False), rng.integers(0, 4, n)


def test_trained_feedback_kernel_is_bit_exact_after_every_step(tmp_path):
    eng = _engine()
    assert not unsupported("hls", eng.program())  # ldfa, kp and dldfa are hidden rules of the kernel
    X, y = _samples(eng)
    proj = kernel.write_kernel_project(eng, tmp_path / "mix", tb_samples=(X, y))
    ks = proj.spec
    assert [fp["name"] for fp in ks.all_fb_ports()] == ["Q0", "P0", "Q1", "P1", "B2", "Q3", "P3"]
    top = (proj.firmware / "edgelearn_kernel.cpp").read_text()
    for call in ("el::lowrank_delta<config0, fbconfig0>(d3, Q0, P0, g0, d0);",  # dldfa: the output error
                 "el::fa_delta<config1, fbconfig2>(d2, B2, g1, d1);",           # ldfa below kp
                 "el::lowrank_delta<config2, fbconfig3>(d3, Q3, P3, g2, d2);",  # kp below ldfa
                 "el::lowrank_learn<fbconfig0>(a0, d3, label, Q0, P0);", "el::kp_learn<fbconfig2>(a1, d2, B2);"):
        assert call in top
    # the feedback step runs right before the layer's update, from its pre-update words
    assert top.index("el::lowrank_learn<fbconfig3>") < top.index("el::update<config3>")
    proj.compile()
    run = proj.run()  # every sample; the testbench compares outputs and the final W, b, LFSR states, Q, P, B
    assert run.output_mismatch_bits == 0 and run.state_mismatch_bits == 0
    start = ks.fb_values()
    assert all((run.fb[n] != v).any() for n, v in start.items())  # every trained word really learned
    # one call per sample from the memories the previous call left: the whole state after every step
    res = kernel.stepwise_check(proj, eng, X, y)
    assert res["steps"] == len(y) and res["output_bits"] == 0 and res["pred_mismatches"] == 0
    assert res["state_bits"] == 0 and set(res["tensor_bits"]) >= set(start), res
    # the cycle model counts the feedback steps
    cm = proj.cycles["worst_case"]
    fb_steps = [s for s in cm["steps"] if s["step"].startswith("feedback")]
    assert len(fb_steps) == 4 and all(s["cycles"] > 0 and s["learning"] for s in fb_steps)


def test_lanes_only_add_pragmas_to_the_feedback_path(tmp_path):
    eng = _engine()

    def text(lanes):
        p = kernel.write_kernel_project(eng, tmp_path / f"p{lanes}", lanes=lanes)
        code = [(p.firmware / f).read_text() for f in ("edgelearn_kernel.cpp", "el_feedback.h")]
        return ["\n".join(ln for ln in c.splitlines() if not ln.lstrip().startswith(("#pragma", "//"))) for c in code]

    four = text(4)
    assert four == text(1)
    part = kernel.render_top(kernel.KernelSpec.from_engine(eng), "k", 4)
    assert "#pragma HLS ARRAY_PARTITION variable=P3 type=cyclic factor=4 dim=2" in part


def test_a_drtp_network_renders_no_feedback_ports(tmp_path):
    eng = _engine(rules={}, rule="drtp")
    proj = kernel.write_kernel_project(eng, tmp_path / "drtp")
    assert not proj.spec.all_fb_ports() and not (proj.firmware / "el_feedback.h").exists()
    assert "fbconfig" not in (proj.firmware / "parameters.h").read_text()


def test_hidden_kp_needs_feedback_above():
    # kp / ldfa learn through the layer above's feedback; an output layer without any (drtp) has none to give
    eng = _engine(rules={"fc1": "dldfa", "fc2": "ldfa", "fc3": "kp", "out": "drtp"})
    with pytest.raises(ConfigError, match="layer fc3: rule kp learns through the layer above's feedback"):
        kernel.KernelSpec.from_engine(eng)
