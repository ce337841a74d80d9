"""Google Cloud Functions (2nd gen) launcher, for the functions-framework.

Two entry points over the shared core:

- ``launch_http(request)``: POST a spec (JSON/YAML) or ``{"spec": ..., "provider": ...}``.
- ``launch_gcs(cloud_event)``: a ``google.cloud.storage.object.v1.finalized`` event; the object
  under ``GENAI_SPEC_PREFIX`` is read and launched. Transient failures raise, so an Eventarc
  trigger with retries re-delivers the event; the idempotent submit keeps it to one job.

The default provider is ``vertex`` (``GENAI_PROVIDER`` overrides it). functions-framework is
only needed where the function runs; without it these are plain functions (tests call them).
Deploy with ``--entry-point launch_http`` or ``launch_gcs`` and a ``main.py`` that re-exports
them (see infra/gcp/README section in infra/README.md).
"""

from __future__ import annotations

import json
import logging
from functools import lru_cache
from typing import Any

from ..errors import require
from . import core

DEFAULT_PROVIDER = "vertex"
FINALIZED = "google.cloud.storage.object.v1.finalized"

try:  # registered with the framework only where it is installed (the function's runtime)
    import functions_framework as _ff
except ImportError:  # pragma: no cover - exercised when the framework is absent
    _ff = None


def launch_http(request: Any) -> tuple[str, int, dict]:
    """HTTP entry point: a Flask request in, (JSON body, status, headers) out."""
    settings = core.Settings.from_env(DEFAULT_PROVIDER)
    headers = {"Content-Type": "application/json"}
    with core.request_context(request.headers.get("Function-Execution-Id")):
        if request.method != "POST":
            body = {"error": "Method not allowed", "message": "use POST"}
            return json.dumps(body), 405, headers
        status, body = core.handle_http(request.get_data(), settings, source="http",
                                        provider=request.args.get("provider"))  # fmt: skip
        return json.dumps(body), status, headers


def launch_gcs(cloud_event: Any) -> dict:
    """CloudEvent entry point for Cloud Storage object-finalize events."""
    settings = core.Settings.from_env(DEFAULT_PROVIDER)
    with core.request_context(cloud_event["id"]):
        if cloud_event["type"] != FINALIZED:
            core.log(logging.INFO, "event skipped", type=cloud_event["type"])
            return {"skipped": cloud_event["type"]}
        data = cloud_event.data
        size = int(data.get("size") or 0)
        if size > core.MAX_SPEC_BYTES:
            uri = f"gs://{data['bucket']}/{data['name']}"
            body = core.error_body(core.too_large(uri, size))
            core.log(logging.ERROR, "spec rejected", source=uri, detail=body)
            return {"source": uri, **body}
        return core.handle_object(data["bucket"], data["name"], _read_gcs, settings, scheme="gs",
                                  write=_write_gcs)  # fmt: skip


@lru_cache(maxsize=1)
def _gcs_client():
    storage = require("google.cloud.storage", "gcp")
    return storage.Client()


def _write_gcs(bucket: str, name: str, data: bytes) -> None:
    _gcs_client().bucket(bucket).blob(name).upload_from_string(data, content_type="application/json")


def _read_gcs(bucket: str, name: str) -> bytes:
    from google.api_core.exceptions import NotFound

    try:
        return _gcs_client().bucket(bucket).blob(name).download_as_bytes()
    except NotFound:
        # Deleted between the event and now: a redelivery would fail the same way.
        raise core.SpecNotFoundError(f"gs://{bucket}/{name} no longer exists") from None


if _ff is not None:
    launch_http = _ff.http(launch_http)
    launch_gcs = _ff.cloud_event(launch_gcs)
