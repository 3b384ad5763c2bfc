"""hls4ml inference project of an engine network: Brevitas model -> QONNX -> cleaned graph -> hls4ml, configured so
that hls4ml's C-simulation is bit-exact with the engine's forward pass (:meth:`FixedEngine.output_raw`).

What makes it exact (every point is checked or enforced here; docs/hls.md has the full story):

* **types** -- after conversion every hls4ml type is set to the engine's format, modes included: the input
  (``input_t``; hls4ml's float -> ``input_t`` conversion then quantizes like ``FixedEngine.quantize_inputs``),
  weights, biases, the accumulator ``accum_t`` (products are exact, or rounded TRN/RND, which commutes with the sum),
  activations.  QONNX only knows the quantizers' bit widths and scales (rounding ``ROUND`` = half-even, clamp =
  ``SAT``), so its types are overridden with the declared modes.
* **tanh / sigmoid** -- hls4ml's own ``nnet::tanh``/``sigmoid`` tables differ from the engine's (1024 entries on
  [-4, 4) / [-8, 8), left bin edges computed in ``float``, index ``(int)(x * N / 8)`` truncated toward zero).  The
  activation node is replaced by hls4ml's ``UnaryLUT`` layer (the table HGQ uses) whose table is the engine's table
  re-indexed, and the Dense layer before it outputs ``ap_fixed<table_bits, range_bits+1, AP_TRN, AP_SAT>``:
  that cast *is* the engine's index ``clamp(floor(z / bin), -N/2, N/2-1)``, and ``UnaryLUT`` indexes its table with
  those raw bits.  Exact for any table and format; synthesizable (a ROM of ``2^table_bits`` words).
* **relu** -- hls4ml's ``relu`` (``x > 0 ? x : 0`` then the result type) is the engine's definition.
* **hardtanh** -- no QONNX/hls4ml clip op; exported as the activation quantizer alone, exact when the activation
  format lies inside [-1, 1] and saturates (:func:`~edgelearn.hls.brevitas_model.hardtanh_exportable`).
* **output** -- the model outputs the output layer's pre-activation ``z`` in its accumulator format, i.e. the
  engine's ``output_raw``; the class is its argmax (the sigmoid of a ``bce`` network does not change it).
* **strategy** -- ``Latency`` accumulates bias first, then inputs in index order, like the engine; ``Resource``
  does so only at a reuse factor that is a multiple of n_in, so a layer whose accumulator can overflow or round
  gets only such a factor (:func:`plan_dense`).

A conv front end (docs/arithmetic.md §15) goes the same way, as hls4ml's streaming layers (``io_stream``): each
conv is a ``Conv2D`` (the engine's weight / bias / accumulator types, Latency or, past the unroll limit, Resource
with a reuse factor that keeps the engine's summation order where it matters, :func:`plan_conv`; its activation as
a dense layer's), a max pool a ``Pooling2D`` in the input's type, an average pool a ``Pooling2D`` whose sum type holds
the window sum and the exact quotient of a power-of-two window, so that the cast to the pool's format is the
engine's rounded mean.  QONNX's channels-last conversion knows MaxPool but not AveragePool: an average pool goes
through it as a MaxPool (same shapes, no padding) and gets its op type back (:func:`clean_qonnx`).  hls4ml reads
the image and the flattened features channels-last, so a sum that depends on its order (a narrow accumulator) is
refused where the orders differ (:func:`~edgelearn.hls.brevitas_model.check_exportable`).

What makes it deployable: each dense and conv layer's strategy and reuse factor are chosen so that it unrolls at
most :data:`MAX_UNROLLED_MULTS` multiplications (:func:`plan_dense`, :func:`plan_conv`), a reuse factor hls4ml
changes is reported with the value it writes, and hls4ml's own serialization of the configured model
(``hls4ml_model.fml``) is written beside the project: ``hls4ml_config.yml`` does not hold the types set here, so
only the serialization rebuilds the firmware.
"""
from __future__ import annotations

import contextlib
import io
import json
import re
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, FormatError
from ..fixed.formats import FixedFormat
from . import DEFAULT_PART, MAX_UNROLLED_MULTS
from .brevitas_model import build_qat_model, check_exportable, load_engine_weights, order_free
from .toolchain import HLSBuildError, require

BACKENDS = {"vitis": "Vitis", "vivado": "Vivado"}
STRATEGIES = ("Latency", "Resource")
#: hls4ml io type of an MLP (every layer an array) and of a network with a conv front end (streams, line buffers)
IO_MLP, IO_CONV = "io_parallel", "io_stream"

#: hls4ml's own serialization of the configured model, written beside the project (``OUT/``)
SERIALIZED_MODEL = "hls4ml_model.fml"

#: first lines of the written hls4ml_config.yml
CONFIG_NOTE = (f"# edgelearn: this configuration alone does NOT rebuild this firmware (the fixed-point types are set "
               f"after conversion);\n# rebuild it exactly from ../{SERIALIZED_MODEL} with "
               f"hls4ml.utils.serialization.deserialize_model (docs/hls.md)\n")

__all__ = ["BACKENDS", "MAX_UNROLLED_MULTS", "SERIALIZED_MODEL", "DensePlan", "plan_dense", "unrolled_mults",
           "export_qonnx", "clean_qonnx", "Hls4mlProject", "convert_engine", "load_serialized"]


#: (category, message start) of the third-party warnings an export always triggers and the user cannot act on:
#: Brevitas on import of its export module (an optional CUDA kernel package; its own use of brevitas.fx), qonnx's
#: GemmToMatMul on the opset torch exports (it handles the Gemm nodes Brevitas writes; the bit-exact check would
#: catch a wrong graph)
KNOWN_WARNINGS = (
    (UserWarning, "fast_hadamard_transform package not found"),
    (DeprecationWarning, "brevitas.fx is deprecated"),
    (UserWarning, "The GemmToMatMul transformation only offers explicit support for version 9"),
)


def _quiet():
    """hls4ml and qonnx print a lot; keep the CLI readable (errors still raise)."""
    return contextlib.redirect_stdout(io.StringIO())


@contextlib.contextmanager
def _known_warnings_ignored():
    """Drop :data:`KNOWN_WARNINGS` inside the block only; any other warning still shows."""
    with warnings.catch_warnings():
        for category, message in KNOWN_WARNINGS:
            warnings.filterwarnings("ignore", message=re.escape(message), category=category)
        yield


def export_qonnx(model, n_in, path) -> Path:
    """Export the Brevitas model to QONNX (TorchScript exporter, ``dynamo=False``); ``n_in``: the number of inputs
    of an MLP, or the input shape (C, H, W) of a conv network."""
    require("brevitas", "onnx")
    import torch

    with _known_warnings_ignored():
        from brevitas.export import export_qonnx as _export

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.eval()
    with warnings.catch_warnings(), _quiet():
        warnings.simplefilter("ignore")
        _export(model, torch.zeros(1, *((n_in,) if isinstance(n_in, int) else tuple(n_in))), export_path=str(path),
                dynamo=False)
    return path


def clean_qonnx(path, channels_last_input: bool = False):
    """qonnx cleanup, channels-last conversion, Gemm -> MatMul (what hls4ml's ONNX front end expects).

    qonnx's channels-last conversion wraps Conv and MaxPool but not AveragePool, and hls4ml parses a pool only in
    channels-last form: an AveragePool goes through the conversion as a MaxPool (the same shapes; the engine's
    pools have no padding) and gets its op type back at the end, when no qonnx pass needs to know it.
    ``channels_last_input``: the graph's input becomes (H, W, C) -- a conv network: no Transpose layer before the
    first conv (hls4ml 1.3.0's stream repacking fails on the Reshape it makes of one); the caller orders the
    image's words so (:func:`to_channels_last`)."""
    require("qonnx")
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.channels_last import ConvertToChannelsLastAndClean
    from qonnx.transformation.gemm_to_matmul import GemmToMatMul
    from qonnx.util.cleanup import cleanup_model

    with _quiet(), _known_warnings_ignored():
        mw = cleanup_model(ModelWrapper(str(path)))
        # the pools in graph order (the networks are chains; the passes rename nodes and tensors, keep the order)
        kinds = [n.op_type for n in mw.graph.node if n.op_type in ("MaxPool", "AveragePool")]
        for node in mw.graph.node:
            if node.op_type == "AveragePool":
                node.op_type = "MaxPool"
        mw = mw.transform(ConvertToChannelsLastAndClean(make_input_channels_last=channels_last_input))
        mw = mw.transform(GemmToMatMul())
        mw = cleanup_model(mw)
        pools = [n for n in mw.graph.node if n.op_type == "MaxPool"]
        if len(pools) != len(kinds):
            raise HLSBuildError(f"the QONNX channels-last conversion made {len(pools)} pools out of {len(kinds)}")
        for node, kind in zip(pools, kinds):
            node.op_type = kind
    return mw


def _precision(f: FixedFormat, q: str | None = None, o: str | None = None):
    from hls4ml.backends.fpga.fpga_types import APTypeConverter
    from hls4ml.model.types import FixedPrecisionType

    rq = q or ("TRN" if f.rounding == "STOCH" else f.rounding)
    return APTypeConverter().convert(FixedPrecisionType(f.width, f.integer, f.signed, rounding_mode=rq,
                                                        saturation_mode=o or f.overflow))


def _lut_table(eng, k: int) -> np.ndarray:
    """The engine's table of layer k (``("front", j)``: front-end conv j) re-indexed by the raw bits of the index
    type (what UnaryLUT reads)."""
    tb = eng.precision.table_bits
    n = 1 << tb
    if isinstance(k, tuple):
        table, fmt = eng.front.tables[k[1]], eng.precision.front[k[1]].act
    else:
        table, fmt = eng.tables[k], eng.precision.layers[k].act
    table = np.asarray(table, dtype=np.int64)
    u = np.arange(n)
    signed_idx = np.where(u < n // 2, u, u - n)
    return fmt.to_float(table[signed_idx + n // 2])


def to_channels_last(eng, X) -> np.ndarray:
    """Samples ``X`` (N, C*H*W), the engine's (C, H, W) order, in the order of the hls4ml project's input: (H, W, C)
    for a conv network (its graph input is channels-last), unchanged for an MLP."""
    X = np.asarray(X)
    if eng.front is None:
        return X
    c, h, w = eng.precision.front[0].in_shape
    return np.ascontiguousarray(X.reshape(-1, c, h, w).transpose(0, 2, 3, 1).reshape(len(X), -1))


def input_format(eng) -> FixedFormat:
    """The network input's format (the first front-end layer's, else the first linear layer's)."""
    return eng.precision.front[0].input if eng.front is not None else eng.precision.layers[0].input


class Hls4mlProject:
    """A converted hls4ml model of an engine network, written to ``path`` (hls4ml's own layout)."""

    def __init__(self, hls_model, eng, path: Path, backend: str, qonnx_path: Path | None, io_type: str = IO_MLP):
        self.model = hls_model
        self.io_type = io_type
        self.eng = eng
        self.path = Path(path)
        self.backend = backend
        self.qonnx_path = qonnx_path
        self.compiled = False
        self.plans: list[DensePlan] = []

    @property
    def warnings(self) -> list[str]:
        """One line per dense layer whose reuse factor hls4ml changed or that unrolls too many multiplications."""
        return [n for p in self.plans for n in p.notes]

    def layers(self) -> list[dict[str, Any]]:
        return [{k: v for k, v in asdict(p).items() if k != "notes"} for p in self.plans]

    @property
    def out_format(self) -> FixedFormat:
        return self.eng.precision.layers[-1].accum

    def write(self) -> None:
        with _quiet():
            self.model.write()
        self._mark_config()

    def _mark_config(self) -> None:
        """The types set after conversion are not in hls4ml_config.yml: say so in it, where a user would look."""
        cfg = self.path / "hls4ml_config.yml"
        if cfg.is_file() and not cfg.read_text().startswith(CONFIG_NOTE):
            cfg.write_text(CONFIG_NOTE + cfg.read_text())

    def serialize(self, path) -> Path:
        """hls4ml's own serialization of the configured model (``.fml``): rebuilds the firmware exactly.

        hls4ml 1.3.0's ``serialize_model`` looks for the testbench files one level too high in its config and leaves
        them out, while ``deserialize_model`` requires them; they are added here under the names it reads."""
        import tarfile
        import tempfile

        from hls4ml.utils.serialization import serialize_model

        path = Path(path)
        cfg = self.model.config.config
        with tempfile.TemporaryDirectory(prefix="edgelearn_fml_", dir=path.parent) as tmp:
            raw = Path(tmp) / "raw.fml"
            with _quiet():
                serialize_model(self.model, raw)
            part = Path(tmp) / path.name
            with tarfile.open(raw, "r:gz") as src, tarfile.open(part, "w:gz") as dst:
                names = set()
                for member in src.getmembers():
                    names.add(member.name.strip("/"))
                    dst.addfile(member, src.extractfile(member) if member.isfile() else None)
                for key, stem in (("InputData", "input_data_tb"), ("OutputPredictions", "output_data_tb")):
                    if cfg.get(key) is not None and f"{stem}{Path(cfg[key]).suffix}" not in names:
                        dst.add(cfg[key], arcname=f"{stem}{Path(cfg[key]).suffix}")
            part.replace(path)
        return path

    def compile(self) -> None:
        """hls4ml's C-simulation library (g++ with the bundled ap_types headers)."""
        buf = io.StringIO()
        try:
            with contextlib.redirect_stdout(buf):
                self.model.compile()
        except Exception as exc:  # hls4ml raises bare Exception on a failed build
            raise HLSBuildError(f"hls4ml compile failed: {exc}\n{buf.getvalue()[-3000:]}") from None
        self._mark_config()  # compile() rewrote the project
        self.compiled = True

    def predict_float(self, x) -> np.ndarray:
        if not self.compiled:
            self.compile()
        X = np.ascontiguousarray(np.asarray(x, dtype=np.float64).reshape(len(x), -1))
        with _quiet():
            y = self.model.predict(X)
        return np.asarray(y, dtype=np.float64).reshape(len(X), -1)

    def predict_raw(self, X_raw) -> np.ndarray:
        """C-simulation on raw inputs (the input format's integers): raw output pre-activations (N, C)."""
        fin = input_format(self.eng)
        fo = self.out_format
        if fo.width > 53:
            raise FormatError(f"output accumulator {fo} is wider than 53 bits: hls4ml's predict() returns doubles, "
                              f"which cannot hold it exactly")
        X_raw = np.asarray(X_raw, dtype=np.int64).reshape(-1, self.eng.n_inputs)
        y = self.predict_float(fin.to_float(to_channels_last(self.eng, X_raw)))
        raw = np.ldexp(y, fo.frac)
        out = np.rint(raw).astype(np.int64)
        if not np.array_equal(out.astype(np.float64), raw):
            raise HLSBuildError("hls4ml returned values that are not on the output format's grid")
        return out

    def files(self) -> list[str]:
        return sorted(str(p.relative_to(self.path)) for p in self.path.rglob("*")
                      if p.is_file() and "__pycache__" not in p.parts and not p.name.endswith((".so", ".o")))


def _configure(hm, eng, plans: list[DensePlan]) -> dict[str, Any]:
    """Set every type of the converted graph to the engine's formats (see the module docstring)."""
    prec = eng.precision
    L = len(prec.layers)
    layers = list(hm.get_layers())
    dense = [layer for layer in layers if layer.class_name == "Dense"]
    if len(dense) != L:
        raise HLSBuildError(f"hls4ml made {len(dense)} Dense layers out of {L} linear layers")
    report: dict[str, Any] = {"layers": []}
    inp = hm.get_input_variables()[0]
    inp.type.precision = _precision(input_format(eng))
    idx_fmt = FixedFormat(prec.table_bits, prec.range_bits + 1, True, "TRN", "SAT")
    cur = prec.layers[0].input  # the format the next pass-through layer must carry
    k = -1
    seq: dict[int, list] = {}
    pre = []
    for layer in layers:
        if layer.class_name == "Dense":
            k += 1
            seq[k] = []
            continue
        if k >= 0:
            seq[k].append(layer)
        elif eng.front is not None:
            pre.append(layer)
        elif layer.class_name == "Activation" and layer.get_attr("activation") == "linear":
            layer.get_output_variable().type.precision = _precision(cur)
        elif layer.class_name not in ("Input", "InputLayer", "Reshape", "Flatten"):
            raise HLSBuildError(f"unexpected hls4ml layer {layer.name} ({layer.class_name}) before the first Dense")
    if eng.front is not None:
        report["front"] = _configure_front(pre, eng, idx_fmt, plans[:len(plans) - L])
    for k, d in enumerate(dense):
        lp = prec.layers[k]
        act = eng.acts[k] if k < L - 1 else "output"
        d.set_attr("strategy", plans[len(plans) - L + k].strategy.lower())
        report["layers"].append(_configure_dot(d, lp, act, seq.get(k, []), idx_fmt))
    return report


def _configure_dot(d, lp, act: str, after: list, idx_fmt: FixedFormat) -> dict[str, Any]:
    """A Dense or Conv2D layer ``d`` and the activation layers ``after`` it, in the formats of ``lp`` (input,
    weight, bias, accum, act); ``act``: the engine's activation, or "output" (the logits, in the accumulator
    format)."""
    d.get_weights("weight").update_precision(_precision(lp.weight))
    d.get_weights("bias").update_precision(_precision(lp.bias))
    d.attributes["accum_t"].precision = _precision(lp.accum)
    kinds = [(a.class_name, a.get_attr("activation")) for a in after]
    if act == "output":
        d.get_output_variable().type.precision = _precision(lp.accum)
        for a in after:
            if a.class_name == "Activation" and a.get_attr("activation") == "linear":
                a.get_output_variable().type.precision = _precision(lp.accum)
            else:
                raise HLSBuildError(f"unexpected hls4ml layer {a.name} ({a.class_name}) after the output layer")
    elif act in ("tanh", "sigmoid"):
        lut = [a for a in after if a.class_name == "UnaryLUT"]
        if len(lut) != 1:
            raise HLSBuildError(f"layer {lp.name}: expected one UnaryLUT after the {d.class_name} layer, got {kinds}")
        d.get_output_variable().type.precision = _precision(idx_fmt)
        lut[0].get_attr("table_t").precision = _precision(lp.act)
        lut[0].get_weights("table").update_precision(_precision(lp.act))  # exact decimals in table*.txt
        lut[0].get_output_variable().type.precision = _precision(lp.act)
    elif act == "relu":
        relu = [a for a in after if a.class_name in ("ReLU", "Activation")
                and str(a.get_attr("activation")).lower() == "relu"]
        if len(relu) != 1:
            raise HLSBuildError(f"layer {lp.name}: expected one ReLU after the {d.class_name} layer, got {kinds}")
        d.get_output_variable().type.precision = _precision(lp.accum)
        relu[0].get_output_variable().type.precision = _precision(lp.act)
    else:  # none / hardtanh: the activation quantizer (a linear layer) or the layer's result itself
        d.get_output_variable().type.precision = _precision(lp.accum if after else lp.act)
    for a in after:
        if a.class_name == "Activation" and a.get_attr("activation") == "linear":
            a.get_output_variable().type.precision = _precision(lp.accum if act == "output" else lp.act)
        elif a.class_name not in ("UnaryLUT", "ReLU", "Activation"):
            raise HLSBuildError(f"unexpected hls4ml layer {a.name} ({a.class_name}) in layer {lp.name}")
        elif a.class_name == "Activation" and str(a.get_attr("activation")).lower() not in ("linear", "relu"):
            raise HLSBuildError(f"layer {lp.name}: hls4ml activation {a.get_attr('activation')!r} is not exact")
    return {
        "layer": lp.name, d.class_name.lower(): d.name, "after": [a.name for a in after], "act": act,
        "weight": str(lp.weight), "bias": str(lp.bias), "accum": str(lp.accum),
        "dense_result": str(idx_fmt if act in ("tanh", "sigmoid") else (lp.accum if (after or act == "output")
                                                                       else lp.act)),
        "act_format": str(lp.act) if act != "output" else None}


#: what hls4ml makes of a conv2d (a 1x1 kernel: a PointwiseConv2D)
_CONV_LAYERS = ("Conv2D", "PointwiseConv2D")
#: hls4ml layers of a front end that move or pad words and keep their type
_FRONT_PASS = ("Transpose", "Reshape", "Flatten", "Repack", "ZeroPadding2D")


def pool_sum_format(fp) -> FixedFormat:
    """The sum type of an average pool (a power-of-two window of n = k*k words): the exact window sum, with log2(n)
    more fractional bits so that hls4ml's ``sum / n`` is exact too; the cast of that quotient to the pool's format
    is then the engine's rounded mean (docs/arithmetic.md §15: round_div by 2^s is round_shift)."""
    lg = (fp.kernel * fp.kernel).bit_length() - 1
    f = fp.input
    return FixedFormat(f.width + 2 * lg, f.integer + lg, f.signed, "TRN", "WRAP")


def _configure_front(pre: list, eng, idx_fmt: FixedFormat, plans: list[DensePlan]) -> list[dict[str, Any]]:
    """The hls4ml layers before the first Dense of a network with a conv front end, in the engine's formats: each
    Conv2D as a dense layer with its activation and its strategy of ``plans`` (:func:`plan_conv`), each Pooling2D
    in its input's format (an average pool's sum in :func:`pool_sum_format`), every layer that moves words in the
    format of the words it moves."""
    front = eng.precision.front
    cur = front[0].input
    report = []
    j = c = -1
    i = 0
    while i < len(pre):
        layer = pre[i]
        cn = layer.class_name
        i += 1
        if cn in ("Input", "InputLayer"):
            continue
        if cn in _CONV_LAYERS or cn == "Pooling2D":
            j += 1
            fp = front[j] if j < len(front) else None
            want = ("conv2d" if cn in _CONV_LAYERS
                    else {"Max": "maxpool", "Average": "avgpool"}.get(layer.get_attr("pool_op")))
            if fp is None or fp.type != want:
                raise HLSBuildError(f"hls4ml layer {layer.name} ({cn}) does not match the front end's layer "
                                    f"{fp.name + ' (' + fp.type + ')' if fp else 'list'}")
            if cn in _CONV_LAYERS:
                after = []
                while i < len(pre) and pre[i].class_name in ("Activation", "UnaryLUT", "ReLU"):
                    after.append(pre[i])
                    i += 1
                c += 1
                layer.set_attr("strategy", plans[c].strategy.lower())
                report.append(_configure_dot(layer, fp, fp.act_name, after, idx_fmt))
            else:
                acc = pool_sum_format(fp) if want == "avgpool" else fp.input
                layer.attributes["accum_t"].precision = _precision(acc)
                layer.get_output_variable().type.precision = _precision(fp.act)
                report.append({"layer": fp.name, "pooling2d": layer.name, "pool": want, "sum": str(acc),
                               "act_format": str(fp.act)})
            cur = fp.act
        elif cn == "Activation" and layer.get_attr("activation") == "linear" or cn in _FRONT_PASS:
            layer.get_output_variable().type.precision = _precision(cur)
        else:
            raise HLSBuildError(f"unexpected hls4ml layer {layer.name} ({cn}) in the conv front end")
    if j != len(front) - 1:
        raise HLSBuildError(f"hls4ml made {j + 1} conv / pool layers out of a front end of {len(front)}")
    return report


def _resource_inexact(lp) -> str | None:
    """Why strategy Resource at a reuse factor that is not a multiple of n_in is not bit-exact for layer ``lp``
    (None when it is: :func:`plan_dense`)."""
    if order_free(lp):
        return None
    fp = lp.weight.frac + lp.input.frac
    if lp.accum.frac < fp or lp.accum.frac < lp.bias.frac:
        return f"reorders the accumulation, which rounds (accumulator {lp.accum})"
    return f"reorders the accumulation, which can overflow (accumulator {lp.accum})"


def _check_strategy(strategy: str | None) -> None:
    if strategy is not None and strategy not in STRATEGIES:
        raise ConfigError(f"hls4ml strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")


def unrolled_mults(n_in: int, n_out: int, strategy: str, reuse_factor: int) -> int:
    """Multiplications a dense layer unrolls (see :data:`MAX_UNROLLED_MULTS`)."""
    n = n_in * n_out
    return n if strategy == "Latency" else -(-n // reuse_factor)


@dataclass
class DensePlan:
    """Strategy and reuse factor of one dense layer -- or of a conv layer (``kind`` "conv2d": ``n_in`` the patch
    C_in*k*k, ``n_out`` the kernels, the multiplications per output position) --: what was asked (None: chosen
    here), what is given to hls4ml, and after conversion what hls4ml made of it (the values in ``parameters.h``)."""
    layer: str
    n_in: int
    n_out: int
    requested_strategy: str | None
    requested_reuse_factor: int | None
    strategy: str
    reuse_factor: int
    dense: str | None = None
    unrolled_multiplications: int | None = None
    notes: list[str] = field(default_factory=list)
    kind: str = "dense"


def _resource_reuse_factor(valid: list[int], n_in: int, n_out: int, limit: int, exact: bool) -> int:
    """The smallest reuse factor of ``valid`` (ascending) at which Resource unrolls at most ``limit``
    multiplications and, unless the accumulator is ``exact``, keeps the engine's order (a multiple of n_in;
    n_in*n_out always qualifies)."""
    return next(r for r in valid
                if unrolled_mults(n_in, n_out, "Resource", r) <= limit and (exact or r % n_in == 0))


def plan_conv(eng, backend: str = "Vitis", limit: int = MAX_UNROLLED_MULTS) -> list[DensePlan]:
    """Strategy and reuse factor of the front end's conv layers.  hls4ml's streaming conv runs one dense product
    per output position (``n_in`` = C_in*k*k, ``n_out`` = C_out): Latency (reuse factor 1, all n_in*n_out
    products unrolled, summed after the bias in patch order, the engine's order) while that fits ``limit``, else
    Resource with the smallest reuse factor hls4ml accepts that fits.  Resource's ``ReuseLoop`` adds input
    ``w % n_in`` of output ``w // n_in`` at step ``w % reuse_factor``: with a reuse factor a multiple of n_in each
    output's inputs come in index order after the bias, Latency's order, so a conv whose accumulator can round or
    overflow takes only such a factor; one whose accumulator is exact (any order, the same bits) takes any.
    ``rf = n_in*n_out`` (one product per step) is always both, so a bit-exact plan always exists."""
    plans = []
    for j, fp in enumerate(eng.precision.front or []):
        if fp.type != "conv2d":
            continue
        n_in, n_out = fp.in_shape[0] * fp.kernel * fp.kernel, fp.out_shape[0]
        st, rf = "Latency", 1
        if n_in * n_out > limit:
            exact = bool(eng.front.exact[j])
            st = "Resource"
            rf = _resource_reuse_factor(_valid_reuse_factors(backend, n_in, n_out), n_in, n_out, limit, exact)
        plans.append(DensePlan(fp.name, n_in, n_out, None, None, st, rf, kind="conv2d"))
    return plans


def _valid_reuse_factors(backend: str, n_in: int, n_out: int) -> list[int]:
    """The reuse factors hls4ml's Resource dense accepts for n_in x n_out (hls4ml's own list, sorted)."""
    from hls4ml.backends import get_backend

    return get_backend(backend).get_valid_reuse_factors(n_in, n_out)


def plan_dense(eng, strategy: str | None = None, reuse_factor: int | None = None,
               backend: str = "Vitis", limit: int = MAX_UNROLLED_MULTS) -> list[DensePlan]:
    """Strategy and reuse factor of every dense layer, keeping each under ``limit`` unrolled multiplications when
    they are not given: Latency (reuse 1, the engine's accumulation order: bias, then the inputs in index order)
    while the layer's n_in*n_out fits, else Resource with the smallest reuse factor hls4ml accepts that fits.
    Resource step ``r`` adds input ``w % n_in`` of output ``w // n_in`` for the weights ``w = r (mod reuse
    factor)`` (hls4ml's ``dense_resource_rf_leq_nin`` at reuse factor n_in, ``_rf_gt_nin_rem0`` above): with a
    reuse factor a multiple of n_in every output sums its inputs in index order after the bias, Latency's order,
    so a layer whose accumulator can round or overflow (:func:`_resource_inexact`) takes only such a factor; one
    whose accumulator is exact takes any.  ``n_in*n_out`` is always both, so a bit-exact plan always exists.
    Given values are kept (hls4ml may still change the reuse factor; :func:`convert_engine` reports it), but for
    such a layer on Resource only a factor that keeps the order: an explicit Resource with another one is refused,
    a chosen Resource falls back to Latency with a note."""
    _check_strategy(strategy)
    plans = []
    for lp in eng.precision.layers:
        n, notes = lp.n_in * lp.n_out, []
        why = _resource_inexact(lp)
        st = strategy or ("Latency" if n <= limit else "Resource")
        valid = _valid_reuse_factors(backend, lp.n_in, lp.n_out) if st == "Resource" else []
        rf = reuse_factor
        if rf is None:
            rf = 1
            if st == "Resource":
                rf = _resource_reuse_factor(valid, lp.n_in, lp.n_out, limit, why is None)
        if st == "Resource" and why is not None and not (rf % lp.n_in == 0 and rf in valid):
            # a given reuse factor that hls4ml would keep out of order (or change: it takes the nearest it accepts)
            ok = _short_list([r for r in valid if r % lp.n_in == 0])
            if strategy is not None:
                raise FormatError(f"layer {lp.name}: strategy Resource with reuse factor {rf} {why}; a reuse factor "
                                  f"that is a multiple of its {lp.n_in} inputs keeps the order ({ok}), or leave "
                                  f"--reuse-factor out to have it chosen")
            st = "Latency"
            notes.append(f"layer {lp.name}: kept on Latency although it unrolls {n} multiplications (limit {limit}): "
                         f"Resource with reuse factor {rf} {why}; one of {ok}, or no --reuse-factor, keeps the order")
        plans.append(DensePlan(lp.name, lp.n_in, lp.n_out, strategy, reuse_factor, st, rf, notes=notes))
    return plans


def _record_conversion(plans: list[DensePlan], dense: list, backend: str) -> None:
    """Read back what hls4ml made of each plan (its reuse factor is what ``parameters.h`` gets) and note every
    difference from the request and every layer over :data:`MAX_UNROLLED_MULTS`."""
    for p, d in zip(plans, dense):
        rf = int(d.get_attr("reuse_factor"))
        p.dense = d.name
        if rf != p.reuse_factor and p.kind != "dense":
            # plan_conv takes its factor from hls4ml's own list; another one may break the summation order
            raise HLSBuildError(f"layer {p.layer}: hls4ml changed the conv's reuse factor {p.reuse_factor} to {rf}")
        if rf != p.reuse_factor:
            valid = _valid_reuse_factors(backend, p.n_in, p.n_out)
            asked = "requested" if p.requested_reuse_factor is not None else "chosen"
            p.notes.append(f"layer {p.layer}: reuse factor {p.reuse_factor} {asked}, hls4ml uses {rf}: its "
                           f"{p.strategy} dense of {p.n_in}x{p.n_out} accepts only {len(valid)} reuse factors "
                           f"({_short_list(valid)}) and takes the nearest")
            p.reuse_factor = rf
        p.unrolled_multiplications = unrolled_mults(p.n_in, p.n_out, p.strategy, rf)
        kept_on_latency = p.requested_strategy is None and p.strategy == "Latency"  # plan_dense said why
        if p.unrolled_multiplications > MAX_UNROLLED_MULTS and not kept_on_latency:
            hint = ("a reuse factor does not reduce what Latency unrolls: use Resource" if p.strategy == "Latency"
                    else "raise the reuse factor")
            p.notes.append(f"layer {p.layer}: {p.strategy} with reuse factor {rf} unrolls "
                           f"{p.unrolled_multiplications} multiplications, over the {MAX_UNROLLED_MULTS} HLS tools "
                           f"unroll ({hint}, or leave --strategy/--reuse-factor out to have them chosen)")


def _short_list(values: list[int], n: int = 12) -> str:
    return ", ".join(map(str, values)) if len(values) <= n else ", ".join(map(str, values[:n])) + ", ..."


def convert_engine(eng, out_dir, *, backend: str = "vitis", model=None, part: str = DEFAULT_PART,
                   clock_period: float = 5.0, strategy: str | None = None, reuse_factor: int | None = None,
                   project_name: str = "myproject", io_type: str | None = None,
                   tb_inputs=None, write: bool = True) -> Hls4mlProject:
    """Convert the engine's network (its current weights; or the Brevitas ``model`` if given, whose weights must be
    the engine's) through QONNX into an hls4ml project in ``out_dir``.

    ``strategy`` / ``reuse_factor`` apply to every dense layer; None chooses them per layer (:func:`plan_dense`).
    ``tb_inputs`` (raw input integers, (N, n_in)) become hls4ml's ``tb_data`` with the engine's outputs as the
    expected predictions.  ``write`` also writes :data:`SERIALIZED_MODEL` into ``out_dir``."""
    require("hls4ml", "brevitas", "qonnx", "onnx")
    bkey = str(backend).lower()
    if bkey not in BACKENDS:
        raise ConfigError(f"hls4ml backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    want_io = IO_CONV if eng.front is not None else IO_MLP
    if io_type is None:
        io_type = want_io
    if io_type != want_io:
        raise ConfigError(f"only {IO_MLP} is exported for an MLP and {IO_CONV} for a conv network (the type "
                          f"settings are checked for these), got {io_type}")
    if reuse_factor is not None and (isinstance(reuse_factor, bool) or not isinstance(reuse_factor, int)
                                     or reuse_factor < 1):
        raise ConfigError(f"reuse factor must be a positive integer, got {reuse_factor!r}")
    check_exportable(eng)
    plans = plan_conv(eng, BACKENDS[bkey]) + plan_dense(eng, strategy, reuse_factor, BACKENDS[bkey])
    n_conv = len(plans) - len(eng.precision.layers)
    if model is None:
        model = build_qat_model(eng)
    load_engine_weights(model, eng)  # the engine's weights are the truth (exact, checked)
    out = Path(out_dir)
    qdir = out / "qonnx"
    qdir.mkdir(parents=True, exist_ok=True)
    qonnx_path = qdir / f"{project_name}.onnx"
    export_qonnx(model, eng.sizes[0] if eng.front is None else tuple(eng.precision.front[0].in_shape), qonnx_path)
    mw = clean_qonnx(qonnx_path, channels_last_input=eng.front is not None)
    mw.save(str(qdir / f"{project_name}_clean.onnx"))

    import hls4ml  # noqa: F401  (registers layers and backends)
    from hls4ml.converters import _check_hls_config, _check_model_config
    from hls4ml.converters.onnx_to_hls import parse_onnx_model
    from hls4ml.model import ModelGraph
    from hls4ml.utils.config import config_from_onnx_model, create_config

    with _quiet():
        cfg = config_from_onnx_model(mw, granularity="name", backend=BACKENDS[bkey], default_precision="fixed<32,16>",
                                     default_reuse_factor=reuse_factor or 1)
    cfg["Model"]["Strategy"] = strategy or "Latency"
    cfg["Model"]["ReuseFactor"] = reuse_factor or 1
    tb_args: dict[str, Any] = {}
    if tb_inputs is not None:
        Xr = np.asarray(tb_inputs, dtype=np.int64).reshape(-1, eng.n_inputs)
        np.save(qdir / "tb_inputs.npy", input_format(eng).to_float(to_channels_last(eng, Xr)))
        np.save(qdir / "tb_outputs.npy", eng.precision.layers[-1].accum.to_float(eng.output_raw(Xr)))
        tb_args = {"input_data_tb": str(qdir / "tb_inputs.npy"), "output_data_tb": str(qdir / "tb_outputs.npy")}
    config = create_config(output_dir=str(out / "hls4ml_prj"), project_name=project_name,
                           backend=BACKENDS[bkey], part=part, clock_period=clock_period, io_type=io_type)
    config["OnnxModel"] = mw.model
    config["InputData"] = tb_args.get("input_data_tb")
    config["OutputPredictions"] = tb_args.get("output_data_tb")
    config["HLSConfig"] = {"Model": _check_model_config(cfg.get("Model"))}
    _check_hls_config(config, cfg)
    with _quiet():
        layer_list, inputs, outputs = parse_onnx_model(mw.model)
        L = len(eng.precision.layers)
        convs = [j for j, fp in enumerate(eng.precision.front or []) if fp.type == "conv2d"]
        k = -1
        c = -1
        for i, lay in enumerate(layer_list):
            if lay.get("class_name") == "MatMul":
                k += 1
                if not 0 <= k < L:
                    raise HLSBuildError(f"unexpected MatMul node {lay['name']} in the QONNX graph")
                # hls4ml turns the MatMul into a Dense layer that takes over the MatMul's layer config
                config["HLSConfig"].setdefault("LayerName", {}).setdefault(lay["name"], {}).update(
                    Strategy=plans[n_conv + k].strategy, ReuseFactor=plans[n_conv + k].reuse_factor)
            elif lay.get("class_name") == "Conv":
                c += 1
                if k >= 0 or not 0 <= c < len(convs):
                    raise HLSBuildError(f"unexpected Conv node {lay['name']} in the QONNX graph")
                config["HLSConfig"].setdefault("LayerName", {}).setdefault(lay["name"], {}).update(
                    Strategy=plans[c].strategy, ReuseFactor=plans[c].reuse_factor)
            act = lay.get("activation")
            if lay.get("class_name") == "Activation" and act in ("tanh", "sigmoid"):
                if k < 0:  # after front-end conv c
                    if not 0 <= c < len(convs) or eng.precision.front[convs[c]].act_name != act:
                        raise HLSBuildError(f"unexpected {act} node {lay['name']} in the QONNX graph")
                    key, fmt = ("front", convs[c]), eng.precision.front[convs[c]].act
                else:
                    if not k < L - 1 or eng.acts[k] != act:
                        raise HLSBuildError(f"unexpected {act} node {lay['name']} in the QONNX graph")
                    key, fmt = k, eng.precision.layers[k].act
                layer_list[i] = {"name": lay["name"], "class_name": "UnaryLUT", "inputs": lay["inputs"],
                                 "outputs": lay["outputs"], "table_data": _lut_table(eng, key),
                                 "table_t": _precision(fmt), "activation": "unary_lut"}
        hm = ModelGraph.from_layer_list(config, layer_list, inputs, outputs)
    report = _configure(hm, eng, plans)
    _record_conversion(plans, [la for la in hm.get_layers() if la.class_name in _CONV_LAYERS + ("Dense",)],
                       BACKENDS[bkey])
    proj = Hls4mlProject(hm, eng, out / "hls4ml_prj", BACKENDS[bkey], qonnx_path, io_type)
    proj.plans = plans
    if write:
        proj.write()
        (out / "hls4ml_prj" / "edgelearn_types.json").write_text(json.dumps(report, indent=2) + "\n")
        proj.serialize(out / SERIALIZED_MODEL)
    return proj


def load_serialized(path, eng, out_dir, backend: str = "Vitis") -> Hls4mlProject:
    """The hls4ml model of :data:`SERIALIZED_MODEL` at ``path``, rebuilt exactly, as a project writing to
    ``out_dir`` (hls4ml's ``deserialize_model`` keeps the original project folder, which it would overwrite)."""
    require("hls4ml")
    import hls4ml  # noqa: F401  (registers layers and backends)
    from hls4ml.utils.serialization import deserialize_model

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with _quiet():
        hm = deserialize_model(Path(path), output_dir=out)
    hm.config.config["OutputDir"] = str(out / "hls4ml_prj")
    return Hls4mlProject(hm, eng, out / "hls4ml_prj", backend, None, hm.config.get_config_value("IOType"))
