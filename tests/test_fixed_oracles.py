"""Bit-exact checks of edgelearn.fixed against two independent oracles (docs/arithmetic.md).

1. apytypes 0.5.1 (``APyFixedArray.cast``): all seven Xilinx rounding modes (apytypes names TO_NEG,
   TO_ZERO, TIES_POS, TIES_ZERO, TIES_AWAY, TIES_NEG, TIES_EVEN) x overflow WRAP and SAT, for signed
   destinations; unsigned destinations with WRAP via a (W+1)-bit signed cast.  apytypes has no SAT_ZERO,
   no SAT_SYM and no unsigned saturation, and its stochastic modes use its own RNG: those are covered by
   oracle 2 (SAT_ZERO / SAT_SYM / unsigned) and by the statistical tests in test_fixed_formats.py (STOCH).
2. The Xilinx ``ap_fixed`` headers bundled with hls4ml, compiled with g++ (tests/oracles/ap_harness.cpp):
   every rounding x overflow combination, fixed-to-fixed assignment from a signed and an unsigned source,
   double-to-fixed assignment (``FixedFormat.quantize``) and the activation-table entries.

Oracle 2's answers on a fixed set of cases (every rounding x overflow mode, every harness format) are committed
as tests/oracles/ap_fixed_vectors.npz: the engine is checked against them where g++ or hls4ml is absent, and where
they are present a test regenerates them and asserts the committed file is what the headers answer today
(``EDGELEARN_WRITE_ORACLE_VECTORS=1`` writes it instead).

The harness binary is cached outside the repository (``$EDGELEARN_ORACLE_CACHE`` or
``~/.cache/edgelearn/oracles``), keyed by a hash of the harness source, the headers and the compiler;
set ``EDGELEARN_ORACLE_CACHE=none`` to build into the pytest tmp dir instead.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import os
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
from needs import require_tool

from edgelearn.fixed import activations as act
from edgelearn.fixed import arith
from edgelearn.fixed.formats import OVERFLOW, ROUNDING, AccumulatorFormat, FixedFormat

HARNESS_SRC = Path(__file__).parent / "oracles" / "ap_harness.cpp"
VECTORS = Path(__file__).parent / "oracles" / "ap_fixed_vectors.npz"
XILINX_Q = ["TRN", "TRN_ZERO", "RND", "RND_ZERO", "RND_INF", "RND_MIN_INF", "RND_CONV"]
MAX_REPORT = 8


def _convert_many(raws, src_frac, width, frac, signed, rmode, omode):
    state = np.array([1], dtype=np.int64)
    return arith.convert_array(np.asarray(raws, dtype=np.int64), src_frac, width, frac, signed, rmode, omode, state)


def _bits(values, width):
    mask = (1 << width) - 1
    return [int(v) & mask for v in values]


def _report(mismatches, total, what):
    if mismatches:
        lines = "\n".join(mismatches[:MAX_REPORT])
        pytest.fail(f"{len(mismatches)} of {total} {what} differ from the oracle; first ones:\n{lines}")


# ----------------------------------------------------------------------------------------------------
# oracle 1: apytypes

APY_Q = {
    "TRN": "TO_NEG",
    "TRN_ZERO": "TO_ZERO",
    "RND": "TIES_POS",
    "RND_ZERO": "TIES_ZERO",
    "RND_INF": "TIES_AWAY",
    "RND_MIN_INF": "TIES_NEG",
    "RND_CONV": "TIES_EVEN",
}
APY_O = {"WRAP": "WRAP", "SAT": "SAT"}


def _random_src_raws(rng, src_w, n, dst_frac, src_frac, dst_w):
    """Raw source values (src_w-bit two's complement) biased toward the destination's rounding ties and
    range edges, plus uniformly random words."""
    s = src_frac - dst_frac
    lo_s, hi_s = -(1 << (src_w - 1)), (1 << (src_w - 1)) - 1
    out = []
    for _ in range(n):
        kind = rng.integers(0, 4)
        if kind == 0:
            v = int(rng.integers(lo_s, hi_s, endpoint=True))
        else:
            t = int(rng.integers(-(1 << dst_w) - 3, (1 << dst_w) + 3, endpoint=True))
            if s > 0:
                half = 1 << (s - 1)
                rem = [0, half, half - 1, half + 1, (1 << s) - 1, 1, int(rng.integers(0, 1 << min(s, 62)))][
                    int(rng.integers(0, 7))
                ]
                v = (t << s) + rem
            else:
                v = t >> (-s) if kind == 1 else t
        v = min(max(v, lo_s), hi_s)
        out.append(v)
    return out


def test_apytypes_convert_bit_exact():
    require_tool("apytypes")
    import apytypes as A
    rng = np.random.default_rng(20240611)
    mismatches = []
    total = 0
    skipped_wide = 0
    for trial in range(160):
        src_w = int(rng.integers(2, 63))
        src_i = int(rng.integers(-8, src_w + 8))
        src_f = src_w - src_i
        dst_w = int(rng.integers(2, 33))
        dst_i = int(rng.integers(-6, dst_w + 10))
        dst_f = dst_w - dst_i
        signed = bool(trial % 4 != 3)
        raws = _random_src_raws(rng, src_w, 48, dst_f, src_f, dst_w)
        src = A.APyFixedArray([r & ((1 << src_w) - 1) for r in raws], int_bits=src_i, frac_bits=src_f)
        for qname, aq in APY_Q.items():
            for oname, ao in APY_O.items():
                if not signed and oname != "WRAP":
                    continue  # apytypes has no unsigned saturation: oracle 2 covers it
                if oname == "SAT" and src_w + max(0, dst_f - src_f) > 64:
                    # apytypes 0.5.1 saturates some negative values to +max once the aligned intermediate
                    # needs more than one 64-bit limb (cf. apytypes/apytypes#721, multi-limb signed
                    # comparison); ap_fixed (oracle 2) confirms min, e.g. fixed<54,46> raw -6162311364020011
                    # -> fixed<23,2,TRN,SAT> is 0x400000.  Compare only single-limb casts here.
                    skipped_wide += 1
                    continue
                cast_w = dst_w if signed else dst_w + 1
                ref = src.cast(
                    int_bits=cast_w - dst_f,
                    frac_bits=dst_f,
                    quantization=getattr(A.QuantizationMode, aq),
                    overflow=getattr(A.OverflowMode, ao),
                )
                expected = _bits(ref.to_bits(), dst_w)
                got = _bits(
                    _convert_many(raws, src_f, dst_w, dst_f, signed, ROUNDING[qname], OVERFLOW[oname]), dst_w
                )
                total += len(raws)
                for r, e, g in zip(raws, expected, got):
                    if e != g:
                        mismatches.append(
                            f"raw={r} src=fixed<{src_w},{src_i}> -> {'' if signed else 'u'}fixed<{dst_w},{dst_i},"
                            f"{qname},{oname}>: apytypes bits {e:#x}, edgelearn bits {g:#x}"
                        )
    _report(mismatches, total, "apytypes casts")
    assert total > 30000


# ----------------------------------------------------------------------------------------------------
# oracle 2: Xilinx ap_fixed headers (bundled with hls4ml) + g++


def _cache_root(tmp_path_factory) -> Path:
    env = os.environ.get("EDGELEARN_ORACLE_CACHE", "")
    if env.lower() == "none":
        return tmp_path_factory.mktemp("ap_harness")
    root = Path(env) if env else Path.home() / ".cache" / "edgelearn" / "oracles"
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".probe{os.getpid()}"
        probe.write_text("")
        probe.unlink()
        return root
    except OSError:
        return tmp_path_factory.mktemp("ap_harness")


@pytest.fixture(scope="session")
def ap_harness(tmp_path_factory):
    from edgelearn.hls import toolchain

    require_tool("hls4ml", "ap_types", "g++")
    inc = toolchain.ap_types_dir()
    gxx = shutil.which("g++")
    version = subprocess.run([gxx, "--version"], capture_output=True, text=True).stdout
    h = hashlib.sha256(HARNESS_SRC.read_bytes())
    h.update(version.encode())
    for hdr in sorted(inc.glob("*.h")) + sorted((inc / "etc").glob("*.h")):
        h.update(hdr.name.encode())
        h.update(hdr.read_bytes())
    key = h.hexdigest()[:16]
    root = _cache_root(tmp_path_factory)
    exe = root / f"ap_harness-{key}"
    if not exe.is_file():
        build = Path(tmp_path_factory.mktemp("ap_build"))

        def compile_part(p):
            cmd = [gxx, "-std=c++17", "-O0", "-w", f"-I{inc}", f"-DAPH_PART={p}", "-c", str(HARNESS_SRC),
                   "-o", str(build / f"part{p}.o")]
            return subprocess.run(cmd, capture_output=True, text=True)

        with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
            results = list(pool.map(compile_part, range(3)))
        for res in results:
            if res.returncode != 0:
                pytest.fail(f"building the ap_fixed harness failed:\n{res.stderr[-3000:]}")
        tmp_exe = build / "ap_harness"
        res = subprocess.run([gxx, *(str(build / f"part{p}.o") for p in range(3)), "-o", str(tmp_exe)],
                             capture_output=True, text=True)
        if res.returncode != 0:
            pytest.fail(f"linking the ap_fixed harness failed:\n{res.stderr[-3000:]}")
        staged = root / f".ap_harness-{key}.{os.getpid()}"
        shutil.copy2(tmp_exe, staged)
        os.replace(staged, exe)  # atomic: concurrent sessions never see a partial binary
    return _Harness(exe)


class _Harness:
    def __init__(self, exe: Path):
        self.exe = exe
        out = self.run(["L"])
        self.src, self.dst, self.dbl = {}, {}, []
        for line in out:
            parts = line.split()
            if parts[0] == "S":
                self.src[int(parts[1])] = AccumulatorFormat(int(parts[2]), int(parts[3]), parts[4] == "1")
            elif parts[0] == "D":
                self.dst.setdefault(int(parts[1]), []).append(
                    AccumulatorFormat(int(parts[3]), int(parts[4]), parts[5] == "1")
                )
            elif parts[0] == "F":
                self.dbl.append(AccumulatorFormat(int(parts[2]), int(parts[3]), parts[4] == "1"))

    def run(self, lines: list[str]) -> list[str]:
        res = subprocess.run([str(self.exe)], input="\n".join(lines) + "\n", capture_output=True, text=True,
                             timeout=120)
        assert res.returncode == 0, res.stderr
        out = res.stdout.splitlines()
        if lines == ["L"]:
            assert out and out[-1] == "END", out
            return out[:-1]
        assert len(out) == len(lines), (len(out), len(lines))
        bad = [o for o in out if o.startswith("ERR")]
        assert not bad, bad[:5]
        return out


def _fmt_name(f: FixedFormat, q: str, o: str) -> str:
    return f"{'' if f.signed else 'u'}fixed<{f.width},{f.integer},{q},{o}>"


def test_ap_fixed_convert_bit_exact(ap_harness):
    rng = np.random.default_rng(7)
    lines, cases = [], []
    for s_id, src in ap_harness.src.items():
        for d_id, dst in enumerate(ap_harness.dst[s_id]):
            for qi, q in enumerate(XILINX_Q):
                for o, oi in OVERFLOW.items():
                    raws = _random_src_raws(rng, src.width, 40, dst.frac, src.frac, dst.width)
                    if not src.signed:
                        raws = [r & ((1 << src.width) - 1) for r in raws]
                    got = _bits(_convert_many(raws, src.frac, dst.width, dst.frac, dst.signed, qi, oi), dst.width)
                    for r, g in zip(raws, got):
                        lines.append(f"C {s_id} {d_id} {qi} {oi} {r}")
                        cases.append((src, r, dst, q, o, g))
    out = ap_harness.run(lines)
    mismatches = [
        f"raw={r} src={src.to_hls()} -> {_fmt_name(dst, q, o)}: ap_fixed bits {int(e):#x}, edgelearn bits {g:#x}"
        for (src, r, dst, q, o, g), e in zip(cases, out)
        if int(e) != g
    ]
    _report(mismatches, len(cases), "ap_fixed assignments")
    assert len(cases) > 20000


def _double_hex(x: float) -> str:
    return struct.pack(">d", x).hex()


def _random_doubles(rng, fmt: FixedFormat, n: int) -> list[float]:
    out = [0.0, -0.0, 1e300, -1e300, float("inf"), float("-inf"), 1e-300, -1e-300]
    while len(out) < n:
        kind = rng.integers(0, 4)
        if kind == 0:
            x = float(rng.standard_normal() * 2.0 ** rng.integers(-40, 60))
        else:
            t = int(rng.integers(-(1 << fmt.width) - 3, (1 << fmt.width) + 3, endpoint=True))
            frac = [0.0, 0.5, 0.25, 0.75, float(rng.random()), 2.0**-30, 1 - 2.0**-30][int(rng.integers(0, 7))]
            x = float(np.ldexp(t + frac, -fmt.frac))
        out.append(x)
    return out


def test_ap_fixed_quantize_from_double(ap_harness):
    rng = np.random.default_rng(11)
    lines, cases = [], []
    for d_id, dst in enumerate(ap_harness.dbl):
        for qi, q in enumerate(XILINX_Q):
            for o, oi in OVERFLOW.items():
                fmt = dst.with_(rounding=q, overflow=o)
                xs = _random_doubles(rng, fmt, 60)
                got = _bits(fmt.quantize(np.array(xs)), fmt.width)
                for x, g in zip(xs, got):
                    lines.append(f"F {d_id} {qi} {oi} {_double_hex(x)}")
                    cases.append((x, fmt, g))
    out = ap_harness.run(lines)
    mismatches = [
        f"x={x!r} -> {fmt.to_hls()}: ap_fixed bits {int(e):#x}, edgelearn bits {g:#x}"
        for (x, fmt, g), e in zip(cases, out)
        if int(e) != g
    ]
    _report(mismatches, len(cases), "double -> ap_fixed conversions")


@pytest.mark.parametrize(
    "func, fmt_text",
    [("tanh", "fixed<16,2>"), ("tanh", "fixed<8,3>"), ("tanh", "fixed<16,1>"), ("sigmoid", "ufixed<16,0>"),
     ("sigmoid", "ufixed<10,0>"), ("sigmoid", "fixed<12,4>")],
)
def test_activation_tables_match_ap_fixed(ap_harness, func, fmt_text):
    fmt = FixedFormat.parse(fmt_text)
    d_id = next(i for i, f in enumerate(ap_harness.dbl) if (f.width, f.integer, f.signed) == (fmt.width, fmt.integer, fmt.signed))
    c = act.table_centres()
    values = np.tanh(c) if func == "tanh" else 1.0 / (1.0 + np.exp(-c))
    table = act.tanh_table(fmt) if func == "tanh" else act.sigmoid_table(fmt)
    assert table.shape == (1 << act.TABLE_BITS,)
    lines = [f"F {d_id} {XILINX_Q.index('RND')} {OVERFLOW['SAT']} {_double_hex(float(v))}" for v in values]
    out = ap_harness.run(lines)
    expected = [int(e) for e in out]
    got = _bits(table, fmt.width)
    mismatches = [f"entry {i} (x={c[i]!r}): ap_fixed bits {e:#x}, table bits {g:#x}"
                  for i, (e, g) in enumerate(zip(expected, got)) if e != g]
    _report(mismatches, len(expected), f"{func} table entries in {fmt_text}")


# ----------------------------------------------------------------------------------------------------
# oracle 2, frozen: the harness's answers committed beside the tests

VEC_PER_MODE = 8  # cases per (format, rounding, overflow): 22 conversions and 16 double formats x 28 modes
MIN_SAT_CASES = 2000  # comparisons under each of SAT, SAT_ZERO and SAT_SYM in the committed file
MIN_SAT_HITS = 1000  # of which the result sits at that mode's saturation bound (range edge; 0 for SAT_ZERO)


def _sat_bounds(fmt: FixedFormat, overflow: str) -> set[int]:
    """The bit patterns a saturating overflow mode produces (SAT_SYM: -max; SAT_ZERO: 0)."""
    if overflow == "SAT_ZERO":
        return {0}
    low = -fmt.max_raw if overflow == "SAT_SYM" and fmt.signed else fmt.min_raw
    return set(_bits([low, fmt.max_raw], fmt.width))


def _oracle_vectors(harness) -> dict[str, np.ndarray]:
    """A fixed set of cases (seeded) and the ap_fixed headers' answers, as the arrays of VECTORS."""
    rng = np.random.default_rng(12)
    conv, lines = [], []
    for s_id, src in sorted(harness.src.items()):
        for d_id, dst in enumerate(harness.dst[s_id]):
            for qi in range(len(XILINX_Q)):
                for oi in OVERFLOW.values():
                    raws = _random_src_raws(rng, src.width, VEC_PER_MODE, dst.frac, src.frac, dst.width)
                    if not src.signed:
                        raws = [r & ((1 << src.width) - 1) for r in raws]
                    for r in raws:
                        lines.append(f"C {s_id} {d_id} {qi} {oi} {r}")
                        conv.append((src.width, src.integer, src.signed, dst.width, dst.integer, dst.signed, qi, oi, r))
    conv_bits = [int(e) for e in harness.run(lines)]
    dbl, lines = [], []
    for d_id, dst in enumerate(harness.dbl):
        for qi, q in enumerate(XILINX_Q):
            for o, oi in OVERFLOW.items():
                for x in _random_doubles(rng, dst.with_(rounding=q, overflow=o), VEC_PER_MODE):
                    lines.append(f"F {d_id} {qi} {oi} {_double_hex(x)}")
                    dbl.append((dst.width, dst.integer, dst.signed, qi, oi, x))
    dbl_bits = [int(e) for e in harness.run(lines)]
    c, d = list(zip(*conv)), list(zip(*dbl))
    out = {f"conv_{k}": np.array(v, dtype=np.int64) for k, v in
           zip(("src_w", "src_i", "src_signed", "dst_w", "dst_i", "dst_signed", "q", "o", "raw"), c)}
    out["conv_bits"] = np.array(conv_bits, dtype=np.int64)
    out.update({f"dbl_{k}": np.array(v, dtype=np.int64) for k, v in
                zip(("dst_w", "dst_i", "dst_signed", "q", "o"), d[:5])})
    out["dbl_x"] = np.array(d[5], dtype=np.float64)
    out["dbl_bits"] = np.array(dbl_bits, dtype=np.int64)
    return out


def _load_vectors() -> dict[str, np.ndarray]:
    with np.load(VECTORS, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def test_engine_matches_committed_ap_fixed_vectors():
    """The engine against the committed ap_fixed answers: runs without g++ or hls4ml."""
    v = _load_vectors()
    q_names = {i: q for i, q in enumerate(XILINX_Q)}
    o_names = {i: o for o, i in OVERFLOW.items()}
    mismatches, total = [], 0
    sat = {o: 0 for o in OVERFLOW if o != "WRAP"}
    sat_hits = dict(sat)
    conv_key = np.stack([v[f"conv_{k}"] for k in ("src_w", "src_i", "src_signed", "dst_w", "dst_i", "dst_signed",
                                                 "q", "o")], axis=1)
    for key in np.unique(conv_key, axis=0):
        sw, si, ss, dw, di, ds, qi, oi = (int(k) for k in key)
        sel = np.all(conv_key == key, axis=1)
        raws, expected = v["conv_raw"][sel], v["conv_bits"][sel]
        got = _bits(_convert_many(raws, sw - si, dw, dw - di, bool(ds), qi, oi), dw)
        dst = AccumulatorFormat(dw, di, bool(ds))
        for r, e, g in zip(raws, expected, got):
            if int(e) != g:
                mismatches.append(f"raw={r} src={'' if ss else 'u'}fixed<{sw},{si}> -> "
                                  f"{_fmt_name(dst, q_names[qi], o_names[oi])}: ap_fixed bits {int(e):#x}, "
                                  f"edgelearn bits {g:#x}")
        total += len(raws)
        if o_names[oi] != "WRAP":
            bounds = _sat_bounds(dst, o_names[oi])
            sat[o_names[oi]] += len(raws)
            sat_hits[o_names[oi]] += sum(int(e) in bounds for e in expected)
    dbl_key = np.stack([v[f"dbl_{k}"] for k in ("dst_w", "dst_i", "dst_signed", "q", "o")], axis=1)
    for key in np.unique(dbl_key, axis=0):
        dw, di, ds, qi, oi = (int(k) for k in key)
        sel = np.all(dbl_key == key, axis=1)
        fmt = AccumulatorFormat(dw, di, bool(ds)).with_(rounding=q_names[qi], overflow=o_names[oi])
        xs, expected = v["dbl_x"][sel], v["dbl_bits"][sel]
        got = _bits(fmt.quantize(xs), dw)
        mismatches += [f"x={x!r} -> {fmt.to_hls()}: ap_fixed bits {int(e):#x}, edgelearn bits {g:#x}"
                       for x, e, g in zip(xs, expected, got) if int(e) != g]
        total += len(xs)
        if o_names[oi] != "WRAP":
            bounds = _sat_bounds(fmt, o_names[oi])
            sat[o_names[oi]] += len(xs)
            sat_hits[o_names[oi]] += sum(int(e) in bounds for e in expected)
    _report(mismatches, total, "committed ap_fixed vectors")
    # every rounding x overflow mode is covered, saturation well exercised
    assert set(map(int, np.unique(v["conv_q"]))) == set(range(len(XILINX_Q))) == set(map(int, np.unique(v["dbl_q"])))
    assert set(map(int, np.unique(v["conv_o"]))) == set(OVERFLOW.values()) == set(map(int, np.unique(v["dbl_o"])))
    assert total > 8000, total
    assert min(sat.values()) >= MIN_SAT_CASES and min(sat_hits.values()) >= MIN_SAT_HITS, (sat, sat_hits)


def test_committed_ap_fixed_vectors_are_what_the_headers_answer(ap_harness):
    fresh = _oracle_vectors(ap_harness)
    if os.environ.get("EDGELEARN_WRITE_ORACLE_VECTORS") == "1":
        staged = VECTORS.with_suffix(f".{os.getpid()}.npz")
        np.savez_compressed(staged, **fresh)
        os.replace(staged, VECTORS)  # never a half-written file
    committed = _load_vectors()
    assert sorted(committed) == sorted(fresh)
    for k in fresh:
        assert np.array_equal(committed[k], fresh[k]), f"{VECTORS.name}: {k} differs from the ap_fixed headers"
