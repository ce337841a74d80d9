"""Every task, end to end, on a replica of every stack in the runtime table.

Each replica (``python -m tests.stacks.build``) holds the image's Python, torch and transformers
and the runtime's lock, and neither genai_cloud nor pydantic: the job runs from an unpacked bundle
(``python -m job_templates.entrypoint`` with the neutral contract), as in the cloud's container.
A test skips, naming the build command, when its replica is not built on this machine; CI
builds them all first and sets ``GENAI_STACKS_REQUIRED=1``, which turns that skip into a failure.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from genai_cloud.loading import load_spec
from genai_cloud.plan import Plan
from genai_cloud.providers.local import layout, prepare
from genai_cloud.runtimes import stacks


def _build_module():
    # tests/ is not a package (pytest imports test files by their folder), so load it by path.
    spec = importlib.util.spec_from_file_location("_stacks_build", Path(__file__).with_name("build.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


_build = _build_module()
ready_python, venv_dir = _build.ready_python, _build.venv_dir

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
STACKS = stacks()
JOB_TIMEOUT_S = 600

# task -> (example, overrides that keep it to seconds). The examples are the user-facing specs.
FAST = {"log_every": 1, "eval_batches": 1}  # max_steps overrides the examples' epochs
TASKS = {
    "finetune": ("quickstart.yaml", {"training": {"max_steps": 3, **FAST}}),
    "lora": ("quickstart.yaml", {"training": {"max_steps": 3, **FAST},
                                 "model": {"lora": {"r": 4, "alpha": 8}}}),
    "classify": ("classify.yaml", {"training": {"max_steps": 2, "batch_size": 8, **FAST}}),
    "pretrain-scratch": ("scratch-reverse.yaml", {"training": {"max_steps": 5, **FAST},
                                                  "scratch": {"toy_examples": 200}}),
    "distill": ("distill.yaml", {"training": {"max_steps": 3, **FAST}}),
    "prune": ("prune.yaml", {"training": FAST,
                             "prune": {"calibration_batches": 2, "recovery_steps": 2}}),
    "evaluate": ("evaluate.yaml", {"evaluate": {"generate_samples": 1, "max_new_tokens": 4}}),
    "audit": ("audit.yaml", {}),
    "streaming": ("streaming.yaml", {"training": {"max_steps": 3, **FAST}}),
    # The example fine-tunes MiniLM (16 steps), then its fairness gate reports on a held-out
    # set. The gate's thresholds are the example's policy; opened here, the stack test checks that
    # the task runs and reports, whatever figures a stack's kernels give.
    "fairness": ("fairness.yaml", {"fairness": {"bootstrap": 20, "fail_on": {
        "demographic_parity_ratio": 0.0, "equalized_odds_difference": 1.0}}}),
}  # fmt: skip


def _python(lock: str) -> Path:
    python = ready_python(STACKS[lock])
    if python is None:
        reason = (f"replica {lock} not built here ({venv_dir(STACKS[lock])}): run "
                  f"`python -m tests.stacks.build --only {lock}`")  # fmt: skip
        # CI builds every replica first (.ci/run): there a missing one is a failure, not a skip.
        if os.environ.get("GENAI_STACKS_REQUIRED"):
            pytest.fail(reason)
        pytest.skip(reason)
    return python


def run_on_stack(lock: str, task: str, run_dir: Path) -> tuple[subprocess.CompletedProcess, Path]:
    """Run one example task from the bundle the runtime's provider would ship; (result, outputs)."""
    row = STACKS[lock]
    example, overrides = TASKS[task]
    spec = load_spec(EXAMPLES / example, overrides=overrides)
    plan = Plan(spec=spec, provider=row.provider)
    # The replica runs on a CPU, so the spec keeps compute.accelerator: cpu; the bundle still
    # ships the lock of the row under test (a GPU row's, for the GPU images).
    plan.__dict__["runtime"] = row
    lay = layout(plan, emulate="local", run_dir=run_dir)
    prepare(plan, lay)
    assert (lay.code_dir / "requirements.txt").read_text() == row.lock_text()
    # Nothing of this process leaks in: no PYTHONPATH, so genai_cloud is not importable.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(run_dir),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "MPLBACKEND": "Agg",
           "OMP_NUM_THREADS": "1", **lay.env}  # fmt: skip
    command = [str(_python(lock)), *lay.command[1:]]
    result = subprocess.run(command, cwd=lay.code_dir, env=env, capture_output=True, text=True,
                            timeout=JOB_TIMEOUT_S, check=False)  # fmt: skip
    return result, lay.output_dir


@pytest.mark.parametrize("lock", sorted(STACKS))
def test_replica_has_the_stack_and_nothing_of_the_sdk(lock):
    python = _python(lock)
    row = STACKS[lock]
    probe = ("import importlib.util as u, json, platform, torch, transformers;"
             "print(json.dumps([platform.python_version(), torch.__version__,"
             " transformers.__version__, [m for m in ('genai_cloud', 'pydantic')"
             " if u.find_spec(m)]]))")  # fmt: skip
    out = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, check=True,
                         env={"PATH": os.environ.get("PATH", "")}, cwd="/")  # fmt: skip
    py, torch, transformers, sdk = json.loads(out.stdout.strip().splitlines()[-1])
    assert py.startswith(row.python + ".")
    assert torch.split("+")[0] == row.torch
    assert transformers == (row.transformers or row.pinned("transformers"))
    # pydantic may come with the stack itself (transformers 5 -> typer -> pydantic); the job must
    # not need it, which the stacks without it prove by running every task.
    assert sdk == ([] if row.pinned("pydantic") is None else ["pydantic"])


@pytest.mark.slow
@pytest.mark.parametrize("task", list(TASKS))
@pytest.mark.parametrize("lock", sorted(STACKS))
def test_task_runs_on_replica(lock, task, tmp_path):
    result, out = run_on_stack(lock, task, tmp_path / "run")
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    report = REPORTS.get(task, "metrics.json")
    CHECKS[task](json.loads((out / report).read_text()), tmp_path / "run" / "model")


def _saved_model(model_dir: Path) -> None:
    assert (model_dir / "model.safetensors").is_file()
    tokenizer = model_dir / "tokenizer_config.json"
    if tokenizer.is_file():  # loadable by transformers 4.x and 5.x alike
        assert json.loads(tokenizer.read_text()).get("tokenizer_class") != "TokenizersBackend"


def _trained(metrics: dict, model_dir: Path, steps: int) -> None:
    assert metrics["steps"] == steps
    assert len(metrics["train_losses"]) == steps and math.isfinite(metrics["final_train_loss"])
    _saved_model(model_dir)


def _finetuned(m: dict, model_dir: Path) -> None:
    _trained(m, model_dir, 3)
    assert m["lora"] is None and m["perplexity_after"] < m["perplexity_before"]


def _lora(m: dict, model_dir: Path) -> None:
    _trained(m, model_dir, 3)
    assert m["lora"]["r"] == 4  # merged into the saved weights (model.safetensors above)


def _classified(m: dict, model_dir: Path) -> None:
    _trained(m, model_dir, 2)
    assert m["head"] == "sequence-classification" and 0 <= m["accuracy_after"] <= 1


def _scratch(m: dict, model_dir: Path) -> None:
    assert m["steps"] == 5 and len(m["train_loss"]) >= 1
    assert (model_dir / "model.safetensors").is_file()


def _distilled(m: dict, model_dir: Path) -> None:
    _trained(m, model_dir, 3)
    assert m["student_params"] < m["teacher_params"]


def _pruned(m: dict, model_dir: Path) -> None:
    assert m["sparsity_pruned_layers"] == pytest.approx(0.5) and len(m["recovery_losses"]) == 2
    _saved_model(model_dir)


def _streamed(m: dict, model_dir: Path) -> None:
    _trained(m, model_dir, 3)
    assert 1 < m["perplexity_after"] < m["perplexity_before"]


def _evaluated(m: dict, model_dir: Path) -> None:
    assert m["perplexity"]["tokens"] > 0 and 1 < m["perplexity"]["perplexity"] < math.inf
    assert len(m["samples"]) == 1


def _audited(report: dict, model_dir: Path) -> None:
    assert report["duplicates"]["exact"] == 4  # examples/data/audit_reviews.jsonl: 4 repeats


def _fair(report: dict, model_dir: Path) -> None:
    metrics = report["metrics"]
    assert 0 <= metrics["accuracy"] <= 1
    assert {"demographic_parity_ratio", "equalized_odds_difference"} <= set(metrics)


# The fairness example fine-tunes, then its fairness gate reports into output/fairness/.
REPORTS = {"audit": "audit.json", "fairness": "fairness/fairness.json"}
CHECKS = {"finetune": _finetuned, "lora": _lora, "classify": _classified,
          "pretrain-scratch": _scratch, "distill": _distilled, "prune": _pruned,
          "evaluate": _evaluated, "audit": _audited, "streaming": _streamed, "fairness": _fair}  # fmt: skip

def test_the_job_imports_neither_the_sdk_nor_pydantic():
    import ast

    offenders = []
    for path in sorted((EXAMPLES.parent / "job_templates").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level
                     else [])  # fmt: skip
            offenders += [f"{path.name}:{node.lineno} {n}" for n in names
                          if n.split(".")[0] in ("genai_cloud", "pydantic")]  # fmt: skip
    assert offenders == []


def test_a_changed_stack_or_lock_builds_a_new_venv(monkeypatch):
    import dataclasses

    row = STACKS["vertex"]
    before = venv_dir(row)
    assert venv_dir(dataclasses.replace(row, torch="2.4.0")) != before
    monkeypatch.setattr(type(row), "lock_text", lambda self: "transformers==4.57.5\n")
    assert venv_dir(row) != before and venv_dir(row).name.startswith("vertex-")
