"""output.register on Vertex AI: the finished CustomJob's model folder goes to the Model Registry
through aiplatform_v1's ModelServiceClient (mocked at that boundary, requests built as real
protos): a new model, a new version of a model of that name, and the same answer twice."""

from __future__ import annotations

from types import SimpleNamespace
from unittest import mock

import pytest
from google.cloud import aiplatform_v1

from genai_cloud.errors import ProviderError
from genai_cloud.plan import make_plan
from genai_cloud.providers import get_provider
from genai_cloud.providers.vertex import ops as vertex_ops
from genai_cloud.loading import load_spec

PARENT = "projects/proj/locations/us-central1"
IMAGE = "us-docker.pkg.dev/vertex-ai/prediction/pytorch-cpu.2-4:latest"


def plan_for():
    spec = load_spec({"name": "demo", "model": {"name_or_path": "gpt2"},
                      "data": {"train": "gs://bkt/data/train.jsonl"},
                      "output": {"uri": "gs://bkt/runs",
                                 "register": {"name": "demo-models", "image_uri": IMAGE}},
                      "gcp": {"project": "proj", "region": "us-central1"}})  # fmt: skip
    return make_plan(spec, "vertex")


@pytest.fixture
def vertex(monkeypatch):
    """Fake Job and Model services: ``jobs`` and ``models`` hold what they know."""
    monkeypatch.setattr(vertex_ops, "_sleep", lambda s: None)
    state = SimpleNamespace(jobs=[], models=[], uploads=[])
    jobs = mock.create_autospec(aiplatform_v1.JobServiceClient, instance=True)
    jobs.list_custom_jobs.side_effect = lambda request: [
        j for j in state.jobs if j.labels.get("genai-cloud-key") == request["filter"].split('"')[1]]
    models = mock.create_autospec(aiplatform_v1.ModelServiceClient, instance=True)

    def listing(request):
        value = request["filter"].split('"')[1]
        if request["filter"].startswith("labels."):
            return [m for m in state.models if m.labels.get("genai-cloud-key") == value]
        return [m for m in state.models if m.display_name == value]

    def upload(request):
        made = aiplatform_v1.UploadModelRequest(request)  # a real proto: bad fields raise
        state.uploads.append(made)
        model = aiplatform_v1.Model(made.model)
        existing = [m for m in state.models if m.name == made.parent_model]
        model.name = made.parent_model or f"{PARENT}/models/{100 + len(state.models)}"
        model.version_id = str(len(existing) + 1)
        state.models.append(model)
        return mock.Mock(result=lambda: aiplatform_v1.UploadModelResponse(
            model=model.name, model_version_id=model.version_id))  # fmt: skip

    models.list_models.side_effect = listing
    models.upload_model.side_effect = upload
    monkeypatch.setattr(aiplatform_v1, "JobServiceClient", mock.Mock(return_value=jobs))
    monkeypatch.setattr(aiplatform_v1, "ModelServiceClient", mock.Mock(return_value=models))
    return state


def _finished(state, plan, job_state=aiplatform_v1.JobState.JOB_STATE_SUCCEEDED):
    job = aiplatform_v1.CustomJob(display_name=plan.job_name, labels={"genai-cloud-key": plan.key},
                                  name=f"{PARENT}/customJobs/7", state=job_state)  # fmt: skip
    state.jobs.append(job)


def test_a_succeeded_job_is_uploaded_then_found_again(vertex):
    plan = plan_for()
    _finished(vertex, plan)
    name = get_provider("vertex").register(plan)
    assert name == f"{PARENT}/models/100@1"
    [upload] = vertex.uploads
    assert upload.parent == PARENT and upload.parent_model == ""
    assert upload.model.artifact_uri == f"gs://bkt/runs/{plan.job_name}/model/"
    assert upload.model.container_spec.image_uri == IMAGE
    assert upload.model.labels["genai-cloud-key"] == plan.key
    assert get_provider("vertex").register(plan) == name  # the same job: no second upload
    assert len(vertex.uploads) == 1


def test_another_job_becomes_a_new_version_of_the_named_model(vertex):
    first = plan_for()
    _finished(vertex, first)
    get_provider("vertex").register(first)
    second = plan_for()
    second.__dict__["key"] = "fedcba9876"  # another job of the same spec name
    _finished(vertex, second)
    assert get_provider("vertex").register(second) == f"{PARENT}/models/100@2"
    assert vertex.uploads[-1].parent_model == f"{PARENT}/models/100"


def test_an_unfinished_job_is_not_registered(vertex):
    plan = plan_for()
    _finished(vertex, plan, aiplatform_v1.JobState.JOB_STATE_RUNNING)
    with pytest.raises(ProviderError, match="is JOB_STATE_RUNNING; register its model once"):
        get_provider("vertex").register(plan)
