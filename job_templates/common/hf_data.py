"""Records from sources the Hugging Face ``datasets`` library reads: hub datasets and table files.

- ``hf://ORG/NAME[@REVISION]``: a dataset on the Hugging Face Hub, loaded in the job with
  ``datasets.load_dataset`` (``data.config`` picks a configuration; ``data.streaming`` fetches
  rows as they are read instead of downloading and preparing the whole dataset first; a private
  or gated dataset needs ``HF_TOKEN``, e.g. through ``secrets``).
- a ``.parquet`` / ``.csv`` / ``.arrow`` file, or a folder of them; a folder whose file names
  follow the hub's split naming (``train-00000-of-00002.parquet``, ``test/...``) holds one split
  per name, as ``datasets`` infers them.
- a folder written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``.

Records are made one at a time (``iter_table_records``): a hub dataset with ``data.streaming``
and table files (read with ``streaming=True``, in place) are never held whole by this module;
``read_table_records`` keeps the first ``data.max_records`` of them.

The split read is ``data.split`` for the training set and ``data.eval_split`` for the eval set
(default: the source's ``validation`` split, else ``test``); a source with a single split is read
whatever its name. Each row becomes a record keeping ``_source`` (``file:row N`` or
``hf://ORG/NAME@REV[split]:row N``), checked like a JSONL line (``records.check_record``).
``datasets`` is imported only here, when such a source is read.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..config import JobError

log = logging.getLogger("genai")

HUB_SCHEME = "hf://"
TABLE_BUILDERS = {".parquet": "parquet", ".csv": "csv", ".arrow": "arrow"}
# What save_to_disk writes: a Dataset folder has both files, a DatasetDict folder the first.
_SAVED_DICT, _SAVED_INFO, _SAVED_STATE = "dataset_dict.json", "dataset_info.json", "state.json"
_EVAL_SPLITS = ("validation", "test")  # the hub's usual names for held-out data, in preference
_INSTALL = "pip install 'datasets>=3.0'"



def is_hub(location: Any) -> bool:
    return isinstance(location, str) and location.startswith(HUB_SCHEME)


def is_table_source(location: str | Path) -> bool:
    """True for what this module reads: a hub id, a table file, a save_to_disk folder, or a
    folder holding table files (and no JSON / text data files, which ``records`` reads)."""
    if is_hub(location):
        return True
    path = Path(location)
    if path.is_file():
        return path.suffix.lower() in TABLE_BUILDERS
    if not path.is_dir():
        return False
    if _is_saved(path):
        return True
    return any(p.suffix.lower() in TABLE_BUILDERS for p in path.rglob("*") if p.is_file())


def parse_hub(uri: str) -> tuple[str, str | None]:
    """``hf://ORG/NAME@REV`` -> ``("ORG/NAME", "REV")``; the revision is None when not given.

    Raises:
        JobError: not ``hf://NAME`` or ``hf://ORG/NAME`` with an optional ``@REVISION``.
    """
    repo, _, revision = uri[len(HUB_SCHEME):].partition("@")
    parts = repo.split("/")
    if not repo or len(parts) > 2 or not all(parts) or (_ and not revision):
        raise JobError(f"{uri!r} is not a hub dataset id; write hf://ORG/NAME or "
                       "hf://ORG/NAME@REVISION (a branch, tag or commit)")  # fmt: skip
    return repo, revision or None


def read_table_records(location: str | Path, data: Any, role: str = "train") -> list[dict]:
    """The rows of the ``role`` (``train`` / ``eval``) split at ``location`` as records, at most
    ``data.max_records`` of them.

    Raises:
        JobError: the library missing, a source that cannot be read, a split that is not there
            (naming the ones that are), or a row without the fields ``data.format`` needs.
    """
    return list(itertools.islice(iter_table_records(location, data, role), data.get("max_records")))


def iter_table_records(location: str | Path, data: Any, role: str = "train") -> Iterator[dict]:
    """``read_table_records`` one record at a time, uncapped (``data.streaming`` reads this)."""
    datasets = _import_datasets()
    wanted = data.get("split", "train") if role == "train" else data.get("eval_split")
    if is_hub(location):
        rows, label = _hub_rows(datasets, str(location), data, wanted, role)
        yield from _records(rows, data, lambda n: f"{label}:row {n}")
        return
    path = Path(location)
    if path.is_dir() and _is_saved(path):
        rows, label = _saved_rows(datasets, path, wanted, role)
        yield from _records(rows, data, lambda n: f"{label}:row {n}")
        return
    for file in _table_files(datasets, path, wanted, role):
        yield from _records(_file_rows(datasets, file), data, lambda n, f=file: f"{f}:row {n}")


def _import_datasets():
    try:
        import datasets
    except ImportError as exc:  # missing, or installed against an incompatible huggingface_hub
        raise JobError(f"reading hub datasets, parquet, CSV and arrow data needs the `datasets` "
                       f"library ({exc}); run `{_INSTALL}` (job_templates/requirements.txt lists "
                       "it)") from None  # fmt: skip
    datasets.logging.set_verbosity_error()  # its progress bars and cache notes flood job logs
    datasets.disable_progress_bars()
    return datasets


def _read_errors(datasets) -> tuple:
    # What a bad file raises while read: pyarrow's ArrowInvalid and pandas' ParserError are
    # ValueErrors, pyarrow's IO errors OSErrors; the library's own errors share DatasetsError.
    return ValueError, OSError, datasets.exceptions.DatasetsError


def _records(rows, data: Any, where) -> Iterator[dict]:
    from .records import check_record

    for number, row in enumerate(rows, start=1):
        record = dict(row)
        check_record(record, data, where(number))
        yield record


def _hub_rows(datasets, uri: str, data: Any, wanted: str | None, role: str):
    repo, revision = parse_hub(uri)
    config, streaming = data.get("config"), bool(data.get("streaming", False))
    field = "data.split" if role == "train" else "data.eval_split"
    try:
        loaded = datasets.load_dataset(repo, config, split=wanted, revision=revision,
                                       streaming=streaming)  # fmt: skip
    except ValueError as exc:  # an unknown split or config names the valid ones
        raise JobError(f"{uri}: {exc}", field if "split" in str(exc).lower() else "data.config") \
            from None  # fmt: skip
    except ConnectionError as exc:
        raise JobError(f"cannot reach {uri} ({exc}); a job without internet access needs a "
                       "pre-staged copy (e.g. `save_to_disk` or the parquet files in the job's "
                       "storage) named in data.train / data.eval", f"data.{role}") from None  # fmt: skip
    except (datasets.exceptions.DatasetsError, FileNotFoundError) as exc:  # not found, gated
        raise JobError(f"{uri}: {exc}", f"data.{role}") from None
    split = wanted
    if wanted is None:
        split = _choose_split(list(loaded), role, uri)
        loaded = loaded[split]
    label = f"{HUB_SCHEME}{repo}@{revision or 'main'}[{split}]"
    log.info("reading %s%s", label, " (streaming)" if streaming else "")
    return loaded, label


def _choose_split(available: list[str], role: str, where: str) -> str:
    if len(available) == 1:
        return available[0]
    preferred = ("train",) if role == "train" else _EVAL_SPLITS
    for name in preferred:
        if name in available:
            return name
    field = "data.split" if role == "train" else "data.eval_split"
    raise JobError(f"{where} has splits {', '.join(available)}; set {field} to one of them",
                   field)  # fmt: skip


def _is_saved(folder: Path) -> bool:
    return (folder / _SAVED_DICT).is_file() or (
        (folder / _SAVED_INFO).is_file() and (folder / _SAVED_STATE).is_file()
    )


def _saved_rows(datasets, folder: Path, wanted: str | None, role: str):
    try:
        loaded = datasets.load_from_disk(str(folder))
    except _read_errors(datasets) as exc:  # a damaged copy
        raise JobError(f"cannot read the save_to_disk folder ({type(exc).__name__}: {exc})",
                       str(folder)) from None  # fmt: skip
    if isinstance(loaded, datasets.DatasetDict):
        names = list(loaded)
        split = _pick(names, wanted, role, str(folder))
        return loaded[split], f"{folder}[{split}]"
    return loaded, str(folder)


def _pick(available: list[str], wanted: str | None, role: str, where: str) -> str:
    """The split of a local source to read: the one there is, or the one asked for."""
    if wanted is None or len(available) == 1:
        return _choose_split(available, role, where)
    if wanted not in available:
        field = "data.split" if role == "train" else "data.eval_split"
        raise JobError(f"{where} has no split {wanted!r}; it has {', '.join(available)}", field)
    return wanted


def _table_files(datasets, path: Path, wanted: str | None, role: str) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise JobError(f"data file not found: {path}")
    from datasets.data_files import DataFilesDict, get_data_patterns

    # The hub's own split naming (train-00000-of-00001.parquet, data/test/...), as load_dataset
    # infers it; a folder whose names say nothing is one "train" split.
    resolved = DataFilesDict.from_patterns(get_data_patterns(str(path)), str(path))
    by_split = {str(name): sorted(Path(f) for f in files
                                  if Path(f).suffix.lower() in TABLE_BUILDERS)
                for name, files in resolved.items()}  # fmt: skip
    by_split = {name: files for name, files in by_split.items() if files}
    if not by_split:
        raise JobError(f"no data files ({', '.join(TABLE_BUILDERS)}) in folder {path}")
    others = [p for p in path.rglob("*") if p.suffix.lower() in (".jsonl", ".json", ".txt")]
    if others:  # a hub snapshot carries JSON metadata; JSONL data belongs in a folder of its own
        log.warning("%s: reading its table files only, not %d JSON / text file(s) such as %s",
                    path, len(others), others[0].name)  # fmt: skip
    return by_split[_pick(list(by_split), wanted, role, str(path))]


def _file_rows(datasets, file: Path):
    builder = TABLE_BUILDERS.get(file.suffix.lower())
    if builder is None:
        raise JobError(f"not a table file (expected {', '.join(TABLE_BUILDERS)})", str(file))
    if file.stat().st_size == 0:
        raise JobError("0-byte file (a truncated upload?)", f"{file}:1")
    try:
        # Streaming reads the file in place, row by row: no prepared copy in the datasets cache.
        rows = datasets.load_dataset(builder, data_files=[str(file)], split="train",
                                     streaming=True)  # fmt: skip
        yield from rows
    except _read_errors(datasets) as exc:
        raise JobError(f"cannot read it as {builder} ({type(exc).__name__}: {exc})", str(file)) \
            from None  # fmt: skip
