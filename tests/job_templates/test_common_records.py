"""Bounded records: data.max_record_bytes names file:line; lines are read one at a time; a long
text is tokenized in pieces with the same tokens (job_templates/common/records.py, text.py)."""

from __future__ import annotations

import json

import pytest

from genai_cloud.errors import SpecError
from genai_cloud.loading import load_spec
from job_templates.common import text as text_module
from job_templates.common.records import DEFAULT_MAX_RECORD_BYTES, read_records
from job_templates.config import Config, JobError

FIELDS = {"text_field": "text", "prompt_field": "prompt", "response_field": "response",
          "messages_field": "messages", "label_field": "label"}  # fmt: skip


def data(fmt: str = "jsonl", **extra) -> Config:
    return Config.wrap({"format": fmt, **FIELDS, **extra})


def test_the_spec_default_is_the_readers_default():
    spec = load_spec({"name": "x", "model": {"name_or_path": "gpt2"}, "data": {"train": "s3://b/t"}})
    assert spec.data.max_record_bytes == DEFAULT_MAX_RECORD_BYTES == 8 * 1024 * 1024
    with pytest.raises(SpecError, match=r"data.max_record_bytes: Input should be greater than"):
        load_spec({"name": "x", "model": {"name_or_path": "gpt2"},
                   "data": {"train": "s3://b/t", "max_record_bytes": 10}})  # fmt: skip


@pytest.mark.parametrize("fmt", ["jsonl", "instruction"])
def test_a_json_line_over_the_limit_names_its_file_and_line(tmp_path, fmt):
    path = tmp_path / "train.jsonl"
    record = {"text": "x", "prompt": "p", "response": "r"}
    big = {**record, "text": "y" * 5000, "response": "z" * 5000}
    path.write_text("\n".join(json.dumps(r) for r in (record, record, big, record)) + "\n")
    with pytest.raises(JobError) as info:
        read_records(path, data(fmt, max_record_bytes=4096))
    assert info.value.where == f"{path}:3"
    assert "a record over data.max_record_bytes (4,096 bytes)" in str(info.value)


def test_a_line_at_the_limit_is_read(tmp_path):
    path = tmp_path / "train.jsonl"
    line = json.dumps({"text": "y" * 1000})
    path.write_text(line + "\r\n" + line)  # CRLF, and no newline at the end
    records = read_records(path, data(max_record_bytes=len(line)))
    assert [r["text"] for r in records] == ["y" * 1000] * 2
    assert [r["_source"] for r in records] == [f"{path}:1", f"{path}:2"]


def test_a_text_block_over_the_limit_names_the_line_it_starts_on(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text("short one\n\n" + "\n".join(["a line of forty characters, more or less"] * 40))
    with pytest.raises(JobError) as info:
        read_records(path, data("text", max_record_bytes=1024))
    assert info.value.where == f"{path}:3"
    assert "runs to the next blank line" in str(info.value)


def test_a_spec_json_without_the_field_gets_the_default(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps({"text": "ok"}) + "\n")
    assert read_records(path, data())[0]["text"] == "ok"  # no max_record_bytes key at all


def test_unicode_line_separators_inside_a_json_string_stay_in_the_record(tmp_path):
    path = tmp_path / "train.jsonl"
    # json.dumps(ensure_ascii=False) writes U+2028 raw; str.splitlines() would cut there.
    path.write_text(json.dumps({"text": "one\u2028two\x1cthree"}, ensure_ascii=False) + "\n",
                    encoding="utf-8")  # fmt: skip
    assert read_records(path, data())[0]["text"] == "one\u2028two\x1cthree"


def test_bad_utf8_names_its_line_and_file_offset(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"text": "bom first"}\n{"text": "ok"}\n{"text": "\xff"}\n')
    with pytest.raises(JobError) as info:
        read_records(path, data())
    assert info.value.where == f"{path}:3"
    assert "not UTF-8 text (byte 50" in str(info.value)  # counted from the file's start


@pytest.fixture(scope="module")
def tokenizer(tiny_gpt2):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_gpt2)


def test_a_long_text_tokenizes_in_pieces_to_the_same_tokens(tokenizer, corpus_path, monkeypatch):
    texts = [json.loads(line)["text"] for line in corpus_path.read_text().splitlines()[:200]]
    long_text = "  ".join(texts)  # double spaces too: a run of spaces stays whole at a cut
    whole = tokenizer(long_text, add_special_tokens=True)["input_ids"]
    monkeypatch.setattr(text_module, "ENCODE_PIECE_CHARS", 1000)
    pieces = list(text_module._pieces(long_text, 1000))
    assert len(pieces) > 10 and "".join(pieces) == long_text
    assert text_module._encode(tokenizer, long_text) == whole


def test_a_text_without_spaces_is_still_cut(tokenizer):
    word = "x" * 10_000
    pieces = list(text_module._pieces(word, 1000))
    assert [len(p) for p in pieces] == [1000] * 10
