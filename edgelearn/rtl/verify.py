"""Golden results of the fixed-point engine for an RTL testbench, and the testbench's summary.

:func:`golden` runs the engine on a sequence of samples exactly as the datapath sees them (one at a time;
training or inference per sample) and records, per sample, the prediction before the update and -- at chosen
samples -- every weight and bias.  The cocotb testbench (``bench.py``) reads the ``.npz`` and compares
the design with it bit for bit; :func:`run_bench` runs the two together.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from ..fixed.lower import trace


def golden(eng, X_raw: np.ndarray, labels: Sequence[int], train: Sequence[bool], snapshots: Sequence[int] | None = None,
           path=None) -> dict[str, np.ndarray]:
    """The engine's golden trace (:func:`edgelearn.fixed.lower.trace`, a *copy* of ``eng`` runs) as arrays: ``X``
    (N, n_in) raw inputs, ``labels``, ``train``, ``outputs``, ``preds``, ``snap`` (indices), ``W{k}`` (S, n_in,
    n_out), ``b{k}`` (S, n_out), ``nnz{k}`` (N,) non-zero inputs of layer k per sample (for the cycle model),
    ``fb{k}`` (S, rows, cols) the packed feedback words of a layer whose feedback learns (ldfa's Q over P),
    ``rnd_state``; written to ``path`` if given (``GoldenTrace.load`` reads it back)."""
    gold = trace(eng, X_raw, labels, train, snapshots=snapshots)
    if path is not None:
        gold.save(path)
    return gold.to_arrays()


def run_bench(eng, design, prj: Path, sim: str, testcase: str, X_raw: np.ndarray, labels: Sequence[int],
              train: Sequence[bool], snapshots: Sequence[int] | None = None, disturb: bool = False,
              load: Sequence[tuple[np.ndarray, np.ndarray]] | None = None, parameters: dict | None = None) -> dict:
    """Record the engine's golden run on the samples, build the design written in ``prj`` (by ``write_rtl``) for
    ``sim`` and run the packaged cocotb testbench's ``testcase`` (``mlp_lockstep`` or ``mlp_stream``) on it;
    ``disturb``: random valid / ready gaps and mid-run resets (``mlp_lockstep``); ``load``: raw (W, b) per layer
    that ``mlp_lockstep`` writes through the load port (and reads back) before the first sample -- ``eng`` must
    start from them; ``parameters``: of the top level (``UPD_MUL``).

    Returns the testbench's report (mismatches, comparisons, cycles) plus ``sim_seconds`` and the ``golden`` run."""
    import time

    from . import sim as rsim

    prj = Path(prj).resolve()  # the simulator runs in another folder: every path it is given must be absolute
    gold = golden(eng, X_raw, labels, train, snapshots=snapshots, path=prj / "golden.npz")
    build = prj / f"sim_{sim}"
    srcs = [prj / line for line in (prj / "filelist.f").read_text().split()]
    runner = rsim.build(sim, srcs, design.top, build, parameters=parameters)
    report = prj / f"report_{sim}_{testcase}.json"
    env = {}
    if load is not None:
        np.savez(prj / "load.npz", **{f"{t}{k}": a for k, wb in enumerate(load) for t, a in zip("Wb", wb)})
        env["EL_LOAD"] = str(prj / "load.npz")
    t0 = time.perf_counter()
    rsim.test(runner, design.top, rsim.BENCH_MODULE, build, run_dir=prj, testcase=testcase,
              extra_env={"EL_DESIGN": str(prj / "design.json"), "EL_GOLDEN": str(prj / "golden.npz"),
                         "EL_REPORT": str(report), "EL_DISTURB": "1" if disturb else "0", **env})
    rep = json.loads(report.read_text())
    rep["sim_seconds"] = time.perf_counter() - t0
    rep["golden"] = gold
    return rep
