"""Float-vs-fixed reports: resumable sweep, rendering from saved results, missing runs, CLI."""
import json

import pytest

from edgelearn.cli import main
from edgelearn.network import EMBEDDED_DIR
from edgelearn.report import SweepConfig, render, sweep
from edgelearn.report.sweep import RUNS_DIR


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
    (runs / "fixed-drtp-8b-preset-s1.json").write_text('{"key": {"kind": "fi')
    (runs / "fixed-sdfa-6b-preset-s0.json").unlink()
    again = sweep(cfg, tmp_path, jobs=1, progress=False)
    assert sorted(again) == ["fixed-drtp-8b-preset-s1", "fixed-sdfa-6b-preset-s0"]
    data = json.loads((runs / "fixed-drtp-8b-preset-s1.json").read_text())
    assert data["complete"] and 0 <= data["test_accuracy"] <= 1 and len(data["curve"]) == 1


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


def test_bad_bits_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["report", "--bits", "1,8", "--out", "x"])
    assert exc.value.code == 2
    assert "between 2 and 32" in capsys.readouterr().err
