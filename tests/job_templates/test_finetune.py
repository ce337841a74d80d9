"""The finetune recipe end to end: in-process through the entrypoint, and through the local runner
(the same bundle and subprocess a cloud job runs), including kill -9 / SIGTERM / --preempt-at."""

from __future__ import annotations

import json
import random
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from genai_cloud.loading import load_spec
from job_templates import entrypoint

torch = pytest.importorskip("torch")
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
STEP_LINE = re.compile(r"INFO step (\d+)/\d+")
CHECKPOINT_EVERY = 5


def _run_in_process(spec: dict, tmp_path: Path) -> tuple[int, Path]:
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(load_spec(spec).to_json())
    code = entrypoint.main([f"--spec={spec_path}", f"--model-dir={tmp_path / 'model'}",
                            f"--checkpoint-dir={tmp_path / 'ckpt'}",
                            f"--output-dir={tmp_path / 'out'}"])  # fmt: skip
    return code, tmp_path


def _weights(model_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(model_dir / "model.safetensors")


# ---- bad input: exit 2, a message naming the place, nothing written -------------------------


def test_malformed_jsonl_names_file_and_line(make_spec, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": "also fine"}\n{"text": "broken\n')
    code, _ = _run_in_process(make_spec(data={"train": str(bad)}), tmp_path)
    assert code == entrypoint.EXIT_INPUT_ERROR
    assert re.search(r"bad\.jsonl:3: malformed JSON", capsys.readouterr().err)
    assert not (tmp_path / "out" / "metrics.json").exists() and not (tmp_path / "model").exists()


def test_max_seq_len_beyond_positions_is_rejected(make_spec, tmp_path, capsys):
    code, _ = _run_in_process(make_spec(data={"max_seq_len": 1024}), tmp_path)
    assert code == entrypoint.EXIT_INPUT_ERROR
    assert (
        "data.max_seq_len: 1024 is longer than the model's 256 positions" in capsys.readouterr().err
    )


@pytest.mark.slow
def test_classification_head_reports_accuracy_and_f1(make_spec, tmp_path):
    spec = make_spec(
        model={"head": "sequence-classification"},
        data={"train": str(EXAMPLES / "data" / "tickets.jsonl"), "format": "classification",
              "eval_fraction": 0.2, "packing": False},
        training={"max_steps": 30, "batch_size": 16, "lr": 5e-3, "log_every": 10},
    )  # fmt: skip
    code, run = _run_in_process(spec, tmp_path)
    assert code == 0
    metrics = json.loads((run / "out" / "metrics.json").read_text())
    assert metrics["accuracy_after"] > max(metrics["accuracy_before"], 0.6)
    assert 0 < metrics["f1_macro_after"] <= 1
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(run / "model")
    assert set(model.config.id2label.values()) == {"billing", "feature", "outage"}


# ---- through the local runner ------------------------------------------------------------------


def _runner_spec(make_spec) -> dict:
    return make_spec(
        training={"max_steps": 24, "log_every": 1, "checkpoint_every": CHECKPOINT_EVERY,
                  "eval_batches": 2, "keep_checkpoints": 2},
        # One thread: the runs are compared bit for bit, and 2-core CI machines run other tests.
        env={"OMP_NUM_THREADS": "1"},
    )  # fmt: skip


class _Watch:
    """A log stream for run_local that calls ``action(step)`` once the job logs ``step >= at``."""

    def __init__(self, at: int, action):
        self.at, self.action, self.fired, self.text = at, action, None, []

    def write(self, text: str) -> None:
        self.text.append(text)
        match = STEP_LINE.search(text)
        if match and self.fired is None and int(match.group(1)) >= self.at:
            self.fired = int(match.group(1))
            self.action(self.fired)

    def flush(self) -> None:
        pass

    def steps(self) -> list[int]:
        return [int(m) for m in STEP_LINE.findall("".join(self.text))]


@pytest.fixture
def popen_calls(monkeypatch):
    """Record the Popen objects run_local starts, so a test can signal the job process."""
    started = []

    class Recording(subprocess.Popen):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            started.append(self)

    monkeypatch.setattr(subprocess, "Popen", Recording)
    return started


@pytest.fixture(scope="module")
def reference(make_spec, tmp_path_factory):
    """One uninterrupted run of the runner spec: the end-to-end result and the weights to match."""
    from genai_cloud.providers.local import run_local

    run = run_local(_runner_spec(make_spec), run_dir=tmp_path_factory.mktemp("reference"),
                    stream=_Watch(10**9, None))  # fmt: skip
    assert run.returncode == 0, (run.run_dir / "job.log").read_text()[-3000:]
    return run


@pytest.mark.slow
def test_local_run_end_to_end(reference):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    metrics = reference.metrics
    assert metrics["steps"] == 24 and len(metrics["train_losses"]) == 24
    assert metrics["perplexity_after"] < metrics["perplexity_before"] / 5
    assert metrics["non_pad_fraction"] >= 0.95 and metrics["tokens_per_s"] > 0
    assert (reference.output_dir / "plots" / "loss.png").read_bytes()[:4] == b"\x89PNG"
    AutoModelForCausalLM.from_pretrained(reference.model_dir)
    AutoTokenizer.from_pretrained(reference.model_dir)


@pytest.mark.slow
def test_kill_9_then_rerun_gives_bit_identical_weights(make_spec, reference, popen_calls, tmp_path):
    from genai_cloud.providers.local import run_local

    kill_at = random.Random().randint(3, 18)
    print(f"kill -9 at step >= {kill_at}")
    watch = _Watch(kill_at, lambda step: popen_calls[-1].kill())
    killed = run_local(_runner_spec(make_spec), run_dir=tmp_path, stream=watch)
    assert killed.returncode == 128 + signal.SIGKILL  # as a shell reports it
    last_logged = max(watch.steps())

    resumed = run_local(_runner_spec(make_spec), run_dir=tmp_path, stream=_Watch(10**9, None))
    assert resumed.returncode == 0
    start = resumed.metrics["resumed_from_step"] or 0  # killed before the first checkpoint: 0
    assert last_logged - start <= CHECKPOINT_EVERY
    assert resumed.metrics["train_losses"] == reference.metrics["train_losses"]
    expected, got = _weights(reference.model_dir), _weights(resumed.model_dir)
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[k], got[k]) for k in expected)


@pytest.mark.slow
def test_sigterm_flushes_a_checkpoint_quickly_and_exits_143(make_spec, popen_calls, tmp_path):
    from genai_cloud.providers.local import run_local

    sent = {}

    def terminate(step):
        sent["at"], sent["step"] = time.monotonic(), step
        popen_calls[-1].send_signal(signal.SIGTERM)

    run = run_local(_runner_spec(make_spec), run_dir=tmp_path, stream=_Watch(6, terminate))
    flush_s = time.monotonic() - sent["at"]
    assert run.returncode == entrypoint.EXIT_PREEMPTED
    assert flush_s < 30, f"SIGTERM to exit took {flush_s:.1f}s"  # SageMaker allows 120 s
    steps = sorted(int(p.name.split("-")[1]) for p in (tmp_path / "checkpoints").glob("step-*"))
    assert steps and steps[-1] >= sent["step"]
    assert not (run.output_dir / "metrics.json").exists()


@pytest.mark.slow
def test_preempt_at_exits_143_and_a_rerun_completes(make_spec, reference, tmp_path):
    from genai_cloud.providers.local import run_local

    first = run_local(_runner_spec(make_spec), run_dir=tmp_path, preempt_at=7,
                      stream=_Watch(10**9, None))  # fmt: skip
    assert first.returncode == entrypoint.EXIT_PREEMPTED
    assert (tmp_path / "checkpoints" / "step-00000007").is_dir()
    second = run_local(_runner_spec(make_spec), run_dir=tmp_path, stream=_Watch(10**9, None))
    assert second.returncode == 0 and second.metrics["resumed_from_step"] == 7
    expected, got = _weights(reference.model_dir), _weights(second.model_dir)
    assert all(torch.equal(expected[k], got[k]) for k in expected)
