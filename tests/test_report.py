"""Float-vs-fixed reports: resumable sweep, rendering from saved results, missing runs, CLI; the online-SGD float
reference, rates with their opportunities, input saturation apart, confidence intervals."""
import json
import math

import numpy as np
import pytest

from edgelearn.cli import main
from edgelearn.data import load_dataset
from edgelearn.errors import DataError, FormatError, RuleError
from edgelearn.fixed.engine import FixedEngine
from edgelearn.network import EMBEDDED_DIR, load_network, network_from_dict
from edgelearn.report import SweepConfig, render, sweep
from edgelearn.report.online import OnlineReference
from edgelearn.report.render import mean_ci, paired_gap, tensor_rates
from edgelearn.report.sweep import PLAN_FILE, RUNS_DIR, opportunities
from edgelearn.word_length import MAX_BITS, MIN_BITS

DIGITS = str(EMBEDDED_DIR / "digits-mlp.yaml")


def tiny(**kw):
    base = dict(config=DIGITS, rules=["drtp", "sdfa"], bits=[6, 8], roundings=["preset"],
                seeds=2, epochs=1, n_train=150, n_test=100, float_reference=False, online_reference=False)
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
    # the learning curve: before training and curve_points times per epoch, on the held-out curve samples
    assert len(data["curve_points"]) == len(data["twin_curve_points"]) == cfg.curve_points + 1
    assert data["curve_epochs"][0] == 0 and data["curve_epochs"][-1] == 1
    # the recomputed run is the uninterrupted one (same seed, same bits), and it learned: 10 classes, chance 0.1
    assert data["test_accuracy"] == whole["test_accuracy"] and data["curve"] == whole["curve"]
    assert data["test_accuracy"] > 0.15


def test_same_seed_same_result(tmp_path):
    cfg = tiny(rules=["drtp"], bits=[8], seeds=1)
    sweep(cfg, tmp_path / "a", jobs=1, progress=False)
    sweep(cfg, tmp_path / "b", jobs=1, progress=False)
    # more curve points: the epoch is trained in other chunks between the evaluations, the same bits
    sweep(tiny(rules=["drtp"], bits=[8], seeds=1, curve_points=7), tmp_path / "c", jobs=1, progress=False)
    a, b, c = (json.loads((tmp_path / d / RUNS_DIR / "fixed-drtp-8b-preset-s0.json").read_text()) for d in "abc")
    assert a["curve"] == b["curve"] and a["counters"] == b["counters"] and a["histograms"] == b["histograms"]
    assert a["curve"] == c["curve"] and a["counters"] == c["counters"] and len(c["curve_points"]) == 8


def test_render_lists_missing_runs_instead_of_crashing(tmp_path):
    cfg = tiny(float_reference=True, online_reference=True, rules=["drtp"], seeds=2,
               roundings=["STOCH", "RND"], n_train=100, n_test=60, curve_points=3)
    sweep(cfg, tmp_path, jobs=2, progress=False)
    (tmp_path / RUNS_DIR / "fixed-drtp-6b-STOCH-s1.json").write_text("not json")
    (tmp_path / RUNS_DIR / "float-drtp-s0.json").unlink()
    info = render(tmp_path)
    assert sorted(info["missing"]) == ["fixed-drtp-6b-STOCH-s1", "float-drtp-s0"]
    md = (tmp_path / "report.md").read_text()
    assert "## Missing runs" in md and "`fixed-drtp-6b-STOCH-s1`" in md
    row6 = next(r for r in info["rows"] if r["bits"] == 6 and r["rounding"] == "STOCH")
    assert row6["seeds"] == 1  # the unreadable seed is left out of the mean
    # the sections and the labelled references: the online algorithm, and the config's optimiser and batch
    for section in ("## Test accuracy", "## Gaps (points)", "95 % confidence interval", "Student's t",
                    "## Rounding of the updates, side by side", "| STOCH | RND | RND − STOCH |",
                    "## Overflow and rounded-to-zero rates", "input saturation", "float (online SGD)",
                    "float (Adam, batch 32)"):
        assert section in md, section
    row8 = next(r for r in info["rows"] if r["bits"] == 8 and r["rounding"] == "RND")
    assert row8["seeds"] == 2 and row8["gap_to_twin_ci_low"] <= row8["gap_to_twin_points"] <= row8["gap_to_twin_ci_high"]
    assert 0 <= row8["input_saturation_rate"] <= 1 and 0 <= row8["weight_zero_rate"] <= 1
    for png in ("error_vs_bits.png", "gaps_vs_bits.png", "rounding.png", "learning_curves.png", "alignment.png",
                "rates_vs_bits.png", "hist_6b.png", "hist_8b.png"):
        assert png in info["plots"] and (tmp_path / png).stat().st_size > 1000, png
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
        # ssa has no fixed-point engine: refused before its float reference trains
        (["--rules", "drtp,ssa", "--bits", "8"], "rule 'ssa' (layer fc1) is not supported by the fixed-point engine"),
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
    (dict(rules=["drtp", "ssa"]), RuleError),
    (dict(bits=[MIN_BITS - 1]), FormatError),
    (dict(dataset="mnist", data_dir="/nonexistent/mnist"), DataError),
])
def test_sweep_checks_every_run_before_writing(change, error, tmp_path):
    with pytest.raises(error):
        sweep(tiny(**change), tmp_path / "r", jobs=1, progress=False)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("rule", ["drtp", "dfa"])
def test_online_reference_takes_the_float_twins_step(rule):
    """torch_ref with plain SGD at the twin's scaled learning rates, from the twin's state: the twin's step."""
    spec = load_network(DIGITS).with_rule(rule)
    ds = load_dataset("digits", None, seed=0, n_train=2, n_test=2)
    twin = FixedEngine(spec, bits=16, seed=3, rule=rule).float_twin()
    ref = OnlineReference(spec, rule, twin)
    before = [w.copy() for w in twin.W]
    twin.step(ds.x_train[0].reshape(-1), int(ds.y_train[0]))
    ref.step(ds.x_train[0], int(ds.y_train[0]))
    for k, (mine, w, b) in enumerate(zip(ref.weights(), twin.W, twin.b)):
        assert not np.array_equal(before[k], w)  # the step moved every layer
        np.testing.assert_allclose(mine["W"], w, rtol=0, atol=1e-9)
        np.testing.assert_allclose(mine["b"], b, rtol=0, atol=1e-9)



def _fb_spec(rule):
    """A 8-6-5-5 tanh MLP under a rule whose feedback learns (rank 2; torch_ref's default decay left in place: the
    reference must set it to 0 itself, as the engine has none). Five classes: the SGD scale N C = 5 is no power of
    two, so the Oja source's normalisation does not hide a wrong scale."""
    layers = [{"type": "linear", "out": n, "act": "tanh", "name": f"fc{k + 1}"} for k, n in enumerate((6, 5))]
    layers.append({"type": "linear", "out": 5, "name": "out"})
    return network_from_dict({"name": "fb-online", "input_shape": [8], "num_classes": 5, "loss": "bce",
                              "rule": rule, "rule_params": {"rank": 2}, "layers": layers})


def _ref_feedback(ref, k):
    """The reference's feedback of layer k in the twin's layout (kp's B, or Q stacked over P), or None."""
    m = ref.sites[k].module
    if k in ref.factors:
        q, p = m.el_ldfa_q.detach().numpy().T, m.el_ldfa_p.detach().numpy()
        return q, p
    if ref.rule == "kp" and k > 0:
        return (m.el_feedback.detach().numpy().T,)
    return None


@pytest.mark.parametrize("rule", ["kp", "ldfa", "dldfa"])
def test_online_reference_of_learned_feedback_takes_the_twins_steps(rule):
    """W, b, kp's B and ldfa's / dldfa's Q by torch_ref's SGD step, P by the written online Oja step on the
    reference's own errors: after five samples every word equals the twin's (the engine's arithmetic in float)."""
    spec = _fb_spec(rule)
    twin = FixedEngine(spec, bits=16, seed=1, lr_shift=3).float_twin()
    ref = OnlineReference(spec, rule, twin)
    assert ref.sites[0].module.weight.shape == (6, 8)
    B0 = [b.copy() for b in twin.B]
    rng = np.random.default_rng(4)
    for _ in range(5):
        x = rng.uniform(-1, 1, 8)
        x[rng.random(8) < 0.25] = 0.0
        label = int(rng.integers(0, 5))
        twin.step(x, label)
        ref.step(x, label)
    learned = 0
    for k, (mine, w, b) in enumerate(zip(ref.weights(), twin.W, twin.b)):
        np.testing.assert_allclose(mine["W"], w, rtol=0, atol=1e-10)
        np.testing.assert_allclose(mine["b"], b, rtol=0, atol=1e-10)
        fb = _ref_feedback(ref, k)
        if fb is None:
            continue
        if len(fb) == 1:  # kp
            np.testing.assert_allclose(fb[0], twin.B[k], rtol=0, atol=1e-10)
        else:
            q, p = fb
            n, r = q.shape
            np.testing.assert_allclose(q, twin.B[k][:n, :r], rtol=0, atol=1e-10)
            np.testing.assert_allclose(p, twin.B[k][n:, :p.shape[1]], rtol=0, atol=1e-10)
            assert not np.array_equal(p, B0[k][n:, :p.shape[1]])  # P moved: the Oja step ran
        learned += not np.array_equal(B0[k], twin.B[k])
    assert learned == 2  # kp / ldfa: layers 1 and 2; dldfa: the hidden layers 0 and 1


def _hand_built(x_row, lr_shift):
    """A 4-3-2 tanh MLP at 8 bits (input format ufixed<8,0>), RND updates, five copies of one sample."""
    spec = network_from_dict({"name": "hand", "input_shape": [4], "num_classes": 2, "loss": "bce", "rule": "drtp",
                              "layers": [{"type": "linear", "out": 3, "act": "tanh", "name": "fc1"},
                                         {"type": "linear", "out": 2, "name": "out"}]})
    eng = FixedEngine(spec, bits=8, seed=0, lr_shift=lr_shift, rounding=[("weight", "RND"), ("bias", "RND")])
    return eng, np.tile(np.asarray(x_row, dtype=np.float64), (5, 1)), np.zeros(5, dtype=np.int64)


def test_rates_have_their_opportunities_and_input_saturation_is_not_an_overflow():
    # pixel 1.0 in ufixed<8,0> is stored as 255/256: saturation of the input quantizer
    eng, x, y = _hand_built([1.0, 1.0, 0.5, 0.0], lr_shift=20)
    assert eng.precision.layers[0].input.max_value == 255 / 256
    # every increment is far below the weights' half LSB: each non-zero one rounds to zero (RND), the weights stay
    nonzero = {"fc1": [0, 0], "out": [0, 0]}  # [weight increments, bias increments] that are not an exact 0
    X = eng.quantize_inputs(x)
    W0 = [w["W"] for w in eng.weights()]
    for i in range(len(X)):
        eng.step(X[i], int(y[i]))
        for k, name in enumerate(eng.layer_names):  # increment x_j d_i is non-zero iff both are
            nx, nd = np.count_nonzero(eng._acts[k]), np.count_nonzero(eng._ds[k])
            nonzero[name][0] += nx * nd
            nonzero[name][1] += nd
    assert all(np.array_equal(a, w["W"]) for a, w in zip(W0, eng.weights()))
    run = {"counters": eng.counters, "opportunities": opportunities(eng, len(X), len(X))}
    rates = tensor_rates([run])
    for t, r in rates.items():
        for field in ("overflow_rate", "zero_rate"):
            assert r[field] is None or 0 <= r[field] <= 1, (t, field)
    assert rates["input"]["overflow"] == 2 * 5 and rates["input"]["opportunities"] == 4 * 5
    assert rates["input"]["overflow_rate"] == 0.5
    assert nonzero["fc1"][0] + nonzero["out"][0] > 0
    assert rates["weight"]["zero"] == nonzero["fc1"][0] + nonzero["out"][0]
    assert rates["weight"]["zero_rate"] == rates["weight"]["zero"] / (5 * (4 * 3 + 3 * 2))
    assert rates["bias"]["zero_rate"] == (nonzero["fc1"][1] + nonzero["out"][1]) / (5 * (3 + 2))
    # the same raw inputs without saturation (255/256 is representable): the datapath's counters do not change
    other, x2, _ = _hand_built([255 / 256, 255 / 256, 0.5, 0.0], lr_shift=20)
    other.fit(x2, y, epochs=1, shuffle=False)
    eng2, _, _ = _hand_built([1.0, 1.0, 0.5, 0.0], lr_shift=20)
    eng2.fit(x, y, epochs=1, shuffle=False)
    c_sat, c_exact = eng2.counters, other.counters
    assert c_sat["fc1"]["input"]["overflow"] == 10 and c_exact["fc1"]["input"]["overflow"] == 0
    for layer in c_sat:
        assert {t: c for t, c in c_sat[layer].items() if t != "input"} == \
            {t: c for t, c in c_exact[layer].items() if t != "input"}
    assert tensor_rates([{"counters": c_exact, "opportunities": opportunities(other, 5, 5)}])["input"][
        "overflow_rate"] == 0


def test_confidence_interval_of_a_known_case():
    # n = 2: t(0.975, 1 dof) = 12.7062; std of (0, 2) = sqrt(2), so the half width is 12.7062 * sqrt(2) / sqrt(2)
    ci = mean_ci([0.0, 2.0])
    assert ci["mean"] == 1 and math.isclose(ci["std"], math.sqrt(2))
    assert math.isclose(ci["ci_high"] - 1, 12.7062, abs_tol=1e-4) and math.isclose(1 - ci["ci_low"], 12.7062,
                                                                                    abs_tol=1e-4)
    # n = 5: t(0.975, 4) = 2.7764; values 1..5: mean 3, std sqrt(2.5)
    ci = mean_ci([1.0, 2.0, 3.0, 4.0, 5.0])
    assert math.isclose(ci["ci_high"] - 3, 2.7764 * math.sqrt(2.5) / math.sqrt(5), rel_tol=1e-4)
    assert mean_ci([0.5])["ci_low"] is None  # no interval from one seed
    # gaps are paired by seed, in points, over the seeds both sides have
    g = paired_gap({0: 0.90, 1: 0.80, 2: 0.5}, {0: 0.85, 1: 0.80})
    assert g["n"] == 2 and math.isclose(g["mean"], 2.5) and math.isclose(g["std"], 5 / math.sqrt(2))
