"""Feedback that learns on chip in the fixed-point engine and its float twin (docs/arithmetic.md §16): kp (B gets
W's increment), ldfa with trained factors (Q by its Kolen-Pollack rule, P by the online Oja step) and dldfa.

The batch-1 SGD link to torch_ref (as tests/test_chain_links.py, learning rates from report.online.sgd_scale):
kp's W, b and B match to 1e-12; for ldfa / dldfa W, b and Q match for a given P, and P's step is checked against
the written online form -- torch_ref's Oja step uses the centred covariance of the batch, which is zero at batch 1.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from edgelearn.errors import ConfigError, FormatError, RuleError
from edgelearn.fixed import engine_kernels as K
from edgelearn.fixed.engine import FixedEngine
from edgelearn.network import network_from_dict
from edgelearn.program import FB_LEARN_P, FB_LEARN_Q, OJA_GAIN, OJA_OUTPUT, OJA_TARGET, StepOp, unsupported
from edgelearn.report.online import sgd_scale
from edgelearn.torch_ref import build_model, convert_network

SIZES = (8, 6, 5, 4)
C = SIZES[-1]
SHIFT = 3
RANK = 2
NO_DECAY = {"kp_decay": 0.0, "ldfa_decay": 0.0}


def _spec(rule: str, **rule_params):
    layers = [{"type": "linear", "out": n, "act": "tanh", "name": f"fc{k + 1}"} for k, n in enumerate(SIZES[1:-1])]
    layers.append({"type": "linear", "out": C, "name": "out"})
    return network_from_dict({"name": "fb-link", "input_shape": [SIZES[0]], "num_classes": C, "loss": "bce",
                              "rule": rule, "rule_params": {"rank": RANK, **rule_params}, "layers": layers})


def _oja_online(P, s, lr):
    """The written online Oja step (docs/arithmetic.md §16) in numpy: s normalised by a power of two to a maximum
    |component| in [1/4, 1/2), a = P s, P += 2**OJA_GAIN lr a (s - P^T a)^T."""
    s = s * 2.0 ** -(np.frexp(np.abs(s).max())[1] + 1)
    a = P @ s
    return P + lr * 2.0 ** OJA_GAIN * np.outer(a, s - P.T @ a)


def _torch_like_twin(rule, twin):
    """torch_ref (float64) of _spec(rule) holding the twin's W, b and feedback (torch keeps Q transposed)."""
    spec = _spec(rule, **NO_DECAY)
    model = build_model(spec, seed=0).double()
    learner = convert_network(model, spec, rule=rule)
    _copy_feedback(rule, twin, learner.sites, weights=True)
    return model, learner


def _copy_feedback(rule, twin, sites, weights=False):
    with torch.no_grad():
        for k, s in enumerate(sites):
            m = s.module
            if weights:
                m.weight.copy_(torch.from_numpy(twin.W[k].T))
                m.bias.copy_(torch.from_numpy(twin.b[k]))
            B = twin.B[k]
            if rule == "kp" and k > 0:
                m.el_feedback.copy_(torch.from_numpy(B.T))
            elif rule == "ldfa" and k > 0:
                n = SIZES[k]
                m.el_ldfa_q.copy_(torch.from_numpy(B[:n, :RANK].T))
                m.el_ldfa_p.copy_(torch.from_numpy(B[n:, :SIZES[k + 1]]))
            elif rule == "dldfa" and not s.is_output:
                n = SIZES[k + 1]
                m.el_ldfa_q.copy_(torch.from_numpy(B[:n, :RANK].T))
                m.el_ldfa_p.copy_(torch.from_numpy(B[n:, :C]))


def _twin_p(rule, twin, k):
    n = SIZES[k + 1] if rule == "dldfa" else SIZES[k]
    m = C if rule == "dldfa" else SIZES[k + 1]
    return twin.B[k][n:, :m]


@pytest.mark.parametrize("rule", ["kp", "ldfa", "dldfa"])
def test_twin_step_is_torch_ref_sgd_step_with_the_online_oja_step_for_p(rule):
    eng = FixedEngine(_spec(rule), bits=16, seed=1, lr_shift=SHIFT)
    twin = eng.float_twin()
    model, learner = _torch_like_twin(rule, twin)
    sites = learner.sites
    lrs = [2.0 ** -SHIFT * sgd_scale(rule, s.is_output, C, 1) for s in sites]
    has_p = [rule == "ldfa" and k > 0 or rule == "dldfa" and not s.is_output for k, s in enumerate(sites)]
    rng = np.random.default_rng(5)
    for _ in range(3):
        x = rng.uniform(-1, 1, SIZES[0])
        x[rng.random(SIZES[0]) < 0.25] = 0.0
        label = int(rng.integers(0, C))
        B0 = [b.copy() for b in twin.B]
        P0 = [_twin_p(rule, twin, k).copy() if has_p[k] else None for k in range(len(sites))]
        twin.step(x, label)
        model.zero_grad(set_to_none=True)
        learner.train_step(torch.from_numpy(x)[None], torch.tensor([label]))
        with torch.no_grad():
            for lr, s in zip(lrs, sites):
                m = s.module
                for t in (m.weight, m.bias, getattr(m, "el_feedback", None), getattr(m, "el_ldfa_q", None)):
                    if t is not None and t.grad is not None:
                        t -= lr * t.grad
                p = getattr(m, "el_ldfa_p", None)
                if p is not None and p.grad is not None:  # batch 1: no variance, no step of the batch form
                    assert not p.grad.any()
        for k, s in enumerate(sites):
            m = s.module
            np.testing.assert_allclose(m.weight.detach().numpy().T, twin.W[k], rtol=0, atol=1e-12)
            np.testing.assert_allclose(m.bias.detach().numpy(), twin.b[k], rtol=0, atol=1e-12)
            if rule == "kp" and k > 0:
                np.testing.assert_allclose(m.el_feedback.detach().numpy().T, twin.B[k], rtol=0, atol=1e-12)
                assert not np.array_equal(B0[k], twin.B[k])
            if has_p[k]:
                n = SIZES[k + 1] if rule == "dldfa" else SIZES[k]
                np.testing.assert_allclose(m.el_ldfa_q.detach().numpy().T, twin.B[k][:n, :RANK], rtol=0, atol=1e-12)
                assert not np.array_equal(B0[k][:n], twin.B[k][:n])
                # the source twin's delta: the same as torch_ref's (W's steps agree); the one-hot target at the output
                if s.is_output:
                    src = np.eye(C)[label]
                else:
                    src = twin._ds[len(sites) - 1] if rule == "dldfa" else twin._ds[k]
                np.testing.assert_allclose(_twin_p(rule, twin, k), _oja_online(P0[k], src, twin.lrs[k]),
                                           rtol=0, atol=1e-12)
                assert not np.array_equal(P0[k], _twin_p(rule, twin, k))
        _copy_feedback(rule, twin, sites)  # P: the twin's online step (torch_ref's own needs a batch)


@pytest.mark.parametrize("rule", ["kp", "ldfa", "dldfa"])
def test_engine_tracks_its_twin_and_is_deterministic(rule):
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 1, (150, SIZES[0]))
    y = rng.integers(0, C, 150)
    # 20 bits: the widest preset the rules' signal sums allow on this net (bp/fa-like, docs/engine.md)
    eng = FixedEngine(_spec(rule, rank=RANK), bits=20, seed=2, lr_shift=5)
    for k, B in enumerate(eng.B):
        if eng.program_layers[k].learns_feedback:  # away from the saturation of fb_q / fb_p: what is left is rounding
            eng.B[k][...] = B // 8
    B0 = [b.copy() for b in eng.B]
    twin = eng.float_twin()
    eng.fit(x, y, epochs=1)
    twin.fit(x, y, epochs=1)
    for name, c in eng.counters.items():
        assert all(c[t]["overflow"] == 0 for t in ("fb_q", "fb_p") if t in c), (name, c)
    assert max(float(np.abs(wf["W"] - wt).max()) for wf, wt in zip(eng.weights_float(), twin.W)) < 5e-3
    fb = eng.feedback_float()
    learned = [k for k, lay in enumerate(eng.program_layers) if lay.learns_feedback]
    assert learned == ([1, 2] if rule != "dldfa" else [0, 1])
    for k in learned:
        assert not np.array_equal(eng.B[k], B0[k])
        assert float(np.abs(fb[k] - twin.B[k]).max()) < 1e-2, (k, float(np.abs(fb[k] - twin.B[k]).max()))
    runs = []
    for _ in range(2):  # same seed, same bits (8-bit preset)
        e8 = FixedEngine(_spec(rule, rank=RANK), bits=8, seed=2)
        e8.fit(x, y, epochs=1)
        runs.append(([w["W"] for w in e8.weights()], [b.copy() for b in e8.B]))
    for a, b in zip(runs[0][0] + runs[0][1], runs[1][0] + runs[1][1]):
        assert np.array_equal(a, b)


def test_lowered_program_describes_the_trained_feedback():
    eng = FixedEngine(_spec("ldfa"), bits=8, seed=0)
    prog = eng.program()
    lay = prog.layers
    assert [lp.fb_learn for lp in lay] == [0, FB_LEARN_Q | FB_LEARN_P, FB_LEARN_Q | FB_LEARN_P]
    assert lay[2].oja_src == OJA_TARGET and str(lay[1].fb_q) == "fixed<8,1,RND,SAT>"
    assert eng.formats()["layers"]["out"]["fb_p"] == "fixed<8,1,RND,SAT>"
    steps = [str(s) for s in prog.steps]
    assert steps[-5:] == ["feedback(2)", "update(2)", "feedback(1)", "update(1)", "update(0)"]
    assert eng.P[2, K.FB_LEARN] == FB_LEARN_Q | FB_LEARN_P and StepOp.FEEDBACK == 6
    frozen = FixedEngine(_spec("ldfa", ldfa_train_p=False), bits=8).program()
    assert [lp.fb_learn for lp in frozen.layers] == [0, FB_LEARN_Q, FB_LEARN_Q]
    dl = FixedEngine(_spec("dldfa"), bits=8).program()
    assert [lp.oja_src for lp in dl.layers[:2]] == [OJA_OUTPUT] * 2 and dl.layers[0].fb_shape == (6 + RANK, C)
    # the HLS kernel and the RTL run all three (tests/test_hls_ldfa.py, rtl_tb/test_rtl_ldfa.py)
    assert not unsupported("rtl", FixedEngine(_spec("ldfa"), bits=8).program())
    for rule in ("kp", "dldfa"):
        p = FixedEngine(_spec(rule), bits=8).program()
        assert not unsupported("hls", p) and not unsupported("rtl", p)


def test_oja_increments_below_the_lsb_are_counted():
    # 8 bits: P's increments a_t rho_i 2**-(lr - 4) mostly round to 0 (the zero-update count of fb_p)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (40, SIZES[0]))
    y = rng.integers(0, C, 40)
    zeros = {}
    for bits in (8, 16):
        eng = FixedEngine(_spec("ldfa"), bits=bits, seed=0)
        eng.fit(x, y, epochs=1)
        zeros[bits] = eng.counters["out"]["fb_p"]["zero"]
    assert zeros[8] == 40 * RANK * C and zeros[16] < zeros[8] // 10  # every 8-bit increment underflows


def test_settings_the_engine_does_not_model_are_refused_with_one_line():
    with pytest.raises(RuleError, match="no kp_decay"):
        FixedEngine(_spec("kp", kp_decay=1e-4), bits=8)
    with pytest.raises(RuleError, match="dldfa_source"):
        FixedEngine(_spec("dldfa", dldfa_source="penultimate"), bits=8)
    with pytest.raises(ConfigError, match="learns online"):
        FixedEngine(_spec("kp"), bits=8, batch_size=4)
    eng = FixedEngine(_spec("ldfa"), bits=8)
    with pytest.raises(ConfigError, match="learns online"):
        eng.set_mode("batch", 4)
    with pytest.raises(FormatError, match="fb_p"):
        FixedEngine(_spec("ldfa"), bits=8, formats={"fb_p": "fixed<8,1,STOCH,SAT>"})
    with pytest.raises(FormatError, match="lr_mult"):
        spec = _spec("kp")
        spec.precision = {"lr_mult": 0.5}
        FixedEngine(spec, bits=8)
