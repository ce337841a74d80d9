"""A cloud SDK that finds no credentials gives one clear error with the login command, not a
traceback. The SDKs' real exception classes are raised at the client boundary (no network)."""

import pytest

from genai_cloud.errors import ProviderError
from genai_cloud.loading import load_spec
from genai_cloud.plan import make_plan
from genai_cloud.providers import get_provider

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
    from genai_cloud.providers.vertex import ops as vertex_ops

    monkeypatch.setattr(vertex_ops.VertexOps, "submit", _no_adc)
    plan = make_plan(load_spec(VERTEX), "vertex")
    with pytest.raises(ProviderError) as info:
        get_provider("vertex").submit(plan)
    assert info.value.headline == "Google Cloud credentials not found"
    assert "gcloud auth application-default login" in info.value.message


def test_vertex_logs_generator_is_guarded(monkeypatch):
    from genai_cloud.providers.vertex import ops as vertex_ops

    def logs(self, job_id, follow=False):
        yield "first line"
        _no_adc()

    monkeypatch.setattr(vertex_ops.VertexOps, "logs", logs)
    lines = get_provider("vertex").logs("projects/p/locations/us-central1/customJobs/1")
    assert next(lines) == "first line"
    with pytest.raises(ProviderError, match="gcloud auth"):
        next(lines)


def test_azure_status_without_credentials(monkeypatch):
    from genai_cloud.providers.azureml import ops as azureml_ops

    monkeypatch.setattr(azureml_ops.AzureMLOps, "status", _no_azure_login)
    with pytest.raises(ProviderError) as info:
        get_provider("azureml").status("demo-123")
    assert info.value.headline == "Azure credentials not found"
    assert "az login" in info.value.message


def test_other_errors_pass_through(monkeypatch):
    from genai_cloud.providers.azureml import ops as azureml_ops

    def broken(*args, **kwargs):
        raise KeyError("a bug of ours keeps its traceback")

    monkeypatch.setattr(azureml_ops.AzureMLOps, "cancel", broken)
    with pytest.raises(KeyError):
        get_provider("azureml").cancel("demo-123")


# ---- Azure without credentials: one line, no SDK log dump, no azure-ai-ml client -------------

ARM = ("/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/"
       "workspaces/ws/jobs/demo-0123456789")  # fmt: skip


class _Token:
    def __init__(self, token="t", expires_on=None):
        import time

        self.token, self.expires_on = token, expires_on or int(time.time()) + 3600


@pytest.fixture
def azure_chain(monkeypatch):
    """DefaultAzureCredential as azure.identity's real chain of credentials that each find
    nothing (no network, no `az`); MLClient a mock whose calls ask the credential for a token,
    as the real one's pipeline does."""
    from unittest import mock

    from azure.identity import ChainedTokenCredential, CredentialUnavailableError

    class Unavailable:
        def __init__(self, name):
            self.name = name

        def get_token_info(self, *scopes, options=None):
            raise CredentialUnavailableError(f"{self.name} authentication unavailable.")

    class DefaultAzureCredential(ChainedTokenCredential):
        def __init__(self):
            super().__init__(*(Unavailable(n) for n in ("EnvironmentCredential",
                                                        "ManagedIdentityCredential",
                                                        "AzureCliCredential")))  # fmt: skip

    def make_client(credential, *args, **kwargs):
        client = mock.Mock()
        client.jobs.get.side_effect = lambda name: credential.get_token_info(
            "https://management.azure.com/.default")
        return client

    factory = mock.Mock(side_effect=make_client)
    monkeypatch.setattr("azure.identity.DefaultAzureCredential", DefaultAzureCredential)
    monkeypatch.setattr("azure.ai.ml.MLClient", factory)
    return factory


@pytest.mark.parametrize("command", ["status", "logs", "cancel"])
def test_azure_without_credentials_is_one_line_without_the_sdk_dump(azure_chain, caplog, run_cli,
                                                                    command):  # fmt: skip
    import logging

    caplog.set_level(logging.DEBUG)  # whatever the SDK logs at WARNING or above is seen here
    code, _, err = run_cli([command, ARM])
    assert code == 2 and "Traceback" not in err
    assert "Error: Azure credentials not found" in err and "az login" in err
    assert "Attempted credentials" not in err
    noisy = [r for r in caplog.records if r.name.startswith("azure") and r.levelno >= logging.WARNING]
    assert noisy == []
    azure_chain.assert_not_called()  # failed before azure-ai-ml built a client
    assert logging.getLogger("azure.identity").level == logging.NOTSET  # restored


def test_azure_submit_without_credentials_fails_before_building_a_client(azure_chain, capsys):
    plan = make_plan(load_spec(AZURE), "azureml")
    with pytest.raises(ProviderError) as info:
        get_provider("azureml").submit(plan)
    assert info.value.headline == "Azure credentials not found"
    azure_chain.assert_not_called()


def test_a_logger_level_set_by_the_user_is_left_alone(azure_chain, caplog):
    import logging

    logger = logging.getLogger("azure.identity")
    previous = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        with pytest.raises(ProviderError):
            get_provider("azureml").status(ARM)
        assert logger.level == logging.DEBUG
        assert any("failed to retrieve a token" in r.getMessage() for r in caplog.records)
    finally:
        logger.setLevel(previous)


def test_the_first_management_token_is_reused_by_the_client(monkeypatch):
    from unittest import mock

    from genai_cloud.providers.azureml import ops as azureml_ops

    inner = mock.Mock()
    inner.get_token_info.return_value = _Token("arm")
    monkeypatch.setattr("azure.identity.DefaultAzureCredential", mock.Mock(return_value=inner))
    credential = azureml_ops.credential()
    assert inner.get_token_info.call_count == 1
    for _ in range(3):  # MLClient's service clients each ask once
        assert credential.get_token_info(azureml_ops.ARM_SCOPE).token == "arm"
        assert credential.get_token(azureml_ops.ARM_SCOPE).token == "arm"
    assert inner.get_token_info.call_count == 1 and inner.get_token.call_count == 0
    # Other scopes, claims challenges and a token about to expire go to the real credential.
    credential.get_token_info("https://storage.azure.com/.default")
    credential.get_token(azureml_ops.ARM_SCOPE, claims="challenge")
    assert inner.get_token_info.call_count == 2 and inner.get_token.call_count == 1
    inner.get_token_info.return_value = _Token("soon", expires_on=1)
    expiring = azureml_ops.credential()
    expiring.get_token_info(azureml_ops.ARM_SCOPE)
    assert inner.get_token_info.call_count == 4


def test_a_sovereign_cloud_skips_the_early_token(monkeypatch):
    from unittest import mock

    from genai_cloud.providers.azureml import ops as azureml_ops

    inner = mock.Mock()
    monkeypatch.setattr("azure.identity.DefaultAzureCredential", mock.Mock(return_value=inner))
    monkeypatch.setenv("AZUREML_CURRENT_CLOUD", "AzureChinaCloud")
    assert azureml_ops.credential() is inner and inner.get_token_info.call_count == 0


def test_a_credential_with_get_token_only_is_wrapped_the_same_way(monkeypatch):
    """azure-identity before 1.18 has no get_token_info: the token then comes from get_token."""
    from genai_cloud.providers.azureml import ops as azureml_ops

    class OldStyle:
        calls = 0

        def get_token(self, *scopes, **kwargs):
            OldStyle.calls += 1
            return _Token("old")

    monkeypatch.setattr("azure.identity.DefaultAzureCredential", OldStyle)
    credential = azureml_ops.credential()
    assert not hasattr(credential, "get_token_info")  # azure-core then calls get_token
    assert credential.get_token(azureml_ops.ARM_SCOPE).token == "old" and OldStyle.calls == 1
