"""The RTL generator (no simulator needed): what it writes, and the configurations it refuses before simulation."""
from __future__ import annotations

import inspect
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from edgelearn.cli import main
from edgelearn.errors import ConfigError, FormatError, RuleError
from edgelearn.fixed.engine import FixedEngine
from edgelearn.network import network_from_dict
from edgelearn.rtl import layout
from edgelearn.rtl.generate import RtlDesign, draw_masks, write_rtl


def _spec(rule="drtp", act="tanh", sizes=(12, 8, 4), loss="bce"):
    return network_from_dict({"name": "g", "input_shape": [sizes[0]], "num_classes": sizes[-1], "loss": loss,
                              "rule": rule, "layers": [{"type": "linear", "out": sizes[1], "act": act, "name": "fc1"},
                                                       {"type": "linear", "out": sizes[-1], "name": "out"}]})


def test_layout_round_trip_and_lane_order():
    rng = np.random.default_rng(0)
    W = rng.integers(-128, 128, size=(5, 7))
    words = layout.pack(W, 3, 8)
    assert len(words) == 5 * 3  # 3 groups of 3 lanes (last group: 1 lane + 2 zero pads)
    # word g*n_in + j, lane l = W[j, g*3 + l]: word 1*5 + 2 lane 0 is W[2, 3]
    assert (words[1 * 5 + 2] & 0xFF) == (int(W[2, 3]) & 0xFF)
    assert words[2 * 5 + 4] >> 8 == 0  # padding lanes are zero
    assert np.array_equal(layout.unpack(words, 3, 8, True, 7, 5), W)
    assert layout.mismatched_bits(W, W, 8) == 0
    assert layout.mismatched_bits(np.array([0]), np.array([-1]), 8) == 8


def _parity_word(state: int, masks: int, bits: int) -> int:
    return sum((bin(state & (masks >> (32 * b)) & 0xFFFFFFFF).count("1") & 1) << b for b in range(bits))


def test_draw_masks_give_the_engines_draws_and_states():
    """The datapath draws each stochastic-rounding bit as one parity of the LFSR state: the same draws, in the same
    order, and the same state after a full (P lanes) and a last (REM lanes) word as the engine's stream."""
    from edgelearn.fixed.lfsr import lfsr_draw32

    lanes, rem = 5, 3
    mx, mf, mr = draw_masks(lanes, rem)
    for state in (1, 0x80200003, 0xDEADBEEF, 0x12345678):
        s, draws = state, []
        for lane in range(lanes):
            s, d = lfsr_draw32(s)
            draws.append(int(d))
            if lane == rem - 1:
                after_rem = int(s)
        assert [_parity_word(state, mx >> (1024 * lane), 32) for lane in range(lanes)] == draws
        assert _parity_word(state, mf, 32) == int(s) and _parity_word(state, mr, 32) == after_rem


def test_stochastic_layers_get_their_draw_masks_and_others_none():
    eng = FixedEngine(_spec(), bits=8, seed=1)  # 8-bit preset: stochastic weights and biases
    top = RtlDesign(eng, parallel=3).render_top()
    for rem in (2, 1):  # fc1: 8 outputs on 3 lanes, the last word 2 lanes; out: 4 outputs, 1 lane
        mx, mf, mr = draw_masks(3, rem)
        assert f".RND_MX(3072'h{mx:x})" in top and f".RND_MF(1024'h{mf:x})" in top and f".RND_MR(1024'h{mr:x})" in top
    assert top.count(".RND_MX(") == 2
    infer = RtlDesign(eng, parallel=3, learning=False).render_top()
    assert "RND_MX" not in infer


def test_rng_neuron_rings_hold_the_engines_generators_and_step_them_as_xorshift():
    """rng neuron (docs/arithmetic.md §9a): each layer's ring starts from the engine's per-neuron states, neuron
    i = g*P + l at bits 32*i (padding lanes 0), and the XOR network of XS_MASK is one xorshift32 step."""
    from edgelearn.fixed.xorshift import py_xorshift32
    from edgelearn.rtl.generate import XS_MASK, ring_init

    eng = FixedEngine(_spec(), bits=8, seed=1, rng="neuron")
    eng.step(np.arange(12) % 5, 1)  # the states move: the design takes the engine's current ones
    design = RtlDesign(eng, parallel=3)
    top = design.render_top()
    for k, lay in enumerate(design.layers):
        states = [int(v) & 0xFFFFFFFF for v in eng.neuron_state[k]]
        ring = ring_init(lay.rng_states)
        assert [(ring >> (32 * i)) & 0xFFFFFFFF for i in range(lay.n_out)] == states
        assert ring >> (32 * lay.n_out) == 0
        assert f".RNG_INIT({lay.groups * lay.lanes * 32}'h{ring:x})" in top
    assert top.count(".RNG_NEURON(1)") == 2 and "RND_MX" not in top
    assert json.loads(design.files()["design.json"])["rng"] == "neuron"
    for s in (1, 0xDEADBEEF, 0x80000000, int(eng.neuron_state[0][0])):
        assert _parity_word(s, XS_MASK, 32) == py_xorshift32(s)
    # an inference-only datapath has no generators and no update logic (TRAIN 0: no sample trains)
    infer = RtlDesign(eng, parallel=3, learning=False).render_top()
    assert "RNG_" not in infer and "RND_MX" not in infer and infer.count(".TRAIN(0)") == 2


def test_written_files_memory_images_and_design_json(tmp_path):
    eng = FixedEngine(_spec(), bits=8, seed=1)
    d = write_rtl(eng, tmp_path / "prj", parallel=3)
    prj = tmp_path / "prj"
    for f in ("el_mlp.v", "hdl/el_layer.v", "hdl/el_convert.v", "mem/w0.hex", "mem/b0.hex", "mem/t0.hex",
              "mem/fb0.hex", "mem/w1.hex", "mem/t1.hex", "filelist.f", "design.json"):
        assert (prj / f).is_file(), f
    meta = json.loads((prj / "design.json").read_text())
    assert [l["lanes"] for l in meta["layers"]] == [3, 3] and meta["layers"][0]["groups"] == 3
    # the weight image is the engine's weights in the documented layout
    words = [int(line, 16) for line in (prj / "mem/w0.hex").read_text().split()]
    assert np.array_equal(layout.unpack(words, 3, 8, True, 8, 12), eng.weights()[0]["W"])
    # the table image is the engine's table, the feedback image its B
    t = [int(line, 16) for line in (prj / "mem/t0.hex").read_text().split()]
    assert len(t) == 1024 and t == [int(v) & 0xFF for v in eng.tables[0]]
    fb = [int(line, 16) for line in (prj / "mem/fb0.hex").read_text().split()]
    assert fb == [int(v) & 0xFF for v in eng.B[0].ravel()]
    # LFSR feedback: row states instead of the matrix
    eng2 = FixedEngine(_spec(), bits=8, seed=1, feedback="lfsr")
    write_rtl(eng2, tmp_path / "lfsr", parallel=4)
    assert (tmp_path / "lfsr/mem/fbst0.hex").is_file() and not (tmp_path / "lfsr/mem/fb0.hex").exists()
    # sdfa / dfa read P entries of a row at once: word c*G + g = B[c, g*P ...]
    eng3 = FixedEngine(_spec(rule="sdfa"), bits=8, seed=1)
    write_rtl(eng3, tmp_path / "sdfa", parallel=3)
    fbw = [int(line, 16) for line in (tmp_path / "sdfa/mem/fbw0.hex").read_text().split()]
    assert len(fbw) == 4 * 3
    assert np.array_equal(np.concatenate([layout.unpack(fbw[c * 3:(c + 1) * 3], 3, 8, True, 8, 1) for c in range(4)]),
                          eng3.B[0])
    # MACs / lanes: forward and update of both layers (12 and 8 non-zero inputs)
    assert d.ideal_cycles([12, 8], True) == math.ceil(2 * (12 * 8 / 3 + 8 * 4 / 3))
    assert d.ideal_cycles([12, 8], False) == math.ceil(12 * 8 / 3 + 8 * 4 / 3)


def test_a_failed_write_leaves_no_tmp_folder_and_the_old_design_untouched(tmp_path, monkeypatch):
    eng = FixedEngine(_spec(), bits=8, seed=1)
    out = tmp_path / "prj"
    write_rtl(eng, out, parallel=3)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    real, n = Path.write_text, [0]

    def write_text(self, *a, **kw):  # the disk fills up at the fourth file
        n[0] += 1
        if n[0] == 4:
            raise OSError(28, "No space left on device")
        return real(self, *a, **kw)

    monkeypatch.setattr(Path, "write_text", write_text)
    for target in (out, tmp_path / "new"):  # over an existing design, and a new one
        n[0] = 0
        with pytest.raises(OSError, match="No space"):
            write_rtl(FixedEngine(_spec(), bits=8, seed=2), target, parallel=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prj"]
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("make,err,words", [
    (lambda: FixedEngine(_spec(rule="fa"), bits=8), RuleError, "rule 'fa' has no generated datapath"),
    (lambda: FixedEngine(_spec(rule="bp"), bits=8), RuleError, "rule 'bp'"),
    (lambda: FixedEngine(_spec(), bits=8, formats={"update": "fixed<16,4>"}), FormatError, "update format"),
    (lambda: FixedEngine(_spec(act="hardtanh"), bits=8, formats={"accum": "fixed<20,22>"}), FormatError,
     "hard-tanh needs an accumulator"),
])
def test_configurations_the_generator_cannot_build(make, err, words):
    with pytest.raises(err, match=words):
        RtlDesign(make(), parallel=4)


def test_bad_parallelism_and_names():
    eng = FixedEngine(_spec(), bits=8)
    for p in (0, 65, 2.5, True):
        with pytest.raises(ConfigError, match="parallel MAC units"):
            RtlDesign(eng, parallel=p)
    with pytest.raises(ConfigError, match="module name"):
        RtlDesign(eng, top="el_layer")
    with pytest.raises(ConfigError, match="minibatch"):
        RtlDesign(FixedEngine(_spec(), bits=8, batch_size=4), parallel=4)


def test_cli_writes_the_default_design_and_refuses_bad_input(tmp_path, capsys):
    assert main(["rtl", "--out", str(tmp_path / "d")]) == 0
    out = capsys.readouterr().out
    assert "digits-mlp 64-128-10" in out and (tmp_path / "d/el_mlp.v").is_file()
    assert main(["rtl", "--out", str(tmp_path / "bad"), "--rule", "fa"]) == 2
    err = capsys.readouterr().err
    assert "no generated datapath" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "bad").exists()  # nothing half-written
    assert main(["rtl", "--out", str(tmp_path / "bad"), "--config", "small-convbn"]) == 2
    assert "MLPs" in capsys.readouterr().err
    assert main(["rtl", "--out", str(tmp_path / "bad"), "--parallel", "100"]) == 2
    assert not (tmp_path / "bad").exists()


def test_update_lanes_divide_the_mac_lanes_and_narrow_layers_keep_a_divisor(tmp_path, capsys):
    """--update-lanes Q: a divisor of --parallel, else one error line and nothing written; a layer narrower
    than P gets the largest divisor of its lanes up to lanes * Q / P; design.json and the parameters say so."""
    assert main(["rtl", "--out", str(tmp_path / "bad"), "--parallel", "8", "--update-lanes", "3"]) == 2
    err = capsys.readouterr().err
    assert "update lanes must divide the 8 MAC lanes" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "bad").exists()
    assert main(["rtl", "--out", str(tmp_path / "bad"), "--parallel", "4", "--update-lanes", "8"]) == 2
    assert "update lanes must divide" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
    for q in (0, 2.5, True):
        with pytest.raises(ConfigError, match="update lanes"):
            RtlDesign(FixedEngine(_spec(), bits=8), parallel=4, update_lanes=q)
    # digits 64-128-10 at 16 lanes: the output layer has 10 lanes
    assert main(["rtl", "--out", str(tmp_path / "d"), "--parallel", "16", "--update-lanes", "4"]) == 0
    assert "16 MAC lanes per layer, 4 update lanes" in capsys.readouterr().out
    meta = json.loads((tmp_path / "d/design.json").read_text())
    assert meta["update_lanes"] == 4
    assert [(l["lanes"], l["update_lanes"]) for l in meta["layers"]] == [(16, 4), (10, 2)]
    assert ".UQ(4)" in (tmp_path / "d/el_mlp.v").read_text()
    # the load port takes a learning layer's words in sub-words of its update lanes, an inference design's whole
    assert [l["load_lanes"] for l in meta["layers"]] == [4, 2]
    assert meta["ports"]["wr_wdata"] == 4 * 8 and meta["ports"]["rd_wdata"] == 16 * 8
    assert main(["rtl", "--out", str(tmp_path / "i"), "--parallel", "16", "--update-lanes", "4",
                 "--inference-only"]) == 0
    meta = json.loads((tmp_path / "i/design.json").read_text())
    assert [l["load_lanes"] for l in meta["layers"]] == [16, 10] and meta["ports"]["wr_wdata"] == 16 * 8


def test_split_words_cuts_a_word_into_load_sub_words_lowest_lanes_first():
    rng = np.random.default_rng(1)
    W = rng.integers(-128, 128, size=(3, 12))
    for word in layout.pack(W, 12, 8):
        subs = layout.split_words(word, 12, 4, 8)
        assert len(subs) == 3 and all(0 <= s < 1 << 32 for s in subs)
        assert sum(s << (32 * i) for i, s in enumerate(subs)) == word
    assert layout.split_words(0x1234, 2, 2, 8) == [0x1234]
    with pytest.raises(ValueError, match="do not divide"):
        layout.split_words(0, 12, 5, 8)


def test_the_top_level_and_file_list_are_rendered_from_the_templates_of_hw(monkeypatch):
    """No Verilog is written by code: the top level and the file list come from edgelearn/hw/*.j2 (both templates
    are read), and the top level chains one el_layer instance per layer."""
    from edgelearn.rtl import generate

    env = generate._environment()  # a fresh one: a cached template would not be loaded again
    loaded = []
    get_source = env.loader.get_source
    monkeypatch.setattr(env.loader, "get_source", lambda e, name: loaded.append(name) or get_source(e, name))
    monkeypatch.setattr(generate, "_ENV", env)
    spec = network_from_dict({"name": "t", "input_shape": [6], "num_classes": 3, "rule": "drtp",
                              "layers": [{"type": "linear", "out": 5, "act": "tanh", "name": "h1"},
                                         {"type": "linear", "out": 4, "act": "tanh", "name": "h2"},
                                         {"type": "linear", "out": 3, "name": "out"}]})
    files = RtlDesign(FixedEngine(spec, bits=8, seed=0), parallel=2, top="tiny").files()
    assert sorted(loaded) == ["el_mlp.v.j2", "filelist.f.j2"]
    top = files["tiny.v"]
    assert not re.search(r"\{\{|\{%|\{#", top + files["filelist.f"])
    assert re.findall(r"^module (\w+) #?\(", top, re.M) == ["tiny"] and top.endswith("endmodule\n")
    assert re.findall(r"^    \) (u_l\d+) \(", top, re.M) == ["u_l0", "u_l1", "u_l2"] and top.count("el_layer #(") == 3
    # each layer streams into the next, the last into the prediction register
    assert ".in_we(l0_out_we)" in top and ".in_we(l1_out_we)" in top and ".out_ready(!m_valid)" in top
    assert files["filelist.f"] == "hdl/el_convert.v\nhdl/el_layer.v\ntiny.v\n"
    assert not re.search(r"endmodule|el_layer #\(", inspect.getsource(generate))


def _ldfa_spec(rules=None, rank=2):
    return network_from_dict({"name": "l", "input_shape": [10], "num_classes": 4, "loss": "bce", "rule": "ldfa",
                              "rules": rules or {}, "rule_params": {"rank": rank},
                              "layers": [{"type": "linear", "out": 7, "act": "tanh", "name": "fc1"},
                                         {"type": "linear", "out": 5, "act": "tanh", "name": "fc2"},
                                         {"type": "linear", "out": 4, "name": "out"}]})


def test_ldfa_factors_live_beside_their_layer_and_other_designs_do_not_change(tmp_path):
    eng = FixedEngine(_ldfa_spec(), bits=8, seed=0)
    files = write_rtl(eng, tmp_path / "l", parallel=3).files()
    top = files["el_mlp.v"]
    # an el_feedback for each layer with factors (1, 2); layer 0 and 1 project u through the layer above's Q
    assert top.count("el_feedback #(") == 2 and "hdl/el_feedback.v" in files["filelist.f"]
    assert ".e_in(fb1_u)" in top and ".e_in(fb2_u)" in top and ".fb_rd(fb2_q_rd)" in top
    # Q^T in the layer below's word layout (word t*G + g), P one entry per word, both the engine's start state
    B = np.asarray(eng.B[1])
    q = [int(v, 16) for v in files["mem/q1.hex"].split()]
    assert len(q) == 2 * 3 and np.array_equal(
        np.stack([layout.unpack(q[t * 3:(t + 1) * 3], 3, 8, True, 7, 1)[0] for t in range(2)], axis=1), B[:7, :2])
    p = [int(v, 16) for v in files["mem/p2.hex"].split()]
    assert np.array_equal(np.array([v - 256 if v > 127 else v for v in p]).reshape(2, 4), np.asarray(eng.B[2])[5:7, :4])
    meta = json.loads(files["design.json"])["layers"]
    assert "factors" not in meta[0] and meta[2]["factors"]["oja_target"] and not meta[1]["factors"]["oja_target"]
    # a DRTP design has no trace of the feedback path in its top level and file list
    drtp = RtlDesign(FixedEngine(_spec(), bits=8, seed=0), parallel=3).files()
    assert "el_feedback" not in drtp["el_mlp.v"] + drtp["filelist.f"] and "fb_ra" not in drtp["el_mlp.v"]


@pytest.mark.parametrize("rules,err,words", [
    ({"fc2": "drtp"}, ConfigError, "ldfa only with every layer ldfa"),
    ({"fc1": "kp"}, ConfigError, "kp only with every layer kp"),
    ({"fc1": "dldfa"}, ConfigError, "dldfa only with every hidden layer dldfa"),
    ({"fc1": "drtp", "fc2": "drtp", "out": "kp"}, ConfigError,
     "trained kp feedback has no generated datapath beside hidden rules drtp, drtp"),
])
def test_ldfa_networks_the_generator_refuses(rules, err, words):
    with pytest.raises(err, match=words):
        RtlDesign(FixedEngine(_ldfa_spec(rules), bits=8, seed=0), parallel=2)
