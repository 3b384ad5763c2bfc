"""Float-vs-fixed reports: resumable sweep, rendering from saved results, missing runs, CLI."""
import json

import pytest

from edgelearn.cli import main
from edgelearn.errors import DataError, FormatError, RuleError
from edgelearn.network import EMBEDDED_DIR
from edgelearn.report import SweepConfig, render, sweep
from edgelearn.report.sweep import PLAN_FILE, RUNS_DIR
from edgelearn.word_length import MAX_BITS, MIN_BITS


def tiny(**kw):
    base = dict(config=str(EMBEDDED_DIR / "digits-mlp.yaml"), rules=["drtp", "sdfa"], bits=[6, 8], roundings=["preset"],
                seeds=2, epochs=1, n_train=150, n_test=100, float_reference=False)
    base.update(kw)
    return SweepConfig(**base)


def test_sweep_resumes_without_recomputing(tmp_path):
    cfg = tiny()
    first = sweep(cfg, tmp_path, jobs=1, progress=False)
    assert sorted(first) == sorted(k.name for k in cfg.keys()) and len(first) == 8
    assert sweep(cfg, tmp_path, jobs=1, progress=False) == []  # nothing left to do
    # an interrupted run: its file truncated mid-write (and another simply absent)
    runs = tmp_path / RUNS_DIR
    whole = json.loads((runs / "fixed-drtp-8b-preset-s1.json").read_text())
    (runs / "fixed-drtp-8b-preset-s1.json").write_text('{"key": {"kind": "fi')
    (runs / "fixed-sdfa-6b-preset-s0.json").unlink()
    again = sweep(cfg, tmp_path, jobs=1, progress=False)
    assert sorted(again) == ["fixed-drtp-8b-preset-s1", "fixed-sdfa-6b-preset-s0"]
    data = json.loads((runs / "fixed-drtp-8b-preset-s1.json").read_text())
    assert data["complete"] and len(data["curve"]) == 1
    # the recomputed run is the uninterrupted one (same seed, same bits), and it learned: 10 classes, chance 0.1
    assert data["test_accuracy"] == whole["test_accuracy"] and data["curve"] == whole["curve"]
    assert data["test_accuracy"] > 0.15


def test_same_seed_same_result(tmp_path):
    cfg = tiny(rules=["drtp"], bits=[8], seeds=1)
    sweep(cfg, tmp_path / "a", jobs=1, progress=False)
    sweep(cfg, tmp_path / "b", jobs=1, progress=False)
    a = json.loads((tmp_path / "a" / RUNS_DIR / "fixed-drtp-8b-preset-s0.json").read_text())
    b = json.loads((tmp_path / "b" / RUNS_DIR / "fixed-drtp-8b-preset-s0.json").read_text())
    assert a["curve"] == b["curve"] and a["counters"] == b["counters"]


def test_render_lists_missing_runs_instead_of_crashing(tmp_path):
    cfg = tiny(epochs=2, float_reference=True, rules=["drtp"], seeds=2)
    sweep(cfg, tmp_path, jobs=2, progress=False)
    (tmp_path / RUNS_DIR / "fixed-drtp-6b-preset-s1.json").write_text("not json")
    (tmp_path / RUNS_DIR / "float-drtp-s0.json").unlink()
    info = render(tmp_path)
    assert sorted(info["missing"]) == ["fixed-drtp-6b-preset-s1", "float-drtp-s0"]
    md = (tmp_path / "report.md").read_text()
    assert "## Missing runs" in md and "`fixed-drtp-6b-preset-s1`" in md
    row6 = next(r for r in info["rows"] if r["bits"] == 6)
    assert row6["seeds"] == 1  # the unreadable seed is left out of the mean
    for png in ("accuracy_vs_bits.png", "learning_curves.png", "alignment.png", "counters_vs_bits.png"):
        assert (tmp_path / png).stat().st_size > 1000
    assert "<table>" in (tmp_path / "report.html").read_text()
    csv_lines = (tmp_path / "results.csv").read_text().splitlines()
    assert len(csv_lines) == 1 + len(info["rows"])


def test_cli_report_and_render_only(tmp_path, capsys):
    out = tmp_path / "r"
    argv = ["report", "--rules", "drtp", "--bits", "8", "--seeds", "1", "--n-train", "100", "--n-test", "50",
            "--no-float-reference", "--jobs", "1", "--quiet", "--out", str(out)]
    assert main(argv) == 0
    assert "ran 1 run(s)" in capsys.readouterr().out
    (out / "report.md").unlink()
    assert main(["report", "--out", str(out), "--render-only"]) == 0
    assert (out / "report.md").exists()
    assert main(argv) == 0 and "ran 0 run(s)" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["report", "--rules", "magic", "--out", "x"], "unknown rule 'magic'"),
    (["report", "--rounding", "ROUNDISH", "--out", "x"], "unknown rounding mode"),
    (["report", "--render-only", "--out", "/nonexistent/dir"], "no readable plan.json"),
])
def test_cli_errors(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_bad_bits_is_a_usage_error(capsys, tmp_path):
    out = tmp_path / "r"
    for bits in (f"{MIN_BITS - 1},8", f"8,{MAX_BITS + 1}"):
        with pytest.raises(SystemExit) as exc:
            main(["report", "--bits", bits, "--out", str(out)])
        assert exc.value.code == 2
        assert f"between {MIN_BITS} and {MAX_BITS}" in capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(SystemExit):
        main(["report", "--help"])
    assert f"{MIN_BITS}..{MAX_BITS}" in capsys.readouterr().out


def test_a_refused_sweep_writes_nothing_and_the_corrected_one_runs(tmp_path, capsys):
    out = tmp_path / "r"
    base = ["report", "--seeds", "1", "--n-train", "60", "--n-test", "30", "--jobs", "1", "--quiet", "--out", str(out)]
    refused = [
        # kp has no fixed-point engine: refused before its float reference trains
        (["--rules", "drtp,kp", "--bits", "8"], "rule 'kp' (layer fc1) is not supported by the fixed-point engine"),
        (["--rules", "drtp", "--bits", "8", "--dataset", "mnist", "--data-dir", str(tmp_path / "nowhere")],
         "does not exist"),
        (["--rules", "drtp", "--bits", "8", "--dataset", "synthetic"], "has input shape [256]"),
    ]
    for extra, message in refused:
        assert main(base + extra) == 2, extra
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
        assert not out.exists(), extra
    corrected = base + ["--rules", "drtp", "--bits", "8", "--no-float-reference"]
    assert main(corrected) == 0
    assert "ran 1 run(s)" in capsys.readouterr().out
    # a refused sweep into a finished one leaves its plan as it was
    plan = (out / PLAN_FILE).read_bytes()
    assert main(base + ["--rules", "drtp", "--bits", "8"]) == 2  # now with the float reference
    assert "other settings" in capsys.readouterr().err
    assert (out / PLAN_FILE).read_bytes() == plan
    assert main(corrected) == 0 and "ran 0 run(s)" in capsys.readouterr().out


@pytest.mark.parametrize("change, error", [
    (dict(rules=["drtp", "kp"]), RuleError),
    (dict(bits=[MIN_BITS - 1]), FormatError),
    (dict(dataset="mnist", data_dir="/nonexistent/mnist"), DataError),
])
def test_sweep_checks_every_run_before_writing(change, error, tmp_path):
    with pytest.raises(error):
        sweep(tiny(**change), tmp_path / "r", jobs=1, progress=False)
    assert not (tmp_path / "r").exists()
