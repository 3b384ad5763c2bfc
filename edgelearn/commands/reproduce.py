"""``edgelearn reproduce``: the papers' numbers beside ours, with the gap."""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reproduce", help="reproduce a paper's table or figure with the float reference",
                       description="Run a reproduction (short by default, the paper's length with --full) and print "
                                   "paper value, our value and the gap. --list shows the experiments.")
    p.add_argument("name", nargs="?", help="experiment name (see --list)")
    p.add_argument("--list", action="store_true", help="list the experiments")
    p.add_argument("--full", action="store_true", help="the paper's number of epochs (hours on a CPU)")
    p.add_argument("--seeds", type=int, default=1,
                   help="seeds per setting (0..N-1); the table shows mean +- std over them")
    p.add_argument("--finished-only", action="store_true",
                   help="train nothing: tabulate the runs in --out that have finished (a long sweep's partial table)")
    p.add_argument("--data-dir", help="dataset directory (default: ../shared/data beside the project)")
    p.add_argument("--out", "-o", default="runs/reproduce", help="where runs and the table go")
    p.add_argument("--quiet", "-q", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..fileio import output_dir, write_text_atomic
    from ..report.reproduce import EXPERIMENTS, reproduce, table

    if args.list or not args.name:
        for e in EXPERIMENTS.values():
            print(f"{e.name:16s} {e.description}")
        return 0 if args.list else 2
    if args.name not in EXPERIMENTS:
        raise ConfigError(f"unknown experiment {args.name!r}; known: {', '.join(EXPERIMENTS)}")
    if args.seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {args.seeds}")
    out = output_dir(args.out)
    rows = reproduce(args.name, out, full=args.full, data_dir=args.data_dir, progress=not args.quiet,
                     seeds=args.seeds, finished_only=args.finished_only)
    if args.finished_only and not rows:
        raise ConfigError(f"no finished run of {args.name} in {out} (at {'full' if args.full else 'short'} length)")
    text = table(rows)
    print(text)
    out.mkdir(parents=True, exist_ok=True)
    # a partial table never replaces the table of the finished sweep
    write_text_atomic(out / f"{args.name}{'-finished' if args.finished_only else ''}.md", text + "\n")
    return 0
