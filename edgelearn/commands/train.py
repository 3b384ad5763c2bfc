"""``edgelearn train``: train a network with a learning rule in the float reference."""
from __future__ import annotations

import argparse
from pathlib import Path

from .common import load_spec, nonneg_int, parse_layer_rules, positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a network with a learning rule (float PyTorch reference)",
        description="Train a network description with a learning rule on CPU or GPU. Without --config, trains the "
                    "embedded default (a tanh MLP on scikit-learn's digits) in seconds. Writes a checkpoint per epoch "
                    "and resumes from it; metrics go to OUT/metrics.json.",
    )
    p.add_argument("--config", "-c", help="network YAML file or name in models/ (default: embedded digits MLP)")
    p.add_argument("--rule", "-r", help="learning rule of every layer: bp, shallow, fa, kp, dfa, sdfa, drtp, ldfa, dldfa, ssa (default: the config's)")
    p.add_argument("--layer-rule", action="append", metavar="NAME=RULE", help="per-layer rule override (repeatable)")
    p.add_argument("--epochs", "-e", type=nonneg_int, help="number of epochs (default: the config's)")
    p.add_argument("--seed", "-s", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--device", "-d", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:N")
    p.add_argument("--dataset", help="dataset name (default: the config's)")
    p.add_argument("--data-dir", help="directory of MNIST/CIFAR files")
    p.add_argument("--batch-size", "-b", type=positive_int, help="minibatch size (default: the config's)")
    p.add_argument("--lr", type=float, help="learning rate (default: the config's, per rule)")
    p.add_argument("--n-train", type=positive_int, help="use only the first N training samples")
    p.add_argument("--n-test", type=positive_int, help="use only the first N test samples")
    p.add_argument("--out", "-o", help="output directory (default runs/NAME-RULE-sSEED)")
    p.add_argument("--no-resume", action="store_true", help="start over even if OUT holds a checkpoint")
    p.add_argument("--no-probe", action="store_true", help="skip the per-epoch alignment probe")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..train import train

    spec = load_spec(args.config)
    rule = args.rule or spec.rule
    out = Path(args.out or f"runs/{spec.name}-{rule}-s{args.seed}")
    metrics = train(spec, args.rule, parse_layer_rules(args.layer_rule), dataset=args.dataset, data_dir=args.data_dir,
                    epochs=args.epochs, seed=args.seed, device=args.device, out=out, batch_size=args.batch_size,
                    lr=args.lr, n_train=args.n_train, n_test=args.n_test, resume=not args.no_resume,
                    progress=not args.quiet, probe=not args.no_probe)
    final = metrics["final"]
    if final.get("test_accuracy") is not None:
        print(f"{spec.name} / {metrics['rule']}: test accuracy {final['test_accuracy']:.4f} "
              f"(train {final['train_accuracy']:.4f}) after {final['epoch']} epoch(s) on {metrics['device']}")
    elif final.get("test_loss") is not None:
        print(f"{spec.name} / {metrics['rule']}: test loss {final['test_loss']:.5g} after {final['epoch']} epoch(s)")
    print(f"metrics: {out / 'metrics.json'}   checkpoint: {out / 'checkpoint.pt'}")
    return 0
