"""The fixed batch shapes of the XLA path (job_templates/common/xla.py), checked on eager CPU:
padding rows and columns, and dropping a causal LM's mask, leave the loss and gradients as
they were (the XLA runs themselves: tests/xla/)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from job_templates.common.text import IGNORE, Examples
from job_templates.common.xla import _target_counts, _unmasked, bucket_widths, pad_batch


def test_bucket_widths_are_few_multiples_of_8_covering_the_longest():
    assert bucket_widths(64) == [8, 16, 32, 64]
    assert bucket_widths(100) == [16, 32, 56, 104]
    assert bucket_widths(5) == [8]


def test_pad_batch_adds_rows_and_columns_with_nothing_to_learn():
    host = {"input_ids": torch.tensor([[5, 6, 7]]), "attention_mask": torch.tensor([[1, 1, 0]]),
            "labels": torch.tensor([[5, 6, IGNORE]])}  # fmt: skip
    out = pad_batch(host, rows=3, width=8, pad_id=0)
    assert {k: tuple(v.shape) for k, v in out.items()} == {k: (3, 8) for k in host}
    assert out["input_ids"][0].tolist() == [5, 6, 7, 0, 0, 0, 0, 0]
    assert (out["labels"][1:] == IGNORE).all() and (out["labels"][0, 3:] == IGNORE).all()
    # An added row sees one token, so no attention row is fully masked (softmax of nothing: NaN).
    assert out["attention_mask"][1:].sum(1).tolist() == [1, 1]


def test_classifier_rows_pad_with_ignored_labels():
    host = {"input_ids": torch.tensor([[5, 6]]), "attention_mask": torch.tensor([[1, 1]]),
            "labels": torch.tensor([1])}  # fmt: skip
    out = pad_batch(host, rows=4, width=None, pad_id=0)
    assert out["labels"].tolist() == [1, IGNORE, IGNORE, IGNORE]
    assert _unmasked(out) is out  # a classifier keeps its mask


def _loss_and_grads(model, batch):
    model.zero_grad()
    loss = model(**batch).loss
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]


def test_padded_unmasked_batch_trains_like_the_original():
    from transformers import AutoConfig, AutoModelForCausalLM

    tiny_gpt2 = Path(__file__).resolve().parents[2] / "examples" / "tiny-gpt2"
    config = AutoConfig.from_pretrained(tiny_gpt2)
    config.attn_pdrop = config.embd_pdrop = config.resid_pdrop = 0.0
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_gpt2, config=config)
    rows = [[3, 9, 4, 7, 2, 8], [5, 1, 6], [2, 2, 9, 4]]
    examples = Examples(rows, [list(r) for r in rows], pad_id=0)
    host = examples.batch([0, 1, 2])
    want_loss, want_grads = _loss_and_grads(model, host)
    padded = _unmasked(pad_batch(host, rows=8, width=16, pad_id=0))
    assert "attention_mask" not in padded
    got_loss, got_grads = _loss_and_grads(model, padded)
    assert torch.allclose(got_loss, want_loss, rtol=1e-6)
    assert all(torch.allclose(g, w, rtol=1e-5, atol=1e-7) for g, w in zip(got_grads, want_grads))


@pytest.mark.parametrize("labels, counts", [
    ([[1, 2, 3], [IGNORE, IGNORE, 4, 5]], [2, 2]),  # position 0 is never a target (HF shifts)
    ([0, 1, 1], [1, 1, 1]),  # a classifier example is one target
])  # fmt: skip
def test_target_counts(labels, counts):
    ids = [[1] * (len(x) if isinstance(x, list) else 2) for x in labels]
    assert _target_counts(Examples(ids, labels, pad_id=0)) == counts
