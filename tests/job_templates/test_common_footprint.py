"""Size and speed figures that distill and prune report (job_templates/common/footprint.py)."""

from __future__ import annotations

import pytest

from job_templates.common.footprint import compare_inference, size_on_disk, weight_bytes
from job_templates.common.text import Examples

torch = pytest.importorskip("torch")


def _gpt2(layers: int):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(vocab_size=64, n_positions=32, n_embd=16, n_layer=layers,
                                      n_head=2, bos_token_id=0, eos_token_id=0))  # fmt: skip


def test_compare_inference_times_every_model_in_alternating_rounds(monkeypatch):
    examples = Examples([[1, 2, 3, 4, 5, 6]] * 8 + [[7, 8]], [[1] * 6] * 8 + [[1] * 2], 0)
    big, small = _gpt2(4).train(), _gpt2(1).eval()
    order = []
    for name, model in (("big", big), ("small", small)):
        model.register_forward_pre_hook(lambda m, a, name=name: order.append(name))
    speed = compare_inference({"big": big, "small": small}, examples, torch.device("cpu"),
                              batch_size=4, batches=3, rounds=3)  # fmt: skip
    # A warm-up pass each, then 3 rounds of 3 batches per model, models taking turns.
    assert order == ["big", "small"] + (["big"] * 3 + ["small"] * 3) * 3
    assert set(speed) == {"big", "small"}
    assert all(v["tokens_per_s"] > 0 and v["spread"] >= 1.0 for v in speed.values())
    assert big.training and not small.training  # modes restored


def test_sizes(tmp_path):
    model = _gpt2(1)
    # The LM head shares the embedding matrix: counted once, as parameters() counts it.
    assert weight_bytes(model) == sum(p.numel() * 4 for p in model.parameters())
    model.save_pretrained(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{}")
    on_disk = size_on_disk(tmp_path)
    assert on_disk == (tmp_path / "model.safetensors").stat().st_size
    assert size_on_disk("gpt2") is None  # a hub id, not a folder
