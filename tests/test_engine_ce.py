"""Loss ce in the fixed-point engine: the softmax error as docs/arithmetic.md defines it, its float twin, and the
link to the float reference."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from edgelearn.data import load_dataset
from edgelearn.errors import ConfigError
from edgelearn.fixed.activations import SOFTMAX_FRAC, softmax_exp_table, softmax_probs
from edgelearn.fixed.engine import FixedEngine
from edgelearn.fixed.lower import raise_unsupported
from edgelearn.network import default_network, network_from_dict
from edgelearn.report.online import sgd_scale
from edgelearn.torch_ref import build_model, convert_network


def _ce_spec(rule="drtp", out_act=None):
    d = default_network().to_dict()
    d.update(loss="ce", name="digits-ce", rule=rule)
    if out_act:
        d["layers"][-1]["act"] = out_act
    return network_from_dict(d)


def _reference_probs(y, frac, table_bits, range_bits, p_frac):
    """The written definition, in Python integers: E_c = round(exp(-i bin) 2^16) at i = min(floor(d / bin), N-1),
    p_c = E_c 2^p_frac / S rounded to nearest, ties up."""
    n = 1 << table_bits
    binw = 2.0 ** (range_bits + 1 - table_bits)
    m = max(y)
    E = []
    for v in y:
        i = min(math.floor((m - v) * 2.0 ** -frac / binw), n - 1)
        E.append(math.floor(math.exp(-i * binw) * 2 ** SOFTMAX_FRAC + 0.5))
    S = sum(E)
    return [(2 * e * 2 ** p_frac + S) // (2 * S) for e in E]


@pytest.mark.parametrize("frac,table_bits,range_bits,p_frac", [(4, 10, 3, 7), (11, 10, 3, 15), (2, 8, 2, 7),
                                                               (20, 10, 3, 31)])
def test_softmax_probs_follow_the_written_definition(frac, table_bits, range_bits, p_frac):
    rng = np.random.default_rng(frac)
    table = softmax_exp_table(table_bits, range_bits)
    assert table[0] == 1 << SOFTMAX_FRAC and np.all(np.diff(table) <= 0)
    hits = 0
    for _ in range(200):
        n = int(rng.integers(2, 12))
        y = rng.integers(-(8 << frac), 8 << frac, n).astype(np.int64)
        if rng.random() < 0.2:
            y[:] = y[0]  # ties: every class weighs 1.0
        p = np.empty(n, dtype=np.int64)
        softmax_probs(y, n, frac, table, table_bits, range_bits, p_frac, p)
        assert p.tolist() == _reference_probs(y.tolist(), frac, table_bits, range_bits, p_frac)
        hits += int(p.max() > 0)
        # a probability: within the rounding of the division, the classes sum to 1
        assert abs(int(p.sum()) - (1 << p_frac)) <= n
    assert hits == 200


def test_ce_engine_tracks_its_twin_and_learns():
    ds = load_dataset("digits", None, seed=0)
    for bits, rule in ((16, "dfa"), (8, "drtp")):
        eng = FixedEngine(_ce_spec(rule), bits=bits, seed=0)
        assert eng.precision.layers[-1].act.signed and eng.acts[-1] == "none"  # logits, not sigmoid outputs
        twin = eng.float_twin()
        eng.fit(ds.x_train, ds.y_train, epochs=1)
        twin.fit(ds.x_train, ds.y_train, epochs=1)
        acc, tw_acc = eng.evaluate(ds.x_test, ds.y_test), twin.evaluate(ds.x_test, ds.y_test)
        assert acc > 0.85 and tw_acc > 0.85, (bits, rule, acc, tw_acc)
        if bits == 16:  # the table's bins are the only difference left
            assert (eng.predict(ds.x_test) == twin.predict(ds.x_test)).mean() >= 0.97
            assert abs(acc - tw_acc) <= 0.02


@pytest.mark.parametrize("rule", ["bp", "dfa", "drtp"])
def test_torch_ref_ce_step_equals_float_twin_step(rule):
    # torch's cross entropy is the mean over the batch only: every layer's SGD rate is 2**-shift * N
    shift = 3
    spec = _ce_spec(rule)
    eng = FixedEngine(spec, bits=16, seed=1, lr_shift=shift)
    twin = eng.float_twin()
    model = build_model(spec, seed=0).double()
    learner = convert_network(model, spec, rule=rule)
    with torch.no_grad():
        for k, s in enumerate(learner.sites):
            s.module.weight.copy_(torch.from_numpy(twin.W[k].T))
            s.module.bias.copy_(torch.from_numpy(twin.b[k]))
            fb = getattr(s.module, "el_feedback", None)
            if fb is not None:
                fb.copy_(torch.from_numpy(twin.B[k]))
    ds = load_dataset("digits", None, seed=0)
    for n in range(3):
        x, label = ds.x_train[n].astype(np.float64), int(ds.y_train[n])
        twin.step(x, label)
        model.zero_grad(set_to_none=True)
        learner.train_step(torch.from_numpy(x)[None], torch.tensor([label]))
        with torch.no_grad():
            for s in learner.sites:
                if s.module.weight.grad is not None:
                    lr = 2.0 ** -shift * sgd_scale(rule, s.is_output, 10, loss="ce")
                    s.module.weight -= lr * s.module.weight.grad
                    s.module.bias -= lr * s.module.bias.grad
        for k, s in enumerate(learner.sites):
            np.testing.assert_allclose(s.module.weight.detach().numpy().T, twin.W[k], rtol=0, atol=1e-12)
            np.testing.assert_allclose(s.module.bias.detach().numpy(), twin.b[k], rtol=0, atol=1e-12)


def test_ce_refusals():
    with pytest.raises(ConfigError, match="activation must be none"):
        FixedEngine(_ce_spec(out_act="sigmoid"), bits=8)
    prog = FixedEngine(_ce_spec(), bits=8).program()
    raise_unsupported("hls", prog)  # the HLS learning kernel runs ce (docs/hls.md)
    raise_unsupported("rtl", prog)  # and the RTL (el_softmax, docs/rtl.md "Loss ce")
