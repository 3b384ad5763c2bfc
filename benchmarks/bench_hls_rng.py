"""C-simulation of the HLS learning kernel against the fixed-point engine, per random-bit contract (docs/hls.md).

For each configuration (rule, loss, ``rng: layer`` / ``rng: neuron``, with and without a STOCH ``update`` format,
lanes) the kernel is generated for the 64-24-10 ``hls-small`` MLP of tests/test_hls_export.py (8-bit preset,
trained one epoch on 300 digits), compiled with g++ and run over ``--n`` test digits, one learning step each; the
table gives the mismatching bits of the outputs and predictions and of the final state (weights, biases, generator
states), and whether the final state of every lane count is the same.  Each configuration compiles one binary per
lane count (about 15 s of CPU each).

    NUMBA_NUM_THREADS=1 .venv/bin/python benchmarks/bench_hls_rng.py [--n 32] [--lanes 1 4]
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from edgelearn.data import load_dataset
from edgelearn.fixed import FixedEngine
from edgelearn.hls.kernel import write_kernel_project
from edgelearn.hls.project import tb_samples
from edgelearn.network import network_from_dict

SMALL = {"name": "hls-small", "dataset": "digits", "input_shape": [1, 8, 8], "num_classes": 10, "loss": "bce",
         "rule": "drtp", "layers": [{"type": "flatten"}, {"type": "linear", "out": 24, "act": "tanh", "name": "fc1"},
                                    {"type": "linear", "out": 10, "name": "out"}]}
UPDATE = {"update": "fixed<12,0,STOCH,SAT>"}  # a STOCH update format: two draws per assignment

CONFIGS = [  # rule, loss, rng, formats
    ("drtp", "bce", "layer", {}), ("drtp", "bce", "layer", UPDATE),
    ("drtp", "bce", "neuron", {}), ("drtp", "bce", "neuron", UPDATE),
    ("sdfa", "bce", "neuron", UPDATE), ("dfa", "mse", "neuron", {}),
    ("drtp", "ce", "layer", {}), ("dfa", "ce", "neuron", UPDATE),
]


def engine(rule, loss, rng, formats):
    net = dict(SMALL, rule=rule, loss=loss)
    if loss == "ce":  # logits at the output (docs/arithmetic.md §11a)
        net["layers"] = SMALL["layers"][:-1] + [dict(SMALL["layers"][-1], act="none")]
    eng = FixedEngine(network_from_dict(net, source="hls-small"), seed=1, bits=8, rng=rng, formats=formats or None)
    ds = load_dataset("digits", n_train=300)
    eng.fit(ds.x_train, ds.y_train, epochs=1)
    return eng


def state(run):
    """W, b and the generator states (one array per layer, or the layers' LFSR states) of a kernel run."""
    rnd = run.rnd_state if isinstance(run.rnd_state, list) else [run.rnd_state]
    return [np.asarray(v) for v in run.W + run.b + rnd]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=32, help="testbench samples (one learning step each)")
    ap.add_argument("--lanes", type=int, nargs="+", default=[1, 4])
    args = ap.parse_args(argv)
    print("| rule | loss | rng | update | lanes | output bits | state bits | same state for all lanes |")
    print("|---|---|---|---|---|---:|---:|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for i, (rule, loss, rng, formats) in enumerate(CONFIGS):
            eng = engine(rule, loss, rng, formats)
            X, y, _ = tb_samples(eng, args.n, None, None, eng.seed)
            runs = []
            for p in args.lanes:
                prj = write_kernel_project(eng, Path(tmp) / f"c{i}-p{p}", tb_samples=(X, y), lanes=p)
                runs.append(prj.run())
            same = all(all(np.array_equal(a, b) for a, b in zip(state(r), state(runs[0]))) for r in runs)
            upd = formats.get("update", "-")
            print(f"| {rule} | {loss} | {rng} | {upd} | {', '.join(map(str, args.lanes))} | "
                  f"{', '.join(str(r.output_mismatch_bits) for r in runs)} | "
                  f"{', '.join(str(r.state_mismatch_bits) for r in runs)} | {'yes' if same else 'NO'} |", flush=True)


if __name__ == "__main__":
    main()
