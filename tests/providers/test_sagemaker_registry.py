"""output.register on SageMaker: a finished job's model becomes a model package version in the
Model Registry (moto's SageMaker), and the request passes botocore's service model."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from genai_cloud.errors import ProviderError
from genai_cloud.plan import make_plan
from genai_cloud.providers.sagemaker import SageMakerProvider
from genai_cloud.providers.sagemaker.render import model_package_request
from genai_cloud.loading import load_spec

REGION = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/genai-sagemaker"
IMAGE = ("763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-inference:"
         "2.1.0-transformers4.37.0-cpu-py310-ubuntu22.04")  # fmt: skip


def plan_for(**register):
    spec = load_spec({"name": "demo-run", "model": {"name_or_path": "gpt2"},
                      "data": {"train": "s3://genai-data/train.jsonl"},
                      "output": {"uri": "s3://genai-out/runs",
                                 "register": {"name": "demo-models", "image_uri": IMAGE,
                                              **register}},
                      "aws": {"role_arn": ROLE, "region": REGION}})  # fmt: skip
    return make_plan(spec, "sagemaker")


@pytest.fixture
def aws(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        yield boto3.client("sagemaker", region_name=REGION)


def test_a_finished_job_becomes_a_model_package_version(aws):
    plan = plan_for(description="tiny fine-tune", approval="Approved")
    provider = SageMakerProvider()
    aws.create_training_job(**provider.render(plan))  # moto reports it Completed at once
    arn = provider.register(plan)
    package = aws.describe_model_package(ModelPackageName=arn)
    assert package["ModelPackageGroupName"] == "demo-models"
    assert package["ModelApprovalStatus"] == "Approved"
    [container] = package["InferenceSpecification"]["Containers"]
    artifacts = aws.describe_training_job(TrainingJobName=plan.job_name)["ModelArtifacts"]
    assert container == {"Image": IMAGE, "ModelDataUrl": artifacts["S3ModelArtifacts"]}
    assert package["CustomerMetadataProperties"]["genai-cloud:job"] == plan.job_name
    assert package["ModelPackageDescription"] == f"genai-cloud job {plan.job_name}: tiny fine-tune"
    group = aws.describe_model_package_group(ModelPackageGroupName="demo-models")
    assert group["ModelPackageGroupName"] == "demo-models"  # created on first use
    provider.register(plan)  # the group exists now: reused
    listed = aws.list_model_packages(ModelPackageGroupName="demo-models")["ModelPackageSummaryList"]
    assert {p["ModelPackageGroupName"] for p in listed} == {"demo-models"}


def test_a_job_not_launched_is_not_registered(aws):
    with pytest.raises(ProviderError, match=r"is not launched; register its model once it has "
                       "completed"):  # fmt: skip
        SageMakerProvider().register(plan_for())


def test_the_request_passes_the_service_model_and_is_idempotent_per_job():
    from botocore.session import get_session
    from botocore.validate import validate_parameters

    plan = plan_for()
    request = model_package_request(plan, "s3://genai-out/runs/x/output/model.tar.gz",
                                    {"eval_loss": 2.5, "train_loss": 3.0})  # fmt: skip
    shape = get_session().get_service_model("sagemaker").operation_model("CreateModelPackage")
    validate_parameters(request, shape.input_shape)
    assert (request["Domain"], request["Task"]) == ("NATURAL_LANGUAGE_PROCESSING", "TEXT_GENERATION")
    assert request["CustomerMetadataProperties"]["metric:eval_loss"] == "2.5"
    assert request["ClientToken"] == model_package_request(plan, "s3://other")["ClientToken"]


def test_register_needs_the_serving_image_on_sagemaker(aws):
    plan = plan_for(image_uri=None)
    provider = SageMakerProvider()
    aws.create_training_job(**provider.render(plan))
    with pytest.raises(ProviderError, match=r"output\.register\.image_uri: required on SageMaker"):
        provider.register(plan)


def test_register_on_a_provider_without_a_registry_says_so(run_cli, tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text("name: demo\nmodel: {name_or_path: gpt2}\ndata: {train: /t.jsonl}\n"
                    "output: {register: {name: demo}}\n")  # fmt: skip
    code, _, err = run_cli(["register", str(path), "-p", "local"])
    assert code == 2 and "registering models is not built for local yet" in err
