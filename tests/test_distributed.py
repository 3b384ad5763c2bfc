"""torchrun with 2 CPU processes (gloo): every rule trains to the same parameters as one process on the same global
batches -- also when the job is interrupted and resumed from a mid-epoch checkpoint.

Tolerance: the processes each reduce half of a batch and the halves are summed by the all-reduce, so float32 sums
run in another order than in one process; after 10 Adam steps the parameters agree to ~6e-7 (measured; the test
allows 1e-5). Networks with batch norm or dropout are excluded by design: their batch statistics and masks are per
process in any data-parallel job (docs/fullscale.md).
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch

from edgelearn.network import load_network
from edgelearn.train import train
from needs import require_tool

ROOT = Path(__file__).resolve().parents[1]
CONFIG = """
name: ddp-check
dataset: digits
input_shape: [1, 8, 8]
num_classes: 10
loss: ce
rule: bp
layers:
  - {type: conv2d, out: 6, kernel: 3, padding: 1, act: relu, name: conv1}
  - {type: maxpool, kernel: 2}
  - {type: flatten}
  - {type: linear, out: 24, act: tanh, name: fc1}
  - {type: linear, out: 16, act: tanh, name: fc2}
  - {type: linear, out: 10, name: out}
train: {optimizer: adam, lr: 3.0e-3, batch_size: 7, epochs: 2, augment: {crop: 1, flip: true}}
variants:
  bp: {}
  fa: {rule: fa}
  kp: {rule: kp}
  dfa: {rule: dfa}
  sdfa: {rule: sdfa}
  drtp: {rule: drtp}
  shallow: {rule: shallow}
  ldfa: {rule: ldfa, rule_params: {rank: 3}}
  dldfa: {rule: dldfa, rule_params: {rank: 3, dldfa_source: penultimate}}
  ssa: {rule: ssa}
"""
# 30 samples in batches of 7: shares of 4 and 3 samples, and a last batch of 2 (1 + 1)
ARGS = ["--variant", "all", "--n-train", "30", "--n-test", "20", "--quiet", "--device", "cpu"]


def torchrun(cfg: Path, out: Path, *extra: str) -> str:
    torchrun_bin = Path(sys.executable).with_name("torchrun")
    require_tool("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [str(torchrun_bin), "--standalone", "--nproc_per_node", "2", "-m", "edgelearn", "train", "--config", str(cfg),
           "--out", str(out), *ARGS, *extra]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res.stdout


def test_two_process_torchrun_matches_one_process_and_resumes(tmp_path):
    cfg = tmp_path / "ddp-check.yaml"
    cfg.write_text(CONFIG)
    out = tmp_path / "runs"
    # interrupted after 3 steps (checkpoint after step 2, mid-epoch), then resumed to the end
    first = torchrun(cfg, out, "--max-steps", "3", "--checkpoint-every", "2")
    assert first.count("stopped after --max-steps 3") == 10
    state = torch.load(out / "ssa" / "checkpoint.pt", weights_only=True)
    assert (state["epoch"], state["step"], state["world_size"], len(state["rng"])) == (0, 2, 2, 2)
    second = torchrun(cfg, out)
    assert second.count("x2 processes") == 10
    spec = load_network(cfg)
    for v in spec.variant_names():
        single = train(spec.with_variant(v), n_train=30, n_test=20, progress=False, device="cpu")
        ck = torch.load(out / v / "checkpoint.pt", weights_only=True)
        metrics = json.loads((out / v / "metrics.json").read_text())
        assert metrics["complete"] and metrics["world_size"] == 2
        sd = single["model"].state_dict()
        assert sd.keys() == ck["model"].keys(), v
        for k in sd:
            torch.testing.assert_close(ck["model"][k], sd[k], rtol=0, atol=1e-5, msg=f"{v}: {k}")
        for a, b in zip(single["epochs"], metrics["epochs"]):
            assert abs(a["train_loss"] - b["train_loss"]) < 1e-5, v
            assert a["train_accuracy"] == b["train_accuracy"] and a["test_accuracy"] == b["test_accuracy"], v
        if v == "ssa":  # the rank schedule cut the factors in both, identically (DDP re-wrapped after the cut)
            ranks = [s.rule.rank for s in single["learner"].sites]
            assert ranks == [t.shape[0] for k, t in ck["model"].items() if k.endswith("ssa_S")]
            assert any(len(set(s.rule.rank_history)) > 1 for s in single["learner"].sites)
