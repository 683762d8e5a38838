#!/usr/bin/env bash
# The accelerator check in one command (under 5 minutes on one H100/H200):
#
#   benchmarks/device_check.sh          # full size, on the accelerator machine
#   benchmarks/device_check.sh cpu      # the same steps at a CPU size, to try it first
#   benchmarks/device_check.sh full --stages=grid,torch --deadline_s=420
#                                       # options after the size go to device_check.py
#
# It needs the Python packages of lt_jax. On an offline machine that has jax, flax, optax,
# orbax and torch but not ml_collections, clu or tensorboardX (runs on in-memory arrays need
# no grain), fetch those three where pip works, into .whl/ (ignored by git; pure Python):
#   pip download --no-deps -d .whl ml_collections==1.1.0 clu==0.0.12 tensorboardX==2.6.5
# and copy .whl/ along; this script installs them. Fashion-MNIST's IDX files (about 30 MB) are
# read from $FMNIST_DIR, else .data/fashion-mnist/ (ignored; copy it along too), else Debian's
# /usr/share/datasets/fashion-mnist.
# The table is also written to $OUT/device_check.json when $OUT is set.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=full
if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then SIZE="$1"; shift; fi
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/lt_jax_site .whl/*.whl
  export PYTHONPATH="/tmp/lt_jax_site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
FMNIST="${FMNIST_DIR:-}"
if [ -z "$FMNIST" ]; then
  for d in .data/fashion-mnist /usr/share/datasets/fashion-mnist; do
    if [ -d "$d" ]; then FMNIST="$d"; break; fi
  done
fi
if [ -z "$FMNIST" ]; then
  echo "error: no Fashion-MNIST IDX folder: set FMNIST_DIR or copy the four files to" \
       ".data/fashion-mnist (apt-get install dataset-fashion-mnist puts them in" \
       "/usr/share/datasets/fashion-mnist)" >&2
  exit 2
fi
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && PY=.venv/bin/python
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
"$PY" -c "import jax; print('jax', jax.__version__, jax.devices())"
"$PY" benchmarks/device_check.py --size="$SIZE" --fmnist_dir="$FMNIST" \
  ${OUT:+--json="$OUT/device_check.json"} "$@"
