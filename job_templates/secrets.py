"""Resolve secret references at run time: AWS Secrets Manager ARNs, GCP Secret Manager names,
Azure Key Vault secret URIs. Values go into the process environment only, never into logs.

Every way a secret can fail to arrive — no such secret, access denied, the service unreachable
(network isolation, no route), no credentials, the platform's client not installed in the image —
is a ``JobError`` naming ``secrets.<NAME>`` (exit 2, no traceback), with what would fix it.
"""

from __future__ import annotations

import re

from .config import JobError

# platform -> (what to pip install in the image, the permission the job's identity needs)
_CLIENTS = {
    "aws": ("boto3", "secretsmanager:GetSecretValue on the secret for the job's IAM role"),
    "gcp": ("google-cloud-secret-manager",
            "roles/secretmanager.secretAccessor on the secret for the job's service account"),
    "azure": ("azure-keyvault-secrets azure-identity",
              ("the Key Vault 'get' secret permission (or the Key Vault Secrets User role) for "
               "the job's managed identity")),
}  # fmt: skip
_AZURE_URI = re.compile(r"^(https://[a-z0-9-]+\.vault\.azure\.net)/secrets/([^/]+)(?:/([^/]+))?")

# Exception classes (by name, so that no SDK is imported to classify its own errors) -> reason.
_MISSING = {"ResourceNotFoundException", "NotFound", "ResourceNotFoundError"}
_DENIED = {"AccessDeniedException", "PermissionDenied", "Forbidden", "ClientAuthenticationError",
           "CredentialUnavailableError", "NoCredentialsError", "DefaultCredentialsError",
           "Unauthenticated", "UnrecognizedClientException", "DecryptionFailure"}  # fmt: skip
_UNREACHABLE = {"EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError",
                "ConnectionClosedError", "ServiceUnavailable", "RetryError", "DeadlineExceeded",
                "ServiceRequestError", "ServiceResponseError", "ConnectionError",
                "TimeoutError"}  # fmt: skip


def platform_of(reference: str) -> str | None:
    if reference.startswith("arn:aws"):
        return "aws"
    if reference.startswith("projects/"):
        return "gcp"
    if _AZURE_URI.match(reference):
        return "azure"
    return None


def fetch(reference: str, name: str = "secrets") -> str:
    """The value of the secret ``reference`` points at.

    Raises:
        JobError: naming ``name`` (``secrets.<ENV NAME>``): not a reference, no such secret,
            access denied, the service unreachable, or the platform's client not installed.
    """
    platform = platform_of(reference)
    if platform is None:
        raise JobError(f"not a secret reference: {reference[:40]}... (expected an AWS Secrets "
                       "Manager ARN, projects/P/secrets/S or a https://V.vault.azure.net/"
                       "secrets/S URI)", name)  # fmt: skip
    install, permission = _CLIENTS[platform]
    reader = {"aws": _aws, "gcp": _gcp, "azure": _azure}[platform]
    try:
        return reader(reference)
    except ImportError as exc:
        raise JobError(f"the {platform} secret client is not installed in this image "
                       f"({exc.name or exc}); add `pip install {install}` to the image or the "
                       "job's requirements", name) from None  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - each SDK's own error types, classified by name
        raise JobError(f"cannot read {_shown(reference)}: {_reason(exc, permission)}",
                       name) from None  # fmt: skip


def _shown(reference: str) -> str:
    return reference if len(reference) <= 160 else reference[:157] + "..."


def _reason(exc: Exception, permission: str) -> str:
    names = {cls.__name__ for cls in type(exc).__mro__}
    code = getattr(exc, "response", None)
    if isinstance(code, dict):  # botocore ClientError: the service's error code says what
        names.add(code.get("Error", {}).get("Code", ""))
    status = getattr(exc, "status_code", None) or getattr(exc, "code", None)
    said = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
    if names & _MISSING or status == 404:
        return f"no such secret (or version) ({said})"
    if names & _DENIED or status in (401, 403):
        return f"access denied ({said}); the job needs {permission}"
    if names & _UNREACHABLE:
        return (f"the secret service is unreachable ({said}); a job without network access "
                "(e.g. aws.network_isolation) cannot resolve secrets")  # fmt: skip
    return f"{type(exc).__name__}: {said}"


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

    match = _AZURE_URI.match(uri)
    assert match  # checked by fetch()
    vault, name, version = match.groups()
    client = SecretClient(vault_url=vault, credential=DefaultAzureCredential())
    return client.get_secret(name, version).value
