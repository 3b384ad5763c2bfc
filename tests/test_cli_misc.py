"""Smaller user-facing behaviours of the CLI: what train prints after 0 epochs, data errors before any work, the
--data-dir spelling of every command, rtl's summary line, quiet third-party exports, and ``edgelearn info``'s
back-end column (edgelearn.support)."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import cli_one_line_error
from test_download import serve_mnist, server  # noqa: F401  (server: the loopback HTTP fixture)

from edgelearn.cli import main


def _files(folder) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


# ------------------------------------------------------------------------------------------------------------ train
def test_train_zero_epochs_names_no_checkpoint(capsys, tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--epochs", "0", "-q", "--no-probe", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert not (out / "checkpoint.pt").exists()
    assert "checkpoint.pt" not in printed, printed
    assert "no checkpoint written" in printed, printed
    assert (out / "metrics.json").is_file()


def test_train_one_epoch_names_its_checkpoint(capsys, tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--epochs", "1", "--n-train", "64", "--n-test", "32", "-q", "--no-probe",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"checkpoint: {out / 'checkpoint.pt'}" in printed, printed
    assert (out / "checkpoint.pt").is_file()


def test_train_nan_regression_targets_are_a_data_error(capsys, monkeypatch, tmp_path):
    import edgelearn.data as data

    real = data.load_dataset

    def with_nan(*args, **kwargs):
        ds = real(*args, **kwargs)
        ds.y_train[3, 1] = np.nan
        return ds

    monkeypatch.setattr(data, "load_dataset", with_nan)
    out = tmp_path / "run"
    cli_one_line_error(capsys, ["train", "-c", "drtp-regression", "--epochs", "1", "--n-train", "100",
                                "--n-test", "50", "-q", "--no-probe", "--out", str(out)],
                       "dataset cosine: train targets contain NaN or Inf")
    assert not (out / "checkpoint.pt").exists()


# ------------------------------------------------------------------------------------------- data named by the user
def test_export_hls_refuses_a_missing_data_dir(capsys, tmp_path):
    out = tmp_path / "prj"
    cli_one_line_error(capsys, ["export-hls", "--no-hls4ml", "-c", "fc1-500", "--data-dir", str(tmp_path / "none"),
                                "--out", str(out)], "does not exist")
    assert _files(out) == []


def test_export_hls_refuses_a_dataset_that_does_not_fit(capsys, tmp_path):
    out = tmp_path / "prj"
    cli_one_line_error(capsys, ["export-hls", "--no-hls4ml", "--dataset", "synthetic", "--out", str(out)],
                       "dataset synthetic does not fit network digits-mlp")
    assert _files(out) == []


def test_export_hls_without_data_options_still_falls_back(monkeypatch, tmp_path):
    """A config whose dataset is not on this machine still exports (the testbench needs any inputs)."""
    from edgelearn.fixed import FixedEngine
    from edgelearn.hls.project import tb_samples
    from edgelearn.network import load_network

    monkeypatch.delenv("EDGELEARN_DATA", raising=False)
    eng = FixedEngine(load_network("fc1-500"), bits=8, threads=1)
    X, y, source = tb_samples(eng, 4)
    assert source.startswith("random inputs") and X.shape == (4, 784) and y.shape == (4,)


@pytest.mark.parametrize("data, match", [
    (["-c", "fc1-500", "--data-dir", "NONE"], "does not exist"),
    (["--dataset", "cosine"], "dataset cosine is a regression dataset"),
])
def test_rtl_check_validates_the_data_before_writing(capsys, tmp_path, data, match):
    out = tmp_path / "rtl"
    argv = ["rtl", "--out", str(out), "--check", "icarus", *[str(tmp_path / "none") if a == "NONE" else a
                                                              for a in data]]
    cli_one_line_error(capsys, argv, match)
    assert _files(out) == []


# ---------------------------------------------------------------------------------------------------- data download
def test_data_download_takes_data_dir_and_the_old_dir(server, monkeypatch, tmp_path, capsys):  # noqa: F811
    root, base, _ = server
    serve_mnist(root, monkeypatch)
    for flag in ("--data-dir", "--dir"):
        dest = tmp_path / flag.strip("-")
        assert main(["data", "download", "mnist", flag, str(dest), "--base-url", base, "--no-progress"]) == 0
        assert str(dest) in capsys.readouterr().out
        assert len(list(dest.glob("*.gz"))) == 4
    cli_one_line_error(capsys, ["data", "download", "mnist", "--base-url", base], "--data-dir DIR is required")


def test_data_download_help_shows_data_dir_only(capsys):
    with pytest.raises(SystemExit):
        main(["data", "download", "--help"])
    text = capsys.readouterr().out
    assert "--data-dir DIR" in text and "--dir" not in text.replace("--data-dir", "")


# -------------------------------------------------------------------------------------------------------------- rtl
def test_rtl_inference_only_names_no_rules(capsys, tmp_path):
    assert main(["rtl", "--out", str(tmp_path / "inf"), "--inference-only"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert "inference only" in first and "rules" not in first and "output" not in first, first
    assert main(["rtl", "--out", str(tmp_path / "learn")]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert "rules drtp, output" in first and "inference" not in first, first


# ------------------------------------------------------------------------------------------ third-party warnings
QONNX_SCRIPT = """
import sys
from edgelearn.fixed import FixedEngine
from edgelearn.hls.brevitas_model import build_qat_model, load_engine_weights
from edgelearn.hls.hls4ml_export import clean_qonnx, export_qonnx
from edgelearn.network import default_network

eng = FixedEngine(default_network(), bits=8, threads=1)
model = build_qat_model(eng)
load_engine_weights(model, eng)
clean_qonnx(export_qonnx(model, eng.sizes[0], sys.argv[1]))
print("exported")
"""


def test_qonnx_export_prints_no_known_third_party_warnings(tmp_path):
    """In a fresh process: Brevitas warns once, when its export module is first imported."""
    import subprocess
    import sys

    from needs import require_tool

    require_tool("hls4ml")
    proc = subprocess.run([sys.executable, "-c", QONNX_SCRIPT, str(tmp_path / "model.onnx")], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0 and "exported" in proc.stdout, proc.stderr[-3000:]
    assert proc.stderr.strip() == "", proc.stderr


def test_only_the_known_warnings_are_silenced():
    import warnings

    from edgelearn.hls.hls4ml_export import KNOWN_WARNINGS, _known_warnings_ignored

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with _known_warnings_ignored():
            for category, message in KNOWN_WARNINGS:
                warnings.warn(message + " (details)", category)
            warnings.warn("something else", UserWarning)
        warnings.warn(KNOWN_WARNINGS[0][1], KNOWN_WARNINGS[0][0])  # outside the block: shown again
    assert [str(w.message) for w in seen] == ["something else", KNOWN_WARNINGS[0][1]]


# -------------------------------------------------------------------------------------- info and supported back ends
INFO_NAMES = ["digits-mlp", "lenet", "experiments/ssa-table1-smallconv-cifar100", "experiments/drtp-table2-fc1-500"]


def _row(text: str, name: str) -> str:
    rows = [line for line in text.splitlines() if f" {name} " in line]
    assert len(rows) == 1, (name, text)
    return rows[0]


def test_info_shows_whole_names_and_the_back_ends(capsys, monkeypatch):
    import edgelearn.network as network

    monkeypatch.setenv("COLUMNS", "80")  # what a pipe or CI log gets
    monkeypatch.setattr(network, "config_names", lambda: INFO_NAMES)
    assert main(["info"]) == 0
    text = capsys.readouterr().out
    for name in INFO_NAMES:
        _row(text, name)  # the whole name, on one line
    assert "torch engine hls rtl" in _row(text, "digits-mlp")
    for name in INFO_NAMES[1:]:  # conv layers, dropout: the float reference only
        assert _row(text, name).split("│")[2].split() == ["torch"], _row(text, name)


def test_supported_backends_reports_each_back_ends_own_refusal():
    from edgelearn.network import default_network, load_network
    from edgelearn.support import BACKENDS, supported_backends

    spec = default_network()
    assert supported_backends(spec) == dict.fromkeys(BACKENDS)
    fa = supported_backends(spec.with_rule("fa"))
    assert fa["torch"] is None and fa["engine"] is None
    assert "not implemented by the HLS learning kernel" in fa["hls"] and "no generated datapath" in fa["rtl"]
    lenet = supported_backends(load_network("lenet"))
    # the engine learns conv kernels with drtp / dfa / sdfa only: lenet trains its kernels with bp
    assert lenet["torch"] is None and "learns conv kernels with drtp, dfa, sdfa" in lenet["engine"] and \
        "not 'bp'" in lenet["engine"]
    assert lenet["hls"] and lenet["rtl"]
    assert "classification" in supported_backends(load_network("drtp-regression"))["engine"]
    out_shallow = supported_backends(spec.with_rule(None, {"out": "shallow"}))
    assert "is the output layer" in out_shallow["torch"]


@pytest.mark.parametrize("argv, backend", [
    (["rtl", "-r", "fa"], "rtl"),
    (["export-hls", "--no-hls4ml", "-r", "fa"], "hls"),
    (["simulate", "-q", "-c", "lenet"], "engine"),
])
def test_supported_backends_says_what_the_command_says(capsys, tmp_path, argv, backend):
    from edgelearn.network import default_network, load_network
    from edgelearn.support import supported_backends

    spec = load_network("lenet") if "lenet" in argv else default_network().with_rule("fa")
    refusal = supported_backends(spec)[backend]
    cli_one_line_error(capsys, [*argv, "--out", str(tmp_path / "out")], refusal)


def test_info_config_lists_the_back_ends_with_the_refusals(capsys):
    assert main(["info", "-c", "lenet"]) == 0
    text = " ".join(capsys.readouterr().out.split())  # rich wraps long lines
    assert "float reference: train yes" in text
    assert "fixed-point engine: simulate no: layer conv1: the fixed-point engine learns conv kernels with" in text
    assert "Verilog datapath: rtl no:" in text
