"""Render a sweep's saved results into report.md, report.html, results.json/csv and PNG plots (no re-run).

Runs that are listed in the plan but missing or unreadable are named in a "Missing runs" section; the rest of the
report is drawn from what is there.
"""
from __future__ import annotations

import csv
import html
import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .sweep import PLAN_FILE, RUNS_DIR, load_result


def _mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _fmt(values: list[float], pct: bool = True) -> str:
    if not values:
        return "–"
    m, s = _mean_std(values)
    k = 100 if pct else 1
    return f"{k * m:.2f} ± {k * s:.2f}"


def collect(out: Path) -> tuple[dict[str, Any], list[dict[str, Any]], list[str]]:
    """(plan, results, missing run names)."""
    plan_path = out / PLAN_FILE
    try:
        plan = json.loads(plan_path.read_text())
    except (OSError, ValueError):
        raise ConfigError(f"{out}: no readable {PLAN_FILE}; run the sweep first") from None
    results, missing = [], []
    for name in plan.get("runs", []):
        res = load_result(out / RUNS_DIR / f"{name}.json")
        (results.append(res) if res is not None else missing.append(name))
    return plan, results, missing


def _plots(out: Path, cfg: dict[str, Any], fixed: dict, floats: dict) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    rules = cfg["rules"]
    colours = dict(zip(rules, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    rnd0 = cfg["roundings"][0]
    # 1. accuracy vs word length
    fig, ax = plt.subplots(figsize=(6, 4), dpi=90)
    for rule in rules:
        bits = sorted(b for (r, b, rnd) in fixed if r == rule and rnd == rnd0)
        if not bits:
            continue
        acc = [_mean_std([x["test_accuracy"] for x in fixed[(rule, b, rnd0)]]) for b in bits]
        twin = [_mean_std([x["float_test_accuracy"] for x in fixed[(rule, b, rnd0)]])[0] for b in bits]
        c = colours[rule]
        ax.errorbar(bits, [100 * a for a, _ in acc], yerr=[100 * s for _, s in acc], marker="o", color=c, capsize=3,
                    label=f"{rule} fixed")
        ax.plot(bits, [100 * t for t in twin], ls="--", color=c, alpha=0.7, label=f"{rule} float twin")
        if floats.get(rule):
            ax.axhline(100 * _mean_std([x["test_accuracy"] for x in floats[rule]])[0], color=c, ls=":", alpha=0.7)
    ax.set_xticks(sorted({b for (_, b, _) in fixed}))
    ax.set_xlabel("word length (bits)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("accuracy vs word length (dotted: float reference)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out / "accuracy_vs_bits.png")
    plt.close(fig)
    made.append(("accuracy_vs_bits.png", "Test accuracy vs word length: fixed point (mean ± std over seeds), its "
                 "float twin (dashed) and the float PyTorch reference (dotted)."))
    # 2. learning curves at the middle word length
    bits_all = sorted({b for (_, b, _) in fixed})
    if bits_all and cfg.get("epochs", 1) > 1:
        b = 8 if 8 in bits_all else bits_all[len(bits_all) // 2]
        fig, ax = plt.subplots(figsize=(6, 4), dpi=90)
        for rule in rules:
            runs = fixed.get((rule, b, rnd0), [])
            if not runs:
                continue
            n = min(len(x["curve"]) for x in runs)
            ep = list(range(1, n + 1))
            ax.plot(ep, [100 * statistics.fmean(x["curve"][i] for x in runs) for i in range(n)], color=colours[rule],
                    marker="o", label=f"{rule} {b}-bit")
            ax.plot(ep, [100 * statistics.fmean(x["twin_curve"][i] for x in runs) for i in range(n)],
                    color=colours[rule], ls="--", label=f"{rule} twin")
        ax.set_xlabel("epoch")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"learning curves, {b}-bit vs float twin")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "learning_curves.png")
        plt.close(fig)
        made.append(("learning_curves.png", f"Learning curves at {b} bits (solid) and of the float twin (dashed)."))
    # 3. alignment angle to BP over training (float reference)
    if any(floats.values()):
        fig, ax = plt.subplots(figsize=(6, 4), dpi=90)
        for rule, runs in floats.items():
            for layer in (runs[0]["angles"][0] if runs and runs[0]["angles"] else {}):
                n = min(len(x["angles"]) for x in runs)
                vals = []
                for i in range(n):
                    v = [x["angles"][i].get(layer) for x in runs if x["angles"][i].get(layer) is not None]
                    vals.append(statistics.fmean(v) if v else float("nan"))
                ax.plot(range(1, n + 1), vals, marker="o", color=colours.get(rule), label=f"{rule} {layer}")
        ax.axhline(90, color="grey", lw=0.8)
        ax.set_xlabel("epoch")
        ax.set_ylabel("angle to BP's signal (deg)")
        ax.set_title("per-layer alignment with BP (float reference)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "alignment.png")
        plt.close(fig)
        made.append(("alignment.png", "Angle between each rule's modulatory signal and BP's, per hidden layer, "
                     "float reference, after every epoch."))
    # 4. counters vs word length
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.5), dpi=90)
    for rule in rules:
        bits = sorted(b for (r, b, rnd) in fixed if r == rule and rnd == rnd0)
        if not bits:
            continue
        for ax, key in zip(axes, ("overflow_events", "zero_updates")):
            ax.plot(bits, [max(1, statistics.fmean(x[key] for x in fixed[(rule, b, rnd0)])) for b in bits],
                    marker="o", color=colours[rule], label=rule)
    for ax, title in zip(axes, ("overflow / saturation events", "weight/bias updates rounded to zero")):
        ax.set_yscale("log")
        ax.set_xticks(sorted({b for (_, b, _) in fixed}))
        ax.set_xlabel("word length (bits)")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "counters_vs_bits.png")
    plt.close(fig)
    made.append(("counters_vs_bits.png", "Fixed-point events per run vs word length (mean over seeds, log scale)."))
    return made


def render(out: str | Path) -> dict[str, Any]:
    """Write report.md, report.html, results.json, results.csv and the PNGs into ``out`` from saved results."""
    out = Path(out)
    plan, results, missing = collect(out)
    cfg = plan["config"]
    fixed: dict[tuple, list] = defaultdict(list)
    floats: dict[str, list] = defaultdict(list)
    for r in results:
        k = r["key"]
        if k["kind"] == "fixed":
            fixed[(k["rule"], k["bits"], k["rounding"])].append(r)
        else:
            floats[k["rule"]].append(r)
    rows = []
    for (rule, bits, rnd), runs in sorted(fixed.items(), key=lambda kv: (cfg["rules"].index(kv[0][0]) if kv[0][0] in cfg["rules"] else 99, kv[0][1], kv[0][2])):
        acc = [x["test_accuracy"] for x in runs]
        twin = [x["float_test_accuracy"] for x in runs]
        ref = [x["test_accuracy"] for x in floats.get(rule, [])]
        rows.append({"rule": rule, "bits": bits, "rounding": rnd, "seeds": len(runs),
                     "test_accuracy_mean": _mean_std(acc)[0], "test_accuracy_std": _mean_std(acc)[1],
                     "float_twin_mean": _mean_std(twin)[0], "float_twin_std": _mean_std(twin)[1],
                     "float_reference_mean": _mean_std(ref)[0],
                     "gap_to_twin_points": 100 * (_mean_std(twin)[0] - _mean_std(acc)[0]),
                     "overflow_events": statistics.fmean(x["overflow_events"] for x in runs),
                     "zero_updates": statistics.fmean(x["zero_updates"] for x in runs),
                     "_acc": acc, "_twin": twin, "_ref": ref})
    plots = _plots(out, cfg, fixed, floats) if results else []
    public = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
    (out / "results.json").write_text(json.dumps({"config": cfg, "rows": public, "missing": missing}, indent=1) + "\n")
    with open(out / "results.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(public[0]) if public else ["rule"])
        w.writeheader()
        w.writerows(public)
    data = cfg.get("dataset") or "the config's dataset"
    lines = [f"# Float vs fixed point: {cfg['config']}", "",
             f"Online learning in the bit-accurate engine ({cfg['epochs']} epoch(s), dataset {data}"
             + (f", first {cfg['n_train']} training samples" if cfg.get("n_train") else "")
             + (f", {cfg['n_test']} test samples" if cfg.get("n_test") else ", full test set")
             + f"), {cfg['seeds']} seed(s); each fixed-point run beside its float twin (same algorithm in float64) "
             "and the float PyTorch reference of the rule (the config's optimiser and learning rate).", ""]
    if missing:
        lines += ["## Missing runs", "",
                  f"{len(missing)} of {len(plan['runs'])} runs have no readable result (not run yet, interrupted, or "
                  "corrupt); the tables below leave them out:", ""] + [f"- `{m}`" for m in missing] + [""]
    lines += ["## Test accuracy (%), mean ± std over seeds", "",
              "| rule | bits | rounding | fixed point | float twin | gap (points) | float reference | overflow events | zero updates |",
              "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['rule']} | {r['bits']} | {r['rounding']} | {_fmt(r['_acc'])} | {_fmt(r['_twin'])} | "
                     f"{r['gap_to_twin_points']:+.2f} | {_fmt(r['_ref'])} | {r['overflow_events']:,.0f} | "
                     f"{r['zero_updates']:,.0f} |")
    lines.append("")
    for png, caption in plots:
        lines += [f"![{caption}]({png})", "", f"*{caption}*", ""]
    lines += ["Results: `results.json`, `results.csv`; raw runs in `runs/`. Re-render without re-running: "
              f"`edgelearn report --out {out} --render-only`.", ""]
    md = "\n".join(lines)
    (out / "report.md").write_text(md)
    (out / "report.html").write_text(_html(md))
    return {"rows": public, "missing": missing, "plots": [p for p, _ in plots]}


def _html(md: str) -> str:
    """A small, dependency-free markdown subset -> HTML (headings, tables, images, lists, paragraphs)."""
    body, table = [], []

    def flush():
        if table:
            cells = [[c.strip() for c in row.strip("|").split("|")] for row in table if not set(row) <= set("|-:")]
            body.append("<table>" + "".join(
                "<tr>" + "".join(f"<{'th' if i == 0 else 'td'}>{html.escape(c)}</{'th' if i == 0 else 'td'}>" for c in row) + "</tr>"
                for i, row in enumerate(cells)) + "</table>")
            table.clear()

    for line in md.splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        flush()
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body.append(f"<h{level}>{html.escape(line.lstrip('# '))}</h{level}>")
        elif line.startswith("!["):
            alt, src = line[2:].split("](", 1)
            body.append(f'<img src="{html.escape(src.rstrip(")"))}" alt="{html.escape(alt)}">')
        elif line.startswith("- "):
            body.append(f"<li>{html.escape(line[2:])}</li>")
        elif line.strip():
            body.append(f"<p>{html.escape(line)}</p>")
    flush()
    style = "body{font-family:sans-serif;max-width:60em;margin:2em auto}table{border-collapse:collapse}" \
            "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}img{max-width:100%}"
    return f"<!doctype html><html><head><meta charset='utf-8'><style>{style}</style></head><body>{''.join(body)}</body></html>\n"
