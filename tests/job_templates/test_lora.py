"""LoRA adapters (model.lora): targets per architecture, training, exact resume, both save modes,
and the finetune recipe end to end with adapters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from job_templates import entrypoint
from job_templates.common import checkpoint
from job_templates.common.lora import apply_lora, lora_targets
from job_templates.common.model import load_model_and_tokenizer
from job_templates.common.outputs import save_model
from job_templates.common.records import read_records
from job_templates.common.text import tokenize
from job_templates.common.train import Trainer, seed_everything
from job_templates.config import Config, JobError
from job_templates.contract import Contract
from job_templates.entrypoint import Preempted

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

LORA = {"r": 4, "alpha": 8, "dropout": 0.05, "target_modules": [], "merge_on_save": True}
TRAINING = {"epochs": 1.0, "max_steps": 10, "lr": 1e-2, "schedule": "constant", "warmup_steps": 0,
            "warmup_ratio": 0.0, "batch_size": 4, "grad_accum": 1, "weight_decay": 0.0,
            "max_grad_norm": 1.0, "seed": 3, "precision": "auto", "compile": "auto",
            "gradient_checkpointing": False, "log_every": 5, "eval_every": None,
            "checkpoint_every": 4, "keep_checkpoints": 2, "eval_batches": 2}  # fmt: skip


def _model_spec(path, **extra) -> Config:
    return Config.wrap({"name_or_path": str(path), "revision": None, "head": "causal-lm",
                        "num_labels": None, "dtype": "auto", "init": "pretrained",
                        "trust_remote_code": False, "lora": LORA, **extra})  # fmt: skip


def _contract(tmp_path, preempt_at=None) -> Contract:
    return Contract(platform="test", spec_path=tmp_path / "spec.json", channels={},
                    model_dir=tmp_path / "model", checkpoint_dir=tmp_path / "ckpt",
                    output_dir=tmp_path / "out", extra={"preempt_at": preempt_at})  # fmt: skip


@pytest.fixture(scope="module")
def blocks(tiny_gpt2, corpus_path):
    from transformers import AutoTokenizer

    from genai_cloud.spec import DataSpec

    data = Config.wrap(DataSpec(train=str(corpus_path), max_seq_len=32).model_dump())
    return tokenize(read_records(corpus_path, data)[:16], AutoTokenizer.from_pretrained(tiny_gpt2),
                    data)  # fmt: skip


def _lora_trainer(tiny_gpt2, blocks, tmp_path, preempt_at=None, **training) -> Trainer:
    seed_everything(3)
    model, _ = load_model_and_tokenizer(_model_spec(tiny_gpt2))
    model = apply_lora(model, Config.wrap(LORA))
    return Trainer(model, blocks, blocks, Config.wrap({**TRAINING, **training}),
                   _contract(tmp_path, preempt_at))  # fmt: skip


def _tiny(config_cls, **kwargs):
    from transformers import AutoModel

    return AutoModel.from_config(config_cls(**kwargs))


def test_default_targets_follow_the_architecture(tiny_gpt2):
    from transformers import AutoModelForCausalLM, BertConfig, LlamaConfig

    gpt2 = AutoModelForCausalLM.from_pretrained(tiny_gpt2)
    assert lora_targets(gpt2) == ["c_attn", "attn.c_proj"]
    llama = _tiny(LlamaConfig, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                  num_attention_heads=2, num_key_value_heads=2, vocab_size=64)  # fmt: skip
    assert lora_targets(llama) == ["q_proj", "k_proj", "v_proj", "o_proj"]
    bert = _tiny(BertConfig, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                 num_attention_heads=2, vocab_size=64)  # fmt: skip
    assert lora_targets(bert) == ["query", "value"]
    assert lora_targets(gpt2, ["c_fc"]) == ["c_fc"]
    with pytest.raises(JobError, match="c_attn") as err:  # the message lists real layer names
        lora_targets(gpt2, ["q_proj"])
    assert err.value.where == "model.lora.target_modules"


@pytest.mark.parametrize("target, kind", [("attn", "GPT2Attention"), ("mlp", "GPT2MLP"),
                                          ("h", "ModuleList")])  # fmt: skip
def test_a_target_naming_a_module_lora_cannot_wrap_is_a_job_error(tiny_gpt2, target, kind):
    from transformers import AutoModelForCausalLM

    gpt2 = AutoModelForCausalLM.from_pretrained(tiny_gpt2)
    with pytest.raises(JobError, match=f"{target!r} matches .*LoRA cannot adapt.*{kind}") as err:
        apply_lora(gpt2, Config.wrap({**LORA, "target_modules": [target]}))  # before peft sees it
    assert err.value.where == "model.lora.target_modules"
    assert "c_attn, c_fc, c_proj" in str(err.value)  # lists the layers it can adapt


def test_targets_of_every_kind_peft_wraps_are_accepted(tiny_gpt2):
    from transformers import AutoModelForCausalLM

    gpt2 = AutoModelForCausalLM.from_pretrained(tiny_gpt2)
    # Conv1D (GPT-2), an embedding, a full dotted name, nn.Linear (the untied-or-not head)
    targets = ["c_fc", "wte", "transformer.h.0.attn.c_attn", "lm_head"]
    assert lora_targets(gpt2, targets) == targets


def test_only_adapters_train_base_stays_and_loss_drops(tiny_gpt2, blocks, tmp_path):
    trainer = _lora_trainer(tiny_gpt2, blocks, tmp_path, checkpoint_every=None)
    trainable = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_A" in n or "lora_B" in n for n in trainable)
    # 2 layers x (c_attn + attn.c_proj) x (A + B)
    assert len(trainable) == 2 * 2 * 2
    frozen = {n: p.detach().clone() for n, p in trainer.model.named_parameters()
              if not p.requires_grad}  # fmt: skip
    before = trainer.evaluate()["loss"]
    trainer.fit()
    after = trainer.evaluate()["loss"]
    assert after < before - 0.1, (before, after)  # measured: 7.48 -> 7.33 (a random-init base)
    assert all(
        torch.equal(frozen[n], p) for n, p in trainer.model.named_parameters() if n in frozen
    )


def test_classifier_lora_trains_the_new_head_too(tiny_gpt2):
    model, _ = load_model_and_tokenizer(_model_spec(tiny_gpt2, head="sequence-classification"),
                                        num_labels=2)  # fmt: skip
    model = apply_lora(model, Config.wrap(LORA), "sequence-classification")
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert any(".score." in n for n in trainable)  # GPT-2's classification head is "score"
    assert all("lora_" in n or ".score." in n for n in trainable)


def test_lora_resume_is_bit_exact(tiny_gpt2, blocks, tmp_path):
    reference = _lora_trainer(tiny_gpt2, blocks, tmp_path / "ref", checkpoint_every=None)
    reference.fit()
    first = _lora_trainer(tiny_gpt2, blocks, tmp_path / "run", preempt_at=6)
    with pytest.raises(Preempted):
        first.fit()
    assert [s for s, _ in checkpoint.list_checkpoints(tmp_path / "run" / "ckpt")] == [4, 6]
    torch.manual_seed(999)  # a restarted process starts with unrelated RNG state
    second = _lora_trainer(tiny_gpt2, blocks, tmp_path / "run")
    assert second.resume() and second.state.step == 6
    second.fit()
    assert second.state.losses == reference.state.losses
    expected, got = reference.model.state_dict(), second.model.state_dict()
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[k], got[k]) for k in expected)


@pytest.fixture(scope="module")
def trained_adapter(tiny_gpt2, blocks, tmp_path_factory):
    """A trained LoRA model saved adapter-only, and its logits on a probe batch."""
    tmp = tmp_path_factory.mktemp("lora")
    trainer = _lora_trainer(tiny_gpt2, blocks, tmp, checkpoint_every=None)
    trainer.fit()
    model = trainer.model.eval()
    probe = blocks.batch([0, 1])
    with torch.no_grad():
        logits = model(input_ids=probe["input_ids"]).logits
    _, tokenizer = load_model_and_tokenizer(_model_spec(tiny_gpt2))
    save_model(model, tokenizer, tmp / "adapter", merge_adapters=False)
    return tmp / "adapter", probe["input_ids"], logits


def test_adapter_only_save_round_trips(tiny_gpt2, trained_adapter):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    folder, ids, logits = trained_adapter
    names = {p.name for p in folder.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json"} <= names
    assert "model.safetensors" not in names  # the base weights are not copied
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["r"] == 4 and config["fan_in_fan_out"] is True  # GPT-2's Conv1D layout
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_gpt2), folder)
    with torch.no_grad():
        assert torch.allclose(model.eval()(input_ids=ids).logits, logits, atol=1e-5)


def test_an_adapter_folder_loads_as_its_base_with_the_adapter_merged(tiny_gpt2, trained_adapter):
    folder, ids, logits = trained_adapter
    model, tokenizer = load_model_and_tokenizer(_model_spec(folder, lora=None))
    assert type(model).__name__ == "GPT2LMHeadModel"  # a plain model, not a PeftModel
    assert not any("lora" in k for k in model.state_dict())
    assert all(p.requires_grad for p in model.parameters())  # recipes may train it all
    assert model.training and tokenizer.pad_token is not None
    with torch.no_grad():
        got = model.eval()(input_ids=ids).logits
    assert torch.allclose(got, logits, atol=1e-5), (got - logits).abs().max()


def test_an_adapter_without_a_tokenizer_takes_the_bases(tiny_gpt2, trained_adapter, tmp_path):
    import shutil

    folder, ids, logits = trained_adapter
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        shutil.copy(folder / name, tmp_path / name)
    model, tokenizer = load_model_and_tokenizer(_model_spec(tmp_path, lora=None))
    assert len(tokenizer) == len(load_model_and_tokenizer(_model_spec(tiny_gpt2))[1])
    with torch.no_grad():
        assert torch.allclose(model.eval()(input_ids=ids).logits, logits, atol=1e-5)


def test_an_adapter_whose_base_is_gone_says_so(trained_adapter, tmp_path):
    import shutil

    folder, _, _ = trained_adapter
    shutil.copytree(folder, tmp_path / "adapter")
    config_path = tmp_path / "adapter" / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["base_model_name_or_path"] = str(tmp_path / "base-gone")
    config_path.write_text(json.dumps(config))
    with pytest.raises(JobError, match="LoRA adapter .* whose base model is .*base-gone") as err:
        load_model_and_tokenizer(_model_spec(tmp_path / "adapter", lora=None))
    assert err.value.where == "model.name_or_path"
    assert "no such folder" in str(err.value) and "merge_on_save: true" in str(err.value)
    # an adapter trained for a causal LM cannot be loaded under a classification head
    with pytest.raises(JobError, match="model.head: causal-lm") as err:
        load_model_and_tokenizer(_model_spec(folder, lora=None, head="sequence-classification"))
    assert err.value.where == "model.head"


def test_merged_save_loads_with_from_pretrained_and_matches(tiny_gpt2, trained_adapter, tmp_path):
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, ids, logits = trained_adapter
    adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_gpt2), folder)
    save_model(adapted, AutoTokenizer.from_pretrained(folder), tmp_path, merge_adapters=True)
    assert not any("lora" in k for k in load_file(tmp_path / "model.safetensors"))
    merged = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        got = merged(input_ids=ids).logits
    base = AutoModelForCausalLM.from_pretrained(tiny_gpt2).eval()
    with torch.no_grad():
        assert not torch.allclose(base(input_ids=ids).logits, logits, atol=1e-3)  # LoRA mattered
    assert torch.allclose(got, logits, atol=1e-5), (got - logits).abs().max()


def test_finetune_with_lora_end_to_end(make_spec, tmp_path):
    from transformers import AutoModelForCausalLM

    spec = make_spec(model={"lora": {"r": 4, "alpha": 8}},
                     training={"max_steps": 8, "lr": 1e-2, "log_every": 4})  # fmt: skip
    spec_path = tmp_path / "spec.json"
    from genai_cloud.loading import load_spec

    spec_path.write_text(load_spec(spec).to_json())
    code = entrypoint.main([f"--spec={spec_path}", f"--model-dir={tmp_path / 'model'}",
                            f"--checkpoint-dir={tmp_path / 'ckpt'}",
                            f"--output-dir={tmp_path / 'out'}"])  # fmt: skip
    assert code == 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["params"]["trainable"] < metrics["params"]["total"] / 10
    assert metrics["lora"]["r"] == 4 and metrics["eval_loss_after"] < metrics["eval_loss_before"]
    model_dir = Path(tmp_path / "model")
    assert (model_dir / "model.safetensors").is_file()  # merged by default
    assert "lora" in (model_dir / "README.md").read_text().split("---")[1]  # card metadata tags
    AutoModelForCausalLM.from_pretrained(model_dir)


def test_adapter_records_the_base_as_the_spec_names_it(tiny_gpt2, trained_adapter, tmp_path):
    """peft writes the folder the base was loaded from (for an s3:// base, a temporary download);
    the saved adapter names the base the way the spec did, so it can be found again."""
    folder, _, _ = trained_adapter
    model, tokenizer = load_model_and_tokenizer(_model_spec(tiny_gpt2))
    model = apply_lora(model, Config.wrap(LORA))
    save_model(model, tokenizer, tmp_path / "out", merge_adapters=False,
               base_model="s3://models/tiny-gpt2")  # fmt: skip
    config = json.loads((tmp_path / "out" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "s3://models/tiny-gpt2"
    original = json.loads((folder / "adapter_config.json").read_text())
    assert original["base_model_name_or_path"] == str(tiny_gpt2)  # no base_model: peft's value
