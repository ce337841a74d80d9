"""How big and how fast a model is: what distill and prune report next to perplexity."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

# Files that hold weights in a save_pretrained folder (sharded or not).
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def weight_bytes(model: Any) -> int:
    """Bytes of the model's tensors as stored (tied tensors counted once)."""
    seen, total = set(), 0
    for tensor in model.state_dict().values():
        key = (tensor.data_ptr(), tensor.numel())
        if key not in seen:
            seen.add(key)
            total += tensor.numel() * tensor.element_size()
    return total


def size_on_disk(model_dir: str | Path) -> int:
    """Bytes of the weight files in a ``save_pretrained`` folder (tokenizer files excluded)."""
    return sum(p.stat().st_size for p in Path(model_dir).iterdir()
               if p.is_file() and p.name.endswith(_WEIGHT_SUFFIXES))  # fmt: skip


def inference_tokens_per_s(model: Any, examples: Any, device: Any, *, batch_size: int,
                           precision: Any = None, batches: int = 4, repeats: int = 2) -> float:  # fmt: skip
    """Forward-pass (prefill) throughput on up to ``batches`` batches of ``examples``.

    One untimed warm-up batch first (allocator, kernel selection); then the best of ``repeats``
    passes, so a noisy neighbour on a shared machine distorts the figure less.
    """
    import torch

    from .device import autocast

    indices = list(range(min(len(examples), batch_size * batches)))
    groups = [indices[i : i + batch_size] for i in range(0, len(indices), batch_size)]
    inputs = [{k: v.to(device) for k, v in examples.batch(g).items() if k != "labels"}
              for g in groups]  # fmt: skip
    tokens = sum(int(b["attention_mask"].sum()) for b in inputs)
    was_training = model.training
    model.eval()
    best = float("inf")
    with torch.no_grad(), autocast(device, precision) if precision is not None else _null():
        model(**inputs[0])
        for _ in range(repeats):
            _sync(device)
            started = time.perf_counter()
            for batch in inputs:
                model(**batch)
            _sync(device)
            best = min(best, time.perf_counter() - started)
    model.train(was_training)
    return tokens / best if best > 0 else 0.0


def _sync(device: Any) -> None:
    import torch

    if getattr(device, "type", str(device)) == "cuda":
        torch.cuda.synchronize(device)


def _null():
    import contextlib

    return contextlib.nullcontext()
