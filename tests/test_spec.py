"""JobSpec loading: good specs, every error at once with field paths and lines, JSON Schema."""

import json

import pytest

from genai_cloud.errors import SpecError
from genai_cloud.spec import JobSpec, json_schema, load_spec, parse_duration

MINIMAL = {"name": "demo", "model": {"name_or_path": "gpt2"}, "data": {"train": "s3://b/t.jsonl"}}


def test_minimal_spec_fills_defaults():
    spec = load_spec(MINIMAL)
    assert spec.task == "finetune"
    assert spec.training.precision == "auto"
    assert spec.compute.accelerator == "cpu"
    assert spec.compute.max_runtime == 86_400


def test_yaml_errors_are_all_reported_with_paths_and_lines(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        "name: demo\n"
        "task: finetun\n"
        "model:\n"
        "  name_or_path: gpt2\n"
        "  hed: causal-lm\n"
        "data:\n"
        "  train: t.jsonl\n"
        "training:\n"
        "  lr: -1\n"
        "compute:\n"
        "  accelerator: B300\n"
    )
    with pytest.raises(SpecError) as info:
        load_spec(path)
    errors = info.value.errors
    assert len(errors) == 4
    text = "\n".join(errors)
    assert "task (line 2)" in text and "'finetune'" in text
    assert "model.hed (line 5): unknown field 'hed'; valid fields: name_or_path" in text
    assert "training.lr (line 9)" in text
    assert "compute.accelerator (line 11)" in text and "H100" in text


def test_malformed_yaml_names_the_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: demo\nmodel: [unclosed\n")
    with pytest.raises(SpecError, match=r"broken.yaml:\d+: not valid YAML"):
        load_spec(path)


def test_missing_spec_file(tmp_path):
    with pytest.raises(SpecError, match="spec file not found"):
        load_spec(tmp_path / "nope.yaml")


def test_json_spec_and_relative_data_paths(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "train.jsonl").write_text('{"text": "x"}\n')
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({**MINIMAL, "data": {"train": "d/train.jsonl"}}))
    spec = load_spec(path)
    assert spec.data.train == str(tmp_path / "d" / "train.jsonl")
    assert spec.model.name_or_path == "gpt2"  # a hub id is left alone


@pytest.mark.parametrize("value, seconds", [(90, 90), ("90s", 90), ("30m", 1800), ("2h", 7200),
                                            ("1.5h", 5400), ("1d", 86400)])  # fmt: skip
def test_durations(value, seconds):
    assert parse_duration(value) == seconds


def test_task_sections_required():
    with pytest.raises(SpecError, match="distill: required"):
        load_spec({**MINIMAL, "task": "distill"})
    with pytest.raises(SpecError, match="model: required"):
        load_spec({"name": "x", "task": "finetune", "data": {"train": "t"}})
    toy = load_spec({"name": "x", "task": "pretrain-scratch", "scratch": {"toy_task": "copy"}})
    assert toy.data is None and toy.scratch.toy_task == "copy"


def test_secrets_must_be_references():
    ok = load_spec({**MINIMAL, "secrets": {
        "HF_TOKEN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:hf-AbCdEf",
        "WANDB_API_KEY": "projects/p/secrets/wandb",
        "OTHER": "https://myvault.vault.azure.net/secrets/other",
    }})  # fmt: skip
    assert len(ok.secrets) == 3
    with pytest.raises(SpecError, match="must be a reference, not a value"):
        load_spec({**MINIMAL, "secrets": {"HF_TOKEN": "hf_abc123"}})


def test_spot_without_checkpoints_is_an_error_unless_allowed():
    with pytest.raises(SpecError, match="training.checkpoint_every: required on spot"):
        load_spec({**MINIMAL, "compute": {"accelerator": "A10G", "spot": True}})
    with pytest.raises(SpecError, match="training.checkpoint_every"):
        load_spec({**MINIMAL, "gcp": {"strategy": "SPOT"}})
    allowed = load_spec({**MINIMAL, "compute": {"accelerator": "A10G", "spot": True,
                                                "allow_spot_without_checkpoints": True}})
    assert any("checkpoint_every" in w for w in allowed.warnings())


def test_labels_follow_the_strictest_cloud():
    with pytest.raises(SpecError, match="label"):
        load_spec({**MINIMAL, "labels": {"Team": "x"}})


def test_classification_head_needs_classification_data():
    with pytest.raises(SpecError, match="data.format"):
        load_spec({**MINIMAL, "model": {"name_or_path": "m", "head": "sequence-classification"}})


def test_json_schema_covers_the_sections():
    schema = json_schema()
    assert {"model", "data", "training", "compute", "aws", "gcp", "azure"} <= set(
        schema["properties"]
    )
    assert schema["additionalProperties"] is False


def test_canonical_json_round_trips():
    spec = load_spec(MINIMAL)
    again = JobSpec.model_validate(json.loads(spec.to_json()))
    assert again == spec


def test_image_only_evaluation_needs_no_model_or_data():
    spec = load_spec({"name": "fid", "task": "evaluate", "evaluate": {
        "image_metrics": True, "perplexity": False, "feature_extractor": "/w/extractor.pt2",
        "generated_images": "/d/gen", "real_images": "/d/real"}})  # fmt: skip
    assert spec.model is None and spec.data is None
    with pytest.raises(SpecError, match="model: required"):
        load_spec({"name": "ppl", "task": "evaluate", "data": {"train": "/d/t.jsonl"}})
