"""What every serverless launcher shares: settings, spec parsing, launch, HTTP answers, JSON logs.

A launch is validate -> plan -> ``api.submit``. The job name is derived from the spec, so
submit is describe-or-create: a platform that delivers the same event twice (Lambda retries
asynchronous invocations, Pub/Sub and Event Grid deliver at least once) gets the same job back.

Error policy: a user's mistake (``GenaiCloudError``: bad spec, unknown or disallowed provider,
unsupported feature) is final, answered (HTTP 4xx) or logged, never raised, since retrying
cannot fix it. Anything else (throttling, timeouts, our bugs) propagates from storage events so
the platform retries; over HTTP it becomes a 5xx.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import GenaiCloudError, ProviderError, SpecError, UnsupportedFeatureError
from ..spec_limits import MAX_SPEC_BYTES
from .policy import IDENTITY_FIELDS, LaunchPolicy, PolicyError, env_bool

# The spec machinery (pydantic models, providers) is imported on the first launch, not at module
# load: an S3 test event, a skipped object or a 405 answers without it, and the handler module
# itself imports in milliseconds. ``warm_up()`` imports it ahead for runtimes that prefer that.

# A spec is a few KB. The cap (spec_limits.MAX_SPEC_BYTES, the same as for a spec file) keeps a
# stray large object from being read into a small function.
SPEC_SUFFIXES = (".yaml", ".yml", ".json")
# A refused spec's reasons, written beside it for whoever dropped it (never read as a spec).
REJECTED_SUFFIX = ".rejected.json"
ENVELOPE_KEYS = ("spec", "provider")
# Running a job inside the function itself would hit the platform's time limit (Lambda: 900 s).
NEVER_ALLOWED = {"local"}

# Environment variable -> (spec section, field) filled in when the spec leaves it unset. This is
# how a deployment (the SAM/Terraform stack) supplies its role, bucket and keys to every spec.
ENV_DEFAULTS: dict[str, tuple[str, str]] = {
    "GENAI_OUTPUT_URI": ("output", "uri"),
    "GENAI_AWS_REGION": ("aws", "region"),
    "GENAI_AWS_ROLE_ARN": ("aws", "role_arn"),
    "GENAI_AWS_BUCKET": ("aws", "bucket"),
    "GENAI_AWS_KMS_KEY_ID": ("aws", "kms_key_id"),
    "GENAI_AWS_VOLUME_KMS_KEY_ID": ("aws", "volume_kms_key_id"),
    "GENAI_AWS_INTER_CONTAINER_ENCRYPTION": ("aws", "inter_container_encryption"),
    "GENAI_GCP_PROJECT": ("gcp", "project"),
    "GENAI_GCP_REGION": ("gcp", "region"),
    "GENAI_GCP_STAGING_BUCKET": ("gcp", "staging_bucket"),
    "GENAI_GCP_SERVICE_ACCOUNT": ("gcp", "service_account"),
    "GENAI_GCP_KMS_KEY_NAME": ("gcp", "kms_key_name"),
    "GENAI_AZURE_SUBSCRIPTION_ID": ("azure", "subscription_id"),
    "GENAI_AZURE_RESOURCE_GROUP": ("azure", "resource_group"),
    "GENAI_AZURE_WORKSPACE": ("azure", "workspace"),
    "GENAI_AZURE_COMPUTE": ("azure", "compute"),
}
_BOOL_FIELDS = {"inter_container_encryption"}
# Cloud answers worth a retry of the whole launch (after botocore's own retries gave up).
_TRANSIENT = {"Throttling", "ThrottlingException", "TooManyRequestsException", "SlowDown",
              "RequestLimitExceeded", "ServiceUnavailable", "InternalFailure",
              "InternalServerError", "InternalError", "RequestTimeout"}  # fmt: skip


# --------------------------------------------------------------------------------------------
# Structured logs: one JSON object per line on stdout (CloudWatch, Cloud Logging and
# Application Insights all index such lines by field).

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "message": record.getMessage(),
        }
        request_id = _request_id.get()
        if request_id:
            entry["request_id"] = request_id
        for key, value in getattr(record, "fields", {}).items():
            entry.setdefault(key, value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class _StdoutHandler(logging.Handler):
    # Looks sys.stdout up at each write, so test capture and runtime redirection both work.
    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stdout.write(self.format(record) + "\n")
            sys.stdout.flush()
        except Exception:  # noqa: BLE001 - logging must never break a launch
            self.handleError(record)


_logger = logging.getLogger("genai_cloud.serverless")
if not _logger.handlers:
    _handler = _StdoutHandler()
    _handler.setFormatter(_JsonFormatter())
    _logger.addHandler(_handler)
    _logger.setLevel(logging.INFO)
    _logger.propagate = False  # the platforms' root handlers would print every line twice


def log(level: int, message: str, /, *, exc_info: bool = False, **fields: Any) -> None:
    """One JSON line: time, level, message, request_id, then ``fields`` (which cannot
    overwrite those four)."""
    _logger.log(level, message, exc_info=exc_info, extra={"fields": fields})


@contextlib.contextmanager
def request_context(request_id: str | None) -> Iterator[None]:
    """Tag every log line written inside with the platform's request id."""
    token = _request_id.set(request_id)
    try:
        yield
    finally:
        _request_id.reset(token)


# --------------------------------------------------------------------------------------------
# Settings


@dataclass(frozen=True)
class Settings:
    """The deployment's configuration, read from the function's environment."""

    provider: str
    allowed_providers: tuple[str, ...]
    spec_prefix: str = "specs/"
    defaults: dict[tuple[str, str], Any] = field(default_factory=dict)
    policy: LaunchPolicy = field(default_factory=LaunchPolicy)

    @classmethod
    def from_env(cls, default_provider: str, env: Mapping[str, str] | None = None) -> Settings:
        """``GENAI_PROVIDER``, ``GENAI_ALLOWED_PROVIDERS`` (comma list, default: the provider
        only), ``GENAI_SPEC_PREFIX`` (default ``specs/``), the ``ENV_DEFAULTS`` variables and
        the ``GENAI_POLICY_*`` ones (``policy.LaunchPolicy``)."""
        env = os.environ if env is None else env
        provider = env.get("GENAI_PROVIDER", "").strip() or default_provider
        allowed = [p.strip() for p in env.get("GENAI_ALLOWED_PROVIDERS", "").split(",")]
        allowed = [p for p in allowed if p] or [provider]
        defaults: dict[tuple[str, str], Any] = {}
        for var, target in ENV_DEFAULTS.items():
            value = env.get(var, "").strip()
            if value:
                defaults[target] = env_bool(var, value) if target[1] in _BOOL_FIELDS else value
        prefix = env.get("GENAI_SPEC_PREFIX", "specs/")
        return cls(provider, tuple(allowed), prefix, defaults, LaunchPolicy.from_env(env))


def apply_defaults(raw: dict, defaults: Mapping[tuple[str, str], Any]) -> dict:
    """A copy of ``raw`` with each default set where the spec leaves the field unset."""
    merged = dict(raw)
    for (section, key), value in defaults.items():
        part = merged.get(section)
        if part is None:
            part = {}
        if not isinstance(part, dict):
            continue  # a wrong type is reported by validation, with its path
        if part.get(key) is None:
            merged[section] = {**part, key: value}
    return merged


def warm_up() -> None:
    """Import the spec, plan and provider machinery now (it is otherwise loaded lazily)."""
    from .. import api  # noqa: F401
    from ..providers import get_provider  # noqa: F401


def resolve_provider(requested: str | None, settings: Settings) -> str:
    """The provider to submit to: the request's choice if the deployment allows it."""
    from ..providers import get_provider

    name = get_provider(requested or settings.provider).name
    allowed = sorted({get_provider(p).name for p in settings.allowed_providers} - NEVER_ALLOWED)
    if name not in allowed:
        raise ProviderError(
            f"provider {name!r} is not allowed by this function; allowed: {', '.join(allowed)} "
            "(set GENAI_ALLOWED_PROVIDERS to change it)"
        )
    return name


# --------------------------------------------------------------------------------------------
# Parsing


class SpecNotFoundError(GenaiCloudError):
    """The object named by a storage event is gone (deleted before it was read): final."""

    headline = "Spec not found"


def parse_document(text: str | bytes, source: str) -> dict:
    """A JSON or YAML mapping from a request body or a stored file."""
    if isinstance(text, bytes):
        if len(text) > MAX_SPEC_BYTES:
            raise too_large(source, len(text))
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SpecError(
                [f"{source}: not UTF-8 text (byte {exc.start})"], source=source
            ) from None
    if len(text) > MAX_SPEC_BYTES:
        raise too_large(source, len(text))
    if not text.strip():
        raise SpecError([f"{source}: empty; send the spec as JSON or YAML"], source=source)
    try:
        data = json.loads(text)
    except RecursionError:  # nesting no spec has; the YAML parser's limits would say so too
        data = _yaml(text, source)
    except ValueError:
        data = _yaml(text, source)
    if not isinstance(data, dict):
        raise SpecError([f"{source}: the document must be a mapping (name, task, model, ...)"],
                        source=source)  # fmt: skip
    return data


def _yaml(text: str, source: str) -> Any:
    # The spec loader's YAML: alias expansion, depth and number limits, duplicate keys refused.
    from ..loading import parse_yaml

    return parse_yaml(text, source)


def too_large(source: str, size: int) -> SpecError:
    return SpecError([f"{source}: {size} bytes; a spec may be at most {MAX_SPEC_BYTES} bytes"],
                     source=source)  # fmt: skip


def split_envelope(doc: dict, source: str) -> tuple[dict, str | None]:
    """``{"spec": ..., "provider": ...}`` -> (spec, provider); a bare spec -> (spec, None).

    A spec has no top-level ``spec`` field (unknown fields are errors), so its presence marks
    the envelope unambiguously.
    """
    if "spec" not in doc:
        return doc, None
    unknown = sorted(set(doc) - set(ENVELOPE_KEYS))
    if unknown:
        raise SpecError([f"{k}: unknown request field; valid: {', '.join(ENVELOPE_KEYS)}"
                         for k in unknown], source=source)  # fmt: skip
    spec, provider = doc["spec"], doc.get("provider")
    if isinstance(spec, str):
        spec = parse_document(spec, f"{source} (spec)")
    if not isinstance(spec, dict):
        raise SpecError(["spec: must be a mapping or a JSON/YAML string"], source=source)
    if provider is not None and not isinstance(provider, str):
        raise SpecError(["provider: must be a provider name string"], source=source)
    return spec, provider


# --------------------------------------------------------------------------------------------
# Launching


def launch(raw: dict, settings: Settings, *, source: str, provider: str | None = None) -> dict:
    """Validate, plan and submit (describe-or-create). Returns what the caller is told."""
    from .. import api
    from ..providers import get_provider
    from ..providers.base import Feature

    name = resolve_provider(provider, settings)
    # Why this provider cannot isolate a job's network (None: it can, per job).
    gap = get_provider(name).unsupported.get(Feature.NETWORK_ISOLATION)
    raw = settings.policy.apply_defaults(apply_defaults(raw, settings.defaults),
                                         isolation_gap=gap)  # fmt: skip
    spec = api.load_spec(raw)
    identity = {f: v for f, v in settings.defaults.items() if f in IDENTITY_FIELDS}
    settings.policy.check(spec, isolation_gap=gap, identity=identity, source=source,
                          allowed_providers=tuple(settings.allowed_providers))  # fmt: skip
    if gap and not settings.policy.allow_no_isolation:
        log(logging.WARNING, "job not network-isolated", source=source, provider=name,
            reason=gap)  # fmt: skip
    for note in spec.warnings():
        log(logging.WARNING, "spec warning", source=source, spec=spec.name, warning=note)
    handle = api.submit(spec, name)
    result = {
        "source": source,
        "provider": handle.provider,
        "job_name": handle.name,
        "job_id": handle.job_id,
        "created": handle.created,
        "state": None,
        "console_url": handle.console_url,
    }
    try:
        result["state"] = api.status(handle.provider, handle.job_id).state.value
    except Exception as exc:  # noqa: BLE001 - the job exists; a failed status must not hide it
        log(logging.WARNING, "status unavailable", job_name=handle.name, error=repr(exc))
    log(logging.INFO, "job launched" if handle.created else "job already exists", **result)
    return result


def handle_object(
    bucket: str,
    key: str,
    read: Callable[[str, str], bytes],
    settings: Settings,
    *,
    scheme: str,
    write: Callable[[str, str, bytes], None] | None = None,
) -> dict:
    """A spec file landed in storage: launch it, or say why not.

    User errors come back in the result (and the log), and with ``write`` also as
    ``<key>.rejected.json`` beside the spec, where whoever dropped it can read them; other
    errors propagate for a retry.
    """
    uri = f"{scheme}://{bucket}/{key}"
    if key.endswith(REJECTED_SUFFIX):
        log(logging.INFO, "object skipped", source=uri, reason="a rejection record")
        return {"source": uri, "skipped": "a rejection record"}
    if not key.startswith(settings.spec_prefix) or not key.lower().endswith(SPEC_SUFFIXES):
        reason = f"not a spec file (expected {settings.spec_prefix}*{{{','.join(SPEC_SUFFIXES)}}})"
        log(logging.INFO, "object skipped", source=uri, reason=reason)
        return {"source": uri, "skipped": reason}
    try:
        doc = parse_document(read(bucket, key), uri)
        spec, provider = split_envelope(doc, uri)
        return launch(spec, settings, source=uri, provider=provider)
    except GenaiCloudError as exc:
        if is_transient(exc):
            raise
        body = error_body(exc)
        log(logging.ERROR, "spec rejected", source=uri, detail=body)
        if write is not None:
            record_rejection(write, bucket, key, {"source": uri, **body})
        return {"source": uri, **body}


def record_rejection(write: Callable[[str, str, bytes], None], bucket: str, key: str,
                     body: dict) -> None:  # fmt: skip
    """Write ``<key>.rejected.json``; a failed write is logged, never retried (the refusal is
    final and already in the log)."""
    target = key + REJECTED_SUFFIX
    try:
        write(bucket, target, json.dumps(body, indent=2).encode())
    except Exception as exc:  # noqa: BLE001 - the log has the refusal either way
        log(logging.ERROR, "could not record the rejection", target=target, error=repr(exc))


def handle_document(
    body: dict | str | bytes | None, settings: Settings, *, source: str,
    provider: str | None = None,
) -> tuple[int, dict]:  # fmt: skip
    """A spec (or ``{"spec", "provider"}`` envelope) as a mapping or JSON/YAML text ->
    (HTTP-style status, body). User errors are answered; anything else propagates."""
    try:
        doc = body if isinstance(body, dict) else parse_document(body or "", source)
        spec, requested = split_envelope(doc, source)
        result = launch(spec, settings, source=source, provider=requested or provider)
        return (201 if result["created"] else 200), result
    except GenaiCloudError as exc:
        if is_transient(exc):
            raise
        status, answer = http_status(exc), error_body(exc)
        log(logging.WARNING, "request rejected", source=source, status=status, detail=answer)
        return status, answer


def handle_http(
    body: dict | str | bytes | None, settings: Settings, *, source: str = "http",
    provider: str | None = None,
) -> tuple[int, dict]:  # fmt: skip
    """Like ``handle_document`` but never raises: an HTTP caller gets a 5xx and the log gets
    the traceback."""
    try:
        return handle_document(body, settings, source=source, provider=provider)
    except Exception as exc:  # noqa: BLE001 - an HTTP caller gets a 5xx, the log the traceback
        status = http_status(exc)
        log(logging.ERROR, "launch failed", exc_info=True, source=source, status=status)
        return status, error_body(exc)


def cloud_error_code(exc: BaseException | None) -> str | None:
    """The error code of a botocore ``ClientError`` (duck-typed: botocore is not imported),
    also when a provider re-raised it as a ``ProviderError`` (it stays the ``__context__``)."""
    for candidate in (exc, getattr(exc, "__context__", None)):
        response = getattr(candidate, "response", None)
        if isinstance(response, dict) and response.get("Error", {}).get("Code"):
            return response["Error"]["Code"]
    return None


def is_transient(exc: BaseException) -> bool:
    """Worth retrying the launch: throttling and server-side failures, and anything that is
    not a user error (timeouts, connection resets; our bugs are retried too, harmlessly)."""
    if cloud_error_code(exc) in _TRANSIENT:
        return True
    return not isinstance(exc, GenaiCloudError)


def http_status(exc: BaseException) -> int:
    code = cloud_error_code(exc)
    if code in _TRANSIENT:
        return 503
    if code and code.startswith("AccessDenied"):
        return 403
    if isinstance(exc, PolicyError):
        return 403
    if isinstance(exc, SpecError):
        return 400
    if isinstance(exc, UnsupportedFeatureError):
        return 422
    if isinstance(exc, GenaiCloudError):
        return 500 if exc.headline == "Missing dependency" else 400
    return 502 if code else 500


def error_body(exc: BaseException) -> dict:
    """What a caller is told; never a traceback, never the spec's contents."""
    if isinstance(exc, SpecError):
        return {"error": exc.headline, "errors": exc.errors}
    if isinstance(exc, GenaiCloudError):
        return {"error": exc.headline, "message": exc.message}
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and cloud_error_code(exc):
        message = response.get("Error", {}).get("Message", "")
        return {"error": "Cloud API error", "code": cloud_error_code(exc), "message": message}
    request_id = _request_id.get()
    return {"error": "Internal error", "message": f"see the function's logs (request {request_id})"}


def json_response(status: int, body: dict) -> dict:
    """An API Gateway (REST and HTTP API) proxy response."""
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps(body),
    }
