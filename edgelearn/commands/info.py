"""``edgelearn info``: list rules and network configs, or describe one config."""
from __future__ import annotations

import argparse

from .common import load_spec


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="list learning rules and network configs, or describe one config",
                       description="Without arguments, list the learning rules and the network configs; with --config, "
                                   "show the layers, shapes and rule of each layer.")
    p.add_argument("--config", "-c", help="network YAML file or name")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from ..network import EMBEDDED_DIR, MODELS_DIR, RULES

    console = Console()
    if args.config is None:
        console.print("[bold]rules:[/bold] " + ", ".join(RULES))
        t = Table("config", "description")
        for base in (EMBEDDED_DIR, MODELS_DIR):
            for path in sorted(base.glob("*.yaml")):
                spec = load_spec(str(path))
                t.add_row(spec.name, spec.description)
        console.print(t)
        return 0
    spec = load_spec(args.config)
    t = Table("layer", "type", "output shape", "rule", title=f"{spec.name}: {spec.description}")
    for layer in spec.layers:
        t.add_row(layer.name, layer.type, str(list(layer.out_shape)), spec.layer_rule(layer) if layer.trainable else "")
    console.print(t)
    return 0
