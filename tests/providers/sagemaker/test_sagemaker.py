"""SageMaker render: the CreateTrainingJob request, checked against botocore's own service model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from genai_cloud.catalog import CatalogError
from genai_cloud.errors import GenaiCloudError, UnsupportedFeatureError
from genai_cloud.loading import load_spec
from genai_cloud.plan import make_plan
from genai_cloud.providers import get_provider
from genai_cloud.providers.sagemaker.render import SageMakerRenderError

SNAPSHOTS = Path(__file__).parent / "snapshots"
ROLE = "arn:aws:iam::123456789012:role/genai-sagemaker"
SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:hf-token-AbCdEf"


def make_spec(**sections):
    """A valid finetune spec on S3; keyword sections are merged over it."""
    base = {
        "name": "demo-run",
        "model": {"name_or_path": "gpt2"},
        "data": {"train": "s3://genai-data/corpus/train.jsonl"},
        "output": {"uri": "s3://genai-out/runs"},
        "aws": {"role_arn": ROLE, "region": "us-east-1"},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return load_spec(base)


def render(**sections) -> dict:
    plan = make_plan(make_spec(**sections), "sagemaker")
    return get_provider("sagemaker").render(plan)


# ---- botocore's service model ---------------------------------------------------------------


def _input_shape():
    import botocore.session

    model = botocore.session.get_session().get_service_model("sagemaker")
    return model.operation_model("CreateTrainingJob").input_shape


def strict_problems(value, shape, path="request") -> list[str]:
    """What botocore's validator skips (it checks types, required members and minimums): maximum
    lengths, enums and patterns from the same service model."""
    import regex  # the model's patterns use \\p{L}-style classes that `re` lacks

    problems = []
    meta = shape.metadata
    if shape.type_name == "structure":
        for name, member in shape.members.items():
            if name in value:
                problems += strict_problems(value[name], member, f"{path}.{name}")
    elif shape.type_name == "list":
        problems += (
            [f"{path}: more than {meta['max']} items"] if len(value) > meta.get("max", 1e9) else []
        )
        for i, item in enumerate(value):
            problems += strict_problems(item, shape.member, f"{path}[{i}]")
    elif shape.type_name == "map":
        problems += (
            [f"{path}: more than {meta['max']} entries"]
            if len(value) > meta.get("max", 1e9)
            else []
        )
        for key, item in value.items():
            problems += strict_problems(key, shape.key, f"{path} key {key!r}")
            problems += strict_problems(item, shape.value, f"{path}[{key!r}]")
    elif shape.type_name == "string":
        if len(value) > meta.get("max", 1e9):
            problems.append(f"{path}: longer than {meta['max']}")
        if shape.enum and value not in shape.enum:
            problems.append(f"{path}: {value!r} not in the enum")
        if "pattern" in meta and not regex.fullmatch(meta["pattern"], value):
            problems.append(f"{path}: {value!r} does not match {meta['pattern']}")
    elif shape.type_name == "integer" and value > meta.get("max", 1e18):
        problems.append(f"{path}: above {meta['max']}")
    return problems


def assert_valid_request(request: dict) -> None:
    from botocore.validate import validate_parameters

    shape = _input_shape()
    validate_parameters(request, shape)  # raises ParamValidationError with every problem
    assert strict_problems(request, shape) == []


SPREAD = {
    "cpu": {"compute": {"accelerator": "cpu"}},
    "1xgpu": {"compute": {"accelerator": "A10G", "count": 1}},
    "8xH100x2": {"compute": {"accelerator": "H100", "count": 8, "nodes": 2}},
    "spot+checkpoints": {
        "compute": {"accelerator": "T4", "spot": True, "max_runtime": "6h"},
        "training": {"checkpoint_every": 200},
    },
    "vpc+kms+isolation": {
        "model": {"name_or_path": "s3://genai-models/gpt2/"},
        "compute": {"accelerator": "V100"},
        "aws": {
            "role_arn": ROLE, "region": "us-east-1",
            "kms_key_id": "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "volume_kms_key_id": "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "subnets": ["subnet-0abc1234", "subnet-0def5678"],
            "security_group_ids": ["sg-0123abcd"],
            "network_isolation": True,
            "inter_container_encryption": True,
            "image_uri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/genai-job:1",
        },
    },
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(SPREAD))
def test_render_passes_botocore_validation(case):
    request = render(**SPREAD[case])
    assert_valid_request(request)


def test_validator_catches_a_bad_request():
    # The check above must be able to fail: a string count, an unknown type, a bad name.
    from botocore.exceptions import ParamValidationError
    from botocore.validate import validate_parameters

    request = render()
    request["ResourceConfig"]["InstanceCount"] = "2"
    with pytest.raises(ParamValidationError):
        validate_parameters(request, _input_shape())
    request = render()
    request["ResourceConfig"]["InstanceType"] = "ml.g5.huge"
    request["TrainingJobName"] = "bad_name"
    assert len(strict_problems(request, _input_shape())) == 2


def test_cpu_job_uses_the_pytorch_cpu_image_and_no_torchrun():
    request = render(**SPREAD["cpu"])
    assert request["ResourceConfig"] == {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1,
                                         "VolumeSizeInGB": 100}  # fmt: skip
    assert request["AlgorithmSpecification"]["TrainingImage"] == (
        "763104351884.dkr.ecr.us-east-1.amazonaws.com/"
        "pytorch-training:2.9.0-cpu-py312-ubuntu22.04-sagemaker"
    )
    assert "sagemaker_torch_distributed_enabled" not in request["HyperParameters"]
    assert "CheckpointConfig" not in request and "VpcConfig" not in request


def test_hyperparameters_carry_only_the_toolkit_keys_json_encoded():
    plan = make_plan(make_spec(training={"lr": 3e-4, "gradient_checkpointing": True}), "sagemaker")
    hps = get_provider("sagemaker").render(plan)["HyperParameters"]
    assert {k: json.loads(v) for k, v in hps.items()} == {
        "sagemaker_program": "run_job.py",
        "sagemaker_submit_directory": f"s3://genai-out/genai-cloud/bundles/{plan.bundle.name}",
        "sagemaker_region": "us-east-1",
    }
    assert "0.0003" not in json.dumps(hps)  # the spec travels in the bundle, not here


def test_multi_gpu_multi_node_enables_torchrun():
    request = render(**SPREAD["8xH100x2"])
    assert request["ResourceConfig"]["InstanceType"] == "ml.p5.48xlarge"
    assert request["ResourceConfig"]["InstanceCount"] == 2
    hps = request["HyperParameters"]
    assert hps["sagemaker_torch_distributed_enabled"] == "true"
    assert json.loads(hps["sagemaker_instance_type"]) == "ml.p5.48xlarge"
    assert "huggingface-pytorch-training" in request["AlgorithmSpecification"]["TrainingImage"]


def test_spot_sets_max_wait_and_checkpoints_under_the_job():
    plan = make_plan(make_spec(**SPREAD["spot+checkpoints"]), "sagemaker")
    request = get_provider("sagemaker").render(plan)
    stop = request["StoppingCondition"]
    assert request["EnableManagedSpotTraining"] is True
    assert stop["MaxRuntimeInSeconds"] == 6 * 3600
    assert stop["MaxWaitTimeInSeconds"] >= stop["MaxRuntimeInSeconds"]
    assert request["CheckpointConfig"] == {
        "S3Uri": f"s3://genai-out/runs/{plan.job_name}/checkpoints",
        "LocalPath": "/opt/ml/checkpoints",
    }


def test_security_settings_are_rendered():
    plan = make_plan(make_spec(**SPREAD["vpc+kms+isolation"]), "sagemaker")
    request = get_provider("sagemaker").render(plan)
    key = SPREAD["vpc+kms+isolation"]["aws"]["kms_key_id"]
    assert request["VpcConfig"] == {"SecurityGroupIds": ["sg-0123abcd"],
                                    "Subnets": ["subnet-0abc1234", "subnet-0def5678"]}  # fmt: skip
    assert request["EnableNetworkIsolation"] is True
    assert request["EnableInterContainerTrafficEncryption"] is True
    assert request["OutputDataConfig"]["KmsKeyId"] == key
    assert request["ResourceConfig"]["VolumeKmsKeyId"] == key
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"]
                for c in request["InputDataConfig"]}  # fmt: skip
    bundle = f"s3://genai-out/genai-cloud/bundles/{plan.bundle.name}"
    assert channels == {"train": "s3://genai-data/corpus/train.jsonl",
                        "model": "s3://genai-models/gpt2/", "code": bundle}  # fmt: skip


def test_env_is_rendered_but_secrets_are_not():
    request = render(env={"HF_HUB_OFFLINE": "1"}, secrets={"HF_TOKEN": SECRET_ARN})
    assert request["Environment"] == {"HF_HUB_OFFLINE": "1"}
    # The entrypoint reads the reference from spec.json inside the bundle; the request holds
    # neither the value nor the reference.
    assert "HF_TOKEN" not in json.dumps(request) and SECRET_ARN not in json.dumps(request)


def test_tags_carry_labels_and_the_plan_key():
    plan = make_plan(make_spec(labels={"team": "nlp", "cost-center": "r-and-d"}), "sagemaker")
    tags = get_provider("sagemaker").render(plan)["Tags"]
    assert {t["Key"]: t["Value"] for t in tags} == {
        "cost-center": "r-and-d", "team": "nlp",
        "genai-cloud-key": plan.key, "genai-cloud-name": "demo-run",
    }  # fmt: skip


def test_bucket_comes_from_aws_bucket_when_set():
    request = render(aws={"bucket": "genai-bundles"})
    assert json.loads(request["HyperParameters"]["sagemaker_submit_directory"]).startswith(
        "s3://genai-bundles/genai-cloud/bundles/bundle-"
    )


def test_render_is_deterministic_and_names_follow_sagemaker_rules():
    a, b = render(), render()
    assert a == b
    name = a["TrainingJobName"]
    assert len(name) <= 63 and name.startswith("demo-run-")
    long = render(name="x" * 63)["TrainingJobName"]
    assert len(long) == 63


def test_snapshot():
    plan = make_plan(make_spec(**SPREAD["spot+checkpoints"], labels={"team": "nlp"},
                               env={"TOKENIZERS_PARALLELISM": "false"}), "sagemaker")  # fmt: skip
    text = get_provider("sagemaker").render_native(plan)
    # The key and bundle hash follow job_templates/ (edited by other issues): pin the shape.
    text = text.replace(plan.key, "<key>").replace(plan.bundle.name, "<bundle>")
    path = SNAPSHOTS / "sagemaker_spot_t4.json"
    if os.environ.get("UPDATE_SNAPSHOTS"):  # UPDATE_SNAPSHOTS=1 pytest ... rewrites it
        path.write_text(text + "\n")
    assert text + "\n" == path.read_text()


def test_native_json_is_the_request():
    plan = make_plan(make_spec(), "sagemaker")
    provider = get_provider("sagemaker")
    assert json.loads(provider.render_native(plan)) == provider.render(plan)


def test_render_o_prints_the_upload_to_where_the_request_points(tmp_path, monkeypatch, run_cli):
    """The CLI says where the bundle must go: `aws s3 cp` of the file render -o wrote to the
    submit directory the request names, then create-training-job on that file."""
    import shlex

    import yaml

    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump(make_spec().model_dump(mode="json", exclude_defaults=True)))
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(["render", str(spec), "-p", "sagemaker", "--format", "native",
                            "-o", "out dir/job.json"])  # fmt: skip
    assert code == 0
    request = json.loads((tmp_path / "out dir" / "job.json").read_text())
    steps = [shlex.split(line) for line in err.splitlines() if line.startswith("  aws ")]
    assert [step[:3] for step in steps] == [["aws", "s3", "cp"],
                                            ["aws", "sagemaker", "create-training-job"]]  # fmt: skip
    upload, create = steps
    assert (tmp_path / upload[3]).is_file() and upload[3].startswith("out dir/bundle-")
    assert upload[4] == json.loads(request["HyperParameters"]["sagemaker_submit_directory"])
    assert create[create.index("--cli-input-json") + 1] == "file://out dir/job.json"
    assert create[create.index("--region") + 1] == "us-east-1"


def test_stepfunctions_task_wraps_the_request():
    plan = make_plan(make_spec(), "sagemaker")
    provider = get_provider("sagemaker")
    state = provider.render_stepfunctions(plan)
    assert state["Type"] == "Task" and state["End"] is True
    assert state["Resource"] == "arn:aws:states:::sagemaker:createTrainingJob.sync"
    assert state["Parameters"] == provider.render(plan)


def test_render_imports_no_cloud_sdk():
    code = (
        "import sys\n"
        "from genai_cloud.loading import load_spec\n"
        "from genai_cloud.plan import make_plan\n"
        "from genai_cloud.providers import get_provider\n"
        f"spec = load_spec({{'name': 'x', 'model': {{'name_or_path': 'gpt2'}}, "
        f"'data': {{'train': 's3://b/t.jsonl'}}, 'output': {{'uri': 's3://b/o'}}, "
        f"'aws': {{'role_arn': '{ROLE}'}}}})\n"
        "get_provider('sagemaker').render(make_plan(spec, 'sagemaker'))\n"
        "print(sorted(m for m in ('boto3', 'botocore', 'torch') if m in sys.modules))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True)  # fmt: skip
    assert out.stdout.strip() == "[]"


# ---- errors -----------------------------------------------------------------------------------


def problems_of(**sections) -> str:
    with pytest.raises(SageMakerRenderError) as info:
        render(**sections)
    assert isinstance(info.value, GenaiCloudError)
    return info.value.message


def test_missing_role_names_the_field():
    assert "aws.role_arn: required" in problems_of(aws={"role_arn": None})


def test_non_s3_data_names_the_field(tmp_path):
    local = tmp_path / "train.jsonl"
    local.write_text('{"text": "hi"}\n')
    message = problems_of(data={"train": str(local), "eval": "gs://bucket/eval.jsonl"})
    assert "data.train: SageMaker reads inputs from S3" in message
    assert "data.eval: SageMaker reads inputs from S3" in message


def test_every_problem_is_reported_at_once():
    message = problems_of(aws={"role_arn": None}, output={"uri": "gs://elsewhere/out"},
                          data={"train": "/tmp/x.jsonl"})  # fmt: skip
    for field in ("aws.role_arn", "output.uri", "data.train"):
        assert field in message


def test_unknown_instance_type_lists_valid_ones():
    with pytest.raises(CatalogError) as info:
        render(compute={"accelerator": "A10G", "instance_type": "ml.g5.huge"})
    assert isinstance(info.value, GenaiCloudError)
    assert "ml.g5.huge" in info.value.message and "ml.g5.xlarge" in info.value.message


def test_instance_type_override_is_used():
    request = render(compute={"accelerator": "A10G", "instance_type": "ml.g5.12xlarge"})
    assert request["ResourceConfig"]["InstanceType"] == "ml.g5.12xlarge"
    assert request["HyperParameters"]["sagemaker_torch_distributed_enabled"] == "true"


def test_volume_kms_key_on_nvme_instance_is_refused():
    message = problems_of(compute={"accelerator": "A10G"},
                          aws={"volume_kms_key_id": "alias/genai"})  # fmt: skip
    assert "aws.volume_kms_key_id" in message and "ml.g5.xlarge" in message


def test_isolation_conflicts_are_explained():
    message = problems_of(aws={"network_isolation": True}, secrets={"HF_TOKEN": SECRET_ARN})
    assert "secrets: aws.network_isolation blocks" in message
    assert "model.name_or_path: hub id 'gpt2' cannot be downloaded" in message
    assert "aws.network_isolation: the job installs job_templates/requirements.txt" in message
    assert "set aws.image_uri" in message


def test_an_isolated_job_gets_its_code_through_the_code_channel():
    """As the SageMaker Python SDK does for isolated jobs: the bundle is an input channel, and
    sagemaker_submit_directory is where SageMaker puts it inside the container."""
    image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/genai-job:1"
    plan = make_plan(make_spec(model={"name_or_path": "s3://genai-models/gpt2/"},
                               aws={"network_isolation": True, "image_uri": image}), "sagemaker")
    request = get_provider("sagemaker").render(plan)
    assert request["EnableNetworkIsolation"] is True
    code = [c for c in request["InputDataConfig"] if c["ChannelName"] == "code"]
    assert len(code) == 1
    uri = code[0]["DataSource"]["S3DataSource"]["S3Uri"]
    assert uri == f"s3://genai-out/genai-cloud/bundles/{plan.bundle.name}"
    submit = json.loads(request["HyperParameters"]["sagemaker_submit_directory"])
    assert submit == f"/opt/ml/input/data/code/{plan.bundle.name}"
    assert_valid_request(request)
    # The upload the CLI prints goes where the code channel reads.
    assert get_provider("sagemaker").launch_commands(plan)[0].endswith(f" {uri}")


def test_vpc_needs_subnets_and_security_groups():
    assert "a VPC job needs both" in problems_of(aws={"subnets": ["subnet-1"]})


def test_runtime_beyond_28_days_is_refused():
    assert "compute.max_runtime" in problems_of(compute={"max_runtime": "30d"})


def test_cpu_multi_node_is_refused():
    assert "compute.nodes" in problems_of(compute={"accelerator": "cpu", "nodes": 2})


@pytest.mark.parametrize("compute", [{"accelerator": "tpu-v5e"}])
def test_tpu_is_unsupported_before_render(compute):
    with pytest.raises(UnsupportedFeatureError) as info:
        make_plan(make_spec(compute=compute), "sagemaker")
    assert "tpu" in info.value.message and "vertex" in info.value.message


def test_flex_start_is_unsupported():
    with pytest.raises(UnsupportedFeatureError):
        make_plan(make_spec(gcp={"strategy": "FLEX_START"}), "sagemaker")


def test_container_contract_matches_the_render():
    """What the training toolkit makes of the request is what the bundled entrypoint reads:
    channels as SM_CHANNEL_*, hyperparameters json-decoded and (worst case) passed as args."""
    from job_templates.contract import resolve

    request = render(data={"eval": "s3://genai-data/corpus/eval.jsonl"},
                     **SPREAD["8xH100x2"])  # fmt: skip
    hps = {k: json.loads(v) for k, v in request["HyperParameters"].items()}  # toolkit decoding
    assert hps["sagemaker_program"] == "run_job.py" and hps["sagemaker_torch_distributed_enabled"]
    names = [c["ChannelName"] for c in request["InputDataConfig"]]
    env = {"SM_MODEL_DIR": "/opt/ml/model", "SM_CHANNELS": json.dumps(names),
           "SM_OUTPUT_DATA_DIR": "/opt/ml/output/data", "RANK": "9", "WORLD_SIZE": "16",
           **{f"SM_CHANNEL_{n.upper()}": f"/opt/ml/input/data/{n}" for n in names}}  # fmt: skip
    argv = [part for k, v in hps.items() for part in (f"--{k}", str(v))]
    contract = resolve(argv, env)
    assert contract.platform == "sagemaker"
    assert {n: str(p) for n, p in contract.channels.items()} == {
        "train": "/opt/ml/input/data/train", "eval": "/opt/ml/input/data/eval"}  # fmt: skip
    assert str(contract.checkpoint_dir) == request.get("CheckpointConfig", {}).get(
        "LocalPath", "/opt/ml/checkpoints")  # fmt: skip
    assert (contract.rank, contract.world_size) == (9, 16)


def test_files_the_job_opens_arrive_through_the_channels_it_reads(tmp_path):
    """An image-eval spec's S3 objects: one channel each, and inside the container the spec's
    fields point at the copies SageMaker made (a file lands inside its channel's folder)."""
    from job_templates.contract import resolve

    evaluate = {"image_metrics": True, "perplexity": False,
                "generated_images": "s3://b/eval/generated/", "real_images": "s3://b/eval/real.npy",
                "feature_extractor": "s3://b/models/inception.pt2"}  # fmt: skip
    request = render(task="evaluate", data=None, evaluate=evaluate)
    names = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"]
             for c in request["InputDataConfig"]}  # fmt: skip
    assert names == {"generated": evaluate["generated_images"], "real": evaluate["real_images"],
                     "feature_extractor": evaluate["feature_extractor"]}  # fmt: skip
    data = tmp_path / "opt" / "ml" / "input" / "data"  # what File mode downloads
    for name, uri in names.items():
        (data / name).mkdir(parents=True)
        if not uri.endswith("/"):
            (data / name / uri.rsplit("/", 1)[1]).write_bytes(b"x")
    env = {"SM_MODEL_DIR": "/opt/ml/model", "SM_CHANNELS": json.dumps(sorted(names)),
           **{f"SM_CHANNEL_{n.upper()}": str(data / n) for n in names}}  # fmt: skip
    spec = {"evaluate": dict(evaluate)}
    resolve([], env).localize_files(spec)
    assert spec["evaluate"]["generated_images"] == str(data / "generated")
    assert spec["evaluate"]["real_images"] == str(data / "real" / "real.npy")
    assert spec["evaluate"]["feature_extractor"] == str(data / "feature_extractor" / "inception.pt2")
