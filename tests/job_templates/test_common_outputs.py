"""Outputs (job_templates/common/outputs.py): atomic metrics, loss plot, HF model dir."""

from __future__ import annotations

import json

from job_templates.common.outputs import plot_losses, save_model, write_metrics


def test_metrics_are_written_whole(tmp_path):
    path = write_metrics(tmp_path / "out", {"b": 1.5, "a": [1, 2]})
    assert json.loads(path.read_text()) == {"a": [1, 2], "b": 1.5}
    assert [p.name for p in path.parent.iterdir()] == ["metrics.json"]  # no temp file left


def test_loss_plot_is_a_png(tmp_path):
    path = plot_losses(tmp_path / "plots" / "loss.png", [3.0 - i * 0.1 for i in range(25)],
                       [{"step": 0, "loss": 3.1}, {"step": 25, "loss": 0.7}])  # fmt: skip
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_saved_model_loads_with_from_pretrained(tiny_gpt2, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_gpt2)
    names = save_model(model, AutoTokenizer.from_pretrained(tiny_gpt2), tmp_path / "model")
    assert "model.safetensors" in names and "tokenizer.json" in names
    assert not any(p.name.startswith(".") for p in (tmp_path / "model").iterdir())
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "model")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                 again.state_dict().values()))  # fmt: skip
    AutoTokenizer.from_pretrained(tmp_path / "model")
