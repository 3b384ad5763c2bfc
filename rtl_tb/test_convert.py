"""el_convert (edgelearn/hw/el_convert.v) against the engine's arith.convert: every rounding x overflow mode, random formats.

One generated wrapper instantiates many converters side by side; the pytest runner function computes the expected
outputs with edgelearn.fixed.arith and the cocotb coroutine drives the vectors and compares every output bit.
"""
from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest
from needs import require_tool

from edgelearn.rtl import sim as rsim

try:
    import cocotb
    from cocotb.triggers import Timer
except ImportError:  # pragma: no cover - the runner below skips
    cocotb = None

N_VECTORS = 400




if cocotb is not None:
    @cocotb.test()
    async def convert_matches_engine(dut):
        data = json.loads(Path(os.environ["EL_VECTORS"]).read_text())
        cfgs = data["configs"]
        bad = []
        for vec in data["vectors"]:
            dut.din.value = vec["din"]
            dut.rnd.value = vec["rnd"]
            await Timer(1, unit="ns")
            out = int(dut.dout.value)
            for c, cfg in enumerate(cfgs):
                got = (out >> cfg["off"]) & ((1 << cfg["ow"]) - 1)
                if got != vec["exp"][c]:
                    bad.append((cfg, vec["din"], vec["rnd"], got, vec["exp"][c]))
        assert not bad, f"{len(bad)} mismatches, first: {bad[:3]}"


def _configs(rng: random.Random) -> list[dict]:
    cfgs = []
    for rmode in range(8):
        for omode in range(4):
            for _ in range(3):
                iw = rng.choice([2, 3, 5, 8, 12, 16, 24, 33, 40, 48, 63, 64])
                s = rng.choice([-7, -3, -1, 0, 1, 2, 3, 5, 8, 13, 20, 31, 32, 33, 40, iw - 1, iw, iw + 3])
                ow = rng.choice([2, 3, 4, 8, 12, 16, 24, 32])
                cfgs.append({"iw": iw, "s": s, "rmode": rmode, "omode": omode, "ow": ow, "signed": rng.random() < 0.7})
    off = 0
    for c in cfgs:
        c["off"] = off
        off += c["ow"]
    return cfgs


def _wrapper(cfgs: list[dict]) -> str:
    total = sum(c["ow"] for c in cfgs)
    lines = ["module conv_bank (input wire [63:0] din, input wire [31:0] rnd, output wire [%d:0] dout);" % (total - 1)]
    for i, c in enumerate(cfgs):
        lines.append(f"  el_convert #(.IW({c['iw']}), .S({c['s']}), .RMODE({c['rmode']}), .OW({c['ow']}), "
                     f".OSIGNED({int(c['signed'])}), .OMODE({c['omode']})) u{i} (.din(din[{c['iw'] - 1}:0]), "
                     f".rnd(rnd), .dout(dout[{c['off'] + c['ow'] - 1}:{c['off']}]), .ovf());")
    lines.append("endmodule")
    return "\n".join(lines) + "\n"


def _vectors(cfgs, rng: random.Random) -> list[dict]:
    from edgelearn.fixed.arith import convert

    vecs = []
    for n in range(N_VECTORS):
        nbits = rng.randint(1, 64)
        din = rng.getrandbits(nbits)
        if n % 4 == 1:  # exact ties and near-ties for every shift
            k = rng.randint(1, 40)
            din = (rng.getrandbits(20) << k) | (1 << (k - 1)) | (rng.random() < 0.3)
        din &= (1 << 64) - 1
        rnd = rng.randint(1, (1 << 32) - 1)
        exp = []
        for c in cfgs:
            r = din & ((1 << c["iw"]) - 1)
            if r >> (c["iw"] - 1):
                r -= 1 << c["iw"]
            v = int(convert(r, c["s"], c["ow"], 0, c["signed"], c["rmode"], c["omode"], rnd))
            exp.append(v & ((1 << c["ow"]) - 1))
        vecs.append({"din": din, "rnd": rnd, "exp": exp})
    return vecs


@pytest.mark.parametrize("sim", ["icarus", "verilator"])
def test_el_convert_bit_exact(sim, tmp_path):
    require_tool(sim)
    rng = random.Random(1234)
    cfgs = _configs(rng)
    wrapper = tmp_path / "conv_bank.v"
    wrapper.write_text(_wrapper(cfgs))
    vec = tmp_path / "vectors.json"
    vec.write_text(json.dumps({"configs": cfgs, "vectors": _vectors(cfgs, rng)}))
    runner = rsim.build(sim, rsim.hw_sources("el_convert.v") + [wrapper], "conv_bank", tmp_path / "build")
    ntests, nfail = rsim.test(runner, "conv_bank", "test_convert", tmp_path / "build", {"EL_VECTORS": str(vec)},
                              module_dir=Path(__file__).resolve().parent)
    assert ntests == 1 and nfail == 0


def test_el_select_is_a_mux_not_a_shifter(tmp_path):
    """el_select (edgelearn/hw/el_convert.v): word `sel` of N words, 0 past the last, elaborated without a shifter
    (the indexed part-select it replaces became a shifter over the whole input: +448 LUTs at 784 inputs)."""
    require_tool("yosys")
    import subprocess

    n, w, sw = 5, 6, 3  # W no power of two: where a part-select's shifter appeared
    din = random.Random(3).getrandbits(n * w)
    evals = "".join(f"tee -q -a eval.txt eval -set din {n * w}'d{din} -set sel {s} -show dout\n" for s in range(2 ** sw))
    (tmp_path / "m.ys").write_text(
        f"read_verilog {rsim.HW_DIR / 'el_convert.v'}\nchparam -set N {n} -set W {w} -set SW {sw} el_select\n"
        "hierarchy -top el_select\nproc\nflatten\nopt -fast\n"
        "tee -q -o count.txt select -count t:$shiftx t:$shr t:$shl t:$sshr t:$shift\n" + evals)
    subprocess.run(["yosys", "-q", "-s", "m.ys"], cwd=tmp_path, check=True, capture_output=True, timeout=300)
    assert (tmp_path / "count.txt").read_text().split()[0] == "0"
    got = [int(line.rsplit("'", 1)[1].rstrip("."), 2) for line in (tmp_path / "eval.txt").read_text().splitlines()
           if line.startswith("Eval result")]
    assert got == [(din >> (s * w)) & (2 ** w - 1) if s < n else 0 for s in range(2 ** sw)]
