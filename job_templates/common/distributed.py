"""The few collective operations the recipes need under torchrun (no-ops for one process).

The process group uses nccl on CUDA and gloo on CPU; torchrun (and Azure's PyTorch distribution)
set ``RANK`` / ``WORLD_SIZE`` / ``MASTER_ADDR``, which ``init_process_group`` reads.
"""

from __future__ import annotations


def init(device_kind: str) -> None:
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_kind == "cuda" else "gloo")


def barrier(world_size: int) -> None:
    if world_size > 1:
        import torch.distributed as dist

        dist.barrier()


def mean(value: float, world_size: int) -> float:
    """The mean of a Python float across ranks."""
    if world_size == 1:
        return value
    import torch
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return t.item() / world_size
