"""Bit-exact fixed-point arithmetic (Xilinx ap_fixed semantics); definition in docs/arithmetic.md."""

from edgelearn.fixed.formats import (  # noqa: F401
    OVERFLOW,
    ROUNDING,
    AccumulatorFormat,
    FixedFormat,
    parse_format,
)
