"""The launcher policy: every red-team spec of issue 14 is refused by every launcher and entry
(storage event and HTTP), naming its field; storage refusals are written beside the spec."""

from __future__ import annotations

import copy
import json
from types import SimpleNamespace

import boto3
import pytest
import yaml
from moto import mock_aws

from genai_cloud.errors import ProviderError
from genai_cloud.serverless import aws_lambda, azure_function, core, gcp_function
from genai_cloud.serverless.policy import LaunchPolicy, is_code_env

BUCKET = "genai-stack-bucket"
ROLE = "arn:aws:iam::123456789012:role/genai-execution"
GOOD = {"name": "genai-policy", "model": {"name_or_path": f"s3://{BUCKET}/models/gpt2"},
        "data": {"train": f"s3://{BUCKET}/data/train.jsonl"}}  # fmt: skip


def with_(path: str, value):
    spec = copy.deepcopy(GOOD)
    *parents, last = path.split(".")
    node = spec
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return spec


# (id, spec, the field its refusal names)
RED_TEAM = [
    ("trust-remote-code", with_("model.trust_remote_code", True), "model.trust_remote_code"),
    ("ld-preload", with_("env.LD_PRELOAD", "/tmp/evil.so"), "env.LD_PRELOAD"),
    ("pythonpath", with_("env.PYTHONPATH", "/tmp/evil"), "env.PYTHONPATH"),
    ("pip-index", with_("env.PIP_INDEX_URL", "https://evil.example/simple"), "env.PIP_INDEX_URL"),
    ("toolkit-program", with_("env.SAGEMAKER_PROGRAM", "evil.py"), "env.SAGEMAKER_PROGRAM"),
    ("no-isolation", with_("aws.network_isolation", False), "aws.network_isolation"),
    ("foreign-aws-image", with_("aws.image_uri", "evil.example/train:1"), "aws.image_uri"),
    ("foreign-gcp-image", with_("gcp.image_uri", "evil.example/train:1"), "gcp.image_uri"),
    ("foreign-azure-image", with_("azure.image", "evil.azurecr.io/x:1"), "azure.image"),
    ("accelerator", with_("compute.accelerator", "H100"), "compute.accelerator"),
    ("fallback-accelerator", with_("compute.fallback", [{"accelerator": "H200"}]),
     "compute.fallback.0.accelerator"),
    ("fallback-provider", with_("compute.fallback", [{"provider": "vertex"}]),
     "compute.fallback.0.provider"),
    ("nodes", with_("compute.nodes", 8), "compute.nodes"),
    ("budget", with_("budget.max_usd", 5000), "budget.max_usd"),
    ("other-role", with_("aws.role_arn", "arn:aws:iam::123456789012:role/admin"), "aws.role_arn"),
]  # fmt: skip


@pytest.fixture
def policy_env(env, fake_provider):
    env.setenv("GENAI_ALLOWED_PROVIDERS", "fake")
    env.setenv("GENAI_AWS_ROLE_ARN", ROLE)
    env.setenv("GENAI_POLICY_ALLOWED_ACCELERATORS", "cpu,T4")
    env.setenv("GENAI_POLICY_ALLOWED_IMAGES", "763104351884.dkr.ecr.us-east-1.amazonaws.com/*")
    return env


@pytest.fixture
def s3(policy_env, monkeypatch):
    for var, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():  # fmt: skip
        monkeypatch.setenv(var, value)
    aws_lambda._s3_client.cache_clear()
    with mock_aws():
        client = boto3.client("s3")
        client.create_bucket(Bucket=BUCKET)
        yield client
    aws_lambda._s3_client.cache_clear()


def s3_event(key: str) -> dict:
    return {"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                         "s3": {"bucket": {"name": BUCKET}, "object": {"key": key}}}]}  # fmt: skip


def refusal_names(body: dict, field: str) -> bool:
    return body.get("error") == "Refused by the launcher's policy" and any(
        line.startswith(f"{field}: ") for line in body["errors"])


# ---- each launcher, each entry ---------------------------------------------------------------


def aws_s3(spec: dict, s3) -> dict:
    s3.put_object(Bucket=BUCKET, Key="specs/job.yaml", Body=yaml.safe_dump(spec).encode())
    (result,) = aws_lambda.handler(s3_event("specs/job.yaml"), None)["results"]
    if "error" in result:
        record = s3.get_object(Bucket=BUCKET, Key="specs/job.yaml.rejected.json")["Body"].read()
        assert json.loads(record) == result  # what the dropper reads beside the spec
    return result


def aws_http(spec: dict, s3) -> dict:
    answer = aws_lambda.handler({"httpMethod": "POST", "body": json.dumps(spec)}, None)
    body = json.loads(answer["body"])
    assert answer["statusCode"] == (403 if "error" in body else 201)
    return body


def gcp_gcs(spec: dict, monkeypatch) -> dict:
    written = {}
    monkeypatch.setattr(gcp_function, "_read_gcs", lambda b, n: yaml.safe_dump(spec).encode())
    monkeypatch.setattr(gcp_function, "_write_gcs", lambda b, n, d: written.update({n: d}))
    result = gcp_function.launch_gcs(_CloudEvent({"bucket": "b", "name": "specs/job.yaml",
                                                  "size": "200"}))  # fmt: skip
    if "error" in result:
        assert json.loads(written["specs/job.yaml.rejected.json"]) == result
    return result


class _CloudEvent(dict):
    def __init__(self, data):
        super().__init__(id="evt", type=gcp_function.FINALIZED)
        self.data = data


def gcp_http(spec: dict, monkeypatch) -> dict:
    request = SimpleNamespace(method="POST", headers={}, args={},
                              get_data=lambda: json.dumps(spec).encode())  # fmt: skip
    text, status, _ = gcp_function.launch_http(request)
    body = json.loads(text)
    assert status == (403 if "error" in body else 201)
    return body


def azure_http(spec: dict, monkeypatch) -> dict:
    func = pytest.importorskip("azure.functions")
    request = func.HttpRequest("POST", "/api/launch", body=json.dumps(spec).encode(),
                               headers={"X-MS-CLIENT-PRINCIPAL-ID": "user-1"})  # fmt: skip
    answer = azure_function.launch_http(request)
    body = json.loads(answer.get_body())
    assert answer.status_code == (403 if "error" in body else 201)
    return body


def azure_blob(spec: dict, monkeypatch) -> dict:
    class Blob:
        name = "genai/specs/job.json"
        length = 200

        def read(self):
            return json.dumps(spec).encode()

    class Out:
        value = None

        def set(self, value):
            Out.value = value

    azure_function.launch_blob(Blob(), Out())
    return json.loads(Out.value) if Out.value else {"launched": True}


STORAGE = {"aws-s3": aws_s3, "aws-http": aws_http}
OTHERS = {"gcp-gcs": gcp_gcs, "gcp-http": gcp_http, "azure-http": azure_http,
          "azure-blob": azure_blob}  # fmt: skip


@pytest.mark.parametrize("entry", sorted(STORAGE))
def test_aws_launcher_refuses_each_red_team_spec(s3, entry):
    missed = {case: body for case, spec, field in RED_TEAM
              if not refusal_names(body := STORAGE[entry](spec, s3), field)}  # fmt: skip
    assert not missed, missed


@pytest.mark.parametrize("entry", sorted(OTHERS))
def test_gcp_and_azure_launchers_refuse_each_red_team_spec(policy_env, monkeypatch, entry):
    missed = {case: body for case, spec, field in RED_TEAM
              if not refusal_names(body := OTHERS[entry](spec, monkeypatch), field)}  # fmt: skip
    assert not missed, missed


@pytest.mark.parametrize("entry", sorted(OTHERS))
def test_a_spec_within_the_policy_launches(policy_env, monkeypatch, entry, fake_provider):
    body = OTHERS[entry](GOOD, monkeypatch)
    assert "error" not in body, body
    (job,) = fake_provider.jobs.values()
    # The policy's defaults were filled in: isolation on, the budget cap.
    assert job["spec"]["aws"]["network_isolation"] is True
    assert job["spec"]["budget"]["max_usd"] == 100


def test_every_problem_is_reported_at_once(policy_env):
    spec = with_("env", {"LD_PRELOAD": "x", "PYTHONHOME": "y"})
    spec["model"]["trust_remote_code"] = True
    status, body = core.handle_http(json.dumps(spec), core.Settings.from_env("fake"))
    assert status == 403
    # Isolation is not among them: the spec left it unset, so the policy turned it on.
    assert [line.split(":")[0] for line in body["errors"]] == [
        "model.trust_remote_code", "env.LD_PRELOAD", "env.PYTHONHOME"]


def test_a_policy_can_allow_what_it_refuses_by_default(policy_env, fake_provider):
    policy_env.setenv("GENAI_POLICY_ALLOW_TRUST_REMOTE_CODE", "true")
    policy_env.setenv("GENAI_POLICY_ALLOW_CODE_ENV", "true")
    policy_env.setenv("GENAI_POLICY_ALLOW_NO_ISOLATION", "true")
    policy_env.setenv("GENAI_POLICY_MAX_NODES", "8")
    spec = with_("env.PYTHONPATH", "/opt/extra")
    spec["model"]["trust_remote_code"] = True
    spec["aws"] = {"network_isolation": False}
    spec["compute"] = {"nodes": 8}
    status, body = core.handle_http(json.dumps(spec), core.Settings.from_env("fake"))
    assert status == 201, body


def test_a_rejection_record_is_never_read_as_a_spec(s3):
    s3.put_object(Bucket=BUCKET, Key="specs/job.yaml.rejected.json", Body=b'{"error": "x"}')
    (result,) = aws_lambda.handler(s3_event("specs/job.yaml.rejected.json"), None)["results"]
    assert result["skipped"] == "a rejection record"


@pytest.mark.parametrize("var, value", [("GENAI_POLICY_MAX_NODES", "many"),
                                        ("GENAI_POLICY_MAX_BUDGET_USD", "-1"),
                                        ("GENAI_POLICY_ALLOW_CODE_ENV", "perhaps"),
                                        ("GENAI_POLICY_ALLOWED_ACCELERATORS", "B200")])
def test_a_misconfigured_policy_names_its_variable(var, value):
    with pytest.raises(ProviderError, match=var):
        LaunchPolicy.from_env({var: value})


@pytest.mark.parametrize("name, code", [("LD_LIBRARY_PATH", True), ("PYTHONSTARTUP", True),
                                        ("pip_extra_index_url", True), ("https_proxy", True),
                                        ("HF_HOME", False), ("OMP_NUM_THREADS", False),
                                        ("TOKENIZERS_PARALLELISM", False)])
def test_code_loading_env_names(name, code):
    assert is_code_env(name) is code


@pytest.fixture
def unisolated(policy_env, fake_provider, monkeypatch):
    """The launcher's provider isolates networks, not jobs (as Vertex AI does)."""
    from genai_cloud.providers.base import Feature
    from genai_cloud.providers.vertex import VertexProvider

    monkeypatch.setattr(fake_provider, "unsupported", VertexProvider.unsupported)
    return VertexProvider.unsupported[Feature.NETWORK_ISOLATION]


def test_without_per_job_isolation_a_launch_says_so_instead_of_isolating(
        unisolated, fake_provider, capsys, parse_logs):  # fmt: skip
    status, body = core.handle_http(json.dumps(GOOD), core.Settings.from_env("fake"))
    assert status == 201, body
    (job,) = fake_provider.jobs.values()
    assert job["spec"]["aws"]["network_isolation"] is False  # not filled in: it would not hold
    logs = parse_logs(capsys.readouterr().out)
    (warning,) = [line for line in logs if line["message"] == "job not network-isolated"]
    assert (warning["level"], warning["reason"]) == ("WARNING", unisolated)


def test_without_per_job_isolation_asking_for_it_is_refused_with_the_reason(unisolated,
                                                                            fake_provider):  # fmt: skip
    status, body = core.handle_http(json.dumps(with_("aws.network_isolation", True)),
                                    core.Settings.from_env("fake"))  # fmt: skip
    assert status == 403 and not fake_provider.jobs
    assert body["errors"] == [("aws.network_isolation: this launcher cannot isolate a job: "
                               f"{unisolated}; leave it unset")]  # fmt: skip


def test_a_policy_that_allows_no_isolation_does_not_warn_about_it(unisolated, policy_env,
                                                                   capsys, parse_logs):  # fmt: skip
    policy_env.setenv("GENAI_POLICY_ALLOW_NO_ISOLATION", "true")
    status, _ = core.handle_http(json.dumps(GOOD), core.Settings.from_env("fake"))
    assert status == 201
    messages = [line["message"] for line in parse_logs(capsys.readouterr().out)]
    assert "job launched" in messages  # the logs were read: the absence below means something
    assert "job not network-isolated" not in messages
