"""``edgelearn report --area FILE``: the accuracy-vs-area table and plot from an area file, kept for later renders;
a malformed area file is one line and nothing written. Hand-built run files: no training, no synthesis."""
import json

import pytest

from edgelearn.cli import main
from edgelearn.report import render
from edgelearn.report.area import AREA_FILE, AREA_FORMAT, AREA_VERSION
from edgelearn.report.sweep import PLAN_FILE, RUNS_DIR

ACC = {("drtp", 4): (0.80, 0.84), ("drtp", 8): (0.93, 0.95), ("dfa", 4): (0.85, 0.87), ("dfa", 8): (0.96, 0.97),
       ("bp", 8): (0.97, 0.975)}


def _sweep_files(out):
    """A finished sweep's plan and fixed-point run files, two seeds, written by hand."""
    names = []
    (out / RUNS_DIR).mkdir(parents=True)
    for (rule, bits), accs in ACC.items():
        for seed, acc in enumerate(accs):
            key = {"kind": "fixed", "rule": rule, "seed": seed, "bits": bits, "rounding": "preset"}
            name = f"fixed-{rule}-{bits}b-preset-s{seed}"
            names.append(name)
            (out / RUNS_DIR / f"{name}.json").write_text(json.dumps(
                {"key": key, "test_accuracy": acc, "float_test_accuracy": acc + 0.01, "complete": True}))
    cfg = {"config": "fc1-500", "rules": ["drtp", "dfa", "bp"], "bits": [4, 8], "roundings": ["preset"], "seeds": 2,
           "epochs": 1}
    (out / PLAN_FILE).write_text(json.dumps({"config": cfg, "runs": names}))


def _area(rows, **kw):
    return {"format": AREA_FORMAT, "version": AREA_VERSION, "network": "fc1-500", "parallel": 16, **kw, "rows": rows}


def test_area_table_plot_and_rerender(tmp_path):
    out = tmp_path / "rep"
    _sweep_files(out)
    area = tmp_path / "area.json"
    area.write_text(json.dumps(_area([
        {"rule": "drtp", "bits": 4, "LUT": 3000, "FF": 1500, "DSP": 28, "BRAM": 27},
        {"rule": "drtp", "bits": 8, "LUT": 7404, "FF": 3591, "DSP": 28, "BRAM": 27.5},
        {"rule": "*", "bits": 8, "LUT": 7000, "FF": 3500},   # every rule without a row of its own
        {"rule": "drtp", "bits": 6, "LUT": 5000},            # no accuracy at 6 bits: not in the table
        {"rule": "drtp", "bits": 8, "rounding": "RND", "LUT": 5800},  # another rounding than the report's
    ])))
    info = render(out, area=area)
    md = (out / "report.md").read_text()
    table = [line for line in md.split("## Accuracy vs area")[1].splitlines() if line.startswith("| ")]
    assert table == ["| rule | bits | rounding | LUT | FF | DSP | BRAM | fixed point |",
                     "| drtp | 4 | preset | 3,000 | 1,500 | 28 | 27 | 82.00 ± 2.83 |",
                     "| drtp | 8 | preset | 7,404 | 3,591 | 28 | 27.5 | 94.00 ± 1.41 |",
                     "| dfa | 8 | preset | 7,000 | 3,500 | – | – | 96.50 ± 0.71 |",
                     "| bp | 8 | preset | 7,000 | 3,500 | – | – | 97.25 ± 0.35 |"]
    assert "No area for" not in md
    assert [(r["rule"], r["bits"], r["LUT"], r["area_rule"]) for r in info["area_rows"]] == [
        ("drtp", 4, 3000, "drtp"), ("drtp", 8, 7404, "drtp"), ("dfa", 8, 7000, "*"), ("bp", 8, 7000, "*")]
    assert "accuracy_vs_area.png" in info["plots"] and (out / "accuracy_vs_area.png").stat().st_size > 1000
    # the area file is kept: a later render without --area draws the same table
    assert json.loads((out / AREA_FILE).read_text())["rows"][1]["LUT"] == 7404
    (out / "accuracy_vs_area.png").unlink()
    assert main(["report", "--out", str(out), "--render-only"]) == 0
    assert (out / "report.md").read_text() == md and (out / "accuracy_vs_area.png").exists()
    # rules the area file does not cover are named
    area.write_text(json.dumps(_area([{"rule": "drtp", "bits": 8, "LUT": 7404}])))
    render(out, area=area)
    assert "No area for: dfa, bp" in (out / "report.md").read_text()


@pytest.mark.parametrize("content, message", [
    (None, "cannot read the area file"),
    ("bits,LUT\n8,7000\n", "not JSON"),
    (json.dumps({"rows": [{"bits": 8, "LUT": 1}]}), "not an area file"),
    (json.dumps(_area([])), "non-empty \"rows\""),
    (json.dumps(_area([{"bits": 8, "LUT": -3}])), "row 0: \"LUT\" must be a non-negative number"),
    (json.dumps(_area([{"bits": 8}])), "row 0: \"LUT\" must be"),
    (json.dumps(_area([{"bits": "8", "LUT": 1}])), "row 0: \"bits\" must be a positive integer"),
    (json.dumps(_area([{"bits": 8, "LUT": 1}, {"rule": "*", "bits": 8, "LUT": 2}])), "row 1: a second row"),
])
def test_a_bad_area_file_is_one_line_and_writes_nothing(content, message, tmp_path, capsys):
    area = tmp_path / "area.json"
    if content is not None:
        area.write_text(content)
    out = tmp_path / "never"
    assert main(["report", "--rules", "drtp", "--bits", "8", "--seeds", "1", "--out", str(out), "--quiet",
                 "--area", str(area)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("edgelearn report: error:") and message in err and len(err.splitlines()) == 1
    assert not out.exists()
