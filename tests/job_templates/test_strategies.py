"""Strategy selection and the pieces FSDP is built from, in one process (the 2-process runs are
in test_fsdp.py)."""

from __future__ import annotations

import pytest

from job_templates.common import strategies
from job_templates.common.device import select_precision
from job_templates.config import Config

torch = pytest.importorskip("torch")


def _training(**kw) -> Config:
    return Config({"strategy": "auto", "fsdp": {}, "gradient_checkpointing": False,
                   "batch_size": 2, **kw})  # fmt: skip


def test_strategy_follows_the_spec_and_the_world_size():
    fp32 = select_precision("fp32", "cpu", False)
    assert strategies.create(_training(), 1, "cpu", fp32, None).name == "single"
    assert strategies.create(_training(strategy="fsdp"), 1, "cpu", fp32, None).name == "single"
    assert strategies.create(_training(), 2, "cpu", fp32, None).name == "ddp"  # CPU: auto = DDP
    fsdp = strategies.create(_training(strategy="fsdp", fsdp={"cpu_offload": True}), 4, "cpu",
                             fp32, None)  # fmt: skip
    assert fsdp.name == "fsdp" and fsdp.sharded and fsdp.cpu_offload
    assert not fsdp.mixed_precision  # bf16 compute only when the run's precision is bf16
    bf16 = select_precision("bf16", "cuda", True)
    assert strategies.create(_training(strategy="fsdp"), 4, "cuda", bf16, None).mixed_precision


def test_blocks_are_the_classes_the_model_names_and_peft_wrappers_are_seen_through(tiny_gpt2):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_gpt2)
    assert [type(b).__name__ for b in strategies.transformer_blocks(model)] == ["GPT2Block"] * 2
    peft = get_peft_model(model, LoraConfig(r=2, target_modules=["c_attn"]))
    assert len(strategies.transformer_blocks(peft)) == 2
    with pytest.raises(ValueError, match="names no transformer block class"):
        strategies.transformer_blocks(torch.nn.Linear(2, 2))


def test_meta_copy_holds_no_weights_keeps_ties_and_takes_the_trained_ones(tiny_gpt2):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_gpt2)
    shell = strategies.meta_copy(model)
    assert all(p.is_meta for p in shell.parameters())
    assert shell.lm_head.weight is shell.transformer.wte.weight  # GPT-2's tied embeddings
    assert not any(p.is_meta for p in model.parameters())  # the original is untouched
    shell.load_state_dict({k: v.clone() for k, v in model.state_dict().items()}, assign=True)
    shell.tie_weights()
    assert shell.lm_head.weight is shell.transformer.wte.weight
    ids = torch.tensor([[1, 2, 3, 4]])
    assert torch.equal(shell(input_ids=ids).logits, model(input_ids=ids).logits)


def test_auto_on_a_gpu_asks_the_memory_plan(tiny_gpt2, monkeypatch):
    """``auto`` on CUDA: DDP where the plan fits it into this GPU's memory, FSDP where not (the
    GPU's size stood in for; the plan is the one validate uses)."""
    from types import SimpleNamespace

    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_gpt2)
    bf16 = select_precision("bf16", "cuda", True)
    sizes = {"gpu": 80 * 2**30}
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda index: SimpleNamespace(total_memory=sizes["gpu"]))  # fmt: skip
    train = SimpleNamespace(input_ids=[[0] * 64])
    assert strategies.create(_training(), 8, "cuda", bf16, model, train).name == "ddp"
    sizes["gpu"] = 2**20  # 1 MiB: not even the tiny model's AdamW state fits
    assert strategies.create(_training(), 8, "cuda", bf16, model, train).name == "fsdp"
