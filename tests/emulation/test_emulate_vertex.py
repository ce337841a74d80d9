"""--emulate vertex: every replica of the rendered CustomJob runs its container command."""

from __future__ import annotations

import io
import json

import pytest

from genai_cloud.loading import load_spec
from genai_cloud.providers.local import run_local
from genai_cloud.providers.vertex.emulation import cluster_spec, relocate


def _run(spec: dict, tmp_path, **options):
    log = io.StringIO()
    run = run_local(load_spec(spec), emulate="vertex", run_dir=tmp_path / "job", stream=log,
                    **options)  # fmt: skip
    return run, log.getvalue()


def test_the_rendered_container_command_runs_against_the_fuse_mount(quick_spec, tmp_path,
                                                                    replica_python):  # fmt: skip
    spec = quick_spec()
    run, log = _run(spec, tmp_path, python=replica_python("vertex", spec))
    assert run.returncode == 0, log[-3000:]
    job = json.loads((tmp_path / "job" / "custom_job.json").read_text())
    (pool,) = job["job_spec"]["worker_pool_specs"]
    script = pool["container_spec"]["command"][2]
    # The job ran from the bundle the script untars from /gcs/<bucket>/..., laid out there.
    bundle = script.split("tar -xzf ", 1)[1].split()[0]
    assert bundle.startswith("/gcs/genai-emulated/genai-cloud/bundles/")
    assert (tmp_path / "job" / "gcs" / bundle[len("/gcs/"):]).is_file()
    assert (tmp_path / "job" / "workerpool0-0" / "tmp" / "genai-bundle" / "run_job.py").is_file()
    # Its data came through GENAI_CHANNEL_TRAIN=gs://..., its outputs went below AIP_MODEL_DIR.
    env = {e["name"]: e["value"] for e in pool["container_spec"]["env"]}
    assert env["GENAI_CHANNEL_TRAIN"].startswith("gs://genai-emulated/inputs/")
    base = job["job_spec"]["base_output_directory"]["output_uri_prefix"]
    out = tmp_path / "job" / "gcs" / base[len("gs://"):]
    assert run.model_dir == out / "model" and (out / "model" / "model.safetensors").is_file()
    assert json.loads((out / "output" / "metrics.json").read_text())["steps"] == 4
    assert max(p.name for p in (out / "checkpoints").iterdir()).endswith("4")
    assert "platform=vertex rank=0/1" in log


def test_cluster_spec_names_every_replica_and_the_task():
    job_spec = {"worker_pool_specs": [{"replica_count": 1}, {"replica_count": 2}]}
    spec = cluster_spec(job_spec, "workerpool1", 1, 2222)
    assert spec["cluster"] == {"workerpool0": ["127.0.0.1:2222"],
                               "workerpool1": ["127.0.0.2:2222", "127.0.0.3:2222"]}  # fmt: skip
    assert spec["task"] == {"type": "workerpool1", "index": 1}


def test_only_the_two_mount_points_move(tmp_path):
    gcs, scratch = tmp_path / "gcs", tmp_path / "node" / "tmp"
    word = "tar -xzf /gcs/b/x.tar.gz -C /tmp/genai-bundle && cd /tmp/genai-bundle # /gcsx /tmpy"
    assert relocate(word, gcs, scratch) == (
        f"tar -xzf {gcs}/b/x.tar.gz -C {scratch}/genai-bundle && cd {scratch}/genai-bundle"
        " # /gcsx /tmpy")  # fmt: skip


@pytest.mark.slow
def test_two_replicas_rendezvous_from_cluster_spec_and_only_the_chief_writes(
        quick_spec, tmp_path, replica_python, created_by_other_ranks):  # fmt: skip
    """Pool 0 (the chief) and pool 1 each run the rendered script, which reads its node rank and
    the chief's address from CLUSTER_SPEC and starts torchrun; the job's interpreter has neither
    genai_cloud nor pydantic."""
    spec = quick_spec(compute={"accelerator": "T4", "nodes": 2})
    run, log = _run(spec, tmp_path, python=replica_python("vertex", spec))
    assert run.returncode == 0, log[-4000:]
    assert "[workerpool0-0] " in log and "[workerpool1-0] " in log
    chief = [line for line in log.splitlines() if line.startswith("[workerpool0-0]")]
    worker = [line for line in log.splitlines() if line.startswith("[workerpool1-0]")]
    assert any("platform=vertex rank=0/2" in line for line in chief)
    assert any("platform=vertex rank=1/2" in line for line in worker)
    # Shared storage: the chief alone saves the model and checkpoints.
    assert any("checkpoint " in line and "written" in line for line in chief)
    assert not any("checkpoint " in line and "written" in line for line in worker)
    assert not any("Writing model shards" in line for line in worker)
    assert (run.model_dir / "model.safetensors").is_file()
    # On the filesystem: nothing under the job's outputs was created by the worker's processes.
    shared = run.model_dir.parent
    assert created_by_other_ranks(shared) == []
