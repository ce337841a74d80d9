"""genai-cloud: one JobSpec, run locally or on SageMaker, Vertex AI and Azure ML.

Importing this package stays light: torch, transformers and the cloud SDKs load only when a
function that needs them runs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# public name -> module that defines it (imported on first access)
_EXPORTS = {
    "JobSpec": "genai_cloud.spec",
    "load_spec": "genai_cloud.loading",
    "json_schema": "genai_cloud.spec",
    "Plan": "genai_cloud.plan",
    "make_plan": "genai_cloud.plan",
    "build_bundle": "genai_cloud.bundle",
    "run_local": "genai_cloud.providers.local",
    "get_provider": "genai_cloud.providers",
    "provider_names": "genai_cloud.providers",
    "Feature": "genai_cloud.providers",
    "JobState": "genai_cloud.providers",
    "render": "genai_cloud.api",
    "submit": "genai_cloud.api",
    "status": "genai_cloud.api",
    "cancel": "genai_cloud.api",
    "GenaiCloudError": "genai_cloud.errors",
    "SpecError": "genai_cloud.errors",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'genai_cloud' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:  # pragma: no cover
    from .api import cancel, render, status, submit
    from .bundle import build_bundle
    from .errors import GenaiCloudError, SpecError
    from .plan import Plan, make_plan
    from .providers import Feature, JobState, get_provider, provider_names
    from .providers.local import run_local
    from .loading import load_spec
    from .spec import JobSpec, json_schema
