"""Resolve secret references at run time: AWS Secrets Manager ARNs, GCP Secret Manager names,
Azure Key Vault secret URIs. Values go into the process environment only, never into logs."""

from __future__ import annotations

import re

from .config import JobError


def fetch(reference: str) -> str:
    if reference.startswith("arn:aws"):
        return _aws(reference)
    if reference.startswith("projects/"):
        return _gcp(reference)
    if re.match(r"^https://[a-z0-9-]+\.vault\.azure\.net/secrets/", reference):
        return _azure(reference)
    raise JobError(f"not a secret reference: {reference[:40]}...", "secrets")


def _aws(arn: str) -> str:
    import boto3

    region = arn.split(":")[3]
    client = boto3.client("secretsmanager", region_name=region)
    answer = client.get_secret_value(SecretId=arn)
    return answer.get("SecretString") or answer["SecretBinary"].decode()


def _gcp(name: str) -> str:
    from google.cloud import secretmanager  # type: ignore[import-not-found]

    if "/versions/" not in name:
        name = f"{name}/versions/latest"
    client = secretmanager.SecretManagerServiceClient()
    return client.access_secret_version(name=name).payload.data.decode()


def _azure(uri: str) -> str:
    from azure.identity import DefaultAzureCredential  # type: ignore[import-not-found]
    from azure.keyvault.secrets import SecretClient  # type: ignore[import-not-found]

    match = re.match(r"^(https://[^/]+)/secrets/([^/]+)(?:/([^/]+))?", uri)
    assert match  # checked by fetch()
    vault, name, version = match.groups()
    client = SecretClient(vault_url=vault, credential=DefaultAzureCredential())
    return client.get_secret(name, version).value
