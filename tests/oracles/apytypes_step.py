"""The engine's online step of a two-layer MLP written independently with apytypes fixed-point arrays
(docs/arithmetic.md): the whole-step oracle.  tests/test_engine_apytypes.py asserts the engine bit-identical to it;
benchmarks/bench_engine.py times it (and asserts the same)."""
from __future__ import annotations

import numpy as np

#: rules this oracle expresses: DRTP's hidden signal needs only the label; 'shallow' freezes the hidden layer
RULES = ("drtp", "shallow")


def apytypes_step_factory(eng):
    """The engine's online step (hidden tanh table layer + sigmoid output, STOCH/RND weight updates; the hidden
    layer learns by DRTP or is frozen by 'shallow') written with apytypes fixed-point arrays; returns
    step(x_raw, label) that updates its own copy of the weights."""
    import apytypes as apy
    from apytypes import APyFixedArray, OverflowMode, QuantizationMode

    from edgelearn.fixed import engine_kernels as K
    from edgelearn.fixed.lfsr import lfsr_bits

    Q = {"TRN": QuantizationMode.TRN, "RND": QuantizationMode.RND}
    O = {"SAT": OverflowMode.SAT, "WRAP": OverflowMode.WRAP}
    lps = eng.precision.layers
    state = {"W": [w.astype(np.int64).copy() for w in eng.W], "b": [b.copy() for b in eng.b],
             "rnd": eng.rnd_state.copy()}

    def fx(raw, f):  # raw int64 array + format -> APyFixedArray (signed; unsigned formats get one more bit)
        extra = 0 if f.signed else 1
        vals = np.ldexp(np.asarray(raw, dtype=np.int64).astype(np.float64), -f.frac)  # exact (< 2**53)
        return APyFixedArray.from_float(vals, int_bits=f.integer + extra, frac_bits=f.frac)

    def pow2(shift):  # the learning rate 2**-shift as an exact fixed-point constant
        return APyFixedArray.from_float([2.0 ** -shift], int_bits=2 - shift, frac_bits=shift)

    def raw_of(a, width):
        bits = np.asarray(a.to_bits(), dtype=np.int64)
        return np.where(bits >> (width - 1) & 1, bits - (1 << width), bits)

    def cast(a, f):  # unsigned destinations: one more (sign) bit; only non-negative values are cast to them here
        extra = 0 if f.signed else 1
        return a.cast(int_bits=f.integer + extra, frac_bits=f.frac, quantization=Q[f.rounding],
                      overflow=O[f.overflow])

    def update(k, x_raw, xfmt, d_raw, dfmt):
        lp = lps[k]
        wf, bf = lp.weight, lp.bias
        W, b = state["W"][k], state["b"][k]
        nz = np.nonzero(x_raw)[0]
        st = int(state["rnd"][k])
        xa = fx(x_raw[nz], xfmt)
        da = fx(d_raw, dfmt)
        u = apy.outer(xa, da)  # exact products (len(nz), n_out)
        shift = lp.lr_shift
        u = u * pow2(shift)  # exact
        Wa = fx(W[nz], wf)
        if wf.rounding == "STOCH":
            n = len(nz) * lp.n_out
            draws = np.empty(n, dtype=np.int64)
            for i in range(n):
                st, draws[i] = lfsr_bits(st, 32)
            # the draw d as the unsigned value d * 2**-(F_w + 32) (one extra bit keeps it non-negative)
            dr = APyFixedArray.from_float(np.ldexp(draws.astype(np.float64), -(wf.frac + 32)).reshape(len(nz), -1),
                                          int_bits=1 - wf.frac, frac_bits=wf.frac + 32)
            inc = (u + dr).cast(int_bits=40, frac_bits=wf.frac, quantization=QuantizationMode.TRN,
                                overflow=OverflowMode.WRAP)
        else:
            inc = u.cast(int_bits=40, frac_bits=wf.frac, quantization=Q[wf.rounding],
                         overflow=OverflowMode.WRAP)
        Wn = (Wa + inc).cast(int_bits=wf.integer, frac_bits=wf.frac, quantization=QuantizationMode.TRN,
                             overflow=O[wf.overflow])
        W[nz] = raw_of(Wn, wf.width)
        bu = da * pow2(shift)
        if bf.rounding == "STOCH":
            draws = np.empty(lp.n_out, dtype=np.int64)
            for i in range(lp.n_out):
                st, draws[i] = lfsr_bits(st, 32)
            bu = bu + APyFixedArray.from_float(np.ldexp(draws.astype(np.float64), -(bf.frac + 32)),
                                               int_bits=1 - bf.frac, frac_bits=bf.frac + 32)
            binc = bu.cast(int_bits=40, frac_bits=bf.frac, quantization=QuantizationMode.TRN,
                           overflow=OverflowMode.WRAP)
        else:
            binc = bu.cast(int_bits=40, frac_bits=bf.frac, quantization=Q[bf.rounding],
                           overflow=OverflowMode.WRAP)
        state["b"][k] = raw_of((fx(b, bf) + binc).cast(int_bits=bf.integer, frac_bits=bf.frac,
                                                       quantization=QuantizationMode.TRN, overflow=O[bf.overflow]),
                               bf.width)
        state["rnd"][k] = st

    def dense(k, x_raw, xfmt):
        lp = lps[k]
        acc = fx(state["b"][k], lp.bias).cast(int_bits=lp.accum.integer, frac_bits=lp.accum.frac)
        prod = fx(x_raw, xfmt) @ fx(state["W"][k], lp.weight)  # exact dot products (full precision)
        return raw_of((acc + prod).cast(int_bits=lp.accum.integer, frac_bits=lp.accum.frac), lp.accum.width)

    def step(x_raw, label):
        l1, l2 = lps
        z1 = dense(0, x_raw, l1.input)
        tb, rb = eng.precision.table_bits, eng.precision.range_bits
        idx = np.clip((z1 >> (l1.accum.frac - (tb - rb - 1))) + (1 << (tb - 1)), 0, (1 << tb) - 1)
        t = eng.tables[0][idx]  # table lookup (apytypes has no LUT)
        ta = fx(t, l1.act)
        one = APyFixedArray.from_float(np.ones(len(t)), int_bits=2, frac_bits=0)
        if eng.rules[0] == "drtp":
            # 1 - t*t >= 0, except that the table's end entry reads as saturated where the act format cannot
            # hold 1 (arithmetic.md §11): |t| >= min(1, largest value) -> f' = 0 (written out from the format here)
            top = min(1 << l1.act.frac, (1 << (l1.act.width - 1)) - 1)
            live = APyFixedArray.from_float(np.where(np.abs(t) >= top, 0.0, 1.0), int_bits=2, frac_bits=0)
            g = cast((one - ta * ta) * live, l1.deriv)
            Bc = fx(eng.B[0][label], l1.feedback)
            d1 = raw_of(cast(Bc * g, l1.error), l1.error.width)
            update(0, x_raw, l1.input, d1, l1.error)
        z2 = dense(1, t, l1.act)
        idx2 = np.clip((z2 >> (l2.accum.frac - (tb - rb - 1))) + (1 << (tb - 1)), 0, (1 << tb) - 1)
        y2 = eng.tables[1][idx2]
        tgt = np.zeros(len(y2), dtype=np.int64)
        tgt[label] = 1 << l2.act.frac
        e = raw_of(cast(APyFixedArray.from_float(np.ldexp((tgt - y2).astype(np.float64), -l2.act.frac),
                                                 int_bits=3, frac_bits=l2.act.frac), l2.error), l2.error.width)
        update(1, t, l1.act, e, l2.error)

    assert all(eng.P[k, K.ACT] in (K.ACT_TANH, K.ACT_SIGMOID) for k in range(2))
    assert len(lps) == 2 and eng.rules[0] in RULES, (len(lps), eng.rules)
    return step, state
