"""output.push_to_hub (job_templates/common/publish.py), at the huggingface_hub client boundary:
a real fine-tune's model folder goes to HfApi with the repo, visibility, branch and token the
spec names; a refusal fails the job with the field named; the spec checks come first."""

from __future__ import annotations

from pathlib import Path

import pytest

from genai_cloud.errors import SpecError
from genai_cloud.loading import load_spec
from job_templates import entrypoint

huggingface_hub = pytest.importorskip("huggingface_hub")
TOKEN_REF = "arn:aws:secretsmanager:us-east-1:123456789012:secret:hf-write-AbCdEf"
TOKEN = "hf_test_value_never_logged"


class FakeHfApi:
    """Records what the job asks of the hub (and what the model folder held at upload time)."""

    calls: list = []  # noqa: RUF012 - reset by the fixture, read by the tests
    refuse: Exception | None = None

    def __init__(self, token=None):
        self.calls.append(("init", token))

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))

    def create_branch(self, repo_id, **kwargs):
        self.calls.append(("create_branch", repo_id, kwargs))

    def upload_folder(self, **kwargs):
        if self.refuse:
            raise self.refuse
        files = sorted(p.name for p in Path(kwargs["folder_path"]).iterdir())
        self.calls.append(("upload_folder", kwargs, files))
        return type("CommitInfo", (), {"commit_url": f"https://huggingface.co/{kwargs['repo_id']}/commit/abc"})()


@pytest.fixture
def hub(monkeypatch):
    FakeHfApi.calls, FakeHfApi.refuse = [], None
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHfApi)
    monkeypatch.setenv("HF_TOKEN", TOKEN)  # already in the environment: no secret lookup
    return FakeHfApi


def _run(spec: dict, tmp_path: Path) -> int:
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(load_spec(spec).to_json())
    return entrypoint.main([f"--spec={spec_path}", f"--model-dir={tmp_path / 'model'}",
                            f"--checkpoint-dir={tmp_path / 'ckpt'}",
                            f"--output-dir={tmp_path / 'out'}"])  # fmt: skip


def _pushing(make_spec, **push) -> dict:
    return make_spec(training={"max_steps": 2}, secrets={"HF_TOKEN": TOKEN_REF},
                     output={"push_to_hub": {"repo_id": "my-org/tiny-gpt2-ft", **push}})  # fmt: skip


def test_the_saved_model_goes_to_the_named_repo_and_branch(make_spec, hub, tmp_path, capsys,
                                                          caplog):  # fmt: skip
    caplog.set_level("INFO", logger="genai")
    assert _run(_pushing(make_spec, revision="experiment-1", private=False), tmp_path) == 0
    kinds = [c[0] for c in hub.calls]
    assert kinds == ["init", "create_repo", "create_branch", "upload_folder"]
    assert hub.calls[0][1] == TOKEN
    assert hub.calls[1][1:] == ("my-org/tiny-gpt2-ft", {"private": False, "repo_type": "model",
                                                        "exist_ok": True})  # fmt: skip
    assert hub.calls[2][2]["branch"] == "experiment-1"
    upload, files = hub.calls[3][1], hub.calls[3][2]
    assert upload["revision"] == "experiment-1" and upload["repo_id"] == "my-org/tiny-gpt2-ft"
    assert {"model.safetensors", "config.json", "README.md", "tokenizer.json"} <= set(files)
    out, logged = capsys.readouterr(), caplog.text
    assert "pushed the model to the Hugging Face Hub: https://huggingface.co/my-org/" in logged
    assert TOKEN not in out.out + out.err + logged


def test_a_refused_push_fails_the_job_naming_the_field(make_spec, hub, tmp_path, capsys):
    hub.refuse = PermissionError("403 Forbidden: token has no write access")
    assert _run(_pushing(make_spec), tmp_path) == entrypoint.EXIT_INPUT_ERROR
    err = capsys.readouterr().err
    assert "output.push_to_hub: pushing" in err and "403 Forbidden" in err
    assert "the model is still in the job's model folder" in err
    assert (tmp_path / "model" / "model.safetensors").is_file()


def test_the_spec_wants_the_token_by_reference_and_a_model_to_push(make_spec):
    spec = make_spec(output={"push_to_hub": {"repo_id": "my-org/x"}})
    with pytest.raises(SpecError, match=r"output\.push_to_hub\.token_env: HF_TOKEN must be a "
                       "`secrets` entry"):  # fmt: skip
        load_spec(spec)
    audit = {"name": "a", "task": "audit", "data": {"train": "/d.jsonl"},
             "secrets": {"HF_TOKEN": TOKEN_REF}, "output": {"push_to_hub": {"repo_id": "o/x"}}}
    with pytest.raises(SpecError, match=r"output\.push_to_hub: task 'audit' saves no model"):
        load_spec(audit)
    with pytest.raises(SpecError, match=r"output\.push_to_hub\.repo_id: String should match"):
        load_spec({**spec, "secrets": {"HF_TOKEN": TOKEN_REF},
                   "output": {"push_to_hub": {"repo_id": "no-org"}}})  # fmt: skip
