"""One model sharded over every chip of a TPU host: torch_xla SPMD, the XLA strategy ``xla-spmd``.

The data-parallel XLA path (``xla.py``: one process per chip, a whole replica on each) needs a
replica to fit one chip. Under SPMD (``torch_xla.runtime.use_spmd()``) one process per host
drives all of the host's chips: the program is written for one device holding the global batch
and the whole model, and XLA's SPMD partitioner (GSPMD) splits every op over the devices of a
mesh as the tensors' sharding annotations say. ``XlaSpmd`` annotates it FSDP-style, as
torch_xla's ``SpmdFullyShardedDataParallel`` (FSDPv2) does, without wrapping the module (so
``state_dict`` keys, tied weights and ``save_pretrained`` stay those of the plain model):

- a 1-D mesh ``("fsdp",)`` over every device of the runtime (every host's chips);
- each parameter sharded along the mesh on one dimension (the largest one the device count
  divides, else the largest: XLA pads an uneven shard), the rest replicated;
- AdamW's moments annotated as their parameter after every step, so they stay sharded;
- the batch's rows sharded along the same axis: data parallel over the chips, each chip computing
  ``training.batch_size`` rows, so a step's batch has ``batch_size x devices`` rows (the global
  batch DDP over as many chips would have). XLA inserts the all-gathers of weights and the
  reduce-scatters of gradients itself; no gradient all-reduce is written.

Weights, gradients and optimizer state per chip are then 1/N of a replica's (the memory plan's
``xla-spmd``). Checkpoints and ``save_pretrained`` copy tensors to the CPU, which assembles each
sharded tensor whole in the one process (``xm._maybe_convert_to_cpu`` / ``.to("cpu")``); loading
copies them back and the annotations are re-applied.

Which runs take it (``use_spmd``): ``training.strategy: fsdp`` on a TPU, or ``auto`` when the
memory plan says a whole replica does not fit one chip. ``xla.launch`` asks before it starts
processes: SPMD runs the job once per host instead of once per chip.

Multi-host (a slice of several hosts, one process each): every host's process is a rank of the
job (``xr.process_index`` / ``xr.process_count``) and loads its own share of the global batch,
which ``xs.ShardingSpec(..., minibatch=True)`` assembles into the global array; host-side
agreement uses a gloo group at the master host from the TPU metadata. This follows torch_xla's
multi-host SPMD documentation and is not run by any test here (one CPU host).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from . import memory_plan
from .strategies import Single

log = logging.getLogger("genai")

SPMD_ENV = "GENAI_XLA_SPMD"  # "1": the launcher chose SPMD for this job (see xla.launch)
MESH_AXIS = "fsdp"


def use_spmd(strategy: str, accelerator: str, shape: memory_plan.ModelShape | None,
             work: memory_plan.Workload | None) -> bool:  # fmt: skip
    """Whether an XLA job shards its model over the chips: ``training.strategy`` ``fsdp``, or
    ``auto`` when one whole replica (weights, gradients, AdamW state, activations) does not fit
    one chip of ``accelerator`` (a model of unknown shape is taken to fit)."""
    if os.environ.get(SPMD_ENV) == "1" or strategy == "fsdp":
        return True
    if strategy != "auto" or shape is None or work is None:
        return False
    chip = memory_plan.DEVICE_GIB.get(accelerator.lower())
    if chip is None:
        return False
    replica = memory_plan.per_device(shape, work, "xla")
    return replica.total > memory_plan.usable(chip * memory_plan.GIB)


def partition_spec(shape: tuple, devices: int) -> tuple:
    """The FSDP partition of a tensor of ``shape``: the mesh axis on its largest dimension that
    ``devices`` divides (else its largest), every other dimension replicated."""
    if not shape:
        return ()
    even = [d for d, size in enumerate(shape) if size % devices == 0]
    pick = max(even or range(len(shape)), key=lambda d: shape[d])
    return tuple(MESH_AXIS if d == pick else None for d in range(len(shape)))


class XlaSpmd(Single):
    """The ``xla-spmd`` strategy: one process, the model and the batch sharded over the mesh."""

    name = "xla-spmd"
    sharded = False  # checkpoints: one process writes the whole (CPU-assembled) state

    def __init__(self):
        import numpy as np
        import torch_xla.distributed.spmd as xs
        import torch_xla.runtime as xr

        xr.use_spmd()  # before any tensor reaches the device (else it replicates them, warns)
        self.xs = xs
        self.devices = xr.global_runtime_device_count()
        self.local_devices = xr.addressable_runtime_device_count()
        self.mesh = xs.Mesh(np.arange(self.devices), (self.devices,), (MESH_AXIS,))
        xs.set_global_mesh(self.mesh)
        # Several hosts: each sends its share of the global batch (``minibatch``), which the
        # runtime assembles. One host sends the whole batch, whose rows XLA may split unevenly.
        several = xr.process_count() > 1
        self.input_sharding = xs.ShardingSpec(self.mesh, (MESH_AXIS, None), minibatch=several)
        self.row_sharding = xs.ShardingSpec(self.mesh, (MESH_AXIS,), minibatch=several)
        self.module = None

    @property
    def data_parallel(self) -> int:
        """Rows of a step's batch per ``training.batch_size`` row, on this host's process."""
        return self.local_devices

    def wrap(self, model: Any, device: Any) -> tuple[Any, Any]:
        from .xla import retie_weights

        model = model.to(device)
        retie_weights(model)  # one tensor for GPT-2's embedding and head, annotated once
        self.module = model
        self.shard_parameters(model)
        log.info("xla-spmd: %d parameters sharded over %d devices (%d on this host), mesh %s",
                 sum(1 for _ in model.parameters()), self.devices, self.local_devices,
                 dict(zip(self.mesh.axis_names, self.mesh.mesh_shape)))  # fmt: skip
        return model, model

    def shard_parameters(self, model: Any) -> None:
        seen: set = set()
        for param in model.parameters():
            if id(param) not in seen:
                seen.add(id(param))
                self.xs.mark_sharding(param, self.mesh, partition_spec(param.shape, self.devices))

    def shard_optimizer_state(self, optimizer: Any) -> None:
        """Annotate AdamW's moments as their parameter (the step creates them unannotated)."""
        for group in optimizer.param_groups:
            for param in group["params"]:
                for value in optimizer.state.get(param, {}).values():
                    if getattr(value, "shape", None) == param.shape and value.device.type == "xla":
                        spec = partition_spec(param.shape, self.devices)
                        self.xs.mark_sharding(value, self.mesh, spec)

    def send(self, host: Any, device: Any) -> Any:
        """``host`` (tensors nested in tuples / dicts) on the device in one transfer, the rows of
        its 1-D and 2-D tensors sharded over the mesh (a 0-d loss scale replicated)."""
        import torch
        import torch_xla
        from torch.utils._pytree import tree_flatten, tree_unflatten

        flat, tree = tree_flatten(host)
        tensors = [t for t in flat if isinstance(t, torch.Tensor)]
        specs = {1: self.row_sharding, 2: self.input_sharding}
        shardings = [specs[t.dim()].xla_spec(t) if t.dim() in specs else None for t in tensors]
        moved = iter(torch_xla._XLAC._xla_tensors_from_aten(tensors, [str(device)] * len(tensors),
                                                            shardings))  # fmt: skip
        return tree_unflatten([next(moved) if isinstance(t, torch.Tensor) else t for t in flat], tree)

    def after_load(self, optimizer: Any) -> None:
        """Re-annotate after a checkpoint's CPU tensors were copied in (the optimizer's
        ``load_state_dict`` puts plain device tensors in its state)."""
        self.shard_parameters(self.module)
        self.shard_optimizer_state(optimizer)


def sharding_specs(model: Any) -> dict[str, str]:
    """``{parameter name: its XLA sharding}`` ("" when the tensor carries none)."""
    import torch_xla

    return {name: torch_xla._XLAC._get_xla_sharding_spec(p) for name, p in model.named_parameters()}


# ---- the launcher's choice ------------------------------------------------------------------


def chosen_for(spec: Any) -> bool:
    """Whether the job of ``spec`` (the job's ``Config``) runs under SPMD: what ``xla.launch``
    asks before it starts one process per chip. ``auto`` plans with the model's shape as the SDK
    does (its local ``config.json`` or a known hub model); an unknown model is taken to fit."""
    training = spec.get("training") or {}
    wanted = training.get("strategy") or "auto"
    if spec.get("task") == "prune":  # pruning shards nothing (as memory.plan_for says)
        return False
    model = spec.get("model") or {}
    shape = memory_plan.shape_for(model.get("name_or_path") or "") if wanted == "auto" else None
    data = spec.get("data") or {}
    lora = model.get("lora")
    work = None if shape is None else memory_plan.Workload(
        batch_size=training.get("batch_size") or 1, seq_len=data.get("max_seq_len") or 512,
        trainable=memory_plan.lora_trainable(shape, lora.get("r") or 8) if lora else None,
        precision="fp32" if training.get("precision") == "fp32" else "bf16",
        checkpointing=bool(training.get("gradient_checkpointing")), device="xla")  # fmt: skip
    accelerator = (spec.get("compute") or {}).get("accelerator") or ""
    return use_spmd(wanted, accelerator, shape, work)


def run(argv: list[str]) -> int:
    """Run the job once in this process (this host), SPMD over all its chips (and, on a slice of
    several hosts, over every host's: each host runs this same command)."""
    import torch_xla.runtime as xr

    os.environ[SPMD_ENV] = "1"
    xr.use_spmd()  # before the runtime is asked anything below
    if xr.process_count() > 1:
        # Unverified here (one CPU host): each host a rank of the job, host-side agreement (the
        # stop flag, barriers) over gloo at the master host the TPU metadata names.
        os.environ.update({"RANK": str(xr.process_index()), "LOCAL_RANK": "0",
                           "WORLD_SIZE": str(xr.process_count())})  # fmt: skip
        os.environ.setdefault("MASTER_ADDR", xr.get_master_ip())
        os.environ.setdefault("MASTER_PORT", MASTER_PORT)
    from ..entrypoint import main

    # As in xla._replica: torch_xla has configured the root logger by now, which would make the
    # entrypoint's basicConfig a no-op and hide the INFO lines.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                        stream=sys.stdout, force=True)  # fmt: skip
    return main(argv)


MASTER_PORT = "8477"  # gloo's rendezvous on the master host (8476 up: the TPU clients' ports)
