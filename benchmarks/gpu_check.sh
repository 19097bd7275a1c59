#!/usr/bin/env bash
# vj's GPU check, for a machine with one NVIDIA GPU whose Python has torch (and maybe little else):
# installs the wheels carried in .whl/ (when there are any) into /tmp/site, then runs benchmarks/gpu_check.py:
# CUDA smoke tests of vj render / live (headless) / prerender / a CLIP-guided frame / morph with arch:sd-turbo
# (random weights, float16), then vj bench at 512 with and without --compile, a 30-frame latent-blend transition
# and one guided step; one JSON line at the end (also $OUT/gpu_check.json, full logs in $OUT/gpu_check.log).
# Options go to gpu_check.py (--help). Run from anywhere:
#   benchmarks/gpu_check.sh
#   VJ_GPU_CHECK_DEVICE=cpu VJ_GPU_CHECK_WHEELS=none PYTHON=.venv/bin/python benchmarks/gpu_check.sh \
#       --model tiny --dtype float32 --size 64           # the plumbing on a CPU, with the venv's packages
# PYTHON: the interpreter (default python3); VJ_GPU_CHECK_WHEELS: the wheel folder (default .whl; none: skip).
set -u
cd "$(dirname "$0")/.." || exit 2
PY=${PYTHON:-python3}
WHEELS=${VJ_GPU_CHECK_WHEELS:-.whl}
if [ "$WHEELS" != none ] && compgen -G "$WHEELS/*.whl" >/dev/null; then
    started=$(date +%s)
    if ! "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
            "$WHEELS"/*.whl; then
        echo "gpu_check: installing $WHEELS/*.whl into /tmp/site failed; nothing was run" >&2
        exit 3
    fi
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
    echo "gpu_check: installed $(ls "$WHEELS"/*.whl | wc -l) wheels into /tmp/site in $(( $(date +%s) - started )) s" >&2
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1
exec "$PY" benchmarks/gpu_check.py "$@"
