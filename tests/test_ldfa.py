"""Low-dimensional feedback alignment (``ldfa``, ``dldfa``): Oja's rule, the FA/DFA limits, the LDFA paper's Fig. 2 in
miniature, every conversion path, and the rank of the delivered error."""
from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edgelearn.errors import RuleError
from edgelearn.network import load_network, network_from_dict
from edgelearn.torch_ref import build_model, convert, convert_network
from edgelearn.torch_ref.ldfa import normalized_covariance, oja_grad, semi_orthogonal


@pytest.fixture(autouse=True)
def one_thread():
    """These models are tiny: one thread is faster than two, and immune to a busy machine's oversubscription."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


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


def subspace_cosines(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosines of the principal angles between the column spaces of two matrices with orthonormal columns."""
    return torch.linalg.svdvals(a.t() @ b)


# ---------------------------------------------------------------------------------------------------------- Oja
def test_oja_converges_to_top_principal_subspace():
    """The P update (eq. 8 with Algorithm 1's covariance normalisation) on samples of a known covariance: the rows of
    P become an orthonormal basis of the top-r eigenvectors."""
    g = torch.Generator().manual_seed(0)
    m, r = 24, 4
    basis, _ = torch.linalg.qr(torch.randn(m, m, generator=g, dtype=torch.float64))
    eig = torch.cat([torch.tensor([10.0, 8.0, 6.0, 5.0]), torch.full((m - r,), 0.5)]).double()  # gap 5 -> 0.5
    sqrt_cov = basis * eig.sqrt()  # samples = z @ sqrt_cov^T have covariance basis diag(eig) basis^T
    top = basis[:, :r]
    P = torch.randn(r, m, generator=g, dtype=torch.float64) * 0.3
    before = subspace_cosines(torch.linalg.qr(P.t())[0], top).mean()
    for _ in range(1500):
        rows = torch.randn(64, m, generator=g, dtype=torch.float64) @ sqrt_cov.t()
        P -= 0.02 * oja_grad(P, rows)
    proj_dist = torch.linalg.matrix_norm(P.t() @ P - top @ top.t())
    cos = subspace_cosines(torch.linalg.qr(P.t())[0], top)
    assert before < 0.6
    assert proj_dist < 0.15, proj_dist
    assert cos.min() > 0.99, cos
    assert torch.allclose(P @ P.t(), torch.eye(r, dtype=P.dtype), atol=0.05)  # orthonormal rows


def test_oja_covariance_is_centred_and_scale_free():
    g = torch.Generator().manual_seed(1)
    rows = torch.randn(50, 6, generator=g, dtype=torch.float64)
    C = normalized_covariance(rows)
    assert C.diagonal().max() == pytest.approx(1.0)
    P = semi_orthogonal(3, 6, g).double()
    assert torch.allclose(oja_grad(P, rows), oja_grad(P, 1000.0 * rows + 7.0))  # gamma and the mean drop out
    assert torch.equal(oja_grad(P, torch.ones(5, 6, dtype=torch.float64)), torch.zeros_like(P))  # no variance
    Q = semi_orthogonal(8, 5, g)
    assert torch.allclose(Q.t() @ Q, torch.eye(5), atol=1e-5)  # r > m: orthonormal columns


# ------------------------------------------------------------------------------------------- FA / DFA limits
def _fa_like(model, rule, ref_rule, example, **kw):
    """Convert two copies: ``rule`` with full rank, P = I, Q = the reference rule's feedback, frozen, no decay."""
    ref_model = copy.deepcopy(model)
    ref = convert(ref_model, rule=ref_rule, example_input=example, **kw)
    params = {"ldfa_train_p": False, "ldfa_train_q": False, "ldfa_decay": 0.0}
    ranks = {}
    for s in ref.sites:
        m = s.module
        ranks[s.name] = m.weight.shape[0] if rule == "ldfa" else ref.output_dim
    learner = convert(model, rule=rule, example_input=example, rule_params={**params, "rank": ranks}, **kw)
    with torch.no_grad():
        for s, rs in zip(learner.sites, ref.sites):
            if not hasattr(s.module, "el_ldfa_p"):
                continue
            P = s.module.el_ldfa_p
            P.copy_(torch.eye(P.shape[0], P.shape[1]))
            s.module.el_ldfa_q.copy_(rs.module.el_feedback.view_as(s.module.el_ldfa_q))
    return learner, ref, ref_model


def test_ldfa_with_identity_P_and_frozen_Q_is_fa():
    """Sanity: r = full rank, P = I, Q = FA's B (both frozen): ldfa computes exactly FA's gradients."""
    torch.manual_seed(0)
    model = mlp((20, 16, 12, 5))
    x, y = torch.randn(8, 20), torch.randint(0, 5, (8,))
    learner, ref, ref_model = _fa_like(model, "ldfa", "fa", x[:2], num_classes=5)
    learner.train_step(x, y)
    ref.train_step(x, y)
    ga, gb = grads(model), grads(ref_model)
    assert set(gb) <= set(ga)
    for k in gb:
        assert torch.allclose(ga[k], gb[k], atol=1e-6), k
    assert all(not p.requires_grad for s in learner.sites for p in (s.module.el_ldfa_p, s.module.el_ldfa_q))


def test_ldfa_conv_with_identity_P_is_fa():
    """The same limit through the convolution path (P as a 1x1 conv, Q as the transposed factor conv), with BN."""
    spec = load_network("small-convbn")
    model = build_model(spec, seed=0)
    x, y = torch.rand(6, *spec.input_shape), torch.arange(6) % 10
    learner, ref, ref_model = _fa_like(model, "ldfa", "fa", x[:2], num_classes=10, loss="ce")
    learner.train_step(x, y)
    ref.train_step(x, y)
    ga, gb = grads(model), grads(ref_model)
    for k in gb:
        assert torch.allclose(ga[k], gb[k], atol=1e-5, rtol=1e-4), k


def test_dldfa_with_identity_P_and_frozen_Q_is_dfa():
    torch.manual_seed(0)
    model = mlp((20, 16, 12, 5))
    x, y = torch.randn(8, 20), torch.randint(0, 5, (8,))
    learner, ref, ref_model = _fa_like(model, "dldfa", "dfa", x[:2], num_classes=5)
    learner.train_step(x, y)
    ref.train_step(x, y)
    ga, gb = grads(model), grads(ref_model)
    for k in gb:
        assert torch.allclose(ga[k], gb[k], atol=1e-6), k


def test_q_gets_w_update_through_p_and_output_p_learns_targets():
    """eq. 7/11: Q^T's gradient is P grad_W (Kolen-Pollack through P); at the output layer P's gradient is minus
    the Oja step on the targets (eq. 8); hidden layers' P on the error at their output; decay lambda on W, Q, P."""
    torch.manual_seed(0)
    model = mlp((10, 9, 7, 4))
    x, y = torch.randn(16, 10), torch.randint(0, 4, (16,))
    learner = convert(model, rule="ldfa", example_input=x[:2], num_classes=4,
                      rule_params={"rank": 3, "ldfa_decay": 0.0})
    learner.train_step(x, y)
    for s in learner.sites:
        m = s.module
        assert m.el_ldfa_q.shape == (3, m.weight.shape[1]) and m.el_ldfa_p.shape == (3, m.weight.shape[0])
        assert torch.allclose(m.el_ldfa_q.grad, m.el_ldfa_p.detach() @ m.weight.grad, atol=1e-6)
    out = learner.sites[-1].module
    onehot = F.one_hot(y, 4).float()
    assert torch.allclose(out.el_ldfa_p.grad, oja_grad(out.el_ldfa_p.detach(), onehot), atol=1e-6)
    # decay: a second learner with lambda adds lambda * param to each gradient
    model2 = mlp((10, 9, 7, 4))
    learner2 = convert(model2, rule="ldfa", example_input=x[:2], num_classes=4,
                       rule_params={"rank": 3, "ldfa_decay": 0.5})
    learner2.train_step(x, y)
    for s, s2 in zip(learner.sites, learner2.sites):
        for name in ("weight", "el_ldfa_q", "el_ldfa_p"):
            a, b = getattr(s.module, name), getattr(s2.module, name)
            assert torch.allclose(b.grad, a.grad + 0.5 * a.detach(), atol=1e-6), (s.name, name)


# ------------------------------------------------------------------------------------ Fig. 2 in miniature
def _lowrank_teacher(seed: int, p: int):
    try:
        from edgelearn.data import load_dataset

        ds = load_dataset("lowrank", seed=seed, n_train=p, n_test=10, n=128, m=64, d=8, normalize=True)
        return torch.tensor(ds.x_train), torch.tensor(ds.y_train)
    except ImportError:  # pragma: no cover - the data module ships with the package
        g = torch.Generator().manual_seed(seed)
        u, v = torch.randn(8, 128, generator=g) / math.sqrt(128), torch.randn(8, 64, generator=g)
        x = torch.randn(p, 128, generator=g)
        return x, x @ (v.t() @ u).t() + torch.randn(p, 64, generator=g)


def _train_linear_net(x, y, train_p: bool, steps: int = 500, seed: int = 0):
    torch.manual_seed(100 + seed)
    model = nn.Sequential(nn.Linear(128, 64, bias=False), nn.Linear(64, 64, bias=False))  # n=128, k=64, m=64
    # W2 is the LDFA layer: W1 receives the error through B = QP (rank 8) instead of W2^T
    learner = convert(model, rule="bp", rules={1: "ldfa"}, example_input=x[:2], task="regression", output_dim=64,
                      loss="mse", seed=seed, rule_params={"rank": 8, "ldfa_train_p": train_p})
    opt = torch.optim.SGD(learner.parameters(), lr=0.04)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (32,), generator=g)
        opt.zero_grad()
        learner.train_step(x[idx], y[idx])
        opt.step()
    return model


def test_fig2_top_modes_align_only_when_P_is_trained():
    """LDFA paper Fig. 2 (d-g): on y = A x + noise (rank d = 8), a linear net n=128 -> k=64 -> m=64 whose W1 learns
    through a rank-8 feedback B = QP. With Q and P trained (eq. 7, 8) the top-8 singular modes of W2 W1 recover those
    of Sigma_io = <y x^T>; with Q trained but P fixed and random they do not, in the same number of steps.

    The alignment of mode i is the diagonal of the rotated product, U_i^T W2 W1 V_i / s_i (the quantity of Saxe et
    al. that Fig. 2 plots; 1 = mode fully learned); the principal angles of the top-8 singular subspaces and the
    alignment of P with the top principal directions of the targets are checked too."""
    x, y = _lowrank_teacher(0, 4000)
    U, S, Vh = torch.linalg.svd(y.t().double() @ x.double() / len(x))
    r = 8
    result = {}
    for train_p in (True, False):
        model = _train_linear_net(x, y, train_p)
        M = (model[1].weight @ model[0].weight).detach().double()
        modes = torch.stack([U[:, i] @ M @ Vh[i] / S[i] for i in range(r)])
        Um, _, Vmh = torch.linalg.svd(M)
        right = subspace_cosines(Vmh[:r].t(), Vh[:r].t()).mean()
        left = subspace_cosines(Um[:, :r], U[:, :r]).mean()
        P = model[1].el_ldfa_p.detach().double()
        p_cos = subspace_cosines(torch.linalg.qr(P.t())[0], U[:, :r]).mean()
        result[train_p] = dict(modes=modes, right=float(right), left=float(left), p_cos=float(p_cos))
    tr, fx = result[True], result[False]
    msg = {k: {n: (v.tolist() if torch.is_tensor(v) else v) for n, v in d.items()} for k, d in result.items()}
    # measured (seed 0, float32): trained modes 0.944..1.001 (mean 0.967), right-subspace cosine 0.987, P 0.999;
    # P fixed: modes 0.223..0.827 (mean 0.519), right-subspace cosine 0.876, P 0.247
    assert tr["modes"].min() > 0.85, msg
    assert tr["modes"].mean() > 0.93, msg
    assert fx["modes"].min() < 0.5, msg
    assert fx["modes"].mean() < 0.8, msg
    assert tr["modes"].mean() - fx["modes"].mean() > 0.2, msg
    assert tr["p_cos"] > 0.99 and fx["p_cos"] < 0.5, msg  # Oja found the teacher's output subspace
    assert tr["right"] > 0.97 and tr["right"] > fx["right"] + 0.03, msg
    assert tr["left"] > 0.99, msg


# ------------------------------------------------------------------------------------- every conversion path
def _digits(n=640):
    from edgelearn.data import load_dataset

    ds = load_dataset("digits", seed=0)
    x = torch.tensor(ds.x_train[:n]).reshape(-1, 1, 8, 8)
    return x, torch.tensor(ds.y_train[:n]).long()


def _spec(config: str, **rule_params):
    spec = load_network(config)
    if config == "ldfa-mlp-4x512":  # the paper's 4x512 MLP, on 8x8 digits
        raw = spec.to_dict()
        raw["input_shape"], raw["dataset"] = [1, 8, 8], "digits"
        spec = network_from_dict(raw)
    spec.rule_params.update(rule_params)
    return spec


PATHS = [("ldfa", {}), ("dldfa", {}), ("dldfa", {"dldfa_source": "penultimate"})]


@pytest.mark.parametrize("config", ["ldfa-mlp-4x512", "small-convbn", "small-vit"])
@pytest.mark.parametrize("rule,params", PATHS, ids=["ldfa", "dldfa", "dldfa-penultimate"])
def test_every_conversion_path_trains(config, rule, params):
    """A hundred steps on digits lower the loss on a fixed batch (MLP, conv + batch norm, pre-norm ViT)."""
    x, y = _digits()
    spec = _spec(config, **params)
    torch.manual_seed(0)
    # He init for all three: with plain SGD at 3e-3, 100 steps on digits move PyTorch-default-initialised layers
    # (the MLP config's init) too little to test the conversion path
    model = build_model(spec, seed=0, init="he_uniform")
    learner = convert_network(model, spec, rule=rule, seed=0)
    feedback = [p for s in learner.sites for p in s.rule.feedback_parameters()]
    assert feedback and all(any(p is q for q in learner.parameters()) for p in feedback)
    if config == "small-vit":  # as the paper (Adam); the ViT learns slowly on digits with any rule
        opt, steps = torch.optim.Adam(learner.parameters(), lr=1e-3), 100
    else:
        opt, steps = torch.optim.SGD(learner.parameters(), lr=3e-3, momentum=0.9), 100

    def loss():
        with torch.no_grad():
            return float(learner.loss(model(x[:256]), y[:256]))

    loss0 = loss()
    q0 = [p.detach().clone() for p in feedback]
    for step in range(steps):
        i = (step * 32) % len(x)
        opt.zero_grad()
        res = learner.train_step(x[i:i + 32], y[i:i + 32])
        opt.step()
        assert math.isfinite(res.loss)
    loss1 = loss()
    assert loss1 < (0.5 if config != "small-vit" else 0.85) * loss0, (loss0, loss1)
    assert any(not torch.equal(a, b) for a, b in zip(q0, feedback))  # the feedback learned


# ------------------------------------------------------------------------------- rank of the delivered error
@pytest.mark.parametrize("rule,params", PATHS, ids=["ldfa", "dldfa", "dldfa-penultimate"])
def test_effective_rank_of_delivered_error_is_at_most_r(rule, params):
    r = 3
    model = mlp((30, 24, 20, 16, 10), act=nn.ReLU)
    x, y = torch.randn(64, 30), torch.arange(64) % 10
    learner = convert(model, rule=rule, example_input=x[:2], num_classes=10, loss="ce",
                      rule_params={"rank": r, **params})
    opt = torch.optim.Adam(learner.parameters(), lr=1e-3)
    for _ in range(3):
        opt.zero_grad()
        learner.train_step(x, y)
        opt.step()
    before = {k: v.clone() for k, v in grads(model).items()}
    report = learner.probe(x, y)
    assert {k: v for k, v in grads(model).items()}.keys() == before.keys()
    for k, v in grads(model).items():
        assert torch.equal(v, before[k]), k  # the probe leaves gradients alone
    source = learner.sites[-2].name if params else None
    for row in report:
        if row["layer"] == source:  # the penultimate layer learns from the (full) output layer's backward
            continue
        assert 1.0 <= row["effective_rank"] <= r + 1e-6, row
        assert row["angle_to_bp"] is not None
    bp_rank = convert(mlp((30, 24, 20, 16, 10), act=nn.ReLU), rule="bp", example_input=x[:2], num_classes=10,
                      loss="ce").probe(x, y)
    assert bp_rank[0]["effective_rank"] > r + 1  # BP's error is not low-rank here


def test_rank_per_token_and_per_pixel():
    """Token inputs: every token's error passes the r-bottleneck (rank over all tokens <= r); conv: the error has r
    channels per pixel (checked with 1x1 convs, where that is the rank over pixels); dldfa on the ViT: per sample."""
    r = 2
    spec = _spec("small-vit", rank=r)
    model = build_model(spec, seed=0)
    learner = convert_network(model, spec, rule="ldfa")
    captured = {}

    def keep(mod, inp, out):
        out.register_hook(lambda g: captured.__setitem__("g", g))

    h = model.block1.mlp[2].register_forward_hook(keep)  # the point of mlp.0 = the input of mlp.3
    x, y = torch.rand(8, 1, 8, 8), torch.arange(8)
    learner.train_step(x, y)
    h.remove()
    g = captured["g"]
    assert g.dim() == 3 and torch.linalg.matrix_rank(g.reshape(-1, g.shape[-1]), rtol=1e-4) <= r

    conv = nn.Sequential(nn.Conv2d(3, 8, 1), nn.ReLU(), nn.Conv2d(8, 6, 1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(6 * 16, 5))
    xc, yc = torch.randn(4, 3, 4, 4), torch.arange(4)
    lc = convert(conv, rule="ldfa", example_input=xc[:2], num_classes=5, rule_params={"rank": r})
    captured.clear()
    h = conv[1].register_forward_hook(keep)
    lc.train_step(xc, yc)
    h.remove()
    g = captured["g"].permute(0, 2, 3, 1).reshape(-1, 8)
    assert torch.linalg.matrix_rank(g, rtol=1e-4) <= r

    spec = _spec("small-vit", rank=r)
    model = build_model(spec, seed=0)
    learner = convert_network(model, spec, rule="dldfa")
    for row in learner.probe(x, y):
        assert row["effective_rank"] <= r + 1e-6, row


# ------------------------------------------------------------------------------------------ params and errors
def test_rank_mapping_defaults_and_config():
    spec = load_network("ldfa-mlp-4x512")
    assert spec.rule == "ldfa" and spec.rule_params["rank"] == 10
    model = build_model(spec, seed=0)
    learner = convert_network(model, spec)
    assert [s.module.el_ldfa_p.shape[0] for s in learner.sites] == [10] * 5
    model = mlp((10, 9, 7, 4))
    learner = convert(model, rule="ldfa", example_input=torch.zeros(2, 10), num_classes=4,
                      rule_params={"rank": {"0": 2, "default": 5}})
    assert [s.module.el_ldfa_p.shape for s in learner.sites] == [(2, 9), (5, 7), (5, 4)]
    learner = convert(mlp((10, 9, 7, 4)), rule="ldfa", example_input=torch.zeros(2, 10), num_classes=4)
    assert [s.module.el_ldfa_q.shape[0] for s in learner.sites] == [4, 4, 4]  # default: number of classes
    # feedback alignment is reported as angle(W, P^T Q^T) for ldfa
    rep = learner.probe(torch.randn(4, 10), torch.arange(4))
    for row, site in zip(rep, learner.sites):
        W, B = site.module.weight.double(), (site.module.el_ldfa_p.t() @ site.module.el_ldfa_q).double()
        cos = float((W * B).sum() / (W.norm() * B.norm()))
        assert row["feedback_alignment"] == pytest.approx(math.degrees(math.acos(cos)), abs=1e-6), row


@pytest.mark.parametrize("params,match", [
    ({"rank": 0}, "positive integer"),
    ({"rank": "ten"}, "positive integer"),
    ({"rank": {"nope": 3}}, "not trainable layers"),
    ({"ldfa_decay": -1}, "ldfa_decay"),
    ({"ldfa_train_p": "yes"}, "ldfa_train_p"),
    ({"ldfa_output_p": "labels"}, "ldfa_output_p"),
])
def test_bad_rule_params_are_clear_errors(params, match):
    with pytest.raises(RuleError, match=match) as exc:
        convert(mlp(), rule="ldfa", example_input=torch.zeros(2, 20), num_classes=5, rule_params=params)
    assert "\n" not in str(exc.value)


def test_dldfa_penultimate_needs_dldfa_source_and_grouped_conv_is_rejected():
    with pytest.raises(RuleError, match="penultimate layer"):
        convert(mlp((20, 16, 12, 8, 5)), rule="dldfa", rules={2: "bp"}, example_input=torch.zeros(2, 20),
                num_classes=5, rule_params={"dldfa_source": "penultimate"})
    with pytest.raises(RuleError, match="dldfa_source"):
        convert(mlp(), rule="dldfa", example_input=torch.zeros(2, 20), num_classes=5,
                rule_params={"dldfa_source": "input"})
    grouped = nn.Sequential(nn.Conv2d(4, 4, 3, groups=2), nn.Flatten(), nn.Linear(16, 3))
    with pytest.raises(RuleError, match="groups"):
        convert(grouped, rule="ldfa", example_input=torch.zeros(2, 4, 4, 4), num_classes=3)


def test_feedback_is_saved_and_restored_with_the_model():
    model = mlp((10, 9, 7, 4))
    learner = convert(model, rule="ldfa", example_input=torch.zeros(2, 10), num_classes=4, rule_params={"rank": 2})
    opt = torch.optim.SGD(learner.parameters(), lr=0.1)
    opt.zero_grad()
    learner.train_step(torch.randn(8, 10), torch.arange(8) % 4)
    opt.step()
    state = copy.deepcopy(model.state_dict())
    assert {"0.el_ldfa_q", "0.el_ldfa_p", "4.el_ldfa_p"} <= set(state)
    fresh = mlp((10, 9, 7, 4), seed=5)
    learner2 = convert(fresh, rule="ldfa", example_input=torch.zeros(2, 10), num_classes=4, rule_params={"rank": 2},
                       seed=3)
    fresh.load_state_dict(state)
    for k, v in fresh.state_dict().items():
        assert torch.equal(v, state[k]), k
    # converting an already converted model keeps its feedback
    learner.remove()
    again = convert(model, rule="ldfa", example_input=torch.zeros(2, 10), num_classes=4, rule_params={"rank": 2},
                    seed=9)
    assert torch.equal(model[0].el_ldfa_q, state["0.el_ldfa_q"])
    assert again.sites[0].rule.feedback_parameters()[0] is model[0].el_ldfa_q
    del learner2
