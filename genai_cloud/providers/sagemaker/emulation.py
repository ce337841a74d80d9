"""SageMaker: the rendered CreateTrainingJob request, run by the real SageMaker training toolkit.

What SageMaker does before the container starts, done here: objects of each ``InputDataConfig``
channel are copied from S3 to ``/opt/ml/input/data/<channel>`` (File mode), the request's
``HyperParameters``, channels, resources and checkpoint config are written to
``/opt/ml/input/config/*.json``, and the image's ``train`` program starts. The rest is the
toolkit's own code (``sagemaker_training``): it downloads ``sagemaker_submit_directory`` from S3
(a moto server here, through the toolkit's ``S3_ENDPOINT_URL``), pip-installs
``requirements.txt``, sets ``SM_*`` and runs ``sagemaker_program``, under torchrun when the
request sets ``sagemaker_torch_distributed_enabled``.

``SAGEMAKER_BASE_DIR`` moves ``/opt/ml`` to ``<run>/<host>/opt/ml``: each node its own disk.
Hosts are named by their loopback address (SageMaker says ``algo-1``...), which the toolkit's
hostname check and torchrun's ``--master_addr`` resolve without an ``/etc/hosts`` entry.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import IO

from ...errors import GenaiCloudError
from ..local import LocalLayout
from ..emulation import (
    Node,
    cloud_spec,
    host_env,
    job_status,
    local_inputs,
    node_address,
    python_on_path,
    run_nodes,
)

BUCKET = "genai-emulated"
ROLE = "arn:aws:iam::000000000000:role/genai-emulated"  # never assumed: nothing checks it here
REGION = "us-east-1"
# The PyTorch / Hugging Face DLCs set SAGEMAKER_TRAINING_MODULE to their framework module
# (sagemaker_pytorch_container.training:main, not on PyPI). It picks the runner from the
# request's parameters and hands over to the toolkit's entry_point.run; this is that choice.
_FRAMEWORK_MODULE = '''"""The DLC framework module's part: pick the runner; the toolkit runs."""
from sagemaker_training import entry_point, environment, runner


def main():
    env = environment.Environment()
    distributed = env.additional_framework_parameters.get("sagemaker_torch_distributed_enabled")
    kind = runner.TorchDistributedRunnerType if distributed else runner.ProcessRunnerType
    entry_point.run(uri=env.module_dir, user_entry_point=env.user_entry_point,
                    args=env.to_cmd_args(), env_vars=env.to_env_vars(), capture_error=True,
                    runner_type=kind)
'''


def _need(module: str, what: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise GenaiCloudError(f"--emulate sagemaker needs {what} ({exc.name} is not installed); "
                              "run `pip install 'genai-cloud[emulate]'`",
                              headline="Missing dependency")  # fmt: skip


def _check_toolkit(python: str) -> None:
    """The toolkit runs in the node's interpreter (the image's Python), not in this one."""
    import subprocess

    probe = subprocess.run([python, "-c", "import sagemaker_training.cli.train"],
                           capture_output=True, text=True, check=False)  # fmt: skip
    if probe.returncode != 0:
        said = (probe.stderr.strip().splitlines() or [""])[-1][:300]
        raise GenaiCloudError(f"--emulate sagemaker runs the SageMaker training toolkit with "
                              f"{python}, which cannot import it ({said}); install it there "
                              f"(`{python} -m pip install sagemaker-training`, as the Deep "
                              "Learning Containers have it; for this Python: "
                              "`pip install 'genai-cloud[emulate]'`)",
                              headline="Missing dependency")  # fmt: skip


def stage(spec, s3) -> object:
    """Upload the spec's local inputs to the emulated bucket; the spec as SageMaker would get it."""
    fields = {}
    for (section, name), source in local_inputs(spec).items():
        prefix = f"inputs/{section}.{name}"
        if source.is_dir():
            for path in sorted(p for p in source.rglob("*") if p.is_file()):
                s3.upload_file(str(path), BUCKET, f"{prefix}/{path.relative_to(source).as_posix()}")
            fields[(section, name)] = f"s3://{BUCKET}/{prefix}/"
        else:
            s3.upload_file(str(source), BUCKET, f"{prefix}/{source.name}")
            fields[(section, name)] = f"s3://{BUCKET}/{prefix}/{source.name}"
    aws = {"role_arn": spec.aws.role_arn or ROLE, "bucket": BUCKET,
           "region": spec.aws.region or REGION}  # fmt: skip
    return cloud_spec(spec, fields, aws=aws, output={"uri": f"s3://{BUCKET}/outputs"})


def download_channel(s3, channel: dict, dest: Path) -> None:
    """File mode: every object under the channel's S3 prefix, its key relative to the prefix
    (an object that *is* the prefix keeps its base name)."""
    source = channel["DataSource"]["S3DataSource"]
    bucket, _, prefix = source["S3Uri"][len("s3://"):].partition("/")
    dest.mkdir(parents=True, exist_ok=True)
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    for item in (obj for page in pages for obj in page.get("Contents", [])):
        key = item["Key"]
        rel = key[len(prefix):].lstrip("/") or key.rsplit("/", 1)[-1]
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, key, str(target))


def config_files(request: dict, host: str, hosts: list[str], base: Path) -> dict[str, dict]:
    """``/opt/ml/input/config/*.json`` as SageMaker writes them for ``host``."""
    resources = request["ResourceConfig"]
    group = "homogeneousCluster"
    mode = request["AlgorithmSpecification"]["TrainingInputMode"]
    channels = {
        c["ChannelName"]: {
            "TrainingInputMode": c.get("InputMode", mode),
            "S3DistributionType": c["DataSource"]["S3DataSource"]["S3DataDistributionType"],
            "RecordWrapperType": "None",
        }
        for c in request.get("InputDataConfig", [])
    }
    kind = resources["InstanceType"]
    # An isolated job's sagemaker_submit_directory names its code channel under /opt/ml, which
    # SAGEMAKER_BASE_DIR moves: so do its values (JSON strings, '"/opt/ml/...').
    hyperparameters = {k: v.replace('"/opt/ml/', f'"{base}/', 1)
                       for k, v in request.get("HyperParameters", {}).items()}  # fmt: skip
    files = {
        "hyperparameters.json": hyperparameters,
        "inputdataconfig.json": channels,
        "resourceconfig.json": {
            "current_host": host, "current_instance_type": kind, "current_group_name": group,
            "hosts": hosts, "network_interface_name": "lo",
            "instance_groups": [{"instance_group_name": group, "hosts": hosts,
                                 "instance_type": kind}],
        },
    }  # fmt: skip
    if "CheckpointConfig" in request:
        files["checkpointconfig.json"] = request["CheckpointConfig"]
    return files


def run(spec, *, run_dir: Path, python: str, outs: tuple[IO[str], ...]):
    """Render for SageMaker, serve S3 locally, run every host's toolkit; (status, layout)."""
    from ...plan import make_plan
    from ..base import get_provider

    _check_toolkit(python)
    boto3 = _need("boto3", "boto3")
    server_module = _need("moto.server", "a local S3 server (moto[server])")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # not a line per S3 request
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        creds = {"AWS_ACCESS_KEY_ID": "emulated", "AWS_SECRET_ACCESS_KEY": "emulated"}
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name=REGION,
                          aws_access_key_id="emulated", aws_secret_access_key="emulated")  # fmt: skip
        s3.create_bucket(Bucket=BUCKET)
        cloud = stage(spec, s3)
        plan = make_plan(cloud, "sagemaker")
        request = get_provider("sagemaker").render(plan)
        (run_dir / "request.json").write_text(json.dumps(request, indent=2, sort_keys=True))
        bucket, key = _bundle_key(plan)
        s3.put_object(Bucket=bucket, Key=key, Body=plan.bundle.data)

        hosts = [node_address(i) for i in range(request["ResourceConfig"]["InstanceCount"])]
        if request.get("EnableNetworkIsolation") and len(hosts) > 1:
            raise GenaiCloudError("--emulate sagemaker isolates one host at a time: the hosts "
                                  "of an isolated job still reach each other, which separate "
                                  "network namespaces would cut; emulate with compute.nodes: 1",
                                  headline="Cannot emulate")  # fmt: skip
        framework = run_dir / "dlc"
        framework.mkdir(parents=True, exist_ok=True)
        (framework / "genai_emulated_dlc.py").write_text(_FRAMEWORK_MODULE)
        nodes = [_node(request, s3, run_dir, host, hosts, framework, creds, endpoint)
                 for host in hosts]  # fmt: skip
        codes = run_nodes(nodes, host_env(python_on_path(run_dir, python)), outs)
    finally:
        server.stop()
    ml = run_dir / hosts[0] / "opt" / "ml"
    lay = LocalLayout(run_dir=run_dir, code_dir=ml / "code", model_dir=ml / "model",
                      checkpoint_dir=ml / "checkpoints", output_dir=ml / "output" / "data",
                      channels={}, command=nodes[0].command, env=nodes[0].env,
                      emulate="sagemaker")  # fmt: skip
    return job_status(codes), lay


def _bundle_key(plan) -> tuple[str, str]:
    from .render import bundle_location

    return bundle_location(plan)


def _node(request, s3, run_dir: Path, host: str, hosts: list[str], framework: Path,
          creds: dict, endpoint: str) -> Node:  # fmt: skip
    ml = run_dir / host / "opt" / "ml"
    for path in (ml / "code", ml / "input"):  # a fresh machine: no code or data of a past run
        if path.exists():
            shutil.rmtree(path)
    for name, content in config_files(request, host, hosts, ml).items():
        (ml / "input" / "config").mkdir(parents=True, exist_ok=True)
        (ml / "input" / "config" / name).write_text(json.dumps(content))
    for channel in request.get("InputDataConfig", []):
        download_channel(s3, channel, ml / "input" / "data" / channel["ChannelName"])
    for path in (ml / "model", ml / "checkpoints", ml / "output" / "data"):  # the platform's
        path.mkdir(parents=True, exist_ok=True)
    env = {
        "SAGEMAKER_BASE_DIR": str(ml),
        "SAGEMAKER_TRAINING_MODULE": "genai_emulated_dlc:main",
        "PYTHONPATH": str(framework),  # where the image keeps its framework module
        "TRAINING_JOB_NAME": request["TrainingJobName"],
        "TRAINING_JOB_ARN": f"arn:aws:sagemaker:{REGION}:000000000000:training-job/"
                            f"{request['TrainingJobName'].lower()}",
        "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION,
        "S3_ENDPOINT_URL": endpoint,  # the toolkit's own switch for where S3 is
        # Every other AWS call of the job (Secrets Manager, ...) goes to the local server too,
        # never to a real account with made-up keys: a secret to use is exported beforehand.
        "AWS_ENDPOINT_URL": endpoint,
        **creds,
        **request.get("Environment", {}),
    }  # fmt: skip
    command = ["python", "-m", "sagemaker_training.cli.train"]
    if request.get("EnableNetworkIsolation"):
        command = isolated(command)
    return Node(name=host, command=command, cwd=ml, env=env)


def isolated(command: list[str]) -> list[str]:
    """``command`` in a network namespace of its own: no route anywhere (the loopback device is
    down too), as EnableNetworkIsolation leaves a container. Needs ``unshare`` (util-linux) and
    root or unprivileged user namespaces; otherwise the emulation is refused, not faked."""
    import os
    import subprocess

    wrapper = ["unshare", "--net"] + ([] if os.geteuid() == 0 else ["--map-root-user"])
    try:
        probe = subprocess.run([*wrapper, "true"], capture_output=True, text=True, check=False)
        said = probe.stderr.strip()
    except FileNotFoundError:
        probe, said = None, "no `unshare` on PATH"
    if probe is None or probe.returncode != 0:
        raise GenaiCloudError("emulating aws.network_isolation needs a network namespace "
                              f"(`unshare --net`: {said or 'failed'}); run as root or where user "
                              "namespaces are allowed, or set aws.network_isolation: false",
                              headline="Cannot emulate")  # fmt: skip
    return [*wrapper, "--", *command]
