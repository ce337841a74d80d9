"""Providers: one module each, behind one small interface (see ``base.py``)."""

from .base import (
    Feature,
    JobHandle,
    JobState,
    JobStatus,
    Provider,
    get_provider,
    provider_names,
    register,
    required_features,
)

__all__ = [
    "Feature",
    "JobHandle",
    "JobState",
    "JobStatus",
    "Provider",
    "get_provider",
    "provider_names",
    "register",
    "required_features",
]
