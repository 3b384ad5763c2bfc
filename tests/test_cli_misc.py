"""Smaller user-facing behaviours of the CLI: what train prints after 0 epochs, data errors before any work, the
--data-dir spelling of every command, rtl's summary line, quiet third-party exports, and ``edgelearn info``'s
back-end column (edgelearn.support)."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import cli_one_line_error
from test_download import serve_mnist, server  # noqa: F401  (server: the loopback HTTP fixture)

from edgelearn.cli import main
from edgelearn.network import EMBEDDED_DIR


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


@pytest.mark.parametrize("opt", [["--reuse-factor", "4"], ["--strategy", "Resource"]])
def test_export_hls_refuses_hls4ml_options_without_hls4ml(capsys, tmp_path, opt):
    out = tmp_path / "prj"
    cli_one_line_error(capsys, ["export-hls", "--no-hls4ml", *opt, "--out", str(out)],
                       "--strategy and --reuse-factor set the hls4ml project, which --no-hls4ml leaves out")
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


# ------------------------------------------------------------------- user's mistakes: one line, exit 2, nothing written
DIGITS = (EMBEDDED_DIR / "digits-mlp.yaml").read_text()


def _config(tmp_path, text: str | bytes):
    path = tmp_path / "net.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(path)


@pytest.mark.parametrize("text, match", [
    (b"\x00\xff\xfe\x89PNG", "not a YAML file (not UTF-8 text)"),
    (DIGITS.replace("epochs: 15", "epochs: many"), "train.epochs must be an integer >= 0, got 'many'"),
    (DIGITS.replace("batch_size: 32", "batch_size: -3"), "train.batch_size must be an integer >= 1, got -3"),
    (DIGITS.replace("bp: 1.0e-3", "bp: fast"), "train.lr.bp must be a positive number, got 'fast'"),
])
def test_a_bad_config_file_is_named_before_any_work(capsys, tmp_path, text, match):
    out = tmp_path / "run"
    cli_one_line_error(capsys, ["train", "-c", _config(tmp_path, text), "-r", "bp", "-q", "--out", str(out)], match)
    assert _files(out) == []


def test_a_config_word_length_out_of_range_names_the_config_not_bits(capsys, tmp_path):
    out = tmp_path / "sim"
    path = _config(tmp_path, DIGITS + "precision: {bits: 99}\n")
    cli_one_line_error(capsys, ["simulate", "-c", path, "-q", "--out", str(out)],
                       f"{path}: precision bits 99 out of range")
    assert "--bits" not in capsys.readouterr().err and _files(out) == []


@pytest.mark.parametrize("cmd", [["train", "-q"], ["simulate", "-q"], ["rtl"]])
@pytest.mark.parametrize("item, match", [
    ("nolayer=bp", "--layer-rule nolayer=bp: 'nolayer' is not a trainable layer of digits-mlp (layers: fc1, out)"),
    ("fc1=nosuch", "--layer-rule fc1=nosuch: unknown rule 'nosuch'"),
    ("7=bp", "--layer-rule 7=bp: '7' is not a trainable layer of digits-mlp"),
    ("=bp", "--layer-rule expects NAME=RULE, got '=bp'"),
])
def test_layer_rule_errors_name_the_option(capsys, tmp_path, cmd, item, match):
    out = tmp_path / "out"
    cli_one_line_error(capsys, [*cmd, "--layer-rule", item, "--out", str(out)], match)
    assert _files(out) == []


@pytest.mark.parametrize("cmd", [["train", "-q"], ["simulate", "-q"], ["rtl"], ["export-hls", "--no-hls4ml"]])
def test_an_empty_out_is_refused_not_the_working_directory(capsys, tmp_path, monkeypatch, cmd):
    monkeypatch.chdir(tmp_path)
    cli_one_line_error(capsys, [*cmd, "--out", ""], "--out: empty path; name a folder")
    assert _files(tmp_path) == []


@pytest.mark.parametrize("top", ["module", "logic", "el_softmax", "el_feedback", "el_resize", "el_fb_step"])
def test_rtl_top_must_not_be_a_verilog_keyword_or_a_hardware_module(capsys, tmp_path, top):
    out = tmp_path / "rtl"
    cli_one_line_error(capsys, ["rtl", "--top", top, "--out", str(out)], f"--top {top!r} is not a usable Verilog")
    assert _files(out) == []


def test_too_many_check_or_testbench_samples_name_their_option(capsys, tmp_path):
    out = tmp_path / "out"
    cli_one_line_error(capsys, ["rtl", "--check", "icarus", "--check-samples", "5000", "--out", str(out)],
                       "--check-samples 5000: dataset digits has 1437 training samples")
    cli_one_line_error(capsys, ["export-hls", "--no-hls4ml", "--tb-samples", "5000", "--out", str(out)],
                       "--tb-samples 5000: the digits test set has 360 samples")
    assert _files(out) == []


@pytest.mark.parametrize("opt, value", [("--clock-period", "0"), ("--clock-period", "-5"), ("--clock-period", "nan"),
                                        ("--qat-lr", "-1")])
def test_export_hls_needs_positive_numbers(capsys, tmp_path, opt, value):
    out = tmp_path / "prj"
    with pytest.raises(SystemExit) as exc:
        main(["export-hls", "--no-hls4ml", opt, value, "--out", str(out)])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and f"argument {opt}: expected a positive number, got '{value}'" in err, err
    assert _files(out) == []


@pytest.mark.parametrize("argv, match", [
    (["--rounding", "FOO"], "--rounding FOO: unknown rounding mode 'FOO'"),
    (["--lr-shift", "99"], "--lr-shift must be an integer in -16..62, got 99"),
])
def test_engine_options_name_themselves(capsys, tmp_path, argv, match):
    out = tmp_path / "sim"
    cli_one_line_error(capsys, ["simulate", "-q", *argv, "--out", str(out)], match)
    assert _files(out) == []


@pytest.mark.parametrize("param, option", [("n_train=-3", "--n-train"), ("seed=3", "--seed")])
def test_data_info_param_refuses_what_an_option_sets(capsys, param, option):
    cli_one_line_error(capsys, ["data", "info", "synthetic", "-p", param],
                       f"--param '{param}': {param.split('=')[0]} is set with {option}, not --param")


def test_report_area_file_that_is_not_text(capsys, tmp_path):
    area = tmp_path / "area.json"
    area.write_bytes(b"\x00\xff\xfe")
    out = tmp_path / "rep"
    cli_one_line_error(capsys, ["report", "--area", str(area), "--out", str(out)], "not JSON")
    assert _files(out) == []


@pytest.mark.parametrize("base, match", [("notaurl", "base URL 'notaurl' must start with"),
                                         ("http://127.0.0.1:1/", "cannot download http://127.0.0.1:1/")])
def test_a_failed_download_leaves_no_folder(capsys, tmp_path, base, match):
    dest = tmp_path / "data" / "mnist"
    cli_one_line_error(capsys, ["data", "download", "mnist", "--data-dir", str(dest), "--base-url", base,
                                "--no-progress"], match)
    assert _files(tmp_path) == []


# ------------------------------------------------------------------------------------------------- Ctrl-C in report
def test_pool_workers_start_with_ctrl_c_ignored():
    """report's pool workers inherit an ignored SIGINT: Ctrl-C reaches the parent alone (one line, no worker
    tracebacks), which then stops them (_stop_pool)."""
    import signal
    import subprocess
    import sys

    from edgelearn.report.sweep import _sigint_ignored

    probe = [sys.executable, "-c", "import signal; print(signal.getsignal(signal.SIGINT) == signal.SIG_IGN)"]
    # a known start: a job started in the background (CI's, nohup's) may inherit an ignored SIGINT already
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with _sigint_ignored():
            inside = subprocess.run(probe, capture_output=True, text=True, check=True).stdout
        assert inside.strip() == "True", inside
        assert subprocess.run(probe, capture_output=True, text=True, check=True).stdout.strip() == "False"
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, before)


def test_stop_pool_ends_running_and_queued_runs():
    import multiprocessing
    import time
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    from edgelearn.report.sweep import _stop_pool

    pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
    futs = [pool.submit(time.sleep, 60) for _ in range(3)]
    workers = list(pool._processes.values())
    t0 = time.perf_counter()
    _stop_pool(pool)
    assert time.perf_counter() - t0 < 30
    assert all(not w.is_alive() for w in workers)
    while not all(f.done() for f in futs) and time.perf_counter() - t0 < 30:  # the executor's thread settles them
        time.sleep(0.05)
    assert all(f.cancelled() or isinstance(f.exception(), BrokenProcessPool) for f in futs), futs  # none runs


def test_a_layer_rule_counted_from_the_end_needs_no_equals_sign():
    """``--layer-rule -1=bp`` (a layer index from the end): argparse alone takes '-1=bp' for an option."""
    from edgelearn.cli import _join_dash_values, build_parser

    argv = ["simulate", "--layer-rule", "-1=bp", "--layer-rule", "fc1=dfa", "--seed", "-3"]
    assert _join_dash_values(argv) == ["simulate", "--layer-rule=-1=bp", "--layer-rule", "fc1=dfa", "--seed", "-3"]
    assert build_parser().parse_args(_join_dash_values(argv[:5])).layer_rule == ["-1=bp", "fc1=dfa"]
