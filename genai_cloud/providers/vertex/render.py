"""Google Vertex AI CustomJobs: GPU and TPU training from one spec.

``render(plan)`` returns a ``google.cloud.aiplatform_v1.CustomJob`` as a dict of snake_case proto
field names (``json_format.ParseDict(render, CustomJob.pb())`` accepts it; durations are "Ns"
strings, enums their member names). It is pure: no SDK import, no network, no credentials.

Why a container spec and not a Python package spec: a ``python_package_spec`` needs a
pip-installable source distribution (setup.py / pyproject) and runs ``python -m <module>`` from the
installed package, but our bundle is a plain tarball with ``run_job.py`` at its root. The container
spec runs the same prebuilt PyTorch training image with a short shell command that unpacks the
bundle from the Cloud Storage FUSE mount (``/gcs/<bucket>/...``, present in every custom job) and
runs the launcher, so Vertex executes byte-for-byte the bundle that the local runner executes.

Submitting, status, logs and cancel live in ``ops.py`` (they import the SDK lazily).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ... import contract, tpu
from ...catalog import Instance
from ...cost import capped_runtime
from ...errors import ProviderError
from ...naming import NameRules
from ...regions import env_region, launch_region
from ...spec import is_hub_dataset, is_remote_uri

if TYPE_CHECKING:
    from ...plan import Plan

# CustomJob.display_name: "can be up to 128 characters long and can consist of any UTF-8
# characters" (aiplatform_v1 CustomJob docs). Display names are not unique: the key label is.
VERTEX_NAMES = NameRules(max_len=128, allowed="a-zA-Z0-9._-")
KEY_LABEL = "genai-cloud-key"
TASK_LABEL = "genai-cloud-task"
DEFAULT_REGION = "us-central1"
OUTPUT_PREFIX = "genai-cloud/outputs"  # gs://<staging>/genai-cloud/outputs/<job>, as on S3
BUNDLE_PREFIX = "genai-cloud/bundles"  # gs://<staging>/genai-cloud/bundles/<name>, as on S3
WORKDIR = "/tmp/genai-bundle"  # where the container unpacks the bundle
BOOT_DISK = "pd-ssd"
_KMS_KEY = re.compile(r"^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$")
_LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")  # GCP: keys start with a lowercase letter
# GCP regions: us-central1, europe-west4, northamerica-northeast1. AWS's eu-west-1 (a dash before
# the digit) and Azure's eastus do not match.
_GCP_REGION = re.compile(r"^[a-z]+-[a-z]+\d+$")


# --------------------------------------------------------------------------------------------
# Render


def render_custom_job(plan: Plan) -> dict:
    """The CustomJob for a plan (snake_case proto fields).

    Raises:
        ProviderError: listing every setting Vertex cannot take, each naming its spec field.
    """
    spec = plan.spec
    instance = plan.placement.instance
    _check(plan, instance)
    base = output_base(spec, plan.job_name)
    pool = {
        "machine_spec": machine_spec(spec, instance),
        "replica_count": 1,  # pool 0 is the chief: exactly one replica
        "disk_spec": {"boot_disk_type": BOOT_DISK, "boot_disk_size_gb": spec.compute.volume_gb},
        "container_spec": container_spec(plan, instance),
    }
    pools = [pool]
    if spec.compute.nodes > 1:
        pools.append({**pool, "replica_count": spec.compute.nodes - 1})  # pool 1: the workers
    job_spec: dict = {
        "worker_pool_specs": pools,
        "base_output_directory": {"output_uri_prefix": base},
        "scheduling": scheduling(plan),
        "enable_web_access": False,  # an interactive shell into a training VM is opt-in, not ours
    }
    if spec.gcp.service_account:
        job_spec["service_account"] = spec.gcp.service_account
    if spec.gcp.network:
        job_spec["network"] = spec.gcp.network
    if spec.tracking.vertex_tensorboard:  # AIP_TENSORBOARD_LOG_DIR's files shown in that instance
        job_spec["tensorboard"] = spec.tracking.vertex_tensorboard
    job: dict = {"display_name": plan.job_name, "job_spec": job_spec, "labels": labels(plan)}
    if spec.gcp.kms_key_name:
        job["encryption_spec"] = {"kms_key_name": spec.gcp.kms_key_name}
    return job


def _check(plan: Plan, instance: Instance) -> None:
    spec, gcp = plan.spec, plan.spec.gcp
    problems = _storage_problems(spec)
    if not gcp.region and spec.compute.region and not _GCP_REGION.match(spec.compute.region):
        problems.append(f"compute.region: {spec.compute.region!r} is not a Google Cloud region "
                        "(e.g. us-central1, europe-west4); set gcp.region for Vertex")  # fmt: skip
    # compute.count / compute.nodes / gcp.tpu_topology of a TPU are checked with the spec
    # (genai_cloud/tpu.py: the shapes each generation is sold in).
    strategy = gcp.strategy
    if spec.compute.spot and strategy not in (None, "SPOT"):
        problems.append(f"gcp.strategy: {strategy} conflicts with compute.spot=true (use SPOT)")
    if gcp.max_wait is not None and strategy != "FLEX_START":
        problems.append("gcp.max_wait: only used with gcp.strategy FLEX_START")
    if gcp.kms_key_name and not _KMS_KEY.match(gcp.kms_key_name):
        problems.append("gcp.kms_key_name: expected projects/P/locations/L/keyRings/R/cryptoKeys/K")
    for key in spec.labels:
        if not _LABEL_KEY.match(key):
            problems.append(f"labels.{key}: GCP label keys start with a lowercase letter")
    if spec.tracking.vertex_tensorboard and not gcp.service_account:
        # Vertex uploads the event files to a TensorBoard instance only as a service account.
        problems.append("gcp.service_account: required with tracking.vertex_tensorboard (the "
                        "account needs roles/aiplatform.user and write access to output.uri)")  # fmt: skip
    if problems:
        raise ProviderError(
            "the spec cannot run on Vertex AI:\n" + "\n".join(f"  - {p}" for p in problems),
            headline="Invalid spec for vertex",
        )


def _storage_problems(spec) -> list[str]:
    """Where the job writes (output.uri / gcp.staging_bucket) and reads (data, models)."""
    problems, uri, gcp = [], spec.output.uri, spec.gcp
    if uri and not uri.startswith("gs://"):
        problems.append(f"output.uri: Vertex writes the model, checkpoints and outputs to Cloud "
                        f"Storage; set a gs://bucket/prefix (got {uri!r})")  # fmt: skip
    elif not uri and not gcp.staging_bucket:
        problems.append("output.uri: Vertex writes the model, checkpoints and outputs to Cloud "
                        "Storage; set output.uri to a gs://bucket/prefix, or gcp.staging_bucket "
                        f"(outputs then go to gs://<staging_bucket>/{OUTPUT_PREFIX})")  # fmt: skip
    if gcp.staging_bucket and not re.fullmatch(r"(gs://)?[a-z0-9][a-z0-9._-]{1,221}/?",
                                               gcp.staging_bucket):  # fmt: skip
        problems.append(f"gcp.staging_bucket: {gcp.staging_bucket!r} is not a bucket name")
    for field, value in _read_locations(spec):
        if value.startswith("gs://") or is_hub_dataset(value):  # hf://: the job loads it
            continue
        if is_remote_uri(value):
            problems.append(f"{field}: Vertex jobs read Cloud Storage; copy {value!r} to a gs:// "
                            "URI (e.g. `gcloud storage cp`) and point the spec at it")  # fmt: skip
        elif field not in _MODEL_FIELDS or value.startswith((".", "/")):
            # Model fields may be hub ids or pkg:// folders; every other field is a path.
            problems.append(f"{field}: {value!r} is a local path the job cannot see; upload it "
                            "to a gs:// URI first")  # fmt: skip
    return problems


# Spec fields the job reads: gs:// ones through the /gcs FUSE mount (data as GENAI_CHANNEL_*).
# Every file or folder the job reads (one table with the job: contract.INPUT_CHANNELS); Vertex
# delivers none as a channel, the job opens gs:// through the FUSE mount.
_READ_FIELDS = tuple(contract.INPUT_CHANNELS)
_MODEL_FIELDS = tuple(f"{s}.{n}" for s, n in contract.MODEL_CHANNELS)


def _read_locations(spec) -> list[tuple[str, str]]:
    found = [(f"{s}.{n}", getattr(getattr(spec, s, None), n, None)) for s, n in _READ_FIELDS]
    return [(field, value) for field, value in found if value]


def region_of(spec) -> str:
    """gcp.region, else compute.region, else the region the aiplatform SDK reads from the
    environment (GOOGLE_CLOUD_REGION, CLOUD_ML_REGION), else us-central1 (regions.py)."""
    return launch_region(spec, "vertex")


def default_region() -> str:
    """The region without a spec: the SDK's environment region, else us-central1."""
    return env_region("vertex") or DEFAULT_REGION


def output_root(spec) -> str:
    """Where jobs write: output.uri, else gs://<gcp.staging_bucket>/genai-cloud/outputs."""
    if spec.output.uri:
        return spec.output.uri.rstrip("/")
    return f"gs://{staging_bucket(spec)}/{OUTPUT_PREFIX}"


def output_base(spec, job_name: str) -> str:
    """``<output root>/<job name>``: AIP_MODEL_DIR etc. are set below it, one folder per job."""
    return f"{output_root(spec)}/{job_name}"


def staging_bucket(spec) -> str:
    """Bucket for bundles: gcp.staging_bucket, else the bucket of output.uri."""
    if spec.gcp.staging_bucket:
        return spec.gcp.staging_bucket.removeprefix("gs://").strip("/")
    return spec.output.uri[len("gs://") :].split("/", 1)[0]


def bundle_uri(plan: Plan) -> str:
    """Bundles live under their content hash, so an upload is skipped when the object exists."""
    return f"gs://{staging_bucket(plan.spec)}/{BUNDLE_PREFIX}/{plan.bundle.name}"


def machine_spec(spec, instance: Instance) -> dict:
    extra = instance.extra
    machine = {"machine_type": extra.get("machine_type", instance.type)}
    if instance.accelerator.startswith("tpu-"):
        # ct5lp / ct5p / ct6e machine types fix the chip and its count; only the legacy
        # "cloud-tpu" machine type names its accelerator explicitly.
        if machine["machine_type"] == "cloud-tpu":
            machine["accelerator_type"] = extra["accelerator_type"]
            machine["accelerator_count"] = instance.count
        machine["tpu_topology"] = tpu_slice(spec, instance).topology
    elif instance.count:
        machine["accelerator_type"] = extra["accelerator_type"]
        machine["accelerator_count"] = instance.count
    return machine


def tpu_slice(spec, instance: Instance) -> tpu.Slice:
    """The TPU slice the job runs on: the spec's shape, or the one its chip count names."""
    return tpu.resolve(instance.accelerator, spec.compute.count, spec.gcp.tpu_topology,
                       instance.extra.get("tpu_topology"))  # fmt: skip


def processes_per_node(instance: Instance) -> int:
    """One process per GPU; TPU (torch_xla drives every chip) and CPU jobs run one process."""
    return instance.count if instance.accelerator not in ("cpu",) and not _is_tpu(instance) else 1


def _is_tpu(instance: Instance) -> bool:
    return instance.accelerator.startswith("tpu-")


def image_for(spec, instance: Instance) -> str:
    """gcp.image_uri, else the runtime table's prebuilt container (genai_cloud.runtimes)."""
    if spec.gcp.image_uri:
        return spec.gcp.image_uri
    from ...runtimes import for_spec

    return for_spec("vertex", spec).image


def container_spec(plan: Plan, instance: Instance) -> dict:
    spec = plan.spec
    env = {"GENAI_JOB_NAME": plan.job_name, **spec.env}
    if spec.data is not None:
        # The contract maps GENAI_CHANNEL_<NAME>=gs://... onto the /gcs FUSE mount.
        for name in ("train", "eval"):
            value = getattr(spec.data, name)
            if value and not is_hub_dataset(value):  # hf:// is loaded by the job itself
                env[f"GENAI_CHANNEL_{name.upper()}"] = value
    if _is_tpu(instance):
        env.setdefault("PJRT_DEVICE", "TPU")  # torch_xla's runtime selector
    # Secrets are deliberately absent: spec.json carries only their references, and the
    # entrypoint resolves them from Secret Manager inside the job.
    return {
        "image_uri": image_for(spec, instance),
        "command": ["bash", "-c", launch_script(plan, instance)],
        "env": [{"name": k, "value": v} for k, v in sorted(env.items())],
    }


# Reads Vertex's CLUSTER_SPEC: node rank (pool 0 = 0, pool 1 index i = i + 1) and the chief's
# host:port, the rendezvous point torchrun needs. No single quotes: it sits inside '...'.
_CLUSTER_PY = (
    'import json,os;c=json.loads(os.environ.get("CLUSTER_SPEC") or "{}");'
    't=c.get("task",{});w=c.get("cluster",{}).get("workerpool0") or ["localhost:29500"];'
    'r=0 if t.get("type","workerpool0")=="workerpool0" else 1+int(t.get("index",0));'
    'h,_,p=w[0].rpartition(":");print(r,h,p)'
)


def launch_script(plan: Plan, instance: Instance) -> str:
    uri = bundle_uri(plan)
    fuse = "/gcs/" + uri[len("gs://") :]
    lines = [
        "set -euo pipefail",
        f"mkdir -p {WORKDIR} && tar -xzf {fuse} -C {WORKDIR} && cd {WORKDIR}",
        "python -m pip install --quiet --disable-pip-version-check -r requirements.txt",
    ]
    nproc, nodes = processes_per_node(instance), plan.spec.compute.nodes
    if _is_tpu(instance):
        # One replica per slice, also for a multi-host slice (machine_type + tpu_topology name
        # the whole slice; Vertex "Configure compute resources for custom training", TPU section:
        # https://cloud.google.com/vertex-ai/docs/training/configure-compute#tpu). Vertex starts
        # this container on every host of the slice; each host's TPU runtime gives PJRT the
        # worker id and the hosts (TPU_WORKER_ID / TPU_WORKER_HOSTNAMES or the TPU metadata
        # server), not CLUSTER_SPEC. The launcher then starts one process per local chip
        # (torch_xla.launch), ranked across the slice. As read from the docs; not yet run live.
        lines.append("exec python -m job_templates.common.xla")
    elif nproc == 1 and nodes == 1:
        lines.append("exec python run_job.py")
    else:
        lines.append(
            f"read -r NODE_RANK CHIEF_HOST CHIEF_PORT <<< \"$(python -c '{_CLUSTER_PY}')\""
        )
        lines.append(
            f"exec python -m torch.distributed.run --nnodes={nodes} --node_rank=$NODE_RANK "
            f"--nproc_per_node={nproc} --master_addr=$CHIEF_HOST --master_port=$CHIEF_PORT "
            "run_job.py"
        )
    return "\n".join(lines)


def scheduling(plan: Plan) -> dict:
    spec = plan.spec
    result: dict = {
        "timeout": f"{capped_runtime(plan)}s",  # max_runtime, lowered by the budget
        "restart_job_on_worker_restart": spec.gcp.restart_job_on_worker_restart,
    }
    strategy = spec.gcp.strategy or ("SPOT" if spec.compute.spot else None)
    if strategy:
        result["strategy"] = strategy
    if strategy == "FLEX_START" and spec.gcp.max_wait:
        result["max_wait_duration"] = f"{spec.gcp.max_wait}s"
    return result


def labels(plan: Plan) -> dict[str, str]:
    spec = plan.spec
    task = getattr(spec.task, "value", spec.task)  # the default is an enum member, not its value
    return {**spec.labels, KEY_LABEL: plan.key, TASK_LABEL: task}
