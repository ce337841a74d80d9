"""--emulate azureml: the rendered command job, inputs and outputs resolved as Azure mounts them."""

from __future__ import annotations

import io
import json

import pytest

from genai_cloud.errors import GenaiCloudError
from genai_cloud.loading import load_spec
from genai_cloud.providers.azureml.emulation import resolve_command
from genai_cloud.providers.local import run_local


def _run(spec: dict, tmp_path, **options):
    log = io.StringIO()
    run = run_local(load_spec(spec), emulate="azureml", run_dir=tmp_path / "job", stream=log,
                    **options)  # fmt: skip
    return run, log.getvalue()


def test_the_command_runs_in_the_code_snapshot_with_mounted_inputs_and_outputs(
        quick_spec, tmp_path, corpus_path, replica_python):  # fmt: skip
    spec = quick_spec()
    run, log = _run(spec, tmp_path, python=replica_python("azureml", spec))
    assert run.returncode == 0, log[-3000:]
    job = json.loads((tmp_path / "job" / "command_job.json").read_text())
    assert "${{inputs.train}}" in job["command"] and "${{outputs.model}}" in job["command"]
    stores = tmp_path / "job" / "azureml" / "datastores" / "workspaceblobstore" / "paths"
    # The local input was uploaded as the SDK does and mounted where the command said.
    assert job["inputs"]["train"]["path"].startswith("azureml://datastores/workspaceblobstore/")
    uploaded = stores / job["inputs"]["train"]["path"].split("/paths/", 1)[1]
    assert uploaded.read_bytes() == corpus_path.read_bytes()
    # Outputs without a path land in Azure's default place for the job.
    out = stores / "azureml" / job["name"]
    assert run.model_dir == out / "model" and (out / "model" / "model.safetensors").is_file()
    assert json.loads((out / "output" / "metrics.json").read_text())["steps"] == 4
    assert max(p.name for p in (out / "checkpoints").iterdir()).endswith("4")
    assert (tmp_path / "job" / "node-0" / "code" / "run_job.py").is_file()
    assert "platform=azureml rank=0/1" in log


def test_an_undeclared_binding_is_refused():
    assert resolve_command("x ${{inputs.a}} ${{ outputs.b }}",
                           {"inputs.a": "/A", "outputs.b": "/B"}) == "x /A /B"  # fmt: skip
    with pytest.raises(GenaiCloudError, match=r"\$\{\{inputs.c\}\}"):
        resolve_command("x ${{inputs.c}}", {})


@pytest.mark.slow
def test_two_nodes_get_the_pytorch_distribution_env_and_only_rank_0_writes(
        quick_spec, tmp_path, replica_python, created_by_other_ranks):  # fmt: skip
    spec = quick_spec(compute={"accelerator": "T4", "nodes": 2})
    run, log = _run(spec, tmp_path, python=replica_python("azureml", spec))
    assert run.returncode == 0, log[-4000:]
    first = [line for line in log.splitlines() if line.startswith("[node-0.0]")]
    second = [line for line in log.splitlines() if line.startswith("[node-1.0]")]
    assert any("platform=azureml rank=0/2" in line for line in first)
    assert any("platform=azureml rank=1/2" in line for line in second)
    assert any("checkpoint " in line and "written" in line for line in first)
    assert not any("checkpoint " in line and "written" in line for line in second)
    assert not any("Writing model shards" in line for line in second)
    assert (run.model_dir / "model.safetensors").is_file()
    # On the filesystem: nothing under the job's outputs was created by rank 1's process.
    shared = (run.model_dir, run.layout.checkpoint_dir, run.output_dir)
    assert created_by_other_ranks(*shared) == []
    # Each node ran from its own copy of the snapshot.
    assert (tmp_path / "job" / "node-1" / "code" / "run_job.py").is_file()
