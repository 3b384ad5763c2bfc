"""Weight files of the fixed-point engine: what the HLS and RTL generators read.

:func:`load_weights` rebuilds a :class:`~edgelearn.fixed.engine.FixedEngine` from a file ``FixedEngine.save``
wrote; the format itself (arrays, metadata, the checks of the reader) is :mod:`edgelearn.fixed.weights_file`, which
the engine imports to save, so that the imports run one way: weights_file <- engine <- engine_io.
"""
from __future__ import annotations

from .engine import FixedEngine, check_spec
from .weights_file import FILE_FORMAT, VERSION, clone_engine, read_weights, save_weights, weights_meta

__all__ = ["FILE_FORMAT", "VERSION", "clone_engine", "load_weights", "save_weights", "weights_meta"]


def load_weights(path) -> FixedEngine:
    """Rebuild a :class:`FixedEngine` from a weight file (formats, rules, weights, feedback, LFSR states); any
    problem with the file is a :class:`~edgelearn.errors.DataError` naming it (weights_file.read_weights)."""
    return read_weights(path, FixedEngine, check_spec)
