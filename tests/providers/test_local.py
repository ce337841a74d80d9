"""The local runner's layouts: each emulation sets the contract its platform's container has."""

import json

import pytest

from genai_cloud.errors import DataError
from genai_cloud.loading import load_spec
from genai_cloud.plan import Plan
from genai_cloud.providers.local import layout, prepare
from job_templates.contract import resolve


@pytest.fixture
def plan(tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text('{"text": "hello"}\n')
    spec = load_spec({"name": "demo", "model": {"name_or_path": "gpt2"},
                      "data": {"train": str(data)}})  # fmt: skip
    return Plan(spec, "local")


def _contract_seen_by_job(lay):
    """What job_templates.contract.resolve() reports inside the job's process."""
    args = [a for a in lay.command if a.startswith("--")]
    return resolve(args, env=lay.env)


def test_a_local_run_resolves_to_the_laid_out_dirs(plan, tmp_path, monkeypatch):
    lay = layout(plan, run_dir=tmp_path / "run")
    prepare(plan, lay)
    monkeypatch.chdir(lay.code_dir)
    contract = _contract_seen_by_job(lay)
    assert contract.platform == "local"
    assert contract.model_dir == lay.model_dir
    assert contract.checkpoint_dir == lay.checkpoint_dir
    assert contract.output_dir == lay.output_dir
    train = contract.channel("train")
    assert train is not None and (train / "train.jsonl").read_text() == '{"text": "hello"}\n'
    assert json.loads(contract.spec_path.read_text())["name"] == "demo"


def test_nproc_uses_torchrun(plan, tmp_path):
    lay = layout(plan, nproc=2, run_dir=tmp_path)
    assert lay.command[1:4] == ["-m", "torch.distributed.run", "--standalone"]
    assert "--nproc-per-node=2" in lay.command


def test_missing_data_file_names_the_path(tmp_path):
    spec = load_spec({"name": "demo", "model": {"name_or_path": "gpt2"},
                      "data": {"train": str(tmp_path / "absent.jsonl")}})  # fmt: skip
    plan = Plan(spec, "local")
    with pytest.raises(DataError, match="absent.jsonl does not exist"):
        prepare(plan, layout(plan, run_dir=tmp_path / "run"))


def test_render_is_pure(plan, tmp_path):
    layout(plan, run_dir=tmp_path / "never")
    assert not (tmp_path / "never").exists()


# ---- operating a local run by its id -----------------------------------------------------------


@pytest.mark.parametrize("command", ["status", "logs"])
def test_an_unknown_local_run_is_named_by_status_and_logs_alike(tmp_path, run_cli, command):
    missing = tmp_path / "x"
    code, out, err = run_cli([command, str(missing), "-p", "local"])
    assert code == 2 and out == "" and "Traceback" not in err
    assert "Error: Unknown job" in err and f"no local run at {missing}" in err
    assert "submit -p local" in err


def test_logs_of_a_folder_that_is_not_a_run(tmp_path, run_cli):
    code, _, err = run_cli(["logs", str(tmp_path), "-p", "local"])
    assert code == 2 and "Error: Unknown job" in err and "job.log does not exist" in err


def test_logs_print_a_runs_log(tmp_path, run_cli):
    (tmp_path / "job.log").write_text("step 1\nstep 2\n")
    code, out, _ = run_cli(["logs", str(tmp_path), "-p", "local"])
    assert code == 0 and out == "step 1\nstep 2\n"


def test_docker_not_found_or_not_running_have_their_own_headlines(plan, tmp_path, monkeypatch):
    from types import SimpleNamespace

    from genai_cloud.errors import GenaiCloudError
    from genai_cloud.providers import local

    lay = layout(plan, run_dir=tmp_path / "run")
    monkeypatch.setattr(local.shutil, "which", lambda name: None)
    with pytest.raises(GenaiCloudError) as info:
        local._docker_command(lay, "python:3.11")
    assert info.value.headline == "Docker not found"
    monkeypatch.setattr(local.shutil, "which", lambda name: "/usr/bin/docker")
    failed = SimpleNamespace(returncode=1, stdout="", stderr="Cannot connect to the Docker daemon "
                             "at unix:///var/run/docker.sock. Is the docker daemon running?")
    monkeypatch.setattr(local.subprocess, "run", lambda *args, **kwargs: failed)
    with pytest.raises(GenaiCloudError) as info:
        local._docker_command(lay, "python:3.11")
    assert info.value.headline == "Docker not running"
    assert "Cannot connect to the Docker daemon" in info.value.message


def test_an_unknown_emulation_is_a_bad_option(plan):
    from genai_cloud.errors import GenaiCloudError
    from genai_cloud.providers.local import run_local

    with pytest.raises(GenaiCloudError) as info:
        run_local(plan.spec, emulate="k8s")
    assert info.value.headline == "Bad option" and "sagemaker" in info.value.message
