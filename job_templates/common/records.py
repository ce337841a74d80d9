"""Read training / evaluation records from files, with errors that name file:line.

A data location is a file or a folder (every ``*.jsonl``, ``*.json``, ``*.txt`` file in it, sorted).
Formats (``data.format`` in the spec):

- ``text``: plain text; documents separated by blank lines. Record: ``{"text": ...}``.
- ``jsonl``: one JSON object per line with ``data.text_field``.
- ``instruction``: JSON lines with ``prompt_field`` and ``response_field`` (loss on the response).
- ``chat``: JSON lines with ``messages_field``: a list of ``{"role", "content"}``.
- ``classification``: JSON lines with ``text_field`` and ``label_field`` (and ``group_field``).

Every record keeps ``_source`` (``file:line``) so later errors can point back at it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..config import JobError

DATA_SUFFIXES = (".jsonl", ".json", ".txt", ".text")


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


def read_records(location: str | Path, data: Any) -> list[dict]:
    """All records at ``location`` in the spec's ``data`` format, validated.

    Raises:
        JobError: naming file:line for malformed JSON, a missing field, bad encoding, or an
            empty dataset.
    """
    records: list[dict] = []
    for file in data_files(location):
        if data.format == "text" and file.suffix not in (".jsonl", ".json"):
            records.extend(_read_text(file))
        else:
            records.extend(_read_jsonl(file, data))
    if not records:
        raise JobError(f"the dataset at {location} is empty (no records)")
    return records


def _read_lines(file: Path) -> list[str]:
    raw = file.read_bytes()
    if not raw:
        raise JobError("0-byte file (a truncated upload?)", f"{file}:1")
    try:
        return raw.decode("utf-8-sig").splitlines()
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise JobError(f"not UTF-8 text (byte {exc.start}: {exc.reason})", f"{file}:{line}")


def _read_text(file: Path) -> list[dict]:
    records, block, start = [], [], 1
    for number, line in enumerate(_read_lines(file) + [""], start=1):
        if line.strip():
            if not block:
                start = number
            block.append(line)
        elif block:
            records.append({"text": "\n".join(block), "_source": f"{file}:{start}"})
            block = []
    return records


def _read_jsonl(file: Path, data: Any) -> list[dict]:
    required = {
        "text": [data.text_field],
        "jsonl": [data.text_field],
        "instruction": [data.prompt_field, data.response_field],
        "chat": [data.messages_field],
        "classification": [data.text_field, data.label_field],
    }[data.format]
    records = []
    for number, line in enumerate(_read_lines(file), start=1):
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
        records.append(row)
    return records


def _check_messages(messages: Any, where: str) -> None:
    if not isinstance(messages, list) or not messages:
        raise JobError("'messages' must be a non-empty list of {role, content}", where)
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not {"role", "content"} <= set(message):
            raise JobError(f"messages[{i}] needs 'role' and 'content'", where)
