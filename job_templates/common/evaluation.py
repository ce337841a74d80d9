"""Held-out evaluation shared by the recipes: perplexity for causal LMs, accuracy / macro F1 for
classifiers. Under DDP each rank scores its shard and the sums are all-reduced, so every rank
returns the same numbers."""

from __future__ import annotations

import math
from typing import Any

from .device import autocast
from .text import IGNORE


def evaluate(model: Any, examples: Any, device: Any, *, batch_size: int, precision: Any = None,
             max_batches: int | None = None, rank: int = 0, world_size: int = 1,
             lockstep: bool = False) -> dict:  # fmt: skip
    """Score ``examples`` (a ``text.Examples``) with ``model``.

    ``lockstep``: every rank runs the same number of forward passes (a sharded FSDP model
    all-gathers its weights in each, a collective); a rank with fewer batches repeats its last
    one and does not count it.

    Returns:
        causal LM: ``{"loss", "perplexity", "tokens"}`` with the loss averaged over target tokens;
        classifier: ``{"loss", "accuracy", "f1_macro", "examples"}``.
    """
    import torch

    indices = list(range(len(examples)))[rank::world_size]
    batches = [indices[i : i + batch_size] for i in range(0, len(indices), batch_size)]
    if max_batches is not None:
        batches = batches[:max_batches]
    classifier = not isinstance(examples.labels[0], list)
    num_labels = getattr(getattr(model, "config", None), "num_labels", 2)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    count = torch.zeros((), dtype=torch.float64, device=device)
    confusion = torch.zeros((num_labels, num_labels), dtype=torch.float64, device=device)
    counted = len(batches)
    if lockstep and world_size > 1:
        import torch.distributed as dist

        most = torch.tensor([len(batches)], device=device)
        dist.all_reduce(most, op=dist.ReduceOp.MAX)
        batches = batches + [batches[-1] if batches else [0]] * (int(most.item()) - len(batches))
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for number, batch_indices in enumerate(batches):
            batch = {k: v.to(device) for k, v in examples.batch(batch_indices).items()}
            with autocast(device, precision) if precision is not None else _null():
                out = model(**batch)
            if number >= counted:
                continue  # a lockstep repeat: run for the collective, not scored
            if classifier:
                n = batch["labels"].numel()
                pred = out.logits.argmax(-1)
                confusion.index_put_((batch["labels"], pred), torch.ones_like(pred, dtype=torch.float64),
                                     accumulate=True)  # fmt: skip
            else:
                # HF shifts labels by one inside the model; count the targets it actually scored.
                n = (batch["labels"][:, 1:] != IGNORE).sum()
            loss_sum += out.loss.double() * n
            count += n
    model.train(was_training)
    if world_size > 1:
        import torch.distributed as dist

        for t in (loss_sum, count, confusion):
            dist.all_reduce(t)
    total = max(count.item(), 1.0)
    loss = loss_sum.item() / total
    if classifier:
        return {
            "loss": loss,
            **classification_scores(confusion.cpu()),
            "examples": int(count.item()),
        }
    return {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), "tokens": int(count.item())}


def classification_scores(confusion: Any) -> dict:
    """Accuracy and macro F1 from a confusion matrix (rows: true class, columns: predicted).

    Classes absent from both truth and predictions are left out of the macro average, as
    scikit-learn does for labels it never sees.
    """
    tp = confusion.diag()
    predicted = confusion.sum(0)
    actual = confusion.sum(1)
    total = confusion.sum().item()
    f1s = []
    for c in range(confusion.shape[0]):
        if actual[c] == 0 and predicted[c] == 0:
            continue
        denom = (predicted[c] + actual[c]).item()
        f1s.append(2 * tp[c].item() / denom if denom else 0.0)
    return {"accuracy": tp.sum().item() / total if total else 0.0,
            "f1_macro": sum(f1s) / len(f1s) if f1s else 0.0}  # fmt: skip


def _null():
    import contextlib

    return contextlib.nullcontext()
