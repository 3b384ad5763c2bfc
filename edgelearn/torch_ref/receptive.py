"""Receptive fields of convolutional units (LDFA paper Fig. 4; Lindsey et al. 2019).

The receptive field of channel ``c`` of a conv layer is the gradient of the centre unit of that channel's map
(the layer's output, before its activation) with respect to the input image, averaged over a batch of images: for the
first conv layer it is exactly the channel's filter; deeper, it is the layer's linearisation around natural inputs.
Its *isotropy* is the share of its (mean-removed) energy that a radially symmetric profile explains: near 1 for
centre-surround fields, low for oriented ones -- the one number that separates the two regimes of Fig. 4.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError


def receptive_fields(model: nn.Module, layer: str, images: torch.Tensor) -> np.ndarray:
    """``(C, c_in, h, w)``: per output channel of ``layer`` (a conv module name), the mean over ``images`` of
    d out[c, centre] / d input, cropped to the support of the fields."""
    modules = dict(model.named_modules())
    mod = modules.get(layer)
    if not isinstance(mod, nn.Conv2d):
        convs = [n for n, m in modules.items() if isinstance(m, nn.Conv2d)]
        raise ConfigError(f"receptive fields: {layer!r} is not a conv layer of the model (conv layers: {', '.join(convs)})")
    captured: dict[str, torch.Tensor] = {}
    handle = mod.register_forward_hook(lambda m, i, o: captured.__setitem__("out", o))
    was_training = model.training
    model.eval()
    try:
        x = images.detach().clone().requires_grad_(True)
        model(x)
        out = captured["out"]
        n, c, h, w = out.shape
        grads = []
        for ch in range(c):
            (g,) = torch.autograd.grad(out[:, ch, h // 2, w // 2].sum(), x, retain_graph=ch < c - 1)
            grads.append(g.mean(0))
    finally:
        handle.remove()
        model.train(was_training)
    rf = torch.stack(grads).detach().double().cpu().numpy()  # (C, c_in, H, W)
    support = np.abs(rf).sum(axis=(0, 1)) > 0
    if support.any():
        rows, cols = np.where(support.any(1))[0], np.where(support.any(0))[0]
        rf = rf[:, :, rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    return rf


def isotropy(field: np.ndarray) -> float:
    """Share of the mean-removed energy of a 2-D field explained by its radial profile (rings of unit width around
    the field's centre); nan for a flat field."""
    f = np.asarray(field, dtype=np.float64)
    if f.ndim == 3:
        f = f.sum(0)
    h, w = f.shape
    yy, xx = np.mgrid[0:h, 0:w]
    r = np.rint(np.hypot(yy - (h - 1) / 2, xx - (w - 1) / 2)).astype(int)
    radial = np.bincount(r.ravel(), f.ravel()) / np.maximum(np.bincount(r.ravel()), 1)
    centred = f - f.mean()
    total = float((centred ** 2).sum())
    if total <= 0:
        return float("nan")
    return float(1.0 - ((f - radial[r]) ** 2).sum() / total)


def plot_receptive_fields(rows: list[tuple[str, np.ndarray]], path: str | Path, title: str = "",
                          per_row: int = 8) -> Path:
    """One block per run (label, fields ``(C, c_in, h, w)``): every channel's field on a diverging colour map, each
    scaled to its own maximum |value| (red excitatory, blue inhibitory), ``per_row`` fields a row, with their
    isotropy above them and the run's mean isotropy in its label."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_cols = min(per_row, max(rf.shape[0] for _, rf in rows))
    lines = [math.ceil(rf.shape[0] / n_cols) for _, rf in rows]
    fig, axes = plt.subplots(sum(lines), n_cols, figsize=(1.0 * n_cols + 2.2, 1.1 * sum(lines) + 0.8), squeeze=False)
    top = 0
    for (label, rf), n_lines in zip(rows, lines):
        iso = [isotropy(f) for f in rf]
        for k in range(n_lines * n_cols):
            ax = axes[top + k // n_cols][k % n_cols]
            ax.set_xticks([])
            ax.set_yticks([])
            if k >= rf.shape[0]:
                ax.axis("off")
                continue
            f = rf[k].sum(0) if rf.shape[1] != 3 else rf[k].mean(0)
            m = float(np.abs(f).max()) or 1.0
            ax.imshow(f, cmap="RdBu_r", vmin=-m, vmax=m, interpolation="nearest")
            if not math.isnan(iso[k]):
                ax.set_title(f"{iso[k]:.2f}", fontsize=6, pad=1)
        finite = [v for v in iso if not math.isnan(v)]
        mean = f"\nisotropy {np.mean(finite):.2f}" if finite else ""
        axes[top][0].set_ylabel(label + mean, rotation=0, ha="right", va="center", fontsize=8)
        top += n_lines
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def summary(rf: np.ndarray) -> dict:
    iso = [isotropy(f) for f in rf]
    finite = [v for v in iso if not math.isnan(v)]
    return {"channels": int(rf.shape[0]), "size": list(rf.shape[2:]), "isotropy": iso,
            "isotropy_mean": float(np.mean(finite)) if finite else None}
