"""spec.tracking in renders and bundles: SageMaker's TensorBoard output, the packages each job
installs for its trackers, and the trackers an isolated SageMaker container cannot reach."""

from __future__ import annotations

import io
import tarfile

import pytest

from genai_cloud.plan import make_plan
from genai_cloud.providers import get_provider
from genai_cloud.providers.sagemaker.render import SageMakerRenderError
from genai_cloud.loading import load_spec

ROLE = "arn:aws:iam::123456789012:role/genai-sagemaker"
ARN = "arn:aws:sagemaker:us-east-1:123456789012:mlflow-tracking-server/team"


def spec(tracking: dict, **extra):
    return load_spec({"name": "tracked", "model": {"name_or_path": "s3://genai-models/gpt2/"},
                      "data": {"train": "s3://genai-data/train.jsonl"},
                      "output": {"uri": "s3://genai-out/runs"},
                      "aws": {"role_arn": ROLE, "region": "us-east-1", **extra},
                      "tracking": tracking})  # fmt: skip


def test_sagemaker_uploads_tensorboard_event_files_under_the_job():
    from botocore.session import get_session
    from botocore.validate import validate_parameters

    plan = make_plan(spec({"backends": ["tensorboard"]}), "sagemaker")
    request = get_provider("sagemaker").render(plan)
    assert request["TensorBoardOutputConfig"] == {
        "S3OutputPath": f"s3://genai-out/runs/{plan.job_name}/tensorboard",
        "LocalPath": "/opt/ml/output/tensorboard"}  # fmt: skip
    shape = get_session().get_service_model("sagemaker").operation_model("CreateTrainingJob")
    validate_parameters(request, shape.input_shape)
    untracked = get_provider("sagemaker").render(make_plan(spec({}), "sagemaker"))
    assert "TensorBoardOutputConfig" not in untracked


def test_network_isolation_refuses_remote_trackers():
    # An isolated job runs on an image that already has its packages (it cannot pip-install).
    image = {"network_isolation": True, "image_uri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/genai:1"}
    plan = make_plan(spec({"backends": ["mlflow", "wandb"], "mlflow_uri": ARN}, **image),
                     "sagemaker")  # fmt: skip
    with pytest.raises(SageMakerRenderError) as info:
        get_provider("sagemaker").render(plan)
    assert "tracking.backends: mlflow, wandb cannot be reached under aws.network_isolation" in \
        info.value.message  # fmt: skip
    isolated_ok = make_plan(spec({"backends": ["mlflow", "tensorboard"]}, **image), "sagemaker")
    assert get_provider("sagemaker").render(isolated_ok)["EnableNetworkIsolation"] is True


def _bundle_requirements(plan) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(plan.bundle.data)) as tar:
        text = tar.extractfile("requirements.txt").read().decode()
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_the_bundle_installs_the_trackers_it_uses():
    plain = _bundle_requirements(make_plan(spec({}), "sagemaker"))
    tracked = _bundle_requirements(make_plan(spec({"backends": ["mlflow"], "mlflow_uri": ARN}),
                                             "sagemaker"))  # fmt: skip
    assert tracked == plain + ["mlflow-skinny>=2.10", "sagemaker-mlflow>=0.1"]
    assert not any("mlflow" in line for line in plain)


def test_azure_environment_carries_the_workspace_mlflow_plugin():
    from genai_cloud.providers.azureml.render import environment

    azure = load_spec({"name": "tracked", "model": {"name_or_path": "gpt2"},
                       "data": {"train": "azureml://datastores/d/paths/train.jsonl"},
                       "tracking": {"backends": ["mlflow", "tensorboard"]}})  # fmt: skip
    [pip] = [d["pip"] for d in environment(azure)["conda_file"]["dependencies"]
             if isinstance(d, dict)]  # fmt: skip
    assert pip[-3:] == ["mlflow-skinny>=2.10", "tensorboard>=2.14", "azureml-mlflow>=1.55"]


def test_a_backend_named_twice_is_refused():
    from genai_cloud.errors import SpecError

    with pytest.raises(SpecError, match=r"tracking\.backends: name each backend once"):
        spec({"backends": ["mlflow", "mlflow"]})
    with pytest.raises(SpecError, match=r"tracking\.backends\.0: Input should be 'mlflow'"):
        spec({"backends": ["neptune"]})


def test_network_isolation_refuses_a_push_to_the_hub():
    secret = "arn:aws:secretsmanager:us-east-1:123456789012:secret:hf-write-AbCdEf"
    isolated = spec({}, network_isolation=True)
    isolated = load_spec({**isolated.model_dump(mode="json"), "secrets": {"HF_TOKEN": secret},
                          "output": {"uri": "s3://genai-out/runs",
                                     "push_to_hub": {"repo_id": "my-org/x"}}})  # fmt: skip
    with pytest.raises(SageMakerRenderError) as info:
        get_provider("sagemaker").render(make_plan(isolated, "sagemaker"))
    assert "output.push_to_hub: the Hugging Face Hub cannot be reached" in info.value.message


def test_vertex_shows_the_event_files_in_a_tensorboard_instance():
    from google.cloud import aiplatform_v1
    from google.protobuf import json_format

    from genai_cloud.errors import ProviderError

    board = "projects/proj/locations/us-central1/tensorboards/123"
    base = {"name": "tracked", "model": {"name_or_path": "gpt2"},
            "data": {"train": "gs://bkt/train.jsonl"}, "output": {"uri": "gs://bkt/runs"},
            "tracking": {"backends": ["tensorboard"], "vertex_tensorboard": board}}
    with pytest.raises(ProviderError, match=r"gcp\.service_account: required with "
                       "tracking.vertex_tensorboard"):  # fmt: skip
        get_provider("vertex").render(make_plan(load_spec(base), "vertex"))
    spec = load_spec({**base, "gcp": {"service_account": "trainer@proj.iam.gserviceaccount.com"}})
    job = get_provider("vertex").render(make_plan(spec, "vertex"))
    assert job["job_spec"]["tensorboard"] == board
    message = aiplatform_v1.CustomJob.pb()()
    json_format.ParseDict(job, message)  # a real CustomJob field
    assert message.job_spec.tensorboard == board
