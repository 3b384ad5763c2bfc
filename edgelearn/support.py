"""Which back ends accept a network description (``edgelearn info``).

:func:`supported_backends` asks each back end itself -- it runs the validation that back end's command runs and
keeps the refusal -- so the answer cannot drift from what the back ends really accept.
"""
from __future__ import annotations

from .errors import EdgelearnError
from .network import NetworkSpec

#: back end -> what it is, with the command that runs it
BACKENDS = {
    "torch": "float reference: train",
    "engine": "fixed-point engine: simulate",
    "hls": "HLS projects: export-hls",
    "rtl": "Verilog datapath: rtl",
}


def _torch(spec: NetworkSpec) -> None:
    import torch

    from .torch_ref import build_model, convert_network

    # shapes only on the meta device: a full-size model with its feedback matrices can take minutes to draw
    try:
        with torch.device("meta"):
            convert_network(build_model(spec, seed=0), spec)
    except EdgelearnError:
        raise
    except Exception:  # an operation without a meta kernel: ask again with real tensors
        convert_network(build_model(spec, seed=0), spec)


def _engine(spec: NetworkSpec):
    from .fixed.engine import FixedEngine

    return FixedEngine(spec, threads=1)


def _hls(eng) -> None:
    """What ``export-hls`` checks before writing: the learning kernel, then the hls4ml inference project."""
    from .hls.brevitas_model import check_exportable
    from .hls.kernel import KernelSpec

    KernelSpec.from_engine(eng)
    if eng.front is None:  # a conv front end hls4ml cannot carry still gets the kernel (a warning, docs/hls.md)
        check_exportable(eng)


def _rtl(eng) -> None:
    from .rtl.generate import MAX_PARALLEL, RtlDesign

    RtlDesign(eng, parallel=MAX_PARALLEL)  # the widest datapath: refused only if no --parallel would do


def supported_backends(spec: NetworkSpec) -> dict[str, str | None]:
    """Back end (:data:`BACKENDS`) -> None when it accepts ``spec`` (its rules, formats and defaults), else its
    refusal, one line. HLS and RTL are generated from the fixed-point engine, so they refuse what it refuses."""
    out: dict[str, str | None] = {}
    try:
        _torch(spec)
        out["torch"] = None
    except EdgelearnError as exc:
        out["torch"] = str(exc)
    try:
        eng = _engine(spec)
        out["engine"] = None
    except EdgelearnError as exc:
        out["engine"] = str(exc)
        out["hls"] = out["rtl"] = "generated from the fixed-point engine, which refuses this network"
        return out
    for name, check in (("hls", _hls), ("rtl", _rtl)):
        try:
            check(eng)
            out[name] = None
        except EdgelearnError as exc:
            out[name] = str(exc)
    return out
