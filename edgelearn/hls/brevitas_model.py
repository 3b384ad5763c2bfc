"""Brevitas quantization-aware training of the MLP configs (behind a conv front end, if any) with fixed-point
(power-of-two scale) quantizers that are exactly the engine's formats, and the exchange of weights between a
Brevitas model and a :class:`~edgelearn.fixed.engine.FixedEngine`.

Quantizer <-> format (``fixed<W,I>`` has ``F = W - I`` fractional bits, raw range ``[-2^(W-1), 2^(W-1)-1]``):

* weights, biases, signed activations: a signed, non-narrow ``W``-bit integer quantizer with a *constant*
  power-of-two scale ``2^-F`` (brevitas threshold ``2^(I-1)`` over ``2^(W-1)`` integer steps);
* unsigned activations / inputs (``ufixed<W,I>``): the unsigned ``W``-bit quantizer with scale ``2^-F``.

So ``quant_weight().int()`` *is* the engine's raw weight, and a network trained here runs unchanged in the engine, in
the hls4ml project and in the learning kernel.  Brevitas rounds half to even while training (``ROUND``); the
deployed formats round as declared (the hls4ml export sets every type to the engine's format, modes included).

Layer mapping (one trainable layer of the engine = one ``QuantLinear``):

==========  =======================================================================================
``tanh``    ``QuantTanh``       (float tanh, then the activation format; deployed: the engine's table)
``sigmoid`` ``QuantSigmoid``    (idem)
``relu``    ``QuantReLU``
``hardtanh`` ``nn.Hardtanh`` while training + ``QuantIdentity`` (exported as the quantizer only, which *is*
            hard-tanh when the activation format lies inside [-1, 1] and saturates; checked)
``none``    ``QuantIdentity`` (hidden layers); the output layer returns the logits ``z``
==========  =======================================================================================

A conv front end (docs/arithmetic.md §15) becomes ``QuantConv2d`` (the same quantizers, the activations above),
``nn.MaxPool2d``, and ``nn.AvgPool2d`` followed by a ``QuantIdentity`` of the pool's format (the rounding of the
mean); its kernels are the engine's (``load_engine_weights``) and stay frozen under QAT, as in the engine.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ConfigError, DataError, FormatError
from ..fixed.formats import FixedFormat
from .toolchain import require

__all__ = ["check_exportable", "build_qat_model", "load_engine_weights", "engine_from_model", "qat_train",
           "hardtanh_exportable"]

SUPPORTED_ACTS = ("none", "tanh", "sigmoid", "relu", "hardtanh")


def hardtanh_exportable(fmt: FixedFormat) -> bool:
    """hard-tanh followed by an assignment to ``fmt`` equals the assignment alone (what QONNX / hls4ml see) when
    the format's range lies inside [-1, 1] and it saturates."""
    return fmt.overflow in ("SAT", "SAT_SYM") and fmt.max_value <= 1.0 and fmt.min_value >= -1.0


def check_exportable(eng) -> None:
    """Raise a one-line :class:`FormatError` / :class:`ConfigError` when the engine's network cannot go through
    Brevitas -> QONNX -> hls4ml bit-exactly."""
    spec = eng.spec
    if not spec.is_mlp() and eng.front is None:
        kinds = sorted({layer.type for layer in spec.layers if layer.type not in ("linear", "flatten")})
        raise ConfigError(f"{spec.name}: only MLPs (flatten + linear), optionally behind a conv front end, are "
                          f"exported to hls4ml; this network has {', '.join(kinds)} layers")
    if eng.front is not None:
        _check_front(eng)
    L = len(eng.precision.layers)
    for k, lp in enumerate(eng.precision.layers):
        act = eng.acts[k]
        where = f"layer {lp.name}"
        if k < L - 1:
            _check_act(where, act, lp.act)
        _check_dot(where, lp)


def _check_act(where: str, act: str, fmt: FixedFormat) -> None:
    if act not in SUPPORTED_ACTS:
        raise FormatError(f"{where}: activation {act!r} cannot be exported to hls4ml ({', '.join(SUPPORTED_ACTS)})")
    if act == "hardtanh" and not hardtanh_exportable(fmt):
        raise FormatError(f"{where}: hardtanh with activation format {fmt} cannot be exported bit-exactly "
                          f"(QONNX/hls4ml have no clip: the format must lie inside [-1, 1] and saturate, e.g. "
                          f"fixed<{fmt.width},1,{fmt.rounding},SAT>)")


def _check_dot(where: str, lp) -> None:
    """A dense or conv layer's products and sums as hls4ml computes them (``lp``: input, weight, bias, accum)."""
    fp = lp.weight.frac + lp.input.frac
    if lp.accum.frac < fp and lp.accum.rounding not in ("TRN", "RND"):
        raise FormatError(f"{where}: accumulator {lp.accum} drops product bits with rounding {lp.accum.rounding}; "
                          f"hls4ml rounds each product before the sum, which equals the engine's sequential "
                          f"accumulation only for TRN or RND (or F_acc >= {fp})")
    pmax = _max_abs(lp.weight) * _max_abs(lp.input)
    s = fp - lp.accum.frac
    pconv = pmax << -s if s <= 0 else (pmax >> s) + 1
    if pconv > lp.accum.max_raw:
        raise FormatError(f"{where}: one product weight x input ({lp.weight} x {lp.input}) does not fit the "
                          f"accumulator {lp.accum}; hls4ml stores products in the accumulator type")
    for t in ("weight", "bias", "input"):
        f = getattr(lp, t)
        if f.width > 32:
            raise FormatError(f"{where}: {t} format {f} is wider than 32 bits")
    if lp.accum.width > 64:
        raise FormatError(f"{where}: accumulator {lp.accum} wider than 64 bits")


def order_free(lp) -> bool:
    """True when a dense layer's accumulator can neither round nor overflow: any summation order gives the same
    bits (hls4ml's Resource strategy, or inputs hls4ml reads in another order)."""
    fp = lp.weight.frac + lp.input.frac
    fa = lp.accum.frac
    if fa < fp or fa < lp.bias.frac:
        return False
    pmax = _max_abs(lp.weight) * _max_abs(lp.input)
    total = lp.n_in * (pmax << (fa - fp)) + (_max_abs(lp.bias) << (fa - lp.bias.frac))
    return total <= lp.accum.max_raw


def _check_front(eng) -> None:
    """The conv front end through QONNX -> hls4ml's streaming layers (io_stream), exactly (docs/hls.md "hls4ml
    inference of conv networks")."""
    for j, fp in enumerate(eng.precision.front):
        where = f"layer {fp.name}"
        c_in = fp.in_shape[0]
        if fp.type == "conv2d":
            _check_act(where, fp.act_name, fp.act)
            _check_dot(where, fp)
            if not eng.front.exact[j] and c_in > 1:
                raise FormatError(f"{where}: accumulator {fp.accum} can round or overflow, and hls4ml sums a patch "
                                  f"channels-last (ky, kx, c), not in the engine's order (c, ky, kx); use the "
                                  f"automatic accumulator (accum: auto)")
            continue
        if fp.stride != fp.kernel:
            raise ConfigError(f"{where}: {fp.type} with kernel {fp.kernel} and stride {fp.stride}; hls4ml's "
                              f"streaming pool (io_stream) takes only windows that do not overlap (stride = kernel)")
        if fp.type == "avgpool" and fp.kernel & (fp.kernel - 1):
            raise FormatError(f"{where}: average pool of {fp.kernel}x{fp.kernel}; hls4ml divides the window sum by "
                              f"{fp.kernel * fp.kernel} with truncation toward zero, which equals the engine's "
                              f"rounded mean only for power-of-two windows (2x2, 4x4, ...)")
    first = eng.precision.layers[0]
    if eng.precision.front[-1].out_shape[0] > 1 and not order_free(first):
        raise FormatError(f"layer {first.name}: accumulator {first.accum} can round or overflow, and hls4ml reads the "
                          f"flattened features channels-last, not in the engine's order (C, H, W); use the automatic "
                          f"accumulator (accum: auto)")


def _max_abs(f: FixedFormat) -> int:
    return (1 << (f.width - 1)) if f.signed else (1 << f.width) - 1


# ----------------------------------------------------------------------------------------------------------------
# quantizers


def _quantizers():
    require("brevitas")
    from brevitas.inject.enum import RestrictValueType, ScalingImplType
    from brevitas.quant.fixed_point import (Int8ActPerTensorFixedPoint, Int8BiasPerTensorFixedPointInternalScaling,
                                            Int8WeightPerTensorFixedPoint, Uint8ActPerTensorFixedPoint)

    common = dict(narrow_range=False, scaling_impl_type=ScalingImplType.CONST,
                  restrict_scaling_type=RestrictValueType.POWER_OF_TWO)

    def weight(f: FixedFormat):
        _signed_only(f, "weight")
        return Int8WeightPerTensorFixedPoint.let(bit_width=f.width, scaling_init=2.0 ** (f.integer - 1), **common)

    def bias(f: FixedFormat):
        _signed_only(f, "bias")
        return Int8BiasPerTensorFixedPointInternalScaling.let(bit_width=f.width, scaling_init=2.0 ** (f.integer - 1),
                                                               **common)

    def act(f: FixedFormat):
        if f.signed:
            return Int8ActPerTensorFixedPoint.let(bit_width=f.width, scaling_init=2.0 ** (f.integer - 1), **common)
        return Uint8ActPerTensorFixedPoint.let(bit_width=f.width, scaling_init=2.0 ** f.integer, **common)

    return weight, bias, act


def _signed_only(f: FixedFormat, what: str) -> None:
    if not f.signed:
        raise FormatError(f"{what} format {f} is unsigned; the Brevitas/QONNX export supports signed {what}s only")


# ----------------------------------------------------------------------------------------------------------------
# the model


def build_qat_model(eng_or_spec, precision=None):
    """A Brevitas MLP, behind its conv front end if the network has one, whose quantizers are the engine's formats
    (``eng_or_spec``: a FixedEngine, or a NetworkSpec plus its resolved ``precision``).  Its forward takes
    ``(N, n_in)`` (or images, flattened; reshaped to the input shape for a front end) and returns the output
    layer's pre-activations ``z``."""
    require("brevitas", "torch")
    import brevitas.nn as qnn
    import torch
    from torch import nn

    if precision is None:
        eng = eng_or_spec
        spec, precision, acts = eng.spec, eng.precision, list(eng.acts)
    else:
        spec = eng_or_spec
        acts = [layer.params.get("act", "none") for layer in spec.trainable_layers]
    front = list(getattr(precision, "front", None) or [])
    if not spec.is_mlp() and not front:
        raise ConfigError(f"{spec.name}: the Brevitas QAT model is built for MLPs (flatten + linear layers), "
                          f"optionally behind a conv front end")
    wq, bq, aq = _quantizers()
    L = len(precision.layers)

    class HardTanhQuant(nn.Module):
        """nn.Hardtanh while training, then the activation quantizer; exported as the quantizer alone."""

        def __init__(self, fmt):
            super().__init__()
            self.clip = nn.Hardtanh()
            self.quant = qnn.QuantIdentity(act_quant=aq(fmt), return_quant_tensor=True)

        def forward(self, x):
            if self.training:
                x = self.clip(x)
            return self.quant(x)

    def act_module(act, fmt, name):
        if act == "tanh":
            return qnn.QuantTanh(act_quant=aq(fmt), return_quant_tensor=True)
        if act == "sigmoid":
            return qnn.QuantSigmoid(act_quant=aq(fmt), return_quant_tensor=True)
        if act == "relu":
            return qnn.QuantReLU(act_quant=aq(fmt), return_quant_tensor=True)
        if act == "hardtanh":
            return HardTanhQuant(fmt)
        if act == "none":
            return qnn.QuantIdentity(act_quant=aq(fmt), return_quant_tensor=True)
        raise FormatError(f"layer {name}: activation {act!r} has no Brevitas/QONNX export "
                          f"({', '.join(SUPPORTED_ACTS)})")

    def front_module(fp):
        if fp.type == "conv2d":
            c_in, c_out = fp.in_shape[0], fp.out_shape[0]
            conv = qnn.QuantConv2d(c_in, c_out, fp.kernel, stride=fp.stride, padding=fp.padding, bias=True,
                                   weight_quant=wq(fp.weight), bias_quant=bq(fp.bias), return_quant_tensor=False)
            return nn.Sequential(conv, act_module(fp.act_name, fp.act, fp.name))
        if fp.type == "maxpool":
            return nn.MaxPool2d(fp.kernel, fp.stride)
        # the mean rounded to the pool's format: the quantizer after the pool
        return nn.Sequential(nn.AvgPool2d(fp.kernel, fp.stride),
                             qnn.QuantIdentity(act_quant=aq(fp.act), return_quant_tensor=True))

    class BrevitasMLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.input_shape = tuple(front[0].in_shape) if front else None
            self.inp = qnn.QuantIdentity(act_quant=aq(front[0].input if front else precision.layers[0].input),
                                         return_quant_tensor=True)
            self.front = nn.ModuleList(front_module(fp) for fp in front)
            self.convs = [m[0] for m, fp in zip(self.front, front) if fp.type == "conv2d"]
            self.fcs = nn.ModuleList()
            self.acts = nn.ModuleList()
            self.names = []
            for k, lp in enumerate(precision.layers):
                last = k == L - 1
                self.names.append(lp.name)
                self.fcs.append(qnn.QuantLinear(lp.n_in, lp.n_out, bias=True, weight_quant=wq(lp.weight),
                                                bias_quant=bq(lp.bias), return_quant_tensor=False))
                if last:
                    self.acts.append(nn.Identity())
                    continue
                self.acts.append(act_module(acts[k], lp.act, lp.name))

        def forward(self, x):
            if self.input_shape is None:
                x = self.inp(torch.flatten(x, 1))
            else:
                if tuple(x.shape[1:]) != self.input_shape:  # no Reshape in the exported graph for images
                    x = x.reshape(-1, *self.input_shape)
                x = self.inp(x)
                for m in self.front:
                    x = m(x)
                x = torch.flatten(x, 1)
            for fc, act in zip(self.fcs, self.acts):
                x = act(fc(x))
            return x

    return BrevitasMLP()


def load_engine_weights(model, eng) -> None:
    """Copy the engine's raw weights into the model (values raw * 2^-F, exact in float32 for W <= 24), the front
    end's kernels too."""
    import torch

    convs = [(fp, j) for j, fp in enumerate(eng.precision.front or []) if fp.type == "conv2d"]
    for conv, (fp, j) in zip(getattr(model, "convs", []), convs):
        for f in (fp.weight, fp.bias):
            if f.width > 24:
                raise FormatError(f"layer {fp.name}: {f} is wider than 24 bits; float32 Brevitas weights cannot "
                                  f"hold it exactly")
        with torch.no_grad():
            conv.weight.copy_(torch.tensor(fp.weight.to_float(eng.front.W[j]), dtype=torch.float32))
            conv.bias.copy_(torch.tensor(fp.bias.to_float(eng.front.b[j]), dtype=torch.float32))
            got_w = conv.quant_weight().int().detach().cpu().numpy().astype(np.int64)
            got_b = conv.quant_bias().int().detach().cpu().numpy().astype(np.int64)
        if not (np.array_equal(got_w, eng.front.W[j]) and np.array_equal(got_b, eng.front.b[j])):
            raise FormatError(f"layer {fp.name}: Brevitas does not reproduce the engine's kernels exactly")

    for k, (fc, lp, w) in enumerate(zip(model.fcs, eng.precision.layers, eng.weights())):
        for f in (lp.weight, lp.bias):
            if f.width > 24:
                raise FormatError(f"layer {lp.name}: {f} is wider than 24 bits; float32 Brevitas weights cannot hold "
                                  f"it exactly")
        with torch.no_grad():
            fc.weight.copy_(torch.tensor(lp.weight.to_float(w["W"]).T, dtype=torch.float32))
            fc.bias.copy_(torch.tensor(lp.bias.to_float(w["b"]), dtype=torch.float32))
    got = model_raw_weights(model)
    for k, (g, w) in enumerate(zip(got, eng.weights())):
        if not (np.array_equal(g["W"], w["W"]) and np.array_equal(g["b"], w["b"])):
            raise FormatError(f"layer {eng.layer_names[k]}: Brevitas does not reproduce the engine's weights exactly")


def model_raw_weights(model) -> list[dict[str, np.ndarray]]:
    """The model's quantized weights as raw integers, engine layout ``W (n_in, n_out)``, ``b (n_out,)``."""
    import torch

    out = []
    with torch.no_grad():
        for fc in model.fcs:
            W = fc.quant_weight().int().detach().cpu().numpy().astype(np.int64).T.copy()
            b = fc.quant_bias()
            b = b.int().detach().cpu().numpy().astype(np.int64) if b is not None else np.zeros(W.shape[1], np.int64)
            out.append({"W": W, "b": b})
    return out


def engine_from_model(model, eng) -> None:
    """Write the model's quantized weights into ``eng`` (same network and formats)."""
    for k, w in enumerate(model_raw_weights(model)):
        eng.set_weights(k, w["W"], w["b"])


def qat_train(model, eng, x, y, *, epochs: int = 3, lr: float = 1e-3, batch_size: int = 32, seed: int = 0,
              progress=None) -> list[dict[str, Any]]:
    """Quantization-aware training with backpropagation (Adam) on float inputs ``x`` (N, ...) and labels ``y``.

    Loss as the engine's network: ``bce`` -> BCE with logits on one-hot targets, ``mse`` -> MSE of the output
    activation against one-hot targets.  The trained quantized weights are then ``engine_from_model(model, eng)``."""
    require("torch")
    import torch
    import torch.nn.functional as F

    if epochs < 0:
        raise ConfigError(f"QAT epochs must be >= 0, got {epochs}")
    X = torch.tensor(np.asarray(x, dtype=np.float32).reshape(len(x), -1))
    Y = torch.tensor(np.asarray(y, dtype=np.int64))
    C = eng.num_classes
    if X.shape[1] != eng.n_inputs:
        raise DataError(f"QAT data has {X.shape[1]} features, the network expects {eng.n_inputs}")
    if len(Y) and (int(Y.min()) < 0 or int(Y.max()) >= C):
        raise DataError(f"labels must be in 0..{C - 1}")
    out_act = eng.acts[-1]
    gen = torch.Generator().manual_seed(int(seed))
    # the front end's kernels stay frozen, as in the engine (rule shallow): only the linear layers train
    opt = torch.optim.Adam([p for n, p in model.named_parameters() if not n.startswith("front.")], lr=lr)
    hist = []
    model.train()
    for ep in range(epochs):
        perm = torch.randperm(len(X), generator=gen)
        tot, correct = 0.0, 0
        for i in range(0, len(X), batch_size):
            idx = perm[i:i + batch_size]
            z = model(X[idx])
            if hasattr(z, "value"):
                z = z.value
            t = F.one_hot(Y[idx], C).float()
            if eng.spec.loss == "bce":
                loss = F.binary_cross_entropy_with_logits(z, t)
            else:
                yv = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "relu": torch.relu,
                      "hardtanh": lambda v: torch.clamp(v, -1, 1)}.get(out_act, lambda v: v)(z)
                loss = F.mse_loss(yv, t)
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot += float(loss.detach()) * len(idx)
            correct += int((z.argmax(1) == Y[idx]).sum())
            if progress is not None:
                progress(len(idx))
        hist.append({"epoch": ep + 1, "loss": tot / max(len(X), 1), "train_accuracy": correct / max(len(X), 1)})
    model.eval()
    return hist
