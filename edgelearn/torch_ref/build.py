"""Build a standard torch model from a network description.

The result is a plain ``nn.Sequential`` of standard modules (plus small ViT pieces whose projections are
``nn.Linear``), so any torch tooling applies to it; learning rules are attached afterwards by
:func:`edgelearn.torch_ref.convert`, never by building a different model per rule.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..network import LayerSpec, NetworkSpec


def activation(name: str) -> nn.Module | None:
    return {
        "none": None,
        "tanh": nn.Tanh(),
        "sigmoid": nn.Sigmoid(),
        "relu": nn.ReLU(),
        "hardtanh": nn.Hardtanh(),
        "gelu": nn.GELU(),
        "leaky_relu": nn.LeakyReLU(0.01),
    }[name]


class PatchEmbed(nn.Module):
    """Image -> tokens: a strided conv per patch, an optional class token, learned positions."""

    def __init__(self, in_ch: int, dim: int, patch: int, n_patches: int, cls_token: bool = True):
        super().__init__()
        self.proj = nn.Conv2d(in_ch, dim, kernel_size=patch, stride=patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if cls_token else None
        self.pos = nn.Parameter(torch.randn(1, n_patches + (1 if cls_token else 0), dim) * 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x).flatten(2).transpose(1, 2)  # (N, T, dim)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        return x + self.pos


class Attention(nn.Module):
    """Multi-head self-attention with separate q/k/v/out ``nn.Linear`` projections (rules apply to each)."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        h = self.heads

        def split(z: torch.Tensor) -> torch.Tensor:
            return z.view(n, t, h, d // h).transpose(1, 2)

        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        att = torch.nn.functional.scaled_dot_product_attention(q, k, v, dropout_p=self.drop.p if self.training else 0.0)
        return self.drop(self.out(att.transpose(1, 2).reshape(n, t, d)))


class TransformerBlock(nn.Module):
    """Pre-norm block: x + attn(LN(x)); x + mlp(LN(x)). The MLP is a Sequential(Linear, GELU, Dropout, Linear, Dropout)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0):
        super().__init__()
        hidden = int(round(dim * mlp_ratio))
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TokenPool(nn.Module):
    def __init__(self, mode: str = "cls"):
        super().__init__()
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0] if self.mode == "cls" else x.mean(dim=1)


class PadShortcut(nn.Module):
    """ResNet option-A shortcut (He et al. 2016, CIFAR): subsample by ``stride`` and zero-pad the new channels."""

    def __init__(self, stride: int, extra_channels: int):
        super().__init__()
        self.stride = stride
        self.extra = extra_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride != 1:
            x = x[:, :, ::self.stride, ::self.stride]
        if self.extra:
            lo = self.extra // 2
            x = torch.nn.functional.pad(x, (0, 0, 0, 0, lo, self.extra - lo))
        return x


class BasicBlock(nn.Module):
    """ResNet basic block: relu(bn2(conv2(relu1(bn1(conv1(x))))) + shortcut(x)).

    ``el_segment_ends`` tells the converter where the *point* of each conv is: ``conv1`` ends after ``relu1`` and
    ``conv2`` after the block's output ReLU (after the addition), so a direct rule delivers its signal at the block
    output and cuts the graph there -- the next block's local backward stops at this block's output and never flows
    back through the shortcut. A ``conv`` shortcut is an ``nn.Sequential(conv1x1, bn)``: its own site, ending at
    its batch norm.
    """

    el_segment_ends = {"conv1": "relu1", "conv2": "relu2"}

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, shortcut: str = "pad"):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.relu2 = nn.ReLU()
        if stride == 1 and in_ch == out_ch:
            self.shortcut: nn.Module = nn.Identity()
        elif shortcut == "conv":
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))
        else:
            self.shortcut = PadShortcut(stride, out_ch - in_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu2(out + self.shortcut(x))


def residual_stage(in_ch: int, out_ch: int, stride: int, blocks: int, shortcut: str) -> nn.Sequential:
    """``blocks`` basic blocks; the first changes the width and has the stride."""
    return nn.Sequential(*[BasicBlock(in_ch if i == 0 else out_ch, out_ch, stride if i == 0 else 1, shortcut)
                           for i in range(blocks)])


def he_uniform_(weight: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """He (Kaiming) uniform init, U(-sqrt(6/fan_in), sqrt(6/fan_in)), as in the DRTP paper."""
    fan_in = weight[0].numel()
    bound = math.sqrt(6.0 / fan_in)
    with torch.no_grad():
        return weight.uniform_(-bound, bound, generator=generator)


def _layer_modules(layer: LayerSpec) -> list[nn.Module]:
    t, p = layer.type, layer.params
    if t == "linear":
        mods: list[nn.Module] = [nn.Linear(int(layer.in_shape[-1]), int(p["out"]), bias=bool(p["bias"]))]
    elif t == "conv2d":
        mods = [nn.Conv2d(int(layer.in_shape[0]), int(p["out"]), int(p["kernel"]), int(p["stride"]), int(p["padding"]), bias=bool(p["bias"]))]
    elif t == "maxpool":
        return [nn.MaxPool2d(int(p["kernel"]), int(p["stride"] or p["kernel"]))]
    elif t == "avgpool":
        return [nn.AvgPool2d(int(p["kernel"]), int(p["stride"] or p["kernel"]))]
    elif t == "flatten":
        return [nn.Flatten()]
    elif t == "act":
        act = activation(p["fn"])
        return [act] if act is not None else [nn.Identity()]
    elif t == "dropout":
        return [nn.Dropout(float(p["p"]))]
    elif t == "batchnorm":
        return [nn.BatchNorm2d(layer.in_shape[0]) if len(layer.in_shape) == 3 else nn.BatchNorm1d(layer.in_shape[0])]
    elif t == "layernorm":
        return [nn.LayerNorm(layer.in_shape[-1])]
    elif t == "patch_embed":
        c, h, w = layer.in_shape
        patch = int(p["patch"])
        return [PatchEmbed(c, int(p["dim"]), patch, (h // patch) * (w // patch), bool(p["cls_token"]))]
    elif t == "transformer":
        return [TransformerBlock(int(layer.in_shape[-1]), int(p["heads"]), float(p["mlp_ratio"]), float(p["dropout"]))]
    elif t == "token_pool":
        return [TokenPool(p["mode"])]
    elif t == "adaptive_avgpool":
        return [nn.AdaptiveAvgPool2d(int(p["size"]))]
    elif t == "residual":
        return [residual_stage(int(layer.in_shape[0]), int(p["out"]), int(p["stride"]), int(p["blocks"]), p["shortcut"])]
    else:  # pragma: no cover - the description was validated
        raise AssertionError(t)
    act = activation(p.get("act", "none"))
    return mods + ([act] if act is not None else [])


def build_model(spec: NetworkSpec, seed: int | None = None, init: str | None = None) -> nn.Sequential:
    """Build the torch model of ``spec``; weights use He-uniform init (DRTP paper) unless ``init='torch'``.

    Module names in the Sequential are the layer names of the description, so ``model.fc1`` is layer ``fc1``.
    """
    if seed is not None:
        torch.manual_seed(seed)
    init = init or spec.train.get("init", "he_uniform")
    model = nn.Sequential()
    for layer in spec.layers:
        mods = _layer_modules(layer)
        if len(mods) == 1:
            model.add_module(layer.name, mods[0])
        else:  # trainable layer with its fused activation: name the layer itself, then its activation
            model.add_module(layer.name, mods[0])
            model.add_module(f"{layer.name}_act", mods[1])
    if init == "he_uniform":
        for layer in spec.trainable_layers:
            mod = getattr(model, layer.name)
            he_uniform_(mod.weight)
            if mod.bias is not None:
                nn.init.zeros_(mod.bias)
        for layer in spec.layers:  # the convs of residual stages too (ResNets: He init)
            if layer.type == "residual":
                for mod in getattr(model, layer.name).modules():
                    if isinstance(mod, nn.Conv2d):
                        he_uniform_(mod.weight)
    elif init != "torch":
        from ..errors import ConfigError

        raise ConfigError(f"unknown init {init!r}; use 'he_uniform' or 'torch'")
    zero = spec.train.get("zero_init", [])
    if zero:
        from ..errors import ConfigError
        from ..network import RULES

        if not isinstance(zero, list) or any(r not in RULES for r in zero):
            raise ConfigError(f"{spec.source}: train.zero_init must be a list of rules ({', '.join(RULES)}), "
                              f"got {zero!r}")
        # the DRTP paper's synthetic tasks: fully connected layers learning with a feedback-alignment rule start
        # from zero weights (its code's fc_zero_init); the bias is zero anyway
        for layer in spec.trainable_layers:
            if layer.type == "linear" and spec.layer_rule(layer) in zero:
                nn.init.zeros_(getattr(model, layer.name).weight)
    return model
