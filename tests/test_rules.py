"""The float reference's rules: exact identities, the graph cut, per-layer rules and smoke training."""
import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edgelearn.errors import RuleError
from edgelearn.network import load_network
from edgelearn.torch_ref import build_model, convert, convert_network


def mlp(sizes=(20, 16, 12, 5), act=nn.Tanh, seed=0):
    torch.manual_seed(seed)
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(act())
    return nn.Sequential(*layers)


def grads(model):
    return {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}


def test_fa_with_transposed_weights_reproduces_bp_exactly():
    torch.manual_seed(1)
    x, y = torch.randn(8, 20), torch.randint(0, 5, (8,))
    ref = mlp()
    fa_model = copy.deepcopy(ref)
    bp = convert(ref, "bp", input_shape=(20,), num_classes=5)
    fa = convert(fa_model, "fa", input_shape=(20,), num_classes=5)
    for site in fa.sites:  # B stored in W's shape: B = W makes the backward use W^T
        site.module.el_feedback.copy_(site.module.weight.detach())
    bp.train_step(x, y)
    fa.train_step(x, y)
    g_bp, g_fa = grads(ref), grads(fa_model)
    assert g_bp.keys() == g_fa.keys() and len(g_bp) == 6
    for k in g_bp:
        torch.testing.assert_close(g_fa[k], g_bp[k], rtol=0, atol=1e-7)


def test_fa_conv_with_weights_as_feedback_reproduces_bp():
    spec = load_network("small-convbn")
    ref = build_model(spec, seed=0)
    other = copy.deepcopy(ref)
    bp = convert_network(ref, spec, rule="bp")
    fa = convert_network(other, spec, rule="fa")
    for site in fa.sites:
        site.module.el_feedback.copy_(site.module.weight.detach())
    torch.manual_seed(0)
    x, y = torch.rand(6, 1, 8, 8), torch.randint(0, 10, (6,))
    bp.train_step(x, y)
    fa.train_step(x, y)
    g_bp, g_fa = grads(ref), grads(other)
    for k in g_bp:
        torch.testing.assert_close(g_fa[k], g_bp[k], rtol=1e-5, atol=1e-6)


def test_fa_random_feedback_differs_from_bp():
    torch.manual_seed(2)
    x, y = torch.randn(8, 20), torch.randint(0, 5, (8,))
    ref, other = mlp(), mlp()
    convert(ref, "bp", input_shape=(20,), num_classes=5).train_step(x, y)
    convert(other, "fa", input_shape=(20,), num_classes=5).train_step(x, y)
    assert not torch.allclose(ref[0].weight.grad, other[0].weight.grad)
    torch.testing.assert_close(ref[4].weight.grad, other[4].weight.grad)  # output layer: its own loss gradient


def test_drtp_signal_is_label_selected_column_of_B():
    torch.manual_seed(3)
    model = mlp((20, 16, 5))
    learner = convert(model, "drtp", input_shape=(20,), num_classes=5)
    x, y = torch.randn(7, 20), torch.tensor([0, 1, 2, 3, 4, 4, 2])
    learner.train_step(x, y)
    B = model[0].el_feedback  # (C, n): row c is the column B^T selects for label c
    z = model[0](x).detach()
    delta_y = -B[y] / len(y)  # the label-selected column, per-sample mean
    delta_z = delta_y * (1 - torch.tanh(z) ** 2)
    torch.testing.assert_close(model[0].weight.grad, delta_z.t() @ x, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(model[0].bias.grad, delta_z.sum(0), rtol=1e-5, atol=1e-7)
    # and the output layer gets the BCE gradient (y_K - y*) / (N C) h^T, Algorithm 1's eta/C step
    h = torch.tanh(z)
    e = (torch.sigmoid(model[2](h)) - F.one_hot(y, 5)) / (len(y) * 5)
    torch.testing.assert_close(model[2].weight.grad, e.detach().t() @ h, rtol=1e-5, atol=1e-7)


def test_dfa_and_sdfa_signals():
    torch.manual_seed(4)
    x, y = torch.randn(6, 20), torch.randint(0, 5, (6,))
    for rule in ("dfa", "sdfa"):
        model = mlp((20, 16, 5))
        learner = convert(model, rule, input_shape=(20,), num_classes=5)
        learner.train_step(x, y)
        with torch.no_grad():
            z = model[0](x)
            e = (torch.sigmoid(model[2](torch.tanh(z))) - F.one_hot(y, 5)) / (6 * 5)
        sig = e if rule == "dfa" else torch.sign(e) / 6
        delta_z = (sig @ model[0].el_feedback) * (1 - torch.tanh(z) ** 2)
        torch.testing.assert_close(model[0].weight.grad, delta_z.t() @ x, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("rule", ["dfa", "sdfa", "drtp", "shallow"])
def test_direct_rules_cut_the_graph(rule):
    """Downstream layers see a detached input: no backward ever reaches a hidden layer through them."""
    model = mlp()
    learner = convert(model, rule, input_shape=(20,), num_classes=5)
    seen = []
    for m in (model[2], model[4]):
        m.register_forward_pre_hook(lambda mod, inp: seen.append(inp[0].requires_grad))
    learner.train_step(torch.randn(4, 20), torch.randint(0, 5, (4,)))
    assert seen == [False, False]
    # hidden gradients do not depend on downstream weights (DRTP/shallow: none at all; DFA: only via e)
    if rule in ("drtp", "shallow"):
        x, y = torch.randn(4, 20), torch.randint(0, 5, (4,))

        def hidden_grads():
            model.zero_grad(set_to_none=True)
            learner.train_step(x, y)
            return [m.weight.grad for m in (model[0], model[2])]

        before = hidden_grads()
        with torch.no_grad():
            model[4].weight.mul_(-3.0)  # downstream of both hidden layers
        after_out = hidden_grads()
        with torch.no_grad():
            model[2].weight.mul_(-3.0)  # downstream of the first
        after_mid = hidden_grads()
        if rule == "shallow":
            assert before == after_out == after_mid == [None, None]
        else:
            assert all(g is not None and g.abs().sum() > 0 for g in before)
            assert torch.equal(before[0], after_out[0]) and torch.equal(before[1], after_out[1])
            assert torch.equal(before[0], after_mid[0])


def test_bp_keeps_graph():
    model = mlp()
    learner = convert(model, "bp", input_shape=(20,), num_classes=5)
    seen = []
    model[4].register_forward_pre_hook(lambda mod, inp: seen.append(inp[0].requires_grad))
    learner.train_step(torch.randn(4, 20), torch.randint(0, 5, (4,)))
    assert seen == [True]


def test_shallow_freezes_hidden_layers():
    model = mlp()
    w0 = model[0].weight.detach().clone()
    learner = convert(model, "shallow", input_shape=(20,), num_classes=5)
    opt = torch.optim.SGD(learner.parameters(), lr=0.5)
    for _ in range(3):
        opt.zero_grad()
        learner.train_step(torch.randn(4, 20), torch.randint(0, 5, (4,)))
        opt.step()
    assert torch.equal(model[0].weight, w0)
    assert model[4].weight.grad is not None


def test_per_layer_rules_bp_output_on_drtp_body():
    spec = load_network("fc2-500")
    model = build_model(spec, seed=0)
    learner = convert_network(model, spec, rule="drtp", rules={"fc2": "dfa", "out": "bp"})
    assert [s.rule.name for s in learner.sites] == ["drtp", "dfa", "bp"]
    learner.train_step(torch.rand(3, 1, 28, 28), torch.tensor([1, 2, 3]))
    assert all(p.grad is not None for p in model.parameters())


def test_bad_rules_are_clear_errors():
    with pytest.raises(RuleError, match="unknown rule 'nope'"):
        convert(mlp(), "nope", input_shape=(20,), num_classes=5)
    with pytest.raises(RuleError, match="not a trainable layer"):
        convert(mlp(), "dfa", {"fc9": "bp"}, input_shape=(20,), num_classes=5)
    with pytest.raises(RuleError, match="regression"):
        convert(mlp(), "drtp", input_shape=(20,), task="regression", output_dim=5, loss="mse")
    with pytest.raises(RuleError, match="MultiheadAttention"):
        convert(nn.Sequential(nn.MultiheadAttention(8, 2)), "dfa", input_shape=(3, 8), num_classes=5)


def test_probe_reports_zero_angle_for_bp_and_fa_with_transposed_weights():
    torch.manual_seed(5)
    x, y = torch.randn(16, 20), torch.randint(0, 5, (16,))
    bp = convert(mlp(), "bp", input_shape=(20,), num_classes=5)
    assert all(r["angle_to_bp"] < 1e-3 for r in bp.probe(x, y))
    fa_model = mlp()
    fa = convert(fa_model, "fa", input_shape=(20,), num_classes=5)
    for site in fa.sites:
        site.module.el_feedback.copy_(site.module.weight.detach())
    rep = fa.probe(x, y)
    assert all(r["angle_to_bp"] < 1e-2 and r["feedback_alignment"] < 1e-2 for r in rep)
    # probe leaves gradients untouched
    assert all(p.grad is None for p in fa_model.parameters())
    # DRTP signal: rank <= number of distinct labels in the batch
    d_model = mlp()
    d = convert(d_model, "drtp", input_shape=(20,), num_classes=5)
    y3 = torch.tensor([0, 1, 2] * 5 + [0])
    rep = d.probe(x, y3)
    for r in rep:
        assert 0 < r["effective_rank"] <= 3 + 1e-6
    # DRTP's angle is the one between -y* B_k and autograd's BCE gradient at the layer's output (after tanh)
    h1 = torch.tanh(d_model[0](x)).detach().requires_grad_()
    h2 = torch.tanh(d_model[2](h1))
    h2.retain_grad()
    F.binary_cross_entropy_with_logits(d_model[4](h2), F.one_hot(y3, 5).float()).backward()
    for r, h, m in zip(rep, (h1, h2), (d_model[0], d_model[2])):
        sig = -(F.one_hot(y3, 5).double() @ m.el_feedback.double())
        g = h.grad.double()
        angle = math.degrees(math.acos(float((sig * g).sum() / (sig.norm() * g.norm()))))
        assert r["angle_to_bp"] == pytest.approx(angle, abs=1e-4)


def test_probe_restores_batchnorm_buffers():
    spec = load_network("small-convbn")
    model = build_model(spec, seed=0)
    learner = convert_network(model, spec, rule="dfa")
    before = {k: v.clone() for k, v in model.named_buffers()}
    learner.probe(torch.rand(8, 1, 8, 8), torch.randint(0, 10, (8,)))
    for k, v in model.named_buffers():
        assert torch.equal(v, before[k]), k


SMOKE_CONFIGS = ["digits-mlp", "fc2-500", "small-convbn", "small-vit", "conv-mnist"]
SMOKE_RULES = ["bp", "shallow", "fa", "kp", "dfa", "sdfa", "drtp"]


@pytest.mark.parametrize("config", SMOKE_CONFIGS)
@pytest.mark.parametrize("rule", SMOKE_RULES)
def test_every_rule_trains_every_architecture(config, rule):
    """A few Adam steps on one small fixed batch lower the loss (CPU smoke test on small inputs)."""
    spec = load_network(config)
    torch.manual_seed(0)
    model = build_model(spec, seed=0)
    learner = convert_network(model, spec, rule=rule, seed=0)
    # FA/KP start with random feedback: Adam's normalised steps need a smaller rate before B and W align
    lr = {"shallow": 1e-2, "fa": 3e-4, "kp": 3e-4}.get(rule, 3e-3)
    opt = torch.optim.Adam(learner.parameters(), lr=lr)
    x = torch.rand(12, *spec.input_shape)
    y = torch.arange(12) % spec.num_classes
    # losses in train mode (batch statistics): the configs have no dropout, and running statistics after a
    # dozen steps would not describe the trained weights
    with torch.no_grad():
        loss0 = float(learner.loss(model(x), y))
    for _ in range(12 if "conv-mnist" != config else 6):
        opt.zero_grad()
        res = learner.train_step(x, y)
        opt.step()
        assert math.isfinite(res.loss)
    with torch.no_grad():
        loss1 = float(learner.loss(model(x), y))
    assert loss1 < loss0, (loss0, loss1)
