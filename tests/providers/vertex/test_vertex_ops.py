"""Vertex AI submit / status / logs / cancel, mocked at the client boundary.

JobServiceClient, storage.Client, logging.Client and google.auth.default are replaced; the
requests they receive are compared with what render() produced, field for field.
"""

import datetime as dt
from types import SimpleNamespace
from unittest import mock

import pytest
from google.api_core import exceptions
from google.cloud import aiplatform_v1
from test_vertex import make  # same folder: pytest puts it on sys.path

from genai_cloud.errors import GenaiCloudError
from genai_cloud.providers import JobState, get_provider
from genai_cloud.providers.vertex import ops as vertex_ops

PARENT = "projects/proj/locations/us-central1"
JOB_ID = f"{PARENT}/customJobs/4242"


@pytest.fixture
def clients(monkeypatch):
    """Fake SDK clients; ``jobs`` holds what the fake Vertex API knows."""
    monkeypatch.setattr(vertex_ops, "_sleep", lambda s: None)
    jobs: list = []
    api = mock.create_autospec(aiplatform_v1.JobServiceClient, instance=True)

    def create(parent, custom_job):
        made = aiplatform_v1.CustomJob(custom_job)
        made.name = f"{parent}/customJobs/{4242 + len(jobs)}"
        made.state = aiplatform_v1.JobState.JOB_STATE_PENDING
        jobs.append(made)
        return made

    def listing(request):
        key = request["filter"].split('"')[1]
        return [j for j in jobs if j.labels.get("genai-cloud-key") == key]

    api.create_custom_job.side_effect = create
    api.list_custom_jobs.side_effect = listing
    blobs: dict = {}
    blob = mock.MagicMock()
    blob.exists.side_effect = lambda: "bundle" in blobs
    blob.upload_from_string.side_effect = lambda data, **kw: blobs.update(bundle=(data, kw))
    storage_client = mock.MagicMock()
    storage_client.bucket.return_value.blob.return_value = blob
    monkeypatch.setattr(aiplatform_v1, "JobServiceClient", mock.Mock(return_value=api))
    monkeypatch.setattr("google.cloud.storage.Client", mock.Mock(return_value=storage_client))
    return SimpleNamespace(api=api, jobs=jobs, blobs=blobs, storage=storage_client)


def spec_plan():
    return make({"gcp": {"project": "proj"}, "compute": {"accelerator": "L4"}})


def test_submit_uploads_the_bundle_and_creates_exactly_the_rendered_job(clients):
    plan = spec_plan()
    handle = get_provider("vertex").submit(plan)
    assert handle.created and handle.job_id == JOB_ID and handle.name == "demo-0123456789"
    clients.storage.bucket.assert_called_with("bkt")
    clients.storage.bucket.return_value.blob.assert_called_with(
        "genai-cloud/bundles/bundle-abababababababab.tar.gz")  # fmt: skip
    data, kwargs = clients.blobs["bundle"]
    assert data == b"bundle" and kwargs["if_generation_match"] == 0
    expected = vertex_ops.to_proto(get_provider("vertex").render(plan))
    clients.api.create_custom_job.assert_called_once_with(parent=PARENT, custom_job=expected)
    request = clients.api.list_custom_jobs.call_args.kwargs["request"]
    assert request == {"parent": PARENT, "filter": 'labels.genai-cloud-key="0123456789"'}


def test_a_second_submit_finds_the_job_by_its_label(clients):
    first = get_provider("vertex").submit(spec_plan())
    second = get_provider("vertex").submit(spec_plan())
    assert clients.api.create_custom_job.call_count == 1
    assert second.job_id == first.job_id and second.created is False
    assert second.details["bundle_uploaded"] is False  # content-hash object already there


def test_a_create_that_timed_out_but_landed_is_not_repeated(clients):
    real = clients.api.create_custom_job.side_effect

    def lands_then_times_out(parent, custom_job):
        real(parent=parent, custom_job=custom_job)
        raise exceptions.DeadlineExceeded("deadline")

    clients.api.create_custom_job.side_effect = lands_then_times_out
    handle = get_provider("vertex").submit(spec_plan())
    assert len(clients.jobs) == 1 and handle.job_id == JOB_ID and not handle.created


def test_throttled_creates_are_retried_until_accepted(clients):
    real = clients.api.create_custom_job.side_effect
    answers = [exceptions.TooManyRequests("slow down"), exceptions.ServiceUnavailable("busy")]

    def flaky(parent, custom_job):
        if answers:
            raise answers.pop(0)
        return real(parent=parent, custom_job=custom_job)

    clients.api.create_custom_job.side_effect = flaky
    handle = get_provider("vertex").submit(spec_plan())
    assert handle.created and len(clients.jobs) == 1
    assert clients.api.create_custom_job.call_count == 3


def test_project_comes_from_the_credentials_when_not_in_the_spec(clients, monkeypatch):
    monkeypatch.setattr("google.auth.default", lambda: (object(), "proj"))
    handle = get_provider("vertex").submit(make({"compute": {"accelerator": "L4"}}))
    assert handle.job_id.startswith("projects/proj/locations/us-central1/")


def test_status_maps_native_states(clients):
    get_provider("vertex").submit(spec_plan())
    clients.api.get_custom_job.side_effect = lambda name: clients.jobs[0]
    for native, common in [("JOB_STATE_PENDING", JobState.PENDING),
                           ("JOB_STATE_RUNNING", JobState.RUNNING),
                           ("JOB_STATE_SUCCEEDED", JobState.SUCCEEDED),
                           ("JOB_STATE_CANCELLED", JobState.STOPPED)]:  # fmt: skip
        clients.jobs[0].state = aiplatform_v1.JobState[native]
        got = get_provider("vertex").status(JOB_ID)
        assert (got.state, got.native_state) == (common, native)
    clients.api.get_custom_job.assert_called_with(name=JOB_ID)


def test_one_provider_makes_one_client_per_region(clients):
    factory = aiplatform_v1.JobServiceClient  # the fixture's Mock
    clients.api.get_custom_job.side_effect = lambda name: aiplatform_v1.CustomJob(name=name)
    provider = get_provider("vertex")
    other = JOB_ID.replace("us-central1", "europe-west4")
    for job_id in (JOB_ID, JOB_ID, other, other):
        assert provider.status(job_id).job_id == job_id
    endpoints = [c.kwargs["client_options"]["api_endpoint"] for c in factory.call_args_list]
    assert endpoints == ["us-central1-aiplatform.googleapis.com",
                         "europe-west4-aiplatform.googleapis.com"]  # fmt: skip


def test_cancel_and_bad_ids(clients):
    get_provider("vertex").cancel(JOB_ID)
    clients.api.cancel_custom_job.assert_called_once_with(name=JOB_ID)
    with pytest.raises(GenaiCloudError, match="not a Vertex job id"):
        get_provider("vertex").status("4242")


def test_list_filters_by_labels(clients, monkeypatch):
    get_provider("vertex").submit(spec_plan())
    clients.api.list_custom_jobs.side_effect = lambda request: clients.jobs
    found = get_provider("vertex").list({"team": "nlp"}, project="proj")
    request = clients.api.list_custom_jobs.call_args.kwargs["request"]
    assert request["filter"] == 'labels.genai-cloud-key:* AND labels.team="nlp"'
    assert [s.job_id for s in found] == [JOB_ID]


def _entry(second, text, insert_id):
    stamp = dt.datetime(2025, 1, 1, 0, 0, second, tzinfo=dt.timezone.utc)
    return SimpleNamespace(timestamp=stamp, payload=text, insert_id=insert_id)


def test_logs_follow_polls_until_the_job_ends_without_repeating_lines(clients, monkeypatch):
    reads = [
        [_entry(1, "step 1", "a"), _entry(2, "step 2", "b")],
        [_entry(2, "step 2", "b"), _entry(2, "step 3", "c")],  # `>=` re-reads second 2
        [_entry(2, "step 3", "c"), _entry(3, {"message": "done"}, "d")],
    ]
    logging_client = mock.MagicMock()
    logging_client.list_entries.side_effect = lambda filter_, order_by: reads.pop(0)
    monkeypatch.setattr("google.cloud.logging.Client", mock.Mock(return_value=logging_client))
    states = iter([JobState.RUNNING, JobState.RUNNING, JobState.SUCCEEDED])
    monkeypatch.setattr(vertex_ops.VertexOps, "status",
                        lambda self, job_id: SimpleNamespace(state=next(states)))  # fmt: skip
    lines = list(get_provider("vertex").logs(JOB_ID, follow=True))
    assert lines == ["step 1", "step 2", "step 3", "done"]
    filters = [c.kwargs["filter_"] for c in logging_client.list_entries.call_args_list]
    assert filters[0] == 'resource.type="ml_job" AND resource.labels.job_id="4242"'
    assert filters[1].endswith('timestamp>="2025-01-01T00:00:02+00:00"')


def test_a_bad_job_id_has_its_own_headline():
    from genai_cloud.providers.vertex.ops import parse_job_name

    with pytest.raises(GenaiCloudError) as info:
        parse_job_name("projects/x")
    assert info.value.headline == "Invalid Vertex job id"
    assert "projects/P/locations/R/customJobs/ID" in info.value.message


def test_no_project_and_no_credentials_have_their_own_headlines(monkeypatch):
    from google.auth.exceptions import DefaultCredentialsError

    from genai_cloud.providers.vertex.ops import resolve_project

    monkeypatch.setattr("google.auth.default", lambda: (object(), None))
    with pytest.raises(GenaiCloudError) as info:
        resolve_project(None)
    assert info.value.headline == "Google Cloud project not set"

    def no_adc():
        raise DefaultCredentialsError("Your default credentials were not found.")

    monkeypatch.setattr("google.auth.default", no_adc)
    with pytest.raises(GenaiCloudError) as info:
        resolve_project(None)
    assert info.value.headline == "Google Cloud credentials not found"
