"""``pretrain-scratch`` with ``data.streaming`` (job_templates/scratch_stream.py): pairs read as
training takes them, a vocabulary from the stream's head, disjoint shards, resume."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from genai_cloud.loading import load_spec
from job_templates import scratch
from job_templates.config import Config
from job_templates.contract import Contract
from job_templates.scratch_stream import stream_pairs

TINY = {"d_model": 16, "nhead": 2, "num_encoder_layers": 1, "num_decoder_layers": 1,
        "dim_feedforward": 32, "dropout": 0.0}  # fmt: skip
PAIRS = 5_000


@pytest.fixture(scope="module")
def pairs_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("pairs") / "pairs.jsonl"
    words = ["ab", "ba", "abc", "cab", "bca", "cc"]
    with path.open("w") as out:
        for i in range(PAIRS):
            word = words[i % len(words)] + ("z" if i == PAIRS - 1 else "")  # z: only at the end
            out.write(json.dumps({"prompt": word, "response": word[::-1]}) + "\n")
    return path


def _spec(pairs_file, **training) -> Config:
    raw = {"name": "scratch-stream", "task": "pretrain-scratch", "scratch": TINY,
           "data": {"train": str(pairs_file), "format": "instruction", "streaming": True,
                    "shuffle_buffer": 16, "max_eval_records": 8, "max_seq_len": 8},
           "training": {"max_steps": 3, "batch_size": 4, **training}}  # fmt: skip
    return Config.wrap(load_spec(raw).model_dump(mode="json"))


def _contract(tmp_path, rank=0, world=1) -> Contract:
    return Contract(platform="local", spec_path=tmp_path / "spec.json", channels={},
                    model_dir=tmp_path / "model", checkpoint_dir=tmp_path / "checkpoints",
                    output_dir=tmp_path / "output", rank=rank, world_size=world)  # fmt: skip


def test_a_streamed_scratch_run_reads_only_the_head_of_the_data(pairs_file, tmp_path):
    torch.set_num_threads(1)
    metrics = scratch.run(_spec(pairs_file), _contract(tmp_path))
    assert metrics["steps"] == 3 and metrics["train_pairs"] is None
    stats = metrics["dataset"]
    assert stats["peak_buffer"] == 16 and stats["records_read"] <= 16 + 3 * 4
    assert metrics["eval"]["examples"] == 8  # the held-out head of data.train
    vocab = json.loads((tmp_path / "model" / "vocab.json").read_text())["tokens"]
    assert vocab == list(scratch.SPECIALS) + ["a", "b", "c"]  # "z" comes after the sample


def test_each_rank_reads_its_own_share_and_a_rerun_resumes(pairs_file, tmp_path):
    spec = _spec(pairs_file)
    shares = []
    for rank in (0, 1):
        batches, held, _, stats = stream_pairs(spec, _contract(tmp_path, rank, 2))
        mine = batches(rank, 2, 5, 4)
        shares.append([next(mine) for _ in range(3)])
        assert len(held) == 8 and stats["records_read"] == 16 + 3 * 4  # buffer filled, 12 out
    assert shares[0] != shares[1]  # the shards themselves: test_streaming.py
    torch.set_num_threads(1)
    scratch.run(_spec(pairs_file, checkpoint_every=2, max_steps=2), _contract(tmp_path))
    metrics = scratch.run(_spec(pairs_file, max_steps=4), _contract(tmp_path))
    assert metrics["resumed_from_step"] == 2 and [s for s, _ in metrics["train_loss"]] == [4]
