"""Low-dimensional feedback alignment (Hanut & Kadmon, "Training large neural networks with low-dimensional error
feedback"): the rules ``ldfa`` and ``dldfa``.

``ldfa``
    The layer propagates the error to its input through a rank-``r`` feedback ``B = Q P`` instead of ``W^T``
    (Algorithm 1 of the paper's appendix): with ``delta`` = dL/dz at the layer's output (``b x m`` rows),
    ``grad_input = delta P^T Q^T``. ``Q`` is trained Kolen-Pollack style (eq. 7/11: it receives ``W``'s update
    projected through ``P``, ``grad_Q = P grad_W``) and ``P`` by the modified Oja rule (eq. 8/11) on the normalised
    covariance ``C / max(diag C)`` of the error arriving at the layer's output (Algorithm 1), or of the targets at
    the output layer. ``W``, ``Q`` and ``P`` decay with ``lambda`` (eq. 11).
``dldfa``
    Direct low-rank feedback: the graph is cut at the layer's output point (like DFA) and the signal injected there
    is ``Q_l P_l`` applied to the error of the output layer (``e`` = dL/dz_out), or to the error ``delta`` = dL/dz of
    the penultimate layer (``rule_params: {dldfa_source: penultimate}``, paper Fig. 3d: the penultimate layer itself
    then learns from the output layer's backward). ``Q``/``P`` are trained by the same local rules: Oja on the
    source error, and ``grad_Q = P e^T h`` (direct Kolen-Pollack: ``Q P`` tracks a direct weight ``h -> output``).

Storage (on the layer module, as parameters named ``el_ldfa_q`` and ``el_ldfa_p``, so a converted model's
checkpoint carries them):

* ``P``: ``(r, m)`` -- ``m`` the layer's output features / channels (ldfa) or the source size (dldfa). For a conv
  layer ``P`` acts as a 1x1 convolution on the error (paper, appendix "Convolutional neural networks").
* ``Q`` is stored *transposed*, ``Qt = Q^T``: ``(r, in)`` for ``nn.Linear``, ``(r, in, kh, kw)`` for ``nn.Conv2d``
  (the second factor conv: the error with ``r`` channels is propagated by the transposed convolution with ``Qt``),
  ``(r, prod(point shape))`` for dldfa. The effective feedback ``P^T Qt`` has ``W``'s shape (ldfa) or DFA's ``B``
  shape ``(C, n)`` (dldfa), which is what :meth:`feedback_matrix` returns.

Updates go through the optimiser: each step the rules leave ``.grad`` of ``Qt`` and ``P`` equal to *minus* the
paper's update (the gradient-descent convention of the rest of the reference), so the optimiser that trains ``W``
applies them with the same learning rate -- as the paper does ("the same learning rate eta and weight decay lambda
for all components"; Algorithm 1 is a modified backward pass that outputs dQ, dP and dW beside grad_input, and every
experiment trains with Adam). The decay ``lambda`` is added to the gradients of ``W``, ``Qt`` and ``P`` after the
backward pass, as for ``kp``.

Initialisation: ``Qt`` He-uniform with the fan-in of ``W`` (ldfa) or of the point (dldfa), like the ``B`` of fa/dfa;
``P`` a random matrix with orthonormal rows (the manifold Oja's rule converges to). With ``r = m`` and ``P = I`` the
rules are exactly fa / dfa with ``B = Qt`` (tested).

``rule_params`` (see docs/rules/ldfa.md): ``rank`` (int, or mapping layer name -> int, ``default`` key allowed;
default: the number of classes / outputs), ``ldfa_decay`` (1e-4), ``ldfa_train_q`` (true), ``ldfa_train_p`` (true),
``ldfa_output_p`` (``targets`` | ``error``), ``dldfa_source`` (``output`` | ``penultimate``).
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.grad import conv2d_input, conv2d_weight

from ..errors import RuleError
from .rules import Rule, fp32_region, he_uniform, no_autocast, register

DEFAULTS: dict[str, Any] = {
    "rank": None,  # None: the number of classes (regression: the output dimension)
    "ldfa_decay": 1e-4,
    "ldfa_train_q": True,
    "ldfa_train_p": True,
    "ldfa_output_p": "targets",
    "dldfa_source": "output",
}

Q_NAME = "el_ldfa_q"
P_NAME = "el_ldfa_p"


# ---------------------------------------------------------------------------------------------------------------------
# The local rules (pure functions, also used by the tests)


#: set by the trainer under torch.distributed (edgelearn.torch_ref.distributed): the covariance of Oja's rule is then
#: taken over the *global* batch (all processes), as single-process training on that batch would
_GLOBAL_STATS = {"group": None, "enabled": False, "error_scale": 1.0}


def set_global_statistics(enabled: bool, group=None) -> None:
    """Compute Oja's covariance over the batches of every process of ``group`` (torch.distributed)."""
    _GLOBAL_STATS["enabled"], _GLOBAL_STATS["group"] = bool(enabled), group
    _GLOBAL_STATS["error_scale"] = 1.0


def set_batch_share(n_local: int, n_global: int) -> None:
    """This process holds ``n_local`` of the step's ``n_global`` samples. Errors (dL/dz of a per-process *mean* loss)
    carry a factor 1/n_local; scaling them by n_local/n_global before the global covariance gives the rows that
    single-process training on the global batch would see (targets are not rescaled)."""
    _GLOBAL_STATS["error_scale"] = float(n_local) / float(max(n_global, 1))


def _global_covariance(d: torch.Tensor) -> torch.Tensor:
    """``sum (d - mu)(d - mu)^T`` over the rows of every process, ``mu`` the global mean: one all-reduce of
    (sum d d^T, sum d, count)."""
    import torch.distributed as dist

    m = d.shape[1]
    work = d.double()
    packed = torch.cat([(work.t() @ work).flatten(), work.sum(0), work.new_tensor([float(d.shape[0])])])
    dist.all_reduce(packed, group=_GLOBAL_STATS["group"])
    S2, S1, n = packed[:m * m].view(m, m), packed[m * m:m * m + m], packed[-1]
    if n <= 0:
        return d.new_zeros(m, m)
    return (S2 - torch.outer(S1, S1) / n).to(d.dtype)


def normalized_covariance(rows: torch.Tensor, error: bool = True) -> torch.Tensor | None:
    """Algorithm 1: ``C = (d - mean d)^T (d - mean d)``, divided by ``gamma = max(diag C)``; rows = samples (or
    samples x pixels / tokens). ``None`` when the rows carry no variance (nothing to learn from). Under
    :func:`set_global_statistics` the rows of every process count (the global batch)."""
    d = rows.reshape(-1, rows.shape[-1])
    if _GLOBAL_STATS["enabled"]:
        C = _global_covariance(d * _GLOBAL_STATS["error_scale"] if error else d)
    else:
        d = d - d.mean(0, keepdim=True)
        C = d.t() @ d
    gamma = C.diagonal().max()
    if not torch.isfinite(gamma) or gamma <= 0:
        return None
    return C / gamma


def oja_update(P: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    """The modified Oja rule (eq. 8/11), ``dP = P C (I - P^T P)`` for ``P`` of shape ``(r, m)``: its rows converge to
    an orthonormal basis of the top-``r`` principal subspace of ``C``. (The step itself; multiply by ``eta``.)"""
    PC = P @ C
    return PC - (PC @ P.t()) @ P


def oja_grad(P: torch.Tensor, rows: torch.Tensor, error: bool = True) -> torch.Tensor:
    """Gradient-descent form of Oja's step on a batch of rows: ``-P C (I - P^T P)`` with ``C`` the normalised
    covariance of the rows (Algorithm 1), zero when the rows have no variance."""
    C = normalized_covariance(rows.to(P.dtype), error)
    if C is None:
        return torch.zeros_like(P)
    return -oja_update(P, C)


def semi_orthogonal(r: int, m: int, generator: torch.Generator) -> torch.Tensor:
    """A random ``(r, m)`` matrix with orthonormal rows (``r <= m``) or columns (``r > m``), float32 on the CPU."""
    a = torch.randn(max(r, m), min(r, m), generator=generator, dtype=torch.float64)
    q, R = torch.linalg.qr(a)
    q = q * torch.sign(torch.sign(R.diagonal()) + 0.5)  # unique, sign-fixed factor
    return (q.t() if r <= m else q).contiguous().float()


def _accumulate(p: torch.Tensor, g: torch.Tensor) -> None:
    if p.grad is None:
        p.grad = g.detach().clone()
    else:
        p.grad.add_(g)


# ---------------------------------------------------------------------------------------------------------------------
# Autograd functions: forward = the layer; backward = W's gradient, the low-rank propagation, Q's and P's updates


class _LDFALinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, qt, p, y):
        ctx.save_for_backward(x, weight, qt, p, y)
        ctx.has_bias = bias is not None
        return F.linear(x, weight, bias)

    @staticmethod
    def backward(ctx, grad_out):
        with no_autocast(grad_out):
            return _LDFALinear._backward(ctx, grad_out.to(ctx.saved_tensors[0].dtype))

    @staticmethod
    def _backward(ctx, grad_out):
        x, weight, qt, p, y = ctx.saved_tensors
        need_x, need_w, need_b, need_q, need_p, _ = ctx.needs_input_grad
        g2 = grad_out.reshape(-1, grad_out.shape[-1])  # token inputs: every token is a sample
        grad_x = grad_w = grad_b = grad_q = grad_p = None
        if need_x:
            grad_x = ((g2 @ p.t()) @ qt).view(x.shape)  # Algorithm 1: delta P^T Q^T, through an r-bottleneck
        if need_w or need_q:
            gw = g2.t() @ x.reshape(-1, x.shape[-1])
            grad_w = gw if need_w else None
            grad_q = p @ gw if need_q else None  # eq. 7/11 (Algorithm 1: dQ = h^T (delta P^T)), transposed
        if need_b and ctx.has_bias:
            grad_b = g2.sum(0)
        if need_p:
            grad_p = oja_grad(p, y, error=False) if y.numel() else oja_grad(p, g2)
        return grad_x, grad_w, grad_b, grad_q, grad_p, None


class _LDFAConv2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, qt, p, y, stride, padding, dilation):
        ctx.save_for_backward(x, weight, qt, p, y)
        ctx.conf = (stride, padding, dilation)
        ctx.has_bias = bias is not None
        return F.conv2d(x, weight, bias, stride, padding, dilation)

    @staticmethod
    def backward(ctx, grad_out):
        with no_autocast(grad_out):
            return _LDFAConv2d._backward(ctx, grad_out.to(ctx.saved_tensors[0].dtype))

    @staticmethod
    def _backward(ctx, grad_out):
        x, weight, qt, p, y = ctx.saved_tensors
        stride, padding, dilation = ctx.conf
        need_x, need_w, need_b, need_q, need_p = ctx.needs_input_grad[:5]
        grad_x = grad_w = grad_b = grad_q = grad_p = None
        if need_x:
            # P as a 1x1 conv: the error keeps r channels per pixel; Qt propagates it like a transposed conv
            low = F.conv2d(grad_out, p[:, :, None, None])
            grad_x = conv2d_input(x.shape, qt, low, stride, padding, dilation, 1)
        if need_w or need_q:
            gw = conv2d_weight(x, weight.shape, grad_out, stride, padding, dilation, 1)
            grad_w = gw if need_w else None
            grad_q = (p @ gw.flatten(1)).view_as(qt) if need_q else None
        if need_b and ctx.has_bias:
            grad_b = grad_out.sum((0, 2, 3))
        if need_p:
            # the covariance runs over batch and pixels (paper appendix)
            if y.numel():
                grad_p = oja_grad(p, y, error=False)
            else:
                grad_p = oja_grad(p, grad_out.permute(0, 2, 3, 1).reshape(-1, grad_out.shape[1]))
        return grad_x, grad_w, grad_b, grad_q, grad_p, None, None, None, None


# ---------------------------------------------------------------------------------------------------------------------
# Parameters


def rule_param(learner, key: str) -> Any:
    return learner.rule_params.get(key, DEFAULTS[key])


def _bool_param(learner, key: str) -> bool:
    v = rule_param(learner, key)
    if not isinstance(v, bool):
        raise RuleError(f"rule_params.{key} must be true or false, got {v!r}")
    return v


def _choice_param(learner, key: str, choices: tuple[str, ...]) -> str:
    v = rule_param(learner, key)
    if v not in choices:
        raise RuleError(f"rule_params.{key} must be one of {', '.join(choices)}, got {v!r}")
    return v


def decay_param(learner) -> float:
    v = rule_param(learner, "ldfa_decay")
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
        raise RuleError(f"rule_params.ldfa_decay must be a non-negative number, got {v!r}")
    return float(v)


def rank_for(learner, site, full: int | None = None) -> int:
    """The feedback rank of ``site``: ``rule_params.rank`` -- an int, ``"full"`` (``full``: the size ``m`` of the
    error the feedback reads, so no constraint), a fraction in (0, 1) of ``full`` (rounded, at least 1), or a mapping
    layer name or glob pattern (``"conv*"``) -> one of those, with an optional ``default`` entry; exact names win
    over patterns, patterns apply in the order written. Default: the number of classes (regression: the output
    dimension)."""
    import fnmatch

    spec = learner.rule_params.get("rank")
    default = int(learner.output_dim)
    if isinstance(spec, dict):
        spec = {str(k): v for k, v in spec.items()}  # YAML may give Sequential indices as ints
        names = [s.name for s in learner.sites]
        unknown = [k for k in spec if k != "default" and k not in names and not fnmatch.filter(names, k)]
        if unknown:
            shown = ", ".join(sorted(names)) if len(names) <= 12 else ", ".join(names[:6]) + f", ... ({len(names)} layers)"
            raise RuleError(f"rule_params.rank names layer(s) {', '.join(unknown)}, which are not trainable layers "
                            f"({shown})")
        if site.name in spec:
            value = spec[site.name]
        else:
            value = next((v for k, v in spec.items() if k != "default" and fnmatch.fnmatchcase(site.name, k)),
                         spec.get("default", default))
    elif spec is None:
        value = default
    else:
        value = spec
    if value == "full" and full is not None:
        return int(full)
    if isinstance(value, float) and 0 < value < 1 and full is not None:
        return max(1, int(math.floor(value * full + 0.5)))
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RuleError(f"rule_params.rank for layer {site.name!r} must be a positive integer, 'full' or a fraction "
                        f"in (0, 1), got {value!r}")
    return value


def _make_param(module: nn.Module, name: str, value: torch.Tensor, trainable: bool) -> nn.Parameter:
    old = module._parameters.get(name)
    if old is None:
        old = module._buffers.pop(name, None)
    if isinstance(old, torch.Tensor) and old.shape == value.shape:  # already converted / loaded: keep the values
        value = old.detach()
    param = old if isinstance(old, nn.Parameter) and old.shape == value.shape else nn.Parameter(value)
    param.requires_grad_(trainable)
    module.register_parameter(name, param)
    return param


class _LowRankFeedback(Rule):
    """Shared part: ``Qt`` / ``P`` parameters on the module, their trainability, decay."""

    def _create(self, generator: torch.Generator, r: int, m: int, qt_shape: tuple[int, ...], q_fan_in: int) -> None:
        w = self.site.module.weight
        # P starts on the Oja rule's fixed-point manifold (orthonormal rows, P P^T = I); Q is He-uniform like the
        # feedback of fa (fan-in of W) / dfa (fan-in n), so with r = m and P = I, ldfa *is* fa with B = Qt
        P = semi_orthogonal(r, m, generator).to(device=w.device, dtype=w.dtype)
        Qt = he_uniform(qt_shape, q_fan_in, generator, w.device, w.dtype)
        self.train_q = _bool_param(self.learner, "ldfa_train_q")
        self.train_p = _bool_param(self.learner, "ldfa_train_p")
        self.decay = decay_param(self.learner)
        _make_param(self.site.module, Q_NAME, Qt, self.train_q)
        _make_param(self.site.module, P_NAME, P, self.train_p)
        self.rank = r

    @property
    def qt(self) -> torch.Tensor:
        return getattr(self.site.module, Q_NAME)

    @property
    def p(self) -> torch.Tensor:
        return getattr(self.site.module, P_NAME)

    def feedback_parameters(self) -> list[nn.Parameter]:
        return [t for t in (self.qt, self.p) if t.requires_grad]

    def after_backward(self, ctx) -> None:
        lam = self.decay
        if not lam:
            return
        m = self.site.module
        for t in (m.weight, self.qt, self.p):
            if t.requires_grad and t.grad is not None:
                t.grad.add_(t.detach(), alpha=lam)


@register
class LDFA(_LowRankFeedback):
    """Low-rank feedback B = QP through which the layer propagates to its input (Algorithm 1)."""

    name = "ldfa"
    params = tuple(k for k in DEFAULTS if k != "dldfa_source")

    def __init__(self, learner, site):
        super().__init__(learner, site)
        m = site.module
        if isinstance(m, nn.Conv2d):
            if m.groups != 1:
                raise RuleError(f"rule 'ldfa' supports nn.Conv2d with groups=1; {site.name!r} has groups={m.groups}")
            if isinstance(m.padding, str) or m.padding_mode != "zeros":
                raise RuleError(f"rule 'ldfa' needs numeric zero padding; {site.name!r} has padding={m.padding!r} "
                                f"padding_mode={m.padding_mode!r}")

    def setup(self, generator):
        m = self.site.module
        w = m.weight
        out = w.shape[0]
        r = rank_for(self.learner, self.site, full=out)
        self._create(generator, r, out, (r, *w.shape[1:]), w[0].numel())
        mode = _choice_param(self.learner, "ldfa_output_p", ("targets", "error"))
        # at the output layer P learns the principal directions of the targets (eq. 8; appendix B)
        self.p_on_targets = self.site.is_output and mode == "targets" and isinstance(m, nn.Linear)

    def patch_forward(self) -> bool:
        return True

    def _targets(self, like: torch.Tensor) -> torch.Tensor:
        ctx = self.learner.ctx
        y = ctx.onehot if ctx.onehot is not None else ctx.target
        if y is None:
            return like.new_empty(0)
        y = y.to(like.dtype).reshape(y.shape[0], -1)
        if y.shape[1] != self.p.shape[1]:
            return like.new_empty(0)  # the targets do not live in this layer's output space: use the error
        return y

    def forward(self, x):
        m = self.site.module
        y = self._targets(m.weight) if self.p_on_targets and self.p.requires_grad else m.weight.new_empty(0)
        region, x = fp32_region(x)
        with region:
            if isinstance(m, nn.Linear):
                return _LDFALinear.apply(x, m.weight, m.bias, self.qt, self.p, y)
            return _LDFAConv2d.apply(x, m.weight, m.bias, self.qt, self.p, y, m.stride, m.padding, m.dilation)

    def feedback_matrix(self):
        """The effective feedback ``P^T Qt`` in ``W``'s shape (``grad_input`` uses it where BP uses ``W``)."""
        w = self.site.module.weight
        return (self.p.detach().t() @ self.qt.detach().flatten(1)).view(w.shape)


@register
class DLDFA(_LowRankFeedback):
    """Direct low-rank feedback: the output point receives ``(e P^T) Qt`` (``e`` from the output layer, or ``delta`` of
    the penultimate layer). The output layer learns from its own loss gradient; in ``penultimate`` mode the
    penultimate layer learns from the output layer's backward (whatever the output layer's rule) and is the source."""

    name = "dldfa"
    cuts = True
    needs_error = True
    params = tuple(k for k in DEFAULTS if k != "ldfa_output_p")

    def __init__(self, learner, site):
        super().__init__(learner, site)
        self.source = _choice_param(learner, "dldfa_source", ("output", "penultimate"))
        n = len(learner.sites)
        if site.is_output:
            self.role = "output"
        elif self.source == "penultimate" and site.index == n - 2:
            self.role = "source"
        else:
            self.role = "direct"
        if self.role != "direct":
            self.cuts = False  # instance attribute: this layer is trained by the gradient flowing from above
            self.needs_error = False
        self._delta: torch.Tensor | None = None
        self._probe: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None  # (point, z, grad at point)
        self._z: torch.Tensor | None = None

    # -- set-up ----------------------------------------------------------------------------------------------------
    def _source_rule(self) -> "DLDFA":
        src = self.learner.sites[-2]
        rule = src.rule
        if not isinstance(rule, DLDFA) or rule.role != "source":
            raise RuleError(f"rule 'dldfa' with dldfa_source: penultimate needs the penultimate layer {src.name!r} to "
                            f"use dldfa too (it is the error source); it uses {rule.name!r}")
        return rule

    def setup(self, generator):
        if self.role == "output":
            return
        if self.role == "source":
            self._handle = self.site.end.register_forward_hook(self._on_point)
            return
        if self.source == "output":
            m = int(self.learner.output_dim)
        else:
            if len(self.learner.sites) < 3:
                raise RuleError("rule 'dldfa' with dldfa_source: penultimate needs at least two hidden layers")
            src = self._source_rule()
            # delta = dL/dz of the penultimate layer, whose size equals its output point's unless pooling follows
            m = math.prod(src.site.point_shape)
        r = rank_for(self.learner, self.site, full=m)
        n = math.prod(self.site.point_shape)
        self._create(generator, r, m, (r, n), n)

    # -- the source (penultimate) --------------------------------------------------------------------------------
    def patch_forward(self) -> bool:
        return self.role == "source"

    def forward(self, x):
        m = self.site.module
        if isinstance(m, nn.Linear):
            z = F.linear(x, m.weight, m.bias)
        else:
            z = m._conv_forward(x, m.weight, m.bias)
        ctx = self.learner.ctx
        if z.requires_grad:
            if ctx.mode == "train":
                self._delta, self._z, self._probe = None, None, None

                def grab(g):
                    self._delta = g.detach().reshape(g.shape[0], -1)

                z.register_hook(grab)
            elif ctx.mode == "probe_rule":
                self._z, self._probe, self._delta = z, None, None
        return z

    def _on_point(self, mod, inp, out):
        # probe only: the learner asks for dL/d(point) of this uncut layer; from it, dL/dz follows locally
        if self.learner.ctx.mode == "probe_rule" and torch.is_tensor(out) and out.requires_grad and self._z is not None:
            z = self._z

            def grab(g):
                self._probe = (out, z, g.detach())

            out.register_hook(grab)
        return None

    def source_error(self) -> torch.Tensor:
        if self.learner.ctx.mode == "probe_rule" and self._probe is not None:
            out, z, g = self._probe
            (dz,) = torch.autograd.grad(out, z, g, retain_graph=True)
            self._delta, self._probe, self._z = dz.detach().reshape(dz.shape[0], -1), None, None
        if self._delta is None:
            raise RuleError(f"dldfa: no error reached the penultimate layer {self.site.name!r} in this step")
        return self._delta

    # -- the direct signal -----------------------------------------------------------------------------------------
    def signal(self, ctx, point):
        if self.role != "direct":
            return None
        delta = ctx.error if self.source == "output" else self._source_rule().source_error()
        p, qt = self.p, self.qt
        if delta.shape[1] != p.shape[1]:
            raise RuleError(f"dldfa at {self.site.name!r}: the source error has {delta.shape[1]} components per "
                            f"sample, the feedback expects {p.shape[1]} (pooling after the penultimate layer?)")
        delta = delta.to(p.dtype)
        low = delta @ p.detach().t()  # (N, r): the r-dimensional error
        if ctx.mode == "train":
            with torch.no_grad():
                h = point.detach().reshape(point.shape[0], -1).to(p.dtype)  # float32 under autocast too
                if qt.requires_grad:
                    _accumulate(qt, low.t() @ h)  # = P (e^T h): direct Kolen-Pollack through P (eq. 7/11)
                if p.requires_grad:
                    _accumulate(p, oja_grad(p.detach(), delta))  # eq. 8/11 on the source error (Algorithm 1)
        return (low @ qt.detach()).view_as(point)

    def after_backward(self, ctx) -> None:
        if self.role == "source":
            self._delta = None
            return
        if self.role == "direct":
            super().after_backward(ctx)

    def feedback_parameters(self):
        return [] if self.role != "direct" else super().feedback_parameters()

    def feedback_matrix(self):
        """``P^T Qt``, shape ``(C, n)`` like DFA's ``B`` (the signal is ``e @ B``); None for the output and source
        layers."""
        if self.role != "direct":
            return None
        return self.p.detach().t() @ self.qt.detach()
