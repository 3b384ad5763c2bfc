"""Learning rules of the float reference.

A rule is attached to one trainable layer (a *site*: an ``nn.Linear`` or ``nn.Conv2d``) and decides how that layer's
modulatory signal -- the gradient delivered at its output point -- is obtained:

* ``bp``       the true gradient, flowing through the layers above.
* ``fa``       the layer *propagates* to its input through a fixed random matrix ``B`` (same shape as ``W``) instead
               of ``W``; the layer below receives the FA signal. The output layer's own update is its loss gradient.
* ``kp``       Kolen-Pollack (LDFA paper eq. 2): like ``fa`` but ``B`` receives the same update as ``W`` and both decay.
* ``dfa``      the graph is cut at the layer's output point and ``B_k^T e`` is injected there, ``e`` = dL/dz_out.
* ``sdfa``     as dfa with ``sign(e) / N``.
* ``drtp``     as dfa with ``-y* / N`` (the label selects a fixed random column of ``B_k``); needs no output error,
               so it is injected *during* the forward pass, right after the layer ran (DRTP Algorithm 1).
* ``shallow``  the layer is frozen at its random init and cut from the graph.

Signs follow the gradient-descent convention (the optimiser subtracts): DRTP's update ``+eta B^T y*`` is a gradient of
``-B^T y*``. ``N`` is the batch size, so every signal is a per-sample mean like the loss.

Further rules (``ldfa``, ``dldfa``, ``ssa``) register themselves in :data:`RULE_CLASSES` from their own modules, which
``edgelearn.torch_ref`` imports, so the registry is complete as soon as the package is; its names are
:data:`edgelearn.rule_names.RULE_NAMES`.
"""
from __future__ import annotations

import contextlib
import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.grad import conv2d_input, conv2d_weight

from ..errors import RuleError

if TYPE_CHECKING:  # pragma: no cover
    from .learner import Context, LocalLearner, Site


RULE_CLASSES: dict[str, type["Rule"]] = {}


def register(cls: type["Rule"]) -> type["Rule"]:
    RULE_CLASSES[cls.name] = cls
    return cls


def he_uniform(shape: tuple[int, ...], fan_in: int, generator: torch.Generator, device, dtype) -> torch.Tensor:
    bound = math.sqrt(6.0 / fan_in)
    t = torch.empty(shape, dtype=dtype)
    t.uniform_(-bound, bound, generator=generator)
    return t.to(device)


def fp32_region(x: torch.Tensor):
    """Mixed precision: the custom autograd functions of fa/kp/ldfa compute in float32. If autocast is on for ``x``'s
    device, return a context that turns it off and ``x`` cast to float32; otherwise a null context and ``x``. (Their
    backward passes turn autocast off too, so the feedback products never mix dtypes.)"""
    dev = x.device.type
    if torch.is_autocast_enabled(dev):
        return torch.autocast(dev, enabled=False), x.float()
    return contextlib.nullcontext(), x


def no_autocast(t: torch.Tensor):
    return torch.autocast(t.device.type, enabled=False) if torch.is_autocast_enabled(t.device.type) else contextlib.nullcontext()


class Rule:
    """Base rule: plain backprop through the layer."""

    name = "bp"
    #: the graph is cut at the site's output point and the rule injects a signal there
    cuts = False
    #: the signal is known before the output error (injected during the forward pass)
    immediate = False
    #: the rule needs the output error e = dL/dz_out
    needs_error = False
    applies_to: tuple[type, ...] = (nn.Linear, nn.Conv2d)
    #: the ``rule_params`` keys the rule reads (the converter refuses a key no rule reads)
    params: tuple[str, ...] = ()

    @property
    def point_matters(self) -> bool:
        """The rule delivers a signal at the site's output point, so that point must follow the layer's activation
        and pooling (rules that only propagate through the layer do not care where its segment ends)."""
        return self.cuts

    def __init__(self, learner: "LocalLearner", site: "Site"):
        self.learner = learner
        self.site = site
        if not isinstance(site.module, self.applies_to):
            kinds = ", ".join(c.__name__ for c in self.applies_to)
            raise RuleError(f"rule {self.name!r} cannot apply to layer {site.name!r} ({type(site.module).__name__}); it applies to {kinds}")

    # -- life cycle ------------------------------------------------------------------------------------------------
    def setup(self, generator: torch.Generator) -> None:
        """Create feedback state once the site's point shape is known (after the trace)."""

    def feedback_parameters(self) -> list[nn.Parameter]:
        """Trainable feedback parameters (given to the optimiser beside the model's)."""
        return []

    def patch_forward(self) -> bool:
        """Return True if the rule replaces the layer's forward (see :meth:`forward`)."""
        return False

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - only for patching rules
        raise NotImplementedError

    # -- signals ---------------------------------------------------------------------------------------------------
    def signal(self, ctx: "Context", point: torch.Tensor) -> torch.Tensor | None:
        """The gradient to inject at the (cut) output point; ``ctx.error`` holds e for rules that need it."""
        return None

    def after_backward(self, ctx: "Context") -> None:
        """Hook after all gradients of a step are in ``.grad`` (e.g. KP's feedback update, LDFA's Oja step)."""

    def feedback_matrix(self) -> torch.Tensor | None:
        """The matrix whose alignment with the forward weights is reported (None if not applicable)."""
        return None


@register
class BP(Rule):
    name = "bp"


@register
class Shallow(Rule):
    """Frozen random layer: no update, no signal, no backward into it."""

    name = "shallow"
    cuts = True
    immediate = True
    point_matters = False  # no signal at all

    def setup(self, generator: torch.Generator) -> None:
        if self.site.is_output:
            raise RuleError(f"rule 'shallow' freezes hidden layers; {self.site.name!r} is the output layer, which is always trained")
        for p in self.site.module.parameters():
            p.requires_grad_(False)


class _DirectRule(Rule):
    """Common part of DFA, sDFA and DRTP: a fixed random B_k (C x prod(point shape)) buffer on the module."""

    cuts = True
    buffer_name = "el_feedback"

    def setup(self, generator: torch.Generator) -> None:
        n = math.prod(self.site.point_shape)
        c = self.learner.output_dim
        w = self.site.module.weight
        B = he_uniform((c, n), n, generator, w.device, w.dtype)
        if hasattr(self.site.module, self.buffer_name):
            return  # already converted (e.g. loading a checkpoint into a converted model)
        self.site.module.register_buffer(self.buffer_name, B)

    @property
    def B(self) -> torch.Tensor:
        return getattr(self.site.module, self.buffer_name)

    def project(self, vec: torch.Tensor, point: torch.Tensor) -> torch.Tensor:
        return (vec.to(self.B.dtype) @ self.B).view_as(point)

    def feedback_matrix(self) -> torch.Tensor:
        return self.B


@register
class DFA(_DirectRule):
    name = "dfa"
    needs_error = True

    def signal(self, ctx, point):
        return self.project(ctx.error, point)


@register
class SDFA(_DirectRule):
    name = "sdfa"
    needs_error = True

    def signal(self, ctx, point):
        return self.project(torch.sign(ctx.error) / ctx.batch_size, point)


@register
class DRTP(_DirectRule):
    name = "drtp"
    immediate = True

    def setup(self, generator):
        if self.learner.task != "classification":
            raise RuleError("rule 'drtp' needs class labels as targets; this network does regression")
        super().setup(generator)

    def signal(self, ctx, point):
        return self.project(-ctx.onehot / ctx.batch_size, point)


# ---------------------------------------------------------------------------------------------------------------------
# Feedback alignment: the layer's backward to its input uses B instead of W.


class _FALinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, feedback):
        ctx.save_for_backward(x, weight, feedback)
        ctx.has_bias = bias is not None
        return F.linear(x, weight, bias)

    @staticmethod
    def backward(ctx, grad_out):
        with no_autocast(grad_out):
            return _FALinear._backward(ctx, grad_out)

    @staticmethod
    def _backward(ctx, grad_out):
        x, weight, feedback = ctx.saved_tensors
        grad_out = grad_out.to(x.dtype)
        grad_x = grad_out @ feedback if ctx.needs_input_grad[0] else None
        g2 = grad_out.reshape(-1, grad_out.shape[-1])
        grad_w = g2.t() @ x.reshape(-1, x.shape[-1])
        grad_b = g2.sum(0) if ctx.has_bias else None
        grad_fb = grad_w if ctx.needs_input_grad[3] else None  # Kolen-Pollack: B gets W's update
        return grad_x, grad_w, grad_b, grad_fb


class _FAConv2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, feedback, stride, padding, dilation, groups):
        ctx.save_for_backward(x, weight, feedback)
        ctx.conf = (stride, padding, dilation, groups)
        ctx.has_bias = bias is not None
        return F.conv2d(x, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, grad_out):
        with no_autocast(grad_out):
            return _FAConv2d._backward(ctx, grad_out)

    @staticmethod
    def _backward(ctx, grad_out):
        x, weight, feedback = ctx.saved_tensors
        grad_out = grad_out.to(x.dtype)
        stride, padding, dilation, groups = ctx.conf
        grad_x = conv2d_input(x.shape, feedback, grad_out, stride, padding, dilation, groups) if ctx.needs_input_grad[0] else None
        grad_w = conv2d_weight(x, weight.shape, grad_out, stride, padding, dilation, groups)
        grad_b = grad_out.sum((0, 2, 3)) if ctx.has_bias else None
        grad_fb = grad_w if ctx.needs_input_grad[3] else None
        return grad_x, grad_w, grad_b, grad_fb, None, None, None, None


@register
class FA(Rule):
    name = "fa"
    trainable_feedback = False

    def setup(self, generator):
        m = self.site.module
        if hasattr(m, "el_feedback"):
            return
        w = m.weight
        B = he_uniform(tuple(w.shape), w[0].numel(), generator, w.device, w.dtype)
        if self.trainable_feedback:
            m.register_parameter("el_feedback", nn.Parameter(B))
        else:
            m.register_buffer("el_feedback", B)

    def patch_forward(self) -> bool:
        return True

    def forward(self, x):
        m = self.site.module
        B = m.el_feedback
        region, x = fp32_region(x)
        with region:
            if isinstance(m, nn.Linear):
                return _FALinear.apply(x, m.weight, m.bias, B)
            return _FAConv2d.apply(x, m.weight, m.bias, B, m.stride, m.padding, m.dilation, m.groups)

    def feedback_matrix(self):
        return self.site.module.el_feedback


@register
class KP(FA):
    """Kolen-Pollack (LDFA paper eq. 2): dB = dW (B has W's shape here), plus weight decay lambda on W and B."""

    name = "kp"
    trainable_feedback = True
    params = ("kp_decay",)

    def feedback_parameters(self):
        return [self.site.module.el_feedback]

    def after_backward(self, ctx):
        lam = float(self.learner.rule_params.get("kp_decay", 1e-4))
        m = self.site.module
        for p in (m.weight, m.el_feedback):
            if p.grad is not None and lam:
                p.grad.add_(p.detach(), alpha=lam)
