"""Fixtures for the serverless launchers: an in-memory provider and a clean environment."""

from __future__ import annotations

import json
from typing import ClassVar

import pytest

from genai_cloud.providers import base
from genai_cloud.providers.base import JobHandle, JobState, JobStatus, Provider

GENAI_VARS = ("GENAI_PROVIDER", "GENAI_ALLOWED_PROVIDERS", "GENAI_SPEC_PREFIX",
              "GENAI_SPEC_CONTAINER")  # fmt: skip


class FakeProvider(Provider):
    """Describe-or-create over a dict shared by all instances (the registry makes new ones)."""

    name = "fake"
    jobs: ClassVar[dict[str, dict]] = {}
    submit_error: Exception | None = None
    calls = 0

    def render(self, plan):
        return {"name": plan.job_name, "spec": plan.spec.model_dump(mode="json")}

    def submit(self, plan):
        FakeProvider.calls += 1
        if FakeProvider.submit_error is not None:
            raise FakeProvider.submit_error
        created = plan.job_name not in self.jobs
        self.jobs.setdefault(plan.job_name, self.render(plan))
        return JobHandle("fake", plan.job_name, plan.job_name, created=created)

    def status(self, job_id):
        return JobStatus(job_id, JobState.PENDING, "Queued")


@pytest.fixture
def fake_provider(monkeypatch):
    monkeypatch.setitem(base._REGISTRY, "fake", f"{__name__}:FakeProvider")
    FakeProvider.jobs = {}
    FakeProvider.submit_error = None
    FakeProvider.calls = 0
    return FakeProvider


@pytest.fixture
def env(monkeypatch):
    """A clean launcher environment: provider ``fake``; returns monkeypatch to set more."""
    import os

    for var in list(os.environ):
        if var.startswith("GENAI_"):
            monkeypatch.delenv(var)
    monkeypatch.setenv("GENAI_PROVIDER", "fake")
    return monkeypatch


@pytest.fixture
def spec_dict():
    return {
        "name": "genai-unit",
        "model": {"name_or_path": "gpt2"},
        "data": {"train": "s3://bucket/data/train.jsonl"},
    }


def log_lines(text: str) -> list[dict]:
    """Every stdout line must be one JSON object."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture
def parse_logs():
    return log_lines
