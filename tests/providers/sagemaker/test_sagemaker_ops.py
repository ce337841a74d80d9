"""SageMaker submit / status / logs / cancel / list against moto, and botocore's Stubber where moto
5.2 differs from the real API (duplicate names, StopTrainingJob, Environment)."""

from __future__ import annotations

import datetime as dt
import json
from types import SimpleNamespace

import boto3
import pytest
from botocore.exceptions import ReadTimeoutError
from botocore.stub import Stubber
from moto import mock_aws
from moto.core.botocore_stubber import MockRawResponse
from moto.core.models import botocore_stubber as moto_send

from genai_cloud.errors import ProviderError
from genai_cloud.loading import load_spec
from genai_cloud.plan import make_plan
from genai_cloud.providers.base import JobState
from genai_cloud.providers.sagemaker import SageMakerProvider
from genai_cloud.providers.sagemaker.ops import LOG_GROUP, to_status

REGION = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/genai-sagemaker"


def make_plan_for(name="sweep", labels=None, secrets=None, env=None, lr=5e-5):
    spec = load_spec({
        "name": name,
        "model": {"name_or_path": "gpt2"},
        "data": {"train": "s3://genai-data/train.jsonl"},
        "training": {"lr": lr},
        "output": {"uri": "s3://genai-out/runs"},
        "aws": {"role_arn": ROLE, "region": REGION},
        "labels": labels or {},
        "secrets": secrets or {},
        "env": env or {},
    })  # fmt: skip
    return make_plan(spec, "sagemaker")


@pytest.fixture
def aws(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    # Retries back off for up to seconds; the tests count attempts, not wait for them.
    monkeypatch.setattr("botocore.retries.standard.ExponentialBackoff.delay_amount",
                        lambda self, context: 0)  # fmt: skip
    with mock_aws():
        boto3.client("s3", region_name=REGION).create_bucket(Bucket="genai-out")
        yield


@pytest.fixture
def provider(aws):
    return SageMakerProvider()


def jobs() -> list[str]:
    answer = boto3.client("sagemaker", region_name=REGION).list_training_jobs()
    return [j["TrainingJobName"] for j in answer["TrainingJobSummaries"]]


# ---- moto -------------------------------------------------------------------------------------


def test_submit_uploads_bundle_and_creates_the_job(provider):
    plan = make_plan_for(labels={"team": "nlp"})
    handle = provider.submit(plan)
    assert handle.created and handle.name == plan.job_name
    assert handle.job_id == f"{REGION}/{plan.job_name}"

    s3 = boto3.client("s3", region_name=REGION)
    key = f"genai-cloud/bundles/{plan.bundle.name}"
    assert s3.get_object(Bucket="genai-out", Key=key)["Body"].read() == plan.bundle.data

    sagemaker = boto3.client("sagemaker", region_name=REGION)
    described = sagemaker.describe_training_job(TrainingJobName=plan.job_name)
    request = provider.render(plan)
    for field in ("RoleArn", "HyperParameters", "ResourceConfig", "OutputDataConfig",
                  "InputDataConfig", "StoppingCondition", "AlgorithmSpecification"):  # fmt: skip
        got = described[field]
        if field == "AlgorithmSpecification":  # moto adds a sample MetricDefinitions list
            got = {k: v for k, v in got.items() if k != "MetricDefinitions"}
        assert got == request[field], field
    tags = sagemaker.list_tags(ResourceArn=described["TrainingJobArn"])["Tags"]
    assert tags == request["Tags"]
    assert json.loads(described["HyperParameters"]["sagemaker_submit_directory"]) == (
        f"s3://genai-out/{key}"
    )


def test_resubmit_is_idempotent_and_skips_the_upload(provider):
    plan = make_plan_for()
    provider.submit(plan)
    puts = []
    s3 = provider.ops.client("s3", REGION)
    s3.meta.events.register("before-call.s3.PutObject", lambda **kw: puts.append(1))
    again = provider.submit(plan)
    assert again.created is False and puts == []
    assert jobs() == [plan.job_name]


def test_status_maps_moto_completed(provider):
    handle = provider.submit(make_plan_for())
    status = provider.status(handle.job_id)
    assert status.state is JobState.SUCCEEDED and status.native_state == "Completed/Completed"
    assert status.details["instance_type"] == "ml.m5.xlarge"


def test_unknown_job_is_a_clear_error(provider):
    with pytest.raises(ProviderError, match="no SageMaker training job named 'nope'"):
        provider.status(f"{REGION}/nope")


def test_logs_read_the_jobs_streams_in_order(provider):
    plan = make_plan_for()
    handle = provider.submit(plan)
    logs = boto3.client("logs", region_name=REGION)
    logs.create_log_group(logGroupName=LOG_GROUP)
    now = int(dt.datetime.now().timestamp() * 1000)
    streams = {
        f"{plan.job_name}/algo-1-1700000000": ["loading spec", "step 10 loss 2.31", "done"],
        "other-job-0123456789/algo-1-1700000000": ["not ours"],
    }
    for stream, lines in streams.items():
        logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=stream)
        logs.put_log_events(logGroupName=LOG_GROUP, logStreamName=stream, logEvents=[
            {"timestamp": now + i, "message": line} for i, line in enumerate(lines)])  # fmt: skip
    assert list(provider.logs(handle.job_id)) == ["loading spec", "step 10 loss 2.31", "done"]
    # The job has ended (moto completes at once): follow drains and returns.
    assert list(provider.logs(handle.job_id, follow=True))[-1] == "done"


def test_follow_polls_until_the_job_ends_without_repeating_lines(provider, monkeypatch):
    plan = make_plan_for()
    handle = provider.submit(plan)
    logs = boto3.client("logs", region_name=REGION)
    stream = f"{plan.job_name}/algo-1-1700000000"
    logs.create_log_group(logGroupName=LOG_GROUP)
    logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=stream)
    now = int(dt.datetime.now().timestamp() * 1000)

    def put(message, offset):
        logs.put_log_events(logGroupName=LOG_GROUP, logStreamName=stream,
                            logEvents=[{"timestamp": now + offset, "message": message}])  # fmt: skip

    put("step 1", 0)
    real_describe, calls = provider.ops.describe, []

    def describe(name, region=None):  # running, running, then done after one more line
        calls.append(name)
        answer = dict(real_describe(name, region))
        if len(calls) <= 3:
            answer.update(TrainingJobStatus="InProgress", SecondaryStatus="Training")
        if len(calls) == 3:
            put("step 2", 1)
        return answer

    monkeypatch.setattr(provider.ops, "describe", describe)
    provider.ops.poll_seconds = 0
    assert list(provider.logs(handle.job_id, follow=True)) == ["step 1", "step 2"]


def test_logs_before_the_job_wrote_any(provider):
    handle = provider.submit(make_plan_for())
    assert list(provider.logs(handle.job_id)) == []


def test_list_filters_by_labels(provider):
    a = provider.submit(make_plan_for("job-a", labels={"team": "nlp", "stage": "dev"}))
    b = provider.submit(make_plan_for("job-b", labels={"team": "vision"}))
    boto3.client("sagemaker", region_name=REGION).create_training_job(
        **{**provider.render(make_plan_for("foreign")), "TrainingJobName": "not-genai-cloud",
           "Tags": [{"Key": "team", "Value": "nlp"}]})  # fmt: skip
    assert [s.details["name"] for s in provider.list({"team": "nlp"}, REGION)] == [a.name]
    assert [s.details["name"] for s in provider.list({"team": "vision"}, REGION)] == [b.name]
    assert provider.list({"team": "nlp", "stage": "prod"}, REGION) == []


def test_secret_resolves_from_secrets_manager_and_never_reaches_the_request(provider):
    from job_templates.secrets import fetch

    value = "hf_s3cr3t-VALUE-123"
    arn = boto3.client("secretsmanager", region_name=REGION).create_secret(
        Name="hf-token", SecretString=value
    )["ARN"]
    assert fetch(arn) == value  # what the entrypoint does at run time

    sent = []
    sagemaker = provider.ops.client("sagemaker", REGION)
    sagemaker.meta.events.register("provide-client-params.sagemaker.CreateTrainingJob",
                                   lambda params, **kw: sent.append(params))  # fmt: skip
    plan = make_plan_for(secrets={"HF_TOKEN": arn}, env={"HF_HUB_OFFLINE": "1"})
    provider.submit(plan)
    assert len(sent) == 1 and sent[0]["Environment"] == {"HF_HUB_OFFLINE": "1"}
    assert value not in json.dumps(sent[0]) and value not in provider.render_native(plan)
    assert json.loads(plan.spec_json)["secrets"] == {"HF_TOKEN": arn}  # travels as a reference


def _refuse_creates(client, failures: int, kind: str = "throttle"):
    """Refuse the first ``failures`` HTTP attempts of CreateTrainingJob with a throttling error,
    or (``timeout``) let them reach moto and lose the answer; count every attempt and every
    create that moto performed.

    botocore runs every before-send handler, moto's included, even after one returned a
    response: a refusal turns moto's handler off until the ``after`` hook below. Both hooks sit
    on the generic "before-send" event, where moto's is, because botocore calls the handlers of
    a more specific event name (before-send.sagemaker.X) before the generic ones. A name moto
    already holds is answered with ResourceInUse, as SageMaker does (moto 5.2 accepts it).
    """
    seen = SimpleNamespace(attempts=0, performed=[])

    def before(request, event_name, **kwargs):
        if not event_name.endswith(".CreateTrainingJob"):
            return None
        seen.attempts += 1
        name = json.loads(request.body)["TrainingJobName"]
        if name in seen.performed:
            moto_send.enabled = False
            return _aws_answer(request, "ResourceInUse", f"training job {name} already exists")
        if seen.attempts > failures:
            seen.performed.append(name)
            return None  # moto answers
        if kind == "timeout":
            moto_send(event_name=event_name, request=request)  # the create happens...
            seen.performed.append(name)
            raise ReadTimeoutError(endpoint_url=request.url)  # ...but its answer is lost
        moto_send.enabled = False  # refused before SageMaker acted
        return _aws_answer(request, "ThrottlingException", "Rate exceeded")

    def after(**kwargs):
        moto_send.enabled = True

    client.meta.events.register_first("before-send", before)
    client.meta.events.register_last("before-send", after)
    return seen


def _aws_answer(request, code: str, message: str):
    from botocore.awsrequest import AWSResponse

    body = json.dumps({"__type": code, "message": message}).encode()
    return AWSResponse(request.url, 400, {"Content-Type": "application/x-amz-json-1.1"},
                       MockRawResponse(body))  # fmt: skip


@pytest.fixture
def moto_creates(monkeypatch):
    """Every CreateTrainingJob moto's backend really performed (duplicates included)."""
    from moto.sagemaker.models import SageMakerModelBackend

    made, real = [], SageMakerModelBackend.create_training_job

    def counting(self, *args, **kwargs):
        made.append(kwargs.get("training_job_name", args[0] if args else None))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(SageMakerModelBackend, "create_training_job", counting)
    return made


def test_throttled_creates_are_retried_and_launch_once(provider, moto_creates):
    plan = make_plan_for()
    sagemaker = provider.ops.client("sagemaker", REGION)
    seen = _refuse_creates(sagemaker, failures=3)
    handle = provider.submit(plan)
    assert handle.name == plan.job_name and handle.created
    assert seen.attempts == 4  # three refusals, then the answer
    assert moto_creates == [plan.job_name]  # the refused attempts never reached moto
    assert jobs() == [plan.job_name]


def test_a_create_whose_answer_was_lost_is_found_not_repeated(provider, moto_creates):
    plan = make_plan_for()
    sagemaker = provider.ops.client("sagemaker", REGION)
    seen = _refuse_creates(sagemaker, failures=3, kind="timeout")
    handle = provider.submit(plan)
    # botocore retries the timed-out create; SageMaker answers ResourceInUse; submit describes
    assert handle.name == plan.job_name and not handle.created
    assert seen.attempts == 2 and moto_creates == [plan.job_name]


def test_persistent_throttling_gives_up_with_a_clear_error(provider, moto_creates):
    sagemaker = provider.ops.client("sagemaker", REGION)
    seen = _refuse_creates(sagemaker, failures=100)
    with pytest.raises(ProviderError, match="ThrottlingException"):
        provider.submit(make_plan_for())
    assert seen.attempts == 11  # the first try + max_attempts=10 retries (botocore counts retries)
    assert moto_creates == [] and jobs() == []


# ---- Stubber: the real API's answers where moto 5.2 differs ----------------------------------


def _error(code: str, message: str, status: int = 400) -> dict:
    return {"service_error_code": code, "service_message": message, "http_status_code": status}


def _described(plan, status="InProgress", secondary="Training") -> dict:
    request = SageMakerProvider().render(plan)
    created = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
    return {
        "TrainingJobName": plan.job_name,
        "TrainingJobArn": f"arn:aws:sagemaker:{REGION}:123456789012:training-job/{plan.job_name}",
        "ModelArtifacts": {"S3ModelArtifacts": ""},
        "TrainingJobStatus": status,
        "SecondaryStatus": secondary,
        "AlgorithmSpecification": request["AlgorithmSpecification"],
        "ResourceConfig": request["ResourceConfig"],
        "StoppingCondition": request["StoppingCondition"],
        "CreationTime": created,
    }


@pytest.fixture
def stubbed(provider):
    """The provider with a Stubber on its SageMaker client (S3 stays on moto)."""
    client = boto3.client("sagemaker", region_name=REGION)
    provider.ops.clients[("sagemaker", REGION)] = client
    with Stubber(client) as stub:
        yield provider, stub
        stub.assert_no_pending_responses()


def test_duplicate_name_returns_the_existing_job(stubbed):
    provider, stub = stubbed
    plan = make_plan_for(secrets={"HF_TOKEN": "arn:aws:secretsmanager:us-east-1:123456789012:"
                                              "secret:hf-AbCdEf"}, env={"MODE": "prod"})  # fmt: skip
    request = provider.render(plan)
    assert request["Environment"] == {"MODE": "prod"}  # no secret value, no reference
    name = {"TrainingJobName": plan.job_name}
    stub.add_client_error("describe_training_job", **_error("ValidationException",
                          "Requested resource not found."), expected_params=name)  # fmt: skip
    # A racing submit of the same plan created it in between: real SageMaker says ResourceInUse.
    stub.add_client_error("create_training_job", **_error("ResourceInUse",
                          f"Training job names must be unique within an AWS account and region, "
                          f"and a training job with this name already exists "
                          f"({_described(plan)['TrainingJobArn']})"),
                          expected_params=request)  # fmt: skip
    stub.add_response("describe_training_job", _described(plan), expected_params=name)
    handle = provider.submit(plan)
    assert handle.created is False and handle.name == plan.job_name
    assert handle.details["arn"].endswith(plan.job_name)


def test_duplicate_submit_never_calls_create(stubbed):
    provider, stub = stubbed
    plan = make_plan_for()
    stub.add_response("describe_training_job", _described(plan),
                      expected_params={"TrainingJobName": plan.job_name})  # fmt: skip
    assert provider.submit(plan).created is False  # a create call would be an unstubbed error


def test_cancel_stops_a_running_job(stubbed):
    provider, stub = stubbed
    plan = make_plan_for()
    name = {"TrainingJobName": plan.job_name}
    stub.add_response("describe_training_job", _described(plan), expected_params=name)
    stub.add_response("stop_training_job", {}, expected_params=name)
    provider.cancel(f"{REGION}/{plan.job_name}")


def test_cancel_leaves_a_finished_job_alone(stubbed):
    provider, stub = stubbed
    plan = make_plan_for()
    stub.add_response("describe_training_job", _described(plan, "Completed", "Completed"),
                      expected_params={"TrainingJobName": plan.job_name})  # fmt: skip
    provider.cancel(f"{REGION}/{plan.job_name}")  # no StopTrainingJob stubbed: none is sent


def test_access_denied_is_a_user_error(stubbed):
    provider, stub = stubbed
    stub.add_client_error("describe_training_job", **_error("AccessDeniedException",
                          "User is not authorized to perform: sagemaker:DescribeTrainingJob"))  # fmt: skip
    with pytest.raises(ProviderError, match="AccessDeniedException"):
        provider.status(f"{REGION}/some-job")


def test_list_without_labels_asks_for_genai_cloud_jobs(stubbed):
    # moto's Search cannot evaluate the Exists operator; the real API can.
    provider, stub = stubbed
    plan = make_plan_for()
    job = {**_described(plan, "Completed", "Completed"),
           "Tags": [{"Key": "genai-cloud-key", "Value": plan.key}]}  # fmt: skip
    expected = {"Resource": "TrainingJob", "MaxResults": 100, "SearchExpression": {
        "Filters": [{"Name": "Tags.genai-cloud-key", "Operator": "Exists"}]}}  # fmt: skip
    stub.add_response("search", {"Results": [{"TrainingJob": job}], "NextToken": "page2"},
                      expected_params=expected)  # fmt: skip
    stub.add_response("search", {"Results": []}, expected_params={**expected, "NextToken": "page2"})
    [status] = provider.list({}, REGION)
    assert status.details["name"] == plan.job_name and status.state is JobState.SUCCEEDED


# ---- state mapping ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "primary, secondary, state",
    [
        ("InProgress", "Starting", JobState.PENDING),
        ("InProgress", "LaunchingMLInstances", JobState.PENDING),
        ("InProgress", "Downloading", JobState.PENDING),
        ("InProgress", "Interrupted", JobState.PENDING),  # spot reclaimed, waiting to resume
        ("InProgress", "Training", JobState.RUNNING),
        ("InProgress", "Uploading", JobState.RUNNING),
        ("Completed", "Completed", JobState.SUCCEEDED),
        ("Failed", "Failed", JobState.FAILED),
        ("Stopping", "Stopping", JobState.STOPPING),
        ("Stopped", "Stopped", JobState.STOPPED),
        ("Stopped", "MaxRuntimeExceeded", JobState.FAILED),
        ("Stopped", "MaxWaitTimeExceeded", JobState.FAILED),
    ],
)  # fmt: skip
def test_state_mapping(primary, secondary, state):
    status = to_status("job", {"TrainingJobStatus": primary, "SecondaryStatus": secondary})
    assert status.state is state
    if secondary == "MaxRuntimeExceeded":
        assert "compute.max_runtime" in status.message


def test_failure_reason_is_the_message():
    status = to_status("job", {"TrainingJobStatus": "Failed", "SecondaryStatus": "Failed",
                               "FailureReason": "AlgorithmError: exit code 2"})  # fmt: skip
    assert status.message == "AlgorithmError: exit code 2"


# ---- job ids and AWS configuration errors ------------------------------------------------------


@pytest.fixture
def no_aws_config(monkeypatch, tmp_path):
    """No credentials, region or profile anywhere boto3 looks, and no request may leave."""
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                "AWS_DEFAULT_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION",
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN"):  # fmt: skip
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # never ask 169.254.169.254

    def no_network(*args, **kwargs):
        raise AssertionError("a request was sent")

    monkeypatch.setattr("botocore.httpsession.URLLib3Session.send", no_network)


@pytest.mark.parametrize("job_id, name, region", [
    ("my-job", "my-job", None),
    ("us-east-1/my-job", "my-job", "us-east-1"),
    ("arn:aws:sagemaker:eu-west-1:123456789012:training-job/my-job", "my-job", "eu-west-1"),
    ("arn:aws-us-gov:sagemaker:us-gov-west-1:123456789012:training-job/j-1", "j-1",
     "us-gov-west-1"),
])  # fmt: skip
def test_job_ids_name_and_region(job_id, name, region):
    from genai_cloud.providers.sagemaker.ops import parse_job_id

    assert parse_job_id(job_id) == (name, region)


def test_status_by_arn_finds_the_job(provider):
    handle = provider.submit(make_plan_for())
    arn = handle.details["arn"]
    assert arn.startswith(f"arn:aws:sagemaker:{REGION}:")
    assert provider.status(arn).state is JobState.SUCCEEDED


@pytest.mark.parametrize("args, said", [
    (["status", "a:b/x", "-p", "sagemaker"], "'a:b' is not an AWS region name"),
    (["logs", "a:b/x", "-p", "sagemaker"], "'a:b' is not an AWS region name"),
    (["status", "arn:aws:sagemaker:us-east-1:1:processing-job/x"], "not of a training job"),
    (["cancel", "us-east-1/not_a_name", "-p", "sagemaker"], "not a SageMaker training job name"),
])  # fmt: skip
def test_bad_job_ids_are_user_errors(no_aws_config, run_cli, args, said):
    code, _, err = run_cli(args)
    assert code == 2 and "Traceback" not in err
    assert "Error: Invalid SageMaker job id" in err and said in err
    assert "<region>/<job name>" in err and "training-job/<job name>" in err


def test_arn_status_without_credentials_reads_the_region_from_the_arn(no_aws_config, run_cli):
    arn = "arn:aws:sagemaker:us-east-1:123456789012:training-job/myjob"
    code, _, err = run_cli(["status", arn])
    assert code == 2 and "Traceback" not in err
    assert "Error: AWS credentials not found" in err
    assert "describing training job 'myjob'" in err


def test_missing_credentials_hint_is_about_credentials(no_aws_config, run_cli):
    code, _, err = run_cli(["status", "us-east-1/myjob"])
    assert code == 2 and "Error: AWS credentials not found" in err
    assert "aws configure" in err and "AWS_ACCESS_KEY_ID" in err and "aws sso login" in err
    assert "<region>/<job name>" not in err  # the region was given: not the problem


def test_missing_region_hint_is_about_the_region(no_aws_config, run_cli):
    code, _, err = run_cli(["status", "myjob", "-p", "sagemaker"])
    assert code == 2 and "Error: AWS region not set" in err
    assert "You must specify a region. Set AWS_REGION" in err  # one period, not two
    assert "<region>/<job name>" in err and "aws sso login" not in err


def test_a_profile_that_does_not_exist_is_named(no_aws_config, monkeypatch, run_cli):
    monkeypatch.setenv("AWS_PROFILE", "nope")
    code, _, err = run_cli(["status", "us-east-1/myjob"])
    assert code == 2 and "Traceback" not in err
    assert "Error: AWS profile not found" in err and "(nope)" in err


def test_an_invalid_region_from_the_client_factory_is_a_user_error(aws):
    from genai_cloud.providers.sagemaker.ops import SageMakerOps

    with pytest.raises(ProviderError) as info:
        SageMakerOps().client("sagemaker", "not a region")
    assert info.value.headline == "Invalid AWS region"
    assert "'not a region'" in info.value.message and "us-east-1" in info.value.message


@pytest.mark.parametrize("exc, headline", [
    ("NoCredentialsError()", "AWS credentials not found"),
    ("PartialCredentialsError(provider='env', cred_var='AWS_SECRET_ACCESS_KEY')",
     "AWS credentials not found"),
    ("UnauthorizedSSOTokenError()", "AWS credentials not found"),
    ("NoRegionError()", "AWS region not set"),
    ("InvalidRegionError(region_name='x y')", "Invalid AWS region"),
])  # fmt: skip
def test_aws_configuration_errors_map_to_their_own_headlines(exc, headline):
    import botocore.exceptions as botocore_errors

    from genai_cloud.providers.sagemaker.ops import _aws_error

    error = _aws_error(eval(exc, vars(botocore_errors)), "doing it")
    assert isinstance(error, ProviderError) and error.headline == headline
    assert ".." not in error.message
