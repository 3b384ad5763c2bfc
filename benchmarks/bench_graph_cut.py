"""Does cutting the graph pay? Time per step and memory of DRTP/DFA vs BP on the same MLP, and vs the
hook-style implementation of the original DRTP code (a full autograd backward in which a hook after each hidden
layer replaces the incoming gradient by the rule's signal, so BP's backward cost is paid whatever the rule).

    .venv/bin/python benchmarks/bench_graph_cut.py [--data-dir ../shared/data/mnist] [--steps 300]

Each (network, implementation, rule) runs in a fresh subprocess so its peak RSS is its own. Reported:
- ms/step: median wall time of a training step (forward + backward + Adam step), 2 threads, all variants of a
  network timed round-robin in one process (a shared machine's load then hits them alike);
- GFLOP: floating-point work of one step, forward and backward (torch's FlopCounterMode);
- step memory MB: how much a full-batch step raises the peak resident memory over warm-up steps on 8 samples
  (activations, saved tensors, gradients, signals);
- peak RSS MB: the subprocess's maximum resident set (torch, the data and everything);
- epoch s: FC1-500 on MNIST, batch 60: one full epoch (60k samples), as the original code's 5-6 s/epoch figure.
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]


# -- the hook-style baseline (how the original DRTP code wires the rules) ----------------------------------------------
class _TrainingHook(torch.autograd.Function):
    """Identity forward; backward returns the rule's signal instead of the incoming gradient."""

    @staticmethod
    def forward(ctx, x, B, state):
        ctx.save_for_backward(B)
        ctx.state = state
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        (B,) = ctx.saved_tensors
        st = ctx.state
        if st["rule"] == "drtp":
            sig = -st["onehot"] @ B / grad.shape[0]
        else:  # dfa: the output error, stashed by the output layer's hook during the same backward
            sig = st["error"] @ B
        return sig.view_as(grad), None, None


class HookMLP(nn.Module):
    def __init__(self, sizes, rule):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.B = [torch.empty(sizes[-1], n).uniform_(-(6 / n) ** 0.5, (6 / n) ** 0.5) for n in sizes[1:-1]]
        self.state = {"rule": rule, "onehot": None, "error": None}

    def forward(self, x):
        x = x.flatten(1)
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = _TrainingHook.apply(torch.tanh(x), self.B[i], self.state)
        if x.requires_grad:
            x.register_hook(lambda g: self.state.__setitem__("error", g))
        return x


def make_data(data_dir: str | None, n: int, dim: int):
    if data_dir and Path(data_dir).is_dir():
        from edgelearn.data import load_dataset

        ds = load_dataset("mnist", data_dir)
        return torch.as_tensor(ds.x_train[:n]).flatten(1), torch.as_tensor(ds.y_train[:n]), "MNIST"
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, dim, generator=g), torch.randint(0, 10, (n,), generator=g), "random data (MNIST shape)"


def make_variant(impl: str, rule: str, sizes: list[int]):
    """A training step for one implementation and rule, and its optimiser."""
    torch.manual_seed(0)
    if impl == "edgelearn":
        from edgelearn.torch_ref import convert

        layers = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(nn.Tanh())
        model = nn.Sequential(*layers)
        learner = convert(model, rule, input_shape=(sizes[0],), num_classes=sizes[-1])
        params = list(learner.parameters())

        def step(xb, yb):
            learner.train_step(xb, yb)
    else:
        model = HookMLP(sizes, rule)
        params = list(model.parameters())

        def step(xb, yb):
            onehot = F.one_hot(yb, sizes[-1]).float()
            model.state["onehot"] = onehot
            out = model(xb)
            F.binary_cross_entropy_with_logits(out, onehot).backward()

    return step, torch.optim.Adam(params, lr=1e-4)


def time_interleaved(sizes: list[int], batch: int, variants: list[tuple[str, str]], steps: int, data_dir) -> dict:
    """Median ms/step of every variant, measured round-robin in one process so that load on a shared machine
    hits all variants alike."""
    torch.set_num_threads(2)
    x, y, _ = make_data(data_dir, max(4 * batch, 4096), sizes[0])
    runs = {v: make_variant(*v, sizes) for v in variants}
    times: dict[tuple[str, str], list[float]] = {v: [] for v in variants}
    for s in range(steps + 2):
        i = (s * batch) % (len(x) - batch + 1)
        xb, yb = x[i:i + batch], y[i:i + batch]
        for v, (step, opt) in runs.items():
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            step(xb, yb)
            opt.step()
            if s >= 2:
                times[v].append(time.perf_counter() - t0)
    return {v: 1000 * statistics.median(t) for v, t in times.items()}


def run_one(args) -> dict:
    torch.set_num_threads(2)
    sizes = [int(s) for s in args.sizes.split("-")]
    x, y, data_name = make_data(args.data_dir, args.n, sizes[0])
    step, opt = make_variant(args.impl, args.rule, sizes)
    bs = args.batch
    # step memory: peak RSS growth of one full-batch step over warm-up steps on 8 samples. The child runs with
    # MALLOC_MMAP_THRESHOLD_ fixed, so every tensor buffer is its own mapping, returned to the system when freed:
    # the RSS then follows the live tensors.
    for _ in range(2):
        opt.zero_grad(set_to_none=False)
        step(x[:8], y[:8])
        opt.step()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    opt.zero_grad(set_to_none=False)
    step(x[:bs], y[:bs])
    step_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    flops = FlopCounterMode(display=False)
    times = []
    n_steps = args.steps if not args.epoch else (len(x) // bs)
    t_start = time.perf_counter()
    for s in range(n_steps):
        i = (s * bs) % (len(x) - bs + 1)
        xb, yb = x[i:i + bs], y[i:i + bs]
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        if s == 3:  # count FLOPs on one warm step (the counter slows that step down)
            with flops:
                step(xb, yb)
        else:
            step(xb, yb)
        opt.step()
        if s != 3:
            times.append(time.perf_counter() - t0)
    total = time.perf_counter() - t_start
    return {
        "impl": args.impl, "rule": args.rule, "sizes": args.sizes, "batch": bs, "data": data_name,
        "ms_per_step": 1000 * statistics.median(times[2:]),
        "step_mb": step_mb,
        "gflop": flops.get_total_flops() / 1e9,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "epoch_s": total if args.epoch else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data" / "mnist"))
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--impl", default="edgelearn")
    ap.add_argument("--rule", default="bp")
    ap.add_argument("--sizes", default="784-500-10")
    ap.add_argument("--batch", type=int, default=60)
    ap.add_argument("--n", type=int, default=60000)
    ap.add_argument("--epoch", action="store_true")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_one(args)))
        return
    runs = [
        # the DRTP paper's FC1-500 at its batch size, one full epoch (the original code: 5-6 s/epoch, 440 MB peak)
        *[("784-500-10", 60, impl, rule, True) for impl, rule in
          [("edgelearn", "bp"), ("edgelearn", "dfa"), ("edgelearn", "drtp"), ("hook-style", "dfa"), ("hook-style", "drtp")]],
        # a deep MLP at a large batch, where BP's backward and its saved activations dominate
        *[("784-1000-1000-1000-1000-1000-1000-10", 1024, impl, rule, False) for impl, rule in
          [("edgelearn", "bp"), ("edgelearn", "dfa"), ("edgelearn", "drtp"), ("edgelearn", "shallow"),
           ("hook-style", "dfa"), ("hook-style", "drtp")]],
    ]
    results = []
    for sizes, batch, impl, rule, epoch in runs:
        cmd = [sys.executable, __file__, "--child", "--impl", impl, "--rule", rule, "--sizes", sizes, "--batch",
               str(batch), "--steps", str(args.steps), "--data-dir", args.data_dir]
        if epoch:
            cmd.append("--epoch")
        else:
            cmd += ["--n", "8192"]
        env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
        res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout.strip().splitlines()[-1])
        results.append(res)
        print(f"{sizes:28s} b={batch:<4d} {impl:10s} {rule:8s} {res['ms_per_step']:8.2f} ms/step  "
              f"{res['gflop']:7.3f} GFLOP  step memory {res['step_mb']:7.2f} MB  peak RSS {res['peak_rss_mb']:7.0f} MB"
              + (f"  epoch {res['epoch_s']:.2f} s" if res["epoch_s"] else ""), flush=True)
    print()
    for sizes in dict.fromkeys(r["sizes"] for r in results):
        group = {(r["impl"], r["rule"]): r for r in results if r["sizes"] == sizes}
        bp = group[("edgelearn", "bp")]
        ms = time_interleaved([int(v) for v in sizes.split("-")], bp["batch"], list(group), args.steps, args.data_dir)
        print(f"{sizes} (batch {bp['batch']}, {bp['data']}): ms/step measured round-robin in one process; "
              f"ratios to edgelearn BP")
        for (impl, rule), r in group.items():
            t = ms[(impl, rule)]
            print(f"  {impl:10s} {rule:8s} {t:8.2f} ms/step  time x{t / ms[('edgelearn', 'bp')]:.2f}   "
                  f"FLOPs x{r['gflop'] / bp['gflop']:.2f}   step memory x{r['step_mb'] / max(bp['step_mb'], 1e-9):.2f}")


if __name__ == "__main__":
    main()
