"""The converter: attach learning rules to a standard torch model, in place, without copying it.

``convert(model, rule="drtp", ...)`` finds every trainable layer (``nn.Linear`` on inputs of any rank, ``nn.Conv2d``,
the projections inside attention blocks), traces one forward pass to learn the execution order and the shape of
each layer's *output point*, and attaches the rule of each layer through forward hooks and buffers on the layer
itself -- the model's ``state_dict`` keys do not change, only feedback buffers are added.

The output point of a layer is the output of its *segment*: the layer plus the parameter-free or normalising
modules that follow it inside the same ``nn.Sequential`` (activation, dropout, batch norm, pooling, flatten), so
DRTP/DFA signals are delivered after the activation and pooling as in the DRTP paper, and the activation's derivative
comes from autograd on the segment alone. For the direct rules the graph is cut at that point: the layers downstream
compute on a detached tensor, and the backward pass of a step is one local backward per segment -- no BP backward is
ever computed (see ``benchmarks/bench_graph_cut.py``).

The tracing pass also watches every torch function applied to a point: an activation, pooling, normalisation or
dropout module called in ``forward()`` directly on it extends the segment to that module; the same operation as a
function (``F.relu``, ``F.max_pool2d``) cannot carry a hook, so a rule that delivers its signal at the point refuses
it -- unless a :class:`Point` marker after it says where the segment ends. The function that produces the model's
output (none, ``log_softmax``, ``softmax``, ``sigmoid``) decides or checks the loss.
"""
from __future__ import annotations

import math
import numbers
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterable

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from ..errors import RuleError
from ..network import LOSSES
from .rules import RULE_CLASSES, Rule, no_autocast

TRAINABLE = (nn.Linear, nn.Conv2d)
# modules absorbed into the segment of the trainable layer they follow in an nn.Sequential (or that forward() applies
# to its output first)
SEGMENT_TAIL = (nn.Tanh, nn.Sigmoid, nn.ReLU, nn.GELU, nn.Hardtanh, nn.LeakyReLU, nn.ELU, nn.SiLU, nn.Identity,
                nn.Dropout, nn.BatchNorm1d, nn.BatchNorm2d, nn.SyncBatchNorm, nn.LayerNorm, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d,
                nn.Flatten, nn.Mish, nn.SELU, nn.CELU, nn.Softplus, nn.Hardswish, nn.Hardsigmoid, nn.Dropout1d,
                nn.Dropout2d, nn.MaxPool1d, nn.AvgPool1d, nn.AdaptiveMaxPool2d, nn.GroupNorm)
# torch functions (by name) whose derivative belongs to the segment of the layer whose point they are applied to
SEGMENT_FUNCTIONS = frozenset({
    "relu", "relu_", "relu6", "gelu", "silu", "mish", "elu", "elu_", "selu", "celu", "leaky_relu", "leaky_relu_",
    "hardtanh", "hardtanh_", "hardswish", "hardsigmoid", "sigmoid", "sigmoid_", "tanh", "tanh_", "softplus",
    "softsign", "tanhshrink", "logsigmoid", "threshold", "threshold_", "clamp", "clamp_", "clip", "clip_", "prelu",
    "rrelu", "glu", "softmax", "log_softmax", "max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d",
    "avg_pool3d", "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d", "adaptive_max_pool1d",
    "adaptive_max_pool2d", "adaptive_max_pool3d", "lp_pool1d", "lp_pool2d", "dropout", "dropout1d", "dropout2d",
    "dropout3d", "alpha_dropout", "feature_alpha_dropout", "batch_norm", "layer_norm", "group_norm",
    "instance_norm", "rms_norm", "local_response_norm", "normalize"})
# torch functions that return the same values rearranged: the point seen through a view is still the point
ALIAS_FUNCTIONS = frozenset({
    "view", "view_as", "reshape", "reshape_as", "flatten", "unflatten", "contiguous", "transpose", "permute",
    "squeeze", "unsqueeze", "t", "__getitem__", "clone", "detach", "to", "float", "double", "half", "bfloat16",
    "type", "type_as", "expand", "expand_as", "narrow", "select"})
# the model's last function -> what its outputs are, for the loss (logits when none)
PROBABILITY_OUTPUTS = ("softmax", "sigmoid")


class Point(nn.Identity):
    """Marks the output point of the trainable layer its input was computed from (the one that ran last, if several):
    that layer's segment (what a direct rule's signal passes through on its way to the layer) ends here. Needed where
    ``forward()`` applies functions to a layer's output that the converter cannot hook, e.g.
    ``x = self.p1(F.max_pool2d(F.relu(self.conv1(x)), 2))``; an nn.Identity otherwise (also in an nn.Sequential, where
    it ends the segment of the layer before it)."""


@dataclass
class Site:
    """A trainable layer with its rule."""

    name: str
    module: nn.Module
    end: nn.Module  # the module whose output is the site's output point
    index: int = -1  # execution order
    point_shape: tuple[int, ...] = ()
    is_output: bool = False
    rule: Rule | None = None
    #: the end was declared (``el_segment_ends``, a :class:`Point`): the tracing pass neither moves it nor reports
    #: what follows it
    declared_end: bool = False
    #: what the tracing pass saw applied to the point that no hook can follow (functions, a shared end module)
    misses: list[str] = field(default_factory=list)


def _tensors(obj: Any) -> Iterable[torch.Tensor]:
    if torch.is_tensor(obj):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for o in obj:
            yield from _tensors(o)
    elif isinstance(obj, dict):
        for o in obj.values():
            yield from _tensors(o)


_STATE_RANK = {"derived": 0, "point": 1, "seg": 2}


class _PointTracer(TorchFunctionMode):
    """The tracing pass's view of the tensors that come from a site (key: the site's position in the discovery list):
    ``seg`` inside its segment (between the layer's output and the end module's), ``point`` its output point or a view
    of it, ``derived`` computed from the point. ``consumed``: the sites whose point some function other than a view
    has read; what reads it after that is a branch beside the next layer, not the segment's continuation. A segment
    function (activation, pooling, ...) that reads a point first is a miss of that site, unless its end is
    ``explicit`` (a Point marker, ``el_segment_ends``). ``producer``: the last function other than a view since a
    trainable layer (the model's output: what the loss receives)."""

    def __init__(self):
        super().__init__()
        self.status: dict[int, dict[int, str]] = {}
        self.producer: dict[int, str | None] = {}
        self.misses: dict[int, list[str]] = {}
        self.consumed: set[int] = set()
        self.explicit: set[int] = set()
        self._alive: list[torch.Tensor] = []  # keeps the traced tensors alive so that their ids stay unique

    def mark(self, t: torch.Tensor, states: dict[int, str], producer: str | None) -> None:
        self.status[id(t)] = states
        self.producer[id(t)] = producer
        self._alive.append(t)

    def miss(self, key: int, what: str) -> None:
        seen = self.misses.setdefault(key, [])
        if what not in seen:
            seen.append(what)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        ins = [t for t in _tensors((args, kwargs)) if id(t) in self.status]
        if not ins:
            return out
        name = getattr(func, "__name__", "")
        merged: dict[int, str] = {}
        for t in ins:
            for k, st in self.status[id(t)].items():
                if _STATE_RANK[st] >= _STATE_RANK[merged.get(k, "derived")]:
                    merged[k] = st
        if name in SEGMENT_FUNCTIONS:
            for k, st in merged.items():
                if st == "point" and k not in self.explicit and k not in self.consumed:
                    self.miss(k, name)
        alias = name in ALIAS_FUNCTIONS
        results = list(_tensors(out))
        if results and not alias:
            self.consumed.update(k for k, st in merged.items() if st == "point")
        states = {k: st if st == "seg" or (st == "point" and alias) else "derived" for k, st in merged.items()}
        producer = self.producer.get(id(ins[0])) if alias else name
        for r in results:
            if not any(r is t for t in ins):  # an in-place or identity result keeps its state
                self.mark(r, states, producer)
        return out


@dataclass
class Context:
    """State of one training step shared by the hooks."""

    mode: str | None = None  # None (plain model), "train", "probe_bp", "probe_rule"
    target: torch.Tensor | None = None
    onehot: torch.Tensor | None = None
    batch_size: int = 1
    error: torch.Tensor | None = None  # e = dL/dz_out, flattened to (N, C)
    points: dict[int, list[torch.Tensor]] = field(default_factory=dict)
    output_z: torch.Tensor | None = None


@dataclass
class StepResult:
    loss: float
    output: torch.Tensor


def _loss_fn(kind: str):
    if kind == "bce":
        return lambda out, tgt, onehot: F.binary_cross_entropy_with_logits(out, onehot)
    if kind == "ce":
        return lambda out, tgt, onehot: F.cross_entropy(out, tgt)
    if kind == "mse":
        return lambda out, tgt, onehot: F.mse_loss(out, tgt)
    raise RuleError(f"unknown loss {kind!r}")


def _angle(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().flatten().double(), b.detach().flatten().double()
    na, nb = a.norm(), b.norm()
    if na == 0 or nb == 0:
        return float("nan")
    return math.degrees(math.acos(max(-1.0, min(1.0, float(a @ b / (na * nb))))))


def effective_rank(signal: torch.Tensor) -> float:
    """Effective rank (Roy & Vetterli) of a batch of signals, rows = samples: exp of the entropy of the normalised
    singular values. 1 for a rank-one batch, up to min(N, n)."""
    m = signal.detach().reshape(signal.shape[0], -1).double()
    s = torch.linalg.svdvals(m)
    total = s.sum()
    if total <= 0:
        return 0.0
    p = s / total
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


class LocalLearner:
    """A model with learning rules attached. Use like an optimiser-agnostic training step::

        learner = convert(model, rule="drtp", num_classes=10, loss="ce", example_input=x[:2])
        opt = torch.optim.Adam(learner.parameters(), lr=1.5e-4)
        for x, y in loader:
            opt.zero_grad()
            learner.train_step(x, y)      # forward + the rule's backward; gradients land in .grad
            opt.step()
    """

    def __init__(self, model: nn.Module, rule: str = "bp", rules: dict[str | int, str] | None = None, *,
                 example_input: torch.Tensor, task: str = "classification", num_classes: int | None = None,
                 output_dim: int | None = None, loss: str | None = None, seed: int = 0,
                 rule_params: dict[str, Any] | None = None):
        self.model = model
        self.task = task
        self.num_classes = num_classes
        self.output_dim = self._output_width(task, num_classes, output_dim)
        if loss is not None and loss not in LOSSES:
            raise RuleError(f"unknown loss {loss!r}; choose one of {', '.join(LOSSES)}")
        if rule_params is not None and not isinstance(rule_params, dict):
            raise RuleError(f"rule_params must be a mapping, got {type(rule_params).__name__}")
        self.rule_params = dict(rule_params or {})
        self.ctx = Context()
        self.sites = self._find_sites(model)
        if not self.sites:
            raise RuleError("the model has no trainable layer (nn.Linear or nn.Conv2d)")
        final = self._trace(example_input)
        self.loss_kind = self._resolve_loss(loss, final)
        self._loss = _loss_fn(self.loss_kind)
        self._assign_rules(rule, rules or {})
        self._check_rule_params()
        self._check_points()
        gen = torch.Generator().manual_seed(int(seed) * 7919 + 17)
        for site in self.sites:
            site.rule.setup(gen)
        self._hooks = []
        self._install_hooks()
        #: what train_step calls for the forward pass: the model, or a wrapper of it (DistributedDataParallel)
        self.forward_module: nn.Module | None = None
        self.rule = rule
        self.rules = dict(rules or {})

    # -- discovery -----------------------------------------------------------------------------------------------
    @staticmethod
    def _output_width(task: str, num_classes: Any, output_dim: Any) -> int:
        if task not in ("classification", "regression"):
            raise RuleError(f"task must be 'classification' or 'regression', got {task!r}")
        key, value = ("num_classes", num_classes) if task == "classification" else ("output_dim", output_dim)
        if value is None:
            if task == "classification":
                need = ("num_classes (the number of classes, the model's output width); for regression pass "
                        "task='regression' and output_dim")
            else:
                need = "output_dim (the model's output width)"
            raise RuleError(f"a {task} model needs {need}")
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise RuleError(f"{key} must be a positive integer, got {value!r}")
        return int(value)

    @staticmethod
    def _find_sites(model: nn.Module) -> list[Site]:
        sites: list[Site] = []
        ends: dict[int, nn.Module] = {}
        fixed: set[int] = set()  # layers whose end was declared
        for parent in model.modules():
            if isinstance(parent, nn.Sequential):
                children = list(parent.children())
                for i, child in enumerate(children):
                    if isinstance(child, TRAINABLE):
                        end = child
                        for nxt in children[i + 1:]:
                            if isinstance(nxt, Point):
                                end = nxt
                                fixed.add(id(child))
                                break
                            if isinstance(nxt, SEGMENT_TAIL):
                                end = nxt
                            else:
                                break
                        ends[id(child)] = end
        for parent in model.modules():
            # a module may declare the segments of its trainable children: {child name: name of the end module}
            # (edgelearn.torch_ref.build.BasicBlock: a residual block's second conv ends after the addition)
            declared = getattr(parent, "el_segment_ends", None)
            if isinstance(declared, dict):
                for child_name, end_name in declared.items():
                    child, end = getattr(parent, child_name, None), getattr(parent, end_name, None)
                    if isinstance(child, TRAINABLE) and isinstance(end, nn.Module):
                        ends[id(child)] = end
                        fixed.add(id(child))
        for name, mod in model.named_modules():
            if isinstance(mod, nn.MultiheadAttention):
                raise RuleError(f"layer {name!r} is an nn.MultiheadAttention, which computes its projections "
                                "functionally; build attention from nn.Linear projections "
                                "(edgelearn.torch_ref.build.Attention) so rules can apply to them")
            if isinstance(mod, TRAINABLE):
                sites.append(Site(name=name, module=mod, end=ends.get(id(mod), mod), declared_end=id(mod) in fixed))
        return sites

    def _trace(self, example_input: torch.Tensor) -> str | None:
        """One forward pass (no grad, eval mode) to learn execution order and point shapes, to extend segments over
        the modules ``forward()`` applies to a point, to place :class:`Point` markers and to record what no hook can
        follow (``Site.misses``). Returns the function that produced the model's output (None: logits)."""
        sites = self.sites
        tracer = _PointTracer()
        key_of = {id(s.module): k for k, s in enumerate(sites)}
        ends = {k: s.end for k, s in enumerate(sites)}
        explicit = tracer.explicit
        explicit.update(k for k, s in enumerate(sites) if s.declared_end)
        order: list[int] = []
        shapes: dict[int, tuple[int, ...]] = {}
        calls: dict[int, int] = {}
        names = {id(m): n for n, m in self.model.named_modules()}

        def before(mod, args):
            calls[id(mod)] = calls.get(id(mod), 0) + 1
            ins = [t for t in _tensors(args) if id(t) in tracer.status]
            if isinstance(mod, Point):
                owner = [k for k, end in ends.items() if end is mod]  # placed in an nn.Sequential
                if not owner:
                    owner = [k for t in ins for k in tracer.status[id(t)] if k not in explicit]
                    if not owner:
                        raise RuleError(f"the Point marker {names.get(id(mod), '?')!r} does not follow a trainable "
                                        "layer whose segment end is still open (no Point or el_segment_ends yet)")
                k = max(owner, key=order.index)  # the layer that ran last
                ends[k] = mod
                explicit.add(k)
                sites[k].declared_end = True
                tracer.misses.pop(k, None)  # what ran between the layer and its marker is part of its segment
            elif isinstance(mod, SEGMENT_TAIL):
                # a module applied to a point in forward() before anything else read it: the segment continues
                # through it (once the next layer has read the point, a module on it is a branch, e.g. a residual
                # block's identity shortcut)
                for t in ins:
                    for k, st in tracer.status[id(t)].items():
                        if st == "point" and k not in explicit and k not in tracer.consumed:
                            ends[k] = mod
                            tracer.status[id(t)] = {**tracer.status[id(t)], k: "seg"}

        def after(mod, args, out):
            if not torch.is_tensor(out):
                return
            k = key_of.get(id(mod))
            if k is not None:
                if k not in order:
                    order.append(k)
                tracer.mark(out, {k: "seg"}, None)
            for k, end in ends.items():
                if end is mod and k in order:
                    tracer.mark(out, {**tracer.status.get(id(out), {}), k: "point"}, tracer.producer.get(id(out)))
                    shapes[k] = tuple(out.shape[1:])

        handles = []
        for mod in self.model.modules():
            handles.append(mod.register_forward_pre_hook(before))
            handles.append(mod.register_forward_hook(after))
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad(), tracer:
                out = self.model(example_input)
        finally:
            self.model.train(was_training)
            for h in handles:
                h.remove()
        unused = [s.name for k, s in enumerate(sites) if k not in order]
        if unused:
            raise RuleError(f"trainable layer(s) not used in the forward pass: {', '.join(unused)}")
        shared: dict[int, list[str]] = {}
        for k, s in enumerate(sites):
            shared.setdefault(id(ends[k]), []).append(s.name)
        for k, s in enumerate(sites):
            s.end = ends[k]
            s.misses = list(tracer.misses.get(k, []))
            if s.end is s.module:
                continue
            # a hook on a module called several times, or ending several segments, fires for every call: it cannot
            # mark one layer's point
            end_name, n, others = names.get(id(s.end), "?"), calls.get(id(s.end), 0), shared[id(s.end)]
            if n > 1:
                s.misses.append(f"module {end_name!r}, which forward() calls {n} times")
            elif len(others) > 1:
                s.misses.append(f"module {end_name!r}, which ends the segments of {' and '.join(others)}")
        for i, k in enumerate(order):
            sites[k].index = i
            sites[k].point_shape = shapes[k]
        self.sites = [sites[k] for k in order]
        self.sites[-1].is_output = True
        if not torch.is_tensor(out) or tuple(out.shape[1:]) != (self.output_dim,):
            got = list(out.shape[1:]) if torch.is_tensor(out) else type(out).__name__
            raise RuleError(f"the model outputs shape {got}, expected ({self.output_dim},)")
        return tracer.producer.get(id(out))

    def _resolve_loss(self, loss: str | None, final: str | None) -> str:
        """The loss: given, or inferred from the function that produced the model's output (``final``)."""
        if self.task == "regression":
            if loss not in (None, "mse"):
                raise RuleError(f"regression uses loss 'mse', got {loss!r}")
            return "mse"
        if loss == "mse":
            raise RuleError("loss 'mse' is for regression (task='regression'); classification uses 'bce' or 'ce'")
        if final in PROBABILITY_OUTPUTS:
            raise RuleError(f"the model ends in {final}, so it outputs probabilities, but the losses take logits "
                            f"('bce' applies a sigmoid, 'ce' a softmax): remove the final {final}, or end in "
                            f"log_softmax for 'ce'")
        if final == "log_softmax":
            if loss == "bce":
                raise RuleError("the model ends in log_softmax (log-probabilities), but loss 'bce' applies a sigmoid "
                                "to its outputs: use loss='ce' or remove the log_softmax")
            return "ce"  # cross-entropy of log-probabilities equals that of the logits: log_softmax is idempotent
        if loss is None:
            warnings.warn("convert(): no loss given and the model outputs logits: assuming loss='bce' (a sigmoid and "
                          "binary cross-entropy per class, as in the DRTP paper); pass loss='ce' for softmax "
                          "cross-entropy", stacklevel=4)
            return "bce"
        return loss

    def _check_rule_params(self) -> None:
        in_use = list(dict.fromkeys(s.rule.name for s in self.sites))
        accepted = list(dict.fromkeys(k for s in self.sites for k in s.rule.params))
        # a key that only a rule not in use reads is fine: an experiment's variants share its rule_params
        known = {k for cls in RULE_CLASSES.values() for k in cls.params}
        for key in self.rule_params:
            if key not in known:
                took = f"accept {', '.join(accepted)}" if accepted else "take no rule_params"
                raise RuleError(f"unknown rule_params key {key!r}; the rules in use ({', '.join(in_use)}) {took}")

    def _check_points(self) -> None:
        for s in self.sites:
            if s.misses and not s.is_output and s.rule.point_matters:
                raise RuleError(
                    f"layer {s.name!r} (rule {s.rule.name!r}): the converter cannot hook what forward() applies to "
                    f"its output ({', '.join(s.misses)}), so the rule would deliver its signal before that and lose "
                    f"its derivative; apply activations and pooling as modules (nn.ReLU, nn.MaxPool2d, one instance "
                    f"per layer) or mark the end of the layer's segment with edgelearn.torch_ref.Point()")

    def _assign_rules(self, default: str, overrides: dict[str | int, str]) -> None:
        names = {s.name: s for s in self.sites}
        assigned: dict[int, str] = {}
        for key, rule in overrides.items():
            if isinstance(key, int) or str(key).lstrip("-").isdigit():
                idx = int(key)
                if not -len(self.sites) <= idx < len(self.sites):
                    raise RuleError(f"rule override for layer index {idx}: the model has {len(self.sites)} trainable layers")
                assigned[idx % len(self.sites)] = rule
            elif key in names:
                assigned[names[key].index] = rule
            else:
                raise RuleError(f"rule override names layer {key!r}, which is not a trainable layer ({', '.join(names)})")
        for s in self.sites:
            name = assigned.get(s.index, default)
            cls = RULE_CLASSES.get(name)
            if cls is None:
                raise RuleError(f"unknown rule {name!r}; choose one of {', '.join(sorted(RULE_CLASSES))}")
            if s.is_output and name in ("dfa", "sdfa", "drtp", "shallow"):
                if s.index in assigned and name == "shallow":
                    raise RuleError(f"rule 'shallow' freezes hidden layers; {s.name!r} is the output layer, which is always trained")
                name, cls = "bp", RULE_CLASSES["bp"]  # the output layer learns from its own loss gradient
            s.rule = cls(self, s)

    # -- hooks ---------------------------------------------------------------------------------------------------
    def _install_hooks(self) -> None:
        for site in self.sites:
            if site.rule.patch_forward():
                self._patch_forward(site)
            if site.is_output:
                self._hooks.append(site.module.register_forward_hook(self._make_output_hook(site)))
            else:
                self._hooks.append(site.end.register_forward_hook(self._make_point_hook(site)))

    def _patch_forward(self, site: Site) -> None:
        original = type(site.module).forward
        module, rule, ctx = site.module, site.rule, self.ctx

        def forward(x):
            if ctx.mode in ("train", "probe_rule"):
                return rule.forward(x)
            return original(module, x)

        module.forward = forward  # instance attribute: state_dict and class untouched

    def _make_point_hook(self, site: Site):
        ctx, rule = self.ctx, site.rule

        def hook(mod, inp, out):
            mode = ctx.mode
            if mode is None or not torch.is_tensor(out):
                return None
            if mode == "probe_bp" or (mode == "probe_rule" and not rule.cuts):
                if out.requires_grad:
                    ctx.points.setdefault(site.index, []).append(out)
                return None
            if not rule.cuts:
                return None
            if mode == "train" and out.requires_grad:
                if rule.immediate:
                    with no_autocast(out):  # mixed precision: the rules' own arithmetic stays in float32
                        grad = rule.signal(ctx, out)
                    if grad is not None:
                        # the layer learns now. retain_graph: sibling layers (q/k/v) may share the graph upstream of
                        # this layer's input; this layer's own graph is freed as soon as `out` goes out of scope.
                        torch.autograd.backward(out, grad, retain_graph=True)
                else:
                    ctx.points.setdefault(site.index, []).append(out)
            elif mode == "probe_rule":
                ctx.points.setdefault(site.index, []).append(out)
            return out.detach()

        return hook

    def _make_output_hook(self, site: Site):
        ctx = self.ctx

        def hook(mod, inp, out):
            if ctx.mode is None or not out.requires_grad:
                return None
            ctx.output_z = out
            if ctx.mode == "train" and any(s.rule.needs_error for s in self.sites):
                def grab(g):
                    ctx.error = g.reshape(g.shape[0], -1) if g.dim() > 1 else g
                out.register_hook(grab)
            return None

        return hook

    def remove(self) -> None:
        """Detach the rules from the model (feedback buffers stay in the modules)."""
        for h in self._hooks:
            h.remove()
        for s in self.sites:
            if "forward" in s.module.__dict__:
                del s.module.forward
        self._hooks = []

    # -- training ------------------------------------------------------------------------------------------------
    def parameters(self) -> Iterable[nn.Parameter]:
        """Trainable parameters: the model's (frozen ones excluded) and trainable feedback (KP, LDFA)."""
        seen = set()
        for p in self.model.parameters():
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                yield p
        for s in self.sites:
            for p in s.rule.feedback_parameters():
                if id(p) not in seen:
                    seen.add(id(p))
                    yield p

    def _check_labels(self, target: Any) -> None:
        if self.task != "classification":
            return
        if (not torch.is_tensor(target) or target.dtype.is_floating_point or target.dtype.is_complex
                or target.dtype == torch.bool):
            what = f"a {target.dtype} tensor" if torch.is_tensor(target) else type(target).__name__
            raise RuleError(f"classification targets must be integer class labels, got {what}")
        if target.dim() != 1:
            raise RuleError(f"classification targets must be a 1-D tensor of class labels, got shape "
                            f"{list(target.shape)}")
        if target.numel():
            lo, hi = torch.stack([target.min(), target.max()]).tolist()  # one host sync
            if lo < 0 or hi >= self.output_dim:
                raise RuleError(f"class labels must lie in [0, {self.output_dim - 1}]; got labels from {lo} to {hi}")

    def _begin(self, mode: str, target: torch.Tensor) -> None:
        self._check_labels(target)
        ctx = self.ctx
        ctx.mode, ctx.target, ctx.error, ctx.output_z = mode, target, None, None
        ctx.points = {}
        ctx.batch_size = int(target.shape[0])
        if self.task == "classification":
            ctx.onehot = F.one_hot(target.long(), self.output_dim).to(torch.get_default_dtype())
        else:
            ctx.onehot = None

    def _end(self) -> None:
        ctx = self.ctx
        ctx.mode, ctx.points, ctx.output_z = None, {}, None

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        onehot = F.one_hot(target.long(), self.output_dim).to(output.dtype) if self.task == "classification" else None
        return self._loss(output, target, onehot)

    def train_step(self, x: torch.Tensor, target: torch.Tensor) -> StepResult:
        """Forward pass with every rule's backward; gradients accumulate in ``.grad`` (call ``opt.step()`` after)."""
        self._begin("train", target)
        ctx = self.ctx
        try:
            out = (self.forward_module or self.model)(x)
            # under autocast only the forward runs in low precision: loss, signals and the rules' updates in float32
            with no_autocast(out):
                out32 = out.float() if out.dtype in (torch.float16, torch.bfloat16) else out
                ctx.onehot = ctx.onehot.to(out32.dtype) if ctx.onehot is not None else None
                loss = self._loss(out32, target, ctx.onehot)
                if loss.requires_grad:
                    loss.backward()
                pending = [(p, self.sites[i].rule) for i, pts in ctx.points.items() for p in pts]
                # one point at a time, so that only one signal tensor exists at once; the graphs upstream of the
                # points may be shared (q/k/v read the same normalised input), hence retain_graph until the last
                for j, (p, rule) in enumerate(pending):
                    torch.autograd.backward(p, rule.signal(ctx, p), retain_graph=j < len(pending) - 1)
                for s in self.sites:
                    s.rule.after_backward(ctx)
        finally:
            self._end()
        return StepResult(loss=float(loss.detach()), output=out.detach())

    def end_epoch(self, epoch: int, epochs: int) -> None:
        """Tell the rules that epoch ``epoch`` (0-based) of ``epochs`` ended (after its last ``opt.step()``); rules
        with a schedule act on it (SSA's rank schedule). Rules without an ``end_epoch`` method ignore it."""
        for s in self.sites:
            hook = getattr(s.rule, "end_epoch", None)
            if hook is not None:
                hook(epoch, epochs)

    def rule_states(self) -> dict[str, Any]:
        """Python-side state of the rules that have some (``extra_state()``), by layer name: for checkpoints."""
        return {s.name: s.rule.extra_state() for s in self.sites if hasattr(s.rule, "extra_state")}

    def load_rule_states(self, states: dict[str, Any]) -> None:
        for s in self.sites:
            if s.name in states and hasattr(s.rule, "load_extra_state"):
                s.rule.load_extra_state(states[s.name])

    # -- metrics -------------------------------------------------------------------------------------------------
    def _saved_buffers(self) -> dict[str, torch.Tensor]:
        return {k: v.clone() for k, v in self.model.named_buffers() if not k.endswith("el_feedback")}

    def probe(self, x: torch.Tensor, target: torch.Tensor) -> list[dict[str, Any]]:
        """Per hidden layer: angle (degrees) between the rule's modulatory signal and BP's at the layer's output
        point, the effective rank of the delivered signal over the batch, and the weight-vs-feedback alignment angle.

        Two extra forward passes on the same model (no copy); parameter gradients and buffers are left untouched.
        """
        buffers = self._saved_buffers()
        try:
            # BP's signals at every point
            self._begin("probe_bp", target)
            out = self.model(x)
            loss = self._loss(out, target, self.ctx.onehot.to(out.dtype) if self.ctx.onehot is not None else None)
            idx = sorted(self.ctx.points)
            pts = [self.ctx.points[i][0] for i in idx]
            grads = torch.autograd.grad(loss, pts + [self.ctx.output_z], allow_unused=True)
            bp = dict(zip(idx, grads[:-1]))
            self._end()
            # the rule's signals
            self._begin("probe_rule", target)
            ctx = self.ctx
            out = self.model(x)
            ctx.onehot = ctx.onehot.to(out.dtype) if ctx.onehot is not None else None
            loss = self._loss(out, target, ctx.onehot)
            e = torch.autograd.grad(loss, [ctx.output_z], retain_graph=True)[0]
            ctx.error = e.reshape(e.shape[0], -1)
            ours: dict[int, torch.Tensor | None] = {}
            uncut = [(i, pts[0]) for i, pts in ctx.points.items() if not self.sites[i].rule.cuts]
            if uncut:
                # retain: a dldfa source layer differentiates its own segment afterwards (source_error), and
                # the gradient to points further down runs through that segment
                g = torch.autograd.grad(loss, [p for _, p in uncut], allow_unused=True, retain_graph=True)
                ours.update({i: gi for (i, _), gi in zip(uncut, g)})
            for i, pts in ctx.points.items():
                if self.sites[i].rule.cuts:
                    ours[i] = self.sites[i].rule.signal(ctx, pts[0])
            self._end()
        finally:
            self._end()
            with torch.no_grad():
                named = dict(self.model.named_buffers())
                for k, v in buffers.items():
                    named[k].copy_(v)
        report = []
        for s in self.sites:
            if s.is_output:
                continue
            sig, ref = ours.get(s.index), bp.get(s.index)
            report.append({
                "layer": s.name,
                "rule": s.rule.name,
                "angle_to_bp": _angle(sig, ref) if sig is not None and ref is not None else None,
                "effective_rank": effective_rank(sig) if sig is not None else None,
                "feedback_alignment": self.feedback_alignment(s),
            })
        return report

    def feedback_alignment(self, site: Site) -> float | None:
        """Weight-vs-feedback angle: FA/KP: angle(W, B). Direct rules on a chain of linear layers:
        angle(B_k, W_K ... W_{k+1}), the matrix BP would use in place of B_k (DRTP's -B^T y* and BP's
        M^T (y - y*) share the -y* direction, so the same angle applies)."""
        B = site.rule.feedback_matrix()
        if B is None:
            return None
        if site.rule.name in ("fa", "kp", "ldfa"):
            return _angle(site.module.weight, B)
        down = [s for s in self.sites if s.index > site.index]
        if not all(isinstance(s.module, nn.Linear) for s in down):
            return None
        M = None
        for s in down:
            W = s.module.weight.detach()
            M = W if M is None else W @ M
        if M is None or M.shape != B.shape:
            return None
        return _angle(B, M)


def convert(model: nn.Module, rule: str = "bp", rules: dict[str | int, str] | None = None, *,
            example_input: torch.Tensor | None = None, input_shape: tuple[int, ...] | None = None,
            **kwargs) -> LocalLearner:
    """Attach learning rules to ``model`` in place and return the :class:`LocalLearner` that trains it.

    ``num_classes`` (or ``task="regression"`` and ``output_dim``) is required. ``loss`` (``bce``, ``ce``, ``mse``)
    is checked against the model's last function: a model ending in ``log_softmax`` implies ``ce``, one ending in
    ``softmax`` or ``sigmoid`` is refused (the losses take logits), plain logits without ``loss`` get ``bce`` with a
    warning. ``rule_params`` keys must be read by some rule (``Rule.params``)."""
    if example_input is None:
        if input_shape is None:
            raise RuleError("convert() needs example_input or input_shape to trace the model")
        p = next(model.parameters())
        example_input = torch.zeros((2, *input_shape), dtype=p.dtype, device=p.device)
    return LocalLearner(model, rule, rules, example_input=example_input, **kwargs)


def convert_network(model: nn.Module, spec, rule: str | None = None, rules: dict | None = None, seed: int = 0) -> LocalLearner:
    """Convert a model built from a :class:`~edgelearn.network.NetworkSpec` with the spec's rules."""
    return convert(model, rule or spec.rule, spec.rules if rules is None else rules, input_shape=spec.input_shape,
                   task=spec.task, num_classes=spec.num_classes, output_dim=spec.output_dim, loss=spec.loss,
                   seed=seed, rule_params=spec.rule_params)
