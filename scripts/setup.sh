#!/usr/bin/env bash
# One-time, idempotent set-up on Debian: system packages (iverilog, yosys, nextpnr-ice40, icestorm, g++, make, ccache)
# and a virtual environment in .venv with the pinned versions of requirements.lock. Re-running it does nothing when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

need_apt=()
command -v iverilog >/dev/null 2>&1 || need_apt+=(iverilog)
command -v yosys >/dev/null 2>&1 || need_apt+=(yosys)
command -v nextpnr-ice40 >/dev/null 2>&1 || need_apt+=(nextpnr-ice40)  # edgelearn rtl --synth ice40-*
command -v icepack >/dev/null 2>&1 || need_apt+=(fpga-icestorm)        # its chip database tools
command -v g++ >/dev/null 2>&1 || need_apt+=(g++)
command -v make >/dev/null 2>&1 || need_apt+=(make)
command -v ccache >/dev/null 2>&1 || need_apt+=(ccache)  # Verilator builds reuse their run-time objects
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing system packages: ${need_apt[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
stamp_want=$(cat requirements.lock pyproject.toml | sha256sum | cut -c1-16)
stamp_file=.venv/.edgelearn-setup
if [ -x .venv/bin/python ] && [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$stamp_want" ]; then
  exit 0
fi
echo "setup: creating the virtual environment in $root/.venv"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch first and alone: the CPU build (never let a resolver pull a CUDA build)
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -r requirements.lock
.venv/bin/python -m pip install -q --no-deps -e . >/dev/null 2>&1 || .venv/bin/python -m pip install --no-deps -e .
# compile the engine's and the twin's Numba kernels once into their on-disk cache (edgelearn/fixed/__pycache__/
# numba-<hash of the kernel modules>, edgelearn/fixed/numba_cache.py):
# the first simulate, and every test process, then load them instead of compiling. One run per word storage
# (the 8-, 16- and 32-bit presets keep their words in int8, int16 and int32 arrays: a specialisation each, about
# 1.5 minutes each); sequential, so no two processes rewrite a kernel's cache index at once
echo "setup: compiling the fixed-point engine's kernels (once)"
warm=$(mktemp -d)
for bits in 8 16 32; do
  .venv/bin/python -m edgelearn simulate --bits "$bits" --epochs 1 --n-train 64 --n-test 16 --quiet \
    --out "$warm/b$bits" >/dev/null
done
rm -rf "$warm"
echo "$stamp_want" > "$stamp_file"
echo "setup: done"
