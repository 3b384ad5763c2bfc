"""Throughput and step memory of every rule vs BP on the same full-size network, side by side in one run.

    .venv/bin/python benchmarks/bench_fullscale.py                       # VGG-like and ResNet-20, batch 32, CPU
    .venv/bin/python benchmarks/bench_fullscale.py --networks vit-cifar --batch 64 --device cuda

For each network one model per rule is built from the same seed (``build_model`` + ``convert_network``, Adam), and
the training steps (forward + the rule's backward + optimiser step) are timed round-robin -- step k of every rule,
then step k+1 -- so that a shared machine's load hits all rules alike. Reported per rule:

- ms/step: median wall time of a step after the warm-up steps; samples/s = batch / that median;
- peak MB: the peak of live tensor memory during one step -- on CUDA ``torch.cuda.max_memory_allocated`` (reset
  before the step), on the CPU the torch profiler's memory timeline (parameters, gradients, optimiser state,
  activations and temporaries the step touches);
- the ratios to BP. The update-unlocked rules (DRTP: each layer learns during the forward pass and its graph is
  freed at once; DFA-family: one local backward per layer, no backward through the layers above) skip BP's
  backward through the network; FA/KP/LDFA keep a full backward (through B or a rank-r bottleneck).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgelearn.network import load_network  # noqa: E402
from edgelearn.torch_ref import build_model, convert_network  # noqa: E402

DEFAULT_RULES = ["bp", "fa", "dfa", "drtp", "ldfa", "dldfa", "ssa"]


def make(spec, rule: str, device: torch.device):
    spec = spec.with_rule(rule)
    model = build_model(spec, seed=0).to(device)
    learner = convert_network(model, spec, seed=0)
    opt = torch.optim.Adam(learner.parameters(), lr=1e-4)
    return model, learner, opt


def step(learner, opt, x, y):
    opt.zero_grad(set_to_none=True)
    learner.train_step(x, y)
    opt.step()


def peak_memory_mb(learner, opt, x, y, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        step(learner, opt, x, y)
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True) as prof:
        step(learner, opt, x, y)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = os.path.join(tmp, "timeline.json")
        prof.export_memory_timeline(path, device="cpu")
        _, sizes = json.loads(Path(path).read_text())
    return max(sum(row) for row in sizes) / 2 ** 20 if sizes else float("nan")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--networks", default="vgg-like,resnet20", help="comma-separated config names")
    ap.add_argument("--rules", default=",".join(DEFAULT_RULES))
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=8, help="timed steps per rule")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rules = [r.strip() for r in args.rules.split(",") if r.strip()]
    results = []
    print(f"torch {torch.__version__}, {device}, {args.threads} threads, batch {args.batch}, "
          f"median of {args.steps} steps after {args.warmup} warm-up, round-robin over the rules")
    for net in [n.strip() for n in args.networks.split(",") if n.strip()]:
        spec = load_network(net)
        g = torch.Generator().manual_seed(0)
        x = torch.rand(args.batch, *spec.input_shape, generator=g).to(device)
        y = (torch.arange(args.batch) % spec.output_dim).to(device)
        runs = {r: make(spec, r, device) for r in rules}
        times: dict[str, list[float]] = {r: [] for r in rules}
        for k in range(args.warmup + args.steps):
            for r in rules:
                _, learner, opt = runs[r]
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                t0 = time.perf_counter()
                step(learner, opt, x, y)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                if k >= args.warmup:
                    times[r].append(time.perf_counter() - t0)
        mem = {r: peak_memory_mb(runs[r][1], runs[r][2], x, y, device) for r in rules}
        n_params = sum(p.numel() for p in runs[rules[0]][0].parameters())
        print(f"\n{net} ({n_params / 1e6:.2f} M parameters), batch {args.batch}")
        print(f"  {'rule':8s} {'ms/step':>9s} {'samples/s':>10s} {'time/BP':>8s} {'peak MB':>9s} {'mem/BP':>7s}")
        base_t = statistics.median(times["bp"]) if "bp" in times else None
        for r in rules:
            t = statistics.median(times[r])
            row = {"network": net, "rule": r, "batch": args.batch, "ms_per_step": 1e3 * t,
                   "samples_per_s": args.batch / t, "peak_mb": mem[r], "device": str(device)}
            if base_t:
                row["time_vs_bp"] = t / base_t
                row["memory_vs_bp"] = mem[r] / mem["bp"]
            results.append(row)
            rel = f"{row.get('time_vs_bp', float('nan')):8.2f} {mem[r]:9.1f} {row.get('memory_vs_bp', float('nan')):7.2f}"
            print(f"  {r:8s} {1e3 * t:9.1f} {args.batch / t:10.1f} {rel}")
        del runs
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
