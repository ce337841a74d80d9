"""Data-parallel training through torchrun (gloo on CPU): 2 processes with half the batch each
follow the loss curve of 1 process with the whole batch, and only rank 0 writes outputs."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

# Measured on this fixture: the largest relative difference between the two curves is ~1e-7
# (float32 sums in a different order: 2 shards then an all-reduce). 1e-5 leaves room for other
# CPUs' kernels while still catching a wrong batch split (those differ at 1e-2 and more).
RTOL = 1e-5


def _spec(make_spec, model: Path, data: Path, batch_size: int) -> dict:
    return make_spec(
        model={"name_or_path": str(model)},
        data={"train": str(data)},
        training={"max_steps": 6, "batch_size": batch_size, "log_every": 1, "checkpoint_every": 3,
                  "eval_batches": 2, "warmup_steps": 0},
        env={"OMP_NUM_THREADS": "1"},
    )  # fmt: skip


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


@pytest.mark.slow
def test_two_processes_match_one_with_the_same_global_batch(make_spec, no_dropout_gpt2,
                                                          small_corpus, tmp_path):  # fmt: skip
    from genai_cloud.loading import load_spec
    from genai_cloud.providers.local import run_local
    from job_templates import entrypoint

    # The 1-process reference runs in this process (no second interpreter start-up to pay for).
    one = tmp_path / "one"
    one.mkdir()
    single = load_spec(_spec(make_spec, no_dropout_gpt2, small_corpus, 8))
    (one / "spec.json").write_text(single.to_json())
    assert (
        entrypoint.main(
            [
                f"--spec={one / 'spec.json'}",
                f"--model-dir={one / 'model'}",
                f"--checkpoint-dir={one / 'ckpt'}",
                f"--output-dir={one / 'out'}",
            ]
        )
        == 0
    )
    two = run_local(_spec(make_spec, no_dropout_gpt2, small_corpus, 4), nproc=2,
                    run_dir=tmp_path / "two", stream=io.StringIO())  # fmt: skip
    assert two.returncode == 0, (two.run_dir / "job.log").read_text()[-3000:]
    a, b = json.loads((one / "out" / "metrics.json").read_text()), two.metrics
    assert (a["world_size"], b["world_size"]) == (1, 2)
    assert len(a["train_losses"]) == len(b["train_losses"]) == 6
    worst = max(abs(x - y) / abs(x) for x, y in zip(a["train_losses"], b["train_losses"]))
    print(f"largest relative loss difference, 2 ranks vs 1: {worst:.2e}")
    assert worst < RTOL
    assert b["eval_loss_after"] == pytest.approx(a["eval_loss_after"], rel=RTOL)
    assert a["train_losses"][-1] < a["train_losses"][0]  # it did learn something

    # Only rank 0 writes: the same files as the single process, each checkpoint written once.
    assert _files(two.model_dir) == _files(one / "model")
    assert _files(two.output_dir) == _files(one / "out")
    log = (two.run_dir / "job.log").read_text()
    assert len(re.findall(r"checkpoint \S+ written in", log)) == 2, log[-3000:]
    steps = sorted(p.name for p in (two.run_dir / "checkpoints").glob("step-*"))
    assert steps == ["step-00000003", "step-00000006"]
