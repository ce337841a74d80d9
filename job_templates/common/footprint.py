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


def size_on_disk(model_dir: str | Path) -> int | None:
    """Bytes of the weight files in a ``save_pretrained`` folder (tokenizer files excluded);
    None when ``model_dir`` is not a local folder (a hub id)."""
    if not Path(model_dir).is_dir():
        return None
    return sum(p.stat().st_size for p in Path(model_dir).iterdir()
               if p.is_file() and p.name.endswith(_WEIGHT_SUFFIXES))  # fmt: skip


def compare_inference(models: dict, examples: Any, device: Any, *, batch_size: int,
                      precision: Any = None, batches: int = 4, rounds: int = 5) -> dict:  # fmt: skip
    """Forward-pass (prefill) throughput of each model on the same ``batches`` batches.

    One untimed warm-up pass per model (allocator, kernel selection), then ``rounds`` rounds in
    which every model runs once, in turn: a noisy neighbour on a shared machine then slows all
    of them alike rather than whichever happened to run during the noise. Each model's figure is
    its best round; ``spread`` (slowest / fastest round) says how noisy the measurement was.

    Returns:
        ``{name: {"tokens_per_s", "spread"}}``.
    """
    import torch

    from .device import autocast

    indices = list(range(min(len(examples), batch_size * batches)))
    groups = [indices[i : i + batch_size] for i in range(0, len(indices), batch_size)]
    inputs = [{k: v.to(device) for k, v in examples.batch(g).items() if k != "labels"}
              for g in groups]  # fmt: skip
    tokens = sum(int(b["attention_mask"].sum()) for b in inputs)
    modes = {name: model.training for name, model in models.items()}
    times: dict[str, list[float]] = {name: [] for name in models}
    with torch.no_grad(), autocast(device, precision) if precision is not None else _null():
        for model in models.values():
            model.eval()
            model(**inputs[0])
        for _ in range(rounds):
            for name, model in models.items():
                _sync(device)
                started = time.perf_counter()
                for batch in inputs:
                    model(**batch)
                _sync(device)
                times[name].append(time.perf_counter() - started)
    for name, model in models.items():
        model.train(modes[name])
    return {name: {"tokens_per_s": tokens / min(t) if min(t) > 0 else 0.0,
                   "spread": max(t) / min(t) if min(t) > 0 else None}
            for name, t in times.items()}  # fmt: skip


def _sync(device: Any) -> None:
    import torch

    if getattr(device, "type", str(device)) == "cuda":
        torch.cuda.synchronize(device)


def _null():
    import contextlib

    return contextlib.nullcontext()


def count_parameters(model: Any) -> dict[str, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"total": total, "trainable": trainable}
