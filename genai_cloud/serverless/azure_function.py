"""Azure Functions launcher (Python v2 programming model).

``app`` is a ``FunctionApp`` with two functions over the shared core:

- ``launch_http``: ``POST /api/launch`` with a spec (JSON/YAML) or ``{"spec": ..., "provider":
  ...}``, behind Entra ID: the app's built-in authentication (App Service "Easy Auth",
  infra/azure/main.tf ``auth_settings_v2``) refuses a caller without a token before the
  function runs, and the function itself answers 401 to a request that carries no
  authenticated principal (``X-MS-CLIENT-PRINCIPAL-ID``, set by that layer), so an app
  deployed without it is closed rather than open. No shared function key.
- ``launch_blob``: a blob trigger on ``<GENAI_SPEC_CONTAINER>/specs/{name}`` (container
  ``genai`` by default, storage connection ``GENAI_STORAGE``). The host retries a failed blob
  function (5 times, then a poison queue); only transient failures raise, and the idempotent
  submit keeps a retried launch to one job. A refused spec's reasons go to
  ``specs/{name}.rejected.json`` through an output binding.

The default provider is ``azureml`` (``GENAI_PROVIDER`` overrides it). The Functions host loads
``function_app.py`` at the app root; ours is one line: ``from
genai_cloud.serverless.azure_function import app``. The ``azure.functions`` import is guarded
so the SDK does not need it; without it ``app`` is None.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from ..errors import require
from . import core

DEFAULT_PROVIDER = "azureml"
# Set by App Service authentication for a signed-in caller (and stripped from client requests).
PRINCIPAL_HEADER = "x-ms-client-principal-id"
# Binding expressions are fixed when the host indexes the app, so the container is read from
# the app settings at import time (the host imports this module after applying them).
SPEC_CONTAINER = os.environ.get("GENAI_SPEC_CONTAINER", "genai")

try:
    import azure.functions as _func
except ImportError:  # pragma: no cover - exercised when the Functions library is absent
    _func = None


def launch_http(req: Any) -> Any:
    """HTTP trigger: a ``func.HttpRequest`` in, a JSON ``func.HttpResponse`` out."""
    func = _func or require("azure.functions", "azure")
    settings = core.Settings.from_env(DEFAULT_PROVIDER)
    with core.request_context(req.headers.get("x-ms-client-request-id")):
        if req.method.upper() != "POST":
            status, body = 405, {"error": "Method not allowed", "message": "use POST"}
        elif not req.headers.get(PRINCIPAL_HEADER):
            status, body = 401, {"error": "Unauthorized", "message": "sign in with Entra ID: "
                                 "this function runs behind the app's built-in authentication"}
        else:
            status, body = core.handle_http(req.get_body(), settings, source="http",
                                            provider=req.params.get("provider"))  # fmt: skip
    return func.HttpResponse(json.dumps(body), status_code=status, mimetype="application/json")


def launch_blob(blob: Any, rejection: Any = None) -> None:
    """Blob trigger: ``blob.name`` is ``<container>/<path>``, ``blob.read()`` its bytes;
    ``rejection`` the output binding for ``<path>.rejected.json``."""
    settings = core.Settings.from_env(DEFAULT_PROVIDER)
    container, _, path = blob.name.partition("/")
    length = getattr(blob, "length", None) or 0
    if length > core.MAX_SPEC_BYTES:
        uri = f"blob://{container}/{path}"
        body = core.error_body(core.too_large(uri, length))
        core.log(logging.ERROR, "spec rejected", source=uri, detail=body)
        return

    def read(_container: str, _path: str) -> bytes:
        return blob.read()

    def write(_container: str, _path: str, data: bytes) -> None:
        if rejection is not None:
            rejection.set(data.decode())

    # "blob://" names the storage account's container; the launch itself goes to Azure ML.
    core.handle_object(container, path, read, settings, scheme="blob", write=write)


app = None
if _func is not None:
    # Anonymous at the function level: Entra ID authentication happens in front of it.
    app = _func.FunctionApp(http_auth_level=_func.AuthLevel.ANONYMOUS)
    app.function_name("launch_http")(app.route(route="launch", methods=["POST"])(launch_http))
    blob_trigger = app.blob_trigger(
        arg_name="blob", path=f"{SPEC_CONTAINER}/specs/{{name}}", connection="GENAI_STORAGE"
    )
    rejection_output = app.blob_output(
        arg_name="rejection", path=f"{SPEC_CONTAINER}/specs/{{name}}.rejected.json",
        connection="GENAI_STORAGE",
    )
    app.function_name("launch_blob")(rejection_output(blob_trigger(launch_blob)))
