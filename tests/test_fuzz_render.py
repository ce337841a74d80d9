"""Fuzzed spec documents through load -> plan -> render for every provider: never a traceback
(only GenaiCloudError subclasses), and every error names the field path it is about.

The documents are ``fuzz_specs``' valid specs and mutations, plus the same specs made
renderable for one provider (its URIs and section filled in) and then mutated inside the
provider sections, so that render's own checks are reached, not only the spec's.
``benchmarks/fuzz_specs.py`` runs ``check_render`` over 10,000 documents.
"""

from __future__ import annotations

import re
from pathlib import Path

from fuzz_specs import JUNK, KEYS, documents, valid_specs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genai_cloud.bundle import Bundle
from genai_cloud.errors import GenaiCloudError, SpecError
from genai_cloud.loading import load_spec
from genai_cloud.plan import make_plan
from genai_cloud.providers import get_provider
from genai_cloud.spec import JobSpec

PROVIDERS = ("sagemaker", "vertex", "azureml")
FAKE_BUNDLE = Bundle(data=b"", sha256="ab" * 32)  # render needs its name, not 33 ms of tar.gz
ROLE = "arn:aws:iam::123456789012:role/genai"
RENDERABLE = {
    "sagemaker": {"data": "s3://bkt/train.jsonl", "output": "s3://bkt/out",
                  "section": ("aws", {"role_arn": ROLE, "region": "us-east-1"})},
    "vertex": {"data": "gs://bkt/train.jsonl", "output": "gs://bkt/out",
               "section": ("gcp", {"project": "p", "region": "us-central1"})},
    "azureml": {"data": "azureml://datastores/ds/paths/train.jsonl", "output": None,
                "section": ("azure", {"compute": "gpu-cluster"})},
}  # fmt: skip
PROVIDER_KEYS = {
    "aws": ["role_arn", "region", "bucket", "image_uri", "input_mode", "kms_key_id", "subnets",
            "security_group_ids", "network_isolation", "volume_kms_key_id"],
    "gcp": ["project", "region", "staging_bucket", "service_account", "network", "strategy",
            "max_wait", "tpu_topology", "kms_key_name", "image_uri"],
    "azure": ["compute", "environment", "image", "identity", "job_tier", "workspace",
              "experiment_name"],
    "compute": ["accelerator", "count", "nodes", "spot", "instance_type", "region",
                "volume_gb", "max_runtime", "fallback"],
}  # fmt: skip
# A field path: a top-level spec field, then dotted names or list indexes.
_KEY_AND_LINE = re.compile(r"^(\(top level\)|.+?) \(line \d+\): ")
_PATH = re.compile(r"\b(" + "|".join(JobSpec.model_fields) + r")(\.[\w-]+)*\b")


@st.composite
def provider_documents(draw) -> dict:
    """A spec made renderable for one provider, then maybe broken in its provider parts."""
    provider = draw(st.sampled_from(PROVIDERS))
    doc = draw(valid_specs())
    parts = RENDERABLE[provider]
    doc["data"]["train"] = parts["data"]
    doc["model"]["name_or_path"] = parts["data"].rsplit("/", 1)[0] + "/model"
    if parts["output"]:
        doc["output"] = {"uri": parts["output"]}
    section, values = parts["section"]
    doc[section] = dict(values)
    for _ in range(draw(st.integers(0, 3))):
        where = draw(st.sampled_from(sorted(PROVIDER_KEYS)))
        key = draw(st.sampled_from(PROVIDER_KEYS[where] + KEYS[:3]))
        node = doc.setdefault(where, {})
        value = draw(JUNK | st.sampled_from(["tpu-v5e", "H100", "4x4", "SPOT", "FLEX_START",
                                             "spot", "managed", "ml.p5.48xlarge"]))  # fmt: skip
        node[key] = value if draw(st.booleans()) else [value]
    return doc


def names_a_field(message: str) -> bool:
    return bool(_PATH.search(message))


def check_render(doc: dict, provider: str) -> str:
    """One document (a mapping, or a spec file's Path) on one provider: 'valid', 'spec'
    (SpecError) or 'provider' (refused by
    plan/render). Raises AssertionError for an error without a field path; anything that is
    not a GenaiCloudError propagates (that is a traceback for the user)."""
    try:
        spec = load_spec(doc)
    except SpecError as exc:
        # A spec file's problems may name the file and line, or any key (even an unknown
        # one) with its line, instead of a known field.
        in_file = isinstance(doc, Path)
        roots = () if in_file else tuple(f"{key}{end}" for key in doc for end in ".: ")
        bad = [line for line in exc.errors if not names_a_field(line) and not line.startswith(roots)
               and not (in_file and (str(doc) in line or _KEY_AND_LINE.match(line)))]
        assert not bad, f"SpecError lines without a field path: {bad}"
        return "spec"
    try:
        plan = make_plan(spec, provider)
        plan.__dict__["bundle"] = FAKE_BUNDLE
        get_provider(plan.provider).render(plan)
    except GenaiCloudError as exc:
        assert names_a_field(exc.message), f"{type(exc).__name__} without a field path: {exc}"
        return "provider"
    return "valid"


@settings(max_examples=150, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
@given(doc=documents | provider_documents())
def test_fuzzed_specs_render_or_fail_cleanly_on_every_provider(doc):
    for provider in PROVIDERS:
        check_render(doc, provider)


def test_the_generator_reaches_render_on_every_provider():
    """Guard against a fuzzer that only ever exercises the spec loader."""
    outcomes = {p: set() for p in PROVIDERS}

    @settings(max_examples=60, deadline=None, database=None)
    @given(doc=provider_documents())
    def run(doc):
        for provider in PROVIDERS:
            outcomes[provider].add(check_render(doc, provider))

    run()
    for provider, seen in outcomes.items():
        assert {"valid", "provider"} <= seen, (provider, seen)
