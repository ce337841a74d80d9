"""Building on earlier runs (genai_cloud/runs.py): runs/latest/<spec name>, run:NAME references,
and training.resume_from continuing another run's checkpoint."""

from __future__ import annotations

import io
import json

import pytest

from genai_cloud.errors import SpecError
from genai_cloud.runs import find_run, mark_latest
from genai_cloud.loading import load_spec


def _fake_run(root, job: str):
    run = root / job
    (run / "model").mkdir(parents=True)
    (run / "checkpoints" / "step-00000004").mkdir(parents=True)
    return run


def test_latest_points_at_the_newest_finished_run(tmp_path):
    root = tmp_path / "runs"
    first, second = _fake_run(root, "demo-aaaa"), _fake_run(root, "demo-bbbb")
    link = mark_latest("demo", first, root)
    assert find_run("demo", root) == first.resolve()
    mark_latest("demo", second, root)
    assert link.is_symlink() and str(link.readlink()) == "../demo-bbbb"  # relative: movable
    assert find_run("demo", root) == second.resolve()
    assert find_run("demo-aaaa", root) == first.resolve()  # a job name finds its own run
    assert find_run("other", root) is None and find_run("latest", root) is None


def test_run_references_resolve_to_the_run_folders(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = _fake_run(tmp_path / "runs", "demo-aaaa")
    mark_latest("demo", run, tmp_path / "runs")
    spec = load_spec({"name": "next", "model": {"name_or_path": "run:demo"},
                      "data": {"train": "/data/train.jsonl"},
                      "training": {"resume_from": "run:demo-aaaa"}})  # fmt: skip
    assert spec.model.name_or_path == str(run.resolve() / "model")
    assert spec.training.resume_from == str(run.resolve() / "checkpoints")


def test_an_unknown_run_lists_the_runs_there(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    mark_latest("demo", _fake_run(tmp_path / "runs", "demo-aaaa"), tmp_path / "runs")
    path = tmp_path / "spec.yaml"
    path.write_text("name: next\nmodel:\n  name_or_path: run:nope\ndata: {train: /d.jsonl}\n")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert info.value.errors == [(
        "model.name_or_path (line 3): no run 'nope' in runs/ (runs: demo, demo-aaaa); give a job "
        "name or the name of a spec that has finished a run")]  # fmt: skip


def test_resume_from_without_a_checkpoint_names_the_field(tmp_path):
    from job_templates.common.checkpoint import resume_source
    from job_templates.config import JobError

    assert resume_source(None) is None
    (tmp_path / "step-00000002").mkdir()  # incomplete: no state.pt
    with pytest.raises(JobError, match=r"training\.resume_from: no complete checkpoint"):
        resume_source(tmp_path)


@pytest.mark.slow
def test_a_second_spec_continues_the_first_runs_checkpoint(make_spec, tmp_path, monkeypatch):
    """Run 4 steps with the local runner, then start a 6-step spec from run:<spec name>."""
    from genai_cloud.providers.local import run_local
    from job_templates import entrypoint

    monkeypatch.chdir(tmp_path)
    first = load_spec(make_spec(training={"max_steps": 4, "checkpoint_every": 2},
                                env={"OMP_NUM_THREADS": "1"}))  # fmt: skip
    run = run_local(first, stream=io.StringIO())
    assert run.returncode == 0, (run.run_dir / "job.log").read_text()[-2000:]
    assert (tmp_path / "runs" / "latest" / "tiny-finetune").resolve() == run.run_dir.resolve()

    second = load_spec(make_spec(name="tiny-continued",
                                 model={"name_or_path": "run:tiny-finetune"},
                                 training={"max_steps": 6, "resume_from": "run:tiny-finetune"}))  # fmt: skip
    assert second.model.name_or_path == str(run.run_dir.resolve() / "model")
    spec_path = tmp_path / "second.json"
    spec_path.write_text(second.to_json())
    code = entrypoint.main([f"--spec={spec_path}", f"--model-dir={tmp_path / 'm2'}",
                            f"--checkpoint-dir={tmp_path / 'c2'}", f"--output-dir={tmp_path / 'o2'}"])  # fmt: skip
    assert code == 0
    metrics = json.loads((tmp_path / "o2" / "metrics.json").read_text())
    assert metrics["resumed_from_step"] == 4 and metrics["steps"] == 6
    assert len(metrics["train_losses"]) == 6  # the first run's 4 losses came with its checkpoint
