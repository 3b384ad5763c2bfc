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
from ..fileio import write_json_atomic
from .area import AREA_COLUMNS, AREA_FILE, area_of, load_area
from .sweep import PLAN_FILE, RUNS_DIR, load_result


#: the float references' names in tables and legends (the config-optimiser run carries its own: sweep.float_label)
ONLINE_LABEL = "float (online SGD)"
FLOAT_FALLBACK_LABEL = "float (config optimiser)"
#: confidence level of the intervals on the gaps (t-distribution over seeds)
CONFIDENCE = 0.95
#: datapath tensors of the rates table and plot, in the engine's counter names (input saturation is apart)
RATE_TENSORS = ("weight", "bias", "accum", "act", "deriv", "error", "update")
#: line styles of the four accuracy sources in every plot
STYLES = {"fixed": "-", "twin": "--", "online": ":", "float": "-."}


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


def mean_ci(values: list[float], confidence: float = CONFIDENCE) -> dict[str, Any]:
    """Mean, sample std and the two-sided ``confidence`` interval of the mean over seeds, from Student's t with
    n - 1 degrees of freedom: mean ± t · std / sqrt(n) (no interval from one seed)."""
    import math

    from scipy.special import stdtrit  # Student's t quantile (scipy.stats costs a second to import)

    n = len(values)
    if n == 0:
        return {"n": 0, "mean": None, "std": None, "ci_low": None, "ci_high": None}
    m, s = _mean_std(values)
    if n < 2:
        return {"n": 1, "mean": m, "std": 0.0, "ci_low": None, "ci_high": None}
    half = float(stdtrit(n - 1, 0.5 + confidence / 2)) * s / math.sqrt(n)
    return {"n": n, "mean": m, "std": s, "ci_low": m - half, "ci_high": m + half}


def paired_gap(a: dict[int, float], b: dict[int, float]) -> dict[str, Any]:
    """a - b in points (x 100), over the seeds both have (a run and its reference share the seed's data, order
    and initial state), with :func:`mean_ci`."""
    seeds = sorted(set(a) & set(b))
    return mean_ci([100 * (a[s] - b[s]) for s in seeds])


def _gap_cell(g: dict[str, Any]) -> str:
    if not g["n"]:
        return "–"
    if g["ci_low"] is None:
        return f"{g['mean']:+.2f} (1 seed)"
    return f"{g['mean']:+.2f} ± {g['std']:.2f} [{g['ci_low']:+.2f}, {g['ci_high']:+.2f}]"


def _by_seed(runs: list[dict[str, Any]], field: str = "test_accuracy") -> dict[int, float]:
    return {r["key"]["seed"]: r[field] for r in runs}


def tensor_rates(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per tensor (summed over the layers and the runs): overflow and zero events, their opportunities and the
    rates events / opportunities. ``input`` is the saturation (and flush to zero) of the input quantizer, a
    property of the data and the input format, never counted as a datapath overflow."""
    ev: dict[str, dict[str, int]] = defaultdict(lambda: {"overflow": 0, "zero": 0, "opportunities": 0})
    for r in runs:
        opps = r.get("opportunities")
        if opps is None:  # a run file from before the rates: no denominators
            continue
        for layer, tensors in r["counters"].items():
            for t, c in tensors.items():
                e = ev[t]
                e["overflow"] += int(c.get("overflow", 0))
                e["zero"] += int(c.get("zero", 0))
                e["opportunities"] += int(opps[layer].get(t, 0))
    out = {}
    for t, e in ev.items():
        n = e["opportunities"]
        out[t] = {**e, "overflow_rate": e["overflow"] / n if n else None, "zero_rate": e["zero"] / n if n else None}
    return out


def _rate(v: float | None) -> str:
    if v is None:
        return "–"
    return "0" if v == 0 else f"{v:.1e}"


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


class _Groups:
    """The runs of a sweep by kind: fixed[(rule, bits, rounding)], online[rule], floats[rule]."""

    def __init__(self, cfg: dict[str, Any], results: list[dict[str, Any]]):
        self.cfg = cfg
        self.fixed: dict[tuple, list] = defaultdict(list)
        self.online: dict[str, list] = defaultdict(list)
        self.floats: dict[str, list] = defaultdict(list)
        for r in results:
            k = r["key"]
            if k["kind"] == "fixed":
                self.fixed[(k["rule"], k["bits"], k["rounding"])].append(r)
            elif k["kind"] == "online":
                self.online[k["rule"]].append(r)
            else:
                self.floats[k["rule"]].append(r)
        rules = cfg["rules"]
        self.rules = [r for r in rules if any(k[0] == r for k in self.fixed) or self.online.get(r)
                      or self.floats.get(r)]
        self.bits = sorted({b for (_, b, _) in self.fixed})
        self.roundings = [x for x in cfg["roundings"] if any(k[2] == x for k in self.fixed)]
        self.float_label = next((r["label"] for runs in self.floats.values() for r in runs if "label" in r),
                                FLOAT_FALLBACK_LABEL)

    def keys(self):
        order = {r: i for i, r in enumerate(self.cfg["rules"])}
        return sorted(self.fixed, key=lambda k: (order.get(k[0], 99), k[1], self.cfg["roundings"].index(k[2])
                                                 if k[2] in self.cfg["roundings"] else 99))


def _rows(g: _Groups) -> list[dict[str, Any]]:
    rows = []
    for key in g.keys():
        rule, bits, rnd = key
        runs = g.fixed[key]
        fx, tw = _by_seed(runs), _by_seed(runs, "float_test_accuracy")
        on, fl = _by_seed(g.online.get(rule, [])), _by_seed(g.floats.get(rule, []))
        rates = tensor_rates(runs)
        row: dict[str, Any] = {"rule": rule, "bits": bits, "rounding": rnd, "seeds": len(runs)}
        for name, vals in (("fixed", fx), ("float_twin", tw), ("float_online", on), ("float_reference", fl)):
            m, s = _mean_std(list(vals.values()))
            row[f"{name}_mean"], row[f"{name}_std"] = m, s
        for name, ref in (("twin", tw), ("online", on), ("reference", fl)):
            gap = paired_gap(fx, ref)
            row[f"gap_to_{name}_points"] = gap["mean"]
            row[f"gap_to_{name}_std"] = gap["std"]
            row[f"gap_to_{name}_ci_low"], row[f"gap_to_{name}_ci_high"] = gap["ci_low"], gap["ci_high"]
        inp = rates.get("input", {})
        row["input_saturation_rate"] = inp.get("overflow_rate")
        row["input_flush_rate"] = inp.get("zero_rate")
        for t in RATE_TENSORS:
            row[f"{t}_overflow_rate"] = rates.get(t, {}).get("overflow_rate")
            row[f"{t}_zero_rate"] = rates.get(t, {}).get("zero_rate")
        row["rates"] = rates
        row["_acc"], row["_twin"], row["_on"], row["_fl"] = list(fx.values()), list(tw.values()), list(on.values()), \
            list(fl.values())
        row["_gaps"] = {n: paired_gap(fx, ref) for n, ref in (("twin", tw), ("online", on), ("reference", fl))}
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------------------------
# plots


def _err(acc: list[float]) -> tuple[float, float]:
    """Test error (%) mean and std of accuracies in [0, 1]."""
    m, s = _mean_std([100 * (1 - a) for a in acc])
    return m, s


def _style_legend(ax, labels: dict[str, str], loc="upper right"):
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color="k", ls=STYLES[k], label=v) for k, v in labels.items()]
    return ax.legend(handles=handles, fontsize=7, loc=loc, title="line", title_fontsize=7)


def _rule_legend(ax, rules, colours, loc="upper left"):
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=colours[r], marker="o", label=r) for r in rules]
    return ax.legend(handles=handles, fontsize=7, loc=loc, title="rule", title_fontsize=7)


def _finish_grid(axes, used: int, ylabel: str) -> None:
    """A grid of panels: ``ylabel`` on the first column, the panels past the first ``used`` hidden."""
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel)
    for ax in list(axes.flat)[used:]:
        ax.axis("off")


def _log_error_axis(ax) -> None:
    """A log axis of test error (%) labelled 1, 2, 5, 10, 20, 50 ... in plain numbers."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def _adjust(fig, **margins) -> None:
    """Fixed margins in inches turned into figure fractions: tight_layout measured every label and doubled the
    drawing time of a report."""
    w, h = fig.get_size_inches()
    m = {"left": 0.95 / w, "right": 1 - 0.15 / w, "bottom": 0.55 / h, "top": 1 - 0.35 / h, "wspace": 0.3,
         "hspace": 0.5}
    m.update(margins)
    fig.subplots_adjust(**m)


def _plots(out: Path, g: _Groups, rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made: list[tuple[str, str]] = []
    rules = g.rules
    colours = dict(zip(rules, plt.rcParams["axes.prop_cycle"].by_key()["color"] * 3))
    rnd0 = g.roundings[0] if g.roundings else None
    labels = {"fixed": "fixed point", "twin": "float twin", "online": ONLINE_LABEL, "float": g.float_label}

    def save(fig, name, caption, **margins):
        _adjust(fig, **margins)
        fig.savefig(out / name)
        plt.close(fig)
        made.append((name, caption))

    # 1. test error vs word length, log axis (the plots against word length need two of them; the tables have one)
    if len(g.bits) > 1:
        fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=100)
        for rule in rules:
            bits = [b for b in g.bits if (rule, b, rnd0) in g.fixed]
            if not bits:
                continue
            c = colours[rule]
            e = [_err([x["test_accuracy"] for x in g.fixed[(rule, b, rnd0)]]) for b in bits]
            t = [_err([x["float_test_accuracy"] for x in g.fixed[(rule, b, rnd0)]]) for b in bits]
            ax.errorbar(bits, [m for m, _ in e], yerr=[s for _, s in e], color=c, ls=STYLES["fixed"], marker="o",
                        capsize=3, lw=1.5)
            ax.errorbar([b + 0.12 for b in bits], [m for m, _ in t], yerr=[s for _, s in t], color=c,
                        ls=STYLES["twin"], marker=".", capsize=2, lw=1, alpha=0.8)
            for kind, runs in (("online", g.online.get(rule)), ("float", g.floats.get(rule))):
                if runs:
                    ax.axhline(_err([x["test_accuracy"] for x in runs])[0], color=c, ls=STYLES[kind], lw=1,
                               alpha=0.8)
        _log_error_axis(ax)
        ax.set_xticks(g.bits)
        ax.set_xlabel("word length (bits)")
        ax.set_ylabel("test error (%), log scale")
        ax.set_title(f"test error vs word length (rounding {rnd0}; mean ± std over seeds)", fontsize=10)
        ax.grid(alpha=0.3, which="both")
        leg = _rule_legend(ax, rules, colours)
        ax.add_artist(leg)
        _style_legend(ax, labels)
        save(fig, "error_vs_bits.png",
             "Test error (%, log scale) vs word length: fixed point (solid, error bars: std over seeds), its float "
             f"twin (dashed, shifted right), {ONLINE_LABEL} (dotted) and {g.float_label} (dash-dot).")
        # 2. the gaps with their confidence intervals
        fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), dpi=100, sharey=True)
        for ax, ref, title in ((axes[0], "twin", "fixed − float twin"), (axes[1], "online", f"fixed − {ONLINE_LABEL}")):
            for i, rule in enumerate(rules):
                rs = [r for r in rows if r["rule"] == rule and r["rounding"] == rnd0 and r["_gaps"][ref]["n"]]
                if not rs:
                    continue
                x = [r["bits"] + 0.08 * (i - len(rules) / 2) for r in rs]
                m = [r["_gaps"][ref]["mean"] for r in rs]
                lo = [r["_gaps"][ref]["mean"] - (r["_gaps"][ref]["ci_low"] if r["_gaps"][ref]["ci_low"] is not None
                                                else r["_gaps"][ref]["mean"]) for r in rs]
                ax.errorbar(x, m, yerr=[lo, lo], color=colours[rule], marker="o", capsize=3, label=rule)
            ax.axhline(0, color="k", lw=0.8)
            ax.set_yscale("symlog", linthresh=1.0)
            ax.set_xticks(g.bits)
            ax.set_xlabel("word length (bits)")
            ax.set_title(f"{title} (points, {int(100 * CONFIDENCE)} % CI)", fontsize=10)
            ax.grid(alpha=0.3, which="both")
        axes[0].set_ylabel("accuracy gap (points; linear within ±1, log beyond)")
        axes[0].legend(fontsize=7, title="rule", title_fontsize=7)
        save(fig, "gaps_vs_bits.png",
             f"Accuracy gap of fixed point to its float twin (left) and to {ONLINE_LABEL} (right), in points, "
             f"paired by seed: mean and {int(100 * CONFIDENCE)} % confidence interval (t over seeds; none with one "
             "seed). Negative: fixed point is worse.")
    # 3. stochastic vs round-to-nearest
    if len(g.roundings) > 1 and len(g.bits) > 1:
        fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=100)
        rstyles = ["-", "--", ":", "-."]
        for rule in rules:
            for j, rnd in enumerate(g.roundings):
                bits = [b for b in g.bits if (rule, b, rnd) in g.fixed]
                if not bits:
                    continue
                e = [_err([x["test_accuracy"] for x in g.fixed[(rule, b, rnd)]]) for b in bits]
                ax.errorbar([b + 0.1 * j for b in bits], [m for m, _ in e], yerr=[s for _, s in e],
                            color=colours[rule], ls=rstyles[j % 4], marker="os^v"[j % 4], capsize=3)
        from matplotlib.lines import Line2D

        _log_error_axis(ax)
        ax.set_xticks(g.bits)
        ax.set_xlabel("word length (bits)")
        ax.set_ylabel("test error (%), log scale")
        ax.set_title("rounding of the weight/bias updates, side by side", fontsize=10)
        ax.grid(alpha=0.3, which="both")
        ax.add_artist(_rule_legend(ax, rules, colours))
        ax.legend(handles=[Line2D([], [], color="k", ls=rstyles[j % 4], marker="os^v"[j % 4], label=rnd)
                           for j, rnd in enumerate(g.roundings)], fontsize=7, loc="upper right", title="rounding",
                  title_fontsize=7)
        save(fig, "rounding.png", "Test error (%, log scale) vs word length for each rounding mode of the weight and "
             "bias updates (mean ± std over seeds).")
    # 4. learning curves at 8 bits (or the middle word length), one panel per rule
    if g.bits:
        b = 8 if 8 in g.bits else g.bits[len(g.bits) // 2]
        with_curve = [r for r in rules if any("curve_points" in x for x in g.fixed.get((r, b, rnd0), []))]
        if with_curve:
            ncol = min(4, len(with_curve))
            nrow = -(-len(with_curve) // ncol)
            fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 2.8 * nrow), dpi=100, squeeze=False,
                                     sharey=True)
            for ax, rule in zip(axes.flat, with_curve):
                runs = [x for x in g.fixed[(rule, b, rnd0)] if "curve_points" in x]
                series = [("fixed", runs, "curve_points"), ("twin", runs, "twin_curve_points"),
                          ("online", [x for x in g.online.get(rule, []) if "curve_points" in x], "curve_points")]
                for kind, rs, field in series:
                    if not rs:
                        continue
                    n = min(len(x[field]) for x in rs)
                    ep = rs[0]["curve_epochs"][:n]
                    per = [[100 * (1 - x[field][i]) for x in rs] for i in range(n)]
                    m = [statistics.fmean(v) for v in per]
                    s = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in per]
                    ax.plot(ep, m, color=colours[rule], ls=STYLES[kind], lw=1.3)
                    ax.fill_between(ep, [a - d for a, d in zip(m, s)], [a + d for a, d in zip(m, s)],
                                    color=colours[rule], alpha=0.12)
                _log_error_axis(ax)
                ax.set_title(rule, fontsize=9)
                ax.set_xlabel("epoch")
                ax.grid(alpha=0.3, which="both")
            _finish_grid(axes, len(with_curve), "test error (%)")
            _style_legend(axes.flat[0], {k: labels[k] for k in ("fixed", "twin", "online")})
            n_pts = g.cfg.get("curve_points", 0)
            save(fig, "learning_curves.png",
                 f"Learning curves at {b} bits (solid), of the float twin (dashed) and of {ONLINE_LABEL} (dotted): "
                 f"test error (%, log scale) on the first {g.cfg.get('curve_samples')} test samples, {n_pts} points "
                 "per epoch; band: ± std over seeds.")
    # 5. alignment angle to BP over training (float reference)
    if any(g.floats.values()):
        fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
        for rule, runs in g.floats.items():
            for layer in (runs[0]["angles"][0] if runs and runs[0].get("angles") else {}):
                n = min(len(x["angles"]) for x in runs)
                vals = []
                for i in range(n):
                    v = [x["angles"][i].get(layer) for x in runs if x["angles"][i].get(layer) is not None]
                    vals.append(statistics.fmean(v) if v else float("nan"))
                ax.plot(range(1, n + 1), vals, marker="o", color=colours.get(rule), label=f"{rule} {layer}")
        ax.axhline(90, color="grey", lw=0.8)
        ax.set_xlabel("epoch")
        ax.set_ylabel("angle to BP's signal (deg)")
        ax.set_title(f"per-layer alignment with BP ({g.float_label})", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        save(fig, "alignment.png", "Angle between each rule's modulatory signal and BP's, per hidden layer, "
             f"{g.float_label}, after every epoch.")
    # 6. rates vs word length, one panel per tensor
    rated = [r for r in rows if r["rounding"] == rnd0 and r["rates"]]
    present = [t for t in ("input",) + RATE_TENSORS if any(t in r["rates"] for r in rated)]
    tensors = [t for t in present if any(r["rates"].get(t, {}).get(f) for r in rated
                                         for f in ("overflow_rate", "zero_rate"))]
    quiet = [t for t in present if t not in tensors]
    if tensors and len(g.bits) > 1:
        ncol = min(4, len(tensors))
        nrow = -(-len(tensors) // ncol)
        fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 2.8 * nrow), dpi=100, squeeze=False, sharey=True)
        for ax, t in zip(axes.flat, tensors):
            for rule in rules:
                rs = [r for r in rated if r["rule"] == rule and t in r["rates"]]
                for field, ls in (("overflow_rate", "-"), ("zero_rate", "--")):
                    pts = [(r["bits"], r["rates"][t][field]) for r in rs if r["rates"][t][field]]
                    if pts:
                        ax.plot(*zip(*pts), color=colours[rule], ls=ls, marker="o", ms=3)
            ax.set_yscale("log")
            ax.set_xticks(g.bits)
            ax.set_title("input quantizer (saturation / flush)" if t == "input" else t, fontsize=9)
            ax.set_xlabel("word length (bits)")
            ax.grid(alpha=0.3, which="both")
        _finish_grid(axes, len(tensors), "events / opportunities")
        from matplotlib.lines import Line2D

        axes.flat[0].legend(handles=[Line2D([], [], color=colours[r], label=r) for r in rules]
                            + [Line2D([], [], color="k", ls="-", label="overflow"),
                               Line2D([], [], color="k", ls="--", label="rounded to zero")], fontsize=6)
        save(fig, "rates_vs_bits.png",
             "Overflow (solid) and rounded-to-zero (dashed) rates per tensor vs word length, events / opportunities "
             "summed over layers, runs of all seeds (log scale; a zero rate is not drawn). The input panel is the "
             "saturation of the input quantizer, not a datapath overflow."
             + (f" No event at all in: {', '.join(quiet)}." if quiet else ""))
    # 7. histograms against the formats, one figure per word length
    for b in g.bits:
        name = _hist_plot(out, g, b, rnd0, colours, plt)
        if name:
            made.append((name, f"{b} bits: histograms of log2|value| at the end of training (weights: all; "
                         f"activations and errors: {_hist_samples()} training samples, seeds summed) of the fixed-point "
                         "values (solid) and the float twin's (dotted), as a fraction of the values; grey: the format's "
                         "LSB, red: its largest magnitude; the bar at the left: exact zeros."))
    return made


def _hist_samples() -> int:
    from .sweep import HIST_SAMPLES

    return HIST_SAMPLES


def _hist_plot(out: Path, g: _Groups, bits: int, rnd, colours, plt) -> str | None:
    import math

    import numpy as np

    runs_by_rule = {r: [x for x in g.fixed.get((r, bits, rnd), []) if "histograms" in x] for r in g.rules}
    runs_by_rule = {r: v for r, v in runs_by_rule.items() if v}
    if not runs_by_rule:
        return None
    first = next(iter(runs_by_rule.values()))[0]["histograms"]
    layers = list(first)
    tensors = [t for t in ("weight", "act", "error") if any(t in first[layer] for layer in layers)]
    fig, axes = plt.subplots(len(tensors), len(layers), figsize=(3.6 * len(layers), 2.5 * len(tensors)), dpi=100,
                             squeeze=False)
    for i, t in enumerate(tensors):
        for j, layer in enumerate(layers):
            ax = axes[i, j]
            info = None
            for rule, runs in runs_by_rule.items():
                hs = [x["histograms"].get(layer, {}).get(t) for x in runs]
                hs = [h for h in hs if h]
                if not hs:
                    continue
                info = hs[0]
                step = 1.0 / info["bins_per_octave"]
                for kind, ls in (("fixed", "-"), ("twin", ":")):
                    counts = np.sum([h[kind]["counts"] for h in hs], axis=0)
                    zero = sum(h[kind]["zero"] for h in hs)
                    total = counts.sum() + zero
                    if not total:
                        continue
                    x = info["lo"] + step * np.arange(len(counts) + 1)
                    ax.stairs(counts / total, x, color=colours[rule], ls=ls, lw=1.2 if kind == "fixed" else 1)
                    if kind == "fixed":  # the exact zeros: a bar left of the axis' range
                        ax.bar(info["lo"] - 1.5 + 0.25 * list(runs_by_rule).index(rule) / len(runs_by_rule),
                               zero / total, width=0.25 / len(runs_by_rule) * 3, color=colours[rule], alpha=0.6,
                               align="edge")
            if info is None:
                ax.axis("off")
                continue
            ax.axvline(math.log2(info["lsb"]), color="grey", ls="--", lw=1)
            ax.axvline(math.log2(max(abs(info["max"]), abs(info["min"]))), color="red", ls="--", lw=1)
            ax.set_title(f"{layer} {t}: {info['format']}", fontsize=8)
            ax.set_xlabel("log2 |value|  (left bar: 0)", fontsize=7)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel("fraction of values", fontsize=7)
    from matplotlib.lines import Line2D

    axes[0, 0].legend(handles=[Line2D([], [], color=colours[r], label=r) for r in runs_by_rule]
                      + [Line2D([], [], color="k", ls="-", label="fixed point"),
                         Line2D([], [], color="k", ls=":", label="float twin")], fontsize=6)
    fig.suptitle(f"{bits}-bit formats: values at the end of training", fontsize=10)
    name = f"hist_{bits}b.png"
    _adjust(fig, top=0.92, hspace=0.55)
    fig.savefig(out / name)
    plt.close(fig)
    return name


# ---------------------------------------------------------------------------------------------------------------
# accuracy vs area


def _area_rows(g: _Groups, area: dict[str, Any]) -> list[dict[str, Any]]:
    """Per rule, rounding and word length with both a fixed-point result and an area row: the resources and the
    fixed point's test accuracy (%, mean and std over seeds)."""
    rows = []
    for rule in g.rules:
        for rnd in g.roundings:
            for b in g.bits:
                runs, a = g.fixed.get((rule, b, rnd)), area_of(area, rule, b, rnd)
                if not runs or a is None:
                    continue
                acc = [100 * x["test_accuracy"] for x in runs]
                m, s = _mean_std(acc)
                rows.append({"rule": rule, "bits": b, "rounding": rnd, "seeds": len(runs),
                             **{c: a.get(c) for c in AREA_COLUMNS}, "area_rule": a["rule"],
                             "fixed_mean": m, "fixed_std": s, "_acc": [x["test_accuracy"] for x in runs]})
    return rows


def _area_source(area: dict[str, Any]) -> str:
    what = [f"network {area['network']}" if area.get("network") else None,
            "-".join(map(str, area["sizes"])) if area.get("sizes") else None,
            f"{area['parallel']} MAC lanes per layer" if area.get("parallel") else None,
            f"target {area['target']}" if area.get("target") else None]
    return ", ".join(w for w in what if w) or "no network named"


def _area_table(g: _Groups, rows: list[dict[str, Any]], area: dict[str, Any]) -> list[str]:
    lines = ["", "## Accuracy vs area", "",
             f"Resources of the generated learning datapath from the area file ({_area_source(area)}"
             + (f"; measured with `{area['command']}`" if area.get("command") else "")
             + ") beside the fixed point's test accuracy (%, mean ± std over seeds) at the same rule, word length "
             "and rounding. BRAM in RAMB36 equivalents.", ""]
    without = [r for r in g.rules if not any(x["rule"] == r for x in rows)]
    if area.get("network") and area["network"] != Path(str(g.cfg["config"])).stem:
        lines += [f"The area was measured on {area['network']}, the accuracy on {g.cfg['config']}.", ""]
    if not rows:
        return lines + ["No rule, word length and rounding of this report has an area row.", ""]
    lines += ["| rule | bits | rounding | " + " | ".join(AREA_COLUMNS) + " | fixed point |",
              "|---|---:|---|" + "---:|" * (len(AREA_COLUMNS) + 1)]
    for r in rows:
        cells = ["–" if r[c] is None else f"{r[c]:,.{0 if float(r[c]).is_integer() else 1}f}" for c in AREA_COLUMNS]
        lines.append(f"| {r['rule']} | {r['bits']} | {r['rounding']} | " + " | ".join(cells)
                     + f" | {_fmt(r['_acc'])} |")
    if without:
        lines += ["", f"No area for: {', '.join(without)} (the area file has no row for them)."]
    return lines + [""]


def _area_plot(out: Path, g: _Groups, rows: list[dict[str, Any]], area: dict[str, Any]) -> tuple[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = dict(zip(g.rules, plt.rcParams["axes.prop_cycle"].by_key()["color"] * 3))
    rules = [r for r in g.rules if any(x["rule"] == r for x in rows)]
    ncol = min(4, len(rules))
    nrow = -(-len(rules) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.4 * ncol, 3.0 * nrow), dpi=100, squeeze=False, sharey=True)
    for ax, rule in zip(axes.flat, rules):
        for j, rnd in enumerate(g.roundings):
            rs = sorted((x for x in rows if x["rule"] == rule and x["rounding"] == rnd), key=lambda x: x["LUT"])
            if not rs:
                continue
            e = [_err(x["_acc"]) for x in rs]
            ax.errorbar([x["LUT"] for x in rs], [m for m, _ in e], yerr=[s for _, s in e], color=colours[rule],
                        ls="-:"[j % 2], marker="os^v"[j % 4], capsize=3, ms=4, label=rnd)
            for x, (m, _) in zip(rs, e):
                ax.annotate(f"{x['bits']}b", (x["LUT"], m), textcoords="offset points", xytext=(4, 4), fontsize=7)
        # the float twin of the widest word length: the accuracy that no area buys back
        twin = g.fixed.get((rule, max(g.bits), g.roundings[0]), [])
        if twin:
            ax.axhline(_err([x["float_test_accuracy"] for x in twin])[0], color="grey", ls="--", lw=1,
                       label=f"float twin ({max(g.bits)}-bit run)")
            ax.legend(fontsize=6)
        _log_error_axis(ax)
        ax.set_title(rule, fontsize=9)
        ax.set_xlabel("LUTs")
        ax.grid(alpha=0.3, which="both")
    _finish_grid(axes, len(rules), "test error (%), log scale")
    name = "accuracy_vs_area.png"
    _adjust(fig)
    fig.savefig(out / name)
    plt.close(fig)
    return name, (f"Accuracy vs area: test error of the fixed point (%, log scale, mean ± std over seeds) against the "
                  f"LUTs of the learning datapath ({_area_source(area)}), one point per word length (labelled), one "
                  "panel per rule (a line per rounding mode); grey dashed: the float twin of the widest word "
                  "length's runs.")


# ---------------------------------------------------------------------------------------------------------------
# report


def _shown(p: Path) -> str:
    """``p`` as the user would type it: relative to the working directory when below it (a committed report then
    carries no machine's absolute path)."""
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)


def render(out: str | Path, area: str | Path | None = None) -> dict[str, Any]:
    """Write report.md, report.html, results.json, results.csv and the PNGs into ``out`` from saved results.
    ``area``: an area file (:mod:`.area`), copied into ``out`` so that a later render draws it again."""
    out = Path(out)
    plan, results, missing = collect(out)
    area_data = load_area(area) if area is not None else (load_area(out / AREA_FILE)
                                                          if (out / AREA_FILE).exists() else None)
    cfg = plan["config"]
    g = _Groups(cfg, results)
    rows = _rows(g)
    plots = _plots(out, g, rows) if results else []
    area_rows = _area_rows(g, area_data) if area_data else []
    if area is not None:
        write_json_atomic(out / AREA_FILE, area_data, indent=1)
    if area_rows:
        plots.append(_area_plot(out, g, area_rows, area_data))
    public = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
    refs = {rule: {"online": mean_ci([x["test_accuracy"] for x in g.online.get(rule, [])]),
                   "float": mean_ci([x["test_accuracy"] for x in g.floats.get(rule, [])])} for rule in g.rules}
    (out / "results.json").write_text(json.dumps({"config": cfg, "rows": public, "references": refs,
                                                  "float_label": g.float_label, "confidence": CONFIDENCE,
                                                  "missing": missing}, indent=1) + "\n")
    flat = [{k: v for k, v in r.items() if k != "rates"} for r in public]
    with open(out / "results.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(flat[0]) if flat else ["rule"])
        w.writeheader()
        w.writerows(flat)
    data = cfg.get("dataset") or "the config's dataset"
    lines = [f"# Float vs fixed point: {cfg['config']}", "",
             f"Online learning in the bit-accurate engine ({cfg['epochs']} epoch(s), dataset {data}"
             + (f", first {cfg['n_train']} training samples" if cfg.get("n_train") else "")
             + (f", {cfg['n_test']} test samples" if cfg.get("n_test") else ", full test set")
             + f"), {cfg['seeds']} seed(s). Each fixed-point run is set beside its float twin (the same algorithm "
             f"in float64, same initial state, same learning rates), **{ONLINE_LABEL}** (the float PyTorch "
             "reference with the engine's online algorithm: batch 1, plain SGD, the twin's learning rates at the "
             "sweep's largest word length, the same initial state and sample order) and "
             f"**{g.float_label}** (the float PyTorch reference with the config's optimiser, learning rate and "
             "batch: another algorithm, for orientation).", ""]
    if missing:
        lines += ["## Missing runs", "",
                  f"{len(missing)} of {len(plan['runs'])} runs have no readable result (not run yet, interrupted, or "
                  "corrupt); the tables below leave them out:", ""] + [f"- `{m}`" for m in missing] + [""]
    lines += ["## Test accuracy (%), mean ± std over seeds", "",
              f"| rule | bits | rounding | seeds | fixed point | float twin | {ONLINE_LABEL} | {g.float_label} |",
              "|---|---:|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['rule']} | {r['bits']} | {r['rounding']} | {r['seeds']} | {_fmt(r['_acc'])} | "
                     f"{_fmt(r['_twin'])} | {_fmt(r['_on'])} | {_fmt(r['_fl'])} |")
    lines += ["", f"## Gaps (points): mean ± std [{int(100 * CONFIDENCE)} % confidence interval]", "",
              "Differences of test accuracy, fixed point minus the reference, paired by seed (a run and its "
              "references share the seed's data, order and initial state); the interval is mean ± t · std / √n with "
              f"Student's t at n − 1 degrees of freedom over the n seeds. Negative: fixed point is worse.", "",
              f"| rule | bits | rounding | fixed − float twin | fixed − {ONLINE_LABEL} | fixed − {g.float_label} |",
              "|---|---:|---|---:|---:|---:|"]
    for r in rows:
        gp = r["_gaps"]
        lines.append(f"| {r['rule']} | {r['bits']} | {r['rounding']} | {_gap_cell(gp['twin'])} | "
                     f"{_gap_cell(gp['online'])} | {_gap_cell(gp['reference'])} |")
    if len(g.roundings) > 1:
        r0 = g.roundings[0]
        lines += ["", "## Rounding of the updates, side by side", "",
                  "Test accuracy (%) of each rounding mode of the weight and bias updates, and the difference to "
                  f"{r0} (points, paired by seed, {int(100 * CONFIDENCE)} % interval).", "",
                  "| rule | bits | " + " | ".join(g.roundings) + " | "
                  + " | ".join(f"{x} − {r0}" for x in g.roundings[1:]) + " |",
                  "|---|---:|" + "---:|" * (2 * len(g.roundings) - 1)]
        for rule in g.rules:
            for b in g.bits:
                cells = [_fmt([x["test_accuracy"] for x in g.fixed.get((rule, b, rnd), [])]) for rnd in g.roundings]
                base = _by_seed(g.fixed.get((rule, b, r0), []))
                diffs = [_gap_cell(paired_gap(_by_seed(g.fixed.get((rule, b, rnd), [])), base))
                         for rnd in g.roundings[1:]]
                if any(c != "–" for c in cells):
                    lines.append(f"| {rule} | {b} | " + " | ".join(cells + diffs) + " |")
    rated = [r for r in rows if r["rates"]]
    if rated:
        tensors = [t for t in RATE_TENSORS if any(t in r["rates"] for r in rated)]
        lines += ["", "## Overflow and rounded-to-zero rates", "",
                  "Events / opportunities per tensor, summed over the layers and seeds (docs/reports.md, \"Rates\", "
                  "says how the opportunities are counted). *Input saturation* is the input quantizer clipping the "
                  "data (a pixel 1.0 stored as the largest code of an unsigned fraction format), apart from the "
                  "datapath's overflows. Each cell: overflow rate / rounded-to-zero rate (weights, biases: non-zero "
                  "increments lost; other tensors: non-zero values flushed to 0).", "",
                  "| rule | bits | rounding | input saturation | " + " | ".join(tensors) + " |",
                  "|---|---:|---|---:|" + "---:|" * len(tensors)]
        for r in rated:
            cells = []
            for t in tensors:
                rt = r["rates"].get(t)
                cells.append("–" if rt is None else f"{_rate(rt['overflow_rate'])} / {_rate(rt['zero_rate'])}")
            lines.append(f"| {r['rule']} | {r['bits']} | {r['rounding']} | {_rate(r['input_saturation_rate'])} | "
                         + " | ".join(cells) + " |")
    if area_data:
        lines += _area_table(g, area_rows, area_data)
    lines.append("")
    if plots:
        lines += ["## Plots", ""]
    for png, caption in plots:
        lines += [f"![{caption}]({png})", "", f"*{caption}*", ""]
    lines += ["Results: `results.json`, `results.csv`; raw runs in `runs/`. Re-render without re-running: "
              f"`edgelearn report --out {_shown(out)} --render-only`.", ""]
    md = "\n".join(lines)
    (out / "report.md").write_text(md)
    (out / "report.html").write_text(_html(md))
    return {"rows": public, "missing": missing, "plots": [p for p, _ in plots],
            "area_rows": [{k: v for k, v in r.items() if not k.startswith("_")} for r in area_rows]}


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
