"""The runtime table is what renders, bundles and Azure environments use, and its locks are pins."""

from __future__ import annotations

import io
import re
import tarfile
from pathlib import Path

import pytest
import tomllib

from genai_cloud.loading import load_spec
from genai_cloud.plan import Plan
from genai_cloud.providers import get_provider
from genai_cloud.providers.sagemaker import render as sagemaker
from genai_cloud.providers.vertex import render as vertex
from genai_cloud.runtimes import RUNTIMES, SOURCE_REQUIREMENTS, runtime, stacks

ROOT = Path(__file__).resolve().parent.parent
PIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*==[0-9][A-Za-z0-9.+!-]*$")
DEVICES = {"cpu": {}, "gpu": {"accelerator": "T4"}, "tpu": {"accelerator": "tpu-v5e", "count": 8}}
SPEC = {
    "name": "demo", "model": {"name_or_path": "gpt2"},
    "data": {"train": "s3://genai-data/train.jsonl"}, "output": {"uri": "s3://genai-out/runs"},
    "aws": {"role_arn": "arn:aws:iam::123456789012:role/r", "region": "eu-west-1"},
}  # fmt: skip


def spec_for(device: str, **sections):
    return load_spec({**SPEC, "compute": DEVICES[device], **sections})


def bundle_requirements(plan: Plan) -> str:
    with tarfile.open(fileobj=io.BytesIO(plan.bundle.data), mode="r:gz") as tar:
        return tar.extractfile("requirements.txt").read().decode()


@pytest.mark.parametrize("lock", sorted(stacks()))
def test_every_lock_is_exact_pins_without_torch(lock):
    row = stacks()[lock]
    lines = row.lock_lines()
    assert lines and all(PIN.match(line) for line in lines), [x for x in lines if not PIN.match(x)]
    names = {line.split("==")[0].lower() for line in lines}
    assert "torch" not in names  # the image's torch stays
    wanted = {re.split(r"[<>=!~ ]", r, maxsplit=1)[0].lower() for r in
              SOURCE_REQUIREMENTS.read_text().splitlines() if r and not r.startswith("#")}  # fmt: skip
    assert wanted | set(row.secret_client) <= names
    # transformers 5 switches PyTorch off below torch 2.6: those stacks must lock the 4.x line.
    torch_minor = tuple(int(x) for x in row.torch.split(".")[:2])
    assert (int(row.pinned("transformers").split(".")[0]) >= 5) == (torch_minor >= (2, 6))
    if row.transformers:
        assert row.pinned("transformers") == row.transformers  # never replaces the image's


def test_rows_sharing_a_lock_share_the_stack():
    for row in RUNTIMES:
        first = stacks()[row.lock]
        assert (row.python, row.torch, row.transformers) == (first.python, first.torch,
                                                             first.transformers)  # fmt: skip


@pytest.mark.parametrize("provider,device", [(r.provider, r.device) for r in RUNTIMES])
def test_the_bundle_ships_the_lock_of_the_runtime_the_plan_picked(provider, device):
    plan = Plan(spec=spec_for(device), provider=provider)
    assert plan.runtime == runtime(provider, device)
    assert bundle_requirements(plan) == plan.runtime.lock_text()


def test_a_local_run_ships_the_unpinned_requirements():
    plan = Plan(spec=spec_for("cpu"), provider="local")
    assert plan.runtime is None
    assert bundle_requirements(plan) == SOURCE_REQUIREMENTS.read_text()


@pytest.mark.parametrize("device", ["cpu", "gpu"])
def test_sagemaker_renders_the_table_image_in_the_regions_registry(device):
    spec = spec_for(device)
    uri = sagemaker.image_uri(spec, None, "eu-west-1")
    assert uri == f"763104351884.dkr.ecr.eu-west-1.amazonaws.com/{runtime('sagemaker', device).image}"
    assert sagemaker.image_uri(spec, None, "cn-north-1").startswith(
        "727897471807.dkr.ecr.cn-north-1.amazonaws.com.cn/")  # fmt: skip


@pytest.mark.parametrize("device", ["cpu", "gpu", "tpu"])
def test_vertex_renders_the_table_image(device):
    assert vertex.image_for(spec_for(device), None) == runtime("vertex", device).image


@pytest.mark.parametrize("device", ["cpu", "gpu"])
def test_azure_environment_pins_the_rows_python_torch_and_lock(device):
    spec = load_spec({"name": "demo", "model": {"name_or_path": "gpt2"}, "compute": DEVICES[device],
                      "data": {"train": "azureml://datastores/ws/paths/train.jsonl"}})  # fmt: skip
    env = get_provider("azureml").render(Plan(spec=spec, provider="azureml"))["environment"]
    row = runtime("azureml", device)
    assert env["image"] == row.image
    python, pip, packages = env["conda_file"]["dependencies"]
    assert python == f"python={row.python}" and pip == "pip"
    assert packages["pip"] == [f"torch=={row.torch}", *row.lock_lines()]


def test_an_image_override_outside_the_table_is_kept_with_a_warning():
    spec = spec_for("gpu", aws={**SPEC["aws"], "image_uri": "1.dkr.ecr.eu-west-1.amazonaws.com/mine:1"})
    assert sagemaker.image_uri(spec, None, "eu-west-1") == spec.aws.image_uri
    notes = spec.warnings(["sagemaker"])
    assert any("aws.image_uri" in n and "sagemaker-gpu lock" in n for n in notes), notes
    assert not any("image_uri" in n for n in spec.warnings(["vertex"]))


def test_an_override_naming_a_table_image_is_not_warned_about():
    row = runtime("sagemaker", "gpu")
    spec = spec_for("gpu", aws={**SPEC["aws"],
                                "image_uri": f"763104351884.dkr.ecr.us-east-1.amazonaws.com/{row.image}"})
    gcp = spec_for("gpu", gcp={"image_uri": runtime("vertex", "gpu").image})
    assert not any("image" in n for n in spec.warnings() + gcp.warnings())


def test_an_unknown_row_names_the_valid_ones():
    with pytest.raises(KeyError, match="vertex/tpu"):
        runtime("azureml", "tpu")


def test_locks_travel_with_the_installed_package():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "locks/*.txt" in data["package-data"]["job_templates"]
