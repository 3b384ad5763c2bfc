"""`edgelearn reproduce`: listing, errors, and one short reproduction end to end on a tiny budget."""
import pytest

from edgelearn.cli import main
from edgelearn.report import reproduce as rep


def test_list_and_unknown(capsys):
    assert main(["reproduce", "--list"]) == 0
    out = capsys.readouterr().out
    assert "drtp-table1" in out and "ldfa-rank" in out
    assert main(["reproduce", "nope"]) == 2
    assert "unknown experiment 'nope'" in capsys.readouterr().err


def test_rules_table_rows_have_paper_ours_gap(tmp_path):
    # the synthetic experiment on a small slice of its data, one epoch: the machinery, not the accuracy
    rows = rep._rules_table("drtp-synthetic", {"bp": 1.85, "drtp": None}, 1, tmp_path, None, n_train=500, n_test=200,
                            progress=False)
    assert [r["setting"] for r in rows] == ["bp", "drtp"]
    assert rows[0]["gap"] == pytest.approx(rows[0]["ours"] - 1.85)
    assert rows[1]["paper"] is None and rows[1]["gap"] is None
    assert 0 <= rows[0]["ours"] <= 100
    text = rep.table(rows)
    assert "| drtp-synthetic | bp | test error (%) | 1.85 |" in text


def test_regression_config_sdfa_signal_within_90_degrees_of_bp():
    # DRTP Fig. 2's claim on its cosine regression: the error-sign feedback stays within 90 degrees of BP's signal
    from edgelearn.network import load_network
    from edgelearn.train import train

    spec = load_network("drtp-regression")
    assert spec.task == "regression" and spec.mlp_sizes() == [256, 100, 100, 10]
    m = train(spec, "sdfa", epochs=2, n_train=1000, n_test=200, progress=False, probe=True, device="cpu")
    angles = [layer["angle_to_bp"] for layer in m["epochs"][-1]["layers"]]
    assert len(angles) == 2 and all(0 < a < 90 for a in angles), angles
    assert m["final"]["test_loss"] < m["epochs"][0]["test_loss"] * 1.5
