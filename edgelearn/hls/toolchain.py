"""Optional dependencies of the HLS export and the local C-simulation tool chain (g++ + Xilinx ap_types headers).

hls4ml and brevitas are an optional extra (``pip install edgelearn[hls]``): importing :mod:`edgelearn.hls` never
needs them; the functions that do call :func:`require` first, which raises :class:`MissingDependencyError` (an
:class:`~edgelearn.errors.EdgelearnError`, so the CLI prints one line) naming the extra to install.

The learning kernel's C-simulation needs only g++ and the ``ap_fixed`` headers; the Xilinx headers that hls4ml
bundles (``hls4ml/templates/vivado/ap_types``) are used, or any directory given in ``EDGELEARN_AP_TYPES``.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..errors import EdgelearnError

__all__ = ["MissingDependencyError", "HLSBuildError", "require", "have", "ap_types_dir", "find_gxx",
           "compile_cached", "cache_root"]

#: what each optional module is needed for, and which extra provides it
_EXTRAS = {
    "hls4ml": "the hls4ml inference project (pip install 'edgelearn[hls]', hls4ml==1.3.0)",
    "brevitas": "quantization-aware training and the QONNX export (pip install 'edgelearn[hls]', "
                "brevitas[export]==0.13.4)",
    "qonnx": "cleaning the exported QONNX graph (pip install 'edgelearn[hls]': brevitas[export] brings qonnx)",
    "onnx": "the QONNX export (pip install 'edgelearn[hls]': brevitas[export] brings onnx)",
}


class MissingDependencyError(EdgelearnError):
    """An optional dependency (hls4ml, brevitas, qonnx, g++) is not installed."""


class HLSBuildError(EdgelearnError):
    """Compiling or running a generated C-simulation failed."""


def have(module: str) -> bool:
    """True when ``module`` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require(*modules: str) -> None:
    """Raise :class:`MissingDependencyError` unless every module is installed."""
    missing = [m for m in modules if not have(m)]
    if missing:
        why = "; ".join(f"{m} is needed for {_EXTRAS.get(m, 'the HLS export')}" for m in missing)
        raise MissingDependencyError(f"{', '.join(missing)} not installed: {why}")


def ap_types_dir() -> Path | None:
    """Directory holding ``ap_fixed.h``: ``$EDGELEARN_AP_TYPES``, else the copy bundled with hls4ml."""
    env = os.environ.get("EDGELEARN_AP_TYPES")
    if env:
        p = Path(env)
        return p if (p / "ap_fixed.h").is_file() else None
    try:
        spec = importlib.util.find_spec("hls4ml")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        return None
    for base in spec.submodule_search_locations:
        cand = Path(base) / "templates" / "vivado" / "ap_types"
        if (cand / "ap_fixed.h").is_file():
            return cand
    return None


def find_gxx() -> str | None:
    return shutil.which(os.environ.get("CXX", "g++")) or shutil.which("g++")


def cache_root() -> Path:
    """Where compiled C-simulation binaries are kept (``$EDGELEARN_HLS_CACHE``, default ~/.cache/edgelearn/hls)."""
    env = os.environ.get("EDGELEARN_HLS_CACHE")
    root = Path(env) if env else Path.home() / ".cache" / "edgelearn" / "hls"
    try:
        root.mkdir(parents=True, exist_ok=True)
        return root
    except OSError:
        return Path(tempfile.mkdtemp(prefix="edgelearn-hls-"))


def compile_cached(sources: list[Path], include_dirs: list[Path], name: str, opt: str = "-O1",
                   extra_flags: list[str] | None = None, cache: bool = True) -> Path:
    """Compile ``sources`` into an executable with g++ (C++14) and return its path.

    The binary is cached under :func:`cache_root` by a hash of the sources, every header in ``include_dirs``
    that the sources can see (the generated firmware folder), the flags and the compiler version, so a second
    call with the same project costs nothing."""
    gxx = find_gxx()
    if gxx is None:
        raise MissingDependencyError("g++ not found: the C-simulation of the generated HLS code needs a C++ compiler "
                                     "(set CXX or install g++)")
    flags = ["-std=c++14", opt, "-w", *(extra_flags or [])]
    h = hashlib.sha256()
    h.update(" ".join(flags).encode())
    try:
        h.update(subprocess.run([gxx, "--version"], capture_output=True, text=True, timeout=30).stdout.encode())
    except (OSError, subprocess.SubprocessError) as exc:
        raise MissingDependencyError(f"cannot run {gxx}: {exc}") from None
    for src in sources:
        h.update(Path(src).read_bytes())
    for inc in include_dirs:
        inc = Path(inc)
        if inc.is_dir() and (inc / "ap_fixed.h").is_file():
            h.update(str(inc.resolve()).encode())  # the ap_types headers: identified by their location
            continue
        for hdr in sorted(inc.rglob("*.h")):
            h.update(hdr.name.encode())
            h.update(hdr.read_bytes())
    key = h.hexdigest()[:20]
    root = cache_root()
    exe = root / f"{name}-{key}"
    if cache and exe.is_file():
        return exe
    with tempfile.TemporaryDirectory(prefix="edgelearn-build-") as tmp:
        out = Path(tmp) / name
        cmd = [gxx, *flags, *(f"-I{Path(i)}" for i in include_dirs), *(str(s) for s in sources), "-o", str(out)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise HLSBuildError(f"g++ failed building {name}:\n{res.stderr[-4000:]}")
        staged = root / f".{name}-{key}.{os.getpid()}"
        shutil.copy2(out, staged)
        os.replace(staged, exe)  # atomic: a concurrent build never exposes a half-written binary
    return exe
