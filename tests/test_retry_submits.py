"""Retry-safe submits: 100 submits of 10 distinct specs, with 30 % of all cloud calls failing
(throttling, timeouts before the cloud saw the call, and timeouts *after* it acted), launch
exactly 10 jobs on each provider.

A caller whose submit still fails after the SDK's own retries does what a user or a Lambda retry
does: submits again. That must be safe too, so those are counted, not forbidden.

SageMaker runs on moto with the failures injected by botocore ``before-send`` hooks (moto 5.2
accepts a duplicate TrainingJobName; the hook answers ``ResourceInUse`` as real SageMaker does).
Vertex AI and Azure ML run on fakes at the SDK client boundary.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from types import SimpleNamespace

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ReadTimeoutError
from moto import mock_aws
from moto.core.botocore_stubber import MockRawResponse
from moto.core.models import botocore_stubber as moto_send

from genai_cloud.errors import GenaiCloudError
from genai_cloud.loading import load_spec
from genai_cloud.plan import make_plan
from genai_cloud.providers import get_provider
from genai_cloud.providers.azureml import ops as azureml_ops
from genai_cloud.providers.vertex import ops as vertex_ops

FAILURE_RATE = 0.3
SPECS, COPIES = 10, 10
CALLER_RETRIES = 5
REGION = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/genai-sagemaker"
BASES = {
    "sagemaker": {"data": {"train": "s3://genai-data/train.jsonl"},
                  "output": {"uri": "s3://genai-out/runs"},
                  "aws": {"role_arn": ROLE, "region": REGION}},
    "vertex": {"data": {"train": "gs://bkt/data/train.jsonl"}, "output": {"uri": "gs://bkt/runs"},
               "gcp": {"project": "proj"}},
    "azureml": {"data": {"train": "azureml://datastores/workspaceblobstore/paths/d/t.jsonl"},
                "azure": {"subscription_id": "sub", "resource_group": "rg", "workspace": "ws"}},
}  # fmt: skip


def sweep(provider: str) -> list:
    """10 distinct specs (a learning-rate grid), each submitted 10 times, in a shuffled order."""
    docs = [{"name": "sweep", "model": {"name_or_path": "gpt2"},
             "training": {"lr": 1e-5 * (i + 1), "checkpoint_every": 100},
             **BASES[provider]} for i in range(SPECS)]  # fmt: skip
    plans = [make_plan(load_spec(doc), provider) for doc in docs]
    order = [p for p in plans for _ in range(COPIES)]
    random.Random(7).shuffle(order)
    return order


def submit_all(provider, order) -> tuple[dict, int]:
    """Submit every plan; on a GenaiCloudError resubmit (as a user would). Returns
    job name -> set of job ids handed back, and how many resubmits the caller needed."""
    ids: dict[str, set] = {}
    resubmits = 0
    for plan in order:
        for attempt in range(CALLER_RETRIES):
            try:
                handle = provider.submit(plan)
                break
            except GenaiCloudError:
                resubmits += 1
        else:
            raise AssertionError(f"{plan.job_name}: still failing after {CALLER_RETRIES} submits")
        assert handle.name == plan.job_name or plan.job_name in handle.job_id
        ids.setdefault(plan.job_name, set()).add(handle.job_id)
    return ids, resubmits


def check(ids: dict, order: list, launched: list[str], resubmits: int, failures: Counter):
    assert len(ids) == SPECS and all(len(v) == 1 for v in ids.values()), ids
    assert sorted(launched) == sorted({p.job_name for p in order}), Counter(launched)
    assert failures["landed-then-lost"] >= 1  # the lost-answer path really ran
    assert sum(failures.values()) >= 30  # 30 % of a few hundred calls: the faults really came
    assert resubmits <= 5  # the SDK's own retries absorb nearly everything


# ---- SageMaker (moto + botocore hooks) ----------------------------------------------------------


def _aws_error(request, status: int, code: str, message: str) -> AWSResponse:
    body = json.dumps({"__type": code, "message": message}).encode()
    return AWSResponse(request.url, status, {"Content-Type": "application/x-amz-json-1.1"},
                       MockRawResponse(body))  # fmt: skip


class FlakyAws:
    """A ``before-send`` hook run before moto's: fails FAILURE_RATE of the HTTP attempts and
    answers a create of an existing name with ResourceInUse, as SageMaker does."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.failures: Counter = Counter()
        self.launched: list[str] = []
        self.forced_loss = True  # the very first create lands and loses its answer

    def __call__(self, request, event_name: str, **kwargs):
        operation = event_name.rsplit(".", 1)[-1]
        create = operation == "CreateTrainingJob"
        name = json.loads(request.body)["TrainingJobName"] if create else None
        if create and name in self.launched:
            moto_send.enabled = False  # botocore runs every before-send handler: skip moto's
            return _aws_error(request, 400, "ResourceInUse",
                              f"Training job names must be unique within an AWS account and "
                              f"region, and a training job with this name already exists ({name})")
        roll = self.rng.random()
        if create and self.forced_loss:
            self.forced_loss, roll = False, 0.0
        if roll < FAILURE_RATE:
            kind = ("landed-then-lost", "timeout", "throttle")[int(roll / FAILURE_RATE * 3)]
            self.failures[kind] += 1
            if kind == "throttle":
                moto_send.enabled = False  # refused before the cloud acted
                if "s3" in event_name:
                    return AWSResponse(request.url, 503, {}, MockRawResponse(b""))  # SlowDown
                return _aws_error(request, 400, "ThrottlingException", "Rate exceeded")
            if kind == "landed-then-lost":
                moto_send(event_name=event_name, request=request)  # the cloud acts ...
                if create:
                    self.launched.append(name)
            raise ReadTimeoutError(endpoint_url=request.url)  # ... the answer never arrives
        if create:
            self.launched.append(name)
        return None  # moto answers

    @staticmethod
    def after_send(**kwargs):
        moto_send.enabled = True


@pytest.fixture
def sagemaker(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setattr("botocore.retries.standard.ExponentialBackoff.delay_amount",
                        lambda self, context: 0)  # fmt: skip
    with mock_aws():
        boto3.client("s3", region_name=REGION).create_bucket(Bucket="genai-out")
        provider = get_provider("sagemaker")
        flaky = FlakyAws(seed=1)
        for service in ("s3", "sagemaker"):
            events = provider.ops.client(service, REGION).meta.events
            events.register_first("before-send", flaky)
            events.register_last("before-send", flaky.after_send)
        yield provider, flaky


def test_sagemaker_100_flaky_submits_launch_exactly_10_jobs(sagemaker):
    provider, flaky = sagemaker
    order = sweep("sagemaker")
    ids, resubmits = submit_all(provider, order)
    listed = boto3.client("sagemaker", region_name=REGION).list_training_jobs(MaxResults=100)
    assert len(listed["TrainingJobSummaries"]) == SPECS
    check(ids, order, flaky.launched, resubmits, flaky.failures)


# ---- Vertex AI (fakes at JobServiceClient / storage.Client) -------------------------------------


class Flaky:
    """Fails FAILURE_RATE of calls: before the service acts (throttle / timeout), or after it
    acted (the answer is lost). The first create always loses its answer."""

    def __init__(self, seed: int, throttle, timeout):
        self.rng = random.Random(seed)
        self.throttle, self.timeout = throttle, timeout
        self.failures: Counter = Counter()
        self.forced_loss = True

    def call(self, fn, *args, create: bool = False, **kwargs):
        roll = self.rng.random()
        if create and self.forced_loss:
            self.forced_loss, roll = False, 0.0
        if roll >= FAILURE_RATE:
            return fn(*args, **kwargs)
        kind = ("landed-then-lost", "timeout", "throttle")[int(roll / FAILURE_RATE * 3)]
        self.failures[kind] += 1
        if kind == "landed-then-lost":
            fn(*args, **kwargs)
            raise self.timeout()
        raise self.throttle() if kind == "throttle" else self.timeout()


@pytest.fixture
def vertex(monkeypatch):
    from google.api_core import exceptions
    from google.cloud import aiplatform_v1

    monkeypatch.setattr(vertex_ops, "_sleep", lambda s: None)
    flaky = Flaky(2, lambda: exceptions.TooManyRequests("Too many requests"),
                  lambda: exceptions.DeadlineExceeded("Deadline exceeded"))
    jobs: list = []
    blobs: dict = {}

    def create(parent, custom_job):
        made = aiplatform_v1.CustomJob(custom_job)
        made.name = f"{parent}/customJobs/{1000 + len(jobs)}"
        made.state = aiplatform_v1.JobState.JOB_STATE_PENDING
        jobs.append(made)
        return made

    def listing(request):
        key = request["filter"].split('"')[1]
        return iter([j for j in jobs if j.labels.get("genai-cloud-key") == key])

    def upload(path, data, content_type, if_generation_match):
        if if_generation_match == 0 and path in blobs:
            raise exceptions.PreconditionFailed("object exists")
        blobs[path] = data

    def blob(path):
        return SimpleNamespace(
            exists=lambda: flaky.call(lambda: path in blobs),
            upload_from_string=lambda data, **kw: flaky.call(upload, path, data, **kw))

    api = SimpleNamespace(
        create_custom_job=lambda parent, custom_job: flaky.call(
            create, parent, custom_job, create=True),
        list_custom_jobs=lambda request: flaky.call(listing, request))  # fmt: skip
    storage = SimpleNamespace(bucket=lambda name: SimpleNamespace(blob=blob))
    monkeypatch.setattr(aiplatform_v1, "JobServiceClient", lambda **kw: api)
    monkeypatch.setattr("google.cloud.storage.Client", lambda project: storage)
    return SimpleNamespace(jobs=jobs, flaky=flaky)


def test_vertex_100_flaky_submits_launch_exactly_10_jobs(vertex):
    order = sweep("vertex")
    ids, resubmits = submit_all(get_provider("vertex"), order)
    launched = [j.display_name for j in vertex.jobs]
    check(ids, order, launched, resubmits, vertex.flaky.failures)


# ---- Azure ML (fake MLClient) -------------------------------------------------------------------


@pytest.fixture
def azure(monkeypatch):
    from azure.core.exceptions import (
        HttpResponseError,
        ResourceNotFoundError,
        ServiceRequestError,
        ServiceResponseError,
    )

    def throttled():
        error = HttpResponseError("Too many requests, retry after 1 s")
        error.status_code = 429
        return error

    def lost():  # the request went out; the answer did not come back
        return ServiceResponseError("Connection aborted: read timed out")

    monkeypatch.setattr(azureml_ops, "_sleep", lambda s: None)
    flaky = Flaky(3, throttled, lost)
    unsent = Flaky(4, lambda: ServiceRequestError("connection refused"), lost)
    store: dict = {}
    launches: list[str] = []  # every create the service carried out (store would hide repeats)

    def get(name):
        if name not in store:
            raise ResourceNotFoundError("job not found")
        return store[name]

    def create(job):
        launches.append(job.name)
        store[job.name] = SimpleNamespace(id=f"/subscriptions/sub/resourceGroups/rg/providers/"
                                          f"Microsoft.MachineLearningServices/workspaces/ws/"
                                          f"jobs/{job.name}", name=job.name, status="Queued",
                                          tags=dict(job.tags), studio_url=None)  # fmt: skip
        return store[job.name]

    jobs = SimpleNamespace(get=lambda name: unsent.call(get, name),
                           create_or_update=lambda job: flaky.call(create, job, create=True))
    monkeypatch.setattr("azure.ai.ml.MLClient", lambda *a, **kw: SimpleNamespace(jobs=jobs))
    monkeypatch.setattr("azure.identity.DefaultAzureCredential", lambda: None)
    return SimpleNamespace(store=store, launches=launches, flaky=flaky, unsent=unsent)


def test_azureml_100_flaky_submits_launch_exactly_10_jobs(azure):
    order = sweep("azureml")
    ids, resubmits = submit_all(get_provider("azureml"), order)
    assert len(azure.store) == SPECS
    check(ids, order, azure.launches, resubmits, azure.flaky.failures + azure.unsent.failures)
