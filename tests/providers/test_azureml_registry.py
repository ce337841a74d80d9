"""output.register on Azure ML: the completed job's ``model`` output becomes a version of a
workspace model, passed to MLClient (mocked at that boundary) as azure-ai-ml's own Model entity."""

from __future__ import annotations

from types import SimpleNamespace
from unittest import mock

import pytest
from azure.ai.ml.entities import Model
from azure.core.exceptions import ResourceNotFoundError

from genai_cloud.errors import ProviderError
from genai_cloud.plan import make_plan
from genai_cloud.providers import get_provider
from genai_cloud.providers.azureml import ops as azureml_ops
from genai_cloud.loading import load_spec


def plan_for():
    spec = load_spec({"name": "demo", "model": {"name_or_path": "gpt2"},
                      "data": {"train": "azureml://datastores/d/paths/train.jsonl"},
                      "output": {"register": {"name": "demo-models", "description": "tiny"}},
                      "azure": {"subscription_id": "sub", "resource_group": "rg",
                                "workspace": "ws"}})  # fmt: skip
    return make_plan(spec, "azureml")


@pytest.fixture
def ml(monkeypatch):
    monkeypatch.setattr(azureml_ops, "_sleep", lambda s: None)
    state = SimpleNamespace(jobs={}, models=[])
    client = mock.MagicMock()

    def get(name):
        if name not in state.jobs:
            raise ResourceNotFoundError("not found")
        return state.jobs[name]

    def listing(name):
        found = [m for m in state.models if m.name == name]
        if not found:
            raise ResourceNotFoundError("no such model container")
        return iter(found)

    def create(entity):
        assert isinstance(entity, Model)  # the SDK's own type, as a real call needs
        made = Model(name=entity.name, version=str(len(state.models) + 1), path=entity.path,
                     type=entity.type, tags=entity.tags, description=entity.description)  # fmt: skip
        state.models.append(made)
        return made

    client.jobs.get.side_effect = get
    client.models.list.side_effect = listing
    client.models.create_or_update.side_effect = create
    monkeypatch.setattr("azure.ai.ml.MLClient", mock.Mock(return_value=client))
    monkeypatch.setattr("azure.identity.DefaultAzureCredential", mock.Mock())
    return state


def test_a_completed_job_output_becomes_a_model_version_once(ml):
    plan = plan_for()
    ml.jobs[plan.job_name] = SimpleNamespace(name=plan.job_name, status="Completed")
    assert get_provider("azureml").register(plan) == "azureml:demo-models:1"
    [model] = ml.models
    assert model.path == f"azureml://jobs/{plan.job_name}/outputs/model"
    assert model.type == "custom_model" and model.description == "tiny"
    assert model.tags["genai-cloud-key"] == plan.key
    assert get_provider("azureml").register(plan) == "azureml:demo-models:1"  # found again
    assert len(ml.models) == 1


def test_a_running_job_is_not_registered(ml):
    plan = plan_for()
    ml.jobs[plan.job_name] = SimpleNamespace(name=plan.job_name, status="Running")
    with pytest.raises(ProviderError, match="is Running; register its model once it has"):
        get_provider("azureml").register(plan)
