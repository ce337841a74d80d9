"""Bad datasets: each is a JobError naming file:line (or the file / folder when there is no line),
and a local run on one exits 2 with that message and leaves nothing that looks finished."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from genai_cloud.loading import load_spec
from genai_cloud.providers.local import run_local
from job_templates.common.records import read_records
from job_templates.config import Config, JobError
from job_templates.entrypoint import EXIT_INPUT_ERROR

FIELDS = {"text_field": "text", "prompt_field": "prompt", "response_field": "response",
          "messages_field": "messages", "label_field": "label"}  # fmt: skip


def data(fmt: str = "jsonl") -> Config:
    return Config.wrap({"format": fmt, **FIELDS})


def write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def error_of(location: Path, fmt: str = "jsonl") -> JobError:
    with pytest.raises(JobError) as caught:
        read_records(location, data(fmt))
    return caught.value


# ---- read_records -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content, fmt, line, words",
    [
        ('{"text": "a"}\n{"text": "b"\n', "jsonl", 2, "malformed JSON"),
        ('{"text": "a"}\n\n\n{"text": "b",}\n', "jsonl", 4, "malformed JSON"),  # blank lines count
        ('{"text": "a"}\n{"body": "b"}\n', "jsonl", 2, "missing field(s) 'text'"),
        ('{"prompt": "q"}\n', "instruction", 1, "'response'"),
        ('{"text": "a", "label": 1}\n{"text": "b"}\n', "classification", 2, "'label'"),
        ('{"messages": [{"role": "user"}]}\n', "chat", 1, "messages[0] needs 'role' and 'content'"),
        ('{"text": "a"}\n[1, 2]\n', "jsonl", 2, "expected a JSON object"),
        ('{"text": 3}\n', "jsonl", 1, "must be strings"),
    ],
)  # fmt: skip
def test_bad_rows_name_file_and_line(tmp_path, content, fmt, line, words):
    file = write(tmp_path / "train.jsonl", content)
    error = error_of(file, fmt)
    assert error.where == f"{file}:{line}"
    assert str(error).startswith(f"{file}:{line}: ") and words in str(error)


def test_latin1_bytes_name_the_line_they_are_on(tmp_path):
    file = write(tmp_path / "train.jsonl", '{"text": "ok"}\n{"text": "café"}\n'.encode("latin-1"))
    error = error_of(file)
    assert error.where == f"{file}:2" and "not UTF-8" in str(error)


def test_empty_lines_between_records_are_harmless(tmp_path):
    file = write(tmp_path / "train.jsonl", '\n{"text": "a"}\n\n   \n{"text": "b"}\n\n')
    records = read_records(file, data())
    assert [r["text"] for r in records] == ["a", "b"]
    assert [r["_source"] for r in records] == [f"{file}:2", f"{file}:5"]


def test_a_utf8_byte_order_mark_is_not_an_error(tmp_path):
    file = write(tmp_path / "train.jsonl", b'\xef\xbb\xbf{"text": "a"}\n')
    assert read_records(file, data())[0]["text"] == "a"


@pytest.mark.parametrize("content", [b"", b"\n\n   \n"], ids=["0-byte", "blank-lines-only"])
@pytest.mark.parametrize("fmt, suffix", [("jsonl", ".jsonl"), ("text", ".txt")])
def test_an_empty_file_is_an_error_naming_it(tmp_path, content, fmt, suffix):
    file = write(tmp_path / f"train{suffix}", content)
    error = error_of(file, fmt)
    assert str(file) in str(error) and "empty" in str(error)


def test_a_folder_without_data_files_names_the_folder_and_the_suffixes(tmp_path):
    folder = tmp_path / "shards"
    folder.mkdir()
    write(folder / "README.md", "not data")
    error = error_of(folder)
    assert str(folder) in str(error) and ".jsonl" in str(error)


def test_a_bad_shard_in_a_folder_is_named(tmp_path):
    folder = tmp_path / "shards"
    folder.mkdir()
    write(folder / "a.jsonl", '{"text": "a"}\n')
    bad = write(folder / "b.jsonl", '{"text": "b"}\n{oops}\n')
    assert error_of(folder).where == f"{bad}:2"


def test_a_missing_file_names_its_path(tmp_path):
    assert str(tmp_path / "nope.jsonl") in str(error_of(tmp_path / "nope.jsonl"))


def test_a_zero_byte_shard_among_good_ones_is_an_error(tmp_path):
    folder = tmp_path / "shards"
    folder.mkdir()
    write(folder / "a.jsonl", '{"text": "a"}\n')
    empty = write(folder / "b.jsonl", b"")
    assert str(empty) in str(error_of(folder))


# ---- end to end: a local run on bad data --------------------------------------------------------


@pytest.mark.parametrize(
    "content, line",
    [(b'{"text": "fine"}\n' * 40 + b'{"text": "broken"\n', 41),
     (b'{"text": "fine"}\n' * 40 + '{"text": "caf\xe9"}\n'.encode("latin-1"), 41),
     (b"", 1)],
    ids=["malformed", "latin-1", "0-byte"],
)  # fmt: skip
def test_a_local_run_on_bad_data_exits_2_and_leaves_no_finished_outputs(
    make_spec, tmp_path, content, line
):
    train = write(tmp_path / "train.jsonl", content)
    spec = load_spec(make_spec(data={"train": str(train)},
                               output={"local_dir": str(tmp_path / "runs")}))  # fmt: skip
    log = io.StringIO()
    run = run_local(spec, stream=log)
    assert run.returncode == EXIT_INPUT_ERROR, log.getvalue()
    # The job reads the run directory's copy of the file; the runner names the user's own path.
    where = f"{train}:{line}: "
    errors = [x for x in log.getvalue().splitlines() if x.startswith("error: ")]
    assert len(errors) == 1 and where in errors[0], log.getvalue()
    assert "Traceback" not in log.getvalue()
    assert not list(run.run_dir.rglob("metrics.json"))
    finished = ("config.json", "model.safetensors", "pytorch_model.bin")
    assert not [p for p in run.run_dir.rglob("*") if p.name in finished]
    assert run.metrics == {}
