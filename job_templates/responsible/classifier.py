"""Models for the fairness recipe and the mitigation test: path resolution, batched inference,
per-sequence log-likelihoods and a minimal weighted-loss training loop.
"""

from __future__ import annotations

import math

from ..config import JobError


def resolve_model_path(name_or_path: str, contract=None) -> str:
    """What ``from_pretrained`` can open: the shared resolver of ``job_templates.common.locations``
    (``pkg://package/dir`` inside an installed package, ``gs://`` via FUSE, ``s3://`` downloaded,
    a ``model`` data channel first), so every recipe reads the same locations.

    Raises:
        JobError: a ``pkg://`` package that is not installed, or an unreadable URI scheme.
    """
    from ..common.locations import resolve_location

    return resolve_location(name_or_path, contract)


def load_classifier(name_or_path: str, contract=None):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = resolve_model_path(name_or_path, contract)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForSequenceClassification.from_pretrained(path)
    except OSError as exc:
        raise JobError(f"cannot load a classifier from {path!r}: {exc}", "model.name_or_path")
    return model.eval(), tokenizer


def load_causal_lm(name_or_path: str, contract=None):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model_path(name_or_path, contract)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path)
    except OSError as exc:
        raise JobError(f"cannot load a causal LM from {path!r}: {exc}", "model.name_or_path")
    return model.eval(), tokenizer


def predict(model, tokenizer, texts: list[str], batch_size: int = 32, max_len: int = 256):
    """Class ids and class probabilities, batched, without gradients."""
    import torch

    device = next(model.parameters()).device
    ids, probs = [], []
    model.eval()
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(texts[start : start + batch_size], padding=True, truncation=True,
                              max_length=max_len, return_tensors="pt").to(device)  # fmt: skip
            p = model(**batch).logits.float().softmax(-1)
            probs.extend(p.cpu().tolist())
            ids.extend(p.argmax(-1).cpu().tolist())
    return ids, probs


def sequence_logprobs(
    model, tokenizer, texts: list[str], batch_size: int = 16
) -> list[tuple[float, int]]:
    """``(sum of token log-probabilities, number of scored tokens)`` per text under a causal LM.

    The first token is conditioned on BOS when the tokenizer has one (else it is not scored), so
    two sentences are compared on the same footing.
    """
    import torch

    device = next(model.parameters()).device
    bos = tokenizer.bos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (bos or 0)
    out = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            encoded = [([bos] if bos is not None else []) + tokenizer(t, add_special_tokens=False)["input_ids"]
                       for t in texts[start : start + batch_size]]  # fmt: skip
            width = max(len(e) for e in encoded)
            ids = torch.full((len(encoded), width), pad, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for i, e in enumerate(encoded):
                ids[i, : len(e)] = torch.tensor(e)
                mask[i, : len(e)] = 1
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
            logp = logits[:, :-1].log_softmax(-1).gather(-1, ids[:, 1:, None].to(device))[..., 0]
            scored = mask[:, 1:].to(device).float()
            for row, n in zip((logp * scored).sum(-1).tolist(), scored.sum(-1).tolist()):
                out.append((row, int(n)))
    return out


def fit_classifier(model, tokenizer, texts: list[str], labels: list[int],
                   weights: list[float] | None = None, *, epochs: int = 3, lr: float = 1e-3,
                   batch_size: int = 16, seed: int = 0, max_len: int = 64) -> list[float]:  # fmt: skip
    """Train ``model`` in place with a per-example weighted cross-entropy; returns epoch losses.

    Weights are normalised to mean 1 so the learning rate means the same with or without them.
    """
    import torch

    generator = torch.Generator().manual_seed(seed)
    w = torch.tensor(weights if weights is not None else [1.0] * len(texts), dtype=torch.float)
    w = w * len(w) / w.sum()
    y = torch.tensor(labels, dtype=torch.long)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    losses = []
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(texts), generator=generator).tolist()
        total = 0.0
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            batch = tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                              max_length=max_len, return_tensors="pt")  # fmt: skip
            logits = model(**batch).logits
            loss_each = torch.nn.functional.cross_entropy(logits, y[idx], reduction="none")
            loss = (loss_each * w[idx]).sum() / len(idx)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
        losses.append(total / len(texts))
        if not math.isfinite(losses[-1]):
            raise JobError("training diverged (loss is not finite); lower the learning rate")
    model.eval()
    return losses
