"""``edgelearn report``: float-vs-fixed sweep (resumable, parallel) and its report (markdown, HTML, PNG, JSON, CSV)."""
from __future__ import annotations

import argparse
import os

from ..errors import ConfigError
from ..program import SUPPORT
from ..word_length import MAX_BITS, MIN_BITS
from .common import positive_int

#: the rules the fixed-point engine runs (program.SUPPORT), the default rows of a report
ENGINE_RULES = tuple(SUPPORT["engine"].hidden_rules)
FLOAT_CHOICES = ("both", "online", "config", "none")


def _int_list(text: str) -> list[int]:
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not vals or any(v < MIN_BITS or v > MAX_BITS for v in vals):
        raise argparse.ArgumentTypeError(f"word lengths must be between {MIN_BITS} and {MAX_BITS}, got {text!r}")
    return vals


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="float-vs-fixed accuracy sweep and report (tables and plots)",
                       description="Run the fixed-point engine (with its float twin) for every rule, word length, "
                                   "rounding and seed, and the float reference of every rule; then write report.md, "
                                   "report.html, results.json/csv and PNG plots into OUT. Finished runs are never "
                                   "recomputed: re-running resumes an interrupted sweep.")
    p.add_argument("--config", "-c", default=None, help="network config (default: the embedded digits MLP)")
    p.add_argument("--rules", default=",".join(ENGINE_RULES),
                   help=f"comma-separated rules (default: every rule of the engine, {','.join(ENGINE_RULES)})")
    p.add_argument("--bits", type=_int_list, default=[4, 6, 8, 12, 16],
                   help=f"word lengths, {MIN_BITS}..{MAX_BITS} (default 4,6,8,12,16)")
    p.add_argument("--rounding", default="preset",
                   help="comma-separated rounding modes of the weight/bias updates (default: the preset's)")
    p.add_argument("--seeds", type=positive_int, default=3, help="number of seeds (default 3)")
    p.add_argument("--epochs", type=positive_int, default=1)
    p.add_argument("--dataset")
    p.add_argument("--data-dir")
    p.add_argument("--n-train", type=positive_int)
    p.add_argument("--n-test", type=positive_int)
    p.add_argument("--float-reference", choices=FLOAT_CHOICES, default="both",
                   help="float PyTorch reference runs: 'online' (the engine's online algorithm: batch 1, plain SGD, "
                        "the float twin's learning rates), 'config' (the config's optimiser and batch, e.g. Adam, "
                        "batch 60), both (default) or none")
    p.add_argument("--no-float-reference", action="store_true", help="the same as --float-reference none")
    p.add_argument("--curve-points", type=positive_int, default=10, metavar="N",
                   help="learning-curve points per epoch (default 10)")
    p.add_argument("--curve-samples", type=positive_int, default=1000, metavar="N",
                   help="the first N test samples are the learning curves' held-out set (default 1000)")
    p.add_argument("--jobs", "-j", type=positive_int, help="parallel runs (default: the number of cores)")
    p.add_argument("--out", "-o", required=True, help="output directory")
    p.add_argument("--threads", type=positive_int, default=1, metavar="N",
                   help="CPU threads of each parallel run (torch, numba, BLAS; default 1: --jobs runs already "
                        "share the cores)")
    p.add_argument("--executor", choices=["local", "dask"], default="local",
                   help="where the runs go: a local process pool (default) or the workers of a dask scheduler")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="address of the dask scheduler, e.g. tcp://host:8786 (with --executor dask)")
    p.add_argument("--render-only", action="store_true", help="re-render from saved results, run nothing")
    p.add_argument("--area", metavar="FILE",
                   help="area file (JSON: resources per rule and word length, e.g. from scripts/area_sweep.py): adds "
                        "an accuracy-vs-area table and plot; kept in OUT for later renders (docs/reports.md)")
    p.add_argument("--quiet", "-q", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..fileio import output_dir
    from ..network import EMBEDDED_DIR
    from ..report import SweepConfig, render, sweep
    from ..threads import check_threads

    check_threads(args.threads)
    if args.area is not None:  # a wrong area file costs nothing: read it before any run
        from ..report.area import load_area

        load_area(args.area)
    if (args.executor == "dask") != (args.scheduler is not None):
        raise ConfigError("--executor dask and --scheduler ADDRESS go together")

    # --render-only on a missing folder: render's message (no plan.json there) says more than a write check
    out = args.out if args.render_only and not os.path.lexists(args.out) else output_dir(args.out)
    if not args.render_only:
        config = args.config or str(EMBEDDED_DIR / "digits-mlp.yaml")
        rules = [r.strip() for r in args.rules.split(",") if r.strip()]
        roundings = [r.strip().upper() if r.strip() != "preset" else "preset" for r in args.rounding.split(",")]
        floats = "none" if args.no_float_reference else args.float_reference
        # sweep() checks the whole sweep (settings, data, every rule on every back end) before writing anything
        cfg = SweepConfig(config=config, rules=rules, bits=args.bits, roundings=roundings, seeds=args.seeds,
                          epochs=args.epochs, dataset=args.dataset, data_dir=args.data_dir, n_train=args.n_train,
                          n_test=args.n_test, float_reference=floats in ("both", "config"),
                          online_reference=floats in ("both", "online"), curve_points=args.curve_points,
                          curve_samples=args.curve_samples)
        done = sweep(cfg, out, jobs=args.jobs, progress=not args.quiet, threads=args.threads,
                     scheduler=args.scheduler)
        print(f"ran {len(done)} run(s); {len(cfg.keys()) - len(done)} already done")
    info = render(out, area=args.area)
    if info["missing"]:
        print(f"{len(info['missing'])} run(s) missing from the report (listed in it)")
    print(f"report: {args.out}/report.md  {args.out}/report.html  ({len(info['plots'])} plots, results.json, results.csv)")
    return 0
