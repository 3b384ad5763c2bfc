"""HLS export: the hls4ml inference project and the learning kernel, compiled with g++ against the ap_types
headers bundled in hls4ml and compared with the fixed-point engine bit for bit."""
import json

import numpy as np
import pytest

from edgelearn.cli import main
from edgelearn.errors import EdgelearnError
from edgelearn.network import load_network, network_from_dict
from needs import require_tool

require_tool("hls4ml", "g++", "ap_types", allow_module_level=True)
from edgelearn.hls import project as hls  # noqa: E402
from edgelearn.hls import toolchain  # noqa: E402
from edgelearn.hls.kernel import engine_reference  # noqa: E402

from edgelearn.data import load_dataset  # noqa: E402
from edgelearn.fixed import FixedEngine  # noqa: E402

SMALL = {"name": "hls-small", "dataset": "digits", "input_shape": [1, 8, 8], "num_classes": 10, "loss": "bce",
         "rule": "drtp", "layers": [{"type": "flatten"}, {"type": "linear", "out": 24, "act": "tanh", "name": "fc1"},
                                    {"type": "linear", "out": 10, "name": "out"}]}


def trained_engine(loss="bce", **kw):
    net = dict(SMALL, loss=loss)
    if loss == "ce":  # the output layer holds logits (docs/arithmetic.md §11a)
        net["layers"] = SMALL["layers"][:-1] + [dict(SMALL["layers"][-1], act="none")]
    spec = network_from_dict(net, source="hls-small")
    eng = FixedEngine(spec, seed=1, **kw)
    ds = load_dataset("digits", n_train=300)
    eng.fit(ds.x_train, ds.y_train, epochs=1)  # non-trivial weights before export
    return eng


CASES = {
    "8bit-preset-stochastic": dict(bits=8),
    "6bit-preset": dict(bits=6),
    "12bit-lfsr-feedback": dict(bits=12, feedback="lfsr"),
    "10bit-rnd-conv-sat-sym": dict(bits=10, rounding=[(None, "RND_CONV")], overflow=[(None, "SAT_SYM")]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_both_projects_are_bit_exact_with_the_engine(case, tmp_path):
    eng = trained_engine(**CASES[case])
    res = hls.export_hls(eng, tmp_path / "out", n_tb=24, check=True)
    h, k = res.checks["hls4ml"], res.checks["learning_kernel"]
    assert h["samples"] == 24 and h["mismatching_bits"] == 0
    assert k["learning_steps"] == 24
    assert k["output_mismatching_bits"] == 0 and k["state_mismatching_bits"] == 0
    assert k["weight_mismatching_bits_python"] == 0
    assert k["weights_changed"] > 0  # the learning steps really changed weights
    files = set(res.summary["learning_kernel"]["files"])
    assert {"build_prj.tcl", "firmware/parameters.h", "tb_data/tb_input_features.dat"} <= files


def test_dfa_and_sdfa_kernels_are_bit_exact(tmp_path):
    # DFA under loss ce: the softmax error (exp ROM, one divider) feeds the output update and every class's signal.
    # sDFA with 4 lanes (10 outputs: the last cycle of a row runs 2), the sample as an AXI stream, and rng: neuron
    # with a STOCH update format: two draws per assignment, both from the column's own xorshift32 generator
    neuron = dict(rng="neuron", formats={"update": "fixed<12,0,STOCH,SAT>"})
    for rule, kw, opts in (("dfa", dict(loss="ce"), {}), ("sdfa", neuron, dict(lanes=4, interface="axis"))):
        eng = trained_engine(bits=8, rule=rule, **kw)
        res = hls.export_hls(eng, tmp_path / rule, n_tb=16, check=True, hls4ml=False, **opts)
        k = res.checks["learning_kernel"]
        assert k["output_mismatching_bits"] == 0 and k["weight_mismatching_bits_python"] == 0, (rule, k)
        assert k["state_mismatching_bits"] == 0, (rule, k)  # the LFSR or every neuron's generator state too
        assert k["weights_changed"] > 0
        top = (res.kernel.firmware / "edgelearn_kernel.cpp").read_text()
        if rule == "dfa":
            assert "el::output_error_ce<config1>(a1, exp_table1, label, d1);" in top
        else:
            assert "el::update_neuron<config0>(xs, d0, W0, b0, ns0);" in top and "rnd_state" not in top
            end = [np.asarray(v) for v in res.kernel.run().rnd_state]
            assert [e.shape for e in end] == [(24,), (10,)]
            assert all((e != s).all() for e, s in zip(end, eng.neuron_state))  # every generator drew
            # a reset after sample 8: the kernel keeps nothing but its memories (weights, biases, generator
            # states), so a run restarted from them continues as the engine that never stopped
            X, y, _ = hls.tb_samples(eng, 16, None, None, eng.seed)
            outs, W, b, ns = engine_reference(eng, X, y)
            first = res.kernel.run(X[:8], y[:8])
            again = res.kernel.run(X[8:], y[8:], expected=(outs[8:], W, b, ns),
                                   initial=(first.W, first.b, first.rnd_state))
            assert again.output_mismatch_bits == 0 and again.state_mismatch_bits == 0


def test_export_errors_are_clear(tmp_path, monkeypatch, capsys):
    # a network the kernel cannot build: not an MLP
    rc = main(["export-hls", "--config", "conv-mnist", "--out", str(tmp_path / "conv")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "conv").exists() or not any((tmp_path / "conv").iterdir())
    # hls4ml missing (an optional extra): a clear error naming it
    monkeypatch.setattr(toolchain, "have", lambda m: m != "hls4ml")
    with pytest.raises(EdgelearnError, match="hls4ml"):
        toolchain.require("hls4ml", "brevitas")


def test_cli_default_writes_both_projects(tmp_path, capsys):
    out = tmp_path / "prj"
    assert main(["export-hls", "--out", str(out)]) == 0
    assert (out / "hls4ml_prj" / "firmware" / "myproject.cpp").is_file()
    assert (out / "learning_kernel" / "build_prj.tcl").is_file()
    assert (out / "export.json").is_file()


def test_brevitas_qat_weights_export_bit_exact(tmp_path, capsys):
    """Quantization-aware training with power-of-two Brevitas quantizers equal to the engine's formats, then
    QONNX -> hls4ml: C-simulation still bit-exact with the engine carrying the QAT weights."""
    import json

    out = tmp_path / "qat"
    assert main(["export-hls", "--qat-epochs", "1", "--check", "--out", str(out)]) == 0
    checks = json.loads((out / "export.json").read_text())["checks"]
    assert checks["hls4ml"]["mismatching_bits"] == 0
    assert checks["learning_kernel"]["weight_mismatching_bits_python"] == 0
    assert "QAT" in capsys.readouterr().out


def small_engine(rule="drtp", **kw):
    """The SMALL network untrained (generation tests: no C-simulation, no training needed)."""
    return FixedEngine(network_from_dict(dict(SMALL, rule=rule), source="hls-small"), seed=1, bits=8, **kw)


def test_lanes_and_interfaces_only_add_pragmas(tmp_path):
    from edgelearn.hls import kernel

    eng = small_engine()
    one = kernel.write_kernel_project(eng, tmp_path / "p1")
    fw1 = {p.name: p.read_text() for p in one.firmware.iterdir()}
    assert not any("UNROLL factor" in t or "type=cyclic" in t or "{%" in t or "{#" in t for t in fw1.values())
    assert "mode=ap_memory port=W0\n" in fw1["edgelearn_kernel.cpp"]  # the one-lane ports, as before
    # the one-lane layer templates are the template with its jinja lines dropped and its pipelined loops' pragma
    # macro (pipeline.j2) as its one-lane text
    src = (kernel.TEMPLATES / "el_learn.h").read_text()
    i, j = src.index("{#"), src.index("#}") + 3
    src = src[:i] + src[j:]
    src = "".join(ln for ln in src.splitlines(keepends=True) if not ln.startswith("{% from "))
    src = src.replace("{{ pipeline(lanes)|trim }}\n", "#pragma HLS PIPELINE II = 1\n")
    kept, skip = [], False
    for ln in src.splitlines(keepends=True):
        if ln.startswith("{% if lanes > 1 %}"):
            skip = True
        elif ln.startswith("{% endif %}") and skip:
            skip = False
        elif not skip:
            kept.append(ln)
    assert fw1["el_learn.h"] == "".join(kept)
    for lanes, iface in ((4, "axi"), (8, "axis")):
        prj = kernel.write_kernel_project(eng, tmp_path / f"p{lanes}", lanes=lanes, interface=iface)
        lay = (prj.firmware / "el_learn.h").read_text()
        top = (prj.firmware / "edgelearn_kernel.cpp").read_text()
        # every pipelined loop over output neurons gets the lanes: forward (3), signal (6), update (3, both rng modes)
        assert lay.count(f"#pragma HLS UNROLL factor={lanes}\n") == 12
        for arr, dim in (("W0", 2), ("b0", 1), ("W1", 2), ("b1", 1), ("B0", 2)):
            assert f"ARRAY_PARTITION variable={arr} type=cyclic factor={lanes} dim={dim}\n" in top
        assert "#pragma HLS INTERFACE mode=s_axilite port=return bundle=control\n" in top
        assert "#pragma HLS INTERFACE mode=bram port=W0 storage_type=ram_2p\n" in top
        x_port = "mode=axis port=x\n" if iface == "axis" else "mode=m_axi port=x offset=slave bundle=gmem depth=64\n"
        assert x_port in top and "el::dense<config0>(xs, W0, b0, z0);" in top
        # the C code itself is the one-lane code: the same lines once the pragmas are dropped
        strip = lambda t: [ln for ln in t.splitlines() if not ln.startswith("#pragma") and not ln.startswith("//")]
        assert strip(lay) == strip(fw1["el_learn.h"])
        meta = json.loads((prj.path / "project.json").read_text())
        assert meta["lanes"] == lanes and meta["interface"] == iface
    # rng: neuron: each layer's generator states are a memory beside its biases, banked like them, stepped in place
    eng_n = small_engine(rng="neuron")
    n1, n4 = (kernel.write_kernel_project(eng_n, tmp_path / f"n{p}", lanes=p) for p in (1, 4))
    top1, top4 = ((p.firmware / "edgelearn_kernel.cpp").read_text() for p in (n1, n4))
    assert "rnd_state" not in top4 and "el::update_neuron<config1>(a0, d1, W1, b1, ns1);" in top4
    assert "ARRAY_PARTITION variable=ns0 type=cyclic factor=4 dim=1\n" in top4
    assert "mode=ap_memory port=ns1 storage_type=ram_2p\n" in top4 and "mode=ap_memory port=ns1\n" in top1
    code = lambda t: [ln for ln in t.splitlines() if not ln.lstrip().startswith(("#pragma", "//"))]
    assert code(top1) == code(top4)  # the lanes add pragmas only: the same C code, the same bits
    tb = n1.spec.state_lines()  # the testbench's initial state: the engine's neuron states, no LFSR states
    assert f"ns1 10 {' '.join(str(int(v)) for v in eng_n.neuron_state[1])}" in tb and not any("rnd" in t for t in tb)
    axi = (kernel.write_kernel_project(eng_n, tmp_path / "naxi", interface="axi").firmware
           / "edgelearn_kernel.cpp").read_text()
    assert "mode=bram port=ns0 storage_type=ram_2p\n" in axi and "rnd_state" not in axi
    for bad in (dict(lanes=0), dict(lanes=True), dict(interface="pcie")):
        with pytest.raises(EdgelearnError):
            kernel.write_kernel_project(eng, tmp_path / "bad", **bad)
    assert not (tmp_path / "bad").exists()


def test_cycle_model_walks_the_schedule():
    from edgelearn.fixed.lower import lower
    from edgelearn.hls.kernel import DEPTH, cycle_model, softmax_words

    for rule in ("drtp", "sdfa"):
        prog = lower(small_engine(rule))
        c1, c4, c4axi = cycle_model(prog, 1), cycle_model(prog, 4), cycle_model(prog, 4, "axi")
        assert [s["step"] for s in c1["steps"]] == [str(s) for s in prog.steps]
        for c in (c1, c4, c4axi):
            assert c["cycles_per_sample"] == round(c["io_cycles"] + sum(s["cycles"] for s in c["steps"]))
            assert c["inference_cycles_per_sample"] < c["cycles_per_sample"]
            assert c["samples_per_s"] == round(200e6 / (c["io_cycles"] + sum(s["cycles"] for s in c["steps"])), 1)
        assert c4["cycles_per_sample"] < c1["cycles_per_sample"] / 2
        assert c4axi["io_cycles"] == c4["io_cycles"] + 64 + DEPTH["copy"]  # the sample read once over AXI
        # forward of layer 0, 24 outputs: per non-zero input row ceil(24 / P) cycles + the MAC depth, 1 per zero row
        fwd = [s["cycles"] for s in cycle_model(prog, 4, nnz=[10, 24])["steps"] if s["step"] == "forward(0)"][0]
        fwd_all = [s["cycles"] for s in c4["steps"] if s["step"] == "forward(0)"][0]
        assert fwd_all - fwd == 54 * (6 + DEPTH["mac"]) - 54
    # rng: neuron: the generator states stay in their memories (no LFSR state read and written back per layer)
    base = cycle_model(lower(small_engine()), 4, "axi")
    assert cycle_model(lower(small_engine(rng="neuron")), 4, "axi")["io_cycles"] == base["io_cycles"] - 2 * 2
    # loss ce: the softmax runs a class per cycle (max, exp and sum, divide) plus the divider's depth
    prog = lower(FixedEngine(network_from_dict(dict(SMALL, loss="ce", layers=SMALL["layers"][:-1] + [
        dict(SMALL["layers"][-1], act="none")]), source="hls-small"), seed=1, bits=8))
    err = [s["cycles"] for s in cycle_model(prog)["steps"] if s["step"] == "output_error(1)"][0]
    assert err == 3 * 10 + DEPTH["copy"] + DEPTH["fb"] + softmax_words(prog)["num"]


def test_export_hls_lanes_cli_prints_the_cycles(tmp_path, capsys):
    out = tmp_path / "k"
    assert main(["export-hls", "--no-hls4ml", "--lanes", "4", "--interface", "axis", "--tb-samples", "3",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    info = json.loads((out / "export.json").read_text())["learning_kernel"]
    assert info["lanes"] == 4 and info["interface"] == "axis"
    w = info["cycles"]["worst_case"]
    assert f"learning {w['cycles_per_sample']:,} cycles" in printed and "not a synthesis report" in printed
    assert "testbench" in info["cycles"] and info["cycles"]["model"].endswith("not a synthesis report.")
    assert f"{w['cycles_per_sample']:,}" in (out / "learning_kernel" / "README.md").read_text()
    with pytest.raises(SystemExit) as exc:  # argparse refuses it: usage and one error line, exit 2
        main(["export-hls", "--no-hls4ml", "--lanes", "0", "--out", str(tmp_path / "bad")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("edgelearn export-hls: error: argument --lanes") and not (tmp_path / "bad").exists()
