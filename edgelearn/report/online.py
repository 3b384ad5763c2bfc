"""The float reference run with the fixed-point engine's own online algorithm: torch_ref, batch 1, plain SGD.

It starts from the float twin's state (the engine's initial weights and feedback matrices), visits the samples in
the engine's order and takes, per layer, the learning rate that makes torch_ref's step the twin's step
(docs/architecture.md, "The fixed-point chain"): the twin adds ``lr_k x dᵀ`` per sample with ``d = t − y``;
torch_ref's BCE is the mean over the batch and the classes, so a layer whose signal derives from the output error
(the output layer; hidden layers under bp, fa, dfa) takes ``lr_k · N·C``, one whose signal does not (drtp's
``−Bᵀy*/N``, sdfa's ``Bᵀ sign(e)/N``) ``lr_k · N``.

Feedback that learns (kp's ``B``, ldfa's / dldfa's ``Q``) takes the same SGD step as ``W``. ``P`` does not: torch_ref
trains it by the batch form of Oja's rule, whose centred covariance is zero for one sample, while the engine (and
its twin) take the online Oja step of docs/arithmetic.md §16. The reference applies that written step to its own
signals (torch's gradient at the layer's output, rescaled to the twin's ``d = t − y`` convention), so kp, ldfa and
dldfa have an online reference too. Decay is 0, as the engine has none.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from ..program import OJA_GAIN

#: rules whose online reference takes the twin's step (P of ldfa / dldfa: by the written online Oja step)
ONLINE_RULES = ("bp", "fa", "dfa", "sdfa", "drtp", "shallow", "kp", "ldfa", "dldfa")
#: rules whose feedback factors P learn by Oja's rule
OJA_RULES = ("ldfa", "dldfa")
#: hidden-layer rules whose torch_ref signal is per sample, not derived from the class-mean output error
PER_SAMPLE_SIGNAL = ("drtp", "sdfa")


def sgd_scale(rule: str, is_output: bool, n_classes: int, batch: int = 1, loss: str = "bce") -> float:
    """Factor from the twin's per-sample learning rate to torch_ref's SGD learning rate on a batch of ``batch``
    (docs/architecture.md): torch's bce is a mean over batch and classes, so gradients derived from the output
    error carry 1/(N C); drtp's and sdfa's hidden signals do not come from it (1/N); ce is a mean over the batch
    only (1/N everywhere)."""
    per_sample = (not is_output and rule in PER_SAMPLE_SIGNAL) or loss == "ce"
    return float(batch * (1 if per_sample else n_classes))


class OnlineReference:
    """torch_ref (float64) of ``spec`` under ``rule`` in the state of ``twin`` (an engine's ``float_twin()``)."""

    def __init__(self, spec, rule: str, twin):
        import torch

        from ..torch_ref import build_model, convert_network

        spec = spec.with_rule(rule)
        spec.rule_params = {**spec.rule_params, "kp_decay": 0.0, "ldfa_decay": 0.0}  # the engine has no decay
        self.rule = rule
        self.model = build_model(spec, seed=0).double()
        self.learner = convert_network(self.model, spec, rule=rule)
        self.sites = self.learner.sites
        self.seed = twin.seed
        self.epochs_done = twin.epochs_done
        C = twin.sizes[-1]
        self.factors: list[int] = []  # layers whose signal goes through Q P
        with torch.no_grad():
            for k, s in enumerate(self.sites):
                s.module.weight.copy_(torch.from_numpy(twin.W[k].T))
                s.module.bias.copy_(torch.from_numpy(twin.b[k]))
                fb = getattr(s.module, "el_feedback", None)
                if fb is not None:  # direct rules: B (classes, n_k) in both; fa, kp: the twin keeps (n_in, n_out)
                    fb.copy_(torch.from_numpy(twin.B[k].T if rule in ("fa", "kp") else twin.B[k]))
                qt = getattr(s.module, "el_ldfa_q", None)
                # the twin's B stacks Q (n, r) over P (r, m) where the layer propagates through them (not ldfa's
                # first layer, which sends no signal); torch keeps Q transposed
                if qt is not None and twin.B[k].shape[0] == qt.shape[1] + qt.shape[0]:
                    n, r = qt.shape[1], qt.shape[0]
                    p = s.module.el_ldfa_p
                    qt.copy_(torch.from_numpy(twin.B[k][:n, :r].T))
                    p.copy_(torch.from_numpy(twin.B[k][n:, :p.shape[1]]))
                    self.factors.append(k)
        self.scales = [sgd_scale(rule, s.is_output, C, loss=spec.loss) for s in self.sites]
        self.lrs = [float(twin.lrs[k]) * self.scales[k] for k in range(len(self.sites))]
        self.twin_lrs = [float(lr) for lr in twin.lrs]
        rp = spec.rule_params
        self.train_p = rule in OJA_RULES and bool(rp.get("ldfa_train_p", True))
        self.output_p_targets = rp.get("ldfa_output_p", "targets") == "targets"
        self._grads: dict[int, Any] = {}
        if self.train_p:  # the gradient at each layer's output, the source of the online Oja step
            for k, s in enumerate(self.sites):
                s.module.register_forward_hook(self._keep_output_grad(k))

    def step(self, x: np.ndarray, label: int) -> None:
        """One online SGD step on one sample (float inputs of the network's input shape, or flat)."""
        import torch

        self.model.zero_grad(set_to_none=True)
        xt = torch.as_tensor(np.asarray(x, dtype=np.float64))[None]
        self._grads.clear()
        self.learner.train_step(xt, torch.tensor([int(label)]))
        with torch.no_grad():
            # P's steps from the pre-update words, as the twin's feedback step
            steps = [self._oja_step(k, int(label)) if self.train_p else None for k in range(len(self.sites))]
            for k, (lr, s) in enumerate(zip(self.lrs, self.sites)):
                m = s.module
                for t in (m.weight, m.bias, getattr(m, "el_feedback", None), getattr(m, "el_ldfa_q", None)):
                    if t is not None and t.grad is not None:
                        t -= lr * t.grad
                if steps[k] is not None:
                    m.el_ldfa_p += torch.from_numpy(steps[k])

    def _keep_output_grad(self, k: int):
        def hook(module, inputs, out):
            if out.requires_grad:
                out.register_hook(lambda g: self._grads.__setitem__(k, g.detach().reshape(-1).numpy().copy()))
        return hook

    def _oja_step(self, k: int, label: int) -> np.ndarray | None:
        """docs/arithmetic.md §16's online Oja step of layer ``k``'s ``P`` in float64, on the source the engine
        reads: the one-hot target at ldfa's output layer (``ldfa_output_p: targets``), the error arriving at the layer
        (ldfa) or the output error (dldfa), in the twin's convention ``d = t − y`` (torch's gradient at the layer's
        output times ``−N·C`` or ``−N``, the layer's SGD scale)."""
        if k not in self.factors:
            return None
        p = self.sites[k].module.el_ldfa_p
        last = len(self.sites) - 1
        if self.rule == "ldfa" and k == last and self.output_p_targets:
            s = np.eye(p.shape[1])[label]
        else:
            src = last if self.rule == "dldfa" else k
            if src not in self._grads:
                return None
            s = -self._grads[src] * self.scales[src]
        big = float(np.max(np.abs(s)))
        if big == 0.0:
            return None
        s = s * 2.0 ** -(math.frexp(big)[1] + 1)  # max |s| in [1/4, 1/2)
        P = p.detach().numpy()
        a = P @ s
        return self.twin_lrs[k] * 2.0 ** OJA_GAIN * np.outer(a, s - P.T @ a)

    def fit_epoch(self, x: np.ndarray, y: np.ndarray, callback: Callable[[int], None] | None = None,
                  chunk: int | None = None) -> None:
        """One epoch in the engine's sample order; ``callback(n)`` after every ``chunk`` samples."""
        from ..program import sample_order

        N = len(x)
        order = sample_order(self.seed, self.epochs_done, N)
        chunk = chunk or N
        for start in range(0, N, chunk):
            for i in order[start:start + chunk]:
                self.step(x[i], int(y[i]))
            if callback is not None:
                callback(min(N, start + chunk) - start)
        self.epochs_done += 1

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> float:
        import torch

        if not len(x):
            return float("nan")
        with torch.no_grad():
            out = self.model(torch.as_tensor(np.asarray(x, dtype=np.float64)))
        return float((out.argmax(1).numpy() == np.asarray(y)).mean())

    def weights(self) -> list[dict[str, Any]]:
        """Per layer ``W`` (n_in, n_out) and ``b``, in the twin's layout."""
        return [{"W": s.module.weight.detach().numpy().T.copy(), "b": s.module.bias.detach().numpy().copy()}
                for s in self.sites]
