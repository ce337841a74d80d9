"""A cloud SDK that finds no credentials gives one clear error with the login command, not a
traceback. The SDKs' real exception classes are raised at the client boundary (no network)."""

import pytest

from genai_cloud.errors import ProviderError
from genai_cloud.plan import make_plan
from genai_cloud.providers import get_provider
from genai_cloud.spec import load_spec

VERTEX = {"name": "demo", "model": {"name_or_path": "gpt2"},
          "data": {"train": "gs://b/train.jsonl"}, "output": {"uri": "gs://b/out"},
          "gcp": {"project": "p", "region": "us-central1"}}  # fmt: skip
AZURE = {"name": "demo", "model": {"name_or_path": "gpt2"},
         "data": {"train": "azureml://datastores/ws/paths/train.jsonl"},
         "azure": {"subscription_id": "s", "resource_group": "rg", "workspace": "ws",
                   "compute": "cpu-cluster"}}  # fmt: skip


def _no_adc(*args, **kwargs):
    from google.auth.exceptions import DefaultCredentialsError

    raise DefaultCredentialsError("Your default credentials were not found.")


def _no_azure_login(*args, **kwargs):
    from azure.core.exceptions import ClientAuthenticationError

    raise ClientAuthenticationError(message="DefaultAzureCredential failed to retrieve a token.")


def test_vertex_submit_without_credentials(monkeypatch):
    from genai_cloud.providers import vertex_ops

    monkeypatch.setattr(vertex_ops, "submit", _no_adc)
    plan = make_plan(load_spec(VERTEX), "vertex")
    with pytest.raises(ProviderError) as info:
        get_provider("vertex").submit(plan)
    assert info.value.headline == "Google Cloud credentials not found"
    assert "gcloud auth application-default login" in info.value.message


def test_vertex_logs_generator_is_guarded(monkeypatch):
    from genai_cloud.providers import vertex_ops

    def logs(job_id, follow=False):
        yield "first line"
        _no_adc()

    monkeypatch.setattr(vertex_ops, "logs", logs)
    lines = get_provider("vertex").logs("projects/p/locations/us-central1/customJobs/1")
    assert next(lines) == "first line"
    with pytest.raises(ProviderError, match="gcloud auth"):
        next(lines)


def test_azure_status_without_credentials(monkeypatch):
    from genai_cloud.providers import azureml_ops

    monkeypatch.setattr(azureml_ops, "status", _no_azure_login)
    with pytest.raises(ProviderError) as info:
        get_provider("azureml").status("demo-123")
    assert info.value.headline == "Azure credentials not found"
    assert "az login" in info.value.message


def test_other_errors_pass_through(monkeypatch):
    from genai_cloud.providers import azureml_ops

    def broken(*args, **kwargs):
        raise KeyError("a bug of ours keeps its traceback")

    monkeypatch.setattr(azureml_ops, "cancel", broken)
    with pytest.raises(KeyError):
        get_provider("azureml").cancel("demo-123")
