"""The float reference run with the fixed-point engine's own online algorithm: torch_ref, batch 1, plain SGD.

It starts from the float twin's state (the engine's initial weights and feedback matrices), visits the samples in
the engine's order and takes, per layer, the learning rate that makes torch_ref's step the twin's step
(docs/architecture.md, "The fixed-point chain"): the twin adds ``lr_k x dᵀ`` per sample with ``d = t − y``;
torch_ref's BCE is the mean over the batch and the classes, so a layer whose signal derives from the output error
(the output layer; hidden layers under bp, fa, dfa) takes ``lr_k · N·C``, one whose signal does not (drtp's
``−Bᵀy*/N``, sdfa's ``Bᵀ sign(e)/N``) ``lr_k · N``.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

#: rules whose torch_ref and engine implement the same algorithm (ldfa: the engine trains P by an online Oja step,
#: torch_ref by the batch covariance form, docs/arithmetic.md §16; kp: not in the report's sweeps yet)
ONLINE_RULES = ("bp", "fa", "dfa", "sdfa", "drtp", "shallow")
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

        self.model = build_model(spec, seed=0).double()
        self.learner = convert_network(self.model, spec, rule=rule)
        self.sites = self.learner.sites
        self.seed = twin.seed
        self.epochs_done = twin.epochs_done
        C = twin.sizes[-1]
        with torch.no_grad():
            for k, s in enumerate(self.sites):
                s.module.weight.copy_(torch.from_numpy(twin.W[k].T))
                s.module.bias.copy_(torch.from_numpy(twin.b[k]))
                fb = getattr(s.module, "el_feedback", None)
                if fb is not None:  # direct rules: B (classes, n_k) in both; fa: the twin keeps (n_in, n_out)
                    fb.copy_(torch.from_numpy(twin.B[k].T if rule == "fa" else twin.B[k]))
        self.lrs = [float(twin.lrs[k]) * sgd_scale(rule, s.is_output, C, loss=spec.loss) for k, s in enumerate(self.sites)]

    def step(self, x: np.ndarray, label: int) -> None:
        """One online SGD step on one sample (float inputs of the network's input shape, or flat)."""
        import torch

        self.model.zero_grad(set_to_none=True)
        xt = torch.as_tensor(np.asarray(x, dtype=np.float64))[None]
        self.learner.train_step(xt, torch.tensor([int(label)]))
        with torch.no_grad():
            for lr, s in zip(self.lrs, self.sites):
                if s.module.weight.grad is not None:
                    s.module.weight -= lr * s.module.weight.grad
                    s.module.bias -= lr * s.module.bias.grad

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
