"""HLS export: hls4ml inference projects (Brevitas QAT -> QONNX -> hls4ml) and the on-chip learning kernel.

Both are bit-exact in C-simulation with the fixed-point engine (docs/hls.md).  hls4ml and brevitas are optional
(``pip install 'edgelearn[hls]'``); the learning kernel needs only g++ and the ap_types headers to simulate.
"""
from .toolchain import HLSBuildError, MissingDependencyError

#: FPGA part both projects target unless told otherwise: the Zynq-7020 of the PYNQ-Z2 board, an edge device (the
#: network learns on the device; a data-centre part would hide designs that cannot fit one)
DEFAULT_PART = "xc7z020clg400-1"

#: the most multiplications one hls4ml dense layer may unroll.  Vivado/Vitis HLS stop unrolling a loop of more
#: copies than about this ("XFORM 203-504 Stop unrolling loop", the limit hls4ml's maintainers quote), so a larger
#: layer does not synthesize.  Latency unrolls all n_in*n_out products whatever its reuse factor (which only caps
#: the multiplier instances), Resource n_in*n_out / reuse_factor of them per pipelined step.
MAX_UNROLLED_MULTS = 4096

#: port protocols of the learning kernel's top function (export-hls --interface), the first the default: ap_memory
#: (ap_ctrl_hs and memory ports), axi (s_axilite control and scalars, m_axi sample / outputs / LFSR states, weights
#: in BRAM ports), axis (as axi, the sample as an AXI4-Stream)
KERNEL_INTERFACES = ("ap_memory", "axi", "axis")

__all__ = ["DEFAULT_PART", "KERNEL_INTERFACES", "MAX_UNROLLED_MULTS", "HLSBuildError", "MissingDependencyError"]
