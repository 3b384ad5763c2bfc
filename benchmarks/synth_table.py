"""The yosys table the RTL benchmarks print: designs synthesized side by side, each row against the first."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path


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
