"""How the ``Trainer`` spreads one model over the job's processes: ``single``, ``ddp`` or ``fsdp``.

- ``single``: one process, the model as is.
- ``ddp``: every rank holds the whole model, its gradients and AdamW state; gradients are
  all-reduced (``DistributedDataParallel``, gradients as views of its buckets so they are not
  held twice).
- ``fsdp``: PyTorch's FSDP2 (``torch.distributed.fsdp.fully_shard``) applied to every transformer
  block (the classes the model lists in ``_no_split_modules``) and then to the whole model: each
  rank keeps 1/N of the weights, gradients and optimizer state and all-gathers one block's weights
  at a time. Options (``training.fsdp``): ``sharding: full`` (over every rank) or ``hybrid``
  (within a node, replicated across nodes: a 2-D device mesh, HSDP), ``cpu_offload`` (sharded
  weights, gradients and the optimizer step live in host memory), ``mixed_precision`` (bf16
  weights for compute with fp32 gradient reduction, when the run's precision is bf16).
  Activation checkpointing is ``training.gradient_checkpointing`` (non-reentrant under FSDP).

Which one: ``training.strategy`` (``auto | ddp | fsdp``); ``auto`` asks ``memory_plan`` for the
cheapest strategy that fits the device's memory (DDP on CPU, where memory is not the limit).

Checkpoints under FSDP are sharded (``torch.distributed.checkpoint``: every rank writes its own
shard, see ``checkpoint.save_sharded``). After training, ``consolidate`` gathers the full
weights into a plain copy of the model on every rank, so saving (``save_pretrained`` from rank 0),
LoRA merging and the distillation comparison see an ordinary module, as they do after DDP.
A distillation teacher is never sharded: it is frozen, and every rank holds a replica (the memory
plan counts it whole on every device).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
from typing import Any

from . import memory_plan

log = logging.getLogger("genai")

STRATEGIES = ("auto", "ddp", "fsdp")


class Single:
    name = "single"
    sharded = False

    def wrap(self, model: Any, device: Any) -> tuple[Any, Any]:
        """``(the module checkpoints see, the callable to train through)``."""
        self.module = model.to(device)
        return self.module, self.module

    def sync_context(self, forward: Any, sync: bool):
        return contextlib.nullcontext()

    def consolidate(self, model: Any) -> Any:
        return model

    def after_load(self, optimizer: Any) -> None:
        """Called after a checkpoint was loaded into the model and ``optimizer``."""

    def state_dict(self, optimizer: Any) -> dict:
        """The model and optimizer state as ``torch.distributed.checkpoint`` reads and writes it
        (DTensor shards under FSDP; plain tensors here, which lets a single or DDP run resume
        from a sharded checkpoint: DCP reshards on load)."""
        from torch.distributed.checkpoint.state_dict import (
            get_model_state_dict,
            get_optimizer_state_dict,
        )

        return {"model": get_model_state_dict(self.module),
                "optimizer": get_optimizer_state_dict(self.module, optimizer)}  # fmt: skip

    def load_state_dict(self, optimizer: Any, state: dict) -> None:
        from torch.distributed.checkpoint.state_dict import (
            set_model_state_dict,
            set_optimizer_state_dict,
        )

        set_model_state_dict(self.module, state["model"])
        set_optimizer_state_dict(self.module, optimizer, state["optimizer"])


class DDP(Single):
    name = "ddp"

    def __init__(self, local_rank: int, device_kind: str):
        self.local_rank, self.device_kind = local_rank, device_kind

    def wrap(self, model: Any, device: Any) -> tuple[Any, Any]:
        from torch.nn.parallel import DistributedDataParallel

        model = model.to(device)
        ids = [self.local_rank] if self.device_kind == "cuda" else None
        self.module = DistributedDataParallel(model, device_ids=ids, gradient_as_bucket_view=True)
        return model, self.module

    def sync_context(self, forward: Any, sync: bool):
        # Accumulation micro-batches skip the all-reduce; the group's last one does it once.
        # (The DDP module's, not ``forward``'s: a compiled wrapper has no no_sync.)
        return contextlib.nullcontext() if sync else self.module.no_sync()


class FSDP(Single):
    name = "fsdp"
    sharded = True

    def __init__(self, options: Any, precision: Any, device_kind: str, world: int,
                 local_world: int, checkpointing: bool = False):  # fmt: skip
        self.checkpointing = checkpointing
        self.sharding = options.get("sharding", "full")
        self.cpu_offload = bool(options.get("cpu_offload", False))
        self.mixed_precision = options.get("mixed_precision", True) and precision.name == "bf16"
        self.device_kind, self.world, self.local_world = device_kind, world, local_world
        self.module = None  # the sharded model (set by wrap)
        self._skeleton = None  # an unsharded copy with its weights on the meta device

    def mesh(self):
        from torch.distributed.device_mesh import init_device_mesh

        if self.sharding == "hybrid" and self.world > self.local_world > 1:
            nodes = self.world // self.local_world
            return init_device_mesh(self.device_kind, (nodes, self.local_world),
                                    mesh_dim_names=("replicate", "shard"))  # fmt: skip
        return init_device_mesh(self.device_kind, (self.world,), mesh_dim_names=("shard",))

    def wrap(self, model: Any, device: Any) -> tuple[Any, Any]:
        import torch
        from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, fully_shard

        if self.checkpointing:
            # Reentrant checkpointing re-runs forward outside autograd, where FSDP's hooks that
            # all-gather the block's weights would not fire.
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self._skeleton = meta_copy(model)
        options: dict = {"mesh": self.mesh()}
        if self.mixed_precision:
            options["mp_policy"] = MixedPrecisionPolicy(param_dtype=torch.bfloat16,
                                                        reduce_dtype=torch.float32)  # fmt: skip
        if self.cpu_offload:
            options["offload_policy"] = CPUOffloadPolicy()
        blocks = transformer_blocks(model)
        for block in blocks:
            fully_shard(block, **options)
        # Sharded from the host copy: only each rank's shard ever reaches its device.
        fully_shard(model, **options)
        if not self.cpu_offload:
            model.to(device)
        log.info("fsdp: %d transformer blocks sharded over %d ranks (%s sharding%s%s)",
                 len(blocks), self.world, self.sharding,
                 ", bf16 compute / fp32 reduce" if self.mixed_precision else "",
                 ", cpu offload" if self.cpu_offload else "")  # fmt: skip
        self.module = model
        return model, model

    def sync_context(self, forward: Any, sync: bool):
        # FSDP2's counterpart of no_sync: accumulate unsharded gradients, reduce-scatter once.
        self.module.set_requires_gradient_sync(sync)
        return contextlib.nullcontext()

    def consolidate(self, model: Any) -> Any:
        """A plain (unsharded) module with the trained weights, on every rank (a collective).

        Each weight is all-gathered and copied to host memory one at a time, so the device never
        holds more than one full tensor beyond the shards; the copy then moves to the device
        where the device has room for it (for what the recipe measures next), else stays in host
        memory, which is all saving needs."""
        import torch
        from torch.distributed.checkpoint.state_dict import get_model_state_dict
        from torch.distributed.tensor import DTensor

        full = {name: (value.full_tensor() if isinstance(value, DTensor) else value).detach().cpu()
                for name, value in get_model_state_dict(model).items()}  # fmt: skip
        plain = self._skeleton
        plain.load_state_dict(full, assign=True)
        if hasattr(plain, "tie_weights"):
            plain.tie_weights()  # assign=True gives tied names (wte / lm_head) separate tensors
        plain.train(model.training)
        if self.device_kind == "cuda":
            size = sum(t.numel() * t.element_size() for t in full.values())
            if torch.cuda.mem_get_info()[0] > 1.2 * size:
                plain.to(torch.cuda.current_device())
            else:
                log.info("fsdp: the consolidated model (%.1f GiB) stays in host memory",
                         size / 2**30)  # fmt: skip
        return plain


def create(training: Any, world: int, device_kind: str, precision: Any, model: Any,
           train: Any = None, local_rank: int = 0, accelerator: str = "") -> Single:  # fmt: skip
    """The strategy for this run (``training.strategy``; ``auto`` asks the memory plan).

    ``train``: the training examples (their length is the plan's sequence length);
    ``accelerator``: the spec's (a TPU's chip memory decides ``auto`` on XLA)."""
    wanted = training.get("strategy") or "auto"
    # torchrun sets LOCAL_WORLD_SIZE; a node's processes are what hybrid sharding shards over.
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    rows = getattr(train, "input_ids", None) or []  # preference pairs (dpo) carry their own
    seq_len = max((len(x) for x in rows[:256]), default=getattr(train, "seq_len", None) or 512)
    if device_kind == "xla":
        return xla_strategy(training, model, precision, seq_len, accelerator)
    if world == 1:
        if wanted == "fsdp":
            log.info("training.strategy fsdp with one process: nothing to shard over; single")
        return Single()
    if wanted == "auto":
        wanted = auto_strategy(training, world, local_world, device_kind, precision, model,
                               local_rank, seq_len)  # fmt: skip
    if wanted == "fsdp":
        return FSDP(training.get("fsdp") or {}, precision, device_kind, world, local_world,
                    checkpointing=bool(training.gradient_checkpointing))
    return DDP(local_rank, device_kind)


def auto_strategy(training: Any, world: int, local_world: int, device_kind: str,
                  precision: Any, model: Any, local_rank: int, seq_len: int) -> str:  # fmt: skip
    """``ddp`` where the memory plan says it fits this device, else ``fsdp``."""
    if device_kind != "cuda":
        return "ddp"  # host memory is not what limits a CPU run; XLA has its own path
    import torch

    capacity = torch.cuda.get_device_properties(local_rank).total_memory
    shape = memory_plan.shape_from_config(model.config.to_dict())
    work = memory_plan.Workload(
        batch_size=training.batch_size, seq_len=seq_len,
        trainable=sum(p.numel() for p in model.parameters() if p.requires_grad),
        precision=precision.name, checkpointing=bool(training.gradient_checkpointing),
    )
    ddp = memory_plan.per_device(shape, work, "ddp", world=world, per_node=local_world)
    choice = "ddp" if ddp.total <= memory_plan.usable(capacity) else "fsdp"
    log.info("training.strategy auto: %s (DDP needs %s of this GPU's %s)", choice,
             memory_plan.gib(ddp.total), memory_plan.gib(capacity))  # fmt: skip
    return choice


def xla_strategy(training: Any, model: Any, precision: Any, seq_len: int,
                 accelerator: str) -> Single:  # fmt: skip
    """On XLA: ``xla-spmd`` (``xla_spmd.py``: one process shards the model over every chip) for
    ``training.strategy: fsdp``, or ``auto`` when a replica does not fit one chip; else one
    replica per process (``xla.py`` averages the gradients of the per-chip processes)."""
    from . import xla_spmd
    from .xla_launch import LAUNCHED

    if os.environ.get(LAUNCHED):  # the launcher chose one process per chip
        return Single()
    wanted = training.get("strategy") or "auto"
    shape = work = None
    if wanted == "auto" and hasattr(getattr(model, "config", None), "to_dict"):
        shape = memory_plan.shape_from_config(model.config.to_dict())
        work = xla_workload(training, precision.name, seq_len,
                            sum(p.numel() for p in model.parameters() if p.requires_grad))  # fmt: skip
    if not xla_spmd.use_spmd(wanted, accelerator, shape, work):
        return Single()
    return xla_spmd.XlaSpmd()


def xla_workload(training: Any, precision: str, seq_len: int, trainable: int | None):
    return memory_plan.Workload(batch_size=training.batch_size, seq_len=seq_len,
                                trainable=trainable, precision=precision,
                                checkpointing=bool(training.gradient_checkpointing),
                                device="xla")  # fmt: skip


def transformer_blocks(model: Any) -> list:
    """The repeated blocks FSDP shards one by one: modules whose class the (inner) HF model
    names in ``_no_split_modules`` (``GPT2Block``, ``LlamaDecoderLayer``...)."""
    names: set = set()
    for module in model.modules():
        names.update(getattr(module, "_no_split_modules", None) or ())
    blocks = [m for m in model.modules() if type(m).__name__ in names]
    if not blocks:
        raise ValueError(f"{type(model).__name__} names no transformer block class "
                         "(_no_split_modules); FSDP needs one to shard by")  # fmt: skip
    return blocks


def meta_copy(model: Any) -> Any:
    """A deep copy of ``model`` whose parameters live on the meta device (no memory), buffers
    copied: the unsharded shell ``consolidate`` fills with the trained weights."""
    import torch

    memo = {id(p): torch.nn.Parameter(torch.empty_like(p, device="meta"),
                                      requires_grad=p.requires_grad)
            for p in model.parameters()}  # fmt: skip
    return copy.deepcopy(model, memo)
