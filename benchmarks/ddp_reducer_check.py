"""Why edgelearn all-reduces the rules' gradients itself instead of relying on DistributedDataParallel's reducer.

    .venv/bin/torchrun --standalone --nproc_per_node 2 benchmarks/ddp_reducer_check.py

One training step of a small conv net per rule, on 8 samples: once in a single process on all 8 (the reference),
once wrapped in plain DDP (its reducer averaging gradients from autograd hooks, no ``no_sync``, no edgelearn
all-reduce) with each of the 2 processes on its 4. Printed: the largest relative gradient error of the DDP step.
(What ``edgelearn train`` does under torchrun -- DDP under ``no_sync`` and one all-reduce of the final gradients --
is tested against single-process training in tests/test_distributed.py.)
"""
import os
import sys
import warnings
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
warnings.filterwarnings("ignore")

from edgelearn.network import network_from_dict  # noqa: E402
from edgelearn.torch_ref import build_model, convert_network  # noqa: E402

NET = {"input_shape": [1, 8, 8], "num_classes": 10, "loss": "ce", "layers": [
    {"type": "conv2d", "out": 6, "kernel": 3, "padding": 1, "act": "relu", "name": "conv1"},
    {"type": "maxpool", "kernel": 2}, {"type": "flatten"},
    {"type": "linear", "out": 24, "act": "tanh", "name": "fc1"},
    {"type": "linear", "out": 16, "act": "tanh", "name": "fc2"},
    {"type": "linear", "out": 10, "name": "out"}]}
RULES = {"bp": {}, "fa": {}, "dfa": {}, "drtp": {}, "ldfa": {"rank": 3}, "dldfa": {"rank": 3}, "ssa": {}}


def main() -> int:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    x, y = torch.rand(8, 1, 8, 8), torch.arange(8) % 10
    lo, hi = rank * 8 // world, (rank + 1) * 8 // world
    for rule, params in RULES.items():
        spec = network_from_dict({**NET, "rule": rule, "rule_params": params})
        ref = build_model(spec, seed=0)
        convert_network(ref, spec).train_step(x, y)
        model = build_model(spec, seed=0)
        learner = convert_network(model, spec)
        learner.forward_module = DDP(model)
        try:
            learner.train_step(x[lo:hi], y[lo:hi])
            worst = 0.0
            for (name, p), (_, q) in zip(model.named_parameters(), ref.named_parameters()):
                if p.grad is None or q.grad is None:
                    continue
                worst = max(worst, float((p.grad - q.grad).abs().max() / (q.grad.abs().max() + 1e-12)))
            msg = f"max relative gradient error vs one process: {worst:.2e}"
        except Exception as exc:  # noqa: BLE001 - reported, not hidden
            msg = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
        if rank == 0:
            print(f"{rule:6s} {msg}", flush=True)
        dist.barrier()
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
