"""``edgelearn data``: download, inspect and verify datasets."""
from __future__ import annotations

import argparse

import numpy as np

from ..errors import DataError

_NAMES_HELP = "mnist, cifar10, cifar100, digits, synthetic, cosine, lowrank"
#: load_dataset's arguments that ``data info`` passes from its own options
_OPTION_PARAMS = {"name": "NAME", "data_dir": "--data-dir", "seed": "--seed", "n_train": "--n-train",
                  "n_test": "--n-test"}


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "data", help="download, inspect and verify datasets",
        description="Download, inspect and verify datasets (see docs/datasets.md).",
    )
    parser.set_defaults(func=lambda args: _print_help(parser))
    actions = parser.add_subparsers(dest="data_command", metavar="ACTION")

    p = actions.add_parser("download", help="download mnist, cifar10 or cifar100 (md5-verified)",
                           description="Download a dataset's original archives, verify their md5 and unpack them.")
    p.add_argument("name", metavar="NAME", help="mnist, cifar10 or cifar100")
    # --data-dir as in every other command; --dir, its former name, still works (hidden)
    where = p.add_mutually_exclusive_group()
    where.add_argument("--data-dir", metavar="DIR", help="destination directory (created if needed; required)")
    where.add_argument("--dir", dest="data_dir", help=argparse.SUPPRESS)
    p.add_argument("--base-url", metavar="URL", help="mirror to fetch from instead of the official site")
    p.add_argument("--no-progress", action="store_true", help="do not show a progress bar")
    p.set_defaults(func=_cmd_download)

    p = actions.add_parser("info", help="load a dataset and print its shapes and class counts",
                           description="Load a dataset and print its shapes, ranges and class counts.")
    p.add_argument("name", metavar="NAME", help=_NAMES_HELP)
    p.add_argument("--data-dir", metavar="DIR", help="folder holding the files (default: $EDGELEARN_DATA/NAME)")
    p.add_argument("--seed", type=int, default=0, help="seed of generated datasets and of the digits split")
    p.add_argument("--n-train", type=int, metavar="N", help="keep the first N training examples")
    p.add_argument("--n-test", type=int, metavar="N", help="keep the first N test examples")
    p.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                   help="dataset parameter, e.g. -p d=4 for lowrank or -p label_mode=coarse for cifar100")
    p.set_defaults(func=_cmd_info)

    p = actions.add_parser("verify", help="check a local copy against the original md5s",
                           description="Check a local copy against the md5s of the original release "
                                       "(MNIST: of the decompressed IDX files).")
    p.add_argument("name", metavar="NAME", help="mnist, cifar10 or cifar100")
    p.add_argument("--data-dir", metavar="DIR", help="folder holding the files (default: $EDGELEARN_DATA/NAME)")
    p.set_defaults(func=_cmd_verify)


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _parse_value(text: str) -> object:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text


def parse_params(items: list[str]) -> dict[str, object]:
    """``["d=4", "label_mode=coarse"]`` -> ``{"d": 4, "label_mode": "coarse"}``."""
    params: dict[str, object] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key.isidentifier():
            raise DataError(f"bad --param {item!r}: expected KEY=VALUE")
        if key in _OPTION_PARAMS:  # load_dataset's own arguments, given by their options
            raise DataError(f"--param {item!r}: {key} is set with {_OPTION_PARAMS[key]}, not --param")
        params[key] = _parse_value(value.strip())
    return params


def _cmd_download(args: argparse.Namespace) -> int:
    from ..data.download import download
    from ..fileio import output_dir

    if args.data_dir is None:
        raise DataError("--data-dir DIR is required: the folder to download into")
    path = download(args.name, output_dir(args.data_dir, "--data-dir"), base_url=args.base_url,
                    progress=not args.no_progress)
    print(f"{args.name}: files in {path}")
    return 0


def _fmt_shape(shape: tuple[int, ...]) -> str:
    return str(tuple(int(d) for d in shape))


def _cmd_info(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from ..data import load_dataset

    ds = load_dataset(args.name, args.data_dir, seed=args.seed, n_train=args.n_train, n_test=args.n_test,
                      **parse_params(args.param))
    console = Console(highlight=False)
    title = f"{ds.name}: {ds.task}, input {_fmt_shape(ds.input_shape)}, output_dim {ds.output_dim}"
    splits = Table(title=title)
    for col in ("split", "x", "x range", "y"):
        splits.add_column(col)
    for split in ("train", "test"):
        x, y = getattr(ds, f"x_{split}"), getattr(ds, f"y_{split}")
        rng = f"[{x.min():.4g}, {x.max():.4g}]" if x.size else "-"
        splits.add_row(split, f"{x.dtype} {_fmt_shape(x.shape)}", rng, f"{y.dtype} {_fmt_shape(y.shape)}")
    console.print(splits)

    if ds.task == "classification":
        train, test = ds.class_counts("train"), ds.class_counts("test")
        names = ds.extra.get("label_names") or []
        if ds.num_classes <= 20:
            counts = Table(title="examples per class")
            for col in ("class", "name", "train", "test"):
                counts.add_column(col, justify="left" if col == "name" else "right")
            for c in range(ds.num_classes):
                counts.add_row(str(c), names[c] if c < len(names) else "", str(train[c]), str(test[c]))
        else:
            counts = Table(title=f"examples per class ({ds.num_classes} classes)")
            for col in ("split", "min", "max", "mean"):
                counts.add_column(col, justify="right")
            for split, cc in (("train", train), ("test", test)):
                counts.add_row(split, str(cc.min()), str(cc.max()), f"{cc.mean():.1f}")
        console.print(counts)
    else:
        targets = Table(title="targets")
        for col in ("split", "mean", "std", "min", "max"):
            targets.add_column(col, justify="right")
        for split in ("train", "test"):
            y = getattr(ds, f"y_{split}")
            if y.size:
                targets.add_row(split, f"{y.mean():.4g}", f"{y.std():.4g}", f"{y.min():.4g}", f"{y.max():.4g}")
        console.print(targets)
        if "A" in ds.extra:
            a = np.asarray(ds.extra["A"])
            console.print(f"teacher A: shape {_fmt_shape(a.shape)}, rank {np.linalg.matrix_rank(a)}")
    if "data_dir" in ds.extra:
        console.print(f"files: {ds.extra['data_dir']}")
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from ..data.download import verify

    result = verify(args.name, args.data_dir)
    for fname, md5 in result.items():
        print(f"ok  {md5}  {fname}")
    print(f"{args.name}: {len(result)} files match the original release")
    return 0
