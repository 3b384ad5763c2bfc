"""SSA (SVD-space alignment): factorisation, Stiefel constraint, local loss, rank schedule, graph cut, training.

All on CPU with scikit-learn's digits or random tensors; the whole file runs in well under a minute.
"""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from edgelearn.data.digits import load_digits_dataset
from edgelearn.errors import RuleError
from edgelearn.network import load_network
from edgelearn.torch_ref import build_model, convert, convert_network
from edgelearn.torch_ref.ssa import DEFAULTS, SSA, layer_matrix
from helpers import reachable_leaves

NETS = ("digits-mlp", "small-convbn", "small-vit")


@pytest.fixture(scope="module")
def digits():
    ds = load_digits_dataset(seed=0)
    return (torch.tensor(ds.x_train), torch.tensor(ds.y_train), torch.tensor(ds.x_test), torch.tensor(ds.y_test))


@pytest.fixture(autouse=True)
def _threads():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # small models: one thread is fastest and deterministic
    yield
    torch.set_num_threads(n)


def make(name: str, dtype=torch.float32, seed: int = 0, **rule_params):
    spec = load_network(name)
    spec.rule_params.update(rule_params)
    model = build_model(spec, seed=seed).to(dtype)
    return spec, model, convert_network(model, spec, rule="ssa", seed=seed)


def orth_error(p: torch.Tensor) -> float:
    p = p.detach()
    return float((p.t() @ p - torch.eye(p.shape[1], dtype=p.dtype)).abs().max())


def run_epochs(learner, opt, x, y, epochs: int, batch: int = 32, on_step=None, schedule: bool = True):
    """Train; return the mean training loss of each epoch and of the first 10 steps."""
    means, first = [], None
    for ep in range(epochs):
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(ep))
        losses = []
        for i in range(0, len(x), batch):
            idx = perm[i:i + batch]
            opt.zero_grad()
            losses.append(learner.train_step(x[idx], y[idx]).loss)
            opt.step()
            if on_step is not None:
                on_step()
            if first is None and len(losses) == 10:
                first = sum(losses) / 10
        if schedule:
            learner.end_epoch(ep, epochs)
        means.append(sum(losses) / len(losses))
    return first, means


def accuracy(model, x, y) -> float:
    was = model.training
    model.eval()
    with torch.no_grad():
        acc = float((model(x).argmax(1) == y).float().mean())
    model.train(was)
    return acc


# ---------------------------------------------------------------------------------------------------------------------
# Factorisation at set-up


@pytest.mark.parametrize("name", NETS)
def test_factorisation_reproduces_every_layer_exactly(name, digits):
    """Full-rank SVD at set-up: each layer's factored forward equals its dense output (float64, to rounding)."""
    spec = load_network(name)
    model = build_model(spec, seed=0).double().eval()
    x = digits[0][:16].double()
    dense = {}
    handles = [m.register_forward_hook(lambda mod, inp, out, n=n: dense.__setitem__(n, (inp[0], out)))
               for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    with torch.no_grad():
        ref = model(x)
    for h in handles:
        h.remove()
    keys = set(model.state_dict())
    learner = convert_network(model, spec, rule="ssa")
    assert keys <= set(model.state_dict())  # original keys kept (weight is the frozen dense mirror)
    for site in learner.sites:
        m, rule = site.module, site.rule
        assert rule.rank == min(layer_matrix(m, "spatial").shape)
        assert not m.weight.requires_grad and all(getattr(m, n).requires_grad for n in ("ssa_U", "ssa_S", "ssa_V"))
        inp, out = dense[site.name]
        with torch.no_grad():
            assert torch.allclose(rule.forward(inp), out, rtol=0, atol=1e-12), site.name
    ids = {id(p) for p in learner.parameters()}
    assert all(id(s.module.weight) not in ids for s in learner.sites)
    with torch.no_grad():
        assert torch.allclose(model.eval()(x), ref, rtol=0, atol=1e-12)  # eval path: the dense mirror


CONVS = [dict(kernel_size=3, padding=1), dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 2), dilation=(1, 2)),
         dict(kernel_size=(3, 2), padding="same"), dict(kernel_size=3, padding=1, padding_mode="reflect"),
         dict(kernel_size=(2, 3), stride=2, padding=(2, 1), padding_mode="circular", bias=False)]


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("split", ["spatial", "channel"])
@pytest.mark.parametrize("conf", CONVS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_conv_split_into_two_factor_convs_is_exact(split, conf):
    conv = nn.Conv2d(3, 5, **conf).double()
    head = nn.LazyLinear(4).double()
    model = nn.Sequential(conv, nn.ReLU(), nn.Flatten(), head)
    x = torch.randn(4, 3, 9, 8, dtype=torch.float64)
    with torch.no_grad():
        model(x)  # materialise the lazy head
        ref = conv(x)
    learner = convert(model, "ssa", example_input=x, num_classes=4, loss="ce", rule_params={"ssa_conv_split": split})
    rule = learner.sites[0].rule
    c_out, c_in, kh, kw = conv.weight.shape
    assert rule.rank == (min(c_out * kw, c_in * kh) if split == "spatial" else min(c_out, c_in * kh * kw))
    with torch.no_grad():
        assert torch.allclose(rule.forward(x), ref, rtol=0, atol=1e-12)


def test_linear_on_token_inputs_and_truncated_rank():
    lin = nn.Linear(12, 6).double()
    model = nn.Sequential(lin, nn.GELU(), nn.Flatten(), nn.Linear(5 * 6, 3)).double()
    x = torch.randn(2, 5, 12, dtype=torch.float64)
    learner = convert(model, "ssa", example_input=x, num_classes=3, loss="ce", rule_params={"ssa_rank": {"0": 2, "default": "full"}})
    assert [s.rule.rank for s in learner.sites] == [2, 3]  # per-layer mapping by layer name
    model = nn.Sequential(lin := nn.Linear(12, 6), nn.GELU(), nn.Flatten(), nn.Linear(5 * 6, 3)).double()
    learner = convert(model, "ssa", example_input=x, num_classes=3, loss="ce", rule_params={"ssa_rank": 0.5})
    rule = learner.sites[0].rule
    assert rule.rank == 3
    # a truncated factorisation is the best rank-3 approximation of W (Eckart-Young)
    U, s, Vh = torch.linalg.svd(lin.weight.detach())
    with torch.no_grad():
        assert torch.allclose(rule.forward(x), x @ ((U[:, :3] * s[:3]) @ Vh[:3]).t() + lin.bias, atol=1e-12)


# ---------------------------------------------------------------------------------------------------------------------
# Stiefel constraint


@pytest.mark.parametrize("name", ["digits-mlp", "small-convbn"])
def test_factors_stay_orthonormal_during_training(name, digits):
    """U^T U = I and V^T V = I to float32 rounding after every optimiser step (large lr, rank cuts included), and the
    dense mirror always equals U diag(S) V^T."""
    x, y = digits[0][:640], digits[1][:640]
    spec, model, learner = make(name)
    opt = torch.optim.Adam(learner.parameters(), lr=1e-2)
    worst = [0.0]

    def check():
        for s in learner.sites:
            m = s.module
            worst[0] = max(worst[0], orth_error(m.ssa_U), orth_error(m.ssa_V))

    run_epochs(learner, opt, x, y, epochs=4, on_step=check)
    assert worst[0] < 1e-5
    for s in learner.sites:
        m, split = s.module, s.rule.cfg["ssa_conv_split"]
        W = (m.ssa_U * m.ssa_S) @ m.ssa_V.t()
        assert torch.allclose(layer_matrix(m, split), W.detach(), atol=1e-5)
    assert any(s.rule.rank < s.rule.r0 for s in learner.sites)  # the schedule did cut ranks meanwhile


def test_tangent_projection():
    torch.manual_seed(0)
    X = torch.linalg.qr(torch.randn(9, 4, dtype=torch.float64))[0]
    G = torch.randn(9, 4, dtype=torch.float64)
    T = SSA.project(X, G, "tangent")
    assert torch.allclose(X.t() @ T + T.t() @ X, torch.zeros(4, 4, dtype=torch.float64), atol=1e-12)  # tangent
    assert torch.allclose(SSA.project(X, T, "tangent"), T, atol=1e-12)  # a projection
    N = SSA.project(X, G, "paper")  # (I - X X^T) G as printed in eqs. 12-13: the normal-to-span part only
    assert torch.allclose(X.t() @ N, torch.zeros(4, 4, dtype=torch.float64), atol=1e-12)


def test_without_retraction_the_soft_penalty_bounds_the_drift(digits):
    x, y = digits[0][:640], digits[1][:640]
    drift = {}
    for gamma in (0.0, 1e-2):
        spec, model, learner = make("digits-mlp", ssa_retraction="none", ssa_gamma=gamma, ssa_schedule="none")
        opt = torch.optim.Adam(learner.parameters(), lr=1e-3)
        run_epochs(learner, opt, x, y, epochs=3)
        drift[gamma] = max(orth_error(s.module.ssa_U) for s in learner.sites)
    assert drift[1e-2] < 0.2 and drift[1e-2] < drift[0.0] / 2


# ---------------------------------------------------------------------------------------------------------------------
# Local loss and graph cut


def test_local_loss_gradients_match_the_equations():
    """After one step, the gradients in .grad are eqs. 11-13 as implemented: DFA signal through the layer, S^{-1}
    scaling, alignment and orthogonality terms, tangent projection."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(7, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    x, y = torch.randn(6, 7, dtype=torch.float64), torch.randint(0, 3, (6,))
    beta, gamma = 0.3, 0.2
    learner = convert(model, "ssa", example_input=x, num_classes=3, loss="ce",
                      rule_params={"ssa_beta": beta, "ssa_gamma": gamma, "ssa_hoyer": 0.0, "ssa_rank": {"0": 4},
                                   "ssa_retraction": "none"})  # (with a retraction the eq. 9 term is ~0, skipped)
    m = model[0]
    with torch.no_grad():  # push U off the manifold a little so that the orthogonality term is not zero
        m.ssa_U.mul_(1.01)
    U, S, V = (getattr(m, n).detach().clone() for n in ("ssa_U", "ssa_S", "ssa_V"))
    learner.train_step(x, y)
    # expected, by hand
    with torch.no_grad():
        out = model[2](torch.tanh(x @ (U * S @ V.t()).t() + m.bias))
    out.requires_grad_(True)
    e = torch.autograd.grad(nn.functional.cross_entropy(out, y), out)[0]
    a = x @ (U * S @ V.t()).t() + m.bias
    delta = (e @ m.el_feedback) * (1 - torch.tanh(a) ** 2)  # DFA signal through tanh
    G = delta.t() @ x  # grad_W L_CE (pseudo-gradient)
    eye = torch.eye(4, dtype=torch.float64)

    def proj(X, Z):
        XtZ = X.t() @ Z
        return Z - X @ (XtZ + XtZ.t()) / 2

    gU = proj(U, G @ V / S + 2 * beta * (U - m.ssa_B_U)) + 4 * gamma * U @ (U.t() @ U - eye)
    gS = torch.diagonal(U.t() @ G @ V) + 2 * beta * (S - m.ssa_B_S)
    gV = proj(V, G.t() @ U / S + 2 * beta * (V - m.ssa_B_V)) + 4 * gamma * V @ (V.t() @ V - eye)
    assert torch.allclose(m.ssa_S.grad, gS, atol=1e-10)
    assert torch.allclose(m.ssa_U.grad, gU, atol=1e-10)
    assert torch.allclose(m.ssa_V.grad, gV, atol=1e-10)


@pytest.mark.parametrize("name", NETS)
def test_graph_is_cut_between_layers(name, digits):
    """The backward of a hidden layer's local loss reaches only its own parameters (and parameter-free or
    normalising modules of its segment), never another trainable layer: no BP backward across layers."""
    spec, model, learner = make(name)
    factor_owner = {id(getattr(s.module, n)): s.name for s in learner.sites for n in ("ssa_U", "ssa_S", "ssa_V", "bias")
                    if getattr(s.module, n, None) is not None}
    reached: dict[str, set[str]] = {}
    for s in learner.sites[:-1]:
        original = s.rule.signal

        def spy(ctx, point, s=s, original=original):
            reached.setdefault(s.name, set()).update(factor_owner[i] for i in reachable_leaves(point) if i in factor_owner)
            return original(ctx, point)

        s.rule.signal = spy
    learner.train_step(digits[0][:8], digits[1][:8])
    assert set(reached) == {s.name for s in learner.sites[:-1]}
    for name_, owners in reached.items():
        assert owners == {name_}, (name_, owners)


def test_hidden_gradients_depend_on_downstream_layers_only_through_the_output_error(digits):
    """With the output error e held fixed, perturbing every downstream layer leaves a hidden layer's gradients
    unchanged (under BP they would change): the only coupling between layers is e, as in DFA."""
    x, y = digits[0][:16], digits[1][:16]
    e_fixed = torch.randn(16, 10, generator=torch.Generator().manual_seed(1)) / 16
    grads = []
    for perturb in (False, True):
        spec, model, learner = make("small-convbn")
        if perturb:
            with torch.no_grad():
                for s in learner.sites[1:]:
                    s.module.ssa_S.mul_(1.7)
                    if s.module.bias is not None:
                        s.module.bias.add_(0.3)
        first = learner.sites[0].rule
        original = first.signal

        def fixed(ctx, point, original=original):
            ctx.error = e_fixed
            return original(ctx, point)

        first.signal = fixed
        learner.train_step(x, y)
        m = learner.sites[0].module
        grads.append([m.ssa_U.grad.clone(), m.ssa_S.grad.clone(), m.ssa_V.grad.clone()])
    for a, b in zip(*grads):
        assert torch.equal(a, b)


def test_probe_reports_angles_and_alignment(digits):
    spec, model, learner = make("digits-mlp")
    report = learner.probe(digits[0][:64], digits[1][:64])
    assert [r["layer"] for r in report] == ["fc1"]
    assert report[0]["effective_rank"] > 1
    assert report[0]["feedback_alignment"] is not None
    # the angle between SSA's delivered signal alpha * e D and autograd's BCE gradient at fc1's output (after tanh)
    x, y = digits[0][:64], digits[1][:64]
    h = model[:3](x).detach().requires_grad_()
    out = model[3](h)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(out, torch.nn.functional.one_hot(y, 10).to(out.dtype))
    g, e = torch.autograd.grad(loss, [h, out])
    site = learner.sites[0]
    sig = (e @ site.module.el_feedback * site.rule.cfg["ssa_alpha"]).double()
    g = g.double()
    angle = math.degrees(math.acos(float((sig * g).sum() / (sig.norm() * g.norm()))))
    assert report[0]["angle_to_bp"] == pytest.approx(angle, abs=1e-4)


# ---------------------------------------------------------------------------------------------------------------------
# Rank schedule


def test_hybrid_rank_schedule(digits):
    x, y = digits[0][:320], digits[1][:320]
    spec, model, learner = make("digits-mlp")
    fc1, out = (s.rule for s in learner.sites)
    assert (fc1.r0, out.r0) == (64, 10)  # min(128, 64), min(10, 128)
    opt = torch.optim.Adam(learner.parameters(), lr=1e-3)
    epochs = 10
    for ep in range(epochs):
        run_epochs(learner, opt, x, y, epochs=1, schedule=False)
        before = {r: r.rank for r in (fc1, out)}
        expected = {}
        for r in (fc1, out):
            if ep < 3:  # epoch-based phase (30 % of the epochs): r0 -> 0.7 r0 linearly
                expected[r] = math.floor(r.r0 * (1 - 0.1 * (ep + 1)) + 0.5)
            else:  # threshold phase: 95 % of the spectral energy, below m n / (m + n), at least 0.3 r0
                s2 = torch.sort(r.module.ssa_S.detach().double() ** 2, descending=True).values
                energy = int((torch.cumsum(s2, 0) / s2.sum() < 0.95).sum()) + 1
                m_, n_ = layer_matrix(r.module, "spatial").shape
                cap = math.ceil(m_ * n_ / (m_ + n_)) - 1
                expected[r] = min(before[r], max(min(energy, cap), math.ceil(0.3 * r.r0)))
        learner.end_epoch(ep, epochs)
        for r in (fc1, out):
            assert r.rank == expected[r], (ep, r.site.name)
            m = r.module
            assert m.ssa_U.shape[1] == m.ssa_V.shape[1] == m.ssa_B_U.shape[1] == r.rank
            assert torch.linalg.matrix_rank(m.weight.detach()) == r.rank
    assert fc1.rank_history[:4] == [64, 58, 51, 45]
    assert out.rank_history[:4] == [10, 9, 8, 7]
    assert fc1.rank <= 42  # 128 * 64 / 192 = 42.67
    assert torch.linalg.matrix_rank(learner.sites[0].module.el_feedback) == min(10, fc1.rank)


def test_rank_cut_keeps_largest_singular_values_and_optimiser_state(digits):
    x, y = digits[0][:96], digits[1][:96]
    spec, model, learner = make("digits-mlp")
    rule = learner.sites[0].rule
    m = rule.module
    opt = torch.optim.Adam(learner.parameters(), lr=1e-3)
    run_epochs(learner, opt, x, y, epochs=1, schedule=False)
    s = m.ssa_S.detach().clone()
    keep = torch.sort(torch.argsort(s.abs(), descending=True)[:20]).values
    moments = {n: opt.state[getattr(m, n)]["exp_avg"].clone() for n in ("ssa_U", "ssa_S", "ssa_V")}
    rule.set_rank(20)
    assert torch.equal(m.ssa_S.detach(), s[keep])
    run_epochs(learner, opt, x[:32], y[:32], epochs=1, schedule=False)  # the optimiser keeps working
    for n, dim in (("ssa_U", 1), ("ssa_S", 0), ("ssa_V", 1)):
        p = getattr(m, n)
        st = opt.state[p]
        assert st["exp_avg"].shape == p.shape == st["exp_avg_sq"].shape
        # the first moment of the kept columns survived the cut (one more step: exp_avg = 0.9 old + 0.1 g)
        old = moments[n].index_select(dim, keep)
        assert torch.allclose(st["exp_avg"] - 0.1 * p.grad, 0.9 * old, atol=1e-6)
    with pytest.raises(RuleError, match="only decrease"):
        rule.set_rank(30)


def test_energy_threshold():
    spec, model, learner = make("digits-mlp", ssa_compact=False)
    rule = learner.sites[0].rule
    with torch.no_grad():
        s = torch.full((64,), 0.01)
        s[:25] = torch.linspace(3.0, 1.0, 25)
        rule.module.ssa_S.copy_(s)
    energy = torch.cumsum(torch.sort(s ** 2, descending=True).values, 0) / (s ** 2).sum()
    expected = int((energy < 0.95).sum()) + 1
    assert 20 <= expected < 25
    learner.end_epoch(5, 10)
    assert rule.rank == expected


def test_schedule_none_and_min_rank():
    spec, model, learner = make("digits-mlp", ssa_schedule="none")
    for ep in range(10):
        learner.end_epoch(ep, 10)
    assert [s.rule.rank for s in learner.sites] == [64, 10]
    spec, model, learner = make("digits-mlp", ssa_min_rank=0.9, ssa_energy=0.1)
    for ep in range(10):
        learner.end_epoch(ep, 10)
    assert [s.rule.rank for s in learner.sites] == [58, 9]


def test_checkpoint_after_rank_cut_loads_into_a_fresh_conversion(digits, tmp_path):
    x, y = digits[0][:128], digits[1][:128]
    spec, model, learner = make("small-convbn")
    opt = torch.optim.Adam(learner.parameters(), lr=1e-3)
    run_epochs(learner, opt, x, y, epochs=2)
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, tmp_path / "ck.pt")
    spec2, model2, learner2 = make("small-convbn", seed=1)
    ck = torch.load(tmp_path / "ck.pt")
    model2.load_state_dict(ck["model"])
    opt2 = torch.optim.Adam(learner2.parameters(), lr=1e-3)
    opt2.load_state_dict(ck["opt"])
    model.eval(), model2.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model2(x))
    model.train(), model2.train()
    assert [s.rule.rank for s in learner2.sites] == [s.rule.rank for s in learner.sites]
    run_epochs(learner2, opt2, x[:64], y[:64], epochs=1, schedule=False)


# ---------------------------------------------------------------------------------------------------------------------
# Training


def test_ssa_trains_mlp(digits):
    x, y, xt, yt = digits
    spec, model, learner = make("digits-mlp")
    opt = torch.optim.Adam(learner.parameters(), lr=spec.learning_rate("ssa"))
    acc0 = accuracy(model, xt, yt)
    first, means = run_epochs(learner, opt, x, y, epochs=5)
    assert means[-1] < 0.6 * first and means == sorted(means, reverse=True)
    assert accuracy(model, xt, yt) > max(0.5, acc0 + 0.3)


def test_ssa_trains_conv_net_with_batch_norm(digits):
    x, y, xt, yt = digits
    spec, model, learner = make("small-convbn")
    opt = torch.optim.Adam(learner.parameters(), lr=spec.learning_rate("ssa"))
    first, means = run_epochs(learner, opt, x, y, epochs=4)
    assert means[-1] < 0.5 * first and means == sorted(means, reverse=True)
    assert accuracy(model, xt, yt) > 0.6


def test_ssa_reduces_the_loss_of_the_small_vit(digits):
    """On this ViT (random features barely above chance for a linear read-out) SSA, like DFA, lowers the training
    loss within a few epochs but does not reach a useful accuracy yet; the assertion is on the loss only."""
    x, y = digits[0][:960], digits[1][:960]
    spec, model, learner = make("small-vit")
    opt = torch.optim.Adam(learner.parameters(), lr=3e-4)
    first, means = run_epochs(learner, opt, x, y, epochs=4)
    assert means[-1] < 0.9 * first and math.isfinite(means[-1])


# ---------------------------------------------------------------------------------------------------------------------
# Bad input


def test_bad_parameters_and_layers_are_clear_errors():
    with pytest.raises(RuleError, match="unknown SSA rule_params ssa_rnak"):
        make("digits-mlp", ssa_rnak=3)
    with pytest.raises(RuleError, match="ssa_retraction must be one of"):
        make("digits-mlp", ssa_retraction="cayley")
    with pytest.raises(RuleError, match="ssa_rank"):
        make("digits-mlp", ssa_rank=0)
    with pytest.raises(RuleError, match="ssa_energy"):
        make("digits-mlp", ssa_energy=1.5)
    model = nn.Sequential(nn.Conv2d(4, 4, 3, groups=2), nn.Flatten(), nn.Linear(4, 2))
    with pytest.raises(RuleError, match="grouped"):
        convert(model, "ssa", example_input=torch.zeros(2, 4, 3, 3), num_classes=2)
    assert set(DEFAULTS) >= {"ssa_rank", "ssa_alpha", "ssa_beta", "ssa_gamma"}


def test_mixed_rules_and_end_epoch_on_rules_without_schedule(digits):
    spec = load_network("digits-mlp")
    model = build_model(spec, seed=0)
    learner = convert_network(model, spec, rule="ssa", rules={"out": "bp"})
    assert [s.rule.name for s in learner.sites] == ["ssa", "bp"]
    opt = torch.optim.Adam(learner.parameters(), lr=1e-3)
    run_epochs(learner, opt, digits[0][:64], digits[1][:64], epochs=2)
    assert learner.sites[0].rule.rank < 64
