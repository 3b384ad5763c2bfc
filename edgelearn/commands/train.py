"""``edgelearn train``: train a network with a learning rule in the float reference (one process, or one per GPU /
node under ``torchrun``)."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import ConfigError
from ..fileio import output_dir
from ..threads import LARGE_BATCH, add_threads_arg, check_threads
from .common import load_spec, nonneg_int, parse_layer_rules, positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a network with a learning rule (float PyTorch reference)",
        description="Train a network description with a learning rule on CPU or GPU. Without --config, trains the "
                    "embedded default (a tanh MLP on scikit-learn's digits) in seconds. Writes a checkpoint per epoch "
                    "and resumes from it; metrics go to OUT/metrics.json. Experiment configs (experiments/NAME) hold "
                    "the papers' runs as variants (--variant NAME or all). Under torchrun each process takes one GPU "
                    "(or CPU share) and a slice of every global batch; see docs/fullscale.md.",
    )
    p.add_argument("--config", "-c", help="network YAML file or name in models/ (default: embedded digits MLP)")
    p.add_argument("--variant", "-V", help="variant of an experiment config, or 'all' to run every variant in turn "
                                           "into OUT/VARIANT (default: the config's default_variant)")
    p.add_argument("--rule", "-r", help="learning rule of every layer: bp, shallow, fa, kp, dfa, sdfa, drtp, ldfa, dldfa, ssa (default: the config's)")
    p.add_argument("--layer-rule", action="append", metavar="NAME=RULE", help="per-layer rule override (repeatable)")
    p.add_argument("--epochs", "-e", type=nonneg_int, help="number of epochs (default: the config's)")
    p.add_argument("--seed", "-s", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--device", "-d", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:N")
    p.add_argument("--dataset", help="dataset name (default: the config's)")
    p.add_argument("--data-dir", help="directory of MNIST/CIFAR files")
    p.add_argument("--batch-size", "-b", type=positive_int, help="global minibatch size (default: the config's)")
    p.add_argument("--lr", type=float, help="learning rate (default: the config's, per rule)")
    p.add_argument("--n-train", type=positive_int, help="use only the first N training samples")
    p.add_argument("--n-test", type=positive_int, help="use only the first N test samples")
    p.add_argument("--out", "-o", help="output directory (default runs/NAME[-VARIANT]-RULE-sSEED)")
    p.add_argument("--no-resume", action="store_true", help="start over even if OUT holds a checkpoint")
    p.add_argument("--no-probe", action="store_true", help="skip the per-epoch alignment probe")
    p.add_argument("--smoke", action="store_true", help="smoke test: widths / 16, 2 epochs of 2 steps of 8 samples on "
                                                       "random data (on the real data's first rows with --data-dir)")
    p.add_argument("--amp", choices=("auto", "on", "off"), default="auto",
                   help="bfloat16 mixed precision: auto = on for CUDA, off on the CPU (default auto)")
    p.add_argument("--checkpoint-every", type=positive_int, metavar="STEPS",
                   help="also checkpoint every STEPS optimiser steps (default: after each epoch only)")
    p.add_argument("--max-steps", type=positive_int, help="stop after this many optimiser steps (no final checkpoint)")
    p.add_argument("--deterministic", action="store_true", help="deterministic CUDA kernels (bit-reproducible on a GPU, slower)")
    p.add_argument("--distributed", choices=("auto", "off"), default="auto",
                   help="auto: join the torchrun job when WORLD_SIZE > 1 (default)")
    add_threads_arg(p, "on the CPU 1, or the cores (shared by the torchrun processes) for batches of "
                       f"{LARGE_BATCH} or more")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..train import train

    check_threads(args.threads)
    spec = load_spec(args.config)
    if args.variant and not spec.variants:
        raise ConfigError(f"{spec.source} has no variants (--variant applies to experiment configs)")
    if args.variant == "all":
        names = spec.variant_names()
    else:
        names = [args.variant or spec.variant]
    layer_rules = parse_layer_rules(args.layer_rule, spec)  # before any output folder exists
    if args.out is not None:
        output_dir(args.out)  # an empty --out is refused here (as a Path it would be the working directory)
    rank0 = _is_rank0()
    runs = []
    for name in names:  # every output folder checked before the first run starts
        s = spec.with_variant(name) if name and name != spec.variant else spec
        rule = args.rule or s.rule
        if args.out is not None and args.variant == "all":
            out = Path(args.out) / name
        elif args.out is not None:
            out = Path(args.out)
        else:
            out = Path(f"runs/{s.name}{'-' + name if name else ''}-{rule}-s{args.seed}{'-smoke' if args.smoke else ''}")
        runs.append((name, s, output_dir(out)))
    for name, s, out in runs:
        metrics = train(s, args.rule, layer_rules, dataset=args.dataset, data_dir=args.data_dir,
                        epochs=args.epochs, seed=args.seed, device=args.device, out=out, batch_size=args.batch_size,
                        lr=args.lr, n_train=args.n_train, n_test=args.n_test, resume=not args.no_resume,
                        progress=not args.quiet, probe=not args.no_probe, smoke=args.smoke, amp=args.amp,
                        checkpoint_every=args.checkpoint_every, max_steps=args.max_steps,
                        distributed=args.distributed, deterministic=args.deterministic, threads=args.threads)
        if not rank0:
            continue
        final = metrics["final"]
        per_layer = ", ".join(f"{k}: {v}" for k, v in (metrics.get("rules") or {}).items())
        what = f"{s.name}{' [' + name + ']' if name else ''} / {metrics['rule']}{' (' + per_layer + ')' if per_layer else ''}"
        world = f" x{metrics['world_size']} processes" if metrics["world_size"] > 1 else ""
        if not metrics["complete"]:
            print(f"{what}: stopped after --max-steps {args.max_steps} (resume with the same command)")
        elif final.get("test_accuracy") is not None:
            print(f"{what}: test accuracy {final['test_accuracy']:.4f} (train {final['train_accuracy']:.4f}) "
                  f"after {final['epoch']} epoch(s) on {metrics['device']}{world}")
        elif final.get("test_loss") is not None:
            print(f"{what}: test loss {final['test_loss']:.5g} after {final['epoch']} epoch(s)")
        for layer, info in (metrics.get("receptive_fields") or {}).items():
            if info.get("png"):
                print(f"receptive fields of {layer}: {out / info['png']} (mean isotropy {info['isotropy_mean']:.3f})")
        ckpt = metrics.get("checkpoint")
        print(f"metrics: {out / 'metrics.json'}   " + (f"checkpoint: {ckpt}" if ckpt else "(no checkpoint written)"))
    return 0


def _is_rank0() -> bool:
    import os

    return os.environ.get("RANK", "0") == "0"
