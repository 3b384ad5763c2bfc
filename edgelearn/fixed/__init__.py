"""Bit-exact fixed-point arithmetic (Xilinx ap_fixed semantics); definition in docs/arithmetic.md."""

from edgelearn.fixed import numba_cache

numba_cache.configure()  # before any kernel is decorated: the cache folder is chosen at decoration

from edgelearn.fixed.formats import (  # noqa: E402,F401
    OVERFLOW,
    ROUNDING,
    AccumulatorFormat,
    FixedFormat,
    parse_format,
)


def __getattr__(name):  # the engine imports lazily: the primitives stay importable without compiling it
    if name == "FixedEngine":
        from .engine import FixedEngine

        return FixedEngine
    if name == "load_weights":
        from .engine_io import load_weights

        return load_weights
    raise AttributeError(f"module 'edgelearn.fixed' has no attribute {name!r}")
