"""infra/aws: cfn-lint clean, the security properties the issue asks for, and a fresh state machine."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

AWS = Path(__file__).resolve().parents[2] / "infra" / "aws"
TEMPLATE = AWS / "template.yaml"


@pytest.fixture(scope="module")
def template() -> dict:
    decode = pytest.importorskip("cfnlint.decode")
    parsed, matches = decode.decode(str(TEMPLATE))
    assert not matches, matches
    return parsed


def _statements(role: dict) -> list[dict]:
    return [s for p in role["Properties"]["Policies"] for s in p["PolicyDocument"]["Statement"]]


def test_cfn_lint_has_no_errors():
    if shutil.which("cfn-lint") is None:
        pytest.skip("cfn-lint is not installed (pip install cfn-lint)")
    done = subprocess.run(["cfn-lint", "--format", "parseable", str(TEMPLATE)],
                          capture_output=True, text=True, check=False)  # fmt: skip
    errors = [line for line in done.stdout.splitlines() if ":E" in line]
    assert not errors, done.stdout


def test_bucket_is_private_encrypted_versioned_and_tls_only(template):
    resources = template["Resources"]
    bucket = resources["Bucket"]["Properties"]
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    (rule,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    assert bucket["VersioningConfiguration"]["Status"] == "Enabled"
    assert "LoggingConfiguration" in bucket
    policy = resources["BucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert any(s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
               for s in policy)  # fmt: skip
    assert resources["Key"]["Properties"]["EnableKeyRotation"] is True


def test_launcher_role_is_least_privilege(template):
    statements = {s["Sid"]: s for s in _statements(template["Resources"]["LauncherRole"])}
    create = statements["CreateOnlyEncryptedJobsWithThePrefix"]
    assert create["Action"] == "sagemaker:CreateTrainingJob"
    assert "training-job/${JobNamePrefix}*" in create["Resource"]["Fn::Sub"]
    condition = create["Condition"]
    assert "sagemaker:VolumeKmsKey" in condition["StringEqualsIfExists"]
    assert "sagemaker:OutputKmsKey" in condition["StringEquals"]
    assert condition["Bool"] == {
        "sagemaker:InterContainerTrafficEncryption": "true",
        # The launcher policy's isolation, unless AllowNoIsolation: IAM enforces it too.
        "sagemaker:NetworkIsolation": {"Fn::If": ["RequiresIsolation", "true",
                                                  {"Ref": "AWS::NoValue"}]},
    }  # fmt: skip


def test_launcher_environment_carries_the_policy_and_may_record_rejections(template):
    variables = template["Resources"]["Launcher"]["Properties"]["Environment"]["Variables"]
    policy = {k: v for k, v in variables.items() if k.startswith("GENAI_POLICY_")}
    assert policy == {
        "GENAI_POLICY_ALLOWED_IMAGES": {"Ref": "AllowedImages"},
        "GENAI_POLICY_ALLOWED_ACCELERATORS": {"Ref": "AllowedAccelerators"},
        "GENAI_POLICY_MAX_NODES": {"Ref": "MaxNodes"},
        "GENAI_POLICY_MAX_BUDGET_USD": {"Ref": "MaxBudgetUsd"},
        "GENAI_POLICY_ALLOW_TRUST_REMOTE_CODE": {"Ref": "AllowTrustRemoteCode"},
        "GENAI_POLICY_ALLOW_CODE_ENV": {"Ref": "AllowCodeEnv"},
        "GENAI_POLICY_ALLOW_NO_ISOLATION": {"Ref": "AllowNoIsolation"},
    }
    defaults = template["Parameters"]
    assert [defaults[p]["Default"] for p in ("AllowTrustRemoteCode", "AllowCodeEnv",
                                             "AllowNoIsolation")] == ["false"] * 3  # fmt: skip
    statements = {s["Sid"]: s for s in _statements(template["Resources"]["LauncherRole"])}
    record = statements["RecordRejections"]
    assert record["Action"] == "s3:PutObject"
    assert record["Resource"]["Fn::Sub"].endswith("/${SpecPrefix}*.rejected.json")
    pass_role = statements["PassOnlyTheExecutionRoleOnlyToSageMaker"]
    assert pass_role["Resource"] == {"Fn::GetAtt": ["ExecutionRole", "Arn"]}
    assert pass_role["Condition"] == {
        "StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}
    }
    # No statement grants "*" except the ones whose services have no resource-level permissions.
    wildcard = [sid for sid, s in statements.items() if s["Resource"] == "*"]
    assert wildcard == ["Tracing"]


def test_execution_role_reads_only_named_secrets(template):
    statements = _statements(template["Resources"]["ExecutionRole"])
    secret = [s for s in statements if isinstance(s, dict) and "Fn::If" in s]
    (branch,) = secret
    assert branch["Fn::If"][1]["Resource"] == {"Ref": "SecretArns"}


def _mask(text: str) -> str:
    text = re.sub(r"bundle-[0-9a-f]{16}", "bundle-<hash>", text)
    return re.sub(r"\b[0-9a-f]{10}\b", "<key>", text)


def test_state_machine_is_the_rendered_definition():
    spec = importlib.util.spec_from_file_location(
        "render_statemachine", AWS / "render_statemachine.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text, _ = module.render()
    # The job key and bundle name hash job_templates/, which changes as recipes evolve; they are
    # masked here (render_statemachine.py --check compares them exactly, before a release).
    checked_in = (AWS / "statemachine.asl.json").read_text()
    assert _mask(checked_in) == _mask(text), "stale: run python infra/aws/render_statemachine.py"
    definition = json.loads(text)
    task = definition["States"][definition["StartAt"]]
    assert task["Resource"] == "arn:aws:states:::sagemaker:createTrainingJob.sync"
    assert task["Parameters"]["RoleArn"] == "${ExecutionRoleArn}"
    assert task["Parameters"]["TrainingJobName"].startswith("genai-")  # matches JobNamePrefix


def test_state_machine_parameters_pass_botocore_validation():
    botocore = pytest.importorskip("botocore.session")
    from botocore.validate import ParamValidator

    definition = json.loads((AWS / "statemachine.asl.json").read_text())
    text = json.dumps(definition["States"]["Train"]["Parameters"])
    for variable, value in {"${Region}": "us-east-1", "${BucketName}": "stack-bucket",
                            "${ExecutionRoleArn}": "arn:aws:iam::123456789012:role/genai-exec",
                            "${KmsKeyArn}": "arn:aws:kms:us-east-1:123456789012:key/k"}.items():  # fmt: skip
        text = text.replace(variable, value)
    params = json.loads(text)
    model = botocore.get_session().get_service_model("sagemaker")
    report = ParamValidator().validate(
        params, model.operation_model("CreateTrainingJob").input_shape
    )
    assert not report.has_errors(), report.generate_report()
