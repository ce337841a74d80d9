"""Local runs as things to build on: ``runs/latest/<spec name>`` and ``run:NAME`` references.

``genai-cloud run`` keeps each run in ``<output.local_dir>/<job name>`` (``runs/`` by default).
After a run finishes, ``runs/latest/<spec name>`` is a symlink to it: the newest finished run of
that spec. A spec may then start from earlier work by name:

- ``model.name_or_path: run:NAME`` (and ``distill.teacher``): that run's ``model/`` folder;
- ``training.resume_from: run:NAME``: that run's ``checkpoints/`` (the newest one is loaded,
  optimizer and step included, when this run has no checkpoint of its own).

``NAME`` is a job name (``tiny-finetune-3f2a9c01b2``, a folder in ``runs/``) or a spec name (its
newest finished run, through ``runs/latest``). Checkpoint URIs (``s3://``, ``gs://``,
``azureml://``) and folders work in ``training.resume_from`` as they are.
"""

from __future__ import annotations

import os
from pathlib import Path

RUN_SCHEME = "run:"
LATEST = "latest"
# Spec fields that may name a run -> the folder of the run they mean.
RUN_FIELDS = {("model", "name_or_path"): "model", ("distill", "teacher"): "model",
              ("training", "resume_from"): "checkpoints"}  # fmt: skip


def runs_dir(raw: dict | None = None) -> Path:
    """``output.local_dir`` of a raw spec (default ``runs``), relative to the current folder."""
    output = (raw or {}).get("output") if isinstance(raw, dict) else None
    local = output.get("local_dir") if isinstance(output, dict) else None
    return Path(local or "runs")


def find_run(name: str, root: str | Path = "runs") -> Path | None:
    """The run folder ``name`` means: ``<root>/<name>`` (a job name), else the newest finished
    run of the spec called ``name`` (``<root>/latest/<name>``); None when neither exists."""
    root = Path(root)
    for candidate in (root / name, root / LATEST / name):
        if name and name != LATEST and candidate.is_dir():
            return candidate.resolve()
    return None


def known_runs(root: str | Path = "runs") -> list[str]:
    """Spec names with a latest run, then job names, for an error message."""
    root = Path(root)
    latest = sorted(p.name for p in (root / LATEST).iterdir()) if (root / LATEST).is_dir() else []
    jobs = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name != LATEST) \
        if root.is_dir() else []  # fmt: skip
    return latest + jobs


def resolve_run_refs(raw: dict, root: str | Path) -> tuple[dict, list[tuple[tuple, str]]]:
    """``raw`` with every ``run:NAME`` in ``RUN_FIELDS`` replaced by the run's folder.

    Returns:
        ``(spec dict, problems)``: ``(field path, message)`` per reference to a run that is not
        there, naming the runs there are.
    """
    raw, problems = dict(raw), []
    for (section, key), folder in RUN_FIELDS.items():
        part = raw.get(section)
        value = part.get(key) if isinstance(part, dict) else None
        if not isinstance(value, str) or not value.startswith(RUN_SCHEME):
            continue
        name = value[len(RUN_SCHEME):].strip("/")
        run = find_run(name, root)
        if run is None:
            there = known_runs(root)
            listed = f"runs: {', '.join(there[:12])}" if there else "no runs yet"
            message = (f"no run {name!r} in {root}/ ({listed}); give a job name or the name of "
                       "a spec that has finished a run")
            problems.append(((section, key), message))
            continue
        raw[section] = {**part, key: str(run / folder)}
    return raw, problems


def mark_latest(spec_name: str, run_dir: str | Path, root: str | Path) -> Path:
    """Point ``<root>/latest/<spec_name>`` at ``run_dir`` (atomically: a reader sees the old link
    or the new one). Relative when the run is inside ``root``, so the runs folder can move."""
    run_dir, root = Path(run_dir).absolute(), Path(root).absolute()
    latest = root / LATEST
    latest.mkdir(parents=True, exist_ok=True)
    link = latest / spec_name
    target = Path("..") / run_dir.name if run_dir.parent == root else run_dir
    tmp = latest / f".{spec_name}.tmp-{os.getpid()}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(target, target_is_directory=True)
    os.replace(tmp, link)
    return link
