"""HLS export: hls4ml inference projects (Brevitas QAT -> QONNX -> hls4ml) and the on-chip learning kernel.

Both are bit-exact in C-simulation with the fixed-point engine (docs/hls.md).  hls4ml and brevitas are optional
(``pip install 'edgelearn[hls]'``); the learning kernel needs only g++ and the ap_types headers to simulate.
"""
from .toolchain import HLSBuildError, MissingDependencyError

__all__ = ["HLSBuildError", "MissingDependencyError"]
