"""The link between the float reference (edgelearn.torch_ref) and the fixed-point chain: the engine's float twin
(edgelearn.fixed.twin) takes the same step as torch_ref with plain SGD, for every rule both implement.

The scaling between them (docs/architecture.md, "The fixed-point chain"): the twin adds ``2**-shift * x d`` with
the per-sample error ``d = t - y``; torch_ref's BCE is the mean over the batch and the classes, so its gradients
carry ``1/(N C)`` where they derive from the output error (the output layer, bp, fa, dfa) and ``1/N`` where they
do not (drtp's ``-B^T y* / N``, sdfa's ``B^T sign(e) / N``).  SGD with ``lr = 2**-shift * N C`` (resp.
``2**-shift * N``) per layer gives the twin's update.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from edgelearn.fixed.engine import FixedEngine
from edgelearn.network import network_from_dict
from edgelearn.report.online import sgd_scale
from edgelearn.torch_ref import build_model, convert_network

SIZES = (8, 6, 5, 4)
C = SIZES[-1]
SHIFT = 3


def _spec(rule: str):
    layers = [{"type": "linear", "out": n, "act": "tanh", "name": f"fc{k + 1}"} for k, n in enumerate(SIZES[1:-1])]
    layers.append({"type": "linear", "out": C, "name": "out"})
    return network_from_dict({"name": "chain-link", "input_shape": [SIZES[0]], "num_classes": C, "loss": "bce",
                              "rule": rule, "layers": layers})


def torch_lr(rule: str, is_output: bool, n: int) -> float:
    """SGD learning rate that makes torch_ref's step on a batch of n samples the twin's step (per sample)."""
    return 2.0 ** -SHIFT * sgd_scale(rule, is_output, C, n)


@pytest.mark.parametrize("rule", ["bp", "fa", "dfa", "sdfa", "drtp", "shallow"])
def test_torch_ref_step_equals_float_twin_step(rule):
    torch.manual_seed(0)
    eng = FixedEngine(_spec(rule), bits=16, seed=1, lr_shift=SHIFT, threads=1)
    twin = eng.float_twin()
    assert np.all(twin.lrs == 2.0 ** -SHIFT)
    model = build_model(_spec(rule), seed=0).double()
    learner = convert_network(model, _spec(rule), rule=rule)
    sites = learner.sites
    assert [s.module.weight.shape for s in sites] == [(b, a) for a, b in zip(SIZES[:-1], SIZES[1:])]
    # the twin's weights (the engine's quantized init) and feedback into the torch model
    with torch.no_grad():
        for k, s in enumerate(sites):
            s.module.weight.copy_(torch.from_numpy(twin.W[k].T))
            s.module.bias.copy_(torch.from_numpy(twin.b[k]))
            fb = getattr(s.module, "el_feedback", None)
            if fb is not None:
                # direct rules: B (classes, n_k) in both; fa: the twin keeps B in its (n_in, n_out) weight layout
                fb.copy_(torch.from_numpy(twin.B[k].T if rule == "fa" else twin.B[k]))
    rng = np.random.default_rng(5)
    for _ in range(3):  # a few consecutive steps: the states stay identical
        x = rng.uniform(-1, 1, SIZES[0])
        x[rng.random(SIZES[0]) < 0.25] = 0.0
        label = int(rng.integers(0, C))
        before = [w.copy() for w in twin.W]
        twin.step(x, label)
        model.zero_grad(set_to_none=True)
        learner.train_step(torch.from_numpy(x)[None], torch.tensor([label]))
        with torch.no_grad():
            for s in sites:
                if s.module.weight.grad is not None:
                    lr = torch_lr(rule, s.is_output, 1)
                    s.module.weight -= lr * s.module.weight.grad
                    s.module.bias -= lr * s.module.bias.grad
        for k, s in enumerate(sites):
            np.testing.assert_allclose(s.module.weight.detach().numpy().T, twin.W[k], rtol=0, atol=1e-12,
                                       err_msg=f"{rule}: layer {s.name} weights")
            np.testing.assert_allclose(s.module.bias.detach().numpy(), twin.b[k], rtol=0, atol=1e-12,
                                       err_msg=f"{rule}: layer {s.name} biases")
        moved = [not np.array_equal(b, w) for b, w in zip(before, twin.W)]
        assert moved == [rule != "shallow"] * (len(SIZES) - 2) + [True]
