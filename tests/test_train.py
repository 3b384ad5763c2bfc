"""The training loop and the `edgelearn train` command: metrics, checkpoints, resume, determinism, errors."""
import json

import pytest
import torch

from edgelearn.cli import main
from edgelearn.errors import ConfigError
from edgelearn.network import default_network
from edgelearn.train import train
from helpers import cli_one_line_error


def test_train_writes_metrics_and_learns(tmp_path):
    m = train(default_network(), "drtp", epochs=3, out=tmp_path, progress=False, lr=5e-3)
    data = json.loads((tmp_path / "metrics.json").read_text())
    assert data["rule"] == "drtp" and data["complete"]
    assert len(data["train_accuracy"]) == 3 and len(data["test_accuracy"]) == 3
    assert data["final"]["test_accuracy"] == data["test_accuracy"][-1] > 0.5  # 10 classes: chance is 0.1
    layer = data["epochs"][-1]["layers"][0]
    assert layer["layer"] == "fc1" and 0 < layer["angle_to_bp"] < 90  # DRTP's signal lies within 90 deg of BP's
    assert m["final"] == data["final"]


def test_same_seed_same_bits(tmp_path):
    a = train(default_network(), "dfa", epochs=1, progress=False, n_train=300, probe=False, seed=3)
    b = train(default_network(), "dfa", epochs=1, progress=False, n_train=300, probe=False, seed=3)
    c = train(default_network(), "dfa", epochs=1, progress=False, n_train=300, probe=False, seed=4)
    sa, sb, sc = (x["model"].state_dict() for x in (a, b, c))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["fc1.weight"], sc["fc1.weight"])


def test_resume_continues_exactly(tmp_path):
    full = train(default_network(), "fa", epochs=2, progress=False, n_train=300, probe=False, seed=1)
    part = tmp_path / "run"
    train(default_network(), "fa", epochs=1, out=part, progress=False, n_train=300, probe=False, seed=1)
    logs = []
    resumed = train(default_network(), "fa", epochs=2, out=part, progress=False, n_train=300, probe=False, seed=1,
                    log=logs.append)
    assert logs and "resuming" in logs[0]
    sf, sr = full["model"].state_dict(), resumed["model"].state_dict()
    assert all(torch.equal(sf[k], sr[k]) for k in sf)
    assert resumed["test_accuracy"] == full["test_accuracy"]
    # a different configuration in the same directory is refused
    with pytest.raises(ConfigError, match="different configuration"):
        train(default_network(), "dfa", epochs=2, out=part, progress=False, n_train=300, probe=False, seed=1)


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    train(default_network(), "bp", epochs=1, out=tmp_path, progress=False, n_train=100, probe=False)
    ck = tmp_path / "checkpoint.pt"
    ck.write_bytes(ck.read_bytes()[:100])
    with pytest.raises(ConfigError, match="cannot read checkpoint"):
        train(default_network(), "bp", epochs=2, out=tmp_path, progress=False, n_train=100, probe=False)


def test_cli_train_runs_default(tmp_path, capsys):
    assert main(["train", "--epochs", "1", "--quiet", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "test accuracy" in out and (tmp_path / "metrics.json").exists()


def test_cli_errors(tmp_path, capsys):
    cli_one_line_error(capsys, ["train", "--rule", "magic", "--out", str(tmp_path / "a")], "unknown rule 'magic'")
    cli_one_line_error(capsys, ["train", "--config", "nosuchnet", "--out", str(tmp_path / "b")], "no config 'nosuchnet'")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nlayers: [\n  {type: linear, out: 3\n")
    cli_one_line_error(capsys, ["train", "--config", str(bad)], "malformed YAML")
    chain = tmp_path / "chain.yaml"
    chain.write_text("input_shape: [4]\nnum_classes: 3\nlayers:\n - {type: linear, out: 5}\n - {type: linear, out: 7}\n")
    cli_one_line_error(capsys, ["train", "--config", str(chain)], "outputs shape [7]")
    conv = tmp_path / "conv.yaml"
    conv.write_text("input_shape: [16]\nnum_classes: 3\nlayers:\n - {type: conv2d, out: 4, kernel: 3}\n - {type: linear, out: 3}\n")
    cli_one_line_error(capsys, ["train", "--config", str(conv)], "conv2d needs a (C, H, W) input")
    cli_one_line_error(capsys, ["train", "--config", "fc1-500", "--data-dir", str(tmp_path / "missing"), "--out", str(tmp_path / "c")], "missing")
    cli_one_line_error(capsys, ["train", "--layer-rule", "nope=bp", "--out", str(tmp_path / "d")], "not a trainable layer")
    cli_one_line_error(capsys, ["train", "--layer-rule", "fc1", "--out", str(tmp_path / "e")], "NAME=RULE")
    cli_one_line_error(capsys, ["train", "--device", "cuda:7", "--out", str(tmp_path / "f")], "CUDA is not available") if not torch.cuda.is_available() else None
    regression = tmp_path / "reg.yaml"
    regression.write_text("input_shape: [256]\ntask: regression\noutput_dim: 10\ndataset: cosine\nrule: drtp\nlayers:\n - {type: linear, out: 10}\n")
    cli_one_line_error(capsys, ["train", "--config", str(regression)], "drtp")


def test_cli_info(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "fc1-500" in out and "drtp" in out
    assert main(["info", "--config", "conv-mnist"]) == 0
    assert "6272" in capsys.readouterr().out


def test_zero_init_rules_start_from_zero_weights():
    from edgelearn.errors import ConfigError
    from edgelearn.network import load_network
    from edgelearn.torch_ref.build import build_model

    spec = load_network("drtp-regression")  # train.zero_init: [fa, dfa, sdfa, drtp]
    for rule, zero in (("sdfa", True), ("bp", False)):
        model = build_model(spec.with_rule(rule), seed=0)
        assert all(bool((getattr(model, n).weight == 0).all()) == zero for n in ("fc1", "fc2", "out")), rule
    bad = spec.with_rule("bp")
    bad.train["zero_init"] = ["nope"]
    with pytest.raises(ConfigError, match="zero_init"):
        build_model(bad, seed=0)


def test_training_flushes_subnormals_and_restores_ieee_after(tmp_path):
    from edgelearn.train import flush_denormals

    tiny = torch.tensor([1e-39])  # a float32 subnormal
    assert float(tiny * 1.0) != 0.0
    with flush_denormals() as on:
        if on:  # the CPU supports it (x86 with SSE3, aarch64)
            assert float(tiny * 1.0) == 0.0
    assert float(tiny * 1.0) != 0.0
    train(default_network(), "bp", epochs=1, out=tmp_path, progress=False, n_train=100, probe=False)
    assert float(tiny * 1.0) != 0.0
