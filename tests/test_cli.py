"""The CLI: user errors are a headline + message with exit 2 and no traceback; light imports."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

GOOD = """\
name: demo
model: {name_or_path: gpt2}
data: {train: s3://bucket/train.jsonl}
"""


@pytest.fixture
def spec_file(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text(GOOD)
    return path


def test_validate_ok(spec_file, run_cli):
    code, out, _ = run_cli(["validate", str(spec_file)])
    assert code == 0 and out.startswith("OK: demo")


def test_validate_bad_spec_exit_2_no_traceback(tmp_path, run_cli):
    path = tmp_path / "bad.yaml"
    path.write_text("name: demo\nmodle: {}\n")
    code, _, err = run_cli(["validate", str(path)])
    assert code == 2
    assert "Invalid job spec" in err and "modle (line 2): unknown field" in err
    assert "Traceback" not in err


def test_unknown_provider(spec_file, run_cli):
    code, _, err = run_cli(["render", str(spec_file), "-p", "nope"])
    assert code == 2 and "valid providers:" in err


def test_set_overrides(spec_file, run_cli):
    code, out, _ = run_cli(["validate", str(spec_file), "--set", "compute.accelerator=A10G"])  # fmt: skip
    assert code == 0 and "A10G" in out


def test_init_writes_a_valid_spec(tmp_path, run_cli):
    target = tmp_path / "new.yaml"
    code, _, _ = run_cli(["init", str(target)])
    assert code == 0
    (tmp_path / "data").mkdir()  # the data it names (validate checks local inputs exist)
    (tmp_path / "data" / "train.jsonl").write_text('{"text": "hello"}\n')
    code, out, _ = run_cli(["validate", str(target)])
    assert code == 0, out
    code, _, err = run_cli(["init", str(target)])
    assert code == 2 and "--force" in err


def test_schema_is_json(run_cli):
    code, out, _ = run_cli(["schema"])
    assert code == 0 and json.loads(out)["title"] == "genai-cloud JobSpec"


def test_render_local(spec_file, tmp_path, run_cli):
    spec_file.write_text(GOOD.replace("s3://bucket/train.jsonl", str(tmp_path / "t.jsonl")))
    code, out, _ = run_cli(["render", str(spec_file), "-p", "local"])
    assert code == 0
    assert json.loads(out)["command"][-1] == "job_templates.entrypoint"


HEAVY = ("torch", "transformers", "google.cloud.aiplatform", "azure.ai.ml", "boto3")


@pytest.mark.parametrize("args", [["--help"], ["validate", "{spec}"],
                                  ["render", "{spec}", "-p", "local"]])  # fmt: skip
def test_light_commands_import_no_heavy_module(spec_file, tmp_path, args):
    spec_file.write_text(GOOD.replace("s3://bucket/train.jsonl", str(tmp_path / "t.jsonl")))
    args = [a.format(spec=spec_file) for a in args]
    code = (
        "import sys\n"
        "from genai_cloud.cli import main\n"
        "try:\n"
        f"    main({args!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        f"heavy = [m for m in sys.modules if m.startswith({HEAVY!r})]\n"
        "print('HEAVY=' + ','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY=\n" in out.stdout, out.stdout[-500:]


PRUNE_EXAMPLE = str(Path(__file__).resolve().parents[1] / "examples" / "prune.yaml")


def test_set_colon_values_stay_strings(run_cli):
    code, _, err = run_cli(["validate", PRUNE_EXAMPLE, "--set", "prune.pattern=2:4",
                              "--set", "training.max_steps=7"])  # fmt: skip
    assert code == 0, err
    code, _, err = run_cli(["validate", PRUNE_EXAMPLE, "--set", "prune.sparsity=0.7"])
    # the bad value is the one --set gave, not the file's (valid) line
    assert code == 2 and "prune.sparsity (from --set): 2:4 keeps 2 of every 4 weights" in err
    code, _, err = run_cli(["validate", PRUNE_EXAMPLE, "--set", "prune.pattern=2:4",
                            "--set", "training.lr=abc"])  # fmt: skip
    assert code == 2 and "training.lr (from --set):" in err


def test_set_relative_paths_resolve_against_the_working_directory(tmp_path, monkeypatch):
    from genai_cloud.cli import _load

    (tmp_path / "runs" / "x" / "model").mkdir(parents=True)
    spec_path = tmp_path / "examples" / "job.yaml"
    spec_path.parent.mkdir()
    spec_path.write_text(GOOD)
    monkeypatch.chdir(tmp_path)
    spec = _load(str(spec_path), ("model.name_or_path=runs/x/model",))
    assert spec.model.name_or_path == str(tmp_path / "runs" / "x" / "model")


def test_set_value_that_is_not_yaml(spec_file, run_cli):
    code, _, err = run_cli(["validate", str(spec_file), "--set", "labels=[oops"])
    assert code == 2 and "--set labels" in err and "Traceback" not in err


@pytest.mark.parametrize("saved", [True, False])
def test_run_names_the_model_folder_only_when_something_was_saved(saved, spec_file, tmp_path,
                                                                  run_cli, monkeypatch):  # fmt: skip
    from types import SimpleNamespace

    from genai_cloud.providers import local

    model_dir, output_dir = tmp_path / "run" / "model", tmp_path / "run" / "output"
    model_dir.mkdir(parents=True)
    output_dir.mkdir(parents=True)
    (output_dir / "metrics.json").write_text("{}")
    if saved:
        (model_dir / "model.safetensors").write_bytes(b"x")
    fake = SimpleNamespace(returncode=0, model_dir=model_dir, output_dir=output_dir)
    monkeypatch.setattr(local, "run_local", lambda spec, **options: fake)
    code, out, _ = run_cli(["run", str(spec_file)])
    assert code == 0 and f"Metrics: {output_dir / 'metrics.json'}" in out
    assert (f"Model: {model_dir}" in out) is saved


def test_set_a_scalar_then_a_field_under_it_is_a_clear_error(spec_file, run_cli):
    code, _, err = run_cli(["validate", str(spec_file), "--set", "training=1",
                            "--set", "training.lr=2"])  # fmt: skip
    assert code == 2 and "Traceback" not in err
    assert "--set training.lr" in err and "training was set to 1" in err


def test_set_with_an_empty_part_in_the_key(spec_file, run_cli):
    code, _, err = run_cli(["validate", str(spec_file), "--set", "training..lr=2"])
    assert code == 2 and "'training..lr=2'" in err and "Traceback" not in err


@pytest.mark.parametrize("command", [["init", "{dir}/sub/dir/x.yaml"],
                                     ["render", "{spec}", "-p", "local", "-o",
                                      "{dir}/no/such/job.json"]])  # fmt: skip
def test_output_files_get_their_parent_folders(command, spec_file, tmp_path, run_cli):
    spec_file.write_text(GOOD.replace("s3://bucket/train.jsonl", str(tmp_path / "t.jsonl")))
    args = [a.format(dir=tmp_path, spec=spec_file) for a in command]
    code, _, err = run_cli(args)
    assert code == 0, err
    assert Path(args[1 if command[0] == "init" else -1]).is_file()


def test_an_output_file_that_cannot_be_written_names_its_path(spec_file, tmp_path, run_cli):
    (tmp_path / "afile").write_text("")
    target = tmp_path / "afile" / "x.yaml"
    code, _, err = run_cli(["init", str(target)])
    assert code == 2 and "Traceback" not in err
    assert f"cannot write {target}" in err


def test_error_string_puts_the_headline_and_each_bullet_on_its_own_line():
    from genai_cloud.errors import GenaiCloudError

    many = GenaiCloudError("  - a: bad\n  - b: worse", headline="Cannot render")
    assert str(many) == "Cannot render:\n  - a: bad\n  - b: worse"
    assert str(GenaiCloudError("one line", headline="Bad option")) == "Bad option: one line"


def _readme_blocks(lang):
    import re

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    return re.findall(rf"```{lang}\n(.*?)```", readme, flags=re.DOTALL)


def test_the_readme_python_snippet_runs_as_written(monkeypatch):
    from types import SimpleNamespace

    import genai_cloud
    from genai_cloud.providers import local

    ran = []

    def fake_run_local(spec, **options):  # the real one trains for a minute: see test_tasks
        ran.append(spec.name)
        return SimpleNamespace(metrics={"perplexity_after": 5.0})

    monkeypatch.setattr(local, "run_local", fake_run_local)
    monkeypatch.setattr(genai_cloud, "run_local", fake_run_local, raising=False)  # lazy export
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    (snippet,) = _readme_blocks("python")
    namespace: dict = {}
    exec(compile(snippet, "README.md", "exec"), namespace)  # noqa: S102 - our own README
    assert ran == ["quickstart"]
    assert namespace["request"]["AlgorithmSpecification"]


def test_substitution_warnings_name_only_the_provider_rendered_for(tmp_path, run_cli):
    path = tmp_path / "h100.yaml"
    path.write_text("name: h\nmodel: {name_or_path: gpt2}\ndata: {train: s3://b/t.jsonl}\n"
                    "compute: {accelerator: H100, count: 3}\n")  # fmt: skip
    _, _, everywhere = run_cli(["validate", str(path)])
    assert "sagemaker (ml.p5.48xlarge)" in everywhere and "vertex (a3-highgpu-8g)" in everywhere
    _, _, vertex_only = run_cli(["render", str(path), "-p", "gcp",
                                 "--set", "output.uri=gs://b/runs"])  # fmt: skip
    assert "vertex (a3-highgpu-8g) rounds it up to 8" in vertex_only
    assert "sagemaker" not in vertex_only
