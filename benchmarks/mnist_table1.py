"""DRTP paper Table 1 (FC1-500 on MNIST, no dropout) with the float reference, beside the paper's numbers.

    .venv/bin/python benchmarks/mnist_table1.py --data-dir ../shared/data/mnist --epochs 20 --out runs/table1

Adam with the paper's learning rates (its Table 3), batch 60, one seed. The test error is averaged over the last
min(10, epochs) epochs, as the paper does over its last 10 of 100. Each run checkpoints, so re-running resumes.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from edgelearn.data import SHARED_DATA
from edgelearn.network import load_network
from edgelearn.train import train, write_json_atomic

PAPER_TABLE1_FC1_500 = {"bp": 1.65, "fa": 1.71, "dfa": 1.76, "sdfa": 4.74, "drtp": 4.61, "shallow": 8.25}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=str(SHARED_DATA / "mnist"))
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rules", default="bp,fa,dfa,sdfa,drtp,shallow")
    ap.add_argument("--config", default="fc1-500")
    ap.add_argument("--out", default="runs/table1")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    spec = load_network(args.config)
    out = Path(args.out)
    rows = []
    for rule in args.rules.split(","):
        t0 = time.perf_counter()
        m = train(spec, rule, data_dir=args.data_dir, epochs=args.epochs, seed=args.seed, out=out / rule,
                  progress=False, device="cpu")
        acc = m["test_accuracy"]
        last = acc[-min(10, len(acc)):]
        err = 100 * (1 - sum(last) / len(last))
        epoch_s = sum(e["epoch_time_s"] for e in m["epochs"]) / len(m["epochs"])
        rows.append({"rule": rule, "test_error": err, "final_test_error": 100 * (1 - acc[-1]),
                     "train_error": 100 * (1 - m["train_accuracy"][-1]), "paper": PAPER_TABLE1_FC1_500.get(rule),
                     "epochs": len(acc), "lr": m["lr"], "epoch_time_s": epoch_s,
                     "angle_to_bp": m["epochs"][-1]["layers"][0]["angle_to_bp"]})
        print(f"{rule:8s} test error {err:5.2f} %  (paper {PAPER_TABLE1_FC1_500.get(rule)} %)  "
              f"{epoch_s:.2f} s/epoch  [{time.perf_counter() - t0:.0f} s]", flush=True)
    lines = [f"FC1-500 on MNIST, {args.epochs} epochs (paper: 100), batch 60, Adam, Table 3 learning rates, seed {args.seed}",
             "", "| rule | test error (mean of last epochs) | paper Table 1 | gap | train error | angle to BP (deg) | s/epoch |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        gap = r["test_error"] - r["paper"] if r["paper"] is not None else float("nan")
        lines.append(f"| {r['rule']} | {r['test_error']:.2f} % | {r['paper']} % | {gap:+.2f} | {r['train_error']:.2f} % | "
                     f"{r['angle_to_bp'] if r['angle_to_bp'] is None else round(r['angle_to_bp'], 1)} | {r['epoch_time_s']:.2f} |")
    text = "\n".join(lines)
    print(text)
    out.mkdir(parents=True, exist_ok=True)
    (out / "table1.md").write_text(text + "\n")
    write_json_atomic(out / "table1.json", rows)


if __name__ == "__main__":
    main()
