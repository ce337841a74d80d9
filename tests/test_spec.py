"""JobSpec loading: good specs, every error at once with field paths and lines, JSON Schema."""

import json

import pytest

from genai_cloud.errors import SpecError
from genai_cloud.loading import load_spec
from genai_cloud.spec import JobSpec, json_schema, parse_duration

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


# ---- YAML 1.1 base-60 numbers, --set paths, cross-field checks ---------------------------------

PRUNE_YAML = """\
name: p
task: prune
model:
  name_or_path: gpt2
data:
  train: s3://b/t.jsonl
prune:
  pattern: 2:4
  sparsity: {sparsity}
training:
  max_steps: 1_000
  lr: 0.001
  warmup_steps: 0x10
"""


def test_colon_numbers_stay_strings_and_plain_numbers_still_parse(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(PRUNE_YAML.format(sparsity=0.5))
    spec = load_spec(path)
    assert spec.prune.pattern == "2:4"  # YAML 1.1 reads an unquoted 2:4 as 2 * 60 + 4 = 124
    training = spec.training
    assert (training.max_steps, training.lr, training.warmup_steps) == (1000, 0.001, 16)
    from genai_cloud.loading import parse_value

    assert parse_value("1:30") == "1:30" and parse_value("-1:30:00.5") == "-1:30:00.5"
    assert parse_value("12") == 12 and parse_value("-3") == -3 and parse_value("2.5") == 2.5
    assert parse_value(".inf") == float("inf") and parse_value("true") is True


def test_lines_are_still_tracked_with_the_spec_loader(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(PRUNE_YAML.format(sparsity=0.7))
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert info.value.errors == [(
        "prune.sparsity (line 9): 2:4 keeps 2 of every 4 weights, i.e. sparsity 0.5, not 0.7; "
        "set prune.sparsity: 0.5 or prune.pattern: unstructured"
    )]


def test_relative_paths_in_overrides_resolve_against_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "examples" / "data").mkdir(parents=True)
    (tmp_path / "runs" / "x" / "model").mkdir(parents=True)
    spec_path = tmp_path / "examples" / "job.yaml"
    spec_path.write_text("name: j\nmodel: {name_or_path: gpt2}\ndata: {train: data/t.jsonl}\n")
    monkeypatch.chdir(tmp_path)
    spec = load_spec(spec_path, overrides={"model": {"name_or_path": "runs/x/model"},
                                           "data": {"eval": "e.jsonl"}})  # fmt: skip
    assert spec.model.name_or_path == str(tmp_path / "runs" / "x" / "model")
    assert spec.data.eval == str(tmp_path / "e.jsonl")  # data paths: always local, like the file's
    assert spec.data.train == str(tmp_path / "examples" / "data" / "t.jsonl")  # the file's folder
    for hub_id in ("gpt2", "org/name"):  # hub ids that are no local folder stay hub ids
        spec = load_spec(spec_path, overrides={"model": {"name_or_path": hub_id}})
        assert spec.model.name_or_path == hub_id
    spec = load_spec(spec_path, overrides={"distill": {"teacher": "runs/x/model"},
                                           "task": "distill"})  # fmt: skip
    assert spec.distill.teacher == str(tmp_path / "runs" / "x" / "model")


def test_2_4_pattern_needs_half_sparsity():
    base = {**MINIMAL, "task": "prune"}
    assert load_spec({**base, "prune": {"pattern": "2:4"}}).prune.sparsity == 0.5
    assert load_spec({**base, "prune": {"pattern": "unstructured", "sparsity": 0.7}})
    with pytest.raises(SpecError) as info:
        load_spec({**base, "prune": {"pattern": "2:4", "sparsity": 0.7}, "training": {"lr": 2}})
    text = "\n".join(info.value.errors)  # reported together with the other field errors
    assert "prune.sparsity: 2:4 keeps 2 of every 4 weights, i.e. sparsity 0.5, not 0.7" in text
    assert "set prune.sparsity: 0.5 or prune.pattern: unstructured" in text
    assert "training.lr" in text


def _spec_errors(tmp_path, text: str) -> list[str]:
    """What load_spec reports for a spec file holding ``text``."""
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    return info.value.errors


@pytest.mark.parametrize("task, why", [("prune", "pruning changes the base weights"),
                                       ("distill", "a distilled student trains all its weights")])
def test_lora_is_refused_where_the_recipe_refuses_it(task, why, tmp_path):
    errors = _spec_errors(tmp_path, f"name: l\ntask: {task}\nmodel:\n  name_or_path: gpt2\n"
                          "  lora:\n    r: 4\ndata: {train: s3://b/t.jsonl}\n"
                          "distill: {teacher: gpt2}\n")  # fmt: skip
    why += "; remove model.lora (LoRA adapters are for task 'finetune')"
    assert errors == [f"model.lora (line 5): {why}"]
    assert load_spec({**MINIMAL, "model": {"name_or_path": "gpt2", "lora": {}}}).model.lora


def test_image_metrics_need_an_extractor_and_generated_images(tmp_path):
    errors = _spec_errors(tmp_path, "name: e\ntask: evaluate\nmodel: {name_or_path: gpt2}\n"
                          "data: {train: s3://b/t.jsonl}\nevaluate:\n  image_metrics: true\n")
    assert len(errors) == 2
    assert errors[0].startswith("evaluate.feature_extractor (line 5): required when "
                                "evaluate.image_metrics is true")
    assert errors[1].startswith("evaluate.generated_images (line 5): required when "
                                "evaluate.image_metrics is true")
    ok = {"image_metrics": True, "feature_extractor": "/w/x.pt2", "generated_images": "/d/gen"}
    assert load_spec({**MINIMAL, "task": "evaluate", "evaluate": ok}).evaluate.image_metrics
    # Another task does not read the evaluate section.
    assert load_spec({**MINIMAL, "evaluate": {"image_metrics": True}}).task == "finetune"


def test_task_problems_name_their_field_and_line(tmp_path):
    errors = _spec_errors(tmp_path, "name: s\nmodel: {name_or_path: gpt2}\n"
                          "data: {train: s3://b/t.jsonl}\ncompute:\n  accelerator: A10G\n"
                          "  spot: true\n")  # fmt: skip
    assert errors[0].startswith("training.checkpoint_every: required on spot capacity")
    with pytest.raises(Exception, match="sparsity: 2:4 keeps 2 of every 4"):
        JobSpec.model_validate({**MINIMAL, "prune": {"pattern": "2:4", "sparsity": 0.25}})


def test_an_adapter_alone_on_a_random_init_is_refused(tmp_path):
    errors = _spec_errors(tmp_path, "name: r\nmodel:\n  name_or_path: gpt2\n  init: random\n"
                          "  lora:\n    merge_on_save: false\ndata: {train: s3://b/t.jsonl}\n")
    expected = ("model.lora.merge_on_save (line 6): an adapter saved alone needs its base "
                "weights, and a random init is not saved anywhere; set merge_on_save: true")
    assert errors == [expected]
    merged = {"name_or_path": "gpt2", "init": "random", "lora": {"merge_on_save": True}}
    assert load_spec({**MINIMAL, "model": merged}).model.lora.merge_on_save


def test_a_file_that_is_not_utf8_is_a_spec_error_naming_the_byte(tmp_path):
    path = tmp_path / "utf16.yaml"
    path.write_bytes("name: demo\n".encode("utf-16"))  # starts with the BOM \xff\xfe
    with pytest.raises(SpecError) as info:
        load_spec(path)
    (problem,) = info.value.errors
    assert problem.startswith(f"{path}: not UTF-8 text (byte 0 is 0xff")
    assert "UTF-16" in problem
    latin1 = tmp_path / "latin1.yaml"
    data = "name: demo\nlabels: {team: caf\xe9}\n".encode("latin-1")
    latin1.write_bytes(data)
    at = data.index(b"\xe9")
    with pytest.raises(SpecError, match=rf"latin1.yaml: not UTF-8 text \(byte {at} is 0xe9, line 2"):
        load_spec(latin1)


def test_duplicate_keys_are_an_error_naming_both_lines(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text(
        "name: demo\n"
        "model: {name_or_path: gpt2}\n"
        "data: {train: s3://b/t.jsonl}\n"
        "training:\n"
        "  batch_size: 16\n"
        "  lr: 0.001\n"
        "  batch_size: 32\n"
        "name: other\n"
    )
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert info.value.errors == [
        f"{path}:7: training.batch_size appears twice in one mapping (lines 5 and 7); keep one",
        f"{path}:8: name appears twice in one mapping (lines 1 and 8); keep one",
    ]


def test_same_key_in_different_mappings_and_merge_keys_are_fine(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text(
        "name: demo\n"
        "model: {name_or_path: gpt2}\n"
        "data: {train: s3://b/t.jsonl}\n"
        "labels: &base {team: nlp}\n"
        "env:\n"
        "  <<: *base\n"
        "  team: vision\n"
    )
    assert load_spec(path).env == {"team": "vision"}


def test_duplicate_keys_in_a_set_value():
    import yaml

    from genai_cloud.loading import parse_value

    with pytest.raises(yaml.YAMLError, match="'team' appears twice"):
        parse_value("{team: a, team: b}")


def test_errors_in_set_values_say_from_set_not_the_file_line(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("name: demo\nmodel: {name_or_path: gpt2}\ndata: {train: s3://b/t.jsonl}\n"
                    "training:\n  lr: 0.001\n  epochs: -1\n")  # fmt: skip
    with pytest.raises(SpecError) as info:
        load_spec(path, overrides={"training": {"lr": "abc"}})
    text = "\n".join(info.value.errors)
    assert "training.lr (from --set):" in text and "line 5" not in text
    assert "training.epochs (line 6):" in text  # the file's own mistake keeps its line
    with pytest.raises(SpecError, match=r"training \(from --set\):"):
        load_spec(path, overrides={"training": 1})


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"])
def test_an_empty_spec_file_says_so_and_names_the_file(tmp_path, text):
    path = tmp_path / "empty.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    (problem,) = info.value.errors
    assert problem.startswith(f"{path}: the file holds no spec; a spec needs at least `name:`")
