"""The package as a user installs it: a wheel that carries everything the CLI reads, run from outside the checkout.

The development set-up installs the project editable, where a path beside the checkout (``models/``, ``hw/``, a
testbench in ``rtl_tb/``) would still be found; these tests build the real wheel, check what it ships, and run the
CLI from its unpacked contents in a folder that is not the repository.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "edgelearn"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # built from a copy of what the wheel is made of: setuptools keeps a build/ folder beside the sources, whose
    # files of an earlier build (since deleted from the package) would otherwise slip into this one
    src = tmp_path_factory.mktemp("src")
    shutil.copytree(PACKAGE, src / "edgelearn", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    # no build isolation: setuptools is in the pinned environment, and the build must not need the network
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(src)], check=True, capture_output=True, text=True)
    (whl,) = out.glob("edgelearn-*.whl")
    return whl


def _package_files() -> set[str]:
    """Every file of the source package that a run may read (sources and data), as wheel member names."""
    return {f"edgelearn/{p.relative_to(PACKAGE).as_posix()}" for p in PACKAGE.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}


def test_the_wheel_ships_every_file_of_the_package(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = sorted(_package_files() - names)
    assert not missing, f"files of the package left out of the wheel: {missing[:10]}"
    # what the CLI reads at run time, named explicitly (a rename must keep them inside the package)
    for need in ("edgelearn/models/fc1-500.yaml", "edgelearn/models/experiments/ldfa-fig3b-all-layers.yaml",
                 "edgelearn/configs/digits-mlp.yaml", "edgelearn/hw/el_layer.v", "edgelearn/hw/el_convert.v",
                 "edgelearn/hw/el_mlp.v.j2", "edgelearn/hw/filelist.f.j2",
                 "edgelearn/hls_templates/el_learn.h", "edgelearn/rtl/bench.py"):
        assert need in names, need
    # the learning kernel's generated files are rendered from these (edgelearn.hls.kernel)
    templates = {f"edgelearn/hls_templates/{t}" for t in (
        "el_codes.h.j2", "parameters.h.j2", "tables.h.j2", "feedback.h.j2", "ports.j2", "kernel.h.j2",
        "kernel.cpp.j2", "kernel_test.cpp.j2", "build_prj.tcl.j2", "build_opt.tcl.j2", "build_csim.sh.j2",
        "README.md.j2")}
    assert templates <= names, sorted(templates - names)
    # and rendered with jinja2, so an install must bring it
    meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
    requires = [ln.split(":", 1)[1].strip().lower() for ln in zipfile.ZipFile(wheel).read(meta).decode().splitlines()
                if ln.startswith("Requires-Dist:")]
    assert any(r.startswith("jinja2") and "extra ==" not in r for r in requires), requires
    assert not any(n.startswith(("tests/", "rtl_tb/", "benchmarks/", "docs/")) for n in names)


@pytest.fixture(scope="module")
def unpacked(wheel, tmp_path_factory) -> Path:
    site = tmp_path_factory.mktemp("site")
    zipfile.ZipFile(wheel).extractall(site)
    return site


def _cli(unpacked: Path, cwd: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """``edgelearn ARGS`` with the unpacked wheel first on the path (ahead of the editable checkout), from ``cwd``."""
    env = dict(os.environ, PYTHONPATH=str(unpacked), NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1")
    code = ("import sys, edgelearn, edgelearn.cli; from pathlib import Path; "
            f"assert Path(edgelearn.__file__).resolve().is_relative_to(Path({str(unpacked)!r}).resolve()), "
            "edgelearn.__file__; sys.exit(edgelearn.cli.main(sys.argv[1:]))")
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_the_installed_package_runs_outside_the_checkout(unpacked, tmp_path):
    """Configs and the hardware sources resolve inside the installed package, from another folder.

    (The whole commands -- simulate, export-hls --check, rtl --check -- run from a fresh virtual environment in
    scripts/check_wheel.sh: each compiles the engine anew for a new install path, minutes on two cores.)"""
    r = _cli(unpacked, tmp_path, "info", "--config", "fc1-500")
    assert r.returncode == 0, r.stderr
    assert "784" in r.stdout and "500" in r.stdout
    r = _cli(unpacked, tmp_path, "info", "--config", "experiments/ldfa-fig3b-all-layers")
    assert r.returncode == 0, r.stderr
    env = dict(os.environ, PYTHONPATH=str(unpacked))
    code = ("import edgelearn.rtl.sim as s, edgelearn.network as n, edgelearn.hls.kernel as k, importlib; "
            "b = importlib.import_module(s.BENCH_MODULE); "
            "print(s.HW_DIR); print(n.MODELS_DIR); print(k.TEMPLATES); print(b.__file__)")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    for line in r.stdout.split():
        assert Path(line).resolve().is_relative_to(unpacked.resolve()), line
        assert Path(line).exists(), line
