"""Device / precision / compile selection (job_templates/common/device.py), without the hardware."""

from __future__ import annotations

import types

import pytest

from job_templates.common.device import (
    VOCAB_MULTIPLE,
    fast_path,
    select_compile,
    select_device,
    select_precision,
)

FAKE_XLA = types.ModuleType("torch_xla")  # a stand-in: the choice only asks whether it imported


@pytest.mark.parametrize(
    ("accelerator", "cuda", "xla", "kind"),
    [
        ("tpu-v5e", False, FAKE_XLA, "xla"),
        ("tpu-v5e", True, FAKE_XLA, "xla"),
        ("tpu-v4", False, None, "cpu"),  # no torch_xla: still runs (a laptop dry run)
        ("tpu-v4", True, None, "cuda"),
        ("A100", True, None, "cuda"),
        ("A100", False, None, "cpu"),
        ("cpu", True, FAKE_XLA, "cpu"),  # an explicit cpu request is honoured
    ],
)
def test_select_device(accelerator, cuda, xla, kind):
    choice = select_device(accelerator, cuda, xla)
    assert choice.kind == kind
    assert accelerator in choice.reason or "cpu" in choice.reason


def test_precision_auto_follows_the_device():
    import torch

    assert select_precision("auto", "cpu", False).name == "fp32"
    assert select_precision("auto", "cpu", False).autocast_dtype is None
    bf16 = select_precision("auto", "cuda", True)
    assert (bf16.name, bf16.autocast_dtype, bf16.use_grad_scaler) == ("bf16", torch.bfloat16, False)
    fp16 = select_precision("auto", "cuda", False)  # pre-Ampere GPU: fp16 needs loss scaling
    assert (fp16.name, fp16.use_grad_scaler) == ("fp16", True)
    assert select_precision("auto", "xla", False).name == "bf16"
    assert select_precision("fp32", "cuda", True).autocast_dtype is None
    assert select_precision("bf16", "cpu", False).autocast_dtype is torch.bfloat16


def test_compile_auto_is_cuda_only():
    assert select_compile("auto", "cuda") is True
    assert select_compile("auto", "cpu") is False
    assert select_compile("auto", "xla") is False
    assert select_compile("on", "cpu") is True
    assert select_compile("off", "cuda") is False


def test_fast_path_is_on_for_cuda_and_off_elsewhere():
    gpu = fast_path("cuda", "random")
    assert (gpu.tf32, gpu.attn_implementation, gpu.fused_adamw) == (True, "sdpa", True)
    assert gpu.skip_full_attention_mask is True
    assert gpu.vocab_multiple == VOCAB_MULTIPLE == 64
    # A pretrained model keeps its published embedding size.
    assert fast_path("cuda", "pretrained").vocab_multiple is None
    for kind in ("cpu", "xla"):
        off = fast_path(kind, "random")
        assert (off.tf32, off.attn_implementation, off.fused_adamw, off.vocab_multiple,
                off.skip_full_attention_mask) == (False, None, False, None, False)  # fmt: skip


def test_trainer_uses_plain_adamw_on_cpu(tiny_gpt2, tmp_path):
    from transformers import AutoModelForCausalLM

    from job_templates.common.text import Examples
    from job_templates.common.train import Trainer
    from job_templates.config import Config
    from job_templates.contract import Contract

    training = Config(max_steps=1, epochs=None, batch_size=1, grad_accum=1, precision="auto",
                      compile="auto", gradient_checkpointing=False, lr=1e-3, weight_decay=0.0,
                      warmup_steps=0, warmup_ratio=0.0, schedule="constant", seed=0)  # fmt: skip
    contract = Contract(platform="test", spec_path=tmp_path, channels={}, model_dir=tmp_path,
                        checkpoint_dir=tmp_path, output_dir=tmp_path)  # fmt: skip
    trainer = Trainer(AutoModelForCausalLM.from_pretrained(tiny_gpt2),
                      Examples([[1, 2]], [[1, 2]], 0), None, training, contract)  # fmt: skip
    assert not trainer.optimizer.defaults["fused"] and trainer.compiled is False
    assert trainer.precision.name == "fp32"
