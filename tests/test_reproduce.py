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
    # test error below chance (90 % for 10 classes) by a margin: the rows come from runs that learned
    assert all(r["ours"] < 80 for r in rows), rows
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
    # the loss goes down: the second epoch ends below the first (test) and trains 10 % lower
    assert m["final"]["test_loss"] < m["epochs"][0]["test_loss"]
    assert m["epochs"][1]["train_loss"] < 0.9 * m["epochs"][0]["train_loss"]


def test_ldfa_rank_runs_the_papers_settings_at_every_rank(tmp_path, monkeypatch):
    # the plumbing of the Fig. 3b reproduction, with train() replaced: which specs it trains and how rows are formed
    seen = []

    def fake_train(spec, rule, **kw):
        seen.append((spec, rule, kw["epochs"], kw["seed"], kw["out"].name))
        rank = spec.rule_params.get("rank") if rule == "ldfa" else 64
        return {"test_accuracy": [0.2, 0.40 if rule == "bp" else 0.40 - (64 - rank) / 1000]}

    monkeypatch.setattr(rep, "train", fake_train)
    rows = rep.ldfa_rank(tmp_path, data_dir=tmp_path, progress=False)
    assert [(s.variant, r, s.rule_params.get("rank") if r == "ldfa" else None, d) for s, r, _, _, d in seen] == [
        ("bp", "bp", None, "ldfa-bp"), ("bp", "dfa", None, "ldfa-dfa"), ("bp", "kp", None, "ldfa-kp"),
        ("r32", "ldfa", 32, "ldfa-r32"), ("r10", "ldfa", 10, "ldfa-r10"), ("r4", "ldfa", 4, "ldfa-r4")]
    for spec, _, epochs, _, _ in seen:  # the paper's optimiser (App. C), its layer init, 8 epochs unless --full
        assert epochs == 8
        assert spec.train["lr"] == 6e-4 and spec.train["batch_size"] == 32 and spec.train["amsgrad"] is True
        assert spec.train["init"] == "torch"
    assert rows[0]["ours"] == pytest.approx(40.0)
    assert rows[4]["setting"] == "ldfa r=10" and rows[4]["gap"] == pytest.approx(-5.4)
    assert rows[5]["paper"] is None and rows[5]["gap"] is None
    assert [r["setting"] for r in rows] == ["bp", "dfa", "kp", "ldfa r=32", "ldfa r=10", "ldfa r=4"]
    assert rows[1]["paper"] is None and rows[1]["ours"] == pytest.approx(0.0)
    seen.clear()
    rows = rep.ldfa_rank(tmp_path, full=True, data_dir=tmp_path, progress=False, seeds=2)
    assert {s[2] for s in seen} == {160} and len(seen) == 12
    # seeds outermost, seed 0 keeps the historical folder names, the others get a suffix
    assert [(s[3], s[4]) for s in seen[5:7]] == [(0, "ldfa-r4"), (1, "ldfa-bp-s1")]
    assert rows[0]["seeds"] == 2 and rows[0]["std"] == pytest.approx(0.0)


def test_seeds_give_mean_and_std_and_the_paper_protocol(tmp_path, monkeypatch):
    # the DRTP paper's protocol: the test error of a full run is the mean over its last 10 epochs
    def fake_train(spec, rule, **kw):
        final = 0.9 + 0.01 * kw["seed"]  # seed s ends at (90 + s) % accuracy
        return {"test_accuracy": [0.5] * 90 + [final] * 10}

    monkeypatch.setattr(rep, "train", fake_train)
    rows = rep._rules_table("drtp-synthetic", {"bp": 8.5}, 100, tmp_path, None, progress=False, seeds=3,
                            paper_std={"bp": 0.1})
    (row,) = rows
    assert row["values"] == pytest.approx([10.0, 9.0, 8.0])
    assert row["ours"] == pytest.approx(9.0) and row["std"] == pytest.approx(1.0) and row["gap"] == pytest.approx(0.5)
    assert "| 8.50 ± 0.10 | 9.00 ± 1.00 | 0.50 | 3 | 100 |" in rep.table(rows)
    # a short run reports its final epoch: a mean would fold its first epochs in
    assert rep._error({"test_accuracy": [0.5, 0.8]}) == pytest.approx(20.0)
    assert rep._error({"test_accuracy": [0.5] * 50 + [0.9] * 10}) == pytest.approx(10.0)


def test_seeds_below_one_is_a_clear_error(capsys):
    assert main(["reproduce", "drtp-synthetic", "--seeds", "0"]) == 2
    assert "--seeds must be at least 1" in capsys.readouterr().err


def test_ldfa_models_use_pytorch_default_init():
    # "Kaiming uniform" as PyTorch's layers draw it: bound 1/sqrt(fan_in), not He's sqrt(6/fan_in)
    import math

    from edgelearn.network import load_network
    from edgelearn.torch_ref import build_model

    model = build_model(load_network("ldfa-mlp-4x512"), seed=0)
    w = model.fc1.weight.detach()
    assert float(w.abs().max()) <= 1 / math.sqrt(w.shape[1]) + 1e-7
    assert float(w.abs().max()) > 0.9 / math.sqrt(w.shape[1])


def test_finished_only_tabulates_finished_runs_and_trains_nothing(tmp_path, monkeypatch, capsys):
    # a long sweep's partial table: seed 0 of bp finished, seed 1 half-way, drtp not started
    import json

    def no_train(*a, **kw):
        raise AssertionError("finished_only must not train")

    monkeypatch.setattr(rep, "train", no_train)
    (tmp_path / "drtp-synthetic-bp").mkdir()
    (tmp_path / "drtp-synthetic-bp" / "metrics.json").write_text(json.dumps({"test_accuracy": [0.5] * 4 + [0.9]}))
    (tmp_path / "drtp-synthetic-bp-s1").mkdir()
    (tmp_path / "drtp-synthetic-bp-s1" / "metrics.json").write_text(json.dumps({"test_accuracy": [0.5] * 3}))
    (tmp_path / "drtp-synthetic-fa-s1").mkdir()  # fa: only seed 1 finished
    (tmp_path / "drtp-synthetic-fa-s1" / "metrics.json").write_text(json.dumps({"test_accuracy": [0.5] * 4 + [0.75]}))
    rows = rep.reproduce("drtp-synthetic", tmp_path, seeds=2, finished_only=True)
    assert [(r["setting"], r["seeds"], r["seed_ids"]) for r in rows] == [("bp", 1, [0]), ("fa", 1, [1])]
    assert rows[0]["ours"] == pytest.approx(10.0)
    # the table keeps each seed's value beside the mean, so a later table over more seeds can be built from it
    assert rep.table(rows).splitlines()[-1].endswith("| s1 25 |")
    assert main(["reproduce", "drtp-synthetic", "--seeds", "2", "--finished-only", "-o", str(tmp_path)]) == 0
    assert (tmp_path / "drtp-synthetic-finished.md").is_file() and not (tmp_path / "drtp-synthetic.md").exists()
    capsys.readouterr()
    assert main(["reproduce", "drtp-regression", "--finished-only", "-o", str(tmp_path)]) == 2
    assert "no finished run of drtp-regression" in capsys.readouterr().err


def test_conv_random_runs_its_rules_in_order_at_its_full_length(tmp_path, monkeypatch):
    """drtp-table1-conv-random: the paper's CONV (random) values, drtp / dfa / bp in that order, 20 epochs with
    --full, every run from conv-mnist-random (conv1 frozen)."""
    calls = []

    def fake_train(spec, rule, **kw):
        calls.append((spec.name, rule, kw["epochs"]))
        return {"test_accuracy": [0.98]}

    monkeypatch.setattr(rep, "train", fake_train)
    rows = rep.EXPERIMENTS["drtp-table1-conv-random"].run(tmp_path, full=True, data_dir=tmp_path, progress=False)
    assert calls == [("conv-mnist-random", r, 20) for r in ("drtp", "dfa", "bp")]
    assert [(r["setting"], r["paper"], r["paper_std"]) for r in rows] == [
        ("drtp", 1.82, 0.11), ("dfa", 1.25, 0.08), ("bp", 1.21, 0.05)]
