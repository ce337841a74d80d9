"""The processes of an XLA job: ``python -m job_templates.common.xla`` (what a TPU job runs).

One process per local chip through PJRT (``torch_xla.launch``), each setting the contract's
``RANK`` / ``LOCAL_RANK`` / ``WORLD_SIZE`` from the XLA runtime (data parallel, ``xla.py``); or,
when the job shards its model (``xla_spmd.chosen_for``), one process per host over all its chips.
Split from ``xla.py``, which keeps the step, loader and evaluation.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any


def init_process_group() -> None:
    """The host-side (gloo) group of an XLA job: ``xla://`` rendezvous when PJRT started the
    processes (the master host comes from the TPU metadata), else torchrun's ``env://``."""
    import torch.distributed as dist

    if dist.is_initialized():
        return
    if os.environ.get(LAUNCHED):
        import torch_xla.distributed.xla_backend  # noqa: F401  (registers the xla:// rendezvous)

        dist.init_process_group("gloo", init_method="xla://")
    else:
        dist.init_process_group("gloo")


LAUNCHED = "GENAI_XLA_LAUNCHED"  # set in the processes ``launch`` starts
STOP_FILE = "GENAI_XLA_STOP_FILE"  # appears when the launcher got SIGTERM


def _replica(index: int, argv: list[str]) -> int:
    """One chip's process: the contract's rank / world from the XLA runtime, then the job."""
    import torch_xla.runtime as xr

    os.environ.update({
        "RANK": str(xr.global_ordinal()), "LOCAL_RANK": str(xr.local_ordinal()),
        "WORLD_SIZE": str(xr.world_size()), LAUNCHED: "1",
    })  # fmt: skip
    from ..entrypoint import main

    # Something in a spawned replica configures the root logger before the entrypoint does
    # (its basicConfig is then a no-op and the INFO lines vanish): configure it here, as main.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                        stream=sys.stdout, force=True)  # fmt: skip
    code = main(argv)
    if code:
        raise SystemExit(code)  # torch_xla.launch re-raises it in the parent: the job's status
    return code


def launch(argv: list[str] | None = None) -> int:
    """Run the entrypoint in one process per local TPU chip (PJRT), or once elsewhere; once per
    host, over all its chips, when the job shards its model (``xla_spmd.chosen_for``).

    On a multi-host slice every host runs this same command (Vertex starts the container on each
    host of the slice, see ``genai_cloud/providers/vertex.py``); PJRT numbers the chips across
    hosts from the TPU metadata, so ranks are global and the world is the whole slice.
    """
    argv = sys.argv[1:] if argv is None else argv
    forced = os.environ.get("GENAI_XLA_LAUNCH") == "1"  # tests: the TPU path on XLA's CPU device
    if os.environ.get("PJRT_DEVICE", "").upper() != "TPU" and not forced:
        from ..entrypoint import main

        return main(argv)  # CPU / GPU XLA devices: one process (torchrun starts more)
    from . import xla_spmd

    if xla_spmd.chosen_for(_spec(argv)):
        return xla_spmd.run(argv)  # one process drives every chip of this host
    import torch_xla

    # An eviction's SIGTERM reaches this process only, and each chip's job runs in a worker
    # thread of its process, where no signal handler can be installed: the handler leaves a file
    # that every replica looks for after each step, then all stop at the same step, flush a
    # checkpoint and exit 143 (which torch_xla.launch raises here).
    stop = Path(tempfile.mkdtemp(prefix="genai-xla-")) / "stop"
    os.environ[STOP_FILE] = str(stop)
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.touch())
    torch_xla.launch(_replica, args=(argv,))
    return 0


def _spec(argv: list[str]) -> Any:
    from ..config import load_config
    from ..contract import resolve

    return load_config(resolve(argv).spec_path)
