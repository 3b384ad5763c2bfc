"""The converter's checks of a model and of its arguments (issue 15) and the completeness of the rule registry (12):
activations applied in forward() are followed or refused, a Point marker ends a segment, the loss is inferred or
checked, num_classes / rule_params / labels are validated."""
import subprocess
import sys
import warnings
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edgelearn.errors import RuleError
from edgelearn.network import config_names, load_network
from edgelearn.torch_ref import RULE_CLASSES, Point, build_model, convert, convert_network

DIRECT = ["dfa", "sdfa", "drtp"]


class FunctionalMLP(nn.Module):
    """6-8-8-3 ReLU MLP in the usual PyTorch style. ``style``: ``function`` (F.relu in forward), ``point`` (F.relu,
    then a Point marker) or ``module`` (an nn.ReLU per layer, called in forward)."""

    def __init__(self, style: str):
        super().__init__()
        self.style = style
        self.fc1, self.fc2, self.out = nn.Linear(6, 8), nn.Linear(8, 8), nn.Linear(8, 3)
        if style == "point":
            self.p1, self.p2 = Point(), Point()
        if style == "module":
            self.act1, self.act2 = nn.ReLU(), nn.ReLU()

    def act(self, i: int, z: torch.Tensor) -> torch.Tensor:
        if self.style == "module":
            return getattr(self, f"act{i}")(z)
        h = F.relu(z)
        return getattr(self, f"p{i}")(h) if self.style == "point" else h

    def forward(self, x):
        return self.out(self.act(2, self.fc2(self.act(1, self.fc1(x)))))


class FunctionalConv(nn.Module):
    """conv -> relu -> max-pool as functions, then a linear head; ``point``: a Point marker after the pooling."""

    def __init__(self, point: bool):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.head = nn.Linear(4 * 4 * 4, 3)
        self.p = Point() if point else None

    def forward(self, x):
        h = F.max_pool2d(F.relu(self.conv(x)), 2)
        if self.p is not None:
            h = self.p(h)
        return self.head(torch.flatten(h, 1))


def data(shape=(6,), n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn((n, *shape), generator=g), torch.randint(0, 3, (n,), generator=g)


def grads(model):
    return [p.grad.clone() for p in model.parameters() if p.grad is not None]


def sequential_twin(model: FunctionalMLP) -> nn.Sequential:
    seq = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))
    for dst, src in zip((seq[0], seq[2], seq[4]), (model.fc1, model.fc2, model.out)):
        dst.load_state_dict(src.state_dict())
    return seq


@pytest.mark.parametrize("rule", DIRECT + ["ssa", "dldfa"])
def test_functional_activation_refused_by_rules_that_deliver_at_the_point(rule):
    torch.manual_seed(0)
    with pytest.raises(RuleError, match=r"layer 'fc1' \(rule '\w+'\): .*relu.*Point\(\)"):
        convert(FunctionalMLP("function"), rule, input_shape=(6,), num_classes=3, loss="ce")
    with pytest.raises(RuleError, match=r"layer 'conv' .*relu.*nn\.MaxPool2d"):
        convert(FunctionalConv(point=False), rule, input_shape=(1, 8, 8), num_classes=3, loss="ce")


@pytest.mark.parametrize("rule", ["bp", "fa", "kp", "shallow", "ldfa"])
def test_functional_activation_accepted_where_the_point_does_not_matter(rule):
    torch.manual_seed(0)
    learner = convert(FunctionalMLP("function"), rule, input_shape=(6,), num_classes=3, loss="ce")
    x, y = data()
    assert torch.isfinite(torch.tensor(learner.train_step(x, y).loss))


@pytest.mark.parametrize("style", ["point", "module"])
@pytest.mark.parametrize("rule", DIRECT)
def test_functional_style_delivers_after_the_activation(style, rule):
    """A Point marker after F.relu, or nn.ReLU modules called in forward(): dead ReLU units get no bias gradient, and
    every gradient equals that of the same network written as an nn.Sequential."""
    torch.manual_seed(0)
    model = FunctionalMLP(style)
    with torch.no_grad():
        model.fc1.bias[:3] = -100.0  # units 0-2 of fc1 are dead for every input
    twin = sequential_twin(model)
    x, y = data()
    learner = convert(model, rule, input_shape=(6,), num_classes=3, loss="ce")
    convert(twin, rule, input_shape=(6,), num_classes=3, loss="ce").train_step(x, y)
    learner.train_step(x, y)
    assert torch.equal(model.fc1.bias.grad[:3], torch.zeros(3))
    assert model.fc1.bias.grad[3:].abs().sum() > 0
    for got, want in zip(grads(model), grads(twin)):
        assert torch.equal(got, want)


@pytest.mark.parametrize("rule", ["drtp", "dfa"])
def test_point_after_functional_pooling_matches_sequential(rule):
    torch.manual_seed(0)
    model = FunctionalConv(point=True)
    twin = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64, 3))
    twin[0].load_state_dict(model.conv.state_dict())
    twin[4].load_state_dict(model.head.state_dict())
    x, y = data((1, 8, 8))
    learner = convert(model, rule, input_shape=(1, 8, 8), num_classes=3, loss="ce")
    assert learner.sites[0].end is model.p and learner.sites[0].point_shape == (4, 4, 4)
    learner.train_step(x, y)
    convert(twin, rule, input_shape=(1, 8, 8), num_classes=3, loss="ce").train_step(x, y)
    for got, want in zip(grads(model), grads(twin)):
        assert torch.equal(got, want)


def test_shared_activation_module_refused():
    """One nn.ReLU instance called after every layer: its hook cannot tell the layers apart."""

    class Shared(FunctionalMLP):
        def act(self, i, z):
            return self.act1(z)

    with pytest.raises(RuleError, match="module 'act1', which forward\\(\\) calls 2 times"):
        convert(Shared("module"), "dfa", input_shape=(6,), num_classes=3, loss="ce")


def test_point_marker_is_authoritative():
    """A Point is the user's statement of where the segment ends, also before an activation (the signal is then
    delivered at the pre-activation: dead units learn too); a Point that follows no open segment is refused."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), Point(), nn.ReLU(), nn.Linear(8, 3))
    with torch.no_grad():
        model[0].bias[:3] = -100.0
    learner = convert(model, "drtp", input_shape=(6,), num_classes=3, loss="ce")
    assert learner.sites[0].end is model[1] and not learner.sites[0].misses
    learner.train_step(*data())
    assert bool((model[0].bias.grad[:3] != 0).all())
    with pytest.raises(RuleError, match="Point marker 'p' does not follow a trainable layer whose segment end is"):
        convert(nn.Sequential(OrderedDict(p=Point(), fc=nn.Linear(6, 3))), "dfa", input_shape=(6,), num_classes=3,
                loss="ce")


def test_modules_after_the_next_layer_read_the_point_are_branches():
    """A module reading a point after the next layer did (a residual block's identity shortcut) does not move the
    segment's end; a module reading it first does."""

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2, self.out = nn.Linear(6, 6), nn.Linear(6, 6), nn.Linear(6, 3)
            self.act, self.skip = nn.ReLU(), nn.Identity()

        def forward(self, x):
            h = self.act(self.fc1(x))  # the ReLU reads fc1's output first: fc1's segment
            return self.out(self.fc2(h) + self.skip(h))  # fc2 reads h first: the shortcut is a branch

    model = Residual()
    learner = convert(model, "dfa", input_shape=(6,), num_classes=3, loss="ce")
    assert [s.end for s in learner.sites] == [model.act, model.fc2, model.out]


# -- the loss ------------------------------------------------------------------------------------------------------


def mlp(*tail):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3), *tail)


def test_loss_assumed_for_logits_says_so():
    with pytest.warns(UserWarning, match="assuming loss='bce'"):
        learner = convert(mlp(), "dfa", input_shape=(6,), num_classes=3)
    assert learner.loss_kind == "bce"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert convert(mlp(), "dfa", input_shape=(6,), num_classes=3, loss="ce").loss_kind == "ce"
        spec = load_network("fc1-500")
        assert convert_network(build_model(spec, seed=0), spec).loss_kind == spec.loss


@pytest.mark.parametrize("functional", [False, True])
def test_log_softmax_output_infers_cross_entropy(functional):
    class LogSoftmaxOut(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = mlp()

        def forward(self, x):
            return F.log_softmax(self.body(x), dim=1)

    model = LogSoftmaxOut() if functional else mlp(nn.LogSoftmax(dim=1))
    logits = mlp()
    x, y = data()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        learner = convert(model, "dfa", input_shape=(6,), num_classes=3)
    assert learner.loss_kind == "ce"
    learner.train_step(x, y)
    convert(logits, "dfa", input_shape=(6,), num_classes=3, loss="ce").train_step(x, y)
    for got, want in zip(grads(model), grads(logits)):
        torch.testing.assert_close(got, want)
    with pytest.raises(RuleError, match="log_softmax.*use loss='ce'"):
        convert(mlp(nn.LogSoftmax(dim=1)), "dfa", input_shape=(6,), num_classes=3, loss="bce")


@pytest.mark.parametrize("tail,name", [(nn.Softmax(dim=1), "softmax"), (nn.Sigmoid(), "sigmoid")])
@pytest.mark.parametrize("loss", [None, "ce", "bce"])
def test_probability_outputs_refused(tail, name, loss):
    with pytest.raises(RuleError, match=f"ends in {name}, so it outputs probabilities"):
        convert(mlp(tail), "dfa", input_shape=(6,), num_classes=3, loss=loss)


def test_loss_checked_against_task():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert convert(mlp(), "dfa", input_shape=(6,), task="regression", output_dim=3).loss_kind == "mse"
    with pytest.raises(RuleError, match="regression uses loss 'mse', got 'ce'"):
        convert(mlp(), "dfa", input_shape=(6,), task="regression", output_dim=3, loss="ce")
    with pytest.raises(RuleError, match="loss 'mse' is for regression"):
        convert(mlp(), "dfa", input_shape=(6,), num_classes=3, loss="mse")
    with pytest.raises(RuleError, match="unknown loss 'hinge'; choose one of bce, ce, mse"):
        convert(mlp(), "dfa", input_shape=(6,), num_classes=3, loss="hinge")


# -- arguments -----------------------------------------------------------------------------------------------------


def test_output_width_required():
    with pytest.raises(RuleError, match="a classification model needs num_classes"):
        convert(mlp(), "dfa", input_shape=(6,), loss="ce")
    with pytest.raises(RuleError, match="num_classes must be a positive integer, got 2.5"):
        convert(mlp(), "dfa", input_shape=(6,), num_classes=2.5, loss="ce")
    with pytest.raises(RuleError, match="a regression model needs output_dim"):
        convert(mlp(), "dfa", input_shape=(6,), task="regression")
    with pytest.raises(RuleError, match="task must be 'classification' or 'regression', got 'ranking'"):
        convert(mlp(), "dfa", input_shape=(6,), task="ranking", num_classes=3)


def test_rule_params_keys_validated():
    with pytest.raises(RuleError, match=r"unknown rule_params key 'rnak'; the rules in use \(ldfa\) accept rank, "
                                        r"ldfa_decay"):
        convert(mlp(), "ldfa", input_shape=(6,), num_classes=3, loss="ce", rule_params={"rnak": 2})
    with pytest.raises(RuleError, match=r"'kp_decy'; the rules in use \(kp\) accept kp_decay$"):
        convert(mlp(), "kp", input_shape=(6,), num_classes=3, loss="ce", rule_params={"kp_decy": 0.0})
    with pytest.raises(RuleError, match=r"'rnak'; the rules in use \(dfa, bp\) take no rule_params"):
        convert(mlp(), "dfa", input_shape=(6,), num_classes=3, loss="ce", rule_params={"rnak": 2})
    with pytest.raises(RuleError, match="rule_params must be a mapping, got list"):
        convert(mlp(), "dfa", input_shape=(6,), num_classes=3, loss="ce", rule_params=["rank"])
    # a key of a rule not in use is fine: an experiment's variants (bp, ldfa) share one rule_params
    convert(mlp(), "dfa", input_shape=(6,), num_classes=3, loss="ce", rule_params={"rank": 2})


def test_every_shipped_rule_param_is_declared_by_a_rule():
    declared = {k for cls in RULE_CLASSES.values() for k in cls.params}
    used = set()
    for name in config_names():
        spec = load_network(name)
        for s in [spec] + [spec.with_variant(v) for v in spec.variant_names()]:
            used |= set(s.rule_params)
    assert used and used <= declared, used - declared


@pytest.mark.parametrize("bad,match", [
    (torch.tensor([0.0, 1.0, 2.0, 1.0]), "integer class labels, got a torch.float32 tensor"),
    (torch.tensor([0, 1, 3, 1]), r"class labels must lie in \[0, 2\]; got labels from 0 to 3"),
    (torch.tensor([0, -1, 2, 1]), r"got labels from -1 to 2"),
    (torch.tensor([[0], [1], [2], [1]]), r"1-D tensor of class labels, got shape \[4, 1\]"),
])
def test_bad_labels_refused_before_any_gradient(bad, match):
    model = mlp()
    learner = convert(model, "drtp", input_shape=(6,), num_classes=3, loss="ce")
    with pytest.raises(RuleError, match=match):
        learner.train_step(torch.randn(4, 6), bad)
    assert all(p.grad is None for p in model.parameters())
    learner.train_step(torch.randn(4, 6), torch.tensor([0, 1, 2, 1]))  # the learner is still usable


# -- the registry --------------------------------------------------------------------------------------------------


def test_registry_complete_on_import_and_names_defined_once():
    code = ("import sys, edgelearn.network as n; assert 'torch' not in sys.modules, 'network imported torch'; "
            "from edgelearn.rule_names import RULE_NAMES; assert n.RULES is RULE_NAMES; "
            "import edgelearn.torch_ref as t; print(sorted(t.RULE_CLASSES) == sorted(RULE_NAMES), len(RULE_NAMES))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["True", "10"]


@pytest.mark.slow
def test_shipped_models_convert_without_misses():
    """No false alarm on the project's own models: every shipped config (at smoke width) converts with its rule, the
    converter sees nothing it cannot hook, and segments end where the model declares them (nn.Sequential order,
    el_segment_ends) -- except the attention output projection, whose nn.Dropout Attention.forward applies."""
    from edgelearn.torch_ref.learner import LocalLearner
    from edgelearn.train import smoke_spec

    moved = []
    for name in config_names():
        spec = smoke_spec(load_network(name))
        model = build_model(spec, seed=0)
        static = {s.name: s.end for s in LocalLearner._find_sites(model)}
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            learner = convert_network(model, spec)
        assert not [(s.name, s.misses) for s in learner.sites if s.misses and not s.is_output], name
        for s in learner.sites:
            if s.end is not static[s.name]:
                assert s.name.endswith("attn.out") and s.end is model.get_submodule(s.name[:-len(".out")]).drop, name
                moved.append(s.name)
    assert moved  # the ViT configs
