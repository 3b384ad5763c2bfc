"""The one gate for tests that need an external tool or the shared data (imported as ``needs``: pytest puts
tests/ on sys.path; rtl_tb/conftest.py adds it too).

A user's plain ``./run-tests`` skips such a test and says why.  Under CI (``CI=true``, or ``EDGELEARN_STRICT=1``,
which .ci/run sets) a missing tool or data set is a *failure*: otherwise CI could be green with no oracle run.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

import pytest

from edgelearn.data import SHARED_DATA  # noqa: F401 (re-exported: the tests take the path from this gate)

STRICT_HINT = "CI=true / EDGELEARN_STRICT=1: a check that cannot run is a failure"


def strict() -> bool:
    return os.environ.get("CI", "").lower() == "true" or os.environ.get("EDGELEARN_STRICT", "") == "1"


def _missing(reason: str, allow_module_level: bool = False):
    if strict():
        pytest.fail(f"{reason} ({STRICT_HINT})", pytrace=False)
    pytest.skip(reason, allow_module_level=allow_module_level)


def _module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _sim(name: str) -> bool:
    from edgelearn.rtl import sim as rsim

    return rsim.available(name)


def _ap_types() -> bool:
    from edgelearn.hls import toolchain

    return toolchain.ap_types_dir() is not None


#: tool -> (is it there?, what to tell the user)
TOOLS = {
    "apytypes": (lambda: _module("apytypes"), "apytypes is not installed (pip install apytypes==0.5.1)"),
    "hls4ml": (lambda: _module("hls4ml"), "hls4ml is not installed (pip install edgelearn[hls])"),
    "ap_types": (_ap_types, "the Xilinx ap_types headers (bundled with hls4ml) are not available"),
    "g++": (lambda: shutil.which("g++") is not None, "g++ not found (scripts/setup.sh installs it)"),
    "icarus": (lambda: _sim("icarus"), "icarus is not installed (scripts/setup.sh installs it)"),
    "verilator": (lambda: _sim("verilator"), "verilator is not installed (scripts/setup.sh installs it)"),
    "yosys": (lambda: shutil.which("yosys") is not None, "yosys not found (scripts/setup.sh installs it)"),
    "nextpnr-ice40": (lambda: shutil.which("nextpnr-ice40") is not None,
                      "nextpnr-ice40 not found (scripts/setup.sh installs it)"),
    "torchrun": (lambda: Path(sys.executable).with_name("torchrun").exists(),
                 "torchrun not installed beside the interpreter"),
}


def have_tool(name: str) -> bool:
    return TOOLS[name][0]()


def require_tool(*names: str, allow_module_level: bool = False) -> None:
    """Skip (fail under CI) unless every named tool of TOOLS is there."""
    for name in names:
        if not have_tool(name):
            _missing(TOOLS[name][1], allow_module_level)


def require_data(path: Path, what: str | None = None, allow_module_level: bool = False) -> Path:
    """Skip (fail under CI) unless the directory ``path`` (usually under ../shared/data) exists."""
    path = Path(path)
    if not path.is_dir():
        _missing(f"{what or 'data'} not present at {path} (it sits beside the project in CI)", allow_module_level)
    return path
