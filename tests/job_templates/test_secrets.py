"""Secrets at each platform's client boundary: the value, or exit 2 naming secrets.NAME."""

from __future__ import annotations

import sys
import types

import boto3
import pytest
from moto import mock_aws

from job_templates.config import JobError
from job_templates.secrets import fetch

ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:hf-token-AbCdEf"
GCP = "projects/p1/secrets/hf-token"
AZURE = "https://my-vault.vault.azure.net/secrets/hf-token"


@pytest.fixture
def aws(monkeypatch):
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    with mock_aws():
        yield boto3.client("secretsmanager", region_name="us-east-1")


def _fails(reference: str) -> str:
    with pytest.raises(JobError) as info:
        fetch(reference, name="secrets.HF_TOKEN")
    assert info.value.where == "secrets.HF_TOKEN"
    message = str(info.value)
    assert message.startswith("secrets.HF_TOKEN: ") and "Traceback" not in message
    return message


# ---- AWS: moto's Secrets Manager -------------------------------------------------------------


def test_aws_secret_value(aws):
    arn = aws.create_secret(Name="hf-token", SecretString="s3cr3t")["ARN"]
    assert fetch(arn, name="secrets.HF_TOKEN") == "s3cr3t"


def test_aws_missing_secret(aws):
    message = _fails(ARN)
    assert "no such secret" in message and ARN in message


def test_aws_denied_secret(aws):
    from botocore.stub import Stubber

    client = boto3.client("secretsmanager", region_name="us-east-1")
    stub = Stubber(client)
    stub.add_client_error("get_secret_value", service_error_code="AccessDeniedException",
                          service_message="User is not authorized", http_status_code=400)  # fmt: skip
    stub.activate()
    original = boto3.client
    try:
        boto3.client = lambda *args, **kwargs: client
        message = _fails(ARN)
    finally:
        boto3.client = original
    assert "access denied" in message and "secretsmanager:GetSecretValue" in message


def test_aws_unreachable_service(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", "http://127.0.0.1:9")  # nothing there
    message = _fails(ARN)
    assert "unreachable" in message and "network_isolation" in message


def test_aws_client_not_installed(monkeypatch):
    monkeypatch.setitem(sys.modules, "boto3", None)
    message = _fails(ARN)
    assert "aws secret client is not installed" in message and "pip install boto3" in message


# ---- GCP: a fake Secret Manager client raising google.api_core's real errors ----------------


def _fake_gcp(monkeypatch, behaviour):
    class Client:
        def access_secret_version(self, name):
            return behaviour(name)

    secretmanager = types.ModuleType("google.cloud.secretmanager")
    secretmanager.SecretManagerServiceClient = Client
    import google.cloud

    monkeypatch.setitem(sys.modules, "google.cloud.secretmanager", secretmanager)
    monkeypatch.setattr(google.cloud, "secretmanager", secretmanager, raising=False)


def test_gcp_secret_value_asks_for_the_latest_version(monkeypatch):
    asked = []

    def answer(name):
        asked.append(name)
        return types.SimpleNamespace(payload=types.SimpleNamespace(data=b"s3cr3t"))

    _fake_gcp(monkeypatch, answer)
    assert fetch(GCP) == "s3cr3t" and asked == [f"{GCP}/versions/latest"]


@pytest.mark.parametrize(("error", "said"), [
    ("NotFound", "no such secret"),
    ("PermissionDenied", "roles/secretmanager.secretAccessor"),
    ("ServiceUnavailable", "unreachable"),
])  # fmt: skip
def test_gcp_errors(monkeypatch, error, said):
    from google.api_core import exceptions

    def fail(name):
        raise getattr(exceptions, error)(f"{error} for {name}")

    _fake_gcp(monkeypatch, fail)
    assert said in _fails(GCP)


def test_gcp_client_not_installed(monkeypatch):
    monkeypatch.setitem(sys.modules, "google.cloud.secretmanager", None)
    import google.cloud

    monkeypatch.delattr(google.cloud, "secretmanager", raising=False)
    message = _fails(GCP)
    assert "gcp secret client is not installed" in message
    assert "pip install google-cloud-secret-manager" in message


# ---- Azure: a fake Key Vault client raising azure.core's real errors --------------------------


def _fake_azure(monkeypatch, behaviour):
    class SecretClient:
        def __init__(self, vault_url, credential):
            self.vault_url = vault_url

        def get_secret(self, name, version=None):
            return behaviour(self.vault_url, name, version)

    secrets = types.ModuleType("azure.keyvault.secrets")
    secrets.SecretClient = SecretClient
    identity = types.ModuleType("azure.identity")
    identity.DefaultAzureCredential = lambda: object()
    monkeypatch.setitem(sys.modules, "azure.keyvault", types.ModuleType("azure.keyvault"))
    monkeypatch.setitem(sys.modules, "azure.keyvault.secrets", secrets)
    monkeypatch.setitem(sys.modules, "azure.identity", identity)


def test_azure_secret_value(monkeypatch):
    _fake_azure(monkeypatch, lambda vault, name, version: types.SimpleNamespace(
        value=f"{vault}|{name}|{version}"))  # fmt: skip
    assert fetch(f"{AZURE}/v2") == "https://my-vault.vault.azure.net|hf-token|v2"


@pytest.mark.parametrize(("error", "said"), [
    ("ResourceNotFoundError", "no such secret"),
    ("ClientAuthenticationError", "Key Vault Secrets User"),
    ("ServiceRequestError", "unreachable"),
])  # fmt: skip
def test_azure_errors(monkeypatch, error, said):
    from azure.core import exceptions

    def fail(vault, name, version):
        raise getattr(exceptions, error)(f"{error} for {name}")

    _fake_azure(monkeypatch, fail)
    assert said in _fails(AZURE)


def test_azure_client_not_installed(monkeypatch):
    monkeypatch.setitem(sys.modules, "azure.keyvault.secrets", None)
    message = _fails(AZURE)
    assert "pip install azure-keyvault-secrets azure-identity" in message


# ---- the entrypoint: exit 2, the field named, no traceback ------------------------------------


def test_the_entrypoint_exits_2_naming_the_secret(tmp_path, monkeypatch, capsys):
    import json

    from job_templates.entrypoint import main

    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"name": "s", "task": "audit", "secrets": {"HF_TOKEN": GCP}}))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setitem(sys.modules, "google.cloud.secretmanager", None)
    import google.cloud

    monkeypatch.delattr(google.cloud, "secretmanager", raising=False)
    code = main(["--spec", str(spec), "--output-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "error: secrets.HF_TOKEN: the gcp secret client is not installed" in err
    assert "Traceback" not in err
