"""SVD-space alignment (SSA): Roy, Apolinario, Das Biswas & Roy, "Feedback Alignment Meets Low-Rank Manifolds:
A Structured Recipe for Local Learning" (``shared/papers/ssa-svd-space-alignment.txt``; equation numbers below are
the paper's). ``docs/rules/ssa.md`` gives the equations as implemented, the defaults and every deviation.

The layer is held in its SVD form ``W' = U diag(S) V^T`` (eq. 5): three parameters on the module,

* ``ssa_U`` (m x r) and ``ssa_V`` (n x r) with orthonormal columns, ``ssa_S`` (r,) the singular values,

obtained at setup from the SVD of the layer's current weight (exact at full rank). ``W'`` is the weight of an
``nn.Linear`` (m = out, n = in; inputs of any rank), or of an ``nn.Conv2d`` reshaped for one of the two splits into
two factor convolutions (paper Sec. 4.1, after Yang et al. 2020):

* ``spatial`` (the paper's): ``W'`` is the kernel K (N, C, H, W) reshaped to (N*W) x (C*H); ``V`` becomes a (H x 1)
  conv from C to r channels, ``S`` scales the r channels, ``U`` becomes a (1 x W) conv from r to N channels.
* ``channel``: ``W'`` is K reshaped to N x (C*H*W); ``V`` becomes the full (H x W) conv to r channels, ``U`` a 1x1 conv.

The layer's dense ``weight`` stays on the module (same ``state_dict`` keys) as a *frozen mirror*: it no longer receives
gradients, is not given to the optimiser, and is rewritten to ``U diag(S) V^T`` after every optimiser step, rank
change and load, so that code reading ``weight`` (exports, metrics, eval-mode forward) sees the trained layer. The
training forward computes from the factors.

Learning (one local loss per layer, eq. 6: ``alpha L_CE + beta L_align + gamma L_ortho``):

* the graph is cut at the layer's output point; a hidden layer receives the DFA signal ``alpha D e`` of its own
  fixed random feedback ``D`` (``el_feedback``, C x prod(point shape): Gaussian, unit-norm per class (paper Sec. 4.3),
  truncated to the layer's rank), the output layer its loss gradient; autograd carries it through the segment
  (activation, batch norm, pooling) into ``U, S, V`` -- the L_CE part of eqs. 11-13;
* :meth:`SSA.after_backward` adds the alignment (eq. 8) and orthogonality (eq. 9) gradients, the Hoyer term of the
  rank schedule (Sec. 4.4), the ``S^{-1}`` scaling of eqs. 12-13, and projects the U and V gradients onto the tangent
  space of the Stiefel manifold (Sec. 5.2);
* after each ``optimizer.step()`` (a global optimiser step hook, see :func:`_after_step`), U and V are retracted to the
  manifold (polar by default) and the dense mirror is refreshed;
* the hybrid rank schedule (Sec. 4.4) runs when the trainer calls ``learner.end_epoch(epoch, epochs)``; it removes
  the columns of the smallest singular values in place and trims the optimiser state of those columns to match.
"""
from __future__ import annotations

import math
import weakref
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook
from torch.utils.weak import WeakIdKeyDictionary

from ..errors import RuleError
from .rules import Rule, register

#: rule_params keys of SSA with their defaults. Every value may also be a mapping {layer name: value, "default": v}.
DEFAULTS: dict[str, Any] = {
    "ssa_rank": "full",          # initial rank r0: "full" (= min(m, n), exact), an int, or a fraction of full rank
    "ssa_alpha": 1.0,            # weight of L_CE (eq. 6)
    "ssa_beta": 1.0e-3,          # weight of L_align (eqs. 6, 8)
    "ssa_gamma": 1.0e-2,         # weight of L_ortho (eqs. 6, 9)
    "ssa_precondition": "paper",  # "paper": the S^{-1} of eqs. 12-13; "none": the plain chain rule (S)
    "ssa_projection": "tangent",  # "tangent": G - U sym(U^T G); "paper": (I - U U^T) G as printed in eqs. 12-13
    "ssa_retraction": "polar",   # after each step: "polar" (nearest orthonormal), "qr", or "none" (paper)
    "ssa_conv_split": "spatial",  # "spatial" (paper Sec. 4.1: H x 1 conv then 1 x W conv) or "channel" (k x k, 1 x 1)
    "ssa_schedule": "hybrid",    # "hybrid" rank schedule of Sec. 4.4, or "none" (rank stays r0)
    "ssa_epoch_frac": 0.3,       # the epoch-based phase covers this fraction of the epochs ...
    "ssa_epoch_rank": 0.7,       # ... and brings the rank linearly from r0 down to this fraction of r0
    "ssa_energy": 0.95,          # threshold phase: keep the top singular values holding this share of sum(s^2)
    "ssa_min_rank": 0.3,         # never below this fraction of r0 (the paper: lower ranks destabilise training)
    "ssa_compact": True,         # threshold phase: also cap r below m n / (m + n) (the paper's compactness bound)
    "ssa_hoyer": 1.0e-3,         # weight of the Hoyer sparsity term ||S||_1 / ||S||_2 during the epoch-based phase
    "ssa_hoyer_every": 10,       # ... applied during every ssa_hoyer_every-th epoch (0, 10, 20, ...)
}

_CHOICES = {
    "ssa_precondition": ("paper", "none"),
    "ssa_projection": ("tangent", "paper"),
    "ssa_retraction": ("polar", "qr", "none"),
    "ssa_conv_split": ("spatial", "channel"),
    "ssa_schedule": ("hybrid", "none"),
}
_FRACTIONS = ("ssa_epoch_frac", "ssa_epoch_rank", "ssa_energy", "ssa_min_rank")
_WEIGHTS = ("ssa_alpha", "ssa_beta", "ssa_gamma", "ssa_hoyer")

FACTORS = ("ssa_U", "ssa_S", "ssa_V")
TARGETS = ("ssa_B_U", "ssa_B_S", "ssa_B_V")
_FACTOR_DIM = {"ssa_U": 1, "ssa_S": 0, "ssa_V": 1, "ssa_B_U": 1, "ssa_B_S": 0, "ssa_B_V": 1}


# ---------------------------------------------------------------------------------------------------------------------
# Geometry: the matrix W' of a layer and the factored forward.


def layer_matrix(module: nn.Module, split: str) -> torch.Tensor:
    """The 2-D matrix ``W'`` (m x n) whose SVD is held: the Linear weight, or the conv kernel reshaped by ``split``."""
    w = module.weight.detach()
    if isinstance(module, nn.Linear):
        return w
    n_out, c, h, k_w = w.shape
    if split == "spatial":  # rows (filter, kernel column), columns (input channel, kernel row)
        return w.permute(0, 3, 1, 2).reshape(n_out * k_w, c * h)
    return w.reshape(n_out, c * h * k_w)


def matrix_to_weight(module: nn.Module, split: str, mat: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`layer_matrix`."""
    if isinstance(module, nn.Linear):
        return mat
    n_out, c, h, k_w = module.weight.shape
    if split == "spatial":
        return mat.reshape(n_out, k_w, c, h).permute(0, 2, 3, 1)
    return mat.reshape(n_out, c, h, k_w)


def factored_forward(module: nn.Module, split: str, x: torch.Tensor) -> torch.Tensor:
    """The layer computed from its factors: ``U (S * (V^T x)) + b``; convs as the two factor convolutions."""
    U, S, V = module.ssa_U, module.ssa_S, module.ssa_V
    r = S.shape[0]
    if isinstance(module, nn.Linear):
        return F.linear(F.linear(x, V.t()) * S, U, module.bias)
    n_out, c, h, k_w = module.weight.shape
    if module.padding_mode != "zeros":
        x = F.pad(x, module._reversed_padding_repeated_twice, mode=module.padding_mode)
        pad1 = pad2 = 0
    elif isinstance(module.padding, str):
        pad1 = pad2 = module.padding
    else:
        ph, pw = module.padding
        pad1, pad2 = (ph, 0), (0, pw)
    scale = S.view(1, r, 1, 1)
    if split == "spatial":
        sh, sw = module.stride
        dh, dw = module.dilation
        k1 = V.t().reshape(r, c, h, 1)  # (r, C, H, 1): reduces the channels, spans the kernel's height
        k2 = U.reshape(n_out, k_w, r).permute(0, 2, 1).unsqueeze(2)  # (N, r, 1, W): spans the kernel's width
        z = F.conv2d(x, k1, None, (sh, 1), pad1, (dh, 1))
        return F.conv2d(z * scale, k2, module.bias, (1, sw), pad2, (1, dw))
    pad = pad1 if isinstance(pad1, (str, int)) else (pad1[0], pad2[1])
    k1 = V.t().reshape(r, c, h, k_w)
    z = F.conv2d(x, k1, None, module.stride, pad, module.dilation)
    return F.conv2d(z * scale, U.reshape(n_out, r, 1, 1), module.bias)


# ---------------------------------------------------------------------------------------------------------------------
# Module-level state kept in sync with the factors (no reference to the rule or the learner: deepcopy-safe).


def _versions(module: nn.Module) -> tuple[int, ...]:
    return tuple(getattr(module, n)._version for n in FACTORS)


def sync_weight(module: nn.Module) -> None:
    """Rewrite the dense mirror ``weight`` as ``U diag(S) V^T``."""
    conf = module._ssa_conf
    with torch.no_grad():
        U, S, V = module.ssa_U, module.ssa_S, module.ssa_V
        module.weight.copy_(matrix_to_weight(module, conf["split"], (U * S) @ V.t()))
    conf["versions"] = _versions(module)


def _polar_(p: torch.Tensor) -> None:
    """Move ``p`` (k x r, k >= r) to the nearest matrix with orthonormal columns (its polar factor) by Newton-Schulz
    steps ``X <- X (3I - X^T X) / 2``: matrix products only, one or two after a usual optimiser step (quadratic
    convergence near the manifold). Far from it, ``p`` is first scaled so that the iteration converges (all
    singular values below sqrt(3)); a QR is the last resort for a rank-deficient ``p``. No SVD: LAPACK calls are
    slow on small CPU machines with busy cores and would run every step."""
    eye = torch.eye(p.shape[1], dtype=p.dtype, device=p.device)
    tol = 64 * torch.finfo(p.dtype).eps
    for _ in range(60):
        err = p.t() @ p - eye
        worst = float(err.abs().max()) if err.numel() else 0.0
        if worst <= tol:
            return
        if not math.isfinite(worst):
            break
        bound = float((err + eye).abs().sum(1).max())  # >= the largest squared singular value (Gershgorin)
        if bound >= 2.5:
            p.div_(math.sqrt(bound))
            continue
        p.sub_(0.5 * (p @ err))
        if float(err.norm()) ** 2 < tol / 2:  # the new error, -3/4 E^2 + O(E^3), is below ||E||_F^2: done
            return
    _qr_(p)


def _qr_(p: torch.Tensor) -> None:
    Q, R = torch.linalg.qr(p)
    d = torch.sign(torch.diagonal(R))
    d[d == 0] = 1
    p.copy_(Q * d)


def retract(module: nn.Module) -> None:
    """Put U and V back on the Stiefel manifold (``ssa_retraction``) and refresh the dense mirror."""
    kind = module._ssa_conf["retraction"]
    with torch.no_grad():
        if kind != "none":
            for name in ("ssa_U", "ssa_V"):
                p = getattr(module, name)
                if p.shape[0] >= p.shape[1] and p.numel():
                    (_polar_ if kind == "polar" else _qr_)(p)
    sync_weight(module)


def refresh(module: nn.Module) -> None:
    """Retract and re-sync if the factors changed since the last sync (a manual update, a loaded checkpoint)."""
    if _versions(module) != module._ssa_conf.get("versions"):
        retract(module)


def _pre_forward(module, args):
    refresh(module)


def _pre_state_dict(module, prefix, keep_vars):
    refresh(module)


def _pre_load(module, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
    """A checkpoint taken after rank reductions holds smaller factors: resize ours to its shapes before loading."""
    for name in FACTORS + TARGETS:
        key = prefix + name
        cur = getattr(module, name, None)
        if key in state_dict and cur is not None and tuple(state_dict[key].shape) != tuple(cur.shape):
            new = torch.empty(state_dict[key].shape, dtype=cur.dtype, device=cur.device)
            if isinstance(cur, nn.Parameter):
                cur.data = new
                cur.grad = None
                _RESIZED.setdefault(cur, []).append((None, None, None))  # optimiser state of old shape: dropped
            else:
                setattr(module, name, new)
    module._ssa_conf["versions"] = None


# ---------------------------------------------------------------------------------------------------------------------
# Global optimiser hooks: retraction after every step; optimiser state trimmed after a rank reduction.

_OWNERS: WeakIdKeyDictionary = WeakIdKeyDictionary()   # factor parameter -> weakref to its module
_RESIZED: WeakIdKeyDictionary = WeakIdKeyDictionary()  # factor parameter -> [(old shape, dim, kept index)]
_HOOKS: list = []


def _install_global_hooks() -> None:
    if not _HOOKS:
        _HOOKS.append(register_optimizer_step_pre_hook(_before_step))
        _HOOKS.append(register_optimizer_step_post_hook(_after_step))


def _before_step(optimizer, args, kwargs):
    """Trim the optimiser state (Adam moments, momentum) of columns removed by a rank reduction."""
    if not _RESIZED:
        return None
    for group in optimizer.param_groups:
        for p in group["params"]:
            records = _RESIZED.get(p)
            state = optimizer.state.get(p) if records else None
            if not state:
                continue
            for key, value in list(state.items()):
                if not torch.is_tensor(value) or value.dim() != p.dim() or value.shape == p.shape:
                    continue
                for old_shape, dim, index in records:
                    if old_shape is None:  # resized by a checkpoint load: no correspondence, drop the state
                        value = None
                        break
                    if tuple(value.shape) == old_shape:
                        value = value.index_select(dim, index.to(value.device))
                if value is None or value.shape != p.shape:
                    optimizer.state[p] = {}
                    break
                state[key] = value
    return None


def _after_step(optimizer, args, kwargs):
    if not _OWNERS:
        return
    modules: dict[int, nn.Module] = {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            ref = _OWNERS.get(p)
            mod = ref() if ref is not None else None
            if mod is not None:
                modules[id(mod)] = mod
    for mod in modules.values():
        retract(mod)


# ---------------------------------------------------------------------------------------------------------------------


def _round(x: float) -> int:
    return int(math.floor(x + 0.5 + 1e-9))


def truncate_matrix(mat: torch.Tensor, rank: int) -> torch.Tensor:
    """Best rank-``rank`` approximation (truncated SVD; the paper uses a randomized SVD, this is the exact one)."""
    if rank >= min(mat.shape):
        return mat
    P, s, Qh = torch.linalg.svd(mat.double(), full_matrices=False)
    return ((P[:, :rank] * s[:rank]) @ Qh[:rank]).to(mat.dtype)


@register
class SSA(Rule):
    """SVD-space alignment; see the module docstring and ``docs/rules/ssa.md``."""

    name = "ssa"
    cuts = True
    needs_error = True
    params = tuple(DEFAULTS)

    def __init__(self, learner, site):
        super().__init__(learner, site)
        m = site.module
        if isinstance(m, nn.Conv2d) and m.groups != 1:
            raise RuleError(f"rule 'ssa' cannot apply to layer {site.name!r}: grouped convolutions (groups={m.groups}) are not supported")
        self.cfg = self._read_params()
        self.epoch = 0           # index of the epoch being trained (set by end_epoch)
        self.epochs: int | None = None
        self.r0 = 0
        self.rank_history: list[int] = []

    # -- parameters ----------------------------------------------------------------------------------------------
    def _read_params(self) -> dict[str, Any]:
        params = self.learner.rule_params
        unknown = sorted(k for k in params if str(k).startswith("ssa_") and k not in DEFAULTS)
        if unknown:
            raise RuleError(f"unknown SSA rule_params {', '.join(unknown)}; known: {', '.join(DEFAULTS)}")
        cfg = {}
        for key, default in DEFAULTS.items():
            v = params.get(key, default)
            if isinstance(v, dict):
                v = v.get(self.site.name, v.get("default", default))
            cfg[key] = self._check(key, v)
        return cfg

    def _check(self, key: str, v: Any) -> Any:
        bad = RuleError
        if key in _CHOICES:
            if v not in _CHOICES[key]:
                raise bad(f"rule_params {key} must be one of {', '.join(_CHOICES[key])}, got {v!r}")
            return v
        if key == "ssa_rank":
            if v is None or v == "full":
                return "full"
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0 or (isinstance(v, float) and v > 1):
                raise bad(f"rule_params ssa_rank must be 'full', a positive integer or a fraction in (0, 1], got {v!r}")
            return v
        if key == "ssa_compact":
            if not isinstance(v, bool):
                raise bad(f"rule_params ssa_compact must be true or false, got {v!r}")
            return v
        if key == "ssa_hoyer_every":
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise bad(f"rule_params ssa_hoyer_every must be a positive integer, got {v!r}")
            return v
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise bad(f"rule_params {key} must be a number, got {v!r}")
        if key in _FRACTIONS and not 0 < v <= 1:
            raise bad(f"rule_params {key} must be in (0, 1], got {v!r}")
        if key in _WEIGHTS and v < 0:
            raise bad(f"rule_params {key} must be >= 0, got {v!r}")
        return float(v)

    # -- set-up --------------------------------------------------------------------------------------------------
    @property
    def module(self) -> nn.Module:
        return self.site.module

    @property
    def rank(self) -> int:
        return int(self.module.ssa_S.shape[0])

    def full_rank(self) -> int:
        return min(layer_matrix(self.module, self.cfg["ssa_conv_split"]).shape)

    def _initial_rank(self, full: int) -> int:
        r = self.cfg["ssa_rank"]
        if r == "full":
            return full
        if isinstance(r, float):
            return max(1, min(full, _round(r * full)))
        return min(full, int(r))

    def setup(self, generator: torch.Generator) -> None:
        m = self.module
        split = self.cfg["ssa_conv_split"]
        w = m.weight
        mat = layer_matrix(m, split)
        self.r0 = self._initial_rank(min(mat.shape))
        if getattr(m, "ssa_U", None) is None:
            r = self.r0
            P, s, Qh = torch.linalg.svd(mat.double(), full_matrices=False)
            for name, t in (("ssa_U", P[:, :r]), ("ssa_S", s[:r]), ("ssa_V", Qh[:r].t())):
                m.register_parameter(name, nn.Parameter(t.to(w.dtype).contiguous()))
            # alignment targets B_U, B_S, B_V (eq. 8): truncated SVD of a fixed Gaussian matrix shaped like W',
            # columns normalised to unit l2 norm (Sec. 4.3)
            B = torch.randn(mat.shape, generator=generator, dtype=torch.float32)
            B = B / B.norm(dim=0, keepdim=True).clamp_min(1e-12)
            P, s, Qh = torch.linalg.svd(B.to(w.device), full_matrices=False)
            for name, t in (("ssa_B_U", P[:, :r]), ("ssa_B_S", s[:r]), ("ssa_B_V", Qh[:r].t())):
                m.register_buffer(name, t.to(device=w.device, dtype=w.dtype).contiguous())
            if not self.site.is_output:
                # the DFA feedback that delivers the output error (Sec. 4.3): C x prod(point), Gaussian, each class's
                # vector normalised to unit norm, truncated to the layer's rank
                d = math.prod(self.site.point_shape)
                D = torch.randn((self.learner.output_dim, d), generator=generator, dtype=torch.float64)
                D = D / D.norm(dim=1, keepdim=True).clamp_min(1e-12)
                D = truncate_matrix(D, r)
                m.register_buffer("el_feedback", D.to(device=w.device, dtype=w.dtype))
            m._ssa_conf = {"split": split, "retraction": self.cfg["ssa_retraction"], "versions": None}
            m.register_forward_pre_hook(_pre_forward)
            m.register_state_dict_pre_hook(_pre_state_dict)
            m.register_load_state_dict_pre_hook(_pre_load)
        else:  # already converted (a second convert() of the same model): keep the trained factors
            m._ssa_conf.update(split=split, retraction=self.cfg["ssa_retraction"])
        w.requires_grad_(False)
        w.grad = None
        for name in FACTORS:
            _OWNERS[getattr(m, name)] = weakref.ref(m)
        _install_global_hooks()
        sync_weight(m)
        self.rank_history = [self.rank]

    def patch_forward(self) -> bool:
        return True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return factored_forward(self.module, self.cfg["ssa_conv_split"], x)

    def feedback_matrix(self) -> torch.Tensor | None:
        return None if self.site.is_output else self.module.el_feedback

    # -- learning ------------------------------------------------------------------------------------------------
    def signal(self, ctx, point: torch.Tensor) -> torch.Tensor:
        """alpha * D e: the L_CE part of the local loss, delivered at the output point (eq. 7 through D)."""
        D = self.module.el_feedback
        return (ctx.error.to(D.dtype) @ D).view_as(point) * self.cfg["ssa_alpha"]

    def hoyer_active(self) -> bool:
        c = self.cfg
        if c["ssa_hoyer"] <= 0 or c["ssa_schedule"] != "hybrid" or self.epoch % c["ssa_hoyer_every"]:
            return False
        return self.epochs is None or self.epoch < c["ssa_epoch_frac"] * self.epochs

    @staticmethod
    def project(X: torch.Tensor, G: torch.Tensor, kind: str) -> torch.Tensor:
        """Stiefel tangent projection at X of a Euclidean gradient G (Sec. 5.2)."""
        XtG = X.t() @ G
        if kind == "paper":
            return G - X @ XtG                      # (I - X X^T) G
        return G - X @ (0.5 * (XtG + XtG.t()))      # G - X sym(X^T G)

    def after_backward(self, ctx) -> None:
        m, c = self.module, self.cfg
        U, S, V = m.ssa_U, m.ssa_S, m.ssa_V
        with torch.no_grad():
            gU, gS, gV = (p.grad if p.grad is not None else torch.zeros_like(p) for p in (U, S, V))
            if self.site.is_output and c["ssa_alpha"] != 1.0:  # hidden layers got alpha through their signal
                for g in (gU, gS, gV) + ((m.bias.grad,) if m.bias is not None and m.bias.grad is not None else ()):
                    g.mul_(c["ssa_alpha"])
            if c["ssa_precondition"] == "paper":  # autograd gives grad_W V S; eqs. 12-13 use grad_W V S^{-1}
                s = S.abs()
                s = s.clamp_min(max(float(s.max()) if s.numel() else 0.0, 1e-30) * 1e-3)
                gU = gU / (s * s)
                gV = gV / (s * s)
            beta, gamma = c["ssa_beta"], c["ssa_gamma"]
            if beta:  # eq. 8
                gU = gU + 2 * beta * (U - m.ssa_B_U)
                gS = gS + 2 * beta * (S - m.ssa_B_S)
                gV = gV + 2 * beta * (V - m.ssa_B_V)
            if self.hoyer_active() and S.numel():  # Sec. 4.4: d/dS ||S||_1 / ||S||_2
                n2 = S.norm().clamp_min(1e-12)
                gS = gS + c["ssa_hoyer"] * (torch.sign(S) / n2 - S.abs().sum() * S / n2 ** 3)
            gU = self.project(U, gU, c["ssa_projection"])
            gV = self.project(V, gV, c["ssa_projection"])
            # eq. 9, outside the projection (inside it would vanish to first order; see docs). With a retraction,
            # U^T U - I is at rounding level (< 64 eps) at every step and the term is not computed.
            if gamma and c["ssa_retraction"] == "none":
                eye = torch.eye(S.shape[0], dtype=S.dtype, device=S.device)
                gU = gU + 4 * gamma * (U @ (U.t() @ U - eye))
                gV = gV + 4 * gamma * (V @ (V.t() @ V - eye))
            U.grad, S.grad, V.grad = gU, gS, gV

    # -- rank schedule (Sec. 4.4) --------------------------------------------------------------------------------
    def compact_cap(self) -> int:
        """The largest r with r < m n / (m + n) (at least 1)."""
        mm, nn_ = layer_matrix(self.module, self.cfg["ssa_conv_split"]).shape
        return max(1, math.ceil(mm * nn_ / (mm + nn_)) - 1)

    def target_rank(self, epoch: int, epochs: int) -> int:
        """The rank after ``epoch`` (0-based) of ``epochs``: linear from r0 to ssa_epoch_rank * r0 over the first
        ssa_epoch_frac of the epochs, then the ssa_energy share of sum(s^2), capped by compactness; never below
        ssa_min_rank * r0 and never above the current rank."""
        c = self.cfg
        r, r0 = self.rank, self.r0
        progress = (epoch + 1) / epochs
        if progress <= c["ssa_epoch_frac"] + 1e-12:
            target = _round(r0 * (1 - (1 - c["ssa_epoch_rank"]) * progress / c["ssa_epoch_frac"]))
        else:
            s2 = torch.sort(self.module.ssa_S.detach().double() ** 2, descending=True).values
            total = float(s2.sum())
            if total > 0:
                share = torch.cumsum(s2, 0) / total
                target = int((share < c["ssa_energy"] - 1e-12).sum()) + 1
            else:
                target = r
            if c["ssa_compact"]:
                target = min(target, self.compact_cap())
        target = max(target, math.ceil(c["ssa_min_rank"] * r0 - 1e-9), 1)
        return min(target, r)

    def extra_state(self) -> dict[str, Any]:
        """Python-side state a checkpoint must carry (the epoch counters of the schedule and Hoyer term)."""
        return {"epoch": self.epoch, "epochs": self.epochs, "rank_history": list(self.rank_history)}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.epoch = int(state["epoch"])
        self.epochs = None if state["epochs"] is None else int(state["epochs"])
        self.rank_history = [int(r) for r in state["rank_history"]]

    def end_epoch(self, epoch: int, epochs: int) -> None:
        """Called by ``LocalLearner.end_epoch`` after epoch ``epoch`` (0-based) of ``epochs``."""
        self.epoch, self.epochs = int(epoch) + 1, int(epochs)
        if self.cfg["ssa_schedule"] == "hybrid":
            self.set_rank(self.target_rank(int(epoch), int(epochs)))

    def set_rank(self, rank: int) -> None:
        """Keep the ``rank`` largest |s| (columns keep their order), drop the others, trim the optimiser state."""
        m = self.module
        r = self.rank
        rank = int(rank)
        if not 1 <= rank <= r:
            raise RuleError(f"SSA rank of {self.site.name!r} can only decrease (now {r}), got {rank}")
        if rank < r:
            with torch.no_grad():
                keep = torch.sort(torch.argsort(m.ssa_S.detach().abs(), descending=True)[:rank]).values
                for name in FACTORS + TARGETS:
                    t, dim = getattr(m, name), _FACTOR_DIM[name]
                    new = t.detach().index_select(dim, keep.to(t.device)).contiguous()
                    if isinstance(t, nn.Parameter):
                        _RESIZED.setdefault(t, []).append((tuple(t.shape), dim, keep.cpu()))
                        t.data = new
                        t.grad = None
                    else:
                        setattr(m, name, new)
                if not self.site.is_output:
                    m.el_feedback = truncate_matrix(m.el_feedback, rank)
            sync_weight(m)
        self.rank_history.append(self.rank)
