#!/usr/bin/env bash
# Create or reuse .venv-dolfinx: Python 3.12 with DOLFINx 0.11 (wheel dolfinx-solver-real, which
# brings MPICH and its mpiexec into .venv-dolfinx/bin), dolfinx-external-operator and the runtime
# part of neumat (no torch). Idempotent: a second run installs nothing unless pyproject.toml or
# this script is newer than the stamp. Used by `make dolfinx-env` (and so by `make test`).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-dolfinx
STAMP=$VENV/.neumat-dolfinx-installed

if [ -f "$STAMP" ] && [ "$STAMP" -nt pyproject.toml ] && [ "$STAMP" -nt .ci/setup-dolfinx.sh ] \
   && [ -x "$VENV/bin/python" ]; then
  exit 0
fi

# the wheel is cp312-abi3: any Python >= 3.12; prefer pyenv's 3.12, else python3.12 on PATH
PY=""
for c in "$HOME"/.pyenv/versions/3.12*/bin/python3.12; do
  [ -x "$c" ] && PY=$c
done
if [ -z "$PY" ]; then
  PY=$(command -v python3.12 || true)
fi
if [ -z "$PY" ]; then
  echo "setup-dolfinx: no Python 3.12 found (looked in ~/.pyenv/versions/3.12*/bin and on PATH);" \
       "the DOLFINx wheel dolfinx-solver-real needs Python >= 3.12" >&2
  exit 1
fi

# a venv left from another interpreter (or half-made) is rebuilt
if [ -x "$VENV/bin/python" ] && ! "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info[:2] < (3, 12))'; then
  rm -rf "$VENV"
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"

echo "setup-dolfinx: installing DOLFINx 0.11 and neumat's runtime into $VENV ($("$VENV/bin/python" -V))"
P="$VENV/bin/python -m pip install -q"
$P --upgrade pip
$P numpy scipy onnx onnxruntime meshio h5py 'dolfinx-solver-real==0.11.*'
# it declares a dependency on the name fenics-dolfinx, which the wheel above does not carry
$P --no-deps 'dolfinx-external-operator==0.11.*'
# (setuptools' build warnings about the editable install go to a log, shown only on failure)
$P --no-deps -e . >"$VENV/pip-editable.log" 2>&1 || { cat "$VENV/pip-editable.log" >&2; exit 1; }
"$VENV/bin/python" -c 'import dolfinx_solver, dolfinx, dolfinx_external_operator, fem_bridge'
touch "$STAMP"
echo "setup-dolfinx: done ($VENV/bin/python, $VENV/bin/mpiexec)"
