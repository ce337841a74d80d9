"""The shared training loop (job_templates/common/train.py), in-process on the tiny GPT-2."""

from __future__ import annotations

import math
import random

import pytest

from job_templates.common import checkpoint
from job_templates.common.records import read_records
from job_templates.common.text import tokenize
from job_templates.common.train import Trainer, lr_lambda, seed_everything
from job_templates.config import Config
from job_templates.contract import Contract
from job_templates.entrypoint import Preempted

torch = pytest.importorskip("torch")

TRAINING = {"epochs": 1.0, "max_steps": 12, "lr": 3e-3, "schedule": "cosine", "warmup_steps": 2,
            "warmup_ratio": 0.0, "batch_size": 4, "grad_accum": 2, "weight_decay": 0.01,
            "max_grad_norm": 1.0, "seed": 5, "precision": "auto", "compile": "auto",
            "gradient_checkpointing": False, "log_every": 4, "eval_every": None,
            "checkpoint_every": 4, "keep_checkpoints": 2, "eval_batches": 2}  # fmt: skip


@pytest.fixture(scope="module")
def blocks(tiny_gpt2, corpus_path):
    from transformers import AutoTokenizer

    from genai_cloud.spec import DataSpec

    data = Config.wrap(DataSpec(train=str(corpus_path), max_seq_len=32).model_dump())
    records = read_records(corpus_path, data)[:12]
    return tokenize(records, AutoTokenizer.from_pretrained(tiny_gpt2), data)


def _contract(tmp_path, preempt_at=None) -> Contract:
    return Contract(platform="test", spec_path=tmp_path / "spec.json", channels={},
                    model_dir=tmp_path / "model", checkpoint_dir=tmp_path / "ckpt",
                    output_dir=tmp_path / "out", extra={"preempt_at": preempt_at})  # fmt: skip


def _trainer(tiny_gpt2, blocks, tmp_path, preempt_at=None, **training) -> Trainer:
    from transformers import AutoModelForCausalLM

    seed_everything(5)
    model = AutoModelForCausalLM.from_pretrained(tiny_gpt2)  # dropout 0.1: uses the torch RNG
    return Trainer(model, blocks, blocks, Config.wrap({**TRAINING, **training}),
                   _contract(tmp_path, preempt_at))  # fmt: skip


def test_schedules_warm_up_then_decay():
    cosine = lr_lambda("cosine", warmup=4, total=20)
    assert [cosine(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert cosine(12) == pytest.approx(0.5) and cosine(20) == pytest.approx(0.0, abs=1e-12)
    linear = lr_lambda("linear", warmup=0, total=10)
    assert linear(5) == pytest.approx(0.5)
    assert lr_lambda("constant", warmup=2, total=10)(9) == 1.0


def test_data_order_depends_on_seed_and_epoch_only(tiny_gpt2, blocks, tmp_path):
    trainer = _trainer(tiny_gpt2, blocks, tmp_path)
    first = trainer.epoch_batches(0)
    torch.manual_seed(123), random.seed(123)  # global RNG consumption must not matter
    torch.rand(1000)
    assert trainer.epoch_batches(0) == first
    assert trainer.epoch_batches(1) != first
    assert sorted(i for b in first for i in b) == list(range(len(blocks)))


def test_total_steps_from_epochs_counts_a_short_last_group(tiny_gpt2, blocks, tmp_path):
    trainer = _trainer(
        tiny_gpt2, blocks, tmp_path, max_steps=None, epochs=2.0, grad_accum=3, batch_size=2
    )
    per_epoch = math.ceil(math.ceil(len(blocks) / 2) / 3)
    assert trainer.total_steps == 2 * per_epoch
    trainer.fit()
    assert trainer.state.step == trainer.total_steps and trainer.epochs_done == 2.0


def test_preempted_then_resumed_run_matches_an_uninterrupted_one(tiny_gpt2, blocks, tmp_path):
    reference = _trainer(tiny_gpt2, blocks, tmp_path / "ref", checkpoint_every=None)
    reference.fit()

    first = _trainer(tiny_gpt2, blocks, tmp_path / "run", preempt_at=7)
    with pytest.raises(Preempted):
        first.fit()  # --preempt-at sends SIGTERM: the loop flushes a checkpoint at step 7
    assert [s for s, _ in checkpoint.list_checkpoints(tmp_path / "run" / "ckpt")] == [4, 7]

    torch.manual_seed(999)  # a restarted process starts with unrelated RNG state
    second = _trainer(tiny_gpt2, blocks, tmp_path / "run")
    assert second.resume() and second.state.step == 7
    second.fit()
    assert second.state.losses == reference.state.losses
    ref_state, got = reference.model.state_dict(), second.model.state_dict()
    assert ref_state.keys() == got.keys()
    assert all(torch.equal(ref_state[k], got[k]) for k in ref_state)


def test_training_lowers_eval_loss_and_logs(tiny_gpt2, blocks, tmp_path):
    trainer = _trainer(tiny_gpt2, blocks, tmp_path, checkpoint_every=None, max_steps=10)
    before = trainer.evaluate()
    state = trainer.fit()
    after = trainer.evaluate()
    assert after["loss"] < before["loss"] - 0.5
    assert after["perplexity"] == pytest.approx(math.exp(after["loss"]))
    assert [h["step"] for h in state.history] == [4, 8, 10]
    # 34 blocks make uneven batches at the epoch boundary; only the last block has padding.
    assert 0.95 < state.tokens / state.slots <= 1.0 and state.slots >= 10 * 2 * 32
    assert state.history[-1]["tokens_per_s"] > 0


def test_full_attention_masks_are_dropped_on_the_fast_path_without_changing_the_loss(
    tiny_gpt2, blocks, tmp_path
):
    """The CUDA fast path drops all-ones masks (SDPA's flash kernel); checked here on the CPU."""
    plain = _trainer(tiny_gpt2, blocks, tmp_path / "plain", checkpoint_every=None)
    plain.fit()
    fast = _trainer(tiny_gpt2, blocks, tmp_path / "fast", checkpoint_every=None)
    fast.skip_full_mask = True
    seen = []
    default_loss = fast.loss_fn
    fast.loss_fn = lambda forward, batch: seen.append("attention_mask" in batch) or default_loss(
        forward, batch
    )
    fast.fit()
    # Packed blocks: only the last one is padded, so only the batches holding it keep a mask.
    padded = {i for i, row in enumerate(blocks.batch(range(len(blocks)))["attention_mask"])
              if not row.all()}  # fmt: skip
    order = [b for epoch in range(3) for b in fast.epoch_batches(epoch)][: len(seen)]
    assert len(padded) == 1 and len(seen) == 9 + 9 + 4  # 9 micro-batches per epoch, 2 per step
    assert seen == [bool(padded & set(batch)) for batch in order]
    assert len(fast.state.losses) == len(plain.state.losses) == 12
    assert all(isinstance(loss, float) for loss in fast.state.losses)
    assert fast.state.losses == pytest.approx(plain.state.losses, rel=1e-5)


def test_packed_data_compiles_static_graphs(tiny_gpt2, blocks, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(torch, "compile", lambda fn, **options: calls.append(options) or fn)
    packed = _trainer(tiny_gpt2, blocks, tmp_path / "packed", compile="on")
    assert packed.compiled and calls == [{"dynamic": False}]
    assert packed.compile(len) is len and calls[-1] == {"dynamic": False}
    blocks.packed = False  # padded batches change length from batch to batch
    try:
        _trainer(tiny_gpt2, blocks, tmp_path / "padded", compile="on")
    finally:
        blocks.packed = True
    assert calls[-1] == {"dynamic": None}
    assert _trainer(tiny_gpt2, blocks, tmp_path / "off", compile="off").compile(len) is len
    assert len(calls) == 3
