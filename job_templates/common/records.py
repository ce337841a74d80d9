"""Read training / evaluation records from files, with errors that name file:line.

A data location is a file or a folder (every ``*.jsonl``, ``*.json``, ``*.txt`` file in it, sorted).
Formats (``data.format`` in the spec):

- ``text``: plain text; documents separated by blank lines. Record: ``{"text": ...}``.
- ``jsonl``: one JSON object per line with ``data.text_field``.
- ``instruction``: JSON lines with ``prompt_field`` and ``response_field`` (loss on the response).
- ``chat``: JSON lines with ``messages_field``: a list of ``{"role", "content"}``.
- ``classification``: JSON lines with ``text_field`` and ``label_field`` (and ``group_field``).
- ``preference``: JSON lines with ``prompt_field``, ``chosen_field`` and ``rejected_field``.

Every record keeps ``_source`` (``file:line``) so later errors can point back at it.

Files are read a line at a time, and a record (a JSON line, or a text block) longer than
``data.max_record_bytes`` is an error naming its file:line before it is held in memory whole:
one stray 50 MB line would otherwise grow the job by gigabytes while it is tokenized. Lines end
at ``\n`` (``\r\n`` too), never inside a JSON string that holds U+2028 and the like.

Hub datasets (``hf://ORG/NAME``), parquet / CSV / arrow files and ``save_to_disk`` folders are
read through the ``datasets`` library (``hf_data.py``); their rows are checked the same way
(``check_record``) and keep ``_source`` as ``file:row N``. ``data.max_records`` caps any source.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..config import JobError

DATA_SUFFIXES = (".jsonl", ".json", ".txt", ".text")
# The spec's default for data.max_record_bytes (genai_cloud/spec.py), for a spec.json without it.
DEFAULT_MAX_RECORD_BYTES = 8 * 1024 * 1024


def data_files(location: str | Path) -> list[Path]:
    path = Path(location)
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in DATA_SUFFIXES)
        if not files:
            raise JobError(f"no data files ({', '.join(DATA_SUFFIXES)}) in folder {path}")
        return files
    raise JobError(f"data file not found: {path}")


def read_records(location: str | Path, data: Any, role: str = "train") -> list[dict]:
    """All records at ``location`` in the spec's ``data`` format, validated.

    ``role`` (``train`` / ``eval``) picks ``data.split`` or ``data.eval_split`` for a source with
    several splits (a hub dataset, a ``DatasetDict`` folder).

    Raises:
        JobError: naming file:line for malformed JSON, a missing field, bad encoding, a record
            over ``data.max_record_bytes``, or an empty dataset.
    """
    from .hf_data import is_table_source, read_table_records

    if is_table_source(location):
        records = read_table_records(location, data, role)
    else:
        records = list(itertools.islice(iter_records(location, data, role), data.get("max_records")))
    if not records:
        raise JobError(f"the dataset at {location} is empty (no records)")
    return records


def iter_records(location: str | Path, data: Any, role: str = "train") -> Iterator[dict]:
    """The records at ``location`` one at a time, validated as ``read_records`` does (without
    its ``data.max_records`` cap and empty-set check): what ``data.streaming`` reads."""
    from .hf_data import is_table_source, iter_table_records

    if is_table_source(location):
        yield from iter_table_records(location, data, role)
        return
    limit = max_record_bytes(data)
    for file in data_files(location):
        if data.format == "text" and file.suffix not in (".jsonl", ".json"):
            yield from _read_text(file, limit)
        else:
            yield from _read_jsonl(file, data, limit)


def max_record_bytes(data: Any) -> int:
    return getattr(data, "max_record_bytes", None) or DEFAULT_MAX_RECORD_BYTES


def _too_long(limit: int) -> str:
    return (f"a record over data.max_record_bytes ({limit:,} bytes); split it into smaller "
            "records, or raise data.max_record_bytes")  # fmt: skip


def _read_lines(file: Path, limit: int) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` for each line, reading at most ``limit`` + 2 bytes at a time."""
    offset = 0
    with open(file, "rb") as handle:
        for number in itertools.count(1):
            raw = handle.readline(limit + 2)  # the record, and room for its \r\n
            if not raw:
                if number == 1:
                    raise JobError("0-byte file (a truncated upload?)", f"{file}:1")
                return
            body = raw.rstrip(b"\n").rstrip(b"\r") if raw.endswith(b"\n") else raw
            if len(body) > limit:
                raise JobError(_too_long(limit), f"{file}:{number}")
            try:
                text = body.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise JobError(f"not UTF-8 text (byte {offset + exc.start}: {exc.reason})",
                               f"{file}:{number}") from None  # fmt: skip
            offset += len(raw)
            yield number, text


def _read_text(file: Path, limit: int) -> Iterator[dict]:
    block, start, size = [], 1, 0
    for number, line in [*_read_lines(file, limit), (0, "")]:
        if line.strip():
            if not block:
                start, size = number, 0
            size += len(line) + 1
            if size > limit:  # characters: at least a byte each
                raise JobError(_too_long(limit) + " (a text record runs to the next blank line)",
                               f"{file}:{start}")  # fmt: skip
            block.append(line)
        elif block:
            yield {"text": "\n".join(block), "_source": f"{file}:{start}"}
            block = []


def _read_jsonl(file: Path, data: Any, limit: int) -> Iterator[dict]:
    for number, line in _read_lines(file, limit):
        if not line.strip():
            continue  # blank lines between records are harmless
        where = f"{file}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            # json's own message may end in "at" ("Unterminated string starting at").
            at = "" if exc.msg.endswith(" at") else " at"
            raise JobError(f"malformed JSON ({exc.msg}{at} column {exc.colno})", where) from None
        if not isinstance(row, dict):
            raise JobError(f"expected a JSON object, got {type(row).__name__}", where)
        check_record(row, data, where)
        yield row


def check_record(row: dict, data: Any, where: str) -> None:
    """Check one record has the fields ``data.format`` needs, of the right types; set its
    ``_source`` to ``where``.

    Raises:
        JobError: at ``where``, naming the missing fields and those present.
    """
    required = {
        "text": [data.text_field],
        "jsonl": [data.text_field],
        "instruction": [data.prompt_field, data.response_field],
        "chat": [data.messages_field],
        "classification": [data.text_field, data.label_field],
        "preference": [data.prompt_field, data.get("chosen_field", "chosen"),
                       data.get("rejected_field", "rejected")],
    }[data.format]
    missing = [f for f in required if f not in row]
    if missing:
        raise JobError(
            f"missing field(s) {', '.join(map(repr, missing))} for format {data.format!r} "
            f"(fields present: {', '.join(map(repr, row)) or 'none'})",
            where,
        )
    if data.format == "chat":
        _check_messages(row[data.messages_field], where)
    elif not all(isinstance(row[f], str) for f in required if f != data.label_field):
        raise JobError(f"fields {', '.join(map(repr, required))} must be strings", where)
    row["_source"] = where


def _check_messages(messages: Any, where: str) -> None:
    if not isinstance(messages, list) or not messages:
        raise JobError("'messages' must be a non-empty list of {role, content}", where)
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not {"role", "content"} <= set(message):
            raise JobError(f"messages[{i}] needs 'role' and 'content'", where)
