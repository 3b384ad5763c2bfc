"""Learning and alignment curves of the LDFA Fig. 3b reproduction (``edgelearn reproduce ldfa-rank --full``) from its
run folders: test and training accuracy per epoch, and per hidden layer the feedback-to-W angle and the effective
rank of the delivered error, for every setting (bp, dfa, kp, LDFA r = 32, 10, 4) that has a metrics.json.

    .venv/bin/python scripts/ldfa_curves.py --runs /work/runs/reproduce --out docs/results/ldfa-rank-curves.png

Seeds (folders ldfa-NAME, ldfa-NAME-s1, ...) are averaged epoch by epoch over the runs that reached that epoch;
an unfinished run is drawn as far as it got (the legend gives the epochs and seeds of each setting).
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from edgelearn.report.reproduce import LDFA_RANKS

SETTINGS = ("bp", "dfa", "kp", *(f"r{r}" for r in LDFA_RANKS))


def _runs(root: Path, name: str) -> list[dict]:
    found = []
    for d in sorted(root.glob(f"ldfa-{name}")) + sorted(root.glob(f"ldfa-{name}-s[0-9]*")):
        try:
            m = json.loads((d / "metrics.json").read_text())
        except (OSError, ValueError):
            continue
        if m.get("epochs"):
            found.append(m)
    return found


def _mean_curve(runs: list[dict], value) -> tuple[list[int], list[float]]:
    """Epoch -> mean over the runs that have it of ``value(epoch record)`` (None values skipped)."""
    per: dict[int, list[float]] = {}
    for m in runs:
        for e in m["epochs"]:
            v = value(e)
            if v is not None:
                per.setdefault(e["epoch"], []).append(v)
    ep = sorted(per)
    return ep, [statistics.fmean(per[x]) for x in ep]


def _layer(name: str, field: str):
    def get(e):
        for layer in e.get("layers", []):
            if layer["layer"] == name:
                return layer.get(field)
        return None
    return get


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", default="/work/runs/reproduce", help="the --out of edgelearn reproduce ldfa-rank")
    ap.add_argument("--out", default="docs/results/ldfa-rank-curves.png")
    a = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    runs = {s: _runs(Path(a.runs), s) for s in SETTINGS}
    runs = {s: r for s, r in runs.items() if r}
    if not runs:
        raise SystemExit(f"ldfa_curves: no ldfa-* run with metrics in {a.runs}")
    colours = dict(zip(SETTINGS, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    layers = []
    for rs in runs.values():
        for e in rs[0]["epochs"][:1]:
            layers += [x["layer"] for x in e.get("layers", []) if x["layer"] not in layers]
    ncol = 1 + -(-len(layers) // 2)  # accuracies in the first column, two hidden layers per further column
    fig, axes = plt.subplots(2, ncol, figsize=(4.2 * ncol, 7), dpi=100, squeeze=False)
    ax_test, ax_train = axes[0, 0], axes[1, 0]
    for s, rs in runs.items():
        n = max(len(m["epochs"]) for m in rs)
        label = f"{s} ({len(rs)} seed{'s' * (len(rs) > 1)}, {n} ep)"
        ax_test.plot(*_mean_curve(rs, lambda e: 100 * e["test_accuracy"]), color=colours[s], label=label, lw=1.2)
        ax_train.plot(*_mean_curve(rs, lambda e: 100 * e["train_accuracy"]), color=colours[s], lw=1.2)
    ax_test.set_title("test accuracy (%)", fontsize=9)
    ax_train.set_title("training accuracy (%)", fontsize=9)
    ax_test.legend(fontsize=7)
    # per hidden layer: feedback-to-W angle (solid, left axis) and effective rank of the delivered error (right)
    others = [axes[i, j] for j in range(1, ncol) for i in range(2)]
    for ax in others[len(layers):]:
        ax.axis("off")
    for ax, name in zip(others, layers):
        twin = ax.twinx()
        for s, rs in runs.items():
            if s == "bp":
                continue
            ep, v = _mean_curve(rs, _layer(name, "feedback_alignment"))
            if ep:
                ax.plot(ep, v, color=colours[s], lw=1.2)
            ep, v = _mean_curve(rs, _layer(name, "effective_rank"))
            if ep:
                twin.plot(ep, v, color=colours[s], lw=1, ls="--")
        ax.set_title(f"{name}: feedback-to-W angle (deg, solid);\neffective rank of the error (dashed, right)",
                     fontsize=8)
        ax.set_ylim(0, 95)
        twin.set_yscale("log")
        twin.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        twin.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        twin.tick_params(labelsize=7)
    for ax in axes.flat:
        ax.set_xlabel("epoch", fontsize=8)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
    fig.suptitle("LDFA Fig. 3b reproduction: 4x512 MLP, CIFAR-10 subset (4,000 / 1,000), mean over the seeds run",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(a.out)
    print(f"wrote {a.out}: " + ", ".join(f"{s} {len(rs)} seed(s)" for s, rs in runs.items()))
    # each run beside the BP run of its own seed over the same epochs (an unfinished one: its last 10 so far)
    bp = {m.get("seed"): {e["epoch"]: e for e in m["epochs"]} for m in runs.get("bp", [])}
    print("setting  seed  epochs  test acc (last 10 ep)  BP, same seed and epochs  difference  train acc")
    for s, rs in runs.items():
        for m in rs:
            ep = m["epochs"][-10:]
            acc = statistics.fmean(100 * e["test_accuracy"] for e in ep)
            mine = bp.get(m.get("seed"), {})
            same = [mine[e["epoch"]] for e in ep if e["epoch"] in mine]
            ref = statistics.fmean(100 * e["test_accuracy"] for e in same) if len(same) == len(ep) else None
            print(f"{s:8s} {m.get('seed')!s:>4s}  {ep[-1]['epoch']:6d}  {acc:21.2f}  "
                  f"{'' if ref is None else f'{ref:.2f}':>24s}  {'' if ref is None else f'{acc - ref:+.2f}':>10s}  "
                  f"{100 * ep[-1]['train_accuracy']:9.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
