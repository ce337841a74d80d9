"""hf:// datasets in renders: no provider delivers, uploads or mounts them (the job loads them from
the hub), SageMaker's network isolation refuses them, and the warnings say where the job reads."""

from __future__ import annotations

import pytest

from genai_cloud.plan import make_plan
from genai_cloud.providers import get_provider
from genai_cloud.providers.local import layout
from genai_cloud.providers.sagemaker.render import SageMakerRenderError
from genai_cloud.loading import load_spec

HUB = "hf://stanfordnlp/imdb@main"
ROLE = "arn:aws:iam::123456789012:role/genai-sagemaker"
CLOUDS = {
    "sagemaker": {"eval": "s3://genai-data/eval.jsonl", "output": {"uri": "s3://genai-out/runs"},
                  "aws": {"role_arn": ROLE, "region": "us-east-1"}},
    "vertex": {"eval": "gs://bkt/data/eval.jsonl", "output": {"uri": "gs://bkt/runs"}},
    "azureml": {"eval": "azureml://datastores/workspaceblobstore/paths/data/eval.jsonl"},
}  # fmt: skip


def spec_for(provider: str, **aws):
    extra = dict(CLOUDS[provider])
    evals = extra.pop("eval")
    if aws:
        extra["aws"] = {**extra["aws"], **aws}
    return load_spec({"name": "hub-data", "model": {"name_or_path": "gpt2"},
                      "data": {"train": HUB, "eval": evals}, **extra})  # fmt: skip


def test_sagemaker_makes_a_channel_for_eval_only():
    request = get_provider("sagemaker").render(make_plan(spec_for("sagemaker"), "sagemaker"))
    assert [c["ChannelName"] for c in request["InputDataConfig"]] == ["eval"]
    assert HUB not in str(request)


def test_sagemaker_network_isolation_asks_for_a_staged_copy():
    plan = make_plan(spec_for("sagemaker", network_isolation=True), "sagemaker")
    with pytest.raises(SageMakerRenderError) as info:
        get_provider("sagemaker").render(plan)
    assert f"data.train: {HUB} cannot be downloaded under aws.network_isolation; pre-stage a " \
        "copy in S3" in info.value.message  # fmt: skip


def test_vertex_sets_no_channel_for_the_hub_dataset():
    job = get_provider("vertex").render(make_plan(spec_for("vertex"), "vertex"))
    [pool] = job["job_spec"]["worker_pool_specs"]
    env = {e["name"]: e["value"] for e in pool["container_spec"]["env"]}
    assert "GENAI_CHANNEL_TRAIN" not in env
    assert env["GENAI_CHANNEL_EVAL"] == "gs://bkt/data/eval.jsonl"


def test_azure_makes_an_input_for_eval_only():
    job = get_provider("azureml").render(make_plan(spec_for("azureml"), "azureml"))
    assert "train" not in job["inputs"] and "eval" in job["inputs"]
    assert "--data=train" not in job["command"] and HUB not in job["command"]


def test_local_run_passes_the_hub_id_to_the_job(tmp_path):
    spec = load_spec({"name": "hub-data", "model": {"name_or_path": "gpt2"},
                      "data": {"train": HUB}})  # fmt: skip
    lay = layout(make_plan(spec, "local"), run_dir=tmp_path)
    assert lay.channels == {}


def test_warnings_say_the_cloud_job_reads_the_hub():
    spec = spec_for("vertex")
    [note] = [n for n in spec.warnings(["vertex"]) if HUB in n]
    assert note.startswith(f"data.train: the cloud job downloads {HUB} from the Hugging Face Hub")
    assert "pre-stage a copy" in note
    assert not [n for n in spec.warnings([]) if HUB in n]  # a local run reads it here


def test_render_prints_the_hub_note(run_cli, tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(f"name: hub-data\nmodel: {{name_or_path: gpt2}}\ndata: {{train: '{HUB}'}}\n"
                    "output: {uri: 'gs://bkt/runs'}\n")  # fmt: skip
    code, out, err = run_cli(["render", str(path), "-p", "vertex"])
    assert code == 0, err
    assert f"Warning: data.train: the cloud job downloads {HUB}" in err
    assert "GENAI_CHANNEL_TRAIN" not in out


def test_spec_checks_hub_ids_and_their_options():
    from genai_cloud.errors import SpecError

    base = {"name": "hub-data", "model": {"name_or_path": "gpt2"}}
    with pytest.raises(SpecError, match=r"data\.eval: 'hf://a/b/c' is not a hub dataset id"):
        load_spec({**base, "data": {"train": HUB, "eval": "hf://a/b/c"}})
    with pytest.raises(SpecError) as info:
        load_spec({**base, "data": {"train": "/data/train.jsonl", "config": "plain_text"}})
    assert info.value.errors == [
        "data.config: applies to hub datasets (hf://ORG/NAME); neither data.train nor data.eval is",
    ]
    spec = load_spec({**base, "data": {"train": HUB, "streaming": True, "max_records": 1000,
                                       "config": "plain_text", "split": "train[:50%]"},
                      "training": {"max_steps": 100}})  # fmt: skip
    assert (spec.data.train, spec.data.max_records) == (HUB, 1000)


def test_without_the_datasets_library_a_table_source_says_what_to_install(monkeypatch, tmp_path):
    import sys

    from job_templates.common.records import read_records
    from job_templates.config import Config, JobError

    monkeypatch.setitem(sys.modules, "datasets", None)  # not importable
    data = Config.wrap(load_spec({"name": "x", "model": {"name_or_path": "gpt2"},
                                  "data": {"train": HUB}}).data.model_dump())  # fmt: skip
    with pytest.raises(JobError, match=r"needs the `datasets` library .*pip install 'datasets>=3.0'"):
        read_records(HUB, data)
    (tmp_path / "d.jsonl").write_text('{"text": "still read without it"}\n')
    assert read_records(tmp_path / "d.jsonl", data)[0]["text"] == "still read without it"
