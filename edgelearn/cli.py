"""The ``edgelearn`` command line.

Each subcommand lives in its own module exposing ``register(subparsers)``; the module adds its parser and sets
``func`` to a callable taking the parsed ``argparse.Namespace`` and returning an exit code.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from .errors import EdgelearnError

# module name -> (import path). Order is the order shown in --help.
SUBCOMMAND_MODULES = [
    "edgelearn.commands.train",
    "edgelearn.commands.simulate",
    "edgelearn.commands.report",
    "edgelearn.commands.reproduce",
    "edgelearn.commands.data",
    "edgelearn.commands.info",
    "edgelearn.commands.export_hls",
    "edgelearn.commands.rtl",
]


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="edgelearn",
        description="On-chip learning toolchain: float reference, bit-accurate fixed-point engine, HLS and RTL.",
    )
    parser.add_argument("--version", action="version", version=f"edgelearn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:  # a subcommand whose module is not present in this build
            if exc.name == name:
                continue
            raise
        mod.register(sub)
    return parser


#: options whose value may start with '-' (a layer counted from the end: --layer-rule -1=bp), which argparse would
#: otherwise take for an option
DASH_VALUE_OPTIONS = ("--layer-rule",)


def _join_dash_values(argv: list[str]) -> list[str]:
    """``--layer-rule -1=bp`` -> ``--layer-rule=-1=bp``."""
    out, i = [], 0
    while i < len(argv):
        a = argv[i]
        if a in DASH_VALUE_OPTIONS and i + 1 < len(argv) and argv[i + 1][:1] == "-" and argv[i + 1][1:2].isdigit():
            out.append(f"{a}={argv[i + 1]}")
            i += 2
            continue
        out.append(a)
        i += 1
    return out


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_join_dash_values(list(sys.argv[1:] if argv is None else argv)))
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except EdgelearnError as exc:
        print(f"edgelearn {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"edgelearn {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
