"""Argument helpers shared by subcommands."""
from __future__ import annotations

import argparse

from ..errors import ConfigError
from ..network import NetworkSpec, default_network, load_network


def positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def nonneg_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return v


def parse_layer_rules(items: list[str] | None) -> dict[str, str] | None:
    """``NAME=RULE`` pairs (repeatable ``--layer-rule``)."""
    if not items:
        return None
    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--layer-rule expects NAME=RULE, got {item!r}")
        name, rule = item.split("=", 1)
        out[name.strip()] = rule.strip()
    return out


def load_spec(config: str | None) -> NetworkSpec:
    return default_network() if config is None else load_network(config)
