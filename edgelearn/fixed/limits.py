"""The word-length limits of the presets: the largest ``--bits`` the engine's own int64 range checks accept per
rule (engine.FixedEngine, docs/engine.md "Word-length limit"), for errors, help and docs.

Above the engine (it builds engines); :mod:`edgelearn.fixed.presets`, which the engine's precision reads, stays
below it.
"""
from __future__ import annotations

from ..errors import FormatError
from ..network import load_network
from ..word_length import MAX_BITS
from .engine import FixedEngine

#: the network whose word-length limits ``--help`` quotes (the DRTP paper's FC2-500 on MNIST)
HELP_NETWORK = "fc2-500"
#: rules whose limits ``--help`` quotes, in that order
HELP_RULES = ("bp", "fa", "ldfa", "dfa", "sdfa", "drtp")


def max_bits(spec, rule: str | None = None) -> int:
    """The largest ``--bits`` preset the engine accepts for ``spec`` (with ``rule`` on every layer)."""
    try:
        FixedEngine(spec, rule=rule, bits=MAX_BITS)
    except FormatError as exc:
        limit = getattr(exc, "max_bits", None)
        if limit is None:
            raise
        return limit
    return MAX_BITS


def limits_sentence(network: str = HELP_NETWORK) -> str:
    """'on fc2-500 (784-500-500-10): bp up to 18 bits, ...' -- from :func:`max_bits`, for help and docs."""
    spec = load_network(network)
    groups: dict[int, list[str]] = {}
    for r in HELP_RULES:
        groups.setdefault(max_bits(spec, r), []).append(r)
    parts = [f"{'/'.join(rs)} up to {b} bits" for b, rs in sorted(groups.items())]
    return f"on {spec.name} ({'-'.join(map(str, spec.mlp_sizes()))}): {', '.join(parts)}"
