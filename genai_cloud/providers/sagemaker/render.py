"""AWS SageMaker training jobs: render one ``CreateTrainingJob`` request, then submit and operate it.

``render(plan)`` is pure: it needs no credentials and makes no call, and it returns exactly the
request ``submit`` sends (and what ``render --format native`` hands to
``aws sagemaker create-training-job --cli-input-json``). The boto3 side lives in
``ops.py`` and is imported only when a job is submitted or inspected.

How the job runs: the SageMaker training toolkit in the Hugging Face / PyTorch Deep Learning
Container downloads the bundle (``sagemaker_submit_directory``), pip-installs its
``requirements.txt`` and runs ``run_job.py`` (``sagemaker_program``), which starts the bundled
entrypoint. The spec travels inside the bundle as ``spec.json``; the only hyperparameters are the
toolkit's own. Secrets are resolved by the entrypoint from ``spec.json``'s ``secrets`` references
at run time, so neither values nor references are put in ``Environment`` (which
``DescribeTrainingJob`` returns in plain text).
"""

from __future__ import annotations

import json
import os
import shlex
from typing import TYPE_CHECKING

from job_templates.common import tracking

from ... import contract
from ...bundle import LAUNCHER
from ...catalog import Instance
from ...cost import capped_runtime
from ...errors import ProviderError
from ...naming import NameRules
from ...regions import launch_region
from ...spec import is_hub_dataset

if TYPE_CHECKING:
    from ...plan import Plan
    from ...spec import JobSpec

# TrainingJobName: ^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$ (CreateTrainingJob API reference).
SAGEMAKER_NAMES = NameRules(max_len=63, allowed="a-zA-Z0-9-")
KEY_TAG = "genai-cloud-key"  # tag carrying Plan.key: finds a job again without its name
NAME_TAG = "genai-cloud-name"
BUNDLE_PREFIX = "genai-cloud/bundles"  # bundles live at s3://<bucket>/genai-cloud/bundles/<name>
CHECKPOINT_LOCAL_PATH = "/opt/ml/checkpoints"  # what the toolkit syncs to CheckpointConfig.S3Uri
# An isolated container cannot download sagemaker_submit_directory from S3: as the SageMaker
# Python SDK does for such jobs, the bundle arrives as the input channel "code" and the toolkit
# unpacks it from there (sagemaker-python-sdk: CONTAINER_CODE_CHANNEL_SOURCEDIR_PATH).
CODE_CHANNEL = "code"
ISOLATED_CODE_DIR = "/opt/ml/input/data/code"
# SageMaker stops any training job after 28 days (Service Quotas: "Longest run time for a
# training job"); asking for more is rejected by the API, so say so before the call.
MAX_RUNTIME_S = 28 * 24 * 3600
MAX_ENV_VALUE = 512  # CreateTrainingJob Environment value length limit (service model)
MAX_TAGS = 50  # CreateTrainingJob Tags limit (service model)

# Deep Learning Container registry accounts (sagemaker-python-sdk image_uri_config): most
# regions share 763104351884; these regions have their own.
DLC_ACCOUNTS = {
    "af-south-1": "626614931356",
    "ap-east-1": "871362719292",
    "ap-northeast-3": "364406365360",
    "eu-south-1": "692866216735",
    "me-south-1": "217643126080",
    "cn-north-1": "727897471807",
    "cn-northwest-1": "727897471807",
    "us-gov-west-1": "442386744353",
}
DLC_DEFAULT_ACCOUNT = "763104351884"

# Spec fields that may name S3 objects the job reads -> the input channel that delivers them
# (``SM_CHANNEL_<NAME>`` inside the container; one table with the job: contract.INPUT_CHANNELS).
DATA_CHANNELS = tuple({**contract.DATA_CHANNELS, **contract.FILE_CHANNELS}.items())
# Model fields may also be a hub id (downloaded by the job when it has internet access).
MODEL_CHANNELS = tuple(contract.MODEL_CHANNELS.items())


class SageMakerRenderError(ProviderError):
    """The spec cannot become a CreateTrainingJob request; lists every reason at once."""

    headline = "Cannot render for SageMaker"

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(f"  - {p}" for p in problems))


# --------------------------------------------------------------------------------------------
# The request


def region_of(spec: JobSpec) -> str:
    """aws.region, else compute.region, else the AWS_REGION / AWS_DEFAULT_REGION environment
    (what boto3 would use), else the catalog's default region (regions.py: the region priced)."""
    return launch_region(spec, "sagemaker")


def split_s3(uri: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` -> ``("bucket", "a/b")``."""
    bucket, _, key = uri[len("s3://") :].partition("/")
    return bucket, key


def output_uri(spec: JobSpec) -> str | None:
    """Where the job writes: output.uri, else s3://<aws.bucket>/genai-cloud/outputs."""
    if spec.output.uri:
        return spec.output.uri.rstrip("/")
    if spec.aws.bucket:
        return f"s3://{spec.aws.bucket}/genai-cloud/outputs"
    return None


def bundle_location(plan: Plan) -> tuple[str, str]:
    """(bucket, key) of the plan's bundle: keyed by its content hash, so uploads dedupe."""
    spec = plan.spec
    out = output_uri(spec)
    bucket = spec.aws.bucket or (split_s3(out)[0] if out and out.startswith("s3://") else None)
    if not bucket:
        raise SageMakerRenderError(
            ["aws.bucket: set it, or set output.uri to an s3:// URI, so the bundle has a home"]
        )
    return bucket, f"{BUNDLE_PREFIX}/{plan.bundle.name}"


def launch_commands(plan: Plan, path: str | os.PathLike | None = None) -> list[str]:
    """``aws s3 cp`` of the bundle to the key the request names, then ``create-training-job``."""
    bucket, key = bundle_location(plan)
    # `render -o` writes the bundle beside the file: name both as seen from where it ran.
    local = os.path.join(os.path.dirname(path), plan.bundle.name) if path else plan.bundle.name
    target = shlex.quote(f"file://{path}") if path else "file://THIS_FILE"
    create = f"aws sagemaker create-training-job --region {plan.placement.region}"
    return [f"aws s3 cp {shlex.quote(local)} s3://{bucket}/{key}",
            f"{create} --cli-input-json {target}"]  # fmt: skip


def image_uri(spec: JobSpec, instance: Instance, region: str) -> str:
    """aws.image_uri, else the runtime table's DLC (genai_cloud.runtimes) in the region's registry."""
    if spec.aws.image_uri:
        return spec.aws.image_uri
    from ...runtimes import for_spec

    account = DLC_ACCOUNTS.get(region, DLC_DEFAULT_ACCOUNT)
    domain = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"{account}.dkr.ecr.{region}.{domain}/{for_spec('sagemaker', spec).image}"


def distributed(spec: JobSpec, instance: Instance) -> bool:
    """torchrun is needed when the job spans several GPUs or several nodes."""
    return instance.accelerator != "cpu" and (instance.count > 1 or spec.compute.nodes > 1)


def hyperparameters(plan: Plan, instance: Instance, region: str, bundle_uri: str) -> dict:
    """The toolkit's own parameters only. Values are JSON-encoded, as the SageMaker Python SDK
    does, because the toolkit ``json.loads`` every value (and falls back to raw strings for *all*
    of them if one fails)."""
    if plan.spec.aws.network_isolation:
        bundle_uri = f"{ISOLATED_CODE_DIR}/{plan.bundle.name}"
    params: dict = {
        "sagemaker_program": LAUNCHER,
        "sagemaker_submit_directory": bundle_uri,
        "sagemaker_region": region,
    }
    if distributed(plan.spec, instance):
        # The PyTorch/HF DLC launches the program with torchrun on every node, one process per
        # GPU (sagemaker-python-sdk: distribution={"torch_distributed": {"enabled": True}}).
        params["sagemaker_torch_distributed_enabled"] = True
        params["sagemaker_instance_type"] = instance.type
    return {key: json.dumps(value) for key, value in params.items()}


def _field(spec: JobSpec, path: tuple[str, str]) -> str | None:
    section = getattr(spec, path[0], None)
    return getattr(section, path[1], None) if section is not None else None


def _channel(name: str, uri: str) -> dict:
    # S3Prefix covers both a single object (its key is a prefix of itself) and a folder.
    source = {"S3DataType": "S3Prefix", "S3Uri": uri, "S3DataDistributionType": "FullyReplicated"}
    return {"ChannelName": name, "DataSource": {"S3DataSource": source}}


def input_channels(spec: JobSpec, problems: list[str]) -> list[dict]:
    channels = []
    for path, name in DATA_CHANNELS:
        value = _field(spec, path)
        if value is None:
            continue
        if is_hub_dataset(value):  # no channel: the job loads it from the hub
            if spec.aws.network_isolation:
                problems.append(f"{'.'.join(path)}: {value} cannot be downloaded under "
                                "aws.network_isolation; pre-stage a copy in S3 (save_to_disk "
                                "or parquet) and give its s3:// URI")  # fmt: skip
            continue
        if not value.startswith("s3://"):
            problems.append(f"{'.'.join(path)}: SageMaker reads inputs from S3; upload "
                            f"{value!r} and give its s3:// URI")  # fmt: skip
            continue
        channels.append(_channel(name, value))
    for path, name in MODEL_CHANNELS:
        value = _field(spec, path)
        if value is None:
            continue
        if value.startswith("s3://"):
            channels.append(_channel(name, value))
        elif "://" in value or os.path.isabs(value):
            problems.append(f"{'.'.join(path)}: {value!r} is not reachable from SageMaker; use "
                            "a hub id or an s3:// URI")  # fmt: skip
        elif spec.aws.network_isolation:
            problems.append(f"{'.'.join(path)}: hub id {value!r} cannot be downloaded under "
                            "aws.network_isolation; stage the model in S3 and give its s3:// URI")  # fmt: skip
    return channels


def _tracking(spec: JobSpec, out: str | None, job_name: str, problems: list[str]) -> dict:
    """TensorBoard event files uploaded from the job's TensorBoard folder; the trackers that an
    isolated container cannot reach."""
    backends = spec.tracking.backends
    if spec.aws.network_isolation:
        remote = [b for b in backends if b == "wandb" or (b == "mlflow" and spec.tracking.mlflow_uri
                  and (spec.tracking.mlflow_uri.startswith(("http", "arn:", "databricks"))))]  # fmt: skip
        if remote:
            problems.append(f"tracking.backends: {', '.join(remote)} cannot be reached under "
                            "aws.network_isolation; use tensorboard or an MLflow file store "
                            "(no tracking.mlflow_uri)")  # fmt: skip
    if spec.aws.network_isolation and spec.output.push_to_hub is not None:
        problems.append("output.push_to_hub: the Hugging Face Hub cannot be reached under "
                        "aws.network_isolation; push from outside the job instead")  # fmt: skip
    if "tensorboard" not in backends:
        return {}
    return {"TensorBoardOutputConfig": {"S3OutputPath": f"{out}/{job_name}/tensorboard",
                                        "LocalPath": tracking.SAGEMAKER_TENSORBOARD_DIR}}  # fmt: skip


def _resources(spec: JobSpec, instance: Instance, problems: list[str]) -> dict:
    config = {
        "InstanceType": instance.type,
        "InstanceCount": spec.compute.nodes,
        "VolumeSizeInGB": spec.compute.volume_gb,
    }
    if spec.aws.volume_kms_key_id:
        if instance.extra.get("local_nvme"):
            problems.append(f"aws.volume_kms_key_id: {instance.type} has local NVMe instance "
                            "storage, which SageMaker encrypts itself and which cannot take a "
                            "volume KMS key; drop the key or pick an EBS-only type (ml.m5.*, "
                            "ml.p3.*)")  # fmt: skip
        config["VolumeKmsKeyId"] = spec.aws.volume_kms_key_id
    if instance.accelerator == "cpu" and spec.compute.nodes > 1:
        problems.append("compute.nodes: multi-node jobs need GPUs on SageMaker (the DLC's "
                        "torchrun launcher starts one process per GPU); use a GPU accelerator "
                        "or nodes: 1")  # fmt: skip
    return config


def _stopping(plan: Plan, problems: list[str]) -> dict:
    spec = plan.spec
    runtime = capped_runtime(plan)  # budget.max_usd may lower max_runtime
    if runtime > MAX_RUNTIME_S:
        problems.append(f"compute.max_runtime: {runtime} s is beyond SageMaker's 28-day limit "
                        f"({MAX_RUNTIME_S} s)")  # fmt: skip
    condition = {"MaxRuntimeInSeconds": runtime}
    if spec.compute.spot:
        # Waiting for spot capacity counts against MaxWait, which must be >= MaxRuntime: allow
        # as long a wait as the run itself, within the same 28-day ceiling.
        condition["MaxWaitTimeInSeconds"] = max(runtime, min(2 * runtime, MAX_RUNTIME_S))
    return condition


def _tags(plan: Plan, problems: list[str]) -> list[dict]:
    tags = [{"Key": k, "Value": v} for k, v in sorted(plan.spec.labels.items())]
    tags += [{"Key": KEY_TAG, "Value": plan.key}, {"Key": NAME_TAG, "Value": plan.spec.name}]
    if len(tags) > MAX_TAGS:
        problems.append(f"labels: SageMaker takes at most {MAX_TAGS - 2} labels "
                        f"(2 tags are genai-cloud's own); got {len(plan.spec.labels)}")  # fmt: skip
    return tags


def _security(spec: JobSpec, problems: list[str]) -> dict:
    aws = spec.aws
    extra: dict = {}
    if aws.subnets or aws.security_group_ids:
        if not (aws.subnets and aws.security_group_ids):
            problems.append("aws.subnets / aws.security_group_ids: a VPC job needs both")
        extra["VpcConfig"] = {"SecurityGroupIds": list(aws.security_group_ids),
                              "Subnets": list(aws.subnets)}  # fmt: skip
    if aws.network_isolation and not aws.image_uri:
        # The toolkit pip-installs the bundle's requirements.txt at start; offline, that works
        # only when the image already has every one of them (pip then downloads nothing). The
        # stock DLCs lack some (peft, datasketch, fairlearn, ...).
        problems.append("aws.network_isolation: the job installs job_templates/requirements.txt "
                        "when it starts, which an isolated container cannot download, and the "
                        "stock training image lacks some of it; build an image FROM it with "
                        "`pip install -r requirements.txt` (the bundle's) and set aws.image_uri "
                        "to it")  # fmt: skip
    if aws.network_isolation and spec.secrets:
        problems.append(f"secrets: aws.network_isolation blocks the Secrets Manager call that "
                        f"resolves {', '.join(sorted(spec.secrets))} at run time; drop one of "
                        "the two")  # fmt: skip
    return extra


def _environment(spec: JobSpec, problems: list[str]) -> dict:
    for key, value in spec.env.items():
        if len(value) > MAX_ENV_VALUE:
            problems.append(f"env.{key}: SageMaker limits values to {MAX_ENV_VALUE} characters")
    return dict(sorted(spec.env.items()))


def build_request(plan: Plan) -> dict:
    """The CreateTrainingJob request for a plan (pure).

    Raises:
        SageMakerRenderError: every problem found, each naming the spec field to change.
        CatalogError: no instance type fits ``compute`` (the message lists what does).
    """
    spec = plan.spec
    problems: list[str] = []
    region = plan.placement.region
    instance = plan.placement.instance  # CatalogError lists valid types
    if not spec.aws.role_arn:
        problems.append("aws.role_arn: required; the IAM role SageMaker assumes to run the job "
                        "(arn:aws:iam::<account>:role/<name>)")  # fmt: skip
    out = output_uri(spec)
    if out is None or not out.startswith("s3://"):
        problems.append("output.uri: SageMaker writes to S3; set an s3:// URI (or aws.bucket)"
                        + (f", got {out!r}" if out else ""))  # fmt: skip
    try:
        bucket, key = bundle_location(plan)
        bundle_uri = f"s3://{bucket}/{key}"
    except SageMakerRenderError as exc:
        problems.extend(exc.problems)
        bundle_uri = ""
    output_config = {"S3OutputPath": out}
    if spec.aws.kms_key_id:
        output_config["KmsKeyId"] = spec.aws.kms_key_id
    request = {
        "TrainingJobName": plan.job_name,
        "AlgorithmSpecification": {
            "TrainingImage": image_uri(spec, instance, region),
            "TrainingInputMode": spec.aws.input_mode,
        },
        "RoleArn": spec.aws.role_arn,
        "HyperParameters": hyperparameters(plan, instance, region, bundle_uri),
        "OutputDataConfig": output_config,
        "ResourceConfig": _resources(spec, instance, problems),
        "StoppingCondition": _stopping(plan, problems),
        "EnableManagedSpotTraining": spec.compute.spot,
        "EnableNetworkIsolation": spec.aws.network_isolation,
        "EnableInterContainerTrafficEncryption": spec.aws.inter_container_encryption,
        "Tags": _tags(plan, problems),
    }
    channels = input_channels(spec, problems)
    if spec.aws.network_isolation and bundle_uri:
        channels.append(_channel(CODE_CHANNEL, bundle_uri))
    if channels:  # the API wants 1..20 channels or none at all (a toy task reads no data)
        request["InputDataConfig"] = channels
    if spec.checkpointing() or spec.compute.spot:
        # Under the job's own output folder: a restart of the same plan (same job name) finds
        # the checkpoints of the interrupted attempt.
        request["CheckpointConfig"] = {"S3Uri": f"{out}/{plan.job_name}/checkpoints",
                                       "LocalPath": CHECKPOINT_LOCAL_PATH}  # fmt: skip
    request.update(_tracking(spec, out, plan.job_name, problems))
    request.update(_security(spec, problems))
    environment = _environment(spec, problems)
    if environment:
        request["Environment"] = environment
    if problems:
        raise SageMakerRenderError(problems)
    return request


# ---- the model registry ------------------------------------------------------------------------

_TASKS = {"causal-lm": "TEXT_GENERATION", "sequence-classification": "CLASSIFICATION"}


def model_package_request(plan: Plan, model_data_url: str, metrics: dict | None = None) -> dict:
    """The CreateModelPackage request registering ``plan``'s model (``output.register``): a new
    version in the package group, idempotent per job (``ClientToken`` from the plan's key)."""
    import hashlib

    spec, settings = plan.spec, plan.spec.output.register_model
    head = spec.model.head if spec.model else "causal-lm"
    described = f"genai-cloud job {plan.job_name}" + (f": {settings.description}"
                                                      if settings.description else "")  # fmt: skip
    properties = {"genai-cloud:job": plan.job_name, "genai-cloud:spec": spec.name,
                  "genai-cloud:task": str(spec.task),
                  "model_card": f"{model_data_url} (README.md)"}  # fmt: skip
    for key, value in sorted((metrics or {}).items())[:40]:  # the API takes at most 50
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            properties[f"metric:{key}"[:128]] = f"{value:.6g}"
    return {
        "ModelPackageGroupName": settings.name,
        "ModelPackageDescription": described[:1024],
        "InferenceSpecification": {
            "Containers": [{"Image": settings.image_uri, "ModelDataUrl": model_data_url}],
            "SupportedContentTypes": ["application/json"],
            "SupportedResponseMIMETypes": ["application/json"],
        },
        "ModelApprovalStatus": settings.approval,
        "Domain": "NATURAL_LANGUAGE_PROCESSING",
        "Task": _TASKS.get(head, "OTHER"),
        "CustomerMetadataProperties": properties,
        "ClientToken": hashlib.sha256(plan.job_name.encode()).hexdigest()[:36],
        "Tags": [{"Key": KEY_TAG, "Value": plan.key}],
    }
