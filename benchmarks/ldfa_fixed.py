"""Trained low-rank feedback in fixed point: LDFA (r = 10) vs DFA vs BP on the LDFA paper's 4x512 MLP.

    python benchmarks/ldfa_fixed.py                                   # CIFAR-10 subset, 8/12/16 bits, 3 epochs
    python benchmarks/ldfa_fixed.py --epochs 1 --n-train 1000 --bits 8 16 --rules ldfa

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
Runs are sequential, one thread (the machine is shared); ``--nice`` lowers the priority.
"""
from __future__ import annotations

import argparse
import os
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


def run(rule: str, bits: int, ds, epochs: int, seed: int, rank: int, lr_shift: int | None) -> list[dict]:
    from edgelearn.fixed.engine import FixedEngine
    from edgelearn.network import load_network

    spec = load_network("ldfa-mlp-4x512").with_rule(rule)
    spec.rule_params = {**spec.rule_params, "rank": rank}
    eng = FixedEngine(spec, bits=bits, seed=seed, threads=1, lr_shift=lr_shift)
    twin = eng.float_twin()
    ranks = [lay.ldfa_rank for lay in eng.program_layers]
    L = len(eng.sizes) - 1
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
        row = {"epoch": e + 1, "acc": eng.evaluate(xte, ds.y_test), "acc_twin": twin.evaluate(xte, ds.y_test),
               "angle": alignment(rule, [w["W"] for w in eng.weights_float()], eng.feedback_float(), ranks),
               "angle_twin": alignment(rule, twin.W, twin.B, ranks), "s": t1 - t0}
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
        rows.append(row)
        print(f"  {rule:5s} {bits:2d} bits epoch {e + 1}: " + " ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items() if k != "epoch"),
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
    ap.add_argument("--nice", type=int, default=10)
    args = ap.parse_args(argv)
    if args.nice:
        os.nice(args.nice)
    from edgelearn.data import load_dataset

    ds = load_dataset("cifar10", args.data_dir, n_train=args.n_train, n_test=args.n_test)
    print(f"ldfa-mlp-4x512 on {len(ds.x_train)} / {len(ds.x_test)} CIFAR-10 samples, online, {args.epochs} epochs, "
          f"seed {args.seed}, lr_shift {args.lr_shift or 'preset'}", flush=True)
    table = []
    for rule in args.rules:
        for bits in args.bits:
            for row in run(rule, bits, ds, args.epochs, args.seed, args.rank, args.lr_shift):
                table.append((rule, bits, row))
    print()
    print("| rule | bits | epoch | test acc fixed | test acc twin | angle fixed (deg) | angle twin (deg) | "
          "P non-zero incr. rounded to 0 | Q zero events/sample | fixed s/epoch |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")

    def f(v, fmt):
        return "--" if v is None else format(v, fmt)

    for rule, bits, r in table:
        print(f"| {rule} | {bits} | {r['epoch']} | {r['acc']:.2%} | {r['acc_twin']:.2%} | {f(r['angle'], '.1f')} | "
              f"{f(r['angle_twin'], '.1f')} | {f(r.get('p_zero'), '.1%')} | {f(r.get('q_zero_per_sample'), '.0f')} | "
              f"{r['s']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
