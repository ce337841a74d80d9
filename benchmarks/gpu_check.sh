#!/usr/bin/env bash
# Issue 5's GPU checks, as one command on a machine with an NVIDIA GPU: the CUDA tests
# (tests/gpu), then benchmarks/train_gpu.py (all four rows: ours, HF Trainer (a) and (b), distill).
# About 6-8 minutes on one H100, most of it torch.compile and HF Trainer (a)'s fp32 steps.
#
# That machine has torch, transformers, peft and pytest but not pydantic, which the SDK side
# (load_spec, run_local) needs. Fetch the wheels once, here, from the repository root:
#
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#       -d .whl pydantic==2.13.4 pydantic-core==2.46.4 annotated-types==0.7.0 \
#       typing-inspection==0.4.2 typing-extensions==4.16.0
#
# then run `bash benchmarks/gpu_check.sh` there, carrying `.whl`. Logs land in $OUT (or ./gpu-out).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu-out}"
mkdir -p "$out"
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    python3 -c "import torch, transformers; print('torch', torch.__version__, '| transformers', transformers.__version__)"
} 2>&1 | tee "$out/machine.txt"

timeout 240 python3 -m pytest -q -p no:cacheprovider tests/gpu 2>&1 | tee "$out/tests_gpu.txt"
timeout 420 python3 benchmarks/train_gpu.py "$@" 2>&1 | tee "$out/train_gpu.txt"
