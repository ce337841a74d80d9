"""The launcher core: settings, parsing, launch, error policy, JSON logs."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import ClassVar

import pytest

from genai_cloud.errors import ProviderError, SpecError
from genai_cloud.serverless import core


def test_importing_the_handlers_stays_light():
    code = (
        "import sys, genai_cloud.serverless.aws_lambda, genai_cloud.serverless.core;"
        "heavy = [m for m in ('torch', 'transformers', 'boto3', 'pydantic') if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_settings_from_env_fill_only_missing_fields(env):
    env.setenv("GENAI_AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/exec")
    env.setenv("GENAI_AWS_BUCKET", "stack-bucket")
    env.setenv("GENAI_AWS_INTER_CONTAINER_ENCRYPTION", "true")
    settings = core.Settings.from_env("sagemaker")
    assert settings.provider == "fake" and settings.allowed_providers == ("fake",)
    raw = {"name": "x", "aws": {"bucket": "my-own-bucket"}}
    merged = core.apply_defaults(raw, settings.defaults)
    assert merged["aws"] == {
        "bucket": "my-own-bucket",  # the spec's own value wins
        "role_arn": "arn:aws:iam::123456789012:role/exec",
        "inter_container_encryption": True,
    }
    assert raw == {"name": "x", "aws": {"bucket": "my-own-bucket"}}  # not mutated


def test_bad_boolean_setting_names_the_variable(env):
    env.setenv("GENAI_AWS_INTER_CONTAINER_ENCRYPTION", "maybe")
    with pytest.raises(ProviderError, match="GENAI_AWS_INTER_CONTAINER_ENCRYPTION"):
        core.Settings.from_env("sagemaker")


def test_parse_document_json_yaml_and_errors():
    assert core.parse_document('{"name": "a"}', "t") == {"name": "a"}
    assert core.parse_document("name: a\ntask: finetune\n", "t") == {
        "name": "a",
        "task": "finetune",
    }
    with pytest.raises(SpecError, match=r"t:2: not valid YAML"):
        core.parse_document("name: a\n  bad: [\n", "t")
    with pytest.raises(SpecError, match="must be a mapping"):
        core.parse_document("- 1\n- 2\n", "t")
    with pytest.raises(SpecError, match="at most"):
        core.parse_document(b"x" * (core.MAX_SPEC_BYTES + 1), "t")
    with pytest.raises(SpecError, match="not UTF-8"):
        core.parse_document(b"name: \xff\n", "t")


def test_envelope_carries_spec_text_and_provider():
    spec, provider = core.split_envelope({"spec": "name: a\n", "provider": "vertex"}, "t")
    assert spec == {"name": "a"} and provider == "vertex"
    with pytest.raises(SpecError) as info:
        core.split_envelope({"spec": {}, "region": "x"}, "t")
    assert info.value.errors == ["region: unknown request field; valid: spec, provider"]


def test_launch_is_idempotent_and_logs_json(env, fake_provider, spec_dict, capsys, parse_logs):
    settings = core.Settings.from_env("sagemaker")
    first = core.launch(spec_dict, settings, source="unit")
    second = core.launch(spec_dict, settings, source="unit")
    assert first["created"] is True and second["created"] is False
    assert first["job_name"] == second["job_name"] and first["job_name"].startswith("genai-unit-")
    assert len(fake_provider.jobs) == 1 and first["state"] == "pending"
    logs = parse_logs(capsys.readouterr().out)
    assert [e["message"] for e in logs] == ["job launched", "job already exists"]
    assert all(e["level"] == "INFO" and e["job_name"] == first["job_name"] for e in logs)


def test_disallowed_and_local_providers_are_refused(env, fake_provider, spec_dict):
    settings = core.Settings.from_env("sagemaker")
    with pytest.raises(ProviderError, match="not allowed by this function; allowed: fake"):
        core.launch(spec_dict, settings, source="unit", provider="local")
    env.setenv("GENAI_ALLOWED_PROVIDERS", "fake,local")
    with pytest.raises(ProviderError, match="allowed: fake "):  # 'local' never runs in a function
        core.launch(spec_dict, core.Settings.from_env("x"), source="unit", provider="local")


def test_http_answers_every_spec_error_at_once(env, fake_provider):
    status, body = core.handle_http(json.dumps({"name": "bad name!", "task": "nope"}),
                                    core.Settings.from_env("x"))  # fmt: skip
    assert status == 400 and body["error"] == "Invalid job spec"
    assert any(e.startswith("name") for e in body["errors"])
    assert any(e.startswith("task") for e in body["errors"])
    assert fake_provider.calls == 0


def test_http_created_then_existing(env, fake_provider, spec_dict):
    settings = core.Settings.from_env("x")
    assert core.handle_http(json.dumps(spec_dict), settings)[0] == 201
    assert core.handle_http(json.dumps({"spec": spec_dict}), settings)[0] == 200


class Throttled(Exception):
    response: ClassVar[dict] = {
        "Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}
    }


def test_transient_errors_propagate_for_retry_but_http_gets_503(env, fake_provider, spec_dict):
    settings = core.Settings.from_env("x")
    fake_provider.submit_error = Throttled()
    with pytest.raises(Throttled):
        core.handle_document(spec_dict, settings, source="invoke")
    status, body = core.handle_http(spec_dict, settings)
    assert status == 503 and body["code"] == "ThrottlingException"
    # A provider that wraps the cloud error keeps it as __context__: still transient.
    try:
        try:
            raise Throttled()
        except Throttled:
            raise ProviderError("creating job: ThrottlingException") from None
    except ProviderError as wrapped:
        assert core.is_transient(wrapped) and core.http_status(wrapped) == 503


def test_storage_object_user_error_is_reported_not_raised(env, fake_provider, capsys, parse_logs):
    settings = core.Settings.from_env("x")
    result = core.handle_object("b", "specs/bad.yaml", lambda b, k: b"name: [", settings,
                                scheme="s3")  # fmt: skip
    assert (
        result["error"] == "Invalid job spec" and "s3://b/specs/bad.yaml:1" in result["errors"][0]
    )
    skipped = core.handle_object("b", "data/train.jsonl", lambda b, k: b"", settings, scheme="s3")
    assert "not a spec file" in skipped["skipped"]
    levels = [e["level"] for e in parse_logs(capsys.readouterr().out)]
    assert levels == ["ERROR", "INFO"]


def test_internal_error_hides_details_but_logs_traceback(env, fake_provider, spec_dict, capsys,
                                                         parse_logs):  # fmt: skip
    fake_provider.submit_error = RuntimeError("secret detail")
    with core.request_context("req-1"):
        status, body = core.handle_http(spec_dict, core.Settings.from_env("x"))
    assert status == 500 and "secret detail" not in json.dumps(body) and "req-1" in body["message"]
    (entry,) = [e for e in parse_logs(capsys.readouterr().out) if e["level"] == "ERROR"]
    assert entry["request_id"] == "req-1" and "RuntimeError: secret detail" in entry["exception"]
