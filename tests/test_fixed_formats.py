"""Formats parsing/printing, the arithmetic kernels against an unbounded-integer reference, the LFSR and
stochastic rounding, activations (docs/arithmetic.md).  The bit-exact oracles live in test_fixed_oracles.py."""

from __future__ import annotations

import numpy as np
import pytest

from edgelearn.errors import FormatError
from edgelearn.fixed import activations as act
from edgelearn.fixed import arith, lfsr
from edgelearn.fixed.formats import OVERFLOW, ROUNDING, AccumulatorFormat, FixedFormat, parse_format

# ----------------------------------------------------------------------------------------------------
# parsing / printing


@pytest.mark.parametrize(
    "text, expected",
    [
        ("fixed<8,3>", (8, 3, True, "TRN", "WRAP")),
        ("fixed<8,3,RND_CONV,SAT>", (8, 3, True, "RND_CONV", "SAT")),
        ("ufixed<8,0,RND,SAT_SYM>", (8, 0, False, "RND", "SAT_SYM")),
        ("ap_fixed<16,6>", (16, 6, True, "TRN", "WRAP")),
        ("ap_ufixed<8,2,AP_RND,AP_SAT>", (8, 2, False, "RND", "SAT")),
        ("ap_fixed<8,3,AP_RND_ZERO,AP_SAT_ZERO,0>", (8, 3, True, "RND_ZERO", "SAT_ZERO")),
        ("  fixed< 12 , -2 , rnd_inf , sat >  ", (12, -2, True, "RND_INF", "SAT")),
        ("fixed<6,10,RND_MIN_INF>", (6, 10, True, "RND_MIN_INF", "WRAP")),
        ("fixed<8,3,STOCH,SAT>", (8, 3, True, "STOCH", "SAT")),
        ("fixed<8,3,TRN_ZERO,WRAP>", (8, 3, True, "TRN_ZERO", "WRAP")),
        ("int<8>", (8, 8, True, "TRN", "WRAP")),
        ("ap_int<8>", (8, 8, True, "TRN", "WRAP")),
        ("uint<8>", (8, 8, False, "TRN", "WRAP")),
        ("ap_uint<32>", (32, 32, False, "TRN", "WRAP")),
        ("fixed<32,96>", (32, 96, True, "TRN", "WRAP")),
        ("fixed<2,-64>", (2, -64, True, "TRN", "WRAP")),
    ],
)
def test_parse_good(text, expected):
    f = FixedFormat.parse(text)
    assert (f.width, f.integer, f.signed, f.rounding, f.overflow) == expected
    assert parse_format(text) == f
    assert parse_format(f) is f


@pytest.mark.parametrize(
    "bad",
    [
        "", "fixed", "fixed<8>", "fixed<>", "fixed<8,3", "fixed<1,1>", "fixed<33,3>", "fixed<0,0>",
        "fixed<8,3,RND_FOO>", "fixed<8,3,RND,SATURATE>", "fixed<8,3,RND,SAT,2>", "fixed<8,3,RND,SAT,0,1>",
        "fixed<8,73>", "fixed<8,-65>", "fixed<a,3>", "fixed<8.5,3>", "float<8,3>", "int<8,2>", "int<1>",
        "fixed<8,3,,SAT>", "ap_fixed<8,3,AP_WRAP_SM>", "fixed<8,3,SAT,RND>", "ufixed<64,3>", "xfixed<8,3>",
        42, None, 8.5,
    ],
)
def test_parse_bad(bad):
    with pytest.raises(FormatError) as e:
        FixedFormat.parse(bad)
    msg = str(e.value)
    assert msg and "\n" not in msg


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        (dict(width=1, integer=0), "width"),
        (dict(width=33, integer=3), "width"),
        (dict(width=8, integer=73), "integer bits"),
        (dict(width=8, integer=-65), "integer bits"),
        (dict(width=8, integer=3, rounding="ROUND"), "rounding"),
        (dict(width=8, integer=3, overflow="CLAMP"), "overflow"),
        (dict(width=8.0, integer=3), "integer"),
        (dict(width=8, integer=3, signed="yes"), "signed"),
        (dict(width=True, integer=3), "integer"),
    ],
)
def test_constructor_errors(kwargs, needle):
    with pytest.raises(FormatError, match=needle):
        FixedFormat(**kwargs)


def test_accumulator_format_limits():
    a = AccumulatorFormat(64, 20)
    assert a.frac == 44 and a.min_raw == -(2**63) and a.max_raw == 2**63 - 1
    assert AccumulatorFormat(63, 0, signed=False).max_raw == 2**63 - 1
    with pytest.raises(FormatError):
        AccumulatorFormat(64, 0, signed=False)
    with pytest.raises(FormatError):
        AccumulatorFormat(65, 0)
    assert parse_format("fixed<48,20,RND,SAT>", accumulator=True) == AccumulatorFormat(48, 20, True, "RND", "SAT")
    with pytest.raises(FormatError):
        parse_format("fixed<48,20>")


def test_properties_and_with():
    f = FixedFormat(8, 3)
    assert f.frac == 5 and f.min_raw == -128 and f.max_raw == 127 and f.lsb == 2**-5
    assert f.min_value == -4.0 and f.max_value == 127 / 32
    u = FixedFormat(8, 10, signed=False, rounding="ap_rnd", overflow="AP_SAT")
    assert u.frac == -2 and u.min_raw == 0 and u.max_raw == 255 and u.lsb == 4.0
    assert (u.rounding, u.overflow) == ("RND", "SAT")
    assert u.kernel_args() == (8, -2, False, ROUNDING["RND"], OVERFLOW["SAT"])
    g = f.with_(rounding="RND_CONV", overflow="SAT")
    assert g == FixedFormat(8, 3, True, "RND_CONV", "SAT") and f.rounding == "TRN"
    with pytest.raises(FormatError):
        f.with_(width=40)
    with pytest.raises(FormatError):
        f.with_(colour="red")


def test_to_hls_strings():
    assert FixedFormat(8, 3).to_hls() == "ap_fixed<8,3>"
    assert FixedFormat(8, 3).to_hls4ml() == "fixed<8,3>"
    f = FixedFormat(8, 3, True, "RND_CONV", "SAT")
    assert f.to_hls() == "ap_fixed<8,3,AP_RND_CONV,AP_SAT>"
    assert f.to_hls4ml() == "fixed<8,3,RND_CONV,SAT>" == str(f)
    assert FixedFormat(8, 0, False, "RND", "SAT_SYM").to_hls4ml() == "ufixed<8,0,RND,SAT_SYM>"
    assert FixedFormat(8, 2, False, "TRN", "SAT").to_hls() == "ap_ufixed<8,2,AP_TRN,AP_SAT>"
    # STOCH has no ap_fixed mode: rendered as TRN (the kernels add the LFSR draw explicitly)
    s = FixedFormat(8, 3, True, "STOCH", "SAT")
    assert s.to_hls() == "ap_fixed<8,3,AP_TRN,AP_SAT>" and s.to_hls4ml() == "fixed<8,3,TRN,SAT>"
    assert FixedFormat(8, 3, True, "STOCH").to_hls() == "ap_fixed<8,3>"


def test_to_hls_round_trip():
    rng = np.random.default_rng(3)
    for _ in range(300):
        w = int(rng.integers(2, 33))
        f = FixedFormat(
            w,
            int(rng.integers(-64, w + 65)),
            bool(rng.integers(0, 2)),
            str(rng.choice([q for q in ROUNDING if q != "STOCH"])),
            str(rng.choice(list(OVERFLOW))),
        )
        assert FixedFormat.parse(f.to_hls()) == f
        assert FixedFormat.parse(f.to_hls4ml()) == f
        assert FixedFormat.parse(str(f)) == f


def test_mode_codes_match_kernels():
    for name, code in ROUNDING.items():
        assert getattr(arith, name) == code
    for name, code in OVERFLOW.items():
        assert getattr(arith, name) == code


# ----------------------------------------------------------------------------------------------------
# worked examples of docs/arithmetic.md (section 3 and 4)

# value (2 fractional bits) -> integer, per rounding mode
ROUND_EXAMPLES = {
    #            -2.5 -1.75 -1.5 -1.25 -0.5 0.5 1.25 1.5 1.75 2.5
    "TRN":      [-3, -2, -2, -2, -1, 0, 1, 1, 1, 2],
    "TRN_ZERO": [-2, -1, -1, -1, 0, 0, 1, 1, 1, 2],
    "RND":      [-2, -2, -1, -1, 0, 1, 1, 2, 2, 3],
    "RND_ZERO": [-2, -2, -1, -1, 0, 0, 1, 1, 2, 2],
    "RND_INF":  [-3, -2, -2, -1, -1, 1, 1, 2, 2, 3],
    "RND_MIN_INF": [-3, -2, -2, -1, -1, 0, 1, 1, 2, 2],
    "RND_CONV": [-2, -2, -2, -1, 0, 0, 1, 2, 2, 2],
}
EX_VALUES = [-2.5, -1.75, -1.5, -1.25, -0.5, 0.5, 1.25, 1.5, 1.75, 2.5]


@pytest.mark.parametrize("mode", list(ROUND_EXAMPLES))
def test_rounding_worked_examples(mode):
    expected = ROUND_EXAMPLES[mode]
    raws = [int(v * 4) for v in EX_VALUES]
    got = [arith.round_shift(r, 2, ROUNDING[mode], 0) for r in raws]
    assert got == expected
    got_c = [arith.convert(r, 2, 8, 0, True, ROUNDING[mode], OVERFLOW["SAT"], 0) for r in raws]
    assert got_c == expected
    q = FixedFormat(8, 8, True, mode, "SAT").quantize(np.array(EX_VALUES))
    assert q.tolist() == expected


OVF_EXAMPLES = [
    # (signed, raw, WRAP, SAT, SAT_ZERO, SAT_SYM) for an 8-bit word
    (True, 130, -126, 127, 0, 127),
    (True, -130, 126, -128, 0, -127),
    (True, -128, -128, -128, -128, -127),
    (True, 127, 127, 127, 127, 127),
    (True, 300, 44, 127, 0, 127),
    (False, -1, 255, 0, 0, 0),
    (False, 256, 0, 255, 0, 255),
    (False, 200, 200, 200, 200, 200),
]


@pytest.mark.parametrize("case", OVF_EXAMPLES)
def test_overflow_worked_examples(case):
    signed, raw, *expected = case
    got = [arith.overflow(raw, 8, signed, OVERFLOW[o]) for o in ("WRAP", "SAT", "SAT_ZERO", "SAT_SYM")]
    assert got == expected


def test_round_then_overflow():
    # 127.5 in fixed<9,8> (raw 255, F=1) -> fixed<8,8>: rounds up to 128 first, then overflows
    assert arith.convert(255, 1, 8, 0, True, ROUNDING["RND"], OVERFLOW["SAT"], 0) == 127
    assert arith.convert(255, 1, 8, 0, True, ROUNDING["RND"], OVERFLOW["WRAP"], 0) == -128
    assert arith.convert(255, 1, 8, 0, True, ROUNDING["TRN"], OVERFLOW["WRAP"], 0) == 127
    assert FixedFormat(8, 8, True, "RND", "SAT").quantize(np.array([127.5])).tolist() == [127]


def test_counters():
    c = np.zeros(2, dtype=np.int64)
    assert arith.convert_counted(1000, 0, 8, 0, True, 0, OVERFLOW["SAT"], 0, c) == 127
    assert arith.convert_counted(3, 3, 8, 0, True, 0, OVERFLOW["SAT"], 0, c) == 0  # 0.375 -> 0
    assert arith.convert_counted(-3, 3, 8, 0, True, 0, OVERFLOW["SAT"], 0, c) == -1  # floor: not zero
    assert arith.convert_counted(0, 3, 8, 0, True, 0, OVERFLOW["SAT"], 0, c) == 0  # zero stays zero
    assert arith.convert_counted(256, 0, 8, 0, True, 0, OVERFLOW["WRAP"], 0, c) == 0  # wrap + zero
    assert c.tolist() == [2, 2]
    a = np.array([[1000, 3], [-3, 5]], dtype=np.int64)
    c = np.zeros(2, dtype=np.int64)
    out = arith.convert_array_counted(a, 0, 8, 0, True, 0, OVERFLOW["SAT_SYM"], np.array([1], np.int64), c)
    assert out.tolist() == [[127, 3], [-3, 5]] and c.tolist() == [1, 0]


def test_accumulate_and_update():
    # acc fixed<16,8> (F=8), product with F=10: exact sum narrowed with the accumulator's modes
    acc = arith.accumulate(256, 3, 10, 16, 8, True, ROUNDING["TRN"], OVERFLOW["SAT"], 0)  # 1 + 3/1024
    assert acc == 256  # 3/1024 truncated at 2^-8
    acc = arith.accumulate(256, 3, 10, 16, 8, True, ROUNDING["RND"], OVERFLOW["SAT"], 0)
    assert acc == 257  # 1 + 0.75 LSB rounds up
    assert arith.accumulate(32767, 1 << 10, 10, 16, 8, True, 0, OVERFLOW["SAT"], 0) == 32767
    assert arith.accumulate(32767, 1 << 10, 10, 16, 8, True, 0, OVERFLOW["WRAP"], 0) == 32767 + 256 - 65536
    # weight update: w fixed<8,1> (F=7); increment u with F=14, lr = 2^-3
    c = np.zeros(2, dtype=np.int64)
    # u * 2^-3 = 0x300 * 2^-17 = 3 * 2^-9 -> 0.75 LSB of 2^-7: TRN -> 0 (counted), RND -> 1
    assert arith.update_weight_counted(10, 0x300, 14, 3, 8, 7, True, ROUNDING["TRN"], OVERFLOW["SAT"], 0, c) == 10
    assert c.tolist() == [0, 1]
    assert arith.update_weight(10, 0x300, 14, 3, 8, 7, True, ROUNDING["RND"], OVERFLOW["SAT"], 0) == 11
    # negative increment: floor(-0.75) = -1
    assert arith.update_weight(10, -0x300, 14, 3, 8, 7, True, ROUNDING["TRN"], OVERFLOW["SAT"], 0) == 9
    assert arith.update_weight_counted(127, 1 << 17, 14, 3, 8, 7, True, 0, OVERFLOW["SAT"], 0, c) == 127
    assert c.tolist() == [1, 1]


# ----------------------------------------------------------------------------------------------------
# unbounded-integer reference of round_shift / convert (independent of the int64 tricks in arith)


def ref_round(r: int, s: int, mode: str, rnd: int = 0) -> int:
    if s <= 0:
        return r << (-s)
    q, rem = r >> s, r & ((1 << s) - 1)  # Python ints: exact floor division
    half = 1 << (s - 1)
    neg = r < 0
    if mode == "TRN":
        return q
    if mode == "TRN_ZERO":
        return q + (neg and rem != 0)
    if mode == "RND":
        return q + (rem >= half)
    if mode == "RND_ZERO":
        return q + (rem > half or (rem == half and neg))
    if mode == "RND_INF":
        return q + (rem > half or (rem == half and not neg))
    if mode == "RND_MIN_INF":
        return q + (rem > half)
    if mode == "RND_CONV":
        return q + (rem > half or (rem == half and q % 2 == 1))
    if mode == "STOCH":  # floor(r * 2^-s + rnd * 2^-32)
        return ((r << 32) + (rnd << s)) >> (s + 32)
    raise AssertionError(mode)


def ref_convert(r, src_frac, width, frac, signed, rmode, omode, rnd=0):
    v = ref_round(r, src_frac - frac, rmode, rnd)
    lo, hi = (-(1 << (width - 1)), (1 << (width - 1)) - 1) if signed else (0, (1 << width) - 1)
    sym = omode == "SAT_SYM" and signed
    if lo <= v <= hi and not (sym and v == lo):
        return v
    if omode == "WRAP":
        v &= (1 << width) - 1
        return v - (1 << width) if signed and v >> (width - 1) else v
    if omode == "SAT_ZERO":
        return 0
    if v > hi:
        return hi
    return -hi if sym else lo


def test_round_shift_matches_unbounded_reference():
    rng = np.random.default_rng(5)
    for _ in range(4000):
        bits = int(rng.integers(1, 64))
        r = int(rng.integers(-(1 << (bits - 1)), 1 << (bits - 1)))
        s = int(rng.choice([int(rng.integers(1, 70)), int(rng.integers(60, 200)), bits - 1, bits, bits + 1]))
        s = max(s, 1)
        rnd = int(rng.integers(1, 1 << 32))
        for mode, code in ROUNDING.items():
            assert arith.round_shift(r, s, code, rnd) == ref_round(r, s, mode, rnd), (r, s, mode, rnd)


def test_convert_matches_unbounded_reference():
    rng = np.random.default_rng(6)
    for _ in range(3000):
        signed = bool(rng.integers(0, 2))
        width = int(rng.integers(2, 65 if signed else 64))
        frac = int(rng.integers(-70, 100))
        src_frac = int(rng.integers(-70, 130))
        r = int(rng.integers(-(1 << 62), 1 << 62) >> int(rng.integers(0, 62)))
        rnd = int(rng.integers(1, 1 << 32))
        for mode, code in ROUNDING.items():
            for omode, ocode in OVERFLOW.items():
                got = arith.convert(r, src_frac, width, frac, signed, code, ocode, rnd)
                exp = ref_convert(r, src_frac, width, frac, signed, mode, omode, rnd)
                assert got == exp, (r, src_frac, width, frac, signed, mode, omode, rnd)


def test_quantize_consistent_with_convert():
    """float -> raw equals raw -> raw for exactly representable inputs, all modes (STOCH with equal draws)."""
    rng = np.random.default_rng(8)
    for _ in range(200):
        src_frac = int(rng.integers(-10, 40))
        raws = (rng.integers(-(1 << 52), 1 << 52, size=64) >> rng.integers(0, 52, size=64)).astype(np.int64)
        x = np.ldexp(raws.astype(np.float64), -src_frac)
        w = int(rng.integers(2, 33))
        f = FixedFormat(w, int(rng.integers(-20, w + 20)), bool(rng.integers(0, 2)))
        for mode in ROUNDING:
            for omode in OVERFLOW:
                g = f.with_(rounding=mode, overflow=omode)
                s1 = np.array([12345], dtype=np.int64)
                s2 = np.array([12345], dtype=np.int64)
                a = g.quantize(x, rng_state=s1)
                b = arith.convert_array(raws, src_frac, *g.kernel_args(), s2)
                assert np.array_equal(a, b), (g, src_frac)
                assert s1[0] == s2[0]


def test_quantize_edge_cases():
    f = FixedFormat(8, 3, True, "TRN", "SAT")
    assert f.quantize(np.array([np.inf, -np.inf, 1e300, -1e300])).tolist() == [127, -128, 127, -128]
    assert FixedFormat(8, 3).quantize(np.array([np.inf, 1e300, -1e300])).tolist() == [0, 0, 0]
    # a tiny negative value floors to -1 LSB even when x * 2^F underflows
    assert FixedFormat(8, 70).quantize(np.array([-5e-324, 5e-324, -0.0])).tolist() == [-1, 0, 0]
    assert FixedFormat(8, 70, rounding="TRN_ZERO").quantize(np.array([-5e-324])).tolist() == [0]
    with pytest.raises(FormatError, match="NaN"):
        f.quantize(np.array([1.0, np.nan]))
    x = np.array([[0.5, -1.25], [3.0, 100.0]])
    q = f.quantize(x)
    assert q.shape == (2, 2) and q.dtype == np.int64
    assert f.to_float(q).tolist() == [[0.5, -1.25], [3.0, 127 / 32]]


# ----------------------------------------------------------------------------------------------------
# LFSR


def independent_galois(seed: int, n_bits: int) -> list[int]:
    """Output bits of a Galois LFSR for x^32+x^22+x^2+x+1, written from the polynomial (bit lists, no masks)."""
    state = [(seed >> i) & 1 for i in range(32)]
    exps = [22, 2, 1]  # non-leading, non-constant terms; x^0 is the feedback input
    out = []
    for _ in range(n_bits):
        o = state[0]
        out.append(o)
        state = state[1:] + [0]  # shift toward bit 0
        if o:
            state[31] ^= 1  # x^32 term -> feedback into the top bit
            for e in exps:
                state[e - 1] ^= 1  # x^e -> bit e-1 of the right-shifting register
    return out


def test_lfsr_first_outputs_independent():
    seed = 1
    bits = independent_galois(seed, 32 * 6)
    expected = [int("".join(map(str, bits[32 * k: 32 * k + 32])), 2) for k in range(6)]
    s = lfsr.seed_state(seed)
    got = []
    for _ in range(6):
        s, b = lfsr.lfsr_bits(s, 32)
        got.append(int(b))
    assert got == expected
    sp, gp = lfsr.seed_state(seed), []
    for _ in range(6):
        sp, b = lfsr.py_lfsr_bits(sp, 32)
        gp.append(b)
    assert gp == expected
    assert sp == s


def test_lfsr_seed_rules():
    assert lfsr.seed_state(0) == lfsr.DEFAULT_SEED == 0xACE1ACE1
    assert lfsr.seed_state(1 << 32) == lfsr.DEFAULT_SEED
    assert lfsr.seed_state(-1) == 0xFFFFFFFF
    with pytest.raises(FormatError):
        lfsr.seed_state("abc")
    assert lfsr.derive_seed(5, 0) == 5 and lfsr.derive_seed(5, 1) != lfsr.derive_seed(5, 2)
    # njit and Python steps agree and stay 32-bit
    s = 0xDEADBEEF
    for _ in range(1000):
        a, b = lfsr.lfsr_next(s), lfsr.py_lfsr_next(s)
        assert a == b and 0 < a < 1 << 32
        s = a


def test_short_lfsr_maximal_period():
    # same right-shifting Galois structure, 16-bit x^16+x^14+x^13+x^11+1 (mask 0xB400): period 2^16-1
    s0 = s = 1
    seen = 0
    while True:
        s = lfsr.lfsr_next_taps(s, 0xB400)
        seen += 1
        if s == s0:
            break
        assert seen < 1 << 16
    assert seen == (1 << 16) - 1


def test_32bit_lfsr_maximal_period_by_jumps():
    s0 = 0x12345678
    assert lfsr.lfsr_jump(s0, lfsr.PERIOD) == s0
    for q in (3, 5, 17, 257, 65537):  # prime factors of 2^32 - 1
        assert lfsr.lfsr_jump(s0, lfsr.PERIOD // q) != s0
    s = s0
    for n in range(1, 200):
        s = lfsr.py_lfsr_next(s)
        assert lfsr.lfsr_jump(s0, n) == s


def test_lfsr_draw_never_zero_and_masks():
    s = lfsr.seed_state(99)
    for _ in range(2000):
        s, b = lfsr.lfsr_bits(s, 32)
        assert b != 0
    # the 32-bit draw is a bijection of the state (GF(2) rank 32): over a cycle every non-zero draw occurs once
    rows = lfsr.lfsr_draw_masks(32)
    rank = 0
    for bit in range(32):
        piv = next((k for k in range(rank, 32) if (rows[k] >> bit) & 1), None)
        if piv is None:
            continue
        rows[rank], rows[piv] = rows[piv], rows[rank]
        for k in range(32):
            if k != rank and (rows[k] >> bit) & 1:
                rows[k] ^= rows[rank]
        rank += 1
    assert rank == 32
    s = 0x13579BDF
    for _ in range(300):
        a, b = lfsr.lfsr_draw32(s), lfsr.py_lfsr_bits(s, 32)
        assert a == b
        s = a[0]
    masks = lfsr.lfsr_draw_masks(8)
    step8 = lfsr.lfsr_step_masks(8)
    s = 0xC0FFEE11
    for _ in range(50):
        new, b = lfsr.py_lfsr_bits(s, 8)
        assert b == sum((bin(s & m).count("1") & 1) << i for i, m in enumerate(masks))
        assert new == sum((bin(s & m).count("1") & 1) << i for i, m in enumerate(step8))
        s = new


def test_feedback_matrix():
    m = lfsr.lfsr_matrix(7, 5, 9, 8)
    assert m.shape == (5, 9) and m.dtype == np.int64
    assert m.tolist() == lfsr.py_lfsr_matrix(7, 5, 9, 8)
    assert m.min() >= -128 and m.max() <= 127
    for i, j in [(0, 0), (2, 3), (4, 8)]:
        assert lfsr.feedback_value(7, i, j, 9, 8) == m[i, j]
    # row-major single stream: entry (i, j) is draw i*cols + j
    flat = lfsr.lfsr_matrix(7, 1, 45, 8)
    assert np.array_equal(flat.reshape(5, 9), m)
    assert np.array_equal(lfsr.lfsr_matrix(7, 5, 9, 8), m)  # deterministic
    sm = lfsr.lfsr_sign_matrix(7, 4, 6)
    assert set(np.unique(sm).tolist()) <= {-1, 1}
    big = lfsr.lfsr_matrix(3, 200, 200, 6)
    assert abs(big.mean() + 0.5) < 0.3  # uniform over [-32, 31] has mean -0.5
    with pytest.raises(FormatError):
        lfsr.lfsr_matrix(1, 2, 2, 40)
    with pytest.raises(FormatError):
        lfsr.lfsr_matrix(1, -2, 2, 8)
    assert np.array_equal(lfsr.lfsr_matrix(0, 3, 3, 8), lfsr.lfsr_matrix(lfsr.DEFAULT_SEED, 3, 3, 8))


# ----------------------------------------------------------------------------------------------------
# stochastic rounding


@pytest.mark.parametrize("r, s", [(5, 3), (-5, 3), (1, 10), (-1, 10), (12345, 7), (-3, 1), (7, 40), (-7, 40)])
def test_stochastic_rounding_unbiased(r, s):
    n = 200_000
    raws = np.full(n, r, dtype=np.int64)
    out = arith.convert_array(raws, s, 32, 0, True, ROUNDING["STOCH"], OVERFLOW["SAT"], np.array([2024], np.int64))
    exact = r / 2.0**s
    lo = np.floor(exact)
    assert set(np.unique(out).tolist()) <= {lo, lo + 1}
    p = exact - lo
    sigma = np.sqrt(max(p * (1 - p), 1e-12) / n)
    assert abs(out.mean() - exact) < 5 * sigma + 1e-9


def test_stochastic_quantize_unbiased_and_deterministic():
    f = FixedFormat(8, 3, True, "STOCH", "SAT")
    x = np.full(100_000, 0.3)  # 0.3 * 32 = 9.6
    a = f.quantize(x, rng_state=11)
    assert set(np.unique(a).tolist()) == {9, 10}
    assert abs(a.mean() - 9.6) < 5 * np.sqrt(0.24 / x.size)
    assert np.array_equal(a, f.quantize(x, rng_state=11))
    st = np.array([11], dtype=np.int64)
    b1 = f.quantize(x[:10], rng_state=st)
    b2 = f.quantize(x[10:20], rng_state=st)
    assert np.array_equal(np.concatenate([b1, b2]), a[:20])


def test_stochastic_draw_is_floor_of_top_bits():
    # for s <= 32 the carry is floor((r + (rnd >> (32 - s))) / 2^s)
    rng = np.random.default_rng(9)
    for _ in range(500):
        s = int(rng.integers(1, 33))
        r = int(rng.integers(-(1 << 40), 1 << 40))
        rnd = int(rng.integers(1, 1 << 32))
        assert arith.round_shift(r, s, ROUNDING["STOCH"], rnd) == (r + (rnd >> (32 - s))) >> s


# ----------------------------------------------------------------------------------------------------
# activations


def test_lut_tables():
    f = FixedFormat(16, 2)
    t = act.tanh_table(f)
    assert t.shape == (1024,) and t.dtype == np.int64
    assert np.all(np.diff(t) >= 0)
    assert np.array_equal(t, -t[::-1])  # centred bins: odd symmetry
    assert t[-1] == 1 << 14  # tanh(7.9921875) rounds to 1.0 in fixed<16,2>
    s = act.sigmoid_table(FixedFormat(16, 0, signed=False))
    assert np.all(np.diff(s) >= 0) and s[-1] == round(65536 / (1 + np.exp(-(8 - 1 / 128))))
    assert act.sigmoid_table(FixedFormat(8, 0, signed=False))[-1] == 255  # 0.99966 rounds to 1.0 -> SAT max
    assert np.array_equal(act.table_centres()[[0, 511, 512, 1023]], [-8 + 1 / 128, -1 / 128, 1 / 128, 8 - 1 / 128])
    small = act.tanh_table(f, table_bits=4, range_bits=1)  # 16 entries over [-2, 2)
    assert small.shape == (16,)
    with pytest.raises(FormatError):
        act.tanh_table(f, table_bits=0)


@pytest.mark.parametrize("in_frac", [0, 3, 6, 7, 12, 20])
def test_lut_index_is_floor_of_bins(in_frac):
    rng = np.random.default_rng(in_frac)
    raws = rng.integers(-(1 << (in_frac + 5)), 1 << (in_frac + 5), size=2000)
    for r in raws.tolist() + [0, -1, 1]:
        z = r / 2.0**in_frac
        expected = int(min(max(np.floor(z * 64) + 512, 0), 1023))
        assert act.lut_index(r, in_frac, 10, 3) == expected, (r, in_frac)
    tab = act.tanh_table(FixedFormat(16, 2))
    arr = np.array([[-(1 << 30), 0], [5, 1 << 30]], dtype=np.int64)
    out = act.lut_apply_array(arr, in_frac, tab, 10, 3)
    assert out[0, 0] == tab[0] and out[1, 1] == tab[1023]
    assert out[0, 1] == act.lut_lookup(0, in_frac, tab, 10, 3) == tab[512]


def test_derivatives_exact():
    rng = np.random.default_rng(4)
    t_sat = act.table_saturation(16, 14, True)  # fixed<16,2> holds 1: the saturation level is 1 itself
    assert t_sat == 1 << 14
    for t in rng.integers(-(1 << 14), (1 << 14) + 1, size=300).tolist() + [1 << 14, -(1 << 14)]:
        exact = (1 << 28) - t * t  # 1 - t^2 with 28 fractional bits
        got = act.tanh_deriv(t, 14, 16, 14, True, ROUNDING["RND"], OVERFLOW["SAT"], 0, t_sat)
        assert got == ref_convert(exact, 28, 16, 14, True, "RND", "SAT")
    s_sat = act.table_saturation(16, 16, False)  # ufixed<16,0> cannot hold 1: its largest value stands for it
    assert s_sat == (1 << 16) - 1
    for s in rng.integers(2, (1 << 16) - 1, size=300).tolist():
        exact = s * ((1 << 16) - s)
        got = act.sigmoid_deriv(s, 16, 16, 16, False, ROUNDING["TRN"], OVERFLOW["SAT"], 0, s_sat)
        assert got == ref_convert(exact, 32, 16, 16, False, "TRN", "SAT")


def test_derivatives_zero_at_saturation():
    """An 8-bit table output cannot hold 1: its end entry reads as saturated and the derivative is exactly 0 there
    (docs/arithmetic.md §11); one step inside it is 1 - t^2 as before."""
    rnd, sat = ROUNDING["RND"], OVERFLOW["SAT"]
    T = act.table_saturation(8, 7, True)  # fixed<8,1>: largest 127/128
    assert T == 127
    d = lambda t: act.tanh_deriv(t, 7, 8, 7, False, rnd, sat, 0, T)  # derivative ufixed<8,1>
    assert [d(t) for t in (127, -127, -128)] == [0, 0, 0]
    # without the rule 1 - (127/128)^2 = 255/2^14 would round to 2 LSB of ufixed<8,1>
    assert ref_convert((1 << 14) - 127 * 127, 14, 8, 7, False, "RND", "SAT") == 2
    assert d(126) == d(-126) == ref_convert((1 << 14) - 126 * 126, 14, 8, 7, False, "RND", "SAT") == 4
    assert d(0) == 128  # 1 is exact in ufixed<8,1>
    S = act.table_saturation(8, 8, False)  # ufixed<8,0> sigmoid output: largest 255/256
    ds = lambda s: act.sigmoid_deriv(s, 8, 8, 8, False, rnd, sat, 0, S)
    assert [ds(0), ds(1), ds(255)] == [0, 0, 0]  # both ends (s <= 1 - T and s >= T) are saturated
    assert ds(2) == ref_convert(2 * 254, 16, 8, 8, False, "RND", "SAT") and ds(128) == 64


def test_hard_tanh_relu_sign_step():
    F = 8
    one = 1 << F
    ht = lambda r: act.hard_tanh(r, F, 8, 6, True, ROUNDING["TRN"], OVERFLOW["SAT"], 0)  # out fixed<8,2>
    assert [ht(r) for r in (-5 * one, -one, -one + 1, 0, 100, one, 3 * one)] == [-64, -64, -64, 0, 25, 64, 64]
    m = lambda r: act.hard_tanh_deriv_mask(r, F)
    assert [m(r) for r in (-one - 1, -one, -one + 1, 0, one - 1, one, one + 1)] == [0, 0, 1, 1, 1, 0, 0]
    # output format that cannot hold +1 saturates: fixed<8,1> max is 127/128
    assert act.hard_tanh(3 * one, F, 8, 7, True, 0, OVERFLOW["SAT"], 0) == 127
    # input format with negative frac (LSB = 4): only 0 lies inside (-1, 1)
    assert [act.hard_tanh_deriv_mask(r, -2) for r in (-1, 0, 1)] == [0, 1, 0]
    assert act.hard_tanh(1, -2, 8, 6, True, 0, OVERFLOW["SAT"], 0) == 64
    assert act.relu(-5, 4, 8, 4, True, 0, 1, 0) == 0 and act.relu(37, 4, 8, 2, True, 0, 1, 0) == 9
    assert [act.relu_deriv_mask(r) for r in (-1, 0, 1)] == [0, 0, 1]
    assert [act.step(r) for r in (-3, 0, 3)] == [0, 0, 1]
    assert [act.sign(r) for r in (-3, 0, 3)] == [-1, 0, 1]
