"""Benchmark of the fixed-point engine (docs/engine.md, "Performance").

    python benchmarks/bench_engine.py                 # speed: engine vs torch (natural, in-place) vs apytypes,
                                                      # MAC/s vs the machine's int32 multiply-add peak
    python benchmarks/bench_engine.py --table         # accuracy over 4..16 bits vs the float twin (real MNIST)
    python benchmarks/bench_engine.py --rng-accuracy  # test accuracy, rng: layer vs neuron, 3 seeds (real MNIST)

Online DRTP on 784-1000-10 (edgelearn/models/fc1-1000.yaml), real MNIST samples from ../shared/data/mnist (or
--data-dir; synthetic MNIST-like images if absent: ~19 % non-zero pixels).  All figures of one run are measured
side by side, so the ratios are meaningful even on a noisy machine; the absolute numbers are not.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from edgelearn.data import SHARED_DATA  # noqa: E402 (after the path set-up above)
DEFAULT_DATA = SHARED_DATA / "mnist"
sys.path.insert(0, str(ROOT / "tests"))  # the apytypes whole-step oracle lives with the tests


#: the timer of every figure: wall time, or with --cpu-time this process's CPU time (a machine shared with other jobs
#: takes the core away for whole time slices, which wall time counts and CPU time does not)
_clock = time.perf_counter


def load_mnist(data_dir: Path, n_train: int | None, n_test: int | None):
    from edgelearn.data import load_dataset

    if data_dir.is_dir():
        return load_dataset("mnist", data_dir, n_train=n_train, n_test=n_test)
    return None


def synthetic(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 784)).astype(np.float32)
    x[rng.random((n, 784)) < 0.81] = 0.0
    return x, rng.integers(0, 10, n)


# =============================================================================================================
# accuracy over word lengths


def accuracy_table(args) -> None:
    from edgelearn.fixed.engine import FixedEngine
    from edgelearn.network import load_network

    ds = load_mnist(Path(args.data_dir), args.n_train, args.n_test)
    if ds is None:
        sys.exit(f"--table needs real MNIST (looked in {args.data_dir})")
    spec = load_network(args.config)
    rows = []
    print(f"online DRTP, {spec.name} {spec.mlp_sizes()}, {args.epochs} epoch(s), {ds.n_train} train / "
          f"{ds.n_test} test, seed {args.seed}", flush=True)
    for bits in args.bits:
        eng = FixedEngine(spec, bits=bits, seed=args.seed)
        twin = eng.float_twin()
        t0 = _clock()
        eng.fit(ds.x_train, ds.y_train, epochs=args.epochs)
        t1 = _clock()
        twin.fit(ds.x_train, ds.y_train, epochs=args.epochs)
        t2 = _clock()
        acc = eng.evaluate(ds.x_test, ds.y_test)
        tacc = twin.evaluate(ds.x_test, ds.y_test)
        c = eng.counters
        sat = sum(v["overflow"] for t in c.values() for k, v in t.items() if k != "input")
        row = {"bits": bits, "test_accuracy": acc, "float_test_accuracy": tacc, "gap_points": 100 * (tacc - acc),
               "overflow_events": sat, "engine_s": round(t1 - t0, 1), "twin_s": round(t2 - t1, 1),
               "weight_format": eng.formats()["layers"][spec.trainable_layers[0].name]["weight"]}
        rows.append(row)
        print(f"{bits:>3} bits  fixed {acc:.4f}  twin {tacc:.4f}  gap {row['gap_points']:+.2f} pt  "
              f"({row['weight_format']}, overflow events {sat}, engine {row['engine_s']} s, twin {row['twin_s']} s)",
              flush=True)
    print("\n| bits | fixed-point test acc. | float twin | gap (points) |\n|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['bits']} | {100 * r['test_accuracy']:.2f} % | {100 * r['float_test_accuracy']:.2f} % | "
              f"{r['gap_points']:+.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


# =============================================================================================================
# speed


def measure_peak(seconds: float = 0.5, threads: int | None = None) -> float:
    """int32 multiply-add peak (MAC/s) of this machine: a tight int32 dot-product loop (numba: vpmulld + vpaddd,
    the accumulator kept in int32), one per thread, all cores by default, on in-cache data."""
    import numba

    @numba.njit(parallel=True, cache=True)
    def dots(a, b, reps, out):
        for t in numba.prange(out.shape[0]):
            acc = np.int32(0)
            for _ in range(reps):
                for j in range(a.shape[1]):
                    acc = np.int32(acc + a[t, j] * b[t, j])
            out[t] = acc

    nt = threads or numba.get_num_threads()
    rng = np.random.default_rng(0)
    a = rng.integers(-100, 100, (nt, 4096)).astype(np.int32)
    b = rng.integers(-100, 100, (nt, 4096)).astype(np.int32)
    out = np.zeros(nt, np.int32)
    dots(a, b, 1, out)
    reps = 1000
    while True:
        t = _clock()
        dots(a, b, reps, out)
        dt = _clock() - t
        if dt > seconds:
            best = dt
            for _ in range(4):  # best of five (the machine is shared)
                t = _clock()
                dots(a, b, reps, out)
                best = min(best, _clock() - t)
            return nt * 4096 * reps / best
        reps *= 2


def bench_torch(X, labels, lr_h: float, lr_o: float, reps: int, threads: int = 2):
    import torch

    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    W1 = (torch.rand(1000, 784, generator=g) - 0.5) * 0.17
    W2 = (torch.rand(10, 1000, generator=g) - 0.5) * 0.15
    b1, b2 = torch.zeros(1000), torch.zeros(10)
    B = torch.rand(10, 1000, generator=g) * 2 - 1
    xs = torch.from_numpy(X.astype(np.float32))
    ys = torch.from_numpy(labels.astype(np.int64))
    eye = torch.eye(10)

    def natural(x, c):
        nonlocal W1, W2, b1, b2
        z1 = W1 @ x + b1
        y1 = torch.tanh(z1)
        d1 = B[c] * (1 - y1 * y1)
        W1 = W1 + lr_h * torch.outer(d1, x)
        b1 = b1 + lr_h * d1
        y2 = torch.sigmoid(W2 @ y1 + b2)
        e = eye[c] - y2
        W2 = W2 + lr_o * torch.outer(e, y1)
        b2 = b2 + lr_o * e

    def inplace(x, c):
        z1 = torch.addmv(b1, W1, x)
        y1 = z1.tanh_()
        d1 = y1.mul(y1).neg_().add_(1).mul_(B[c])
        W1.addr_(d1, x, alpha=lr_h)
        b1.add_(d1, alpha=lr_h)
        y2 = torch.addmv(b2, W2, y1).sigmoid_()
        e = eye[c].sub(y2)
        W2.addr_(e, y1, alpha=lr_o)
        b2.add_(e, alpha=lr_o)

    return time_steps({"natural": natural, "inplace": inplace}, xs, ys, reps)


def time_steps(steps: dict, xs, ys, reps: int, warm: int = 50, clock=None) -> dict[str, float]:
    """Samples/s of each batch-1 torch training step ``f(x, label)`` over ``reps`` passes of ``xs``, after ``warm``
    untimed steps (the torch side of every engine benchmark)."""
    import torch

    clock = clock or _clock
    out = {}
    with torch.no_grad():
        for name, f in steps.items():
            for i in range(min(warm, len(xs))):
                f(xs[i], int(ys[i]))
            t = clock()
            for _ in range(reps):
                for i in range(len(xs)):
                    f(xs[i], int(ys[i]))
            out[name] = reps * len(xs) / (clock() - t)
    return out


def _stage_profiler():
    """A copy of the engine's online DRTP sample loop (engine_kernels.train_samples, 2 layers) that stops after
    stage ``stop``: timing each prefix gives the time of every stage."""
    import numba

    from edgelearn.fixed import engine_kernels as K

    # not cached: numba's cache of this function would keep the engine kernels it was compiled with after they change
    @numba.njit
    def run(X, labels, P, Ws, bs, Bs, fbst, tables, acts, zs, gs, ds, ps, bufs, nzs, accs, rnd_state, Js, cnt,
            dbufs, dmetas, Ns, stop):
        for n in range(X.shape[0]):
            label = labels[n]
            x0 = acts[0]
            for j in range(x0.shape[0]):
                x0[j] = X[n, j]
            nnz = K.nonzeros(acts[0], nzs[0])
            if stop == 0:
                continue
            K.layer_preact(P, 0, Ws[0], bs[0], acts[0], nzs[0], nnz, accs[0], zs[0], cnt)
            if stop == 1:
                continue
            K.layer_activate(P, 0, zs[0], tables[0], acts[1], gs[0], cnt)
            K.hidden_delta(P, 0, label, Bs[0], fbst[0], ds[1], 0, gs[0], ds[0], ps[0], bufs[0], Ws[0], Bs[0],
                           ds[0], 0, False, cnt)
            if stop == 2:
                continue
            K._accumulate_or_update(P, 0, Ws[0], bs[0], acts[0], nzs[0], nnz, ds[0], Ws[0][:1], bs[0], bs[0],
                                    True, 0, rnd_state, Js[0], cnt, dbufs[0], dmetas[0], Ns[0])
            if stop == 3:
                continue
            nnz1 = K.nonzeros(acts[1], nzs[1])
            K.layer_preact(P, 1, Ws[1], bs[1], acts[1], nzs[1], nnz1, accs[1], zs[1], cnt)
            K.layer_activate(P, 1, zs[1], tables[1], acts[2], gs[1], cnt)
            K.output_error(P, 1, acts[2], label, ds[1], cnt)
            if stop == 4:
                continue
            K._accumulate_or_update(P, 1, Ws[1], bs[1], acts[1], nzs[1], nnz1, ds[1], Ws[1][:1], bs[1], bs[1],
                                    True, 0, rnd_state, Js[1], cnt, dbufs[1], dmetas[1], Ns[1])

    names = ["input copy + non-zero scan", "fc1 forward MACs (int32)", "fc1 tanh table, derivative, DRTP signal",
             "fc1 weight/bias update incl. draws", "output layer forward, sigmoid table, error",
             "output layer weight/bias update incl. draws"]
    return run, names


def time_stages(spec, X, y, reps: int, rng: str | None = None):
    """Per-stage time (s/sample) of the engine's online step, 8-bit preset, 1 thread (``rng``: the draws' source)."""
    from edgelearn.fixed.engine import FixedEngine

    run, names = _stage_profiler()
    out = []
    prev = 0.0
    for stop in range(len(names)):
        e = FixedEngine(spec, bits=8, seed=0, rng=rng)
        a = (X, y, e.P, e._Ws, e._bs, e._Bs, e._fbst, e._tables, e._acts, e._zs, e._gs, e._ds, e._ps, e._bufs,
             e._nzs, e._accs, e.rnd_state, e._Js, e.cnt, e._dbufs, e._dmetas, e._Ns)
        run(X[:20], y, *a[2:], stop)
        best = float("inf")
        for _ in range(reps):
            t = _clock()
            run(*a, stop)
            best = min(best, (_clock() - t) / len(X))
        out.append(max(best - prev, 0.0))
        prev = max(best, prev)
    return list(zip(names, out)), prev


def hidden_nonzeros(eng, X) -> float:
    """Mean number of non-zero hidden activations (rows of the output layer used) over the samples X."""
    from edgelearn.fixed import engine_kernels as K

    cnt = np.zeros_like(eng.cnt)
    n_in, n_h = eng.sizes[0], eng.sizes[1]
    nz = np.zeros(n_in, dtype=np.int64)
    acc = np.zeros(n_h, dtype=eng.acc_dtype)
    z, y, g = (np.zeros(n_h, dtype=np.int64) for _ in range(3))
    tot = 0
    for row in X:
        x = row.astype(np.int64)
        n = K.nonzeros(x, nz)
        K.layer_preact(eng.P, 0, eng._Ws[0], eng._bs[0], x, nz, n, acc, z, cnt)
        K.layer_activate(eng.P, 0, z, eng._tables[0], y, g, cnt)
        tot += np.count_nonzero(y)
    return tot / max(len(X), 1)


def time_mac_kernel(eng, X, reps: int) -> float:
    """Seconds per sample of the fc1 MAC kernel alone (engine_kernels.mac16 where the engine uses it, else mac32) on
    each sample's non-zero inputs (the input copy and non-zero scan are subtracted)."""
    import numba

    from edgelearn.fixed import engine_kernels as K

    mac = K.mac16 if eng.P[0, K.MAC16] else K.mac32

    # not cached: the cache would keep the kernel it was compiled with after the kernel changes
    @numba.njit
    def macs(X, W, nz, acc, reps):
        x = np.zeros(X.shape[1], dtype=np.int64)
        for _ in range(reps):
            for n in range(X.shape[0]):
                for j in range(X.shape[1]):
                    x[j] = X[n, j]
                nnz = K.nonzeros(x, nz)
                mac(W, x, nz, nnz, acc)

    @numba.njit(cache=True)
    def scan(X, nz, reps):
        x = np.zeros(X.shape[1], dtype=np.int64)
        s = 0
        for _ in range(reps):
            for n in range(X.shape[0]):
                for j in range(X.shape[1]):
                    x[j] = X[n, j]
                s += K.nonzeros(x, nz)
        return s

    nz = np.zeros(X.shape[1], dtype=np.int64)
    acc = np.zeros(eng.sizes[1], dtype=eng.acc_dtype)
    macs(X[:10], eng.W[0], nz, acc, 1)
    scan(X[:10], nz, 1)
    best = base = float("inf")
    for _ in range(3):
        t = _clock()
        macs(X, eng.W[0], nz, acc, reps)
        best = min(best, (_clock() - t) / (reps * len(X)))
        t = _clock()
        scan(X, nz, reps)
        base = min(base, (_clock() - t) / (reps * len(X)))
    return max(best - base, 1e-12)


def bench_speed(args) -> None:
    import numba

    from edgelearn.fixed.engine import FixedEngine
    from edgelearn.network import load_network

    ds = load_mnist(Path(args.data_dir), args.n, 10)
    if ds is not None:
        x, y = ds.x_train.reshape(len(ds.x_train), -1), ds.y_train
        src = "real MNIST"
    else:
        x, y = synthetic(args.n)
        src = "synthetic MNIST-like"
    y = np.asarray(y, dtype=np.int64)
    spec = load_network("fc1-1000")
    load0 = os.getloadavg()
    print(f"online DRTP, 784-1000-10, {len(x)} {src} samples; {os.cpu_count()} cores, numba threads "
          f"{numba.get_num_threads()}; machine load {load0[0]:.1f} / {load0[1]:.1f} / {load0[2]:.1f} (1/5/15 min)",
          flush=True)
    # ---- the references first (before any numba parallel region has started threads)
    peak1_start = measure_peak(threads=1)  # one core; measured again at the end, the larger counts
    ref = FixedEngine(spec, bits=8, seed=0)
    lr_h = 2.0 ** -ref.precision.layers[0].lr_shift
    lr_o = 2.0 ** -ref.precision.layers[1].lr_shift
    xt = x[:min(len(x), 2000)]
    tr = {t: bench_torch(xt, y, lr_h, lr_o, 1, threads=t) for t in (1, 2)}
    nat_t = max(tr, key=lambda t: tr[t]["natural"])
    inp_t = max(tr, key=lambda t: tr[t]["inplace"])
    nat, inp = tr[nat_t]["natural"], tr[inp_t]["inplace"]
    for t in (1, 2):
        print(f"  torch, {t} thread{'s' if t > 1 else ''}: natural (batch 1) {tr[t]['natural']:,.0f} samples/s;  "
              f"in-place addmv_/addr_ {tr[t]['inplace']:,.0f} samples/s", flush=True)
    from oracles.apytypes_step import apytypes_step_factory

    step, state = apytypes_step_factory(ref)
    Xr = ref.quantize_inputs(x[:args.n_apy])
    t0 = _clock()
    for i in range(len(Xr)):
        step(Xr[i].astype(np.int64), int(y[i]))
    apy_rate = len(Xr) / (_clock() - t0)
    for i in range(len(Xr)):
        ref.step(Xr[i], int(y[i]))
    for k in range(2):
        assert np.array_equal(state["W"][k], ref.W[k].astype(np.int64)), f"apytypes differs from the engine (W{k})"
        assert np.array_equal(state["b"][k], ref.b[k]), f"apytypes differs from the engine (b{k})"
    print(f"  apytypes (bit-identical to the engine on {len(Xr)} samples, asserted): {apy_rate:,.1f} samples/s",
          flush=True)
    # ---- the engine
    results = {}
    rnd = {"rounding": [("weight", "RND"), ("bias", "RND")]}
    # training runs on one thread (the row- and column-parallel paths lost to these and were removed)
    variants = [("engine 8-bit preset (STOCH weights, rng: layer), 1 thread", {"rng": "layer"}),
                ("engine 8-bit, RND weight update, 1 thread", rnd),
                ("engine 8-bit preset (STOCH weights, rng: neuron), 1 thread", {"rng": "neuron"})]
    engines = {}
    for name, kw in variants:
        eng = FixedEngine(spec, bits=8, seed=0, **kw)
        X = eng.quantize_inputs(x)
        eng.fit_raw(X[:300], y[:300], shuffle=False)  # compile
        best = 0.0
        for _ in range(args.reps):
            t0 = _clock()
            eng.fit_raw(X, y, shuffle=False)
            best = max(best, len(X) / (_clock() - t0))
        results[name] = best
        engines[name] = (eng, X)
        print(f"  {name}: {best:,.0f} samples/s", flush=True)
    eng1, X = engines[variants[0][0]]
    stages, step_s = time_stages(spec, X, y, args.reps, "layer")  # where the time goes (1 thread)
    stages_n, step_n = time_stages(spec, X, y, args.reps, "neuron")
    mac_s = time_mac_kernel(eng1, X, 2)
    nnz_mean = float((X != 0).sum(1).mean())
    n_hidden = eng1.sizes[1]
    macs_fc1 = nnz_mean * n_hidden
    nnz_h = hidden_nonzeros(eng1, X[:200])
    macs_done = macs_fc1 + nnz_h * 10
    macs_dense = 784 * n_hidden + n_hidden * 10
    fwd_s = stages[1][1] + stages[2][1] + stages[4][1]  # MACs + activations + output layer forward/error
    print(f"  forward MACs per sample: {nnz_mean:.0f} of 784 inputs non-zero x {n_hidden} + {nnz_h:.0f} non-zero "
          f"hidden x 10 = {macs_done:,.0f} (zero inputs are skipped, as an event-driven datapath does)", flush=True)
    # ---- the machine's int32 multiply-add peak (last: its threads spin for a while after the loop)
    peak1 = max(peak1_start, measure_peak(threads=1))
    peak_all = measure_peak()
    ncores = numba.get_num_threads()
    # a peak is a maximum: on a busy machine the all-core loop runs below ncores x one core, so the larger counts
    peak = max(peak_all, ncores * peak1)
    load1 = os.getloadavg()
    e1 = results[variants[0][0]]
    r1 = results[variants[1][0]]
    print()
    print("| figure | value | ratio |")
    print("|---|---:|---:|")
    for name, v in results.items():
        print(f"| {name} | {v:,.0f} samples/s | |")
    print(f"| torch natural, batch 1 (best of 1 / 2 threads: {nat_t}) | {nat:,.0f} samples/s | engine / torch = "
          f"{e1 / nat:.2f}x (RND: {r1 / nat:.2f}x) |")
    print(f"| torch in-place addmv_/addr_ (best: {inp_t} thread{'s' if inp_t > 1 else ''}) | {inp:,.0f} samples/s | "
          f"engine / torch = {e1 / inp:.2f}x (RND: {r1 / inp:.2f}x) |")
    print(f"| apytypes | {apy_rate:,.1f} samples/s | engine / apytypes = {e1 / apy_rate:,.0f}x |")
    en = results[variants[2][0]]
    print(f"| rng: neuron vs rng: layer (STOCH step) | {en:,.0f} vs {e1:,.0f} samples/s | {en / e1:.2f}x "
          f"(torch natural {en / nat:.2f}x, in-place {en / inp:.2f}x) |")
    print(f"| int32 MAC peak: dot-product loop on {ncores} threads / 1 thread (best of start and end) | "
          f"{peak_all / 1e9:.2f} / {peak1 / 1e9:.2f} GMAC/s | peak used: {peak / 1e9:.2f} GMAC/s |")
    print(f"| fc1 MAC kernel alone (int8 x uint8 -> int32, 1 thread) | {macs_fc1 / mac_s / 1e9:.2f} GMAC/s | "
          f"{100 * macs_fc1 / mac_s / peak:.0f} % of peak |")
    print(f"| forward pass (MACs executed / forward time incl. tables, 1 thread) | "
          f"{macs_done / fwd_s / 1e9:.2f} GMAC/s | {100 * macs_done / fwd_s / peak:.0f} % of peak |")
    print(f"| forward pass, dense-equivalent MACs (784x1000+1000x10) | {macs_dense / fwd_s / 1e9:.2f} GMAC/s | "
          f"{100 * macs_dense / fwd_s / peak:.0f} % of peak |")
    print(f"| training step: forward MACs + update multiply-adds (2 x {macs_done:,.0f}) x samples/s, 1 thread | "
          f"{2 * macs_done * e1 / 1e9:.2f} GMAC/s | {100 * 2 * macs_done * e1 / peak:.0f} % of peak |")
    print()
    ok = {True: "met", False: "NOT met"}
    print("targets (8-bit preset, 1 thread, vs the faster torch thread count): "
          f">= 2x natural torch: {e1 / nat:.2f}x {ok[e1 >= 2 * nat]}; "
          f">= 1.2x in-place torch: {e1 / inp:.2f}x {ok[e1 >= 1.2 * inp]}; "
          f">= 50x apytypes: {e1 / apy_rate:,.0f}x {ok[e1 >= 50 * apy_rate]}; "
          f">= 50 % of the int32 peak: MAC kernel {100 * macs_fc1 / mac_s / peak:.0f} % (1 thread) "
          f"{ok[macs_fc1 / mac_s >= 0.5 * peak]}, "
          f"whole forward pass {100 * macs_done / fwd_s / peak:.0f} % {ok[macs_done / fwd_s >= 0.5 * peak]}")
    print(f"\nwhere the time goes (8-bit preset, 1 thread, {1e6 * step_s:.1f} us/sample rng: layer, "
          f"{1e6 * step_n:.1f} us/sample rng: neuron; stage profile of the same sample loop):")
    for (name, sec), (_, sec_n) in zip(stages, stages_n):
        print(f"  {name:52s} layer {1e6 * sec:6.1f} us  {100 * sec / step_s:4.0f} %   neuron {1e6 * sec_n:6.1f} us  "
              f"{100 * sec_n / step_n:4.0f} %")
    print(f"\nmachine load at the end: {load1[0]:.1f} / {load1[1]:.1f} / {load1[2]:.1f}; numba threading layer "
          f"{numba.threading_layer()}")


def rng_accuracy(args) -> None:
    """Test accuracy of the same runs under rng: layer and rng: neuron (online, the config's rule, 8-bit preset
    unless --bits), one row per seed: the draw contract must not change accuracy beyond seed noise."""
    from edgelearn.fixed.engine import FixedEngine
    from edgelearn.network import load_network

    ds = load_mnist(Path(args.data_dir), args.n_train, args.n_test)
    if ds is None:
        sys.exit(f"--rng-accuracy needs real MNIST (looked in {args.data_dir})")
    spec = load_network(args.config)
    bits = args.bits[0] if len(args.bits) == 1 else 8
    print(f"online {spec.rule}, {spec.name} {spec.mlp_sizes()}, {bits} bits, {args.epochs} epoch(s), "
          f"{ds.n_train} train / {ds.n_test} test", flush=True)
    acc: dict[str, list[float]] = {"layer": [], "neuron": []}
    for s in range(args.seeds):
        row = []
        for rng in acc:
            eng = FixedEngine(spec, bits=bits, seed=args.seed + s, rng=rng)
            eng.fit(ds.x_train, ds.y_train, epochs=args.epochs)
            acc[rng].append(eng.evaluate(ds.x_test, ds.y_test))
            row.append(f"{rng} {100 * acc[rng][-1]:.2f} %")
        print(f"  seed {args.seed + s}: " + ", ".join(row), flush=True)
    print("\n| rng | " + " | ".join(f"seed {args.seed + s}" for s in range(args.seeds)) + " | mean | std |")
    print("|---|" + "---:|" * (args.seeds + 2))
    for rng, v in acc.items():
        print(f"| {rng} | " + " | ".join(f"{100 * a:.2f} %" for a in v) +
              f" | {100 * np.mean(v):.2f} % | {100 * np.std(v, ddof=1) if len(v) > 1 else 0:.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(acc, indent=2) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--table", action="store_true", help="accuracy over word lengths vs the float twin (MNIST)")
    ap.add_argument("--rng-accuracy", action="store_true",
                    help="test accuracy rng: layer vs neuron over --seeds seeds (MNIST; e.g. --config fc1-500)")
    ap.add_argument("--seeds", type=int, default=3, help="seeds of --rng-accuracy")
    ap.add_argument("--data-dir", default=str(DEFAULT_DATA))
    ap.add_argument("--config", default="fc1-1000")
    ap.add_argument("--bits", type=int, nargs="+", default=[4, 6, 8, 10, 12, 16])
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-train", type=int)
    ap.add_argument("--n-test", type=int)
    ap.add_argument("--json", help="write the table rows here")
    ap.add_argument("-n", type=int, default=3000, help="samples timed (speed)")
    ap.add_argument("--n-apy", type=int, default=5, help="samples timed with apytypes")
    ap.add_argument("--reps", type=int, default=3, help="best of N engine passes")
    ap.add_argument("--cpu-time", action="store_true", help="time with this process's CPU time instead of wall time")
    args = ap.parse_args()
    if args.cpu_time:
        global _clock
        _clock = time.process_time
    if args.table:
        accuracy_table(args)
    elif args.rng_accuracy:
        rng_accuracy(args)
    else:
        bench_speed(args)


if __name__ == "__main__":
    main()
