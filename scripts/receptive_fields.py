"""Receptive fields of several finished runs side by side (LDFA paper Fig. 4 style), one row per run.

    .venv/bin/python scripts/receptive_fields.py runs/fig4/bp runs/fig4/ldfa-r2 runs/fig4/ldfa-r32 \\
        --layer ret2 --out fig4-ret2.png

Each run directory is an ``edgelearn train --out`` of a config with ``experiment.receptive_fields`` (e.g.
``experiments/ldfa-fig4-retina``): training wrote ``receptive_fields_LAYER.npy`` and ``metrics.json`` there. The row
label is the run's variant (or rule) and its mean isotropy (1: radially symmetric, centre-surround; low: oriented).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgelearn.torch_ref.receptive import plot_receptive_fields  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="run directories (edgelearn train --out)")
    ap.add_argument("--layer", default="ret2", help="conv layer (default ret2, the retina's output)")
    ap.add_argument("--out", default="receptive_fields.png")
    ap.add_argument("--title", default=None)
    args = ap.parse_args(argv)
    rows = []
    for run in map(Path, args.runs):
        npy = run / f"receptive_fields_{args.layer}.npy"
        if not npy.is_file():
            print(f"receptive_fields: {npy} not found (train with a config whose experiment.receptive_fields lists "
                  f"{args.layer!r})", file=sys.stderr)
            return 2
        label = run.name
        meta = run / "metrics.json"
        if meta.is_file():
            m = json.loads(meta.read_text())
            label = m.get("variant") or m.get("rule") or label
        rows.append((label, np.load(npy)))
    title = args.title or f"receptive fields of {args.layer} (numbers: isotropy of each field)"
    path = plot_receptive_fields(rows, args.out, title=title)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
