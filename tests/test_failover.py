"""Capacity and quota failover: each provider's refusals, mocked as the real APIs answer them."""

from __future__ import annotations

import json
from types import SimpleNamespace

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from moto import mock_aws
from moto.core.botocore_stubber import MockRawResponse
from moto.core.models import botocore_stubber as moto_send

from genai_cloud.errors import GenaiCloudError, ProviderError, SpecError
from genai_cloud.failover import (
    NoPlacementError,
    PlacementError,
    candidate_plans,
    fallback_spec,
    placement_of,
    submit_with_fallback,
)
from genai_cloud.loading import load_spec
from genai_cloud.plan import make_plan
from genai_cloud.providers import JobState, JobStatus, get_provider
from genai_cloud.providers.azureml import ops as azureml_ops
from genai_cloud.providers.sagemaker import ops as sagemaker_ops
from genai_cloud.providers.vertex import VertexProvider
from genai_cloud.providers.vertex import ops as vertex_ops

ROLE = "arn:aws:iam::123456789012:role/genai-sagemaker"
AWS = {"name": "fo", "model": {"name_or_path": "gpt2"},
       "data": {"train": "s3://genai-data/train.jsonl"}, "output": {"uri": "s3://genai-out/runs"},
       "training": {"checkpoint_every": 100},
       "compute": {"accelerator": "A100", "count": 8, "spot": True},
       "aws": {"role_arn": ROLE, "region": "us-east-1"}}  # fmt: skip
QUOTA = ("The account-level service limit 'ml.p4d.24xlarge for spot training job usage' is 0 "
         "Instances, with current utilization of 0 Instances and a request delta of 1 Instances.")
CAPACITY = ("CapacityError: Unable to provision requested ML compute capacity. Please retry using "
            "a different ML instance type.")  # fmt: skip


def aws_spec(*fallback, **compute):
    return load_spec({**AWS, "compute": {**AWS["compute"], **compute, "fallback": list(fallback)}})


# ---- building the placements --------------------------------------------------------------------


def test_a_fallback_entry_overrides_the_placement_and_nothing_else():
    spec = aws_spec({"region": "us-west-2", "accelerator": "H100", "spot": False},
                    instance_type="ml.p4d.24xlarge")  # fmt: skip
    moved, provider = fallback_spec(spec, spec.compute.fallback[0], 0)
    assert provider is None
    assert (moved.aws.region, moved.compute.region) == ("us-west-2", "us-west-2")
    assert (moved.compute.accelerator, moved.compute.count, moved.compute.spot) == ("H100", 8, False)
    assert moved.compute.instance_type is None  # the pin belonged to the A100 placement
    assert moved.compute.fallback == []
    assert moved.training == spec.training and moved.model == spec.model


def test_spot_choice_of_a_fallback_wins_over_provider_tiers():
    spec = load_spec({**AWS, "gcp": {"strategy": "SPOT"}, "azure": {"job_tier": "spot"},
                      "compute": {"spot": True, "fallback": [{"spot": False}]}})  # fmt: skip
    moved, _ = fallback_spec(spec, spec.compute.fallback[0], 0)
    assert moved.gcp.strategy is None and moved.azure.job_tier is None and not moved.compute.spot


def test_every_placement_is_planned_before_anything_launches():
    spec = aws_spec({"region": "eu-west-1"}, {"provider": "vertex", "accelerator": "A100"})
    with pytest.raises(ProviderError, match=r"(?s)compute\.fallback\.1 \(vertex\): .*output\.uri"):
        candidate_plans(spec, "sagemaker")  # s3:// output cannot serve a Vertex job
    with pytest.raises(SpecError, match=r"compute\.fallback\.0\.region"):
        candidate_plans(aws_spec({"provider": "azureml", "region": "westeurope"}), "sagemaker")


def test_placements_get_distinct_job_names():
    plans = candidate_plans(aws_spec({"region": "us-west-2"}, {"accelerator": "H100"}),
                            "sagemaker")  # fmt: skip
    assert len({p.job_name for p in plans}) == 3


# ---- SageMaker (moto, with the refusals injected as the real API answers) -----------------------


class SageMakerAnswers:
    """A before-send hook: CreateTrainingJob in ``refuse`` regions answers ``code``; Describe in
    ``stockout`` regions reports the job failed with CapacityError."""

    def __init__(self, refuse=(), code="ResourceLimitExceeded", message=QUOTA, stockout=()):
        self.refuse, self.code, self.message, self.stockout = refuse, code, message, stockout
        self.creates: list[str] = []

    def before_send(self, request, event_name, **kwargs):
        region = request.url.split(".")[2]  # https://api.sagemaker.<region>.amazonaws.com
        if event_name.endswith("CreateTrainingJob"):
            self.creates.append(region)
            if region in self.refuse:
                # botocore runs every before-send handler: keep moto's from acting on it too.
                moto_send.enabled = False
                body = json.dumps({"__type": self.code, "message": self.message}).encode()
                return AWSResponse(request.url, 400, {}, MockRawResponse(body))
        return None

    @staticmethod
    def after_send(**kwargs):
        moto_send.enabled = True

    def after_call(self, parsed, model, **kwargs):
        arn = parsed.get("TrainingJobArn", "") if model.name == "DescribeTrainingJob" else ""
        if arn and arn.split(":")[3] in self.stockout:
            parsed.update(TrainingJobStatus="Failed", SecondaryStatus="Failed",
                          FailureReason=CAPACITY)  # fmt: skip


@pytest.fixture
def aws(monkeypatch):
    monkeypatch.setattr("botocore.retries.standard.ExponentialBackoff.delay_amount",
                        lambda self, context: 0)  # fmt: skip
    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="genai-out")
        provider = get_provider("sagemaker")

        def install(answers: SageMakerAnswers):
            for region in ("us-east-1", "us-west-2", "eu-west-1"):
                events = provider.ops.client("sagemaker", region).meta.events
                events.register_first("before-send.sagemaker", answers.before_send)
                events.register_last("before-send", answers.after_send)  # after moto's
                events.register("after-call.sagemaker", answers.after_call)
            return answers

        yield SimpleNamespace(provider=provider, install=install,
                              providers={"sagemaker": provider})


def jobs_in(region: str) -> list[str]:
    listed = boto3.client("sagemaker", region_name=region).list_training_jobs()
    return [j["TrainingJobName"] for j in listed["TrainingJobSummaries"]]


def test_sagemaker_quota_moves_to_the_next_region_and_says_why(aws, caplog):
    answers = aws.install(SageMakerAnswers(refuse=("us-east-1",)))
    spec = aws_spec({"region": "us-west-2"})
    handle, passed = submit_with_fallback(spec, "sagemaker", providers=aws.providers)
    assert handle.job_id.startswith("us-west-2/") and handle.created
    assert handle.details["placement"] == "sagemaker/us-west-2 8xA100 spot"
    [(placement, reason)] = passed
    assert (placement.region, placement.accelerator) == ("us-east-1", "A100")
    assert reason.startswith("spot: ") and "ResourceLimitExceeded" in reason
    assert "moving on from sagemaker/us-east-1 8xA100 spot" in caplog.text
    assert answers.creates == ["us-east-1", "us-west-2"]
    assert jobs_in("us-east-1") == [] and len(jobs_in("us-west-2")) == 1


def test_sagemaker_other_errors_are_not_failed_over(aws):
    answers = aws.install(SageMakerAnswers(refuse=("us-east-1",), code="AccessDeniedException",
                                           message="not authorized to perform iam:PassRole"))
    with pytest.raises(ProviderError, match="AccessDenied") as caught:
        submit_with_fallback(aws_spec({"region": "us-west-2"}), "sagemaker",
                             providers=aws.providers)  # fmt: skip
    assert not isinstance(caught.value, PlacementError)
    assert answers.creates == ["us-east-1"]


def test_sagemaker_all_refused_lists_every_attempt(aws):
    aws.install(SageMakerAnswers(refuse=("us-east-1", "us-west-2")))
    spec = aws_spec({"region": "us-west-2"}, {"accelerator": "H100", "region": "us-west-2"})
    with pytest.raises(NoPlacementError) as caught:
        submit_with_fallback(spec, "sagemaker", providers=aws.providers)
    error = caught.value
    assert [str(p) for p, _ in error.attempts] == [
        "sagemaker/us-east-1 8xA100 spot", "sagemaker/us-west-2 8xA100 spot",
        "sagemaker/us-west-2 8xH100 spot"]  # fmt: skip
    assert all("ResourceLimitExceeded" in reason for _, reason in error.attempts)
    assert "compute.fallback" in error.message and isinstance(error, GenaiCloudError)


def test_sagemaker_stockout_on_the_job_moves_on_when_confirming(aws):
    aws.install(SageMakerAnswers(stockout=("us-east-1",)))
    spec = aws_spec({"region": "us-west-2"})
    handle, passed = submit_with_fallback(spec, "sagemaker", providers=aws.providers,
                                          confirm_s=60, poll_s=1, sleep=lambda s: None)
    assert handle.job_id.startswith("us-west-2/")
    assert passed[0][1].startswith("capacity: CapacityError")


def test_a_retried_failover_returns_the_fallback_job_it_launched(aws):
    answers = aws.install(SageMakerAnswers(refuse=("us-east-1",)))
    spec = aws_spec({"region": "us-west-2"})
    first, _ = submit_with_fallback(spec, "sagemaker", providers=aws.providers)
    answers.refuse = ()  # the primary region has capacity again
    again, passed = submit_with_fallback(spec, "sagemaker", providers=aws.providers)
    assert again.job_id == first.job_id and not again.created and passed == []
    assert jobs_in("us-east-1") == [] and answers.creates == ["us-east-1", "us-west-2"]


def test_a_job_that_died_of_a_stockout_is_passed_over_on_retry(aws):
    answers = aws.install(SageMakerAnswers(stockout=("us-east-1",)))
    spec = aws_spec({"region": "us-west-2"})
    first, _ = submit_with_fallback(spec, "sagemaker", providers=aws.providers)
    assert first.job_id.startswith("us-east-1/")  # not confirmed: accepted, dies later
    again, passed = submit_with_fallback(spec, "sagemaker", providers=aws.providers)
    assert again.job_id.startswith("us-west-2/") and again.created
    assert "earlier job us-east-1/" in passed[0][1]
    assert answers.creates == ["us-east-1", "us-west-2"]


# ---- Vertex AI (fake JobServiceClient per regional endpoint) ------------------------------------

GCP = {"name": "fo", "model": {"name_or_path": "gpt2"}, "data": {"train": "gs://bkt/d/t.jsonl"},
       "output": {"uri": "gs://bkt/runs"}, "training": {"checkpoint_every": 100},
       "gcp": {"project": "proj", "region": "us-central1"}}  # fmt: skip


@pytest.fixture
def gcp(monkeypatch):
    from google.api_core import exceptions
    from google.cloud import aiplatform_v1

    monkeypatch.setattr(vertex_ops, "_sleep", lambda s: None)
    state = SimpleNamespace(jobs=[], creates=[], answers={})  # region -> exception to raise

    def client(client_options):
        region = client_options["api_endpoint"].split("-aiplatform")[0]

        def create(parent, custom_job):
            state.creates.append((region, custom_job.job_spec.worker_pool_specs[0]
                                  .machine_spec.accelerator_type.name))  # fmt: skip
            if region in state.answers:
                raise state.answers[region]
            made = aiplatform_v1.CustomJob(custom_job)
            made.name = f"{parent}/customJobs/{len(state.jobs) + 1}"
            state.jobs.append(made)
            return made

        def listing(request):
            key = request["filter"].split('"')[1]
            return iter([j for j in state.jobs if j.labels.get("genai-cloud-key") == key
                         and j.name.startswith(request["parent"])])  # fmt: skip

        return SimpleNamespace(create_custom_job=create, list_custom_jobs=listing)

    blob = SimpleNamespace(exists=lambda: True)
    storage = SimpleNamespace(bucket=lambda b: SimpleNamespace(blob=lambda p: blob))
    monkeypatch.setattr(aiplatform_v1, "JobServiceClient", client)
    monkeypatch.setattr("google.cloud.storage.Client", lambda project: storage)
    state.exceptions = exceptions
    return state


def test_vertex_gpu_quota_moves_to_another_region_and_accelerator(gcp):
    gcp.answers["us-central1"] = gcp.exceptions.ResourceExhausted(
        "The following quota metrics exceed quota limits: "
        "aiplatform.googleapis.com/custom_model_training_nvidia_a100_gpus")
    spec = load_spec({**GCP, "compute": {"accelerator": "A100", "fallback": [
        {"region": "europe-west4", "accelerator": "L4"}]}})  # fmt: skip
    handle, passed = submit_with_fallback(spec, "vertex")
    assert handle.job_id.startswith("projects/proj/locations/europe-west4/")
    assert gcp.creates == [("us-central1", "NVIDIA_TESLA_A100"), ("europe-west4", "NVIDIA_L4")]
    assert passed[0][1].startswith("quota: ") and "nvidia_a100_gpus" in passed[0][1]


def test_vertex_request_rate_limits_are_retried_not_failed_over(gcp):
    gcp.answers["us-central1"] = gcp.exceptions.ResourceExhausted(
        "Quota exceeded for quota metric 'Create custom job requests' and limit 'Create custom "
        "job requests per minute per region'")  # fmt: skip
    spec = load_spec({**GCP, "compute": {"fallback": [{"region": "europe-west4"}]}})
    with pytest.raises(vertex_ops.Unavailable):
        submit_with_fallback(spec, "vertex")
    assert {region for region, _ in gcp.creates} == {"us-central1"}
    assert len(gcp.creates) == vertex_ops.CALL_ATTEMPTS


def test_vertex_stockout_and_spot_are_placement_problems(gcp):
    exceptions = gcp.exceptions
    stockout = exceptions.ServiceUnavailable("Resources are insufficient in region: us-central1")
    spot = exceptions.ResourceExhausted("custom_model_training_preemptible_nvidia_l4_gpus")
    assert vertex_ops.placement_problem(stockout)[0] == "capacity"
    assert vertex_ops.placement_problem(spot)[0] == "spot"
    assert vertex_ops.placement_problem(exceptions.PermissionDenied("no")) is None
    assert vertex_ops.placement_problem(exceptions.TooManyRequests("slow down")) is None
    failed = JobStatus("j", JobState.FAILED, "JOB_STATE_FAILED",
                       "Resources are insufficient in region: us-central1. Please try a different "
                       "region.")  # fmt: skip
    assert vertex_ops.placement_problem_in_status(failed).startswith("capacity: ")


# ---- Azure ML (fake MLClient) --------------------------------------------------------------------

AZ = {"name": "fo", "model": {"name_or_path": "gpt2"},
      "data": {"train": "azureml://datastores/workspaceblobstore/paths/d/t.jsonl"},
      "training": {"checkpoint_every": 100},
      "azure": {"subscription_id": "sub", "resource_group": "rg", "workspace": "ws"}}  # fmt: skip


def azure_refusal(code: str, message: str, status: int = 400):
    from azure.core.exceptions import HttpResponseError

    error = HttpResponseError(message=message)
    error.status_code = status
    error.error = SimpleNamespace(code=code)
    return error


@pytest.fixture
def azure(monkeypatch):
    from azure.core.exceptions import ResourceNotFoundError

    monkeypatch.setattr(azureml_ops, "_sleep", lambda s: None)
    state = SimpleNamespace(store={}, creates=[], refuse={})  # instance type -> exception

    def get(name):
        if name not in state.store:
            raise ResourceNotFoundError("not found")
        return state.store[name]

    def create(job):
        instance = job.resources.instance_type
        state.creates.append(instance)
        if instance in state.refuse:
            raise state.refuse[instance]
        state.store[job.name] = SimpleNamespace(id=job.name, name=job.name, status="Queued",
                                                tags={}, studio_url=None)  # fmt: skip
        return state.store[job.name]

    jobs = SimpleNamespace(get=get, create_or_update=create)
    monkeypatch.setattr("azure.ai.ml.MLClient", lambda *a, **kw: SimpleNamespace(jobs=jobs))
    monkeypatch.setattr("azure.identity.DefaultAzureCredential", lambda: None)
    return state


def test_azure_quota_moves_to_the_next_accelerator(azure):
    azure.refuse["Standard_NC4as_T4_v3"] = azure_refusal(
        "QuotaExceeded", "Operation could not be completed as it results in exceeding approved "
        "standardNCASv3_T4Family Cores quota.")  # fmt: skip
    spec = load_spec({**AZ, "compute": {"accelerator": "T4", "fallback": [{"accelerator": "V100"}]}})
    handle, passed = submit_with_fallback(spec, "azureml")
    assert handle.created and azure.creates[0] == "Standard_NC4as_T4_v3"
    assert azure.creates[1] != azure.creates[0] and len(azure.store) == 1
    assert passed[0][1].startswith("quota: ") and "QuotaExceeded: " in passed[0][1]


def test_azure_low_priority_quota_is_a_spot_problem_and_bad_requests_are_not(azure):
    azure.refuse["Standard_NC4as_T4_v3"] = azure_refusal(
        "BadRequest", "Compute target 'gpu' not found in workspace")  # fmt: skip
    spec = load_spec({**AZ, "compute": {"accelerator": "T4", "fallback": [{"accelerator": "V100"}]}})
    with pytest.raises(Exception, match="not found in workspace") as caught:
        submit_with_fallback(spec, "azureml")
    assert not isinstance(caught.value, PlacementError) and len(azure.creates) == 1
    low = azure_refusal("OperationNotAllowed", "Low priority cores quota exceeded", 429)
    assert azureml_ops.placement_problem(low)[0] == "spot"
    capacity = azure_refusal("ZonalAllocationFailed", "Allocation failed. We do not have "
                             "sufficient capacity for the requested VM size in this zone.")
    assert azureml_ops.placement_problem(capacity)[0] == "capacity"
    assert azureml_ops.placement_problem(azure_refusal("", "Too many requests", 429)) is None


def test_sagemaker_classifier():
    from botocore.exceptions import ClientError

    def answer(code, message=""):
        return ClientError({"Error": {"Code": code, "Message": message}}, "CreateTrainingJob")

    assert sagemaker_ops.placement_problem(answer("ResourceLimitExceeded", "limit"))[0] == "quota"
    assert sagemaker_ops.placement_problem(answer("ResourceLimitExceeded", QUOTA))[0] == "spot"
    assert sagemaker_ops.placement_problem(answer("InsufficientCapacity"))[0] == "capacity"
    assert sagemaker_ops.placement_problem(answer("ThrottlingException")) is None
    assert sagemaker_ops.placement_problem(answer("ValidationException")) is None
    spot = JobStatus("j", JobState.FAILED, "Stopped/MaxWaitTimeExceeded", "stopped")
    assert sagemaker_ops.placement_problem_in_status(spot).startswith("spot: ")
    done = JobStatus("j", JobState.SUCCEEDED, "Completed", None)
    assert sagemaker_ops.placement_problem_in_status(done) is None


def test_a_placement_names_where_the_plan_launches_as_its_render_does(monkeypatch):
    """The region and spot of Plan.placement: an unpinned Vertex job launches in aiplatform's
    environment region, gcp.strategy SPOT is spot; an Azure ML job's region is its workspace's."""
    for var in VertexProvider.region_env:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CLOUD_ML_REGION", "europe-west4")
    unpinned = load_spec({**GCP, "gcp": {"project": "proj", "strategy": "SPOT"},
                          "compute": {"accelerator": "L4"}})  # fmt: skip
    plan = make_plan(unpinned, "vertex")
    assert str(placement_of(plan)) == "vertex/europe-west4 1xL4 spot"
    assert get_provider("vertex").render(plan)["job_spec"]["scheduling"]["strategy"] == "SPOT"
    assert "--region=europe-west4" in get_provider("vertex").render_native(plan)
    azure = load_spec({**AZ, "compute": {"accelerator": "T4"}})
    assert str(placement_of(make_plan(azure, "azureml"))) == "azureml 1xT4"
