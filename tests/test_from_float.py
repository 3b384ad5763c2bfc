"""Pre-train in float, keep learning on chip: a `train` checkpoint quantized into the fixed-point engine."""
import dataclasses
import json

import numpy as np
import pytest
import torch

from edgelearn.cli import main
from edgelearn.data import load_dataset
from edgelearn.errors import ConfigError, DataError
from edgelearn.fixed.engine import FixedEngine
from edgelearn.fixed.from_float import load_train_checkpoint, read_checkpoint
from edgelearn.network import default_network


@pytest.fixture(scope="module")
def drtp_checkpoint(tmp_path_factory):
    """The embedded digits MLP trained in float with DRTP (2 epochs): its checkpoint."""
    out = tmp_path_factory.mktemp("float-drtp")
    assert main(["train", "--rule", "drtp", "--epochs", "2", "--lr", "0.01", "--out", str(out), "--no-probe",
                 "--quiet", "--device", "cpu"]) == 0
    return out / "checkpoint.pt"


def test_weights_and_feedback_arrive_within_half_an_lsb(drtp_checkpoint):
    state = read_checkpoint(drtp_checkpoint)
    eng = FixedEngine(default_network().with_rule("drtp"), bits=16, seed=3, feedback="stored")
    report = load_train_checkpoint(eng, drtp_checkpoint)
    for k, (lp, w) in enumerate(zip(eng.precision.layers, eng.weights_float())):
        W = state[f"{lp.name}.weight"].T
        ok = (W <= lp.weight.max_value) & (W >= lp.weight.min_value)
        assert ok.mean() > 0.99, lp.name  # 16 bits hold almost every trained weight
        assert np.abs(w["W"] - W)[ok].max() <= lp.weight.lsb / 2 + 1e-15
        assert report[lp.name]["weight"]["saturated"] == int((~ok).sum())
        assert np.abs(w["b"] - np.clip(state[f"{lp.name}.bias"], lp.bias.min_value, lp.bias.max_value)).max() \
            <= lp.bias.lsb / 2 + 1e-15
    # the hidden layer's DRTP projection is the one the float model learned with, not the engine's seed-3 matrix
    hidden = eng.precision.layers[0]
    assert report[hidden.name]["feedback"]["source"] == "checkpoint"
    B = state[f"{hidden.name}.el_feedback"]
    Bq = eng.feedback_float()[0]
    inside = np.abs(B) <= hidden.feedback.max_value
    assert np.abs(Bq - B)[inside].max() <= hidden.feedback.lsb / 2 + 1e-15


def test_loaded_engine_predicts_like_the_float_model(drtp_checkpoint):
    ds = load_dataset("digits", None, seed=0)
    eng = FixedEngine(default_network().with_rule("drtp"), bits=16, seed=0, feedback="stored")
    fresh = float((eng.predict(ds.x_test) == ds.y_test).mean())
    load_train_checkpoint(eng, drtp_checkpoint)
    # the float model itself, rebuilt from the same checkpoint
    from edgelearn.torch_ref import build_model

    model = build_model(default_network(), seed=0)
    sd = torch.load(drtp_checkpoint, map_location="cpu", weights_only=False)["model"]
    model.load_state_dict({k: v for k, v in sd.items() if "el_feedback" not in k})
    with torch.no_grad():
        ref = model(torch.as_tensor(ds.x_test, dtype=torch.float32)).argmax(1).numpy()
    pred = eng.predict(ds.x_test)
    assert (pred == ref).mean() >= 0.97
    acc, ref_acc = float((pred == ds.y_test).mean()), float((ref == ds.y_test).mean())
    assert ref_acc > 0.85 and abs(acc - ref_acc) <= 0.02  # it starts where the float model ended
    assert acc > fresh + 0.5  # not from its random init


def test_refusals(drtp_checkpoint, tmp_path):
    with pytest.raises(ConfigError, match="stored feedback"):
        load_train_checkpoint(FixedEngine(default_network().with_rule("drtp"), bits=8, feedback="lfsr"),
                              drtp_checkpoint)
    eng = FixedEngine(default_network().with_rule("drtp"), bits=8, feedback="stored")
    before = [w["W"].copy() for w in eng.weights()]
    bad = {k: v for k, v in torch.load(drtp_checkpoint, map_location="cpu", weights_only=False)["model"].items()}
    last = [k for k in bad if k.endswith(".weight")][-1]
    bad[last] = bad[last][:, :-1]
    torch.save({"model": bad}, tmp_path / "bad.pt")
    with pytest.raises(DataError, match=f"{last} has shape"):
        load_train_checkpoint(eng, tmp_path / "bad.pt")
    # nothing half-loaded: the first layer (read fine) is unchanged
    assert all(np.array_equal(a["W"], b) for a, b in zip(eng.weights(), before))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="not a readable torch checkpoint"):
        read_checkpoint(tmp_path / "junk.pt")


def test_simulate_init_from(drtp_checkpoint, tmp_path, capsys):
    out = tmp_path / "sim"
    assert main(["simulate", "--init-from", str(drtp_checkpoint), "--epochs", "1", "--bits", "16", "--n-train",
                 "200", "--feedback", "stored", "--quiet", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    hidden = FixedEngine(default_network(), bits=8).layer_names[0]
    assert f"feedback from the checkpoint: {hidden}" in text, text
    res = json.loads((out / "results.json").read_text())
    assert res["init_from"]["checkpoint"] == str(drtp_checkpoint)
    assert res["test_accuracy"] > 0.8
    assert main(["simulate", "--init-from", str(tmp_path / "nope.pt"), "--quiet", "--out", str(tmp_path / "x")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_conv_kernels_load_into_the_front_end(tmp_path):
    # a torch state_dict of a tiny conv net: the frozen kernels and the classifier arrive within half an LSB
    from test_engine_conv import conv_spec

    from edgelearn.fixed.from_float import load_float_state
    from edgelearn.torch_ref import build_model

    spec = conv_spec()
    model = build_model(spec, seed=7)
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    state = read_checkpoint(tmp_path / "sd.pt")
    eng = FixedEngine(spec, bits=16, seed=0)
    load_float_state(eng, state)
    j = [fp.name for fp in eng.precision.front].index("conv1")
    fp = eng.precision.front[j]
    np.testing.assert_allclose(fp.weight.to_float(eng.front.W[j]), state["conv1.weight"], rtol=0,
                               atol=fp.weight.lsb / 2 + 1e-15)
    lp = eng.precision.layers[0]
    np.testing.assert_allclose(eng.weights_float()[0]["W"], state[f"{lp.name}.weight"].T, rtol=0,
                               atol=lp.weight.lsb / 2 + 1e-15)


@pytest.mark.parametrize("rule", ["ldfa", "dldfa", "kp"])
def test_trained_feedback_loads_with_the_weights(rule, tmp_path):
    """kp's B and ldfa's / dldfa's factors Q and P, trained in float, arrive in the engine within half an LSB of
    their formats (P with its extra fractional bits), so learning continues on chip from the float feedback."""
    from edgelearn.torch_ref.ldfa import P_NAME, Q_NAME

    out = tmp_path / rule
    assert main(["train", "--rule", rule, "--epochs", "1", "--lr", "0.01", "--out", str(out), "--no-probe",
                 "--quiet", "--device", "cpu"]) == 0
    state = read_checkpoint(out / "checkpoint.pt")
    eng = FixedEngine(default_network().with_rule(rule), bits=16, seed=3)
    before = [None if B is None else B.copy() for B in eng.feedback_float()]
    report = load_train_checkpoint(eng, out / "checkpoint.pt")
    loaded = 0
    for k, (lp, B) in enumerate(zip(eng.precision.layers, eng.feedback_float())):
        if B is None:
            continue
        assert report[lp.name]["feedback"]["source"].startswith("checkpoint"), report[lp.name]
        r = eng.program_layers[k].ldfa_rank
        if rule == "kp":
            want = [(B, state[f"{lp.name}.el_feedback"].T, lp.fb_q.lsb)]
        else:
            nq = B.shape[0] - r
            P = state[f"{lp.name}.{P_NAME}"]
            want = [(B[:nq, :r], state[f"{lp.name}.{Q_NAME}"].T, lp.fb_q.lsb),
                    (B[nq:, :P.shape[1]], P, lp.fb_p.lsb * 2.0 ** -eng.program_layers[k].ldfa_p_shift)]
        for got, ref, lsb in want:
            assert np.abs(got - ref).max() <= lsb / 2 + 1e-15
        assert not np.array_equal(B, before[k])  # the float feedback, not the engine's own draws
        loaded += 1
    assert loaded >= 1
    if rule != "kp":  # factors of another rank are refused with one line, before the engine changes
        spec = default_network().with_rule(rule)
        eng2 = FixedEngine(dataclasses.replace(spec, rule_params={**spec.rule_params, "rank": 3}), bits=16, seed=3)
        W0 = eng2.weights()[0]["W"].copy()
        with pytest.raises(DataError, match="rank-3"):
            load_train_checkpoint(eng2, out / "checkpoint.pt")
        assert np.array_equal(eng2.weights()[0]["W"], W0)
