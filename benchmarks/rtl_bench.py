"""What the RTL benchmarks share: their command line (check in the simulators, resources in yosys), real MNIST
samples for the lockstep runs, and the yosys table (designs synthesized side by side, each row against the first)."""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from edgelearn.data import SHARED_DATA

MNIST = SHARED_DATA / "mnist"


def parser(doc: str, network: str, samples: int, icarus_samples: int) -> argparse.ArgumentParser:
    """The options every RTL benchmark takes (``--only``, samples per simulator, ``--parallel``); ``network``
    names what ``--parallel`` sets the lanes of."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--only", choices=("check", "resources"))
    ap.add_argument("--samples", type=int, default=samples, help=f"samples in Verilator (default {samples})")
    ap.add_argument("--icarus-samples", type=int, default=icarus_samples,
                    help=f"samples in Icarus (default {icarus_samples})")
    ap.add_argument("--parallel", type=int, default=16, help=f"MAC lanes per layer of {network} (default 16)")
    return ap


def run(args, check, resources) -> None:
    """Put the simulators on PATH, then ``check()`` and / or ``resources()`` as ``--only`` says."""
    from edgelearn.rtl.sim import tool_env

    tool_env()
    if args.only in (None, "check"):
        check()
    if args.only in (None, "resources"):
        resources()


def mnist_samples(eng, n: int):
    """The first ``n`` real MNIST training images quantized to ``eng``'s input format, their labels, all trained."""
    from edgelearn.data import load_dataset

    ds = load_dataset("mnist", MNIST, n_train=n, n_test=1)
    X = eng.quantize_inputs(ds.x_train[:n], count=False).astype(np.int64)
    return X, np.asarray(ds.y_train[:n], dtype=np.int64), np.ones(n, dtype=bool)


def synth_table(title: str, designs, parallel: int) -> list[dict]:
    """Generate and synthesize (``synth_xilinx`` + ``stat``) each ``(label, make_engine, write_rtl keywords)`` of
    ``designs`` at ``parallel`` MAC lanes; print one row each, with the LUT / FF / area change against the first
    row; return the resources."""
    from edgelearn.rtl.generate import write_rtl
    from edgelearn.rtl.synth import synthesize

    designs = list(designs)
    width = max(len(label) for label, _, _ in designs) + 2
    print(f"yosys synth_xilinx + stat, {title}, {parallel} MAC lanes per layer (BRAM in RAMB36 equivalents)")
    print(f"{'design':<{width}} {'LUT':>7} {'FF':>7} {'BRAM36':>7} {'DSP':>5} {'LUTRAM':>7} {'area LE':>8} "
          f"{'yosys s':>8}")
    out = []
    for label, make_engine, kw in designs:
        with tempfile.TemporaryDirectory(prefix="bench-rtl-") as tmp:
            write_rtl(make_engine(), Path(tmp) / "prj", parallel=parallel, **kw)
            t0 = time.perf_counter()
            r = synthesize(Path(tmp) / "prj")["resources"]
            dt = time.perf_counter() - t0
        base = out[0] if out else None
        extra = "" if base is None else "  (" + ", ".join(
            f"{name} {100 * (r[key] / base[key] - 1):+.0f} %" for name, key in
            (("LUT", "LUT"), ("FF", "FF"), ("area", "AREA_LE"))) + ")"
        print(f"{label:<{width}} {r['LUT']:>7,} {r['FF']:>7,} {r['BRAM']:>7g} {r['DSP']:>5} {r['LUTRAM']:>7} "
              f"{r['AREA_LE']:>8,.0f} {dt:>8.0f}{extra}", flush=True)
        out.append(r)
    return out
