"""--emulate sagemaker: the rendered CreateTrainingJob request, run by the real training toolkit."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from genai_cloud.errors import GenaiCloudError
from genai_cloud.loading import load_spec
from genai_cloud.providers.local import run_local

pytest.importorskip("sagemaker_training", reason="needs genai-cloud[emulate]")
pytest.importorskip("moto.server", reason="needs genai-cloud[emulate]")


def _run(spec: dict, tmp_path, **options):
    log = io.StringIO()
    run = run_local(load_spec(spec), emulate="sagemaker", run_dir=tmp_path / "job", stream=log,
                    **options)  # fmt: skip
    return run, log.getvalue()


def test_the_toolkit_downloads_installs_and_runs_the_rendered_request(quick_spec, tmp_path,
                                                                      corpus_path,
                                                                      replica_python):  # fmt: skip
    """On the replica of the image the render names (its Python, torch and toolkit): the
    toolkit installs the pinned lock there as the DLC would."""
    spec = quick_spec()
    run, log = _run(spec, tmp_path, python=replica_python("sagemaker", spec))
    assert run.returncode == 0, log[-3000:]
    request = json.loads((tmp_path / "job" / "request.json").read_text())
    ml = tmp_path / "job" / "127.0.0.1" / "opt" / "ml"
    config = ml / "input" / "config"
    # SageMaker's files, from the request: what the toolkit read.
    hps = json.loads((config / "hyperparameters.json").read_text())
    assert hps == request["HyperParameters"]
    assert json.loads(hps["sagemaker_submit_directory"]).startswith("s3://genai-emulated/")
    channels = {c["ChannelName"] for c in request["InputDataConfig"]}
    assert channels == {"train", "model"}
    assert set(json.loads((config / "inputdataconfig.json").read_text())) == channels
    resources = json.loads((config / "resourceconfig.json").read_text())
    assert resources["hosts"] == ["127.0.0.1"]
    assert resources["current_instance_type"] == request["ResourceConfig"]["InstanceType"]
    # The channels were copied from S3 as File mode does; the toolkit fetched the code itself.
    delivered = ml / "input" / "data" / "train" / "corpus.jsonl"
    assert delivered.read_bytes() == corpus_path.read_bytes()
    assert (ml / "input" / "data" / "model" / "config.json").is_file()
    assert "Installing dependencies from requirements.txt" in log
    assert (ml / "code" / "run_job.py").is_file() and (ml / "code" / "spec.json").is_file()
    # The job saw SageMaker's contract, wrote where SageMaker collects, and the toolkit said so.
    assert "platform=sagemaker rank=0/1" in log
    assert (ml / "model" / "model.safetensors").is_file()
    assert run.model_dir == ml / "model" and json.loads(
        (ml / "output" / "data" / "metrics.json").read_text())["steps"] == 4  # fmt: skip
    assert max(p.name for p in (ml / "checkpoints").iterdir()).endswith("4")
    assert (ml / "output" / "success").is_file() and "Reporting training SUCCESS" in log


def test_a_failing_job_is_the_toolkits_failure(quick_spec, tmp_path, replica_python):
    spec = quick_spec(data={"train": str(tmp_path / "broken.jsonl"), "format": "jsonl"})
    (tmp_path / "broken.jsonl").write_text("{not json\n")
    run, log = _run(spec, tmp_path, python=replica_python("sagemaker", spec))
    assert run.returncode == 1  # the toolkit's status for a failed user script
    assert "input/data/train/broken.jsonl:1: malformed JSON" in log  # the job's own message
    # What DescribeTrainingJob's FailureReason would show: the job's exit status 2.
    failure = (tmp_path / "job" / "127.0.0.1" / "opt" / "ml" / "output" / "failure").read_text()
    assert "ExecuteUserScriptError" in failure and "ExitCode 2" in failure


@pytest.mark.slow
def test_two_hosts_run_one_torchrun_job_and_only_rank_0_writes(quick_spec, tmp_path,
                                                               replica_python):  # fmt: skip
    """compute.nodes 2 on GPUs renders sagemaker_torch_distributed_enabled: the toolkit starts
    torchrun on each host (one process per host here: no GPU). Each host has its own disk, so
    the second host's /opt/ml shows that rank 1 wrote nothing. The job runs with an interpreter
    on the GPU image's replica, which has neither genai_cloud nor pydantic."""
    spec = quick_spec(compute={"accelerator": "T4", "nodes": 2})
    run, log = _run(spec, tmp_path, python=replica_python("sagemaker", spec))
    assert run.returncode == 0, log[-4000:]
    assert "[127.0.0.2] torchrun --nnodes 2 --nproc_per_node 1 --master_addr 127.0.0.1" in log
    assert "--node_rank 1 run_job.py" in log
    assert "[127.0.0.1] " in log and "platform=sagemaker rank=0/2" in log
    assert "[127.0.0.2] " in log and "platform=sagemaker rank=1/2" in log
    first, second = (tmp_path / "job" / host / "opt" / "ml" for host in ("127.0.0.1", "127.0.0.2"))
    assert (first / "model" / "model.safetensors").is_file()
    assert (first / "output" / "data" / "metrics.json").is_file()
    for empty in ("model", "checkpoints", "output/data"):
        assert not any((second / empty).iterdir()), f"rank 1 wrote into {empty}"
    assert (second / "output" / "success").is_file()  # the toolkit ran there too


def test_options_of_a_local_run_are_refused_with_the_reason(quick_spec, tmp_path):
    with pytest.raises(GenaiCloudError, match="--nproc, --preempt-at: not with --emulate"):
        run_local(load_spec(quick_spec()), emulate="sagemaker", nproc=2, preempt_at=3,
                  run_dir=tmp_path)  # fmt: skip


def test_a_missing_toolkit_or_server_names_the_install(tmp_path):
    import sys

    from genai_cloud.providers.sagemaker import emulation as sagemaker

    bare = tmp_path / "python"  # an image's Python without the toolkit
    bare.write_text(f'#!/bin/sh\nexec {sys.executable} -S "$@"\n')  # -S: no site-packages
    bare.chmod(0o755)
    with pytest.raises(GenaiCloudError) as info:
        sagemaker._check_toolkit(str(bare))
    assert info.value.headline == "Missing dependency"
    assert f"{bare} -m pip install sagemaker-training" in info.value.message
    assert "No module named 'sagemaker_training'" in info.value.message
    sagemaker._check_toolkit(sys.executable)  # this one has it
    with pytest.raises(GenaiCloudError, match=r"pip install 'genai-cloud\[emulate\]'"):
        sagemaker._need("moto_server_absent", "a local S3 server (moto[server])")


def test_file_mode_keeps_keys_relative_to_the_channel_prefix(tmp_path):
    import boto3
    from moto import mock_aws

    from genai_cloud.providers.sagemaker.emulation import download_channel

    def channel(uri):
        return {"DataSource": {"S3DataSource": {"S3Uri": uri}}}

    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="bkt")
        for key in ("data/train.jsonl", "models/tiny/config.json", "models/tiny/sub/w.bin"):
            s3.put_object(Bucket="bkt", Key=key, Body=key.encode())
        download_channel(s3, channel("s3://bkt/data/train.jsonl"), tmp_path / "train")
        download_channel(s3, channel("s3://bkt/models/tiny/"), tmp_path / "model")
    assert (tmp_path / "train" / "train.jsonl").read_text() == "data/train.jsonl"
    assert (tmp_path / "model" / "config.json").read_text() == "models/tiny/config.json"
    assert (tmp_path / "model" / "sub" / "w.bin").is_file()


# ---- aws.network_isolation -------------------------------------------------------------------


def _can_isolate() -> bool:
    from genai_cloud.providers.sagemaker.emulation import isolated

    try:
        isolated(["true"])
        return True
    except GenaiCloudError:
        return False


needs_netns = pytest.mark.skipif(not _can_isolate(), reason="needs `unshare --net`")
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/genai-job:1"  # has the requirements


@needs_netns
def test_the_isolation_wrapper_really_cuts_the_network():
    """The wrapper the emulation puts around an isolated host: a listening socket on this
    machine's loopback cannot be reached from inside it, and is from outside."""
    import socket
    import subprocess
    import sys

    from genai_cloud.providers.sagemaker.emulation import isolated

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        connect = (f"import socket; socket.create_connection(('127.0.0.1', {port}), 5); "
                   "print('connected')")
        probe = [sys.executable, "-c", connect]
        outside = subprocess.run(probe, capture_output=True, text=True, check=False)
        inside = subprocess.run(isolated(probe), capture_output=True, text=True, check=False)
    assert outside.returncode == 0 and "connected" in outside.stdout
    assert inside.returncode != 0 and "Network is unreachable" in inside.stderr


@needs_netns
def test_an_isolated_job_runs_without_any_network(quick_spec, tmp_path, replica_python):
    """EnableNetworkIsolation: the host runs in a network namespace with no route at all; the
    toolkit unpacks the bundle from the code channel, pip finds every requirement already in
    the image (the replica of the row aws.image_uri replaces stands for it) and the job trains."""
    spec = quick_spec(aws={"network_isolation": True, "image_uri": IMAGE})
    run, log = _run(spec, tmp_path, python=replica_python("sagemaker", spec))
    assert run.returncode == 0, log[-3000:]
    request = json.loads((tmp_path / "job" / "request.json").read_text())
    assert request["EnableNetworkIsolation"] is True
    ml = tmp_path / "job" / "127.0.0.1" / "opt" / "ml"
    hps = json.loads((ml / "input" / "config" / "hyperparameters.json").read_text())
    submit = Path(json.loads(hps["sagemaker_submit_directory"]))
    assert submit.parent == ml / "input" / "data" / "code" and submit.is_file()
    assert run.layout.command[:2] == ["unshare", "--net"]
    assert (ml / "code" / "run_job.py").is_file()  # the toolkit unpacked the channel's bundle
    assert (ml / "model" / "model.safetensors").is_file() and "platform=sagemaker" in log


@needs_netns
def test_without_the_code_channel_an_isolated_host_cannot_fetch_its_code(quick_spec, tmp_path,
                                                                         monkeypatch,
                                                                         replica_python):  # fmt: skip
    """What isolated jobs did before: sagemaker_submit_directory as s3:// fails to download."""
    from genai_cloud.providers.sagemaker import render as sagemaker

    real = sagemaker.hyperparameters

    def s3_submit_directory(plan, instance, region, bundle_uri):
        params = real(plan, instance, region, bundle_uri)
        params["sagemaker_submit_directory"] = json.dumps(bundle_uri)
        return params

    monkeypatch.setattr(sagemaker, "hyperparameters", s3_submit_directory)
    spec = quick_spec(aws={"network_isolation": True, "image_uri": IMAGE})
    run, log = _run(spec, tmp_path, python=replica_python("sagemaker", spec))
    assert run.returncode != 0
    assert "Could not connect to the endpoint URL" in log or "Network is unreachable" in log
