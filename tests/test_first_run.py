"""What a new user hit on a fresh machine (issue 21), each pinned: validate checks local inputs,
relative output folders follow the spec file, runs say what they wrote and when they are already
complete, loosely written accelerators are read aloud, and every command's --help has examples."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _spec(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "spec" / "job.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body)
    return path


def test_validate_refuses_a_local_data_file_that_does_not_exist(tmp_path, run_cli):
    spec = _spec(tmp_path, "name: demo\nmodel: {name_or_path: gpt2}\ndata: {train: data/train.jsonl}\n")
    code, out, err = run_cli(["validate", str(spec)])
    assert code == 2 and not out.startswith("OK")
    assert f"data.train: no such file or folder: {spec.parent / 'data' / 'train.jsonl'}" in err


def test_a_bare_dataset_name_that_is_no_local_path_points_at_the_hub_spelling(tmp_path, run_cli):
    spec = _spec(tmp_path, "name: demo\nmodel: {name_or_path: gpt2}\ndata: {train: imdb}\n")
    code, _, err = run_cli(["validate", str(spec)])
    assert code == 2
    assert (f"data.train: no such file or folder: {spec.parent / 'imdb'}; a Hugging Face Hub "
            "dataset is written hf://ORG/NAME") in err  # fmt: skip
    # A missing file with an extension is just a missing file: no hub hint.
    spec.write_text("name: demo\nmodel: {name_or_path: gpt2}\ndata: {train: imdb.jsonl}\n")
    assert "hf://" not in run_cli(["validate", str(spec)])[2]


def test_validate_lists_what_it_cannot_check_from_here(tmp_path, run_cli):
    spec = _spec(tmp_path, "name: demo\nmodel: {name_or_path: gpt2}\n"
                           "data: {train: s3://bucket/train.jsonl}\n")  # fmt: skip
    code, out, err = run_cli(["validate", str(spec)])
    assert code == 0 and out.startswith("OK: demo (task finetune,")
    assert "Not checked here: data.train: s3://bucket/train.jsonl (remote" in err
    assert "Not checked here: model.name_or_path: gpt2 (a hub id" in err


def test_the_init_template_names_the_data_it_still_needs(tmp_path, run_cli):
    target = tmp_path / "genai-job.yaml"
    assert run_cli(["init", str(target)])[0] == 0
    code, _, err = run_cli(["validate", str(target)])
    assert code == 2 and "data.train: no such file or folder" in err
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.jsonl").write_text('{"text": "hello"}\n')
    assert run_cli(["validate", str(target)])[0] == 0


def test_every_example_still_validates(run_cli):
    for example in sorted(EXAMPLES.glob("*.yaml")):
        code, _, err = run_cli(["validate", str(example)])
        assert code == 0, f"{example.name}: {err}"


def test_an_explicit_output_local_dir_is_relative_to_the_spec_file(tmp_path, monkeypatch):
    from genai_cloud.loading import load_spec

    spec = _spec(tmp_path, "name: demo\nmodel: {name_or_path: gpt2}\n"
                           "data: {train: s3://b/t.jsonl}\noutput: {local_dir: out/runs}\n")  # fmt: skip
    monkeypatch.chdir(tmp_path)
    assert Path(load_spec(spec).output.local_dir) == spec.parent / "out" / "runs"
    # The default stays where you run (the examples' comments rely on ./runs).
    plain = _spec(tmp_path, "name: demo\nmodel: {name_or_path: gpt2}\ndata: {train: s3://b/t.jsonl}\n")
    assert load_spec(plain).output.local_dir == "runs"


@pytest.mark.parametrize("written, canonical", [("a100", "A100"), ("a100 80gb", "A100-80GB"),
                                                ("TPU_v5e", "tpu-v5e")])  # fmt: skip
def test_a_loosely_written_accelerator_is_read_aloud(tmp_path, run_cli, written, canonical):
    spec = _spec(tmp_path, f"name: demo\nmodel: {{name_or_path: gpt2}}\ndata: {{train: s3://b/t}}\n"
                           f"compute: {{accelerator: '{written}'}}\n")  # fmt: skip
    code, out, err = run_cli(["validate", str(spec)])
    assert code == 0 and f"x {canonical} x" in out
    assert f"compute.accelerator: {written!r} read as {canonical!r}" in err


def test_an_unknown_accelerator_suggests_the_closest(tmp_path, run_cli):
    spec = _spec(tmp_path, "name: demo\nmodel: {name_or_path: gpt2}\ndata: {train: s3://b/t}\n"
                           "compute: {accelerator: H10}\n")  # fmt: skip
    code, _, err = run_cli(["validate", str(spec)])
    assert code == 2 and "did you mean 'H100'?" in err
    spec.write_text(spec.read_text().replace("H10", "RTX4090"))
    code, _, err = run_cli(["validate", str(spec)])
    assert code == 2 and "unknown accelerator 'RTX4090'; valid: cpu, T4" in err


def _finished_run(tmp_path: Path, files: dict[str, str]) -> SimpleNamespace:
    out = tmp_path / "run" / "output"
    out.mkdir(parents=True)
    for name, text in files.items():
        (out / name).write_text(text)
    model = tmp_path / "run" / "model"
    model.mkdir()
    return SimpleNamespace(returncode=0, model_dir=model, output_dir=out)


def test_an_audit_run_names_the_results_it_wrote_not_metrics_json(tmp_path, run_cli, monkeypatch):
    from genai_cloud.providers import local

    fake = _finished_run(tmp_path, {"audit.json": "{}", "audit.html": "<html></html>"})
    monkeypatch.setattr(local, "run_local", lambda spec, **options: fake)
    code, out, _ = run_cli(["run", str(EXAMPLES / "audit.yaml"), "--run-dir", str(tmp_path / "x")])
    assert code == 0 and "metrics.json" not in out and "Model:" not in out
    assert f"Results: {fake.output_dir / 'audit.json'}, {fake.output_dir / 'audit.html'}" in out


def test_rerunning_a_finished_run_says_so_and_runs_nothing(tmp_path, run_cli, monkeypatch):
    from genai_cloud.providers import local

    run_dir = tmp_path / "run"
    (run_dir / "output").mkdir(parents=True)
    (run_dir / "output" / "metrics.json").write_text("{}")
    calls = []
    monkeypatch.setattr(local, "run_local", lambda spec, **options: calls.append(options))
    spec = str(EXAMPLES / "quickstart.yaml")
    code, out, _ = run_cli(["run", spec, "--run-dir", str(run_dir)])
    assert code == 0 and calls == [] and f"Already complete" in out and str(run_dir) in out
    assert f"Metrics: {run_dir / 'output' / 'metrics.json'}" in out
    fake = SimpleNamespace(returncode=0, model_dir=run_dir / "model", output_dir=run_dir / "output")
    monkeypatch.setattr(local, "run_local", lambda spec, **options: calls.append(options) or fake)
    code, out, _ = run_cli(["run", spec, "--run-dir", str(run_dir), "--again"])
    assert code == 0 and len(calls) == 1 and out.startswith("Done.")


def test_a_run_that_saved_a_model_says_how_to_chain_it(tmp_path, run_cli, monkeypatch):
    from genai_cloud.providers import local

    fake = _finished_run(tmp_path, {"metrics.json": "{}"})
    (fake.model_dir / "model.safetensors").write_bytes(b"x")
    monkeypatch.setattr(local, "run_local", lambda spec, **options: fake)
    monkeypatch.chdir(tmp_path)
    code, out, _ = run_cli(["run", str(EXAMPLES / "quickstart.yaml"), "--run-dir", "elsewhere"])
    assert code == 0 and "Next, e.g.: --set model.name_or_path=run/model" in out


@pytest.mark.parametrize("cores, load, nproc, threads", [
    (2, 0.1, 1, 2),   # an idle laptop: every core
    (2, 1.9, 1, 1),   # one core busy elsewhere: don't fight for it
    (8, 2.0, 2, 3),   # 6 idle cores for 2 processes
    (2, 7.5, 1, 1),   # overloaded: never below one
])  # fmt: skip
def test_thread_count_leaves_busy_cores_alone(monkeypatch, cores, load, nproc, threads):
    import os

    from genai_cloud.providers import local

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    assert local.thread_count(nproc) == threads


COMMANDS = ["init", "validate", "schema", "render", "run", "submit", "status", "list", "logs",
            "cancel", "estimate", "providers", "package"]  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_help_shows_a_real_invocation(run_cli, command):
    code, out, _ = run_cli([command, "--help"])
    assert code == 0 and "Examples:" in out and f"genai-cloud {command}" in out.split("Examples:")[1]
