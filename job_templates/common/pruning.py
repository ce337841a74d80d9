"""Weight pruning for the ``prune`` recipe: which weights to drop, and making it stick.

Methods (``prune.method``):

- ``magnitude``: drop the smallest ``|W|``. Unstructured, it is *global* across all pruned layers
  (``torch.nn.utils.prune.global_unstructured`` with ``L1Unstructured``), so layers with many
  small weights lose more of them.
- ``wanda`` (Sun et al. 2023, "A Simple and Effective Pruning Approach for LLMs"): score
  ``|W_ij| * ||X_j||_2``, where ``||X_j||`` is the L2 norm of input channel j over calibration
  tokens (collected with forward hooks); weights are compared within each output row, as in the
  paper. This is the one-shot form: every layer's norms come from the dense model.

Patterns (``prune.pattern``): ``unstructured`` at ``prune.sparsity``, or ``2:4`` (in every group
of 4 consecutive *input* weights of an output row, keep the 2 best: exactly 50 %), the layout
NVIDIA's sparse tensor cores accelerate.

Pruned layers: every ``nn.Linear`` and GPT-2 ``Conv1D`` except the output embedding (the LM head,
tied to the input embedding in GPT-2). ``Conv1D`` stores its weight as (in, out), the transpose
of ``nn.Linear``'s (out, in); scores and masks are built in (out, in) and transposed back, so
"input channel" and "group of 4 inputs" mean the same thing for both.

Masks go on through ``torch.nn.utils.prune`` (``weight_orig`` * ``weight_mask`` in a forward
pre-hook), so a recovery fine-tune cannot revive a pruned weight (its gradient is multiplied by
0), and ``make_permanent`` (``prune.remove``) then writes the zeros into a plain ``weight``.
"""

from __future__ import annotations

import logging
from typing import Any

from ..config import JobError
from . import distributed

log = logging.getLogger("genai")


def prunable(model: Any) -> list[tuple[str, Any]]:
    """``(name, module)`` of the layers to prune: Linear / Conv1D, minus the output embedding."""
    import torch
    from transformers.pytorch_utils import Conv1D

    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return [(name, m) for name, m in model.named_modules()
            if isinstance(m, (torch.nn.Linear, Conv1D)) and m is not head]  # fmt: skip


def _is_conv1d(module: Any) -> bool:
    from transformers.pytorch_utils import Conv1D

    return isinstance(module, Conv1D)


def out_in(module: Any, tensor: Any) -> Any:
    """A weight-shaped tensor viewed as (out, in), whatever the layer's storage orientation."""
    return tensor.t() if _is_conv1d(module) else tensor


def input_norms(model: Any, modules: list[tuple[str, Any]], batches: list[dict], device: Any,
                precision: Any = None, world_size: int = 1) -> dict[str, Any]:  # fmt: skip
    """``||X_j||_2`` per input channel of each module over the calibration ``batches``.

    Padding positions are left out (their activations are not data), by reading the attention
    mask of the batch in flight. Under torchrun each rank brings its own ``batches`` and the sums
    of squares are added across ranks before the root: every rank then holds the same norms,
    hence the same masks (per-rank norms would prune each replica differently).
    """
    import torch

    from .device import autocast

    sums = {name: None for name, _ in modules}
    current = {}

    def hook(name):
        def accumulate(module, args):
            x = args[0].detach().float()
            keep = current["mask"].reshape(*x.shape[:-1], 1).to(x.dtype)
            sq = (x.pow(2) * keep).reshape(-1, x.shape[-1]).sum(0)
            sums[name] = sq if sums[name] is None else sums[name] + sq

        return accumulate

    handles = [m.register_forward_pre_hook(hook(name)) for name, m in modules]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for batch in batches:
                batch = {k: v.to(device) for k, v in batch.items() if k != "labels"}
                current["mask"] = batch["attention_mask"]
                with autocast(device, precision) if precision is not None else _null():
                    model(**batch)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    sums = {name: s for name, s in sums.items() if s is not None}
    for total in sums.values():
        distributed.all_sum(total, world_size)
    return {name: total.sqrt() for name, total in sums.items()}


def keep_mask(scores: Any, sparsity: float, pattern: str, per_row: bool) -> Any:
    """1 where a weight stays, from (out, in) ``scores`` (higher = more important).

    ``2:4``: the 2 best of each group of 4 along ``in``. ``unstructured``: the lowest
    ``round(sparsity * n)`` scores go, per output row when ``per_row`` (Wanda), else over the
    whole matrix. Ties are broken by position (``topk``), so the count is always exact.
    """
    import torch

    out_features, in_features = scores.shape
    if pattern == "2:4":
        groups = scores.reshape(out_features, in_features // 4, 4)
        best = groups.topk(2, dim=-1).indices
        mask = torch.zeros_like(groups).scatter_(-1, best, 1.0)
        return mask.reshape(out_features, in_features)
    rows = scores if per_row else scores.reshape(1, -1)
    k = round(sparsity * rows.shape[1])
    mask = torch.ones_like(rows)
    if k:
        mask.scatter_(1, rows.topk(k, dim=1, largest=False).indices, 0.0)
    return mask.reshape(out_features, in_features)


def check_pattern(modules: list[tuple[str, Any]], sparsity: float, pattern: str) -> None:
    """Raise a JobError when 2:4 is asked at a sparsity other than 0.5 or a layer cannot hold it."""
    if pattern != "2:4":
        return
    if abs(sparsity - 0.5) > 1e-9:
        raise JobError(f"2:4 keeps 2 of every 4 weights, i.e. sparsity 0.5, not {sparsity}; set "
                       "prune.sparsity: 0.5 or prune.pattern: unstructured", "prune.sparsity")  # fmt: skip
    for name, module in modules:
        inputs = out_in(module, module.weight).shape[1]
        if inputs % 4:
            raise JobError(f"layer {name} has {inputs} inputs, not a multiple of 4: it cannot be "
                           "pruned 2:4; use prune.pattern: unstructured", "prune.pattern")  # fmt: skip


def prune_model(model: Any, prune_spec: Any, norms: dict[str, Any] | None = None) -> list:
    """Attach pruning masks to every prunable layer of ``model`` (in place).

    Args:
        prune_spec: the spec's ``prune`` section (``method``, ``sparsity``, ``pattern``).
        norms: ``input_norms`` output; required for ``wanda``.

    Returns:
        The pruned ``(name, module)`` list, to pass to ``make_permanent`` / ``sparsity_report``.
    """
    import torch
    from torch.nn.utils import prune

    modules = prunable(model)
    check_pattern(modules, prune_spec.sparsity, prune_spec.pattern)
    if prune_spec.method == "magnitude" and prune_spec.pattern == "unstructured":
        prune.global_unstructured([(m, "weight") for _, m in modules],
                                  pruning_method=prune.L1Unstructured, amount=prune_spec.sparsity)  # fmt: skip
        return modules
    for name, module in modules:
        with torch.no_grad():
            scores = out_in(module, module.weight.detach().abs().float())
            if prune_spec.method == "wanda":
                scores = scores * norms[name].to(scores.device)[None, :]
            mask = keep_mask(scores, prune_spec.sparsity, prune_spec.pattern,
                             per_row=prune_spec.method == "wanda")  # fmt: skip
        prune.custom_from_mask(module, "weight", out_in(module, mask).to(module.weight.dtype))
    return modules


def make_permanent(modules: list[tuple[str, Any]]) -> None:
    """Fold each mask into a plain ``weight`` (zeros stay zeros) and drop the pruning hooks."""
    from torch.nn.utils import prune

    for _, module in modules:
        if prune.is_pruned(module):
            prune.remove(module, "weight")


def sparsity_report(model: Any, modules: list[tuple[str, Any]]) -> dict:
    """Zeros per pruned layer, over all pruned layers, and over every parameter of the model."""
    per_layer, zeros, total = {}, 0, 0
    for name, module in modules:
        w = module.weight
        z = int((w == 0).sum())
        per_layer[name] = {"sparsity": z / w.numel(), "zeros": z, "weights": w.numel()}
        zeros, total = zeros + z, total + w.numel()
    all_zeros = sum(int((p == 0).sum()) for p in model.parameters())
    all_total = sum(p.numel() for p in model.parameters())
    return {"per_layer": per_layer, "sparsity_pruned_layers": zeros / total if total else 0.0,
            "pruned_weights": zeros, "prunable_weights": total,
            "sparsity_all_parameters": all_zeros / all_total}  # fmt: skip


def valid_2_4(module: Any) -> bool:
    """Whether every group of 4 consecutive inputs of every output row has at most 2 non-zeros."""
    w = out_in(module, module.weight.detach())
    return bool(((w.reshape(w.shape[0], -1, 4) != 0).sum(-1) <= 2).all())


def semi_structured_status() -> str:
    """Where 2:4 speed-ups are actually available on this machine, in one sentence."""
    import torch

    if not torch.cuda.is_available():
        return ("no CUDA device: the 2:4 pattern is stored dense and runs at dense speed here; "
                "torch.sparse.to_sparse_semi_structured needs an NVIDIA GPU of compute "
                "capability 8.0+ (Ampere, Hopper)")  # fmt: skip
    major, minor = torch.cuda.get_device_capability()
    if major >= 8:
        return (f"compute capability {major}.{minor}: nn.Linear fp16/bf16 weights with this 2:4 "
                "pattern can be converted with torch.sparse.to_sparse_semi_structured for "
                "sparse tensor-core matmuls (GPT-2 Conv1D layers must become nn.Linear first)")  # fmt: skip
    return f"compute capability {major}.{minor} < 8.0: no 2:4 sparse tensor cores on this GPU"


def _null():
    import contextlib

    return contextlib.nullcontext()
