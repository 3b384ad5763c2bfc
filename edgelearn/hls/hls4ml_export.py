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
  reorders the sum, so it is allowed only when the accumulator can neither overflow nor round.
"""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, FormatError
from ..fixed.formats import FixedFormat
from .brevitas_model import build_qat_model, check_exportable, load_engine_weights
from .toolchain import HLSBuildError, require

BACKENDS = {"vitis": "Vitis", "vivado": "Vivado"}
STRATEGIES = ("Latency", "Resource")
DEFAULT_PART = "xcvu13p-flga2577-2-e"

__all__ = ["BACKENDS", "export_qonnx", "clean_qonnx", "Hls4mlProject", "convert_engine"]


def _quiet():
    """hls4ml and qonnx print a lot; keep the CLI readable (errors still raise)."""
    return contextlib.redirect_stdout(io.StringIO())


def export_qonnx(model, n_in: int, path) -> Path:
    """Export the Brevitas model to QONNX (TorchScript exporter, ``dynamo=False``)."""
    require("brevitas", "onnx")
    import warnings

    import torch
    from brevitas.export import export_qonnx as _export

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.eval()
    with warnings.catch_warnings(), _quiet():
        warnings.simplefilter("ignore")
        _export(model, torch.zeros(1, n_in), export_path=str(path), dynamo=False)
    return path


def clean_qonnx(path):
    """qonnx cleanup, channels-last conversion, Gemm -> MatMul (what hls4ml's ONNX front end expects)."""
    require("qonnx")
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.channels_last import ConvertToChannelsLastAndClean
    from qonnx.transformation.gemm_to_matmul import GemmToMatMul
    from qonnx.util.cleanup import cleanup_model

    with _quiet():
        mw = cleanup_model(ModelWrapper(str(path)))
        mw = mw.transform(ConvertToChannelsLastAndClean())
        mw = mw.transform(GemmToMatMul())
        mw = cleanup_model(mw)
    return mw


def _precision(f: FixedFormat, q: str | None = None, o: str | None = None):
    from hls4ml.backends.fpga.fpga_types import APTypeConverter
    from hls4ml.model.types import FixedPrecisionType

    rq = q or ("TRN" if f.rounding == "STOCH" else f.rounding)
    return APTypeConverter().convert(FixedPrecisionType(f.width, f.integer, f.signed, rounding_mode=rq,
                                                        saturation_mode=o or f.overflow))


def _lut_table(eng, k: int) -> np.ndarray:
    """The engine's table of layer k re-indexed by the raw bits of the index type (what UnaryLUT reads)."""
    tb = eng.precision.table_bits
    n = 1 << tb
    table = np.asarray(eng.tables[k], dtype=np.int64)
    u = np.arange(n)
    signed_idx = np.where(u < n // 2, u, u - n)
    return eng.precision.layers[k].act.to_float(table[signed_idx + n // 2])


class Hls4mlProject:
    """A converted hls4ml model of an engine network, written to ``path`` (hls4ml's own layout)."""

    def __init__(self, hls_model, eng, path: Path, backend: str, qonnx_path: Path | None):
        self.model = hls_model
        self.eng = eng
        self.path = Path(path)
        self.backend = backend
        self.qonnx_path = qonnx_path
        self.compiled = False

    @property
    def out_format(self) -> FixedFormat:
        return self.eng.precision.layers[-1].accum

    def write(self) -> None:
        with _quiet():
            self.model.write()

    def compile(self) -> None:
        """hls4ml's C-simulation library (g++ with the bundled ap_types headers)."""
        buf = io.StringIO()
        try:
            with contextlib.redirect_stdout(buf):
                self.model.compile()
        except Exception as exc:  # hls4ml raises bare Exception on a failed build
            raise HLSBuildError(f"hls4ml compile failed: {exc}\n{buf.getvalue()[-3000:]}") from None
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
        fin = self.eng.precision.layers[0].input
        fo = self.out_format
        if fo.width > 53:
            raise FormatError(f"output accumulator {fo} is wider than 53 bits: hls4ml's predict() returns doubles, "
                              f"which cannot hold it exactly")
        y = self.predict_float(fin.to_float(np.asarray(X_raw, dtype=np.int64)))
        raw = np.ldexp(y, fo.frac)
        out = np.rint(raw).astype(np.int64)
        if not np.array_equal(out.astype(np.float64), raw):
            raise HLSBuildError("hls4ml returned values that are not on the output format's grid")
        return out

    def files(self) -> list[str]:
        return sorted(str(p.relative_to(self.path)) for p in self.path.rglob("*")
                      if p.is_file() and "__pycache__" not in p.parts and not p.name.endswith((".so", ".o")))


def _configure(hm, eng, strategy: str) -> dict[str, Any]:
    """Set every type of the converted graph to the engine's formats (see the module docstring)."""
    prec = eng.precision
    L = len(prec.layers)
    layers = list(hm.get_layers())
    dense = [layer for layer in layers if layer.class_name == "Dense"]
    if len(dense) != L:
        raise HLSBuildError(f"hls4ml made {len(dense)} Dense layers out of {L} linear layers")
    report: dict[str, Any] = {"layers": []}
    inp = hm.get_input_variables()[0]
    inp.type.precision = _precision(prec.layers[0].input)
    idx_fmt = FixedFormat(prec.table_bits, prec.range_bits + 1, True, "TRN", "SAT")
    cur = prec.layers[0].input  # the format the next pass-through layer must carry
    k = -1
    seq: dict[int, list] = {}
    for layer in layers:
        if layer.class_name == "Dense":
            k += 1
            seq[k] = []
            continue
        if k >= 0:
            seq[k].append(layer)
        elif layer.class_name == "Activation" and layer.get_attr("activation") == "linear":
            layer.get_output_variable().type.precision = _precision(cur)
        elif layer.class_name not in ("Input", "InputLayer", "Reshape", "Flatten"):
            raise HLSBuildError(f"unexpected hls4ml layer {layer.name} ({layer.class_name}) before the first Dense")
    for k, d in enumerate(dense):
        lp = prec.layers[k]
        act = eng.acts[k] if k < L - 1 else "output"
        d.get_weights("weight").update_precision(_precision(lp.weight))
        d.get_weights("bias").update_precision(_precision(lp.bias))
        d.attributes["accum_t"].precision = _precision(lp.accum)
        d.set_attr("strategy", strategy.lower())
        after = seq.get(k, [])
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
                raise HLSBuildError(f"layer {lp.name}: expected one UnaryLUT after the Dense layer, got {kinds}")
            d.get_output_variable().type.precision = _precision(idx_fmt)
            lut[0].get_attr("table_t").precision = _precision(lp.act)
            lut[0].get_weights("table").update_precision(_precision(lp.act))  # exact decimals in table*.txt
            lut[0].get_output_variable().type.precision = _precision(lp.act)
        elif act == "relu":
            relu = [a for a in after if a.class_name in ("ReLU", "Activation")
                    and str(a.get_attr("activation")).lower() == "relu"]
            if len(relu) != 1:
                raise HLSBuildError(f"layer {lp.name}: expected one ReLU after the Dense layer, got {kinds}")
            d.get_output_variable().type.precision = _precision(lp.accum)
            relu[0].get_output_variable().type.precision = _precision(lp.act)
        else:  # none / hardtanh: the activation quantizer (a linear layer) or the Dense result itself
            d.get_output_variable().type.precision = _precision(lp.accum if after else lp.act)
        for a in after:
            if a.class_name == "Activation" and a.get_attr("activation") == "linear":
                a.get_output_variable().type.precision = _precision(lp.accum if act == "output" else lp.act)
            elif a.class_name not in ("UnaryLUT", "ReLU", "Activation"):
                raise HLSBuildError(f"unexpected hls4ml layer {a.name} ({a.class_name}) in layer {lp.name}")
            elif a.class_name == "Activation" and str(a.get_attr("activation")).lower() not in ("linear", "relu"):
                raise HLSBuildError(f"layer {lp.name}: hls4ml activation {a.get_attr('activation')!r} is not exact")
        report["layers"].append({
            "layer": lp.name, "dense": d.name, "after": [a.name for a in after], "act": act,
            "weight": str(lp.weight), "bias": str(lp.bias), "accum": str(lp.accum),
            "dense_result": str(idx_fmt if act in ("tanh", "sigmoid") else (lp.accum if (after or act == "output")
                                                                           else lp.act)),
            "act_format": str(lp.act) if act != "output" else None})
    return report


def _check_strategy(eng, strategy: str) -> None:
    if strategy not in STRATEGIES:
        raise ConfigError(f"hls4ml strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    if strategy == "Latency":
        return
    for lp in eng.precision.layers:
        fp = lp.weight.frac + lp.input.frac
        pmax = (1 << (lp.weight.width - 1)) * ((1 << (lp.input.width - 1)) if lp.input.signed
                                              else (1 << lp.input.width) - 1)
        bmax = 1 << (lp.bias.width - 1)
        fa = lp.accum.frac
        if fa < fp or fa < lp.bias.frac:
            raise FormatError(f"layer {lp.name}: strategy Resource reorders the accumulation; with accumulator "
                              f"{lp.accum} it rounds, so only Latency is bit-exact")
        total = lp.n_in * (pmax << (fa - fp)) + (bmax << (fa - lp.bias.frac))
        if total > lp.accum.max_raw:
            raise FormatError(f"layer {lp.name}: strategy Resource reorders the accumulation; accumulator "
                              f"{lp.accum} can overflow, so only Latency is bit-exact")


def convert_engine(eng, out_dir, *, backend: str = "vitis", model=None, part: str = DEFAULT_PART,
                   clock_period: float = 5.0, strategy: str = "Latency", reuse_factor: int = 1,
                   project_name: str = "myproject", io_type: str = "io_parallel",
                   tb_inputs=None, write: bool = True) -> Hls4mlProject:
    """Convert the engine's network (its current weights; or the Brevitas ``model`` if given, whose weights must be
    the engine's) through QONNX into an hls4ml project in ``out_dir``.

    ``tb_inputs`` (raw input integers, (N, n_in)) become hls4ml's ``tb_data`` with the engine's outputs as the
    expected predictions."""
    require("hls4ml", "brevitas", "qonnx", "onnx")
    bkey = str(backend).lower()
    if bkey not in BACKENDS:
        raise ConfigError(f"hls4ml backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if io_type != "io_parallel":
        raise ConfigError("only io_parallel is exported (the UnaryLUT tables and the type settings assume it)")
    if isinstance(reuse_factor, bool) or not isinstance(reuse_factor, int) or reuse_factor < 1:
        raise ConfigError(f"reuse factor must be a positive integer, got {reuse_factor!r}")
    check_exportable(eng)
    _check_strategy(eng, strategy)
    if model is None:
        model = build_qat_model(eng)
    load_engine_weights(model, eng)  # the engine's weights are the truth (exact, checked)
    out = Path(out_dir)
    qdir = out / "qonnx"
    qdir.mkdir(parents=True, exist_ok=True)
    qonnx_path = qdir / f"{project_name}.onnx"
    export_qonnx(model, eng.sizes[0], qonnx_path)
    mw = clean_qonnx(qonnx_path)
    mw.save(str(qdir / f"{project_name}_clean.onnx"))

    import hls4ml  # noqa: F401  (registers layers and backends)
    from hls4ml.converters import _check_hls_config, _check_model_config
    from hls4ml.converters.onnx_to_hls import parse_onnx_model
    from hls4ml.model import ModelGraph
    from hls4ml.utils.config import config_from_onnx_model, create_config

    with _quiet():
        cfg = config_from_onnx_model(mw, granularity="name", backend=BACKENDS[bkey], default_precision="fixed<32,16>",
                                     default_reuse_factor=reuse_factor)
    cfg["Model"]["Strategy"] = strategy
    cfg["Model"]["ReuseFactor"] = reuse_factor
    tb_args: dict[str, Any] = {}
    if tb_inputs is not None:
        Xr = np.asarray(tb_inputs, dtype=np.int64).reshape(-1, eng.sizes[0])
        np.save(qdir / "tb_inputs.npy", eng.precision.layers[0].input.to_float(Xr))
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
        k = -1
        for i, lay in enumerate(layer_list):
            if lay.get("class_name") == "MatMul":
                k += 1
            act = lay.get("activation")
            if lay.get("class_name") == "Activation" and act in ("tanh", "sigmoid"):
                if not 0 <= k < L - 1 or eng.acts[k] != act:
                    raise HLSBuildError(f"unexpected {act} node {lay['name']} in the QONNX graph")
                layer_list[i] = {"name": lay["name"], "class_name": "UnaryLUT", "inputs": lay["inputs"],
                                 "outputs": lay["outputs"], "table_data": _lut_table(eng, k),
                                 "table_t": _precision(eng.precision.layers[k].act), "activation": "unary_lut"}
        hm = ModelGraph.from_layer_list(config, layer_list, inputs, outputs)
    report = _configure(hm, eng, strategy)
    proj = Hls4mlProject(hm, eng, out / "hls4ml_prj", BACKENDS[bkey], qonnx_path)
    if write:
        proj.write()
        (out / "hls4ml_prj" / "edgelearn_types.json").write_text(json.dumps(report, indent=2) + "\n")
    return proj
