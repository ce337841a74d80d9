"""Train / eval records from channels or spec paths (job_templates/common/data.py)."""

from __future__ import annotations

import json

import pytest

from genai_cloud.spec import DataSpec
from job_templates.common.data import load_splits, split
from job_templates.config import Config, JobError
from job_templates.contract import Contract


def _data(train, **extra) -> Config:
    return Config.wrap(DataSpec(train=str(train), **extra).model_dump())


def _contract(tmp_path, **channels) -> Contract:
    return Contract(platform="local", spec_path=tmp_path, channels=channels, model_dir=tmp_path,
                    checkpoint_dir=tmp_path, output_dir=tmp_path)  # fmt: skip


def _write(path, n):
    path.write_text("".join(json.dumps({"text": f"doc {i}"}) + "\n" for i in range(n)))
    return path


def test_seeded_split_is_repeatable_and_disjoint():
    records = [{"text": str(i)} for i in range(50)]
    train, evals = split(records, 0.1, seed=3)
    assert len(evals) == 5 and len(train) == 45
    assert split(records, 0.1, seed=3) == (train, evals)
    assert split(records, 0.1, seed=4)[1] != evals
    assert {r["text"] for r in train}.isdisjoint(r["text"] for r in evals)


def test_channels_win_over_spec_paths(tmp_path):
    spec_train = _write(tmp_path / "spec.jsonl", 3)
    channel = tmp_path / "mounted"
    channel.mkdir()
    _write(channel / "part-0.jsonl", 7)
    evals = _write(tmp_path / "eval.jsonl", 2)
    train, held = load_splits(_data(spec_train), _contract(tmp_path, train=channel, eval=evals), 0)
    assert (len(train), len(held)) == (7, 2)
    train, held = load_splits(_data(spec_train, eval_fraction=0.0), _contract(tmp_path), 0)
    assert (len(train), held) == (3, [])


def test_one_record_cannot_be_split(tmp_path):
    with pytest.raises(JobError) as err:
        load_splits(_data(_write(tmp_path / "one.jsonl", 1)), _contract(tmp_path), 0)
    assert err.value.where == "data.eval_fraction"


def test_remote_uris_must_come_as_channels(tmp_path):
    with pytest.raises(JobError, match="input channel") as err:
        load_splits(_data("s3://bucket/train.jsonl"), _contract(tmp_path), 0)
    assert err.value.where == "data.train"


def test_a_channel_may_be_one_file_or_a_folder_of_files(tmp_path):
    folder = tmp_path / "train"
    (folder / "nested").mkdir(parents=True)
    _write(folder / "b.jsonl", 2)
    _write(folder / "nested" / "a.jsonl", 3)
    (folder / "_SUCCESS").write_text("")  # marker files that uploads leave are skipped
    data = _data(tmp_path / "unused.jsonl", eval_fraction=0.0)
    train, _ = load_splits(data, _contract(tmp_path, train=folder), 0)
    assert [r["_source"].split("/")[-1] for r in train] == [
        "b.jsonl:1",
        "b.jsonl:2",
        "a.jsonl:1",
        "a.jsonl:2",
        "a.jsonl:3",
    ]  # sorted by path
    single, _ = load_splits(data, _contract(tmp_path, train=folder / "b.jsonl"), 0)
    assert len(single) == 2
