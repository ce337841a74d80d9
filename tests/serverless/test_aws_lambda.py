"""The Lambda handler against moto: S3 events, API Gateway and direct invocations."""

from __future__ import annotations

import base64
import json
from types import SimpleNamespace

import boto3
import pytest
import yaml
from moto import mock_aws

from genai_cloud.serverless import aws_lambda

BUCKET = "genai-stack-bucket"
ROLE = "arn:aws:iam::123456789012:role/genai-execution"
# An isolated job cannot pip-install the bundle's lock: it runs on an image that has it, which
# the deployment's policy allows (GENAI_POLICY_ALLOWED_IMAGES, the SAM template's parameter).
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/genai-job:2026-12"


@pytest.fixture
def aws(env, monkeypatch):
    """moto S3 + SageMaker, and the environment the SAM template gives the function."""
    for var, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"}.items():  # fmt: skip
        monkeypatch.setenv(var, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    env.setenv("GENAI_PROVIDER", "sagemaker")
    env.setenv("GENAI_AWS_ROLE_ARN", ROLE)
    env.setenv("GENAI_AWS_BUCKET", BUCKET)
    env.setenv("GENAI_AWS_INTER_CONTAINER_ENCRYPTION", "true")
    env.setenv("GENAI_POLICY_ALLOWED_IMAGES", IMAGE)
    aws_lambda._s3_client.cache_clear()
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        yield SimpleNamespace(s3=s3, sagemaker=boto3.client("sagemaker"))
    aws_lambda._s3_client.cache_clear()


def s3_event(key: str, bucket: str = BUCKET) -> dict:
    """The shape S3 delivers (keys URL-encoded, spaces as '+')."""
    return {"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2026-01-01T00:00:00.000Z", "eventName": "ObjectCreated:Put",
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "SpecUploaded",
               "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
               "object": {"key": key, "size": 120, "eTag": "0123", "sequencer": "00A"}},
    }]}  # fmt: skip


def spec(name: str = "genai-lambda-demo") -> dict:
    # The model is staged in S3 and the image has the job's packages: the launcher's policy runs
    # jobs network-isolated (no hub, no pip).
    return {"name": name, "model": {"name_or_path": f"s3://{BUCKET}/models/gpt2"},
            "data": {"train": f"s3://{BUCKET}/data/train.jsonl"},
            "compute": {"accelerator": "A10G"}, "aws": {"image_uri": IMAGE}}  # fmt: skip


def context(request_id: str = "req-123"):
    return SimpleNamespace(aws_request_id=request_id)


def test_s3_event_launches_exactly_one_job_even_when_delivered_twice(aws, capsys, parse_logs):
    aws.s3.put_object(Bucket=BUCKET, Key="specs/demo run.yaml", Body=yaml.safe_dump(spec()))
    event = s3_event("specs/demo+run.yaml")

    first = aws_lambda.handler(event, context())
    second = aws_lambda.handler(event, context())  # Lambda's retry of an async invocation

    (one,), (two,) = first["results"], second["results"]
    assert one["created"] is True and two["created"] is False
    assert (
        one["job_name"] == two["job_name"] and one["source"] == f"s3://{BUCKET}/specs/demo run.yaml"
    )
    jobs = aws.sagemaker.list_training_jobs()["TrainingJobSummaries"]
    assert [j["TrainingJobName"] for j in jobs] == [one["job_name"]]
    described = aws.sagemaker.describe_training_job(TrainingJobName=one["job_name"])
    assert described["RoleArn"] == ROLE  # the stack's default filled in
    assert described["EnableInterContainerTrafficEncryption"] is True
    assert described["ResourceConfig"]["InstanceType"].startswith("ml.g5.")
    bundles = aws.s3.list_objects_v2(Bucket=BUCKET, Prefix="genai-cloud/bundles/")["Contents"]
    assert len(bundles) == 1
    logs = parse_logs(capsys.readouterr().out)
    # The launcher says, once per delivery, that the image is not one of the runtime table's.
    warnings = [e for e in logs if e["message"] == "spec warning"]
    assert len(warnings) == 2 and "not in the runtime table" in json.dumps(warnings[0])
    assert [e["message"] for e in logs if e not in warnings] == ["job launched", "job already exists"]
    assert {e["request_id"] for e in logs} == {"req-123"}


def test_invalid_spec_in_bucket_is_reported_and_not_retried(aws):
    aws.s3.put_object(Bucket=BUCKET, Key="specs/bad.yaml", Body=b"name: genai-x\ntask: dance\n")
    aws.s3.put_object(Bucket=BUCKET, Key="specs/readme.txt", Body=b"not a spec")
    event = s3_event("specs/bad.yaml")
    event["Records"] += s3_event("specs/readme.txt")["Records"]
    bad, skipped = aws_lambda.handler(event, context())["results"]
    assert bad["error"] == "Invalid job spec" and any("task" in e for e in bad["errors"])
    assert "not a spec file" in skipped["skipped"]
    assert aws.sagemaker.list_training_jobs()["TrainingJobSummaries"] == []


def test_deleted_spec_is_reported(aws):
    (result,) = aws_lambda.handler(s3_event("specs/gone.yaml"), context())["results"]
    assert result["error"] == "Spec not found"


def test_s3_test_event_is_ignored(aws):
    assert aws_lambda.handler({"Service": "Amazon S3", "Event": "s3:TestEvent",
                               "Bucket": BUCKET}, context()) == {"results": []}  # fmt: skip


def test_api_gateway_rest_and_http_api(aws):
    body = json.dumps({"spec": spec("genai-api-demo"), "provider": "sagemaker"})
    rest = aws_lambda.handler({"httpMethod": "POST", "body": body, "isBase64Encoded": False},
                              context())  # fmt: skip
    assert rest["statusCode"] == 201 and rest["headers"]["Content-Type"] == "application/json"
    http_api = {"version": "2.0", "requestContext": {"http": {"method": "POST"}},
                "body": base64.b64encode(yaml.safe_dump(spec("genai-api-demo")).encode()).decode(),
                "isBase64Encoded": True}  # fmt: skip
    again = aws_lambda.handler(http_api, context())
    assert again["statusCode"] == 200
    assert json.loads(again["body"])["job_name"] == json.loads(rest["body"])["job_name"]
    assert len(aws.sagemaker.list_training_jobs()["TrainingJobSummaries"]) == 1


def test_api_gateway_bad_spec_is_400_with_every_error(aws):
    answer = aws_lambda.handler({"httpMethod": "POST", "body": json.dumps({"name": "x y",
                                 "model": {}, "compute": {"accelerator": "Z80"}})}, context())  # fmt: skip
    body = json.loads(answer["body"])
    assert answer["statusCode"] == 400 and body["error"] == "Invalid job spec"
    paths = {e.split(" ")[0].rstrip(":") for e in body["errors"]}
    assert {"name", "model.name_or_path", "compute.accelerator"} <= paths
    get = aws_lambda.handler({"httpMethod": "GET"}, context())
    assert get["statusCode"] == 405


def test_direct_invocation_returns_status_code(aws):
    answer = aws_lambda.handler({"spec": spec("genai-direct")}, context())
    assert answer["statusCode"] == 201 and answer["job_name"].startswith("genai-direct-")
    refused = aws_lambda.handler({"spec": spec("genai-direct"), "provider": "local"}, context())
    assert refused["statusCode"] == 400 and "not allowed" in refused["message"]
