"""The engine's fast paths compute exactly what the generic paths compute.

* the word-level LFSR generator (a recurrence on the 32-bit draws) gives lfsr_draw32's draws and states;
* the buffered draw stream (reused between samples, restarted from rnd_state) gives one sequential stream;
* the int32 kernels (MAC, short-row MAC, weight updates), the vectorized assignment and the table lookup equal the
  generic kernels and the arith primitives, on random formats, modes (STOCH / RND / TRN, WRAP / SAT), learning
  rates (increments above and below the weight LSB), row lengths (short rows, n_out not a multiple of 16) and
  sparse inputs (partial rows);
* the int16 kernels of narrow formats (FAST16_W: the top-halves draw stream, the carry as a comparison) equal the
  int32 kernels and the generic path.
"""
from __future__ import annotations

import numpy as np
import pytest

from edgelearn.fixed import engine_kernels as K
from edgelearn.fixed.engine import FixedEngine
from edgelearn.fixed.lfsr import (DRAW_HISTORY, draws_extend, draws_start, lfsr_draw32, lfsr_draws, py_lfsr_bits,
                                  seed_state, state_after_draw)
from edgelearn.network import network_from_dict


def _sequential(state: int, n: int) -> tuple[int, list[int]]:
    s, out = int(state), []
    for _ in range(n):
        s, d = lfsr_draw32(s)
        out.append(int(d))
    return int(s), out


# --- the LFSR at word level -------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 31, 32, 33, 100, DRAW_HISTORY - 1, DRAW_HISTORY, DRAW_HISTORY + 1, 7000])
def test_word_level_draws_equal_lfsr_draw32(n):
    rng = np.random.default_rng(n)
    for _ in range(3):
        st = int(rng.integers(1, 1 << 32))
        end, draws = lfsr_draws(st, n)
        ref_end, ref = _sequential(st, n)
        assert draws.tolist() == ref and end == ref_end


def test_word_level_draws_from_special_states():
    for st in (1, 0x80000000, 0xFFFFFFFF, seed_state(0), seed_state(12345)):
        end, draws = lfsr_draws(st, 3000)
        ref_end, ref = _sequential(st, 3000)
        assert draws.tolist() == ref and end == ref_end


def test_state_after_draw_is_the_lfsr_state():
    rng = np.random.default_rng(0)
    for st in [1, 2, 0xFFFFFFFF] + [int(v) for v in rng.integers(1, 1 << 32, 3000)]:
        ns, d = lfsr_draw32(st)
        assert state_after_draw(d) == ns
        assert (ns, d) == py_lfsr_bits(st, 32)


def test_draws_extend_continues_any_window():
    rng = np.random.default_rng(1)
    st = int(rng.integers(1, 1 << 32))
    _, ref = _sequential(st, 3 * DRAW_HISTORY + 500)
    buf = np.zeros(len(ref), dtype=np.uint32)
    draws_start(np.int64(st), buf)
    lo = DRAW_HISTORY
    for n in (1, 15, 16, 17, 64, 1000, 3000):
        if lo + n > len(ref):
            break
        draws_extend(buf, lo, n)
        lo += n
    assert buf[:lo].astype(np.int64).tolist() == ref[:lo]


# --- the buffered stream ----------------------------------------------------------------------------------------


def test_buffered_stream_is_one_sequential_stream():
    """Takes of mixed sizes across many opens (reused window, moves back to the start of the buffer, restarts from
    a state the window does not stand at) give exactly the sequential draws and states."""
    n_out = 777
    dbuf = np.zeros(K.stream_size(n_out), dtype=np.uint32)
    dmeta = np.zeros(5, dtype=np.int64)
    rng = np.random.default_rng(2)
    state = seed_state(99)
    total = 0
    for call in range(60):
        if call in (20, 41):  # someone else moved the stream (e.g. a generic path): restart from rnd_state
            state, _ = _sequential(state, 5)
        K.stream_open(dbuf, dmeta, state)
        got = []
        for _ in range(int(rng.integers(0, 4))):
            n = int(rng.integers(1, n_out + 1))
            p0 = K.stream_room(dbuf, dmeta, n)
            draws_extend(dbuf, p0, n)
            K.stream_advance(dmeta, n)
            got += dbuf[p0:p0 + n].astype(np.int64).tolist()
        new_state = int(K.stream_close(dbuf, dmeta))
        ref_state, ref = _sequential(state, len(got))
        assert got == ref and new_state == ref_state
        state = new_state
        total += len(got)
    assert total > K.STREAM_ROOM  # the window moved back to the start at least once


# --- int32 kernels vs generic kernels ---------------------------------------------------------------------------


def test_cv_array_equals_cv():
    rng = np.random.default_rng(3)
    for _ in range(400):
        width = int(rng.integers(2, 40))
        signed = bool(rng.integers(0, 2))
        frac = int(rng.integers(-4, 20))
        src = frac + int(rng.integers(-8, 30))
        rmode, omode = int(rng.choice([0, 2, 6])), int(rng.integers(0, 4))
        r = (rng.integers(-(1 << 40), 1 << 40, 50) >> rng.integers(0, 40, 50)).astype(np.int64)
        if rng.random() < 0.1:
            r[0] = 1 << 61  # outside the inline range: the whole array takes the element path
        c1, c2 = np.zeros(2, np.int64), np.zeros(2, np.int64)
        out = np.zeros_like(r)
        K.cv_array(r, len(r), src, width, frac, signed, rmode, omode, c1, out)
        ref = np.array([K.cv(int(v), src, width, frac, signed, rmode, omode, c2) for v in r])
        assert np.array_equal(out, ref) and np.array_equal(c1, c2)


def test_table_lookup_follows_arithmetic_md():
    rng = np.random.default_rng(4)
    table = np.arange(1024, dtype=np.int64) * 7 - 3000
    for fa in (0, 2, 6, 9, 14, 30, 70):
        z = (rng.integers(-(1 << 40), 1 << 40, 300) >> rng.integers(0, 40, 300)).astype(np.int64)
        y = np.zeros_like(z)
        K.table_lookup(z, len(z), table, fa, 10, 3, y)
        sh = fa - 6
        for zi, yi in zip(z.tolist(), y.tolist()):
            idx = zi >> min(sh, 63) if sh >= 0 else max(min(zi, 1024), -1024) << min(-sh, 40)
            assert yi == table[min(max(idx + 512, 0), 1023)]


@pytest.mark.parametrize("n_out", [1, 7, 10, 16, 33, 63, 64, 100, 1000])
def test_int32_mac_equals_exact_sum(n_out):
    rng = np.random.default_rng(n_out)
    n_in = 97
    W = rng.integers(-128, 128, (n_in, n_out)).astype(np.int8)
    x = rng.integers(0, 256, n_in).astype(np.int64)
    x[rng.random(n_in) < 0.6] = 0
    nz = np.zeros(n_in, dtype=np.int64)
    nnz = K.nonzeros(x, nz)
    assert nz[:nnz].tolist() == np.flatnonzero(x).tolist()
    ref = x @ W.astype(np.int64)
    acc = np.zeros(n_out, dtype=np.int32)
    K.mac32(W, x, nz, nnz, acc)
    assert np.array_equal(acc, ref)
    acc[:] = 0
    K.mac32_short(W, x, acc, K._short_rows(n_out) if n_out < K.SHORT_ROW else 4)
    assert np.array_equal(acc, ref)
    acc[:] = -1
    K.mac16(W, x, nz, nnz, acc)  # int8 rows interleaved into int16 pairs
    assert np.array_equal(acc, ref)


@pytest.mark.parametrize("dtype", [np.int16, np.int32])
def test_int16_pair_mac_equals_exact_sum(dtype):
    """mac16 on int16-range weights stored as int16 or wider (truncated to int16 lanes), weights and signed inputs
    at the int16 limits (one of the two scaled down to keep ACC32's bound), every column tail (n_out mod 16) and a
    row count that is not a multiple of 4."""
    rng = np.random.default_rng(7)
    n_in = 11
    lim = (1 << 15) - 1
    for n_out, (wsh, xsh) in zip((5, 16, 31, 40), ((0, 4), (12, 0), (0, 4), (12, 0))):
        W = rng.integers(-lim, lim + 1, (n_in, n_out)).astype(np.int64)
        x = rng.integers(-lim, lim + 1, n_in).astype(np.int64)
        W[0], W[1], x[0], x[1], x[5] = lim, -lim, lim, -lim, 0
        W, x = (W >> wsh).astype(dtype), x >> xsh
        nz = np.zeros(n_in, dtype=np.int64)
        nnz = K.nonzeros(x, nz)
        ref = x @ W.astype(np.int64)
        assert np.abs(x).max() * np.abs(W.astype(np.int64)).max() * n_in < 1 << 31  # ACC32's bound
        for adt in (np.int32, np.int64):  # the engine's accumulators are int64 when another layer needs it
            acc = np.zeros(n_out, dtype=adt)
            K.mac16(W, x, nz, nnz, acc)
            assert np.array_equal(acc, ref)


def _spec(n_in, hidden, classes, act, rule, precision):
    return network_from_dict({
        "name": "fast", "input_shape": [n_in], "num_classes": classes, "loss": "bce", "rule": rule,
        "layers": [{"type": "linear", "out": hidden, "act": act, "name": "fc1"},
                   {"type": "linear", "out": classes, "name": "out"}],
        "precision": precision})


def _generic(eng: FixedEngine) -> FixedEngine:
    """Force the generic kernels: arith.update_weight_counted per weight and bias, _mac_range."""
    eng.P[:, K.FAST_W] = 0
    eng.P[:, K.FAST_B] = 0
    eng.P[:, K.ACC32] = 0
    return eng


CASES = [(h, wq, ov, lr) for h in (10, 64, 130) for wq in ("STOCH", "RND", "TRN") for ov in ("SAT", "WRAP")
         for lr in (-12, 6)]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_fast_paths_equal_generic_paths(case):
    """Every row path (short rows, rows of 64, 130), weight rounding, overflow mode, and increments far above the
    LSB (lr_shift -12: s <= 0, no rounding, saturation / wrap-around) or below it; random word length, bias mode,
    activation, rule, sizes and input sparsity."""
    hidden, wq, ov, lr = CASES[case]
    rng = np.random.default_rng(1000 + case)
    n_in = int(rng.integers(5, 70))
    classes = int(rng.choice([2, 3, 10, 13]))
    bits = int(rng.choice([4, 6, 8, 10, 12]))
    bq = str(rng.choice(["STOCH", "RND", "TRN"]))
    prec = {"preset": bits, "lr_shift": lr,
            "weight": f"fixed<{bits},2,{wq},{ov}>", "bias": f"fixed<{bits},2,{bq},{ov}>"}
    act = str(rng.choice(["tanh", "sigmoid", "hardtanh", "relu"]))
    rule = str(rng.choice(["drtp", "drtp", "dfa", "bp"]))
    x = rng.random((60, n_in))
    x[rng.random(x.shape) < rng.choice([0.0, 0.5, 0.9])] = 0  # sparse inputs: partial rows, runs of rows
    y = rng.integers(0, classes, 60)
    spec = _spec(n_in, hidden, classes, act, rule, prec)
    fast = FixedEngine(spec, seed=case)
    assert fast.P[:, K.FAST32_W].all() and fast.P[:, K.ACC32].all()
    ref = _generic(FixedEngine(spec, seed=case))
    old = FixedEngine(spec, seed=case)
    old.P[:, K.FAST32_W] = 0  # the int64 fast update with interleaved table-driven draws
    old.P[:, K.ACC32] = 0
    for e in (fast, ref, old):
        e.fit(x, y, epochs=2)
    for other in (ref, old):
        for a, b in zip(fast.weights(), other.weights()):
            assert np.array_equal(a["W"], b["W"]) and np.array_equal(a["b"], b["b"])
        assert np.array_equal(fast.cnt, other.cnt)
        assert np.array_equal(fast.rnd_state, other.rnd_state)
    if lr < 0:
        assert fast.counters["fc1"]["weight"]["overflow"] > 0


def test_preset_uses_the_int32_paths():
    spec = _spec(784, 1000, 10, "tanh", "drtp", {"preset": 8})
    eng = FixedEngine(spec)
    assert eng.P[:, K.ACC32].all() and eng.P[:, K.FAST32_W].all() and eng.P[:, K.FAST_B].all()
    assert eng.P[:, K.MAC16].all()  # int8 weights, 8-bit inputs and activations: the pair MAC
    assert eng.w_dtype == np.int8 and eng.acc_dtype == np.int32


def test_int32_update_is_refused_when_it_could_overflow():
    # fc1: 16-bit errors x 16-bit unsigned inputs, dm * x needs 32 bits -> the int64 update; the output layer
    # (inputs: fixed<16,1> activations) fits
    spec = _spec(20, 30, 3, "tanh", "drtp", {"preset": 16, "weight": "fixed<16,2,STOCH,SAT>"})
    eng = FixedEngine(spec)
    assert eng.P[:, K.FAST_W].all() and eng.P[:, K.FAST32_W].tolist() == [0, 1]


def test_stream_survives_rnd_state_changes_and_weight_files(tmp_path):
    """The draw window is a cache: moving rnd_state by hand or reloading the engine gives the same bits as an
    engine that never had a window."""
    rng = np.random.default_rng(7)
    spec = _spec(30, 80, 4, "tanh", "drtp", {"preset": 8})
    x = rng.random((50, 30))
    y = rng.integers(0, 4, 50)
    a = FixedEngine(spec, seed=3)
    b = _generic(FixedEngine(spec, seed=3))
    a.fit(x[:20], y[:20], shuffle=False)
    b.fit(x[:20], y[:20], shuffle=False)
    a.rnd_state[:] = b.rnd_state[:] = [seed_state(5), seed_state(6)]
    a.fit(x[20:30], y[20:30], shuffle=False)
    b.fit(x[20:30], y[20:30], shuffle=False)
    a.save(tmp_path / "w.npz")
    from edgelearn.fixed.engine_io import load_weights

    c = load_weights(tmp_path / "w.npz")
    for e in (a, b, c):
        e.fit(x[30:], y[30:], shuffle=False)
    for e in (b, c):
        for wa, wb in zip(a.weights(), e.weights()):
            assert np.array_equal(wa["W"], wb["W"]) and np.array_equal(wa["b"], wb["b"])
        assert np.array_equal(a.rnd_state, e.rnd_state)


def test_jump_draws_equals_sequential_draws():
    from edgelearn.fixed.lfsr import jump_draws

    rng = np.random.default_rng(12)
    for n in [0, 1, 2, 3, 31, 32, 1000, 4095, 150000]:
        st = int(rng.integers(1, 1 << 32))
        assert jump_draws(st, n) == lfsr_draws(st, n)[0]


# --- int16 lanes (P[k, FAST16_W]): narrow formats, the same bits as the int32 kernels -------------------------------

CASES16 = [(bits, h, wq, ov, lr, "layer") for bits, lr in ((8, 6), (6, 4), (4, -8)) for h in (10, 70)
           for wq, ov in (("STOCH", "SAT"), ("STOCH", "WRAP"), ("RND", "SAT"), ("TRN", "WRAP"))] + \
    [(bits, 70, "STOCH", ov, lr, "neuron") for bits, lr in ((8, 6), (4, -8)) for ov in ("SAT", "WRAP")]


@pytest.mark.parametrize("case", range(len(CASES16)))
def test_int16_update_equals_int32_update(case):
    """The int16 kernels (long and short rows, the top-halves draw stream, the carry of ``u + addend`` as a comparison,
    the zero-event count from dm; rng: neuron, its generators stepped in a 32-bit pass) against the int32 kernels and
    the generic path: weights, biases, counters, LFSR and generator states, over two fits (the window reused);
    increments below the LSB (s up to 15) and above it (4 bits, s < 0)."""
    bits, hidden, wq, ov, lr, src = CASES16[case]
    rng = np.random.default_rng(2000 + case)
    prec = {"preset": bits, "lr_shift": lr, "rng": src,
            "weight": f"fixed<{bits},2,{wq},{ov}>", "bias": f"fixed<{bits},2,{wq},{ov}>"}
    spec = _spec(40, hidden, 3, "tanh", "drtp", prec)
    x = rng.random((40, 40))
    x[rng.random(x.shape) < 0.5] = 0
    y = rng.integers(0, 3, 40)
    fast = FixedEngine(spec, seed=case)
    assert fast.P[:, K.FAST16_W].all()
    w32 = FixedEngine(spec, seed=case)
    w32.P[:, K.FAST16_W] = 0
    ref = _generic(FixedEngine(spec, seed=case))
    for e in (fast, w32, ref):
        e.fit(x[:25], y[:25])
        e.fit(x[25:], y[25:])
    for other in (w32, ref):
        for a, b in zip(fast.weights(), other.weights()):
            assert np.array_equal(a["W"], b["W"]) and np.array_equal(a["b"], b["b"])
        assert np.array_equal(fast.cnt, other.cnt)
        assert np.array_equal(fast.rnd_state, other.rnd_state)
        assert all(np.array_equal(a, b) for a, b in zip(fast.neuron_state, other.neuron_state))
    assert fast.cnt[:, K.T_WEIGHT].sum() > 0


def test_preset_8_uses_int16_lanes_and_10_does_not():
    """8 bits: |dm*x| <= 128*255 and s = 15 fit int16 on both layers; 10 bits: dm*x needs 19 bits."""
    for bits, want in ((8, [1, 1]), (10, [0, 0])):
        eng = FixedEngine(_spec(784, 100, 10, "tanh", "drtp", {"preset": bits}))
        assert eng.P[:, K.FAST16_W].tolist() == want and eng.P[:, K.FAST32_W].all()
