"""``edgelearn simulate``: train an MLP with the bit-accurate fixed-point engine beside its float64 twin."""
from __future__ import annotations

import argparse
import json
import sys
import time

from ..threads import add_threads_arg
from .common import add_rng_arg, check_engine_dataset, load_spec, parse_layer_rules, positive_int

#: --epochs default: the config's, capped (a simulation is a quick look; ask for more explicitly)
MAX_DEFAULT_EPOCHS = 5


class BitsHelp(str):
    """A ``--bits`` help text completed with fixed.limits.limits_sentence when argparse formats it (``%``), so that
    the limits come from the engine's range checks without loading the engine unless help is printed."""

    def __mod__(self, params):
        from ..fixed import limits  # the engine, only when help is printed

        try:
            tail = limits.limits_sentence()
        except Exception:  # noqa: BLE001 - help must print even where the quoted config cannot load
            tail = f"(limits of {limits.HELP_NETWORK} unavailable here)"
        return str.__mod__(str(self), params) + " " + tail


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "simulate",
        help="train with the bit-accurate fixed-point engine and compare with its float twin",
        description="Train an MLP with the bit-accurate fixed-point engine (the arithmetic the generated HLS and "
                    "RTL implement) and, beside it, its float64 twin (same algorithm, no quantization). Without "
                    "arguments: the embedded digits MLP, 8-bit preset, DRTP. Prints both test accuracies and the "
                    "per-tensor overflow / zero-update counters; writes OUT/results.json and OUT/weights.npz "
                    "(+ weights.json), and OUT/checkpoint.npz after every epoch, from which the same command "
                    "resumes (a larger --epochs continues a finished run). Formats use hls4ml syntax, e.g. --format 'weight=fixed<8,2,STOCH,SAT>' (quoted: the shell reads < and > as redirections).",
    )
    p.add_argument("--config", "-c", help="network YAML file or name in models/ (default: embedded digits MLP)")
    p.add_argument("--rule", "-r", help="rule of every layer: drtp, sdfa, dfa, fa, bp, shallow (default: the config's)")
    p.add_argument("--layer-rule", action="append", metavar="NAME=RULE", help="per-layer rule override (repeatable)")
    p.add_argument("--dataset", help="dataset name (default: the config's)")
    p.add_argument("--data-dir", help="directory of the MNIST / CIFAR files")
    p.add_argument("--epochs", "-e", type=int, help=f"epochs (default: the config's, at most {MAX_DEFAULT_EPOCHS})")
    p.add_argument("--bits", type=int, help=BitsHelp(
        "preset word length 4..32 (default: the config's precision, else 8); rules whose hidden-layer signal is a "
        "sum over a layer must keep it in int64, which caps the word length by the layer widths (an error names "
        "the limit), e.g."))
    p.add_argument("--format", "-f", action="append", metavar="TENSOR=FMT",
                   help="format of a tensor (input weight bias accum act out_act deriv error update feedback), "
                        "or LAYER.TENSOR=FMT for one layer; repeatable")
    p.add_argument("--rounding", action="append", metavar="[TENSOR=]MODE",
                   help="rounding mode (TRN TRN_ZERO RND RND_ZERO RND_INF RND_MIN_INF RND_CONV STOCH) of every "
                        "tensor or of one; repeatable")
    p.add_argument("--overflow", action="append", metavar="[TENSOR=]MODE",
                   help="overflow mode (WRAP SAT SAT_ZERO SAT_SYM) of every tensor or of one; repeatable")
    p.add_argument("--lr-shift", type=int, help="learning rate 2**-N of every layer (default: the rule's preset shift "
                        "for the word length, docs/engine.md)")
    p.add_argument("--mode", choices=("online", "batch"), default="online",
                   help="online: one sample at a time (default); batch: accumulate over --batch-size samples")
    p.add_argument("--batch-size", "-b", type=positive_int, help="minibatch size in batch mode (default: the config's)")
    p.add_argument("--feedback", choices=("stored", "lfsr"), help="feedback matrices stored, or regenerated "
                   "from their LFSR seed (same values; default: the config's, else stored)")
    add_rng_arg(p)
    p.add_argument("--init-from", metavar="CHECKPOINT",
                   help="start from a float-trained model: edgelearn train's OUT/checkpoint.pt (or a torch "
                        "state_dict); weights, biases and feedback (fixed B, kp's trained B, ldfa's and dldfa's "
                        "factors Q and P) are quantized into the formats (round to nearest, saturate), then learning "
                        "goes on in fixed point")
    p.add_argument("--seed", "-s", type=int, default=0, help="seed of the init, feedback, LFSR streams and order")
    p.add_argument("--n-train", type=positive_int, help="use only the first N training samples")
    p.add_argument("--n-test", type=positive_int, help="use only the first N test samples")
    p.add_argument("--no-twin", action="store_true", help="skip the float twin")
    p.add_argument("--no-resume", action="store_true",
                   help="start over even if OUT holds a checkpoint (one is written after every epoch)")
    p.add_argument("--out", "-o", help="output directory (default runs/simulate-NAME-RULE-BITSb-sSEED)")
    add_threads_arg(p, "1 (online and small batches), the cores for --mode batch with large batches")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar and no table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..data import load_dataset
    from ..errors import ConfigError
    from ..fileio import output_dir, write_json_atomic
    from ..fixed import checkpoint
    from ..fixed.engine import FixedEngine
    from ..fixed.precision import parse_format_overrides, parse_mode_overrides
    from ..threads import apply_threads, check_threads, default_threads

    check_threads(args.threads)
    out = output_dir(args.out) if args.out is not None else None
    spec = load_spec(args.config)
    layer_rules = parse_layer_rules(args.layer_rule, spec)
    if args.rule or layer_rules:
        spec = spec.with_rule(args.rule, {**spec.rules, **(layer_rules or {})} if layer_rules else None)
    if args.epochs is not None and args.epochs < 0:
        raise ConfigError(f"--epochs must be >= 0, got {args.epochs}")
    epochs = args.epochs if args.epochs is not None else min(int(spec.train.get("epochs", 1)), MAX_DEFAULT_EPOCHS)
    formats = parse_format_overrides(args.format)
    rounding = parse_mode_overrides(args.rounding, "rounding")
    overflow = parse_mode_overrides(args.overflow, "overflow")
    batch = 1
    if args.mode == "batch":
        batch = args.batch_size or int(spec.train.get("batch_size", 32))
    elif args.batch_size and args.batch_size != 1:
        raise ConfigError("--batch-size needs --mode batch (online mode updates after every sample)")
    threads = apply_threads(args.threads or default_threads(batch), torch=False, numba=True)
    eng = FixedEngine(spec, bits=args.bits, seed=args.seed, formats=formats, rounding=rounding, overflow=overflow,
                      lr_shift=args.lr_shift, feedback=args.feedback, rng=args.rng, batch_size=batch, mode=args.mode,
                      threads=threads)
    loaded = None
    if args.init_from:
        from ..fixed.from_float import load_train_checkpoint

        loaded = load_train_checkpoint(eng, args.init_from)
    name = args.dataset or spec.dataset or "digits"
    ds = load_dataset(name, args.data_dir, seed=args.seed, n_train=args.n_train, n_test=args.n_test)
    check_engine_dataset(eng, ds, name)
    # validate and quantize everything before any output exists (nothing half-written on bad data)
    Xtr = eng.quantize_inputs(ds.x_train)
    Xte = eng.quantize_inputs(ds.x_test, count=False)
    ytr = eng._labels(ds.y_train, Xtr.shape[0])
    yte = eng._labels(ds.y_test, Xte.shape[0])
    rule = spec.rule if not layer_rules else "+".join(sorted(set(eng.rules)))
    out = out or output_dir(f"runs/simulate-{spec.name}-{rule}-{eng.bits}b-s{args.seed}")
    twin = None if args.no_twin else eng.float_twin()
    # what a checkpoint must match to be resumed: everything that shapes the bits, not --epochs
    run_id = json.loads(json.dumps({
        "engine": eng.describe(), "dataset": ds.name, "n_train": int(Xtr.shape[0]), "n_test": int(Xte.shape[0]),
        "twin": twin is not None, "init_from": None if args.init_from is None else str(args.init_from)}))
    ckpt = out / checkpoint.FILE_NAME
    done = 0
    if ckpt.exists() and not args.no_resume:
        done = checkpoint.load(ckpt, eng, twin, run_id)
        if done > epochs:
            raise ConfigError(f"{out} holds {done} epochs, more than --epochs {epochs}; use another --out or "
                              f"--no-resume")
        if not args.quiet:
            print(f"resuming {out} after epoch {done} of {epochs}")

    t0 = time.perf_counter()
    n = Xtr.shape[0]
    show = not args.quiet and epochs > done and n > 0

    def train(advance_fixed, advance_twin) -> None:
        # epoch by epoch, engine then twin, with a checkpoint after each (the two are independent: same bits as
        # all the engine's epochs first)
        for _ in range(done, epochs):
            eng.fit_raw(Xtr, ytr, epochs=1, callback=advance_fixed)
            if twin is not None:
                twin.fit(ds.x_train, ytr, epochs=1, callback=advance_twin)
            out.mkdir(parents=True, exist_ok=True)
            checkpoint.save(ckpt, eng, twin, run_id)

    if show:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(TextColumn("{task.description:<12}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      transient=False) as prog:
            t_fix = prog.add_task(f"fixed {eng.bits}b", total=epochs * n, completed=done * n)
            t_tw = prog.add_task("float twin", total=epochs * n, completed=done * n) if twin is not None else None
            train(lambda k: prog.advance(t_fix, k), lambda k: prog.advance(t_tw, k))
    else:
        train(None, None)
    train_s = time.perf_counter() - t0
    pred = np.argmax(eng.output_raw(Xte), axis=1)
    acc = float((pred == yte).mean()) if len(yte) else float("nan")
    tw_acc = None
    agree = None
    if twin is not None:
        tw_pred = twin.predict(ds.x_test)
        tw_acc = float((tw_pred == yte).mean()) if len(yte) else float("nan")
        agree = float((tw_pred == pred).mean()) if len(yte) else float("nan")
    results = {
        "network": spec.name, "dataset": ds.name, "rule": rule, "rules": dict(zip(eng.layer_names, eng.rules)),
        "bits": eng.bits, "rng": eng.precision.rng, "mode": args.mode, "batch_size": eng.batch_size, "epochs": epochs, "seed": args.seed,
        "n_train": int(Xtr.shape[0]), "n_test": int(Xte.shape[0]),
        "test_accuracy": acc, "float_test_accuracy": tw_acc, "prediction_agreement": agree,
        "train_accuracy_online": eng.history[-1]["train_accuracy_online"] if eng.history else None,
        "counters": eng.counters, "formats": eng.formats(), "engine": eng.describe(),
        "config": spec.to_dict(), "train_seconds": round(train_s, 3), "resumed_after_epoch": done,
        "weights": "weights.npz",
        "init_from": None if loaded is None else {"checkpoint": str(args.init_from), "tensors": loaded},
    }
    out.mkdir(parents=True, exist_ok=True)
    eng.save(out / "weights.npz")
    write_json_atomic(out / "results.json", results)

    if loaded is not None:
        n = sum(t.get("n", 0) for lay in loaded.values() for t in lay.values())
        sat = sum(t.get("saturated", 0) for lay in loaded.values() for t in lay.values())
        fb = [lname for lname, lay in loaded.items() if lay.get("feedback", {}).get("source") == "checkpoint"]
        print(f"loaded {args.init_from}: {n:,} values quantized, {sat:,} saturated; feedback from the checkpoint: "
              f"{', '.join(fb) or 'none'}")
    tw_txt = f"{tw_acc:.4f}" if tw_acc is not None else "skipped"
    print(f"{spec.name} / {rule} / {eng.bits}-bit preset, {args.mode}, {epochs} epoch(s) on {ds.name} "
          f"({Xtr.shape[0]} train, {Xte.shape[0]} test): fixed-point test accuracy {acc:.4f}, float twin {tw_txt}")
    if not args.quiet:
        _print_counters(eng)
    print(f"results: {out / 'results.json'}   weights: {out / 'weights.npz'} (+ weights.json)")
    return 0


def _print_counters(eng) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="fixed-point events (overflow = saturation/wrap; zero = non-zero value or update rounded to 0)")
    table.add_column("layer")
    table.add_column("tensor")
    table.add_column("format")
    table.add_column("overflow", justify="right")
    table.add_column("zero", justify="right")
    fm = eng.formats()["layers"]
    for lname, tensors in eng.counters.items():
        for tname, c in tensors.items():
            table.add_row(lname, tname, str(fm[lname].get(tname) or ""), f"{c['overflow']:,}", f"{c['zero']:,}")
    Console(file=sys.stdout).print(table)
