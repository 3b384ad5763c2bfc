"""``edgelearn info``: list rules and network configs, or describe one config."""
from __future__ import annotations

import argparse

from .common import load_spec


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="list learning rules and network configs, or describe one config",
                       description="Without arguments, list the learning rules and the network configs with the back "
                                   "ends that accept each; with --config, show the layers, shapes and rule of each "
                                   "layer, and why a back end refuses the config.")
    p.add_argument("--config", "-c", help="network YAML file or name")
    p.add_argument("--variant", "-V", help="a variant of an experiment config")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from ..network import RULES, config_names, load_network
    from ..support import BACKENDS, supported_backends

    console = Console(highlight=False)
    if args.config is None:
        console.print("[bold]rules:[/bold] " + ", ".join(RULES))
        names = config_names()
        # the name column is as wide as the longest name (never cut); the description wraps below the name
        t = Table("config", "back ends", "variants")
        t.columns[0].min_width = max(map(len, names))
        t.columns[1].no_wrap = True
        for name in names:
            spec = load_network(name)
            ok = [b for b, refusal in supported_backends(spec).items() if refusal is None]
            cell = Text(name, style="bold")
            cell.append("\n" + spec.description, style="dim")
            t.add_row(cell, " ".join(ok), str(len(spec.variants)) if spec.variants else "")
        console.print(t)
        console.print("back ends: " + ", ".join(f"{b} ({what})" for b, what in BACKENDS.items()))
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
    console.print(Text("back ends:", style="bold"))
    width = max(map(len, BACKENDS.values()))
    for b, refusal in supported_backends(spec).items():
        console.print(Text(f"  {BACKENDS[b]:<{width}}  {'yes' if refusal is None else 'no: ' + refusal}"))
    return 0
