"""Train / eval records for a recipe, wherever the platform put them.

The contract's data channels win (``train`` and ``eval``: SageMaker ``SM_CHANNEL_*``, Vertex /
local ``GENAI_CHANNEL_*``, Azure ``--data``); otherwise the spec's ``data.train`` / ``data.eval``
paths are read (``gs://`` through the FUSE mount; ``hf://`` hub datasets by the job itself, see
``hf_data.py``). Without an eval set, ``data.eval_fraction`` of
the training records is held out by a split seeded with ``training.seed``, so every rank and every
restart holds out the same records; ``data.max_eval_records`` caps the eval set. With
``data.streaming`` the recipes read ``streaming.stream_splits`` instead.
"""

from __future__ import annotations

import logging
import random
from typing import Any

from ..config import JobError
from ..contract import gcs_to_fuse
from .hf_data import is_hub
from .records import read_records

log = logging.getLogger("genai")


def data_location(data: Any, contract: Any, name: str):
    """Where the ``name`` split (``train`` / ``eval``) lives for this job, or None."""
    channel = contract.channel(name) if contract is not None else None
    if channel is not None:
        return channel
    value = data.get(name)
    if value is None:
        return None
    if is_hub(value):
        return value  # the job loads it from the hub (no platform delivers it)
    if value.startswith(("s3://", "azureml://", "http://", "https://")):
        raise JobError(f"{value!r} must reach the job as its '{name}' input channel (the cloud "
                       "adapters set that up); it cannot be read directly here", f"data.{name}")  # fmt: skip
    return gcs_to_fuse(value)


def load_splits(data: Any, contract: Any, seed: int) -> tuple[list[dict], list[dict]]:
    """``(train_records, eval_records)``; eval is empty when there is no eval set and
    ``data.eval_fraction`` is 0.

    Raises:
        JobError: missing / malformed / empty data (from ``records.read_records``), or a dataset
            too small to hold out an eval split.
    """
    train = read_records(data_location(data, contract, "train"), data)
    eval_location = data_location(data, contract, "eval")
    cap = data.get("max_eval_records")
    if eval_location is not None:
        return train, read_records(eval_location, data, role="eval")[:cap]
    fraction = data.get("eval_fraction", 0.0)
    if not fraction:
        return train, []
    train, held = split(train, fraction, seed)
    return train, held[:cap]


def split(records: list[dict], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """Hold out ``fraction`` of ``records`` (at least one) by a seeded shuffle."""
    if len(records) < 2:
        raise JobError(f"{len(records)} training record(s) cannot be split into train and eval; "
                       "add data, give data.eval, or set data.eval_fraction: 0", "data.eval_fraction")  # fmt: skip
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    n_eval = min(len(records) - 1, max(1, round(len(records) * fraction)))
    held = set(order[:n_eval])
    train = [r for i, r in enumerate(records) if i not in held]
    evals = [r for i, r in enumerate(records) if i in held]
    log.info("held out %d of %d records for evaluation (data.eval_fraction=%s)", len(evals),
             len(records), fraction)  # fmt: skip
    return train, evals
