"""``edgelearn report``: float-vs-fixed sweep (resumable, parallel) and its report (markdown, HTML, PNG, JSON, CSV)."""
from __future__ import annotations

import argparse

from ..errors import ConfigError
from .common import positive_int


def _int_list(text: str) -> list[int]:
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not vals or any(v < 2 or v > 32 for v in vals):
        raise argparse.ArgumentTypeError(f"word lengths must be between 2 and 32, got {text!r}")
    return vals


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="float-vs-fixed accuracy sweep and report (tables and plots)",
                       description="Run the fixed-point engine (with its float twin) for every rule, word length, "
                                   "rounding and seed, and the float reference of every rule; then write report.md, "
                                   "report.html, results.json/csv and PNG plots into OUT. Finished runs are never "
                                   "recomputed: re-running resumes an interrupted sweep.")
    p.add_argument("--config", "-c", default=None, help="network config (default: the embedded digits MLP)")
    p.add_argument("--rules", default="drtp,sdfa,dfa,shallow", help="comma-separated rules")
    p.add_argument("--bits", type=_int_list, default=[4, 6, 8, 12, 16], help="word lengths (default 4,6,8,12,16)")
    p.add_argument("--rounding", default="preset",
                   help="comma-separated rounding modes of the weight/bias updates (default: the preset's)")
    p.add_argument("--seeds", type=positive_int, default=3, help="number of seeds (default 3)")
    p.add_argument("--epochs", type=positive_int, default=1)
    p.add_argument("--dataset")
    p.add_argument("--data-dir")
    p.add_argument("--n-train", type=positive_int)
    p.add_argument("--n-test", type=positive_int)
    p.add_argument("--no-float-reference", action="store_true", help="skip the float PyTorch reference runs")
    p.add_argument("--jobs", "-j", type=positive_int, help="parallel runs (default: the number of cores)")
    p.add_argument("--out", "-o", required=True, help="output directory")
    p.add_argument("--render-only", action="store_true", help="re-render from saved results, run nothing")
    p.add_argument("--quiet", "-q", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..fixed.formats import ROUNDING
    from ..network import EMBEDDED_DIR, RULES, load_network
    from ..report import SweepConfig, render, sweep

    if not args.render_only:
        config = args.config or str(EMBEDDED_DIR / "digits-mlp.yaml")
        load_network(config)  # validate before anything is written
        rules = [r.strip() for r in args.rules.split(",") if r.strip()]
        for r in rules:
            if r not in RULES:
                raise ConfigError(f"unknown rule {r!r}; choose from {', '.join(RULES)}")
        roundings = [r.strip().upper() if r.strip() != "preset" else "preset" for r in args.rounding.split(",")]
        for r in roundings:
            if r != "preset" and r.removeprefix("AP_") not in ROUNDING:
                raise ConfigError(f"unknown rounding mode {r!r}; choose from preset, {', '.join(ROUNDING)}")
        cfg = SweepConfig(config=config, rules=rules, bits=args.bits, roundings=roundings, seeds=args.seeds,
                          epochs=args.epochs, dataset=args.dataset, data_dir=args.data_dir, n_train=args.n_train,
                          n_test=args.n_test, float_reference=not args.no_float_reference)
        done = sweep(cfg, args.out, jobs=args.jobs, progress=not args.quiet)
        print(f"ran {len(done)} run(s); {len(cfg.keys()) - len(done)} already done")
    info = render(args.out)
    if info["missing"]:
        print(f"{len(info['missing'])} run(s) missing from the report (listed in it)")
    print(f"report: {args.out}/report.md  {args.out}/report.html  ({len(info['plots'])} plots, results.json, results.csv)")
    return 0
