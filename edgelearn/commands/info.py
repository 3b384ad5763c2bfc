"""``edgelearn info``: list rules and network configs, or describe one config."""
from __future__ import annotations

import argparse

from .common import load_spec


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="list learning rules and network configs, or describe one config",
                       description="Without arguments, list the learning rules and the network configs; with --config, "
                                   "show the layers, shapes and rule of each layer.")
    p.add_argument("--config", "-c", help="network YAML file or name")
    p.add_argument("--variant", "-V", help="a variant of an experiment config")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from ..network import RULES, config_names, load_network

    console = Console()
    if args.config is None:
        console.print("[bold]rules:[/bold] " + ", ".join(RULES))
        t = Table("config", "description", "variants")
        for name in config_names():
            spec = load_network(name)
            t.add_row(name, spec.description, str(len(spec.variants)) if spec.variants else "")
        console.print(t)
        return 0
    spec = load_spec(args.config)
    if args.variant:
        spec = spec.with_variant(args.variant)
    title = f"{spec.name}{' [' + spec.variant + ']' if spec.variant else ''}: {spec.description}"
    t = Table("layer", "type", "output shape", "rule", title=title)
    sites = spec.site_names()
    for layer in spec.layers:
        inner = [n for n in sites if n.startswith(layer.name + ".")]
        rule = spec.layer_rule(layer) if layer.trainable else ", ".join(sorted({spec.layer_rule(n) for n in inner}))
        t.add_row(layer.name, layer.type, str(list(layer.out_shape)), rule)
    console.print(t)
    if spec.variants:
        console.print(f"[bold]variants[/bold] ({len(spec.variants)}; default {spec.default_variant}): "
                      + " ".join(spec.variant_names()))
    return 0
