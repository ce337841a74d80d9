"""AWS Lambda launcher: ``genai_cloud.serverless.aws_lambda.handler``.

Accepts three event shapes:

- S3 ``ObjectCreated`` notifications (``Records[].s3``): each new spec file under
  ``GENAI_SPEC_PREFIX`` (default ``specs/``) is read and launched. Returns
  ``{"results": [...]}``; a bad spec is logged and reported in its result (a retry cannot fix
  it), while a transient failure is raised after the other records ran, so that Lambda's retry
  re-delivers the event and the idempotent submit finds what was already launched.
- API Gateway proxy requests (REST ``httpMethod`` or HTTP API ``requestContext.http``): the
  body is a spec (JSON or YAML) or ``{"spec": ..., "provider": ...}``; ``?provider=`` also
  works. Answers 201 (launched), 200 (already existed), 400 (invalid spec, with every error),
  422 (unsupported feature), 5xx.
- Direct invocations: the event is the spec or the envelope; returns the result with a
  ``statusCode``.

Configuration comes from the environment (see ``core.Settings`` and ``core.ENV_DEFAULTS``).
boto3 is taken from the Lambda runtime and imported on first use only.
"""

from __future__ import annotations

import base64
import logging
from functools import lru_cache
from typing import Any
from urllib.parse import unquote_plus

from . import core

DEFAULT_PROVIDER = "sagemaker"


def handler(event: Any, context: Any) -> dict:
    """The Lambda entry point."""
    settings = core.Settings.from_env(DEFAULT_PROVIDER)
    with core.request_context(getattr(context, "aws_request_id", None)):
        if isinstance(event, dict) and event.get("Event") == "s3:TestEvent":
            # S3 sends this once when the notification is configured.
            core.log(logging.INFO, "s3 test event ignored", bucket=event.get("Bucket"))
            return {"results": []}
        if _is_s3_event(event):
            return _on_s3(event, settings)
        if _is_http_event(event):
            return _on_http(event, settings)
        status, body = core.handle_document(event, settings, source="invoke")
        return {"statusCode": status, **body}


def _is_s3_event(event: Any) -> bool:
    records = event.get("Records") if isinstance(event, dict) else None
    return bool(records) and all(r.get("eventSource") == "aws:s3" for r in records)


def _is_http_event(event: Any) -> bool:
    if not isinstance(event, dict):
        return False
    return "httpMethod" in event or "http" in event.get("requestContext", {})


def _on_s3(event: dict, settings: core.Settings) -> dict:
    results: list[dict] = []
    failures: list[Exception] = []
    for record in event["Records"]:
        bucket = record["s3"]["bucket"]["name"]
        # S3 notifications URL-encode keys ("specs/my+job.yaml" is "specs/my job.yaml").
        key = unquote_plus(record["s3"]["object"]["key"])
        if not record.get("eventName", "").startswith("ObjectCreated"):
            core.log(logging.INFO, "event skipped", event=record.get("eventName"), key=key)
            continue
        try:
            results.append(core.handle_object(bucket, key, _read_s3, settings, scheme="s3",
                                              write=_write_s3))  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - re-raised below, after the other records
            core.log(logging.ERROR, "launch failed; the event will be retried", exc_info=True,
                     source=f"s3://{bucket}/{key}")  # fmt: skip
            failures.append(exc)
    if failures:
        raise failures[0]
    return {"results": results}


def _on_http(event: dict, settings: core.Settings) -> dict:
    http = event.get("requestContext", {}).get("http", {})  # HTTP API (payload 2.0)
    method = event.get("httpMethod") or http.get("method")
    if method and method.upper() != "POST":
        return core.json_response(405, {"error": "Method not allowed", "message": "use POST"})
    body = event.get("body")
    if body and event.get("isBase64Encoded"):
        body = base64.b64decode(body)
    query = event.get("queryStringParameters") or {}
    status, answer = core.handle_http(body, settings, source="apigateway",
                                      provider=query.get("provider"))  # fmt: skip
    return core.json_response(status, answer)


@lru_cache(maxsize=1)
def _s3_client():
    # Created once per container and reused by warm invocations; "standard" retries cover
    # throttling and transient network errors.
    import boto3
    from botocore.config import Config

    return boto3.client("s3", config=Config(retries={"mode": "standard", "max_attempts": 5}))


def _write_s3(bucket: str, key: str, data: bytes) -> None:
    # The bucket's default encryption (the stack's KMS key) applies; the launcher role may put
    # only <SpecPrefix>*.rejected.json objects.
    _s3_client().put_object(Bucket=bucket, Key=key, Body=data, ContentType="application/json")


def _read_s3(bucket: str, key: str) -> bytes:
    client = _s3_client()
    try:
        obj = client.get_object(Bucket=bucket, Key=key)
    except client.exceptions.NoSuchKey:
        # Deleted between the notification and now: retrying would fail the same way.
        raise core.SpecNotFoundError(f"s3://{bucket}/{key} no longer exists") from None
    if obj["ContentLength"] > core.MAX_SPEC_BYTES:
        obj["Body"].close()
        raise core.too_large(f"s3://{bucket}/{key}", obj["ContentLength"])
    return obj["Body"].read()
