#!/usr/bin/env bash
# Builds (or reuses) the torch_xla virtualenv that the XLA tests (tests/xla/) and
# benchmarks/train_xla.py run under, and prints its python. torch_xla pins its torch exactly
# (2.9.0 here), which the main environment does not have, hence a venv of its own.
#
#   tests/xla/build_venv.sh [DIR]        default DIR: .ci/.xla (git-ignored)
#   export GENAI_XLA_PYTHON="$(tests/xla/build_venv.sh)"
#
# The rest of the stack matches what the job needs (job_templates/requirements.txt) at the
# versions of the main environment where torch 2.9 allows it. Rebuilt when this list changes.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dir="${1:-$here/../../.ci/.xla}"
# CPython 3.11 is what this was checked with (torch_xla 2.9 wheels exist for 3.10 and up).
python="${GENAI_XLA_BASE_PYTHON:-$(command -v python3.11 || command -v python3)}"

# transformers as in the main environment: examples/tiny-gpt2's tokenizer files need 5.x.
packages=(
  "torch==2.9.0" "torch_xla==2.9.0" "transformers==5.24.0"
  "accelerate" "safetensors" "tokenizers" "peft" "tqdm" "numpy" "matplotlib"
  "pydantic>=2" "pyyaml"  # genai_cloud.spec: the tests build spec.json the way the SDK does
)
stamp="$dir/.genai-xla-packages"
if [ -x "$dir/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "${packages[*]}" ]; then
  echo "$dir/bin/python"
  exit 0
fi
rm -rf "$dir"
"$python" -m venv "$dir"
"$dir/bin/pip" install -q --disable-pip-version-check "${packages[@]}" >&2
"$dir/bin/python" -c "import torch_xla, transformers" >&2
echo "${packages[*]}" > "$stamp"
echo "$dir/bin/python"
