"""hls4ml export that deploys: per-layer strategy and reuse factor under the HLS unroll limit, a reuse factor hls4ml
changes reported with the value it wrote, hls4ml's serialized model rebuilding the firmware bit for bit, and an edge
part (the PYNQ-Z2's Zynq-7020) by default."""
import contextlib
import io
import json
import re
from types import SimpleNamespace

import numpy as np
import pytest

from edgelearn.cli import main
from edgelearn.network import load_network
from needs import require_tool

require_tool("hls4ml", "g++", "ap_types", allow_module_level=True)
from edgelearn.hls import DEFAULT_PART, MAX_UNROLLED_MULTS  # noqa: E402
from edgelearn.hls import hls4ml_export as hx  # noqa: E402


def dense_configs(prj) -> list[dict]:
    """(strategy, reuse_factor, n_in, n_out) of every dense config struct hls4ml wrote into parameters.h."""
    text = (prj / "firmware" / "parameters.h").read_text()
    out = []
    for body in re.findall(r"struct config\d+ : nnet::dense_config \{(.*?)\n\};", text, re.S):
        val = dict(re.findall(r"static const unsigned (\w+) = (?:nnet::)?(\w+);", body))
        out.append({"strategy": val["strategy"], "reuse_factor": int(val["reuse_factor"]),
                    "n_in": int(val["n_in"]), "n_out": int(val["n_out"])})
    return out


def test_fc1_500_gets_resource_under_the_unroll_limit_by_default(tmp_path, capsys):
    out = tmp_path / "fc1"
    assert main(["export-hls", "--config", "fc1-500", "--no-kernel", "--tb-samples", "2", "--out", str(out)]) == 0
    cfgs = dense_configs(out / "hls4ml_prj")
    assert [(c["n_in"], c["n_out"]) for c in cfgs] == [(784, 500), (500, 10)]
    assert [c["strategy"] for c in cfgs] == ["resource", "resource"]  # Latency would unroll 392,000 and 5,000
    summary = json.loads((out / "export.json").read_text())["hls4ml"]
    for c, la in zip(cfgs, summary["layers"]):
        assert c["strategy"] == "resource" and la["strategy"] == "Resource"
        assert la["reuse_factor"] == c["reuse_factor"]  # export.json says what parameters.h holds
        assert -(-c["n_in"] * c["n_out"] // c["reuse_factor"]) == la["unrolled_multiplications"] <= MAX_UNROLLED_MULTS
        # the smallest reuse factor that fits: one less (among those hls4ml accepts) would not
        valid = hx._valid_reuse_factors("Vitis", c["n_in"], c["n_out"])
        smaller = [r for r in valid if r < c["reuse_factor"]]
        assert c["reuse_factor"] in valid and smaller and c["n_in"] * c["n_out"] // smaller[-1] > MAX_UNROLLED_MULTS
    assert summary["warnings"] == [] and "warning" not in capsys.readouterr().err
    assert f'set part "{DEFAULT_PART}"' in (out / "hls4ml_prj" / "project.tcl").read_text()


@pytest.fixture(scope="module")
def resource_rf5(tmp_path_factory):
    """The embedded digits MLP (64 -> 128 -> 10) exported with --strategy Resource --reuse-factor 5: hls4ml's
    Resource dense accepts 5 for neither layer."""
    out = tmp_path_factory.mktemp("rf5") / "prj"
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()) as stdout:
        rc = main(["export-hls", "--strategy", "Resource", "--reuse-factor", "5", "--tb-samples", "8",
                   "--out", str(out)])
    assert rc == 0, err.getvalue()
    return SimpleNamespace(out=out, err=err.getvalue(), stdout=stdout.getvalue())


def test_a_reuse_factor_hls4ml_changes_is_reported(resource_rf5):
    out = resource_rf5.out
    cfgs = dense_configs(out / "hls4ml_prj")
    summary = json.loads((out / "export.json").read_text())["hls4ml"]
    assert summary["requested_strategy"] == "Resource" and summary["requested_reuse_factor"] == 5
    warned = resource_rf5.err.splitlines()
    assert len(cfgs) == len(summary["layers"]) == 2
    for c, la in zip(cfgs, summary["layers"]):
        assert c["strategy"] == "resource" and c["reuse_factor"] != 5
        assert la["reuse_factor"] == c["reuse_factor"] and la["requested_reuse_factor"] == 5
        line = f"edgelearn export-hls: warning: layer {la['layer']}: reuse factor 5 requested, hls4ml uses " \
               f"{c['reuse_factor']}: "
        assert sum(w.startswith(line) for w in warned) == 1, warned
        assert f"reuse factor {c['reuse_factor']} (" in resource_rf5.stdout
    assert summary["warnings"] == [w.partition("warning: ")[2] for w in warned]


def test_default_part_is_the_pynq_z2_zynq_in_both_projects(resource_rf5):
    assert DEFAULT_PART == "xc7z020clg400-1"
    assert f'set part "{DEFAULT_PART}"' in (resource_rf5.out / "hls4ml_prj" / "project.tcl").read_text()
    assert f'set part "{DEFAULT_PART}"' in (resource_rf5.out / "learning_kernel" / "build_prj.tcl").read_text()
    assert json.loads((resource_rf5.out / "export.json").read_text())["hls4ml"]["part"] == DEFAULT_PART


def test_serialized_model_rebuilds_the_firmware_bit_exactly(resource_rf5, tmp_path):
    """hls4ml_config.yml lacks the types set after conversion; the written .fml rebuilds the same firmware, and its
    C-simulation gives the written project's expected outputs (the engine's) bit for bit on the testbench inputs."""
    out = resource_rf5.out
    assert "does NOT rebuild" in (out / "hls4ml_prj" / "hls4ml_config.yml").read_text().splitlines()[0]
    eng = SimpleNamespace(precision=None)  # predict_float needs no engine
    proj = hx.load_serialized(out / hx.SERIALIZED_MODEL, eng, tmp_path / "rebuilt")
    proj.write()
    fw, rfw = out / "hls4ml_prj" / "firmware", proj.path / "firmware"
    names = sorted(str(p.relative_to(fw)) for p in fw.rglob("*") if p.is_file())
    assert names == sorted(str(p.relative_to(rfw)) for p in rfw.rglob("*") if p.is_file())
    # byte for byte, but for the shape comment of Resource's weight headers: hls4ml transposes Resource weights in
    # place, so the rebuilt model's header names the stored (transposed) shape; the values are the same
    def body(p):
        return [ln for ln in p.read_bytes().splitlines() if not ln.startswith(b"//Numpy array shape")]

    differ = [n for n in names if body(fw / n) != body(rfw / n)]
    assert differ == []
    assert sum((fw / n).read_bytes() != (rfw / n).read_bytes() for n in names) <= 2  # one header per layer at most
    X = np.load(out / "qonnx" / "tb_inputs.npy")
    expected = np.load(out / "qonnx" / "tb_outputs.npy")
    y = proj.predict_float(X)  # compiles the rebuilt project (g++)
    assert y.shape == expected.shape and np.array_equal(y, expected)


class _Dense:
    def __init__(self, name, rf):
        self.name, self.rf = name, rf

    def get_attr(self, key):
        assert key == "reuse_factor"
        return self.rf


def test_explicit_latency_over_the_limit_is_warned_and_inexact_resource_keeps_the_order():
    from edgelearn.fixed import FixedEngine

    eng = FixedEngine(load_network("fc1-500"), bits=8)
    plans = hx.plan_dense(eng, "Latency", 50)
    hx._record_conversion(plans, [_Dense("d0", 50), _Dense("d1", 50)], "Vitis")
    assert [p.unrolled_multiplications for p in plans] == [784 * 500, 500 * 10]
    assert all(len(p.notes) == 1 and "over the 4096" in p.notes[0] and "use Resource" in p.notes[0] for p in plans)
    # an accumulator that rounds: Resource with a reuse factor that is a multiple of n_in, which keeps the
    # engine's order (784x500: 784, not 98; 500x10: 500, not 2), no note
    eng = FixedEngine(load_network("fc1-500"), bits=8, formats={"accum": "fixed<20,12>"})
    plans = hx.plan_dense(eng)
    assert [(p.strategy, p.reuse_factor, p.notes) for p in plans] == [("Resource", 784, []), ("Resource", 500, [])]
