"""``data.streaming`` (job_templates/common/streaming.py): records read, tokenized and packed as
the Trainer consumes them, from a local JSONL far bigger than what a short run reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from genai_cloud.loading import load_spec
from genai_cloud.spec import DataSpec
from job_templates import entrypoint
from job_templates.common import records as records_module
from job_templates.common.train import Trainer, seed_everything
from job_templates.config import Config, JobError, Preempted
from job_templates.contract import Contract

torch = pytest.importorskip("torch")
streaming = pytest.importorskip("job_templates.common.streaming")

LINES = 20_000  # ~1.3 MB: what a 4-step run must not read whole


@pytest.fixture(scope="module")
def big_jsonl(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("stream") / "big.jsonl"
    with path.open("w") as out:
        for i in range(LINES):
            out.write(json.dumps({"text": f"job {i} finished training in {i % 97} minutes"}) + "\n")
    return path


def _data(train, **extra) -> Config:
    return Config.wrap(DataSpec(train=str(train), streaming=True, **extra).model_dump())


def _contract(tmp_path, rank=0, world=1, preempt_at=None) -> Contract:
    return Contract(platform="test", spec_path=tmp_path / "spec.json", channels={},
                    model_dir=tmp_path / "model", checkpoint_dir=tmp_path / "ckpt",
                    output_dir=tmp_path / "out", rank=rank, world_size=world,
                    extra={"preempt_at": preempt_at})  # fmt: skip


@pytest.fixture
def counted_reads(monkeypatch) -> dict:
    """Counts every record the JSONL reader parses and checks (all ranks' shares included)."""
    seen = {"records": 0}
    check = records_module.check_record

    def counting(row, data, where):
        seen["records"] += 1
        check(row, data, where)

    monkeypatch.setattr(records_module, "check_record", counting)
    return seen


def test_a_streaming_run_trains_max_steps_reading_a_sliver_of_the_data(
    make_spec, big_jsonl, tmp_path, counted_reads
):
    spec = make_spec(
        data={"train": str(big_jsonl), "streaming": True, "max_seq_len": 32,
              "shuffle_buffer": 16, "max_eval_records": 8, "eval_fraction": 0.1},
        training={"max_steps": 4, "batch_size": 2, "log_every": 2, "eval_batches": 1},
    )  # fmt: skip
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(load_spec(spec).to_json())
    code = entrypoint.main([f"--spec={spec_path}", f"--model-dir={tmp_path / 'model'}",
                            f"--checkpoint-dir={tmp_path / 'ckpt'}",
                            f"--output-dir={tmp_path / 'out'}"])  # fmt: skip
    assert code == 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    stats = metrics["dataset"]
    assert metrics["steps"] == 4 and len(metrics["train_losses"]) == 4
    assert stats["blocks"] == 4 * 2 and stats["peak_buffer"] == 16
    # 8 blocks of 32 tokens need at most 8 * 32 / 12 records (a record is ~12 tokens) beyond the
    # buffer's 16; the 8 held-out eval records are read once more by the stream (and skipped).
    assert stats["records_read"] <= 16 + 8 * 32 // 10 + 2
    assert counted_reads["records"] <= 8 + 8 + stats["records_read"] + 1
    assert counted_reads["records"] < LINES / 100
    assert metrics["eval_before"]["loss"] > metrics["eval_after"]["loss"]


def test_ranks_read_disjoint_shards_and_skip_the_held_out_head(big_jsonl, tmp_path):
    data = _data(big_jsonl, max_records=300, eval_fraction=0.1, max_eval_records=20)
    source, evals = streaming.stream_splits(data, _contract(tmp_path))
    held = {r["_source"] for r in evals}
    shards = [{r["_source"] for r in source.records(rank, 2)} for rank in (0, 1)]
    assert len(held) == 20 and len(shards[0]) == len(shards[1]) == 150
    assert not shards[0] & shards[1] and not held & (shards[0] | shards[1])
    lines = {f"{big_jsonl}:{n}" for n in range(1, 321)}
    assert held | shards[0] | shards[1] == lines  # held-out head, then max_records of training


def test_each_rank_tokenizes_only_its_own_records(tiny_gpt2, big_jsonl, tmp_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_gpt2)
    data = _data(big_jsonl, max_records=40, packing=False, shuffle_buffer=4, eval_fraction=0.0)
    texts = []
    for rank in (0, 1):
        source, _ = streaming.stream_splits(data, None)
        stream = streaming.TokenStream(source, tokenizer, data, 3, _contract(tmp_path, rank, 2))
        texts.append([tokenizer.decode(b["input_ids"]) for b in stream.epoch_blocks(0)])
        assert stream.stats["records_read"] == 20 and stream.stats["peak_buffer"] == 4
    assert len(texts[0]) == len(texts[1]) == 20 and not set(texts[0]) & set(texts[1])
    assert {int(t.split()[1]) for t in texts[0] + texts[1]} == set(range(40))


def test_epochs_reshuffle_and_an_empty_share_is_an_error(tiny_gpt2, big_jsonl, tmp_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_gpt2)
    data = _data(big_jsonl, max_records=12, packing=False, shuffle_buffer=12, eval_fraction=0.0)
    source, _ = streaming.stream_splits(data, None)
    stream = streaming.TokenStream(source, tokenizer, data, 3, _contract(tmp_path))
    first, second = (list(map(str, stream.epoch_blocks(e))) for e in (0, 1))
    assert first != second and sorted(first) == sorted(second)
    data = _data(big_jsonl, max_records=1, eval_fraction=0.0)
    lonely = streaming.TokenStream(streaming.stream_splits(data, None)[0], tokenizer, data, 3,
                                   _contract(tmp_path, rank=1, world=2))  # fmt: skip
    with pytest.raises(JobError, match=r"data\.train: rank 1 of 2 got no training data"):
        next(iter(lonely))


def _stream_trainer(tiny_gpt2, big_jsonl, tmp_path, preempt_at=None) -> Trainer:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    data = _data(big_jsonl, max_seq_len=32, shuffle_buffer=8, eval_fraction=0.0)
    contract = _contract(tmp_path, preempt_at=preempt_at)
    source, _ = streaming.stream_splits(data, contract)
    stream = streaming.TokenStream(source, AutoTokenizer.from_pretrained(tiny_gpt2), data, 5,
                                   contract)  # fmt: skip
    training = {"epochs": None, "max_steps": 6, "lr": 3e-3, "schedule": "cosine",
                "warmup_steps": 1, "warmup_ratio": 0.0, "batch_size": 2, "grad_accum": 2,
                "weight_decay": 0.0, "max_grad_norm": 1.0, "seed": 5, "precision": "fp32",
                "compile": "off", "gradient_checkpointing": False, "log_every": 3,
                "eval_every": None, "checkpoint_every": 3, "keep_checkpoints": 2,
                "eval_batches": None}  # fmt: skip
    seed_everything(5)
    model = AutoModelForCausalLM.from_pretrained(tiny_gpt2)  # dropout: uses the torch RNG
    return Trainer(model, stream, None, Config.wrap(training), contract)


def test_a_resumed_stream_trains_on_the_blocks_it_had_not_reached(tiny_gpt2, big_jsonl, tmp_path):
    straight = _stream_trainer(tiny_gpt2, big_jsonl, tmp_path / "a")
    straight.fit()
    interrupted = _stream_trainer(tiny_gpt2, big_jsonl, tmp_path / "b", preempt_at=3)
    with pytest.raises(Preempted):
        interrupted.fit()
    assert interrupted.state.offset == 3 * 2 * 2  # blocks of epoch 0 consumed by 3 steps
    resumed = _stream_trainer(tiny_gpt2, big_jsonl, tmp_path / "b")
    assert resumed.resume() and resumed.state.step == 3
    resumed.fit()
    assert resumed.state.step == 6 and resumed.state.losses == straight.state.losses
    for name, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name


def test_streaming_without_max_steps_stops_the_trainer_too(tiny_gpt2, big_jsonl, tmp_path):
    trainer = _stream_trainer(tiny_gpt2, big_jsonl, tmp_path)
    trainer.training.max_steps = None
    with pytest.raises(JobError, match=r"training\.max_steps: required with data\.streaming"):
        trainer._total_steps()


def test_distillation_streams_and_compares_on_the_streams_head(make_spec, tiny_gpt2, big_jsonl,
                                                               tmp_path):  # fmt: skip
    spec = make_spec(task="distill", name="stream-distill", distill={"teacher": str(tiny_gpt2)},
                     data={"train": str(big_jsonl), "streaming": True, "max_seq_len": 32,
                           "shuffle_buffer": 8, "eval_fraction": 0.0},
                     training={"max_steps": 3, "batch_size": 2, "log_every": 1})  # fmt: skip
    (tmp_path / "spec.json").write_text(load_spec(spec).to_json())
    code = entrypoint.main([f"--spec={tmp_path / 'spec.json'}", f"--model-dir={tmp_path / 'm'}",
                            f"--checkpoint-dir={tmp_path / 'c'}", f"--output-dir={tmp_path / 'o'}"])  # fmt: skip
    assert code == 0
    metrics = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert len(metrics["train_losses"]) == 3 and metrics["eval_after"] == {}
    assert metrics["student_params"] < metrics["teacher_params"]
    assert metrics["student_inference_tokens_per_s"] > 0  # measured on the stream's first blocks
