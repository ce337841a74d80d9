"""What ``data.streaming`` needs of a spec (genai_cloud/spec_streaming.py), refused at load time
with the field and what to set, like every other cross-field check."""

from __future__ import annotations

import pytest

from genai_cloud.errors import SpecError
from genai_cloud.loading import load_spec

STREAM = "name: s\ntask: {task}\nmodel: {{name_or_path: gpt2{head}}}\n" \
    "data: {{train: {train}, streaming: true{fmt}}}\ntraining: {{{training}}}\n{extra}"  # fmt: skip


def _errors(tmp_path, task="finetune", head="", train="hf://org/big", fmt="",
            training="max_steps: 100", extra="") -> list[str]:  # fmt: skip
    path = tmp_path / "spec.yaml"
    path.write_text(STREAM.format(task=task, head=head, train=train, fmt=fmt, training=training,
                                  extra=extra))  # fmt: skip
    with pytest.raises(SpecError) as info:
        load_spec(path)
    return info.value.errors


def test_streaming_needs_max_steps_not_max_records(tmp_path):
    assert _errors(tmp_path, training="epochs: 1") == [(
        "training.max_steps (line 5): required with data.streaming: a stream has no length to "
        "count epochs over, so set the number of optimizer steps to train (e.g. 1000); "
        "data.max_records is optional"
    )]
    for train in ("hf://org/big", "/data/big.jsonl", "/data/shards/"):  # local files stream too
        spec = load_spec({"name": "s", "model": {"name_or_path": "gpt2"},
                          "data": {"train": train, "streaming": True},
                          "training": {"max_steps": 100}})  # fmt: skip
        assert spec.data.streaming and spec.data.max_records is None
        assert (spec.data.shuffle_buffer, spec.data.max_eval_records) == (10_000, None)


@pytest.mark.parametrize("task, extra", [("dpo", ""), ("prune", ""), ("evaluate", ""),
                                         ("audit", ""), ("fairness", "")])  # fmt: skip
def test_tasks_that_read_every_record_refuse_streaming(task, extra, tmp_path):
    fmt = ", format: preference" if task == "dpo" else ""
    errors = _errors(tmp_path, task=task, fmt=fmt, extra=extra)
    assert errors == [(
        f"data.streaming (line 4): task {task!r} reads all its training records at once; remove "
        "data.streaming (tasks that stream: finetune, distill, pretrain-scratch)"
    )]


def test_what_needs_the_whole_training_set_is_refused_together(tmp_path):
    errors = _errors(tmp_path, head=", head: sequence-classification, num_labels: 2",
                     fmt=", format: classification",
                     extra="audit: {gate: true}\nfairness: {mitigation: [reweight]}\n")  # fmt: skip
    text = "\n".join(errors)
    assert "data.streaming (line 4): a classification head maps the labels of every" in text
    assert "audit (line 6): the data audit reads all its training records at once" in text
    assert "fairness.mitigation (line 7): bias mitigation reads all its training records" in text


def test_streaming_is_refused_on_tpu(tmp_path):
    errors = _errors(tmp_path, extra="compute: {accelerator: tpu-v5e, count: 4}\n")
    assert any(e.startswith("data.streaming (line 4): not supported on TPU yet") for e in errors)
