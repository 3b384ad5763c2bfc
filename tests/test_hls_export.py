"""HLS export: the hls4ml inference project and the learning kernel, compiled with g++ against the ap_types
headers bundled in hls4ml and compared with the fixed-point engine bit for bit."""
import numpy as np
import pytest

from edgelearn.cli import main
from edgelearn.errors import EdgelearnError
from edgelearn.network import load_network, network_from_dict
from needs import require_tool

require_tool("hls4ml", "g++", "ap_types", allow_module_level=True)
from edgelearn.hls import project as hls  # noqa: E402
from edgelearn.hls import toolchain  # noqa: E402

from edgelearn.data import load_dataset  # noqa: E402
from edgelearn.fixed import FixedEngine  # noqa: E402

SMALL = {"name": "hls-small", "dataset": "digits", "input_shape": [1, 8, 8], "num_classes": 10, "loss": "bce",
         "rule": "drtp", "layers": [{"type": "flatten"}, {"type": "linear", "out": 24, "act": "tanh", "name": "fc1"},
                                    {"type": "linear", "out": 10, "name": "out"}]}


def trained_engine(**kw):
    spec = network_from_dict(SMALL, source="hls-small")
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
    for rule in ("dfa", "sdfa"):
        eng = trained_engine(bits=8, rule=rule)
        res = hls.export_hls(eng, tmp_path / rule, n_tb=16, check=True, hls4ml=False)
        k = res.checks["learning_kernel"]
        assert k["output_mismatching_bits"] == 0 and k["weight_mismatching_bits_python"] == 0, (rule, k)
        assert k["weights_changed"] > 0


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
