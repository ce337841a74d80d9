"""The Cloud Function and Azure Function front ends over the same core (fake provider)."""

from __future__ import annotations

import json

import pytest

from genai_cloud.serverless import azure_function, gcp_function


class FakeCloudEvent(dict):
    """What functions-framework passes: attributes by key, payload in ``.data``."""

    def __init__(self, data: dict, type_: str = gcp_function.FINALIZED):
        super().__init__(id="evt-1", type=type_, source="//storage.googleapis.com/b")
        self.data = data


def test_gcs_finalize_launches_once(env, fake_provider, spec_dict, monkeypatch):
    import yaml

    monkeypatch.setattr(gcp_function, "_read_gcs", lambda b, n: yaml.safe_dump(spec_dict).encode())
    event = FakeCloudEvent({"bucket": "b", "name": "specs/job.yaml", "size": "120"})
    first, second = gcp_function.launch_gcs(event), gcp_function.launch_gcs(event)
    assert first["created"] and not second["created"] and first["source"] == "gs://b/specs/job.yaml"
    assert len(fake_provider.jobs) == 1
    other = FakeCloudEvent({"bucket": "b", "name": "x"}, "google.cloud.storage.object.v1.deleted")
    assert "skipped" in gcp_function.launch_gcs(other)


def test_gcs_oversized_object_is_not_read(env, fake_provider, monkeypatch):
    monkeypatch.setattr(gcp_function, "_read_gcs", pytest.fail)
    event = FakeCloudEvent({"bucket": "b", "name": "specs/huge.yaml", "size": str(10**8)})
    assert gcp_function.launch_gcs(event)["error"] == "Invalid job spec"


def test_gcp_http_through_functions_framework(env, fake_provider, spec_dict, tmp_path):
    functions_framework = pytest.importorskip("functions_framework")
    main = tmp_path / "main.py"
    main.write_text("from genai_cloud.serverless.gcp_function import launch_gcs, launch_http\n")
    app = functions_framework.create_app(target="launch_http", source=str(main))
    client = app.test_client()
    answer = client.post("/", data=json.dumps({"spec": spec_dict, "provider": "fake"}))
    assert answer.status_code == 201 and answer.json["job_name"].startswith("genai-unit-")
    bad = client.post("/", data="name: [")
    assert bad.status_code == 400 and bad.json["errors"][0].startswith("http:1")
    assert client.get("/").status_code == 405


def test_azure_app_registers_http_and_blob_functions():
    pytest.importorskip("azure.functions")
    functions = {f.get_function_name(): f for f in azure_function.app.get_functions()}
    assert set(functions) == {"launch_http", "launch_blob"}
    bindings = {b.type: b for b in functions["launch_blob"].get_bindings()}
    assert bindings["blobTrigger"].path == "genai/specs/{name}"
    assert bindings["blobTrigger"].connection == "GENAI_STORAGE"
    assert bindings["blob"].path == "genai/specs/{name}.rejected.json"  # the output binding
    http = {b.type: b for b in functions["launch_http"].get_bindings()}["httpTrigger"]
    assert http.route == "launch" and [str(m.value) for m in http.methods] == ["POST"]
    assert str(http.auth_level.value).lower() == "anonymous"  # Entra ID in front, no shared key


def test_azure_http_and_blob(env, fake_provider, spec_dict, capsys, parse_logs):
    func = pytest.importorskip("azure.functions")
    signed_in = {"X-MS-CLIENT-PRINCIPAL-ID": "00000000-0000-0000-0000-000000000001"}
    anonymous = func.HttpRequest("POST", "/api/launch", body=json.dumps(spec_dict).encode())
    refused = azure_function.launch_http(anonymous)  # no Entra ID principal: never launched
    assert refused.status_code == 401 and not fake_provider.jobs
    request = func.HttpRequest("POST", "/api/launch", body=json.dumps(spec_dict).encode(),
                               params={"provider": "fake"}, headers=signed_in)  # fmt: skip
    answer = azure_function.launch_http(request)
    assert answer.status_code == 201 and answer.mimetype == "application/json"
    assert json.loads(answer.get_body())["created"] is True

    class Blob:
        name = "genai/specs/job.json"
        length = 100

        def read(self):
            return json.dumps(spec_dict).encode()

    azure_function.launch_blob(Blob())  # same spec: found, not launched again
    assert len(fake_provider.jobs) == 1
    messages = [e["message"] for e in parse_logs(capsys.readouterr().out)]
    assert messages[-2:] == ["job launched", "job already exists"]
