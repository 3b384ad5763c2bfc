"""Trained low-rank feedback in fixed point: LDFA (r = 10) vs DFA vs BP on the LDFA paper's 4x512 MLP.

    python benchmarks/ldfa_fixed.py                                   # CIFAR-10 subset, 8/12/16 bits, 3 epochs
    python benchmarks/ldfa_fixed.py --epochs 1 --n-train 1000 --bits 8 16 --rules ldfa
    python benchmarks/ldfa_fixed.py --bits 8 --rules ldfa --format fb_q=fixed<16,1,RND,SAT> \
        --format fb_p=fixed<16,1,RND,SAT> --lr-shift 9 --out /tmp/ldfa-runs   # 8-bit network, 16-bit feedback words

Every run is the engine at the ``--bits`` preset (online, batch 1, the presets' learning-rate shifts) and its float
twin (the same algorithm in float64 from the same initial state), side by side, per epoch: test accuracy and the
**alignment angle** between the feedback a layer sends through and the forward weights it stands in for, mean over
the layers that have one:

* ldfa: layer k >= 1 propagates through ``Q_k P_k`` instead of ``W_k`` (engine layout ``(n_in, n_out)``):
  ``angle(W_k, Q_k P_k)``;
* dfa: layer k < L receives ``B_k^T e``; BP would send ``(W_{k+1} ... W_L)^T e``: ``angle(B_k^T, W_{k+1} ... W_L)``
  (the linear path, activations left out);
* bp: the feedback is ``W`` itself (0 degrees, not printed).

It also prints, for ldfa, the share of P's Oja increments that were non-zero and rounded to zero at P's LSB (the fb_p
``zero`` counter over all ``r x n_out`` increments per sample and layer; an increment whose product ``a_t rho_i`` is
already exactly 0 -- ``a`` or ``rho`` rounded to 0 in the error format -- is not in it, so at short words it
understates what is lost), and Q's ``zero`` events per sample (of at most ``r`` per non-zero input of each layer).
For ldfa it also says how far ``Q`` and ``P`` moved from their initial words: the share of entries whose word
changed and ``||X - X0|| / ||X0||`` in the engine and in the twin (a word too short for the increments keeps X0).
Runs are sequential, one thread (the machine is shared); ``--nice`` lowers the priority. ``--format TENSOR=FMT``
overrides a tensor's format on top of the preset (e.g. wider ``fb_q`` / ``fb_p`` words than the network's). With
``--out DIR`` every run writes ``DIR/<rule>-<bits>[-<formats>]-lr<shift>-s<seed>-n<train>-<test>.json`` after each
epoch (its settings and rows); a run whose file already holds all ``--epochs`` epochs with the same settings is read
back instead of run again, so an interrupted sweep resumes at the run it was in.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "cifar10-subset"


def angle(a, b) -> float:
    import numpy as np

    a, b = np.ravel(a), np.ravel(b)
    c = float(a @ b) / max(float(np.linalg.norm(a) * np.linalg.norm(b)), 1e-300)
    return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))


def alignment(rule: str, W: list, B: list, r: list) -> float | None:
    """Mean angle (degrees) between each layer's feedback and the weights it replaces; W, B float, engine layout."""
    import numpy as np

    L = len(W)
    out = []
    for k in range(L):
        if rule == "ldfa" and k > 0 and r[k]:
            n = W[k].shape[0]
            out.append(angle(W[k], B[k][:n, :r[k]] @ B[k][n:, :W[k].shape[1]]))
        elif rule == "dfa" and k < L - 1:
            path = W[k + 1]
            for j in range(k + 2, L):
                path = path @ W[j]
            out.append(angle(B[k].T, path))
    return float(np.mean(out)) if out else None


def factor_moves(B0: list, B: list, B_twin: list, r: list, sizes: list) -> dict:
    """How far ldfa's factors have moved from their initial words (mean over the layers that have them): the share of
    entries whose word changed (engine) and ``||X - X0|| / ||X0||`` for the engine and the twin."""
    import numpy as np

    out: dict[str, list] = {}
    for k, b0 in enumerate(B0):
        if b0 is None or not r[k]:
            continue
        n = sizes[k]
        parts = {"q": lambda b: np.asarray(b)[:n, :r[k]], "p": lambda b: np.asarray(b)[n:, :sizes[k + 1]]}
        for name, part in parts.items():
            x0, x, xt = part(b0), part(B[k]), part(B_twin[k])
            norm = max(float(np.linalg.norm(x0)), 1e-300)
            out.setdefault(f"{name}_changed", []).append(float(np.mean(x != x0)))
            out.setdefault(f"{name}_moved", []).append(float(np.linalg.norm(x - x0)) / norm)
            out.setdefault(f"{name}_moved_twin", []).append(float(np.linalg.norm(xt - x0)) / norm)
    return {key: float(np.mean(v)) for key, v in out.items()}


def run_name(rule: str, bits: int, formats: dict, lr_shift: int | None, seed: int, n_train: int, n_test: int) -> str:
    fmt = "".join(f"-{k}{re.sub(r'[^0-9A-Za-z]+', '_', v).strip('_')}" for k, v in sorted(formats.items()))
    return f"{rule}-{bits}{fmt}-lr{lr_shift if lr_shift is not None else 'preset'}-s{seed}-n{n_train}-{n_test}"


def run(rule: str, bits: int, ds, epochs: int, seed: int, rank: int, lr_shift: int | None,
        formats: dict | None = None, out: Path | None = None) -> list[dict]:
    from edgelearn.fixed.engine import FixedEngine
    from edgelearn.network import load_network

    formats = formats or {}
    settings = {"rule": rule, "bits": bits, "formats": formats, "lr_shift": lr_shift, "seed": seed, "rank": rank,
                "n_train": len(ds.x_train), "n_test": len(ds.x_test)}
    name = run_name(rule, bits, formats, lr_shift, seed, len(ds.x_train), len(ds.x_test))
    path = out / f"{name}.json" if out else None
    if path and path.exists():
        done = json.loads(path.read_text())
        if done.get("settings") == settings and len(done["rows"]) > epochs:
            print(f"  {rule:5s} {bits:2d} bits: read back from {path}", flush=True)
            return done["rows"][:epochs + 1]
    spec = load_network("ldfa-mlp-4x512").with_rule(rule)
    spec.rule_params = {**spec.rule_params, "rank": rank}
    eng = FixedEngine(spec, bits=bits, seed=seed, threads=1, lr_shift=lr_shift, formats=formats or None)
    twin = eng.float_twin()
    ranks = [lay.ldfa_rank for lay in eng.program_layers]
    L = len(eng.sizes) - 1
    fb0 = [None if b is None else b.copy() for b in eng.feedback_float()]
    xtr = ds.x_train.reshape(len(ds.x_train), -1)
    xte = ds.x_test.reshape(len(ds.x_test), -1)
    rows = [{"epoch": 0, "acc": eng.evaluate(xte, ds.y_test), "acc_twin": twin.evaluate(xte, ds.y_test),
             "angle": alignment(rule, [w["W"] for w in eng.weights_float()], eng.feedback_float(), ranks),
             "angle_twin": alignment(rule, twin.W, twin.B, ranks), "s": 0.0}]
    for e in range(epochs):
        t0 = time.perf_counter()
        eng.fit(xtr, ds.y_train, epochs=1)
        t1 = time.perf_counter()
        twin.fit(xtr, ds.y_train, epochs=1)
        t2 = time.perf_counter()
        row = {"epoch": e + 1, "acc": eng.evaluate(xte, ds.y_test), "acc_twin": twin.evaluate(xte, ds.y_test),
               "angle": alignment(rule, [w["W"] for w in eng.weights_float()], eng.feedback_float(), ranks),
               "angle_twin": alignment(rule, twin.W, twin.B, ranks), "s": t1 - t0,
               "s_twin": t2 - t1}
        if rule == "ldfa":
            # P: r x n_out increments per sample and layer (all of them, when the source is non-zero); Q: r per
            # non-zero input, so its zero count is given per sample
            cnt = eng.counters
            zq = sum(cnt[n]["fb_q"]["zero"] for n in cnt if "fb_q" in cnt[n])
            zp = sum(cnt[n]["fb_p"]["zero"] for n in cnt if "fb_p" in cnt[n])
            tot_p = len(xtr) * (e + 1) * sum(ranks[k] * eng.sizes[k + 1] for k in range(1, L))
            row["p_zero"] = zp / max(tot_p, 1)
            row["q_zero_per_sample"] = zq / (len(xtr) * (e + 1))
            row["p_overflow"] = sum(cnt[n]["fb_p"]["overflow"] for n in cnt if "fb_p" in cnt[n])
            row["q_overflow"] = sum(cnt[n]["fb_q"]["overflow"] for n in cnt if "fb_q" in cnt[n])
            row.update(factor_moves(fb0, eng.feedback_float(), twin.B, ranks, eng.sizes))
        # saturations per tensor over all layers (an 8-bit relu activation or error that saturates is where the
        # engine leaves its twin); the full per-layer counters go to the JSON file only
        row["overflow"] = {t: n for t in sorted({t for d in eng.counters.values() for t in d})
                           if (n := sum(d[t]["overflow"] for d in eng.counters.values() if t in d))}
        row["counters"] = eng.counters
        rows.append(row)
        if path:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"settings": settings, "rows": rows}, indent=1))
            tmp.replace(path)  # never a half-written file
        print(f"  {rule:5s} {bits:2d} bits epoch {e + 1}: " + " ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()
            if k not in ("epoch", "counters")),
            flush=True)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--n-train", type=int, default=None)
    ap.add_argument("--n-test", type=int, default=None)
    ap.add_argument("--bits", type=int, nargs="+", default=[8, 12, 16])
    ap.add_argument("--rules", nargs="+", default=["ldfa", "dfa", "bp"])
    ap.add_argument("--rank", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lr-shift", type=int, default=None, help="every layer's (default: the presets')")
    ap.add_argument("--format", action="append", default=[], metavar="TENSOR=FMT",
                    help="a tensor's format on top of the preset, e.g. fb_p=fixed<16,1,RND,SAT> (repeatable)")
    ap.add_argument("--out", type=Path, default=None, help="one JSON file per run here (resumes finished runs)")
    ap.add_argument("--nice", type=int, default=10)
    args = ap.parse_args(argv)
    formats = {}
    for item in args.format:
        tensor, sep, fmt = item.partition("=")
        if not sep or not tensor or not fmt:
            ap.error(f"--format takes TENSOR=FMT, got {item!r}")
        formats[tensor.strip()] = fmt.strip()
    if args.nice:
        os.nice(args.nice)
    from edgelearn.data import load_dataset

    ds = load_dataset("cifar10", args.data_dir, n_train=args.n_train, n_test=args.n_test)
    print(f"ldfa-mlp-4x512 on {len(ds.x_train)} / {len(ds.x_test)} CIFAR-10 samples, online, {args.epochs} epochs, "
          f"seed {args.seed}, lr_shift {args.lr_shift or 'preset'}"
          + "".join(f", {k} {v}" for k, v in formats.items()), flush=True)
    table = []
    for rule in args.rules:
        for bits in args.bits:
            for row in run(rule, bits, ds, args.epochs, args.seed, args.rank, args.lr_shift, formats, args.out):
                table.append((rule, bits, row))
    print()
    print("| rule | bits | epoch | test acc fixed | test acc twin | angle fixed (deg) | angle twin (deg) | "
          "P non-zero incr. rounded to 0 | Q zero events/sample | fixed s/epoch |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")

    def f(v, fmt):
        return "--" if v is None else format(v, fmt)

    words = "".join(f", {k} {v}" for k, v in formats.items())
    for rule, bits, r in table:
        print(f"| {rule} | {bits}{words} | {r['epoch']} | {r['acc']:.2%} | {r['acc_twin']:.2%} | "
              f"{f(r['angle'], '.1f')} | {f(r['angle_twin'], '.1f')} | {f(r.get('p_zero'), '.1%')} | "
              f"{f(r.get('q_zero_per_sample'), '.0f')} | {r['s']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
