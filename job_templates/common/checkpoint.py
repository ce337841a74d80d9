"""Preemption-safe checkpoints: written atomically, resumed from automatically.

Layout inside the contract's checkpoint dir (SageMaker syncs ``/opt/ml/checkpoints`` to S3, Vertex
gives ``AIP_CHECKPOINT_DIR``, locally it is ``<run dir>/checkpoints``)::

    step-00000040/state.pt      a complete checkpoint (the folder name carries the step)
    step-00000050/state.pt
    .tmp-step-00000060-<pid>/   being written; ignored, and removed on the next start

A checkpoint folder only ever appears under its final name by ``os.replace`` of a fully written
and fsynced temporary folder, so a kill -9 at any instant leaves either the previous set of
checkpoints or the new one, never a torn file that a restart would trust.

``state.pt`` is one ``torch.save`` dict: ``model``, ``optimizer``, ``scheduler``, ``scaler``,
``rng`` (python, numpy, torch CPU, CUDA; one entry per rank), ``loop`` (step, epoch, batch offset,
sampler seed, loss history...) and ``notes`` (recipe state such as the eval before training). It
holds only tensors and plain Python values, so it loads with ``weights_only=True``.

Under FSDP the model and optimizer are not in ``state.pt`` but beside it, sharded:
``step-N/sharded/`` is a ``torch.distributed.checkpoint`` folder (``.metadata`` plus one
``__<rank>_0.distcp`` per rank), written by every rank into the same temporary folder, which rank
0 publishes with the same atomic rename once all ranks have finished (a barrier). Loading reshards
to the current world size, so a rerun on another number of processes (or one process, unsharded)
still resumes; the data order then differs from an uninterrupted run's, as it depends on the
world size.
"""

from __future__ import annotations

import logging
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

log = logging.getLogger("genai")

STATE_FILE = "state.pt"
_NAME = re.compile(r"^step-(\d{8,})$")


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}"


def list_checkpoints(directory: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints in ``directory``, oldest first, as ``(step, path)``."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for path in directory.iterdir():
        match = _NAME.match(path.name)
        if match and (path / STATE_FILE).is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest(directory: str | Path) -> Path | None:
    found = list_checkpoints(directory)
    return found[-1][1] if found else None


def remove_partials(directory: str | Path) -> None:
    """Delete temporary folders left by a writer that was killed mid-write."""
    directory = Path(directory)
    if directory.is_dir():
        for path in directory.glob(".tmp-step-*"):
            shutil.rmtree(path, ignore_errors=True)


def save(directory: str | Path, step: int, state: dict, keep: int) -> Path:
    """Write ``state`` as the checkpoint for ``step`` atomically; keep the newest ``keep``."""
    import torch

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / checkpoint_name(step)
    tmp = directory / f".tmp-{checkpoint_name(step)}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    with open(tmp / STATE_FILE, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())  # the rename below must never publish data still in page cache
    if final.exists():  # the same step saved before (e.g. a rerun after preemption): replace it
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync_dir(directory)
    for _step, old in list_checkpoints(directory)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


SHARDED_DIR = "sharded"


def save_sharded(directory: str | Path, step: int, state: dict, sharded: dict, keep: int,
                 is_main: bool) -> Path:  # fmt: skip
    """Every rank calls this: ``sharded`` (the model and optimizer state dicts of DTensors) goes
    through ``torch.distributed.checkpoint`` into the step's folder; rank 0 adds ``state.pt``
    (``state``: scheduler, RNGs of all ranks, loop position) and publishes the folder."""
    import torch
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp

    directory = Path(directory)
    final = directory / checkpoint_name(step)
    # One name on every rank (not the pid): all shards land in the same temporary folder.
    tmp = directory / f".tmp-{checkpoint_name(step)}-sharded"
    if is_main:
        directory.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    dist.barrier()
    dcp.save(sharded, checkpoint_id=str(tmp / SHARDED_DIR))  # collective; fsyncs each file
    if is_main:
        with open(tmp / STATE_FILE, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(directory)
        for _step, old in list_checkpoints(directory)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    dist.barrier()  # no rank reads or writes the next checkpoint before this one is published
    return final


def is_sharded(path: str | Path) -> bool:
    return (Path(path) / SHARDED_DIR).is_dir()


def load_sharded(path: str | Path, template: dict) -> dict:
    """Fill ``template`` (this run's sharded state dicts) from a ``save_sharded`` checkpoint."""
    import torch.distributed.checkpoint as dcp

    sharded = Path(path) / SHARDED_DIR
    if not sharded.is_dir():
        raise RuntimeError(f"{path} holds no sharded model state: it was written by a run with "
                           "another training.strategy; delete it or set that strategy again")  # fmt: skip
    dcp.load(template, checkpoint_id=str(sharded))
    return template


def load(path: str | Path) -> dict:
    import torch

    return torch.load(Path(path) / STATE_FILE, map_location="cpu", weights_only=True)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # some FUSE mounts cannot open folders; the rename is still atomic there
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ---- random number generators ---------------------------------------------------------------


def rng_state() -> dict[str, Any]:
    """Every RNG a training step may draw from, as tensors and plain values."""
    import numpy as np
    import torch

    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    import numpy as np
    import torch

    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))  # fmt: skip
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def resume_source(location: str | Path | None) -> Path | None:
    """The checkpoint ``training.resume_from`` names: a ``step-N`` folder, or the newest one in a
    checkpoints folder. None when it is not set.

    Raises:
        JobError: naming ``training.resume_from`` when there is no complete checkpoint there.
    """
    if not location:
        return None
    from ..config import JobError

    path = Path(location)
    if (path / STATE_FILE).is_file():
        return path
    found = latest(path)
    if found is None:
        raise JobError(f"no complete checkpoint (step-N/{STATE_FILE}) at {path}",
                       "training.resume_from")  # fmt: skip
    return found
