"""Preference pairs and the losses that learn from them (``task: dpo``).

A pair is a prompt with a *chosen* and a *rejected* completion. ``encode_pairs`` tokenizes both
as ``prompt + completion + EOS`` with the prompt's labels set to -100, so a sequence's log-prob is
the sum over its completion tokens; ``PreferencePairs.batch`` stacks the chosen rows first, then
the rejected rows (one forward for both, as TRL does).

The losses follow the definitions TRL implements (the tests compare against TRL itself):

- ``dpo`` (Rafailov et al. 2023): ``-log sigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r)))``
  with summed log-probs and a frozen reference; rewards ``beta * (pi - ref)``.
- ``simpo`` (Meng et al. 2024), reference-free: ``-log sigmoid(beta * (avg_c - avg_r) - gamma)``
  with per-token average log-probs; rewards ``beta * avg`` (TRL's CPO trainer, loss "simpo").
- ``orpo`` (Hong et al. 2024), reference-free: ``NLL(chosen) - beta * log sigmoid(log odds)``,
  ``log odds = (avg_c - avg_r) - (log(1 - exp(avg_c)) - log(1 - exp(avg_r)))``; rewards
  ``beta * avg`` (TRL's ORPO trainer; here the NLL is over the chosen completion, as in the
  paper's Eq. 6, where TRL also counts the prompt tokens).

Metrics: reward margin (mean chosen minus rejected reward) and preference accuracy (share of
pairs whose chosen reward is the higher).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..config import JobError
from .text import IGNORE

LOSSES = ("dpo", "simpo", "orpo")
REFERENCE_FREE = ("simpo", "orpo")


@dataclass
class PreferencePairs:
    """Tokenized pairs: ``len()`` pairs; ``batch(indices)`` -> 2 x len(indices) rows."""

    chosen: list[tuple[list[int], list[int]]]  # (input ids, labels) per pair
    rejected: list[tuple[list[int], list[int]]]
    pad_id: int
    ref_logps: Any = None  # tensor (pairs, 2): reference log-probs of (chosen, rejected)
    packed: bool = False  # what the Trainer asks of its data (padded rows, not packed blocks)
    stats: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.chosen)

    def batch(self, indices) -> dict:
        import torch

        rows = [self.chosen[i] for i in indices] + [self.rejected[i] for i in indices]
        width = max(len(ids) for ids, _ in rows)
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for r, (ids, lab) in enumerate(rows):
            input_ids[r, : len(ids)] = torch.tensor(ids)
            labels[r, : len(lab)] = torch.tensor(lab)
            mask[r, : len(ids)] = 1
        out = {"input_ids": input_ids, "attention_mask": mask, "labels": labels}
        if self.ref_logps is not None:
            ref = self.ref_logps[list(indices)]
            out["ref_logps"] = torch.cat([ref[:, 0], ref[:, 1]])
        return out


def encode_pairs(records: list[dict], tokenizer: Any, data: Any) -> PreferencePairs:
    """Records with ``data.prompt_field`` / ``chosen_field`` / ``rejected_field`` -> pairs.

    Over-long rows keep the end of the prompt and the start of the completion, within
    ``data.max_seq_len``.

    Raises:
        JobError: a pair whose two completions tokenize identically (nothing to prefer).
    """
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else eos
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (eos or 0)
    limit = data.max_seq_len
    chosen, rejected, truncated = [], [], 0
    for record in records:
        prompt = tokenizer(record[data.prompt_field], add_special_tokens=False)["input_ids"]
        # The first completion token needs something to be predicted from.
        prompt = prompt or ([start] if start is not None else [])
        rows = []
        for name in (data.chosen_field, data.rejected_field):
            completion = tokenizer(record[name], add_special_tokens=False)["input_ids"]
            completion = completion + ([eos] if eos is not None else [])
            room = max(limit - len(completion), min(len(prompt), limit // 2))
            p = prompt[-room:] if room < len(prompt) else prompt
            c = completion[: limit - len(p)]
            truncated += len(p) + len(c) < len(prompt) + len(completion)
            rows.append((p + c, [IGNORE] * len(p) + c))
        if rows[0] == rows[1]:
            raise JobError("chosen and rejected completions are identical after tokenization",
                           record.get("_source"))  # fmt: skip
        chosen.append(rows[0])
        rejected.append(rows[1])
    tokens = sum(len(ids) for ids, _ in chosen + rejected)
    stats = {"pairs": len(records), "tokens": tokens, "truncated_rows": truncated}
    return PreferencePairs(chosen, rejected, pad, stats=stats)


def sequence_logps(logits, labels):
    """``(sum of completion-token log-probs, completion tokens)`` per row; position t predicts
    token t+1, labels -100 are not scored. Computed in float32."""
    logits, labels = logits[:, :-1].float(), labels[:, 1:]
    scored = labels != IGNORE
    safe = labels.masked_fill(~scored, 0)
    per_token = logits.log_softmax(-1).gather(-1, safe.unsqueeze(-1)).squeeze(-1)
    return (per_token * scored).sum(-1), scored.sum(-1)


def log1mexp(x):
    """``log(1 - exp(x))`` for x < 0, stable at both ends (Maechler 2012)."""
    import torch

    return torch.where(x > -math.log(2), torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def preference_loss(kind: str, chosen, rejected, n_chosen, n_rejected, beta: float,
                    gamma: float = 0.0, ref_chosen=None, ref_rejected=None):  # fmt: skip
    """``(loss, chosen rewards, rejected rewards)`` for one batch of pairs (see the module doc).

    ``chosen`` / ``rejected``: summed completion log-probs; ``n_*``: their token counts;
    ``ref_*``: the reference's summed log-probs (``dpo`` only).
    """
    import torch.nn.functional as F

    if kind == "dpo":
        chosen_rewards = beta * (chosen - ref_chosen)
        rejected_rewards = beta * (rejected - ref_rejected)
        loss = -F.logsigmoid(chosen_rewards - rejected_rewards).mean()
        return loss, chosen_rewards.detach(), rejected_rewards.detach()
    avg_c, avg_r = chosen / n_chosen.clamp(min=1), rejected / n_rejected.clamp(min=1)
    if kind == "simpo":
        loss = -F.logsigmoid(beta * (avg_c - avg_r) - gamma).mean()
    elif kind == "orpo":
        log_odds = (avg_c - avg_r) - (log1mexp(avg_c) - log1mexp(avg_r))
        loss = -avg_c.mean() - beta * F.logsigmoid(log_odds).mean()
    else:
        raise JobError(f"unknown preference loss {kind!r}; valid: {', '.join(LOSSES)}", "dpo.loss")
    return loss, (beta * avg_c).detach(), (beta * avg_r).detach()


def pair_loss(settings: Any):
    """A ``Trainer`` ``loss_fn`` for ``PreferencePairs`` batches under ``settings`` (``dpo``)."""

    def loss_fn(forward, batch):
        return batch_loss(forward, batch, settings)[0]

    return loss_fn


def batch_loss(forward, batch: dict, settings: Any):
    """``(loss, chosen rewards, rejected rewards, chosen log-probs, rejected log-probs)``."""
    logits = forward(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    logps, counts = sequence_logps(logits, batch["labels"])
    chosen, rejected = logps.chunk(2)
    n_chosen, n_rejected = counts.chunk(2)
    ref_chosen = ref_rejected = None
    if settings.loss == "dpo":
        ref_chosen, ref_rejected = batch["ref_logps"].chunk(2)
    loss, chosen_rewards, rejected_rewards = preference_loss(
        settings.loss, chosen, rejected, n_chosen, n_rejected, settings.beta,
        settings.simpo_gamma, ref_chosen, ref_rejected)  # fmt: skip
    return loss, chosen_rewards, rejected_rewards, chosen.detach(), rejected.detach()


def reference_logps(model: Any, pairs: PreferencePairs, device: Any, batch_size: int = 16):
    """The (chosen, rejected) summed log-probs of every pair under ``model``, shape (pairs, 2),
    in eval mode without gradients: what a frozen reference model gives, computed once."""
    import torch

    was_training = model.training
    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(pairs), batch_size):
            indices = list(range(start, min(start + batch_size, len(pairs))))
            batch = {k: v.to(device) for k, v in pairs.batch(indices).items() if k != "ref_logps"}
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            logps, _ = sequence_logps(logits, batch["labels"])
            out.append(torch.stack(logps.float().chunk(2), dim=1).cpu())
    model.train(was_training)
    return torch.cat(out)


def preference_metrics(model: Any, pairs: PreferencePairs, device: Any, settings: Any,
                       batch_size: int = 16) -> dict:  # fmt: skip
    """Loss, reward margin and preference accuracy of ``model`` on ``pairs`` (eval mode)."""
    import torch

    if len(pairs) == 0:
        return {}
    was_training = model.training
    model.eval()
    losses, margins, wins, chosen_lp, rejected_lp = [], [], [], [], []
    with torch.no_grad():
        for start in range(0, len(pairs), batch_size):
            indices = list(range(start, min(start + batch_size, len(pairs))))
            batch = {k: v.to(device) for k, v in pairs.batch(indices).items()}
            loss, c, r, lc, lr = batch_loss(model, batch, settings)
            losses.append(float(loss) * len(indices))
            margins += (c - r).tolist()
            wins += (c > r).tolist()
            chosen_lp += lc.tolist()
            rejected_lp += lr.tolist()
    model.train(was_training)
    n = len(pairs)
    return {"loss": sum(losses) / n, "reward_margin": sum(margins) / n,
            "preference_accuracy": sum(wins) / n, "chosen_logp": sum(chosen_lp) / n,
            "rejected_logp": sum(rejected_lp) / n, "pairs": n}  # fmt: skip
