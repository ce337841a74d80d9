"""Tokenization, packing and loss masking (job_templates/common/text.py)."""

from __future__ import annotations

import json

import pytest

from job_templates.common.records import read_records
from job_templates.common.text import IGNORE, check_max_seq_len, label_map, pack, tokenize
from job_templates.config import Config, JobError


def _data(**overrides) -> Config:
    base = {"format": "jsonl", "text_field": "text", "prompt_field": "prompt",
            "response_field": "response", "messages_field": "messages", "label_field": "label",
            "max_seq_len": 64, "packing": True}  # fmt: skip
    return Config.wrap({**base, **overrides})


@pytest.fixture(scope="module")
def tokenizer(tiny_gpt2):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_gpt2)


def test_packing_fills_blocks_with_real_tokens(tokenizer, corpus_path):
    data = _data(max_seq_len=128)
    examples = tokenize(read_records(corpus_path, data), tokenizer, data)
    batch = examples.batch(range(len(examples)))
    assert batch["input_ids"].shape == (len(examples), 128)
    real = int(batch["attention_mask"].sum())
    assert real == examples.stats["tokens"]  # no token dropped
    assert examples.non_pad_fraction == real / batch["attention_mask"].numel()
    assert examples.non_pad_fraction >= 0.95
    # Documents are separated by EOS inside the blocks.
    assert (batch["input_ids"] == tokenizer.eos_token_id).sum() >= examples.stats["examples"]


def test_pack_pads_only_the_last_block():
    examples = pack([([1, 2, 3], [1, 2, 3]), ([4, 5], [IGNORE, 5])], block=2, pad_id=0)
    batch = examples.batch([0, 1, 2])
    assert batch["input_ids"].tolist() == [[1, 2], [3, 4], [5, 0]]
    assert batch["labels"].tolist() == [[1, 2], [3, IGNORE], [5, IGNORE]]
    assert batch["attention_mask"].tolist() == [[1, 1], [1, 1], [1, 0]]
    assert examples.non_pad_fraction == 5 / 6


def test_instruction_loss_is_on_the_response_only(tokenizer):
    data = _data(format="instruction", packing=False)
    record = {"prompt": "Which GPU did job 0042 use?", "response": "It ran on 2 L4 GPUs."}
    examples = tokenize([record], tokenizer, data)
    ids, labels = examples.input_ids[0], examples.labels[0]
    prompt_len = len(tokenizer(record["prompt"] + "\n")["input_ids"])
    assert labels[:prompt_len] == [IGNORE] * prompt_len
    assert labels[prompt_len:] == ids[prompt_len:]
    assert ids[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(ids[prompt_len:-1]) == record["response"]


def test_instruction_masking_survives_packing(tokenizer):
    data = _data(format="instruction", packing=True, max_seq_len=16)
    records = [{"prompt": f"Question {i}?", "response": f"Answer {i}."} for i in range(20)]
    unpacked = tokenize(records, tokenizer, _data(format="instruction", packing=False))
    packed = tokenize(records, tokenizer, data)
    masked = sum(lab.count(IGNORE) for lab in unpacked.labels)
    batch = packed.batch(range(len(packed)))
    real_masked = int(((batch["labels"] == IGNORE) & (batch["attention_mask"] == 1)).sum())
    assert real_masked == masked > 0


def test_chat_without_template_trains_on_assistant_turns(tokenizer):
    data = _data(format="chat", packing=False)
    record = {"messages": [{"role": "user", "content": "Status of job 7?"},
                           {"role": "assistant", "content": "It succeeded."}]}  # fmt: skip
    examples = tokenize([record], tokenizer, data)
    ids, labels = examples.input_ids[0], examples.labels[0]
    user = len(tokenizer("<|user|>\nStatus of job 7?\n")["input_ids"])
    assert labels[:user] == [IGNORE] * user
    assert labels[user:] == ids[user:]
    assert "It succeeded." in tokenizer.decode(ids[user:])


def test_unpacked_batches_pad_with_ignored_labels(tokenizer):
    data = _data(packing=False, max_seq_len=8)
    records = [{"text": "Job 0001 fine-tuned gpt2-small on recipes for ana."}, {"text": "Hi"}]
    examples = tokenize(records, tokenizer, data)
    assert max(len(i) for i in examples.input_ids) == 8  # truncated to max_seq_len
    batch = examples.batch([0, 1])
    short = len(examples.input_ids[1])
    assert batch["attention_mask"][1].tolist() == [1] * short + [0] * (8 - short)
    assert batch["labels"][1, short:].tolist() == [IGNORE] * (8 - short)


def test_classification_labels_map_in_a_stable_order(tokenizer):
    data = _data(format="classification", packing=False)
    records = [{"text": "refund please", "label": "billing"}, {"text": "down", "label": "outage"},
               {"text": "add csv", "label": "feature"}]  # fmt: skip
    mapping = label_map(records, data)
    assert mapping == {"billing": 0, "feature": 1, "outage": 2}
    examples = tokenize(records, tokenizer, data, mapping)
    assert examples.batch([0, 1, 2])["labels"].tolist() == [0, 2, 1]


def test_unknown_eval_label_names_its_line(tokenizer, tmp_path):
    data = _data(format="classification", packing=False)
    path = tmp_path / "eval.jsonl"
    path.write_text(json.dumps({"text": "x", "label": "billing"}) + "\n"
                    + json.dumps({"text": "y", "label": "spam"}) + "\n")  # fmt: skip
    with pytest.raises(JobError, match=r"eval\.jsonl:2.*'spam'"):
        tokenize(read_records(path, data), tokenizer, data, {"billing": 0, "outage": 1})


def test_max_seq_len_beyond_model_positions_names_the_field():
    check_max_seq_len(256, 256)
    check_max_seq_len(10_000, None)  # no fixed limit (e.g. rotary models without one declared)
    with pytest.raises(JobError) as err:
        check_max_seq_len(512, 256)
    assert err.value.where == "data.max_seq_len"
    assert "256" in str(err.value)
