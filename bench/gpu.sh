#!/usr/bin/env bash
# bench/gpu.py on the lent GPU machine (the one-line device command is in bench/gpu.py's docstring).
#
# That machine reaches no package registry, and its python3 (3.12, /opt/torch/.venv) already holds torch with
# CUDA, numpy, pyyaml, matplotlib and pytest: everything the check needs.  So no venv is made and nothing is
# installed: the checkout goes on PYTHONPATH (the project's .venv is CPU-only and ~1.9 GB: it cannot travel).
# Should a package be missing there, carry its wheels in .whl/ (see the device README); they are installed
# into /tmp/site from the folder alone.  Arguments go to bench/gpu.py (e.g. --steps quality-word).
set -uo pipefail
cd "$(dirname "$0")/.."
export OUT="${OUT:-$PWD/gpu-out}" PYTHONUNBUFFERED=1 MPLBACKEND=Agg
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
if [ -d .whl ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="/tmp/site:$PYTHONPATH"
fi
if ! "$PY" -c 'import torch, numpy, yaml, matplotlib, pytest' 2>/dev/null; then
  echo "gpu.sh: $(command -v "$PY") lacks one of torch, numpy, pyyaml, matplotlib, pytest: carry wheels in .whl/" >&2
  exit 3
fi
"$PY" -c 'import sys, torch; print(f"gpu.sh: {sys.executable} (Python {sys.version.split()[0]}), torch {torch.__version__},"
           f" CUDA {torch.version.cuda}, GPU {torch.cuda.get_device_name() if torch.cuda.is_available() else None}")'
if [ ! -d bench/out/gpu-data ] && [ ! -d ../shared/data ] && [ -z "${SEQLAB_DATA:-}" ]; then
  echo "gpu.sh: no corpora (bench/out/gpu-data not carried, no ../shared/data): the quality steps will fail" >&2
fi
exec "$PY" bench/gpu.py "$@"
