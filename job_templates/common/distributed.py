"""The few collective operations the recipes need under torchrun (no-ops for one process).

The process group uses nccl on CUDA and gloo on CPU; torchrun (and Azure's PyTorch distribution)
set ``RANK`` / ``WORLD_SIZE`` / ``MASTER_ADDR``, which ``init_process_group`` reads.
"""

from __future__ import annotations


def init(device_kind: str) -> None:
    import torch.distributed as dist

    if device_kind == "xla":
        from .xla import init_process_group

        return init_process_group()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_kind == "cuda" else "gloo")


def barrier(world_size: int) -> None:
    if world_size > 1:
        import torch.distributed as dist

        dist.barrier()


def all_sum(values, world_size: int):
    """Sum a tensor across ranks, in place (on its own device: nccl needs CUDA); returns it."""
    if world_size > 1:
        import torch.distributed as dist

        dist.all_reduce(values)
    return values


def mean_tensor(values, world_size: int):
    """The element-wise mean of a tensor across ranks, as a new tensor."""
    if world_size == 1:
        return values
    return all_sum(values.clone(), world_size) / world_size
