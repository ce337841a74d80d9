"""One view of all jobs: the cross-provider table with mocked providers, configured-provider
detection, job-id shapes, and `status` / `list` / `logs` / `submit --provider cheapest`."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from genai_cloud import jobs
from genai_cloud.providers import JobHandle, JobState, JobStatus, Provider, base, get_provider
from genai_cloud.providers.azureml import AzureMLProvider
from genai_cloud.providers.azureml.provider import azure_config_file
from genai_cloud.providers.sagemaker import SageMakerProvider
from genai_cloud.providers.vertex import VertexProvider

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)
VERTEX_ID = "projects/p1/locations/us-central1/customJobs/4242"
AZURE_ID = ("/subscriptions/s1/resourceGroups/rg/providers/Microsoft.MachineLearningServices/"
            "workspaces/ws/jobs/tune-azure-0123456789")  # fmt: skip
SEEN_LABELS: dict[str, dict] = {}


def _keep(name: str, labels, statuses):
    """What a real list does: only jobs carrying every asked label."""
    SEEN_LABELS[name] = dict(labels or {})
    return [s for s in statuses
            if all(s.details.get("labels", {}).get(k) == v for k, v in (labels or {}).items())]  # fmt: skip


class FakeSageMaker(SageMakerProvider):
    name = "sagemaker"

    def list(self, labels=None, region=None):
        done = JobStatus(
            "tune-a-0123456789", JobState.SUCCEEDED, "Completed",
            details={"name": "tune-a-0123456789", "created": NOW - timedelta(hours=5),
                     "arn": "arn:aws:sagemaker:us-east-1:123456789012:training-job/tune-a",
                     "instance_type": "ml.g5.xlarge", "instance_count": 2,
                     "billable_seconds": 3600, "labels": {"team": "nlp"}},
        )  # fmt: skip
        running = JobStatus(
            "us-east-1/tune-b-0123456789", JobState.RUNNING, "InProgress/Training",
            details={"name": "tune-b-0123456789", "created": NOW - timedelta(minutes=30),
                     "instance_type": "ml.g4dn.xlarge", "instance_count": 1,
                     "labels": {"team": "vision"}},
        )  # fmt: skip
        return _keep("sagemaker", labels, [done, running])

    def logs(self, job_id, follow=False):
        yield f"sagemaker log of {job_id} (follow={follow})"


class FakeVertex(VertexProvider):
    name = "vertex"

    def list(self, labels=None, *, project=None, region=None):
        job = JobStatus(
            VERTEX_ID, JobState.SUCCEEDED, "JOB_STATE_SUCCEEDED",
            details={"display_name": "tune-vertex", "labels": {"team": "nlp"},
                     "created": (NOW - timedelta(hours=3)).isoformat(),
                     "started": (NOW - timedelta(hours=2)).isoformat().replace("+00:00", "Z"),
                     "ended": (NOW - timedelta(hours=1)).isoformat(),
                     "machine_type": "n1-standard-8", "accelerator_count": 2,
                     "instance_count": 2, "spot": True},
        )  # fmt: skip
        return _keep("vertex", labels, [job])

    def logs(self, job_id, follow=False):
        yield f"vertex log of {job_id} (follow={follow})"


class FakeAzure(AzureMLProvider):
    name = "azureml"

    def list(self, labels=None):
        job = JobStatus(
            AZURE_ID, JobState.PENDING, "Queued",
            details={"tags": {"genai-cloud-instance-type": "Standard_NC4as_T4_v3"},
                     "labels": {"team": "nlp"}},
        )  # fmt: skip
        return _keep("azureml", labels, [job])


class BrokenCloud(Provider):
    name = "sagemaker"

    def list(self, labels=None, region=None):
        raise RuntimeError("endpoint unreachable")


@pytest.fixture
def fakes(monkeypatch):
    """The three cloud providers replaced by fakes (real catalogs, so real prices)."""
    for name, cls in (("sagemaker", FakeSageMaker), ("vertex", FakeVertex),
                      ("azureml", FakeAzure)):  # fmt: skip
        monkeypatch.setitem(base._REGISTRY, name, f"{__name__}:{cls.__name__}")
    SEEN_LABELS.clear()


# ---- the table ------------------------------------------------------------------------------


def test_one_table_across_providers_with_runtime_and_cost(fakes):
    table = jobs.collect(["sagemaker", "vertex", "azureml"], now=NOW)
    by_name = {r.name: r for r in table.rows}
    # newest first; the Azure job reports no creation time and goes last
    assert [r.name for r in table.rows] == ["tune-b-0123456789", "tune-vertex",
                                            "tune-a-0123456789", AZURE_ID]  # fmt: skip
    done = by_name["tune-a-0123456789"]  # billed 1 h x 2 x ml.g5.xlarge us-east-1 1.408
    assert done.cost_usd == pytest.approx(2.816) and done.runtime_s == 3600
    running = by_name["tune-b-0123456789"]  # 30 min so far x ml.g4dn.xlarge 0.736
    assert running.runtime_s == 1800 and running.cost_usd == pytest.approx(0.368)
    # started 2 h ago, ended 1 h ago on 2 x n1-standard-8 + 2 T4 (catalog row n1-standard-8+2xT4),
    # spot: 0.4347 per machine-hour
    vertex = by_name["tune-vertex"]
    assert vertex.instance_type == "n1-standard-8+2xT4"
    assert vertex.runtime_s == 3600 and vertex.cost_usd == pytest.approx(2 * 0.4347)
    azure = by_name[AZURE_ID]  # queued, no times yet: runtime and cost unknown
    assert azure.runtime_s is None and azure.cost_usd is None
    assert azure.instance_type == "Standard_NC4as_T4_v3"
    assert table.total_usd == pytest.approx(2.816 + 0.368 + 0.8694)
    assert table.errors == {}


def test_labels_reach_every_provider_and_filter(fakes):
    table = jobs.collect(["sagemaker", "vertex", "azureml"], {"team": "nlp"}, now=NOW)
    assert SEEN_LABELS == {"sagemaker": {"team": "nlp"}, "vertex": {"team": "nlp"},
                           "azureml": {"team": "nlp"}}  # fmt: skip
    assert "tune-b-0123456789" not in {r.name for r in table.rows}
    assert len(table.rows) == 3


def test_a_failing_provider_does_not_hide_the_others(fakes, monkeypatch):
    monkeypatch.setitem(base._REGISTRY, "sagemaker", f"{__name__}:BrokenCloud")
    table = jobs.collect(["sagemaker", "vertex"], now=NOW)
    assert [r.provider for r in table.rows] == ["vertex"]
    assert table.errors == {"sagemaker": "RuntimeError: endpoint unreachable"}


def test_limit_keeps_the_newest(fakes):
    table = jobs.collect(["sagemaker", "vertex", "azureml"], limit=2, now=NOW)
    assert [r.name for r in table.rows] == ["tune-b-0123456789", "tune-vertex"]


def test_format_table_columns_and_total(fakes):
    text = jobs.format_table(jobs.collect(["sagemaker", "vertex", "azureml"], now=NOW))
    lines = text.splitlines()
    assert lines[0].split() == ["NAME", "PROVIDER", "STATE", "RUNTIME", "COST", "SO", "FAR",
                                "JOB", "ID"]  # fmt: skip
    assert lines[1].split()[:5] == ["tune-b-0123456789", "sagemaker", "running", "30m00s", "$0.37"]
    assert lines[2].split()[:5] == ["tune-vertex", "vertex", "succeeded", "1h00m", "$0.87"]
    assert lines[-1].startswith("Total so far: $4.05")
    assert "1 job(s) without a known instance or runtime" in lines[-1]


def test_status_without_a_job_id_prints_the_table(fakes, run_cli):
    code, out, err = run_cli(["status", "-p", "sagemaker,vertex", "-p", "azureml"])
    assert code == 0, err
    assert "tune-vertex" in out and "tune-a-0123456789" in out and AZURE_ID in out
    assert "Total so far:" in out


def test_list_by_label(fakes, run_cli):
    code, out, _ = run_cli(["list", "--label", "team=vision", "-p", "sagemaker", "-p", "vertex"])
    assert code == 0
    assert "tune-b-0123456789" in out and "tune-vertex" not in out
    code, _, err = run_cli(["list", "--label", "team", "-p", "vertex"])
    assert code == 2 and "--label expects KEY=VALUE" in err


def test_status_with_nothing_configured_says_why(fakes, run_cli, monkeypatch):
    for cloud in (SageMakerProvider, VertexProvider, AzureMLProvider):  # each one's own check
        monkeypatch.setattr(cloud, "not_configured_reason",
                            lambda self, spec=None: f"{self.name} has no credentials")
    code, _, err = run_cli(["status"])
    assert code == 2 and "No providers" in err
    assert "Skipped vertex: not configured (vertex has no credentials)" in err


def test_status_asks_only_configured_providers(fakes, run_cli, monkeypatch):
    monkeypatch.setattr(SageMakerProvider, "not_configured_reason", lambda self, spec=None: None)
    monkeypatch.setattr(VertexProvider, "not_configured_reason", lambda self, spec=None: "no project")
    monkeypatch.setattr(AzureMLProvider, "not_configured_reason",
                        lambda self, spec=None: "no workspace")
    monkeypatch.setattr(jobs, "cloud_providers", lambda: ["azureml", "sagemaker", "vertex"])
    code, out, _ = run_cli(["status"])
    assert code == 0
    assert set(SEEN_LABELS) == {"sagemaker"} and "tune-vertex" not in out


# ---- job ids, logs ---------------------------------------------------------------------------


@pytest.mark.parametrize("job_id, provider", [
    (VERTEX_ID, "vertex"),
    (AZURE_ID, "azureml"),
    ("us-east-1/tune-a-0123456789", "sagemaker"),
    ("arn:aws:sagemaker:eu-west-1:123456789012:training-job/tune-a", "sagemaker"),
    ("tune-a-0123456789", None),  # a bare name could be SageMaker's or Azure's
])  # fmt: skip
def test_infer_provider(job_id, provider):
    assert jobs.infer_provider(job_id) == provider


def test_logs_follow_reads_the_provider_from_the_job_id(fakes, run_cli):
    code, out, _ = run_cli(["logs", VERTEX_ID, "--follow"])
    assert code == 0 and out.strip() == f"vertex log of {VERTEX_ID} (follow=True)"
    code, out, _ = run_cli(["logs", "us-east-1/tune-a", "-f"])
    assert out.strip() == "sagemaker log of us-east-1/tune-a (follow=True)"
    code, _, err = run_cli(["logs", "tune-a"])
    assert code == 2 and "pass --provider" in err


# ---- configured providers --------------------------------------------------------------------


def test_aws_is_configured_by_its_credential_chain(monkeypatch, tmp_path):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "AWS_WEB_IDENTITY_TOKEN_FILE"):  # fmt: skip
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    assert "no AWS credentials" in jobs.not_configured_reason("sagemaker")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    assert jobs.not_configured_reason("sagemaker") is None


def test_gcp_needs_a_project_and_credentials(monkeypatch, tmp_path):
    for var in ("GOOGLE_CLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT", "GOOGLE_APPLICATION_CREDENTIALS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path))
    assert "no project" in jobs.not_configured_reason("vertex")
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "p1")
    assert "Application Default Credentials" in jobs.not_configured_reason("vertex")
    (tmp_path / "application_default_credentials.json").write_text("{}")
    assert jobs.not_configured_reason("vertex") is None


def test_azure_needs_a_workspace_config(monkeypatch, tmp_path):
    work = tmp_path / "project" / "src"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    (tmp_path / "project" / "config.json").write_text('{"unrelated": true}')  # not a workspace
    assert "no workspace" in jobs.not_configured_reason("azureml")
    azureml = tmp_path / "project" / ".azureml"
    azureml.mkdir()
    (azureml / "config.json").write_text('{"subscription_id": "s", "resource_group": "rg", '
                                         '"workspace_name": "ws"}')  # fmt: skip
    assert jobs.not_configured_reason("azureml") is None
    assert azure_config_file() == azureml / "config.json"


def test_submit_cheapest_considers_only_configured_providers(monkeypatch, tmp_path, run_cli):
    from genai_cloud.providers.sagemaker import SageMakerProvider

    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.setattr(SageMakerProvider, "not_configured_reason", lambda self, spec=None: None)
    monkeypatch.setattr(VertexProvider, "not_configured_reason", lambda self, spec=None: "no project")
    monkeypatch.setattr(AzureMLProvider, "not_configured_reason",
                        lambda self, spec=None: "no workspace")
    submitted = []

    def fake_submit(self, plan):
        submitted.append(plan)
        return JobHandle("sagemaker", f"us-east-1/{plan.job_name}", plan.job_name)

    monkeypatch.setattr(SageMakerProvider, "submit", fake_submit)
    path = tmp_path / "job.yaml"
    # T4 is cheapest on Azure, but only SageMaker is configured here.
    path.write_text("name: toy\ntask: pretrain-scratch\nscratch: {toy_task: copy}\n"
                    "training: {max_steps: 5}\ncompute: {accelerator: T4}\nbudget: {max_usd: 5}\n"
                    "aws: {role_arn: 'arn:aws:iam::123456789012:role/r', bucket: b}\n")  # fmt: skip
    code, out, err = run_cli(["submit", str(path), "-p", "cheapest"])
    assert code == 0, err
    assert "Not considered: azureml (not configured: no workspace)" in err
    assert "Cheapest placement: sagemaker (ml.g4dn.xlarge x 1 in us-east-1" in err
    assert "Budget: at most $5.00 of $5.00 (runtime capped at 24456 s)" in err
    assert len(submitted) == 1 and out.startswith("Submitted: toy-")


# ---- the table from each provider's real status conversion -----------------------------------
# The fakes above hand the table ready-made details; these build what each SDK answers (a
# DescribeTrainingJob dict, an aiplatform_v1.CustomJob, an azure-ai-ml CommandJob) and price the
# status that the provider's own ops module turns it into.

TOY = {"name": "toy", "task": "pretrain-scratch", "scratch": {"toy_task": "copy"},
       "training": {"max_steps": 5, "checkpoint_every": 5}}  # fmt: skip


def _plan(provider: str, **sections):
    from genai_cloud.loading import load_spec
    from genai_cloud.plan import make_plan

    return make_plan(load_spec({**TOY, **sections}), provider)


def test_sagemaker_running_spot_job_is_billed_from_its_start_at_the_spot_rate():
    from genai_cloud.providers.sagemaker.ops import to_status

    described = {
        "TrainingJobName": "toy-0123456789", "TrainingJobStatus": "InProgress",
        "SecondaryStatus": "Training",
        "TrainingJobArn": "arn:aws:sagemaker:us-east-1:123456789012:training-job/toy-0123456789",
        "CreationTime": NOW - timedelta(hours=2),  # 30 min of provisioning: not billed
        "TrainingStartTime": NOW - timedelta(minutes=90),
        "ResourceConfig": {"InstanceType": "ml.g5.xlarge", "InstanceCount": 2},
        "EnableManagedSpotTraining": True,
    }  # fmt: skip
    row = jobs.row_from_status("sagemaker", to_status("us-east-1/toy-0123456789", described), NOW)
    assert row.runtime_s == 5400 and row.instance_type == "ml.g5.xlarge"
    assert row.cost_usd == pytest.approx(0.422 * 2 * 1.5)  # us-east-1 spot, 2 machines, 1.5 h
    described.update(TrainingJobStatus="Completed", SecondaryStatus="Completed",
                     TrainingEndTime=NOW - timedelta(minutes=30), BillableTimeInSeconds=1200)
    row = jobs.row_from_status("sagemaker", to_status("us-east-1/toy-0123456789", described), NOW)
    # ran 1 h; billed 20 min (net of the spot saving), priced on-demand as AWS does
    assert row.runtime_s == 3600 and row.cost_usd == pytest.approx(1.408 * 2 / 3)


def test_vertex_job_runtime_and_cost_from_the_custom_job(monkeypatch):
    from google.cloud import aiplatform_v1

    from genai_cloud.providers.vertex import ops as vertex_ops

    plan = _plan("vertex", compute={"accelerator": "T4", "count": 2, "nodes": 2, "spot": True},
                 output={"uri": "gs://bkt/runs"})  # fmt: skip
    job = vertex_ops.to_proto(get_provider("vertex").render(plan))
    job.name = "projects/p1/locations/us-central1/customJobs/77"
    job.state = aiplatform_v1.JobState.JOB_STATE_SUCCEEDED
    job.create_time = NOW - timedelta(hours=3)
    job.start_time = NOW - timedelta(hours=2)
    job.end_time = NOW - timedelta(hours=1)
    status = vertex_ops._status_of(job)
    assert status.details["machine_type"] == "n1-standard-8"
    assert (status.details["instance_count"], status.details["spot"]) == (2, True)
    row = jobs.row_from_status("vertex", status, NOW)
    assert row.instance_type == "n1-standard-8+2xT4" and row.runtime_s == 3600
    assert row.cost_usd == pytest.approx(2 * 0.4347)  # 2 machines x 1 h at the spot rate
    assert row.created == NOW - timedelta(hours=3)


def test_azure_job_runtime_and_cost_from_the_command_job(tmp_path):
    from azure.ai.ml.entities import CommandJob, SystemData

    from genai_cloud.providers.azureml import ops as azureml_ops

    plan = _plan("azureml", compute={"accelerator": "T4", "nodes": 2, "spot": True})
    rendered = azureml_ops.load_rendered_job(plan, get_provider("azureml").render(plan), tmp_path)
    # What jobs.get answers for it: the same settings plus the service's status and times.
    answer = CommandJob(
        name=rendered.name, id=AZURE_ID, command=rendered.command, environment="env:1",
        tags=rendered.tags, resources=rendered.resources, queue_settings=rendered.queue_settings,
        status="Running", creation_context=SystemData(created_at=NOW - timedelta(minutes=45)),
    )  # fmt: skip
    status = azureml_ops._status_of(answer)
    assert status.details["instance_type"] == "Standard_NC4as_T4_v3"
    assert (status.details["instance_count"], status.details["spot"]) == (2, True)
    row = jobs.row_from_status("azureml", status, NOW)
    assert row.runtime_s == 2700 and row.created == NOW - timedelta(minutes=45)
    assert row.cost_usd == pytest.approx(0.1052 * 2 * 0.75)  # eastus spot, 2 machines, 45 min


# ---- which providers a table asks, and the exit code when none answered ----------------------


@pytest.mark.parametrize("command", ["list", "status"])
@pytest.mark.parametrize("names, why", [
    (["nosuch"], "unknown provider 'nosuch'; valid providers:"),
    (["vertex,nosuch"], "unknown provider 'nosuch'; valid providers:"),
    (["local"], ("provider 'local' does not list jobs; providers that do: azureml, kubernetes, "
                 "sagemaker, vertex")),
])  # fmt: skip
def test_provider_names_are_checked_before_asking_any(command, names, why, fakes, run_cli):
    code, out, err = run_cli([command, *[x for n in names for x in ("-p", n)]])
    assert code == 2 and out == "" and why in err
    assert SEEN_LABELS == {}  # nothing was asked


def test_aliases_name_the_same_provider_once(fakes, run_cli):
    code, out, _ = run_cli(["list", "-p", "aws", "-p", "sagemaker"])
    assert code == 0
    assert [line.split()[0] for line in out.splitlines()].count("tune-a-0123456789") == 1


class BrokenVertex(Provider):
    name = "vertex"

    def list(self, labels=None, **options):
        raise base.ProviderError("no Google Cloud credentials", headline="x")


@pytest.mark.parametrize("command", [["list"], ["status"]])
def test_every_provider_failing_is_exit_2_with_each_error(command, fakes, run_cli, monkeypatch):
    monkeypatch.setitem(base._REGISTRY, "sagemaker", f"{__name__}:BrokenCloud")
    monkeypatch.setitem(base._REGISTRY, "vertex", f"{__name__}:BrokenVertex")
    code, out, err = run_cli([*command, "-p", "sagemaker", "-p", "vertex"])
    assert code == 2 and "No genai-cloud jobs found" not in out
    assert "Could not list jobs" in err
    assert "sagemaker: RuntimeError: endpoint unreachable" in err
    assert "vertex: no Google Cloud credentials" in err


def test_a_partial_failure_prints_the_table_and_a_warning(fakes, run_cli, monkeypatch):
    monkeypatch.setitem(base._REGISTRY, "sagemaker", f"{__name__}:BrokenCloud")
    code, out, err = run_cli(["list", "-p", "sagemaker", "-p", "vertex"])
    assert code == 0 and "tune-vertex" in out
    assert "Warning: sagemaker: could not list jobs: RuntimeError: endpoint unreachable" in err


def test_collect_rejects_unknown_names_up_front(fakes):
    with pytest.raises(base.ProviderError, match="unknown provider 'nosuch'"):
        jobs.collect(["vertex", "nosuch"], now=NOW)
    assert SEEN_LABELS == {}
