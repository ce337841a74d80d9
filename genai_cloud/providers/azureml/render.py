"""Azure Machine Learning command jobs.

``render(plan)`` returns the command-job YAML document as a dict: ``azure.ai.ml.load_job`` accepts
it once written to a file (unknown fields fail there), and ``az ml job create --file`` takes the
same file. It is pure: no SDK import, no network, no credentials.

``code`` points at the bundle *folder*: ``./<bundle name without .tar.gz>``, relative to the job
file. ``submit`` extracts the bundle there in a temporary directory before loading the job;
``render --format native -o FILE`` extracts it beside FILE for ``az ml job create``. Azure uploads that folder as
the job's code snapshot and runs the command from it, so ``run_job.py`` is at the working dir.

Operations (submit, status, logs, cancel, list) live in ``ops.py``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from ... import contract
from ...catalog import Instance
from ...cost import capped_runtime
from ...errors import ProviderError
from ...naming import NameRules
from ...spec import is_hub_dataset, is_remote_uri

if TYPE_CHECKING:
    from ...plan import Plan

# Job names are unique per workspace and become run ids: letters, digits, '-' and '_'
# (az ml job create rejects others); 255 is the run-id length limit.
AZURE_NAMES = NameRules(max_len=255, allowed="a-zA-Z0-9_-")
SCHEMA = "https://azuremlschemas.azureedge.net/latest/commandJob.schema.json"
KEY_TAG = "genai-cloud-key"
INSTANCE_TAG = "genai-cloud-instance-type"  # the job table prices a cluster job by it
JOB_FILE = "job.yml"
AZURE_MLFLOW = "azureml-mlflow>=1.55"  # the workspace's MLflow (MLFLOW_TRACKING_URI=azureml://...)
_FILE_SUFFIXES = (".jsonl", ".json", ".txt", ".csv", ".tsv", ".parquet", ".arrow", ".gz", ".tar", ".zip",
                  ".npy", ".pt")  # fmt: skip
# Spec fields the job reads -> the input that delivers them, passed as ``--data NAME=PATH`` and
# read as ``contract.channel(NAME)`` (one table with the job: contract.INPUT_CHANNELS).
DATA_INPUTS = tuple((*field, name) for field, name in
                    {**contract.DATA_CHANNELS, **contract.FILE_CHANNELS}.items())  # fmt: skip
# Model fields may also name what the job loads by itself: a hub id (gpt2) or a pkg:// folder.
MODEL_INPUTS = tuple((*field, name) for field, name in contract.MODEL_CHANNELS.items())
_VALID = {
    "data": "azureml:// datastore paths, https URLs or local files (uploaded on submit)",
    "model": "a hub id, pkg://, a registered model (azureml:<name>:<version>, "
             "azureml://registries/<r>/models/<m>/versions/<v>), an azureml:// datastore path, an "
             "https URL or a local folder (uploaded on submit)",
}  # fmt: skip
# azureml://registries/<r>/models/<m>/versions/<v>, azureml://subscriptions/.../workspaces/<w>/
# models/<m>/versions/<v>, azureml://locations/<l>/workspaces/<id>/models/<m>/versions/<v>.
_MODEL_ASSET = re.compile(r"^azureml://(?:[^/]+/[^/]+/)*?(?:registries|workspaces)/[^/]+/"
                          r"models/[^/]+(?:/(?:versions|labels)/[^/]+)?/?$", re.IGNORECASE)  # fmt: skip


# --------------------------------------------------------------------------------------------
# Render


def bundle_dir_name(plan: Plan) -> str:
    return plan.bundle.name.removesuffix(".tar.gz")


def render_command_job(plan: Plan) -> dict:
    """The command-job YAML document for a plan.

    Raises:
        ProviderError: listing every setting Azure ML cannot take, each naming its spec field.
    """
    spec, azure = plan.spec, plan.spec.azure
    instance = plan.placement.instance
    problems: list[str] = []
    inputs = job_inputs(spec, problems)
    _check(plan, problems)
    job: dict = {
        "$schema": SCHEMA,
        "type": "command",
        "name": plan.job_name,
        "display_name": spec.name,
        "experiment_name": azure.experiment_name or spec.name,
        "code": f"./{bundle_dir_name(plan)}",
        "command": command_line(inputs),
        "environment": environment(spec),
    }
    if spec.env:
        # Non-secret values only: secrets stay references inside spec.json.
        job["environment_variables"] = dict(sorted(spec.env.items()))
    job.update(placement(spec, instance))
    if inputs:
        job["inputs"] = inputs
    job["outputs"] = job_outputs(spec, plan.job_name)
    tier = azure.job_tier or ("spot" if spec.compute.spot else None)
    if tier:
        job["queue_settings"] = {"job_tier": tier}
    if azure.identity:
        job["identity"] = {"type": "managed" if azure.identity == "managed" else "user_identity"}
    job["limits"] = {"timeout": capped_runtime(plan)}  # max_runtime, or less by budget
    job["tags"] = {**spec.labels, KEY_TAG: plan.key, INSTANCE_TAG: instance.type}
    return job


def _check(plan: Plan, problems: list[str]) -> None:
    """Raise with ``problems`` (from the inputs) plus every other setting Azure cannot take."""
    spec = plan.spec
    uri = spec.output.uri
    if uri and not uri.startswith("azureml://"):
        problems.insert(0, f"output.uri: Azure ML outputs go to a datastore; use "
                           f"azureml://datastores/<name>/paths/<prefix> or leave it unset "
                           f"(got {uri!r})")  # fmt: skip
    if spec.azure.job_tier and spec.azure.job_tier != "spot" and spec.compute.spot:
        problems.append(f"azure.job_tier: {spec.azure.job_tier!r} conflicts with "
                        "compute.spot=true (use 'spot')")  # fmt: skip
    if problems:
        raise ProviderError(
            "the spec cannot run on Azure ML:\n" + "\n".join(f"  - {p}" for p in problems),
            headline="Invalid spec for azureml",
        )


def _field(spec, section: str, name: str) -> str | None:
    part = getattr(spec, section, None)
    return getattr(part, name, None) if part is not None else None


def _is_local(value: str) -> bool:
    # loading.py makes relative paths that exist absolute; what is left relative is a hub id.
    return os.path.isabs(value) or value.startswith(".") or Path(value).exists()


def _input_type(location: str) -> str:
    if not is_remote_uri(location):
        return "uri_file" if Path(location).is_file() else "uri_folder"
    tail = location.rstrip("/").rsplit("/", 1)[-1]
    return (
        "uri_file" if not location.endswith("/") and tail.endswith(_FILE_SUFFIXES) else "uri_folder"
    )


def _input(field: str, value: str, *, model: bool, problems: list[str]) -> dict | None:
    """The job input that delivers ``value``; None when the job reads it by itself (a hub id,
    ``pkg://``) or when Azure cannot deliver it (then a problem naming ``field`` is added)."""
    if is_hub_dataset(value):
        return None  # hf://ORG/NAME: the job loads it from the hub
    readable = ("azureml://", "https://", "http://") + (("pkg://",) if model else ())
    if "://" in value and not value.startswith(readable):
        problems.append(f"{field}: Azure ML jobs read {_VALID['model' if model else 'data']}; "
                        f"got {value!r}")  # fmt: skip
        return None
    if value.startswith("azureml:"):
        registered = _MODEL_ASSET.match(value) or (model and not value.startswith("azureml://"))
        # Datastore paths and registered models mount read-only.
        return {"type": "custom_model" if registered else _input_type(value), "path": value,
                "mode": "ro_mount"}  # fmt: skip
    if value.startswith(("https://", "http://")):
        # An https URL cannot be mounted, only downloaded.
        return {"type": _input_type(value), "path": value, "mode": "download"}
    if model and (value.startswith("pkg://") or not _is_local(value)):
        return None
    if not Path(value).exists():
        problems.append(f"{field}: local path {value} does not exist")
        return None
    # Local: uploaded by the SDK on submit (and by `az ml job create`), then mounted read-only.
    return {"type": _input_type(value), "path": str(Path(value).absolute()), "mode": "ro_mount"}


def job_inputs(spec, problems: list[str]) -> dict:
    """Inputs for every location the job reads (``--data NAME=${{inputs.NAME}}``); what Azure
    cannot deliver is added to ``problems``, each naming its spec field."""
    inputs = {}
    for table, model in ((DATA_INPUTS, False), (MODEL_INPUTS, True)):
        for section, name, channel in table:
            value = _field(spec, section, name)
            found = value and _input(f"{section}.{name}", value, model=model, problems=problems)
            if found:
                inputs[channel] = found
    return inputs


def job_outputs(spec, job_name: str) -> dict:
    outputs = {}
    for name in ("model", "checkpoints", "output"):
        out: dict = {"type": "uri_folder", "mode": "rw_mount"}
        if spec.output.uri:
            out["path"] = f"{spec.output.uri.rstrip('/')}/{job_name}/{name}/"
        outputs[name] = out
    return outputs


def command_line(inputs: dict) -> str:
    """The entrypoint flags the contract reads (``--data NAME=PATH``, ``--model-dir`` ...)."""
    parts = ["python run_job.py"]
    parts += [f"--data {name}=${{{{inputs.{name}}}}}" for name in inputs]
    parts += ["--model-dir ${{outputs.model}}", "--checkpoint-dir ${{outputs.checkpoints}}",
              "--output-dir ${{outputs.output}}"]  # fmt: skip
    return " ".join(parts)


def _tracking_requirements(spec) -> list[str]:
    from job_templates.common.tracking import requirements

    needed = requirements(spec.tracking.model_dump())
    if "mlflow" in spec.tracking.backends:
        needed.append(AZURE_MLFLOW)  # the azureml:// tracking URI the job's environment carries
    return needed


def environment(spec):
    """azure.environment / azure.image, else the runtime table's row as a conda spec on Azure's
    OpenMPI base image (Azure builds it once and caches it): the row's Python, torch and lock."""
    azure = spec.azure
    if azure.environment:
        env = azure.environment
        return env if env.startswith("azureml:") else f"azureml:{env}"
    if azure.image:
        return {"image": azure.image}
    from ...runtimes import for_spec

    row = for_spec("azureml", spec)
    conda = {
        "name": "genai-cloud",
        "channels": ["conda-forge"],
        "dependencies": [f"python={row.python}", "pip",
                         {"pip": [f"torch=={row.torch}", *row.lock_lines(),
                                  *_tracking_requirements(spec)]}],
    }  # fmt: skip
    return {"image": row.image, "conda_file": conda}


def placement(spec, instance: Instance) -> dict:
    """compute / resources / distribution."""
    result: dict = {}
    resources: dict = {"instance_count": spec.compute.nodes}
    if spec.azure.compute:
        result["compute"] = f"azureml:{spec.azure.compute.removeprefix('azureml:')}"
    else:
        # No cluster named: Azure's serverless compute, sized by instance_type. A cluster has
        # a fixed VM size, so instance_type is only sent here.
        resources["instance_type"] = instance.type
    result["resources"] = resources
    per_node = instance.count if instance.count else 1
    if per_node > 1 or spec.compute.nodes > 1:
        # Azure starts one process per GPU and sets MASTER_ADDR, RANK, WORLD_SIZE, LOCAL_RANK.
        result["distribution"] = {"type": "pytorch", "process_count_per_instance": per_node}
    return result


# --------------------------------------------------------------------------------------------
# Files for `az ml job create --file` (and for submit)


def job_yaml(job: dict) -> str:
    import yaml

    return yaml.safe_dump(job, sort_keys=False, width=100)


def submit_command(plan: Plan, path: str | Path | None = None) -> str:
    """The ``az ml job create`` command for the job file at ``path``, with the spec's workspace
    (``RESOURCE_GROUP`` / ``WORKSPACE`` where the spec names none)."""
    import shlex

    azure = plan.spec.azure
    parts = ["az ml job create", "--file", shlex.quote(str(path)) if path else "THIS_FILE",
             "--resource-group", shlex.quote(azure.resource_group or "RESOURCE_GROUP"),
             "--workspace-name", shlex.quote(azure.workspace or "WORKSPACE")]  # fmt: skip
    if azure.subscription_id:
        parts += ["--subscription", shlex.quote(azure.subscription_id)]
    return " ".join(parts)


def render_yaml(plan: Plan, path: str | Path | None = None) -> str:
    """The job YAML, headed by the command that submits it. ``path``: where the file is written
    (``render -o``, which extracts the bundle folder ``code`` names beside it)."""
    stem = bundle_dir_name(plan)
    header = ["# Submit with:", f"#   {submit_command(plan, path)}"]
    if path:
        header.append(f"# `code` is the bundle folder {stem}/ that `genai-cloud render -o` "
                      "extracted beside this file.")  # fmt: skip
    else:
        header.append(f"# `code` is the bundle folder {stem}/ beside this file (`genai-cloud "
                      "render --format native -o FILE` extracts it there).")  # fmt: skip
    azure = plan.spec.azure
    if not (azure.resource_group and azure.workspace):
        header.append("# (set azure.resource_group and azure.workspace in the spec to have "
                      "RESOURCE_GROUP / WORKSPACE filled in)")  # fmt: skip
    return "\n".join(header) + "\n" + job_yaml(render_command_job(plan))


def write_job_files(plan: Plan, directory: str | Path, job: dict | None = None) -> Path:
    """Write ``job.yml`` and the extracted bundle folder it names into ``directory``."""
    from ...bundle import safe_extract

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    safe_extract(plan.bundle.data, directory / bundle_dir_name(plan))
    path = directory / JOB_FILE
    path.write_text(job_yaml(job if job is not None else render_command_job(plan)))
    return path
