#!/usr/bin/env bash
# `make gpu-check`: see benchmarks/gpu_check.py. Needs no package registry: it runs on whatever Python
# has torch, triton, lightning, torchmetrics and numpy (.venv if there is one, else python3), with the
# repository on PYTHONPATH instead of an installed package.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" benchmarks/gpu_check.py "$@"
