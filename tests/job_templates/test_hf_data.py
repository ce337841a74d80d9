"""Hub datasets, parquet / CSV / arrow files and save_to_disk folders (job_templates/common/hf_data.py).

Every dataset is built here with the ``datasets`` library. ``hf://`` ids are read by the real
``load_dataset`` call in offline mode from a datasets cache laid out the way a hub download leaves
it (``<cache>/<org>___<name>/<config>/<version>/<hash>/``), so no hub is reached.
"""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path

import pytest

from genai_cloud.spec import DataSpec
from job_templates.common.data import load_splits
from job_templates.common.hf_data import parse_hub
from job_templates.common.records import read_records
from job_templates.config import Config, JobError
from job_templates.contract import Contract

datasets = pytest.importorskip("datasets")

ROWS = [{"text": f"review {i}", "label": i % 2, "group": "ab"[i % 2]} for i in range(12)]


def _data(train, **extra) -> Config:
    return Config.wrap(DataSpec(train=str(train), **extra).model_dump())


def _contract(tmp_path) -> Contract:
    return Contract(platform="local", spec_path=tmp_path, channels={}, model_dir=tmp_path,
                    checkpoint_dir=tmp_path, output_dir=tmp_path)  # fmt: skip


def hub_cache(cache: Path, repo: str, splits: dict[str, list[dict]]) -> Path:
    """Prepare ``repo`` in a datasets cache as ``load_dataset(repo)`` would after a download: the
    parquet builder writes the arrow files under the repo's cache folder, config ``default``."""
    from datasets.packaged_modules.parquet.parquet import Parquet

    src = cache.parent / f"{repo.replace('/', '_')}-src"
    src.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, rows in splits.items():
        files[name] = str(src / f"{name}.parquet")
        datasets.Dataset.from_list(rows).to_parquet(files[name])
    org, name = repo.split("/")
    builder = Parquet(cache_dir=str(cache), dataset_name=name, config_name="default",
                      data_files=files, hash="0123456789abcdef")  # fmt: skip
    builder.download_and_prepare()
    # The hub loader keeps a repo's cache under "<org>___<name>/<config name>/..."; a builder made
    # from local files is keyed by its name and a data-files hash instead.
    target = cache / f"{org}___{name}" / "default"
    target.parent.mkdir(parents=True, exist_ok=True)
    [prepared] = (cache / name).glob("default*")
    shutil.move(str(prepared), str(target))
    return cache


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """A datasets cache holding ``genai-test/tiny-reviews`` (train 12 rows, validation 4, test 3)
    and the library in offline mode, reading from it."""
    cache = hub_cache(tmp_path / "hf-cache", "genai-test/tiny-reviews",
                      {"train": ROWS, "validation": ROWS[:4], "test": ROWS[:3]})  # fmt: skip
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(cache))
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    return cache


# ---- hub ids --------------------------------------------------------------------------------


def test_hub_ids_parse_with_and_without_revision():
    assert parse_hub("hf://stanfordnlp/imdb@v1.0") == ("stanfordnlp/imdb", "v1.0")
    assert parse_hub("hf://imdb") == ("imdb", None)
    for bad in ("hf://", "hf://a/b/c", "hf://a/b@", "hf://a//b"):
        with pytest.raises(JobError, match="not a hub dataset id"):
            parse_hub(bad)


def test_hub_dataset_reads_the_asked_splits(offline_hub, tmp_path):
    data = _data("hf://genai-test/tiny-reviews@main", eval="hf://genai-test/tiny-reviews",
                 format="classification")  # fmt: skip
    train, held = load_splits(data, _contract(tmp_path), seed=0)
    assert [r["text"] for r in train] == [r["text"] for r in ROWS]
    assert len(held) == 4  # no eval_split: the validation split
    assert train[5]["_source"] == "hf://genai-test/tiny-reviews@main[train]:row 6"
    assert held[0]["_source"] == "hf://genai-test/tiny-reviews@main[validation]:row 1"
    _, held = load_splits(_data(data.train, eval=data.eval, eval_split="test"), None, seed=0)
    assert len(held) == 3


def test_hub_split_slices_and_streaming(offline_hub):
    assert len(read_records("hf://genai-test/tiny-reviews", _data("x", split="train[:5]"))) == 5
    streamed = read_records("hf://genai-test/tiny-reviews",
                            _data("hf://genai-test/tiny-reviews", streaming=True, max_records=7))
    assert [r["text"] for r in streamed] == [f"review {i}" for i in range(7)]


def test_a_streamed_hub_dataset_is_read_lazily_in_disjoint_shards(offline_hub, monkeypatch):
    from job_templates.common.streaming import stream_splits

    loads = []
    load = datasets.load_dataset
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: loads.append(k) or load(*a, **k))
    data = _data("hf://genai-test/tiny-reviews", streaming=True, max_eval_records=2)
    source, held = stream_splits(data, None)  # no data.eval: the head of train is held out
    assert [r["text"] for r in held] == ["review 0", "review 1"]
    shards = [[r["_source"] for r in source.records(rank, 2)] for rank in (0, 1)]
    label = "hf://genai-test/tiny-reviews@main[train]:row"
    assert shards == [[f"{label} {n}" for n in (3, 5, 7, 9, 11)],
                      [f"{label} {n}" for n in (4, 6, 8, 10, 12)]]  # fmt: skip
    assert loads and all(k["streaming"] for k in loads)


def test_hub_errors_name_the_field(offline_hub):
    with pytest.raises(JobError, match=r"data\.split: .*Unknown split \"nope\".*train"):
        read_records("hf://genai-test/tiny-reviews", _data("x", split="nope"))
    with pytest.raises(JobError, match=r"data\.train: cannot reach hf://genai-test/missing .*"
                       "pre-staged copy"):  # fmt: skip
        read_records("hf://genai-test/missing", _data("x"))
    with pytest.raises(JobError, match=r"data\.config: .*cfg2"):
        read_records("hf://genai-test/tiny-reviews", _data("hf://genai-test/tiny-reviews",
                                                           config="cfg2"))  # fmt: skip


def test_hub_rows_are_checked_like_jsonl_lines(offline_hub):
    data = _data("x", format="instruction")
    with pytest.raises(JobError) as info:
        read_records("hf://genai-test/tiny-reviews", data)
    assert str(info.value) == ("hf://genai-test/tiny-reviews@main[train]:row 1: missing field(s) "
                               "'prompt', 'response' for format 'instruction' (fields present: "
                               "'text', 'label', 'group')")  # fmt: skip


# ---- local tables -----------------------------------------------------------------------------


def test_parquet_csv_and_arrow_files_read_alike(tmp_path):
    table = datasets.Dataset.from_list(ROWS)
    table.to_parquet(str(tmp_path / "d.parquet"))
    table.to_csv(str(tmp_path / "d.csv"), index=False)
    table.save_to_disk(str(tmp_path / "saved"))
    [arrow] = (tmp_path / "saved").glob("*.arrow")
    data = _data("x", format="classification", group_field="group")
    for path in (tmp_path / "d.parquet", tmp_path / "d.csv", arrow):
        records = read_records(path, data)
        assert [(r["text"], r["label"], r["group"]) for r in records] == \
            [(r["text"], r["label"], r["group"]) for r in ROWS], path  # fmt: skip
        assert records[2]["_source"] == f"{path}:row 3"


def test_save_to_disk_folders_dataset_and_dict(tmp_path):
    datasets.Dataset.from_list(ROWS).save_to_disk(str(tmp_path / "one"))
    datasets.DatasetDict({"train": datasets.Dataset.from_list(ROWS),
                          "test": datasets.Dataset.from_list(ROWS[:2])}).save_to_disk(
        str(tmp_path / "dict"))  # fmt: skip
    assert len(read_records(tmp_path / "one", _data("x"))) == 12
    assert len(read_records(tmp_path / "one", _data("x"), role="eval")) == 12  # one split: it
    assert len(read_records(tmp_path / "dict", _data("x"))) == 12
    evals = read_records(tmp_path / "dict", _data("x"), role="eval")
    assert len(evals) == 2 and evals[0]["_source"] == f"{tmp_path / 'dict'}[test]:row 1"
    with pytest.raises(JobError, match=r"data\.split: .* has no split 'dev'; it has train, test"):
        read_records(tmp_path / "dict", _data("x", split="dev"))


def test_a_folder_named_by_split_like_a_hub_snapshot(tmp_path):
    folder = tmp_path / "snapshot"
    (folder / "data").mkdir(parents=True)
    datasets.Dataset.from_list(ROWS).to_parquet(str(folder / "data/train-00000-of-00001.parquet"))
    datasets.Dataset.from_list(ROWS[:3]).to_parquet(str(folder / "data/test-00000-of-00001.parquet"))
    (folder / "README.md").write_text("# a dataset card\n")
    assert len(read_records(folder, _data("x"))) == 12
    assert len(read_records(folder, _data("x"), role="eval")) == 3


def test_bad_rows_and_files_are_named(tmp_path):
    datasets.Dataset.from_list([{"text": "fine"}, {"text": None}]).to_parquet(str(tmp_path / "n.parquet"))
    with pytest.raises(JobError, match=re.escape(f"{tmp_path / 'n.parquet'}:row 2: fields 'text' "
                                                 "must be strings")):  # fmt: skip
        read_records(tmp_path / "n.parquet", _data("x"))
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(JobError, match=r"broken\.parquet: cannot read it as parquet"):
        read_records(tmp_path / "broken.parquet", _data("x"))
    (tmp_path / "empty.csv").write_bytes(b"")
    with pytest.raises(JobError, match=r"empty\.csv:1: 0-byte file"):
        read_records(tmp_path / "empty.csv", _data("x"))


def test_max_records_caps_every_source(tmp_path):
    datasets.Dataset.from_list(ROWS).to_parquet(str(tmp_path / "d.parquet"))
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    for path in ("d.parquet", "d.jsonl"):
        assert len(read_records(tmp_path / path, _data("x", max_records=5))) == 5


# ---- a job ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_finetune_on_a_hub_dataset_under_the_sagemaker_contract(make_spec, offline_hub, tmp_path):
    """The bundle's job (a subprocess, SageMaker's paths) loads hf:// itself: no channel."""
    from genai_cloud.providers.local import run_local
    from genai_cloud.loading import load_spec

    spec = load_spec(make_spec(
        data={"train": "hf://genai-test/tiny-reviews", "eval": "hf://genai-test/tiny-reviews",
              "eval_split": "test", "max_seq_len": 32},
        training={"max_steps": 3, "batch_size": 4},
        env={"HF_DATASETS_CACHE": str(offline_hub), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"},
        output={"local_dir": str(tmp_path)},
    ))  # fmt: skip
    # The image's Python and its lock: the SageMaker replica (tests/stacks), as the toolkit would.
    from genai_cloud.runtimes import for_spec
    from tests.stacks.build import ready_python

    replica = ready_python(for_spec("sagemaker", spec))
    if replica is None:
        pytest.skip("needs the SageMaker replica: python -m tests.stacks.build --only sagemaker-cpu")
    run = run_local(spec, emulate="sagemaker", run_dir=tmp_path / "run", stream=io.StringIO(),
                    python=str(replica))  # fmt: skip
    log = (run.run_dir / "job.log").read_text()
    assert run.returncode == 0, log[-3000:]
    assert not (tmp_path / "run" / "opt" / "ml" / "input" / "data").exists()
    assert "reading hf://genai-test/tiny-reviews@main[train]" in log
    metrics = json.loads((run.output_dir / "metrics.json").read_text())
    assert metrics["steps"] == 3
