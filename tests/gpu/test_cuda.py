"""The recipes on a CUDA GPU: bf16 autocast, torch.compile, the fast path. Skipped without one.

CI has no GPU, so every piece here also has a CPU test (``tests/job_templates``); these catch what
only CUDA shows: pinned-memory copies, compiled graphs, a bf16 teacher, fused AdamW. Run them on a
GPU machine with ``python -m pytest tests/gpu`` (``benchmarks/gpu_check.sh`` does).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from genai_cloud.loading import load_spec
from job_templates import entrypoint

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _run(spec: dict, run: Path) -> dict:
    run.mkdir(parents=True, exist_ok=True)
    (run / "spec.json").write_text(load_spec(spec).to_json())
    code = entrypoint.main([f"--spec={run / 'spec.json'}", f"--model-dir={run / 'model'}",
                            f"--checkpoint-dir={run / 'ckpt'}", f"--output-dir={run / 'out'}"])  # fmt: skip
    assert code == 0
    return json.loads((run / "out" / "metrics.json").read_text())


def test_finetune_takes_the_fast_path_and_learns(make_spec, tmp_path):
    spec = make_spec(compute={"accelerator": "H100"}, training={"max_steps": 30, "log_every": 10})
    metrics = _run(spec, tmp_path)
    assert metrics["precision"] == ("bf16" if torch.cuda.is_bf16_supported() else "fp16")
    assert metrics["compiled"] is True
    assert metrics["perplexity_after"] < metrics["perplexity_before"] / 3
    assert len(metrics["train_losses"]) == 30 and metrics["tokens_per_s"] > 0


def test_random_init_pads_the_vocabulary_and_saves_a_loadable_model(make_spec, tmp_path):
    from transformers import AutoModelForCausalLM

    spec = make_spec(compute={"accelerator": "H100"}, model={"init": "random"},
                     training={"max_steps": 5})  # fmt: skip
    _run(spec, tmp_path)
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "model")
    assert model.get_input_embeddings().weight.shape[0] % 64 == 0


def test_distill_with_a_bf16_compiled_teacher(make_spec, tiny_gpt2, tmp_path):
    spec = make_spec(task="distill", name="gpu-distill", compute={"accelerator": "H100"},
                     distill={"teacher": str(tiny_gpt2), "student_layers": 1},
                     training={"max_steps": 20, "log_every": 10})  # fmt: skip
    metrics = _run(spec, tmp_path)
    assert metrics["student_params"] < metrics["teacher_params"]
    assert all(math.isfinite(loss) for loss in metrics["train_losses"])


def test_wanda_2_4_prune_on_the_gpu(make_spec, tmp_path):
    spec = make_spec(task="prune", name="gpu-prune", compute={"accelerator": "H100"},
                     prune={"method": "wanda", "pattern": "2:4", "sparsity": 0.5,
                            "calibration_batches": 2, "recovery_steps": 5})  # fmt: skip
    metrics = _run(spec, tmp_path)
    assert metrics["sparsity_pruned_layers"] == 0.5
