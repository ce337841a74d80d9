"""Causal-LM losses that never hold the full logits: the LM head and the loss, chunk by chunk.

For a causal LM the logits (batch x seq x vocab, in fp32 for the loss) are the largest activation
of a training step: GPT-2 124M at 16 x 1024 tokens with its 50,304-row head makes 3.3 GB of them,
and the loss's softmax and its gradient each take as much again. Distillation holds two sets
(teacher and student). Here the hidden states (batch x seq x hidden, ~65x smaller for GPT-2) are
the only full-size tensor; the head runs on ``chunk`` tokens at a time.

How the gradient is had without keeping any chunk's logits: for cross-entropy and for the
softened KL the gradient with respect to the logits has a closed form (``softmax - one_hot`` and
``(q - p) / T`` and the like), so each chunk's gradients with respect to the hidden states and the
head's weight are computed right after its loss, in the forward pass, and the chunk's logits are
freed. ``backward`` only scales those by the incoming gradient. That is the same number of matmuls
as the plain path (logits, then the two gradient products), so no speed is given up for memory; a
``torch.utils.checkpoint`` per chunk would recompute the logits and cost a fourth matmul.

``enable(model, chunk)`` gives a causal LM a forward that, when called with ``labels``, runs its
transformer body, then this loss (plain cross-entropy, or distillation when the caller also passes
``teacher_hidden``). Without labels (generation) the model's own forward runs. Because it is the
model's own ``forward`` that changes, DDP, FSDP2 (its hooks sit around the root module's call),
``torch.compile``, autocast and peft's LoRA wrappers all see an ordinary module. Equal to the
plain path in fp32 on CPU to rounding (the tests pin losses and gradients).

``training.loss_chunk``: ``off``; ``N`` tokens per chunk; ``auto`` (the default) chunks when a
micro-batch's fp32 logits would exceed ``AUTO_MIN_LOGITS_BYTES`` (64 MiB), with chunks sized so
that one chunk's logits are no bigger than the hidden states the step already holds.
"""

from __future__ import annotations

import logging
import math
import types
from typing import Any

import torch
import torch.nn.functional as F

from ..config import JobError
from .text import IGNORE

log = logging.getLogger("genai")

# Below this the full logits are small next to the model's other activations and one big matmul
# beats many small ones: e.g. the bundled tiny GPT-2 (1,739 rows) at 8 x 128 tokens is 7 MB.
AUTO_MIN_LOGITS_BYTES = 64 * 2**20
# A chunk's logits are at least this big: thinner head matmuls run below speed (a model with a
# small hidden size and a large vocabulary would otherwise get chunks of a few tokens).
MIN_CHUNK_LOGITS_BYTES = 32 * 2**20

# Architectures whose causal-LM head is exactly ``lm_head(base_model(...).last_hidden_state)``:
# no logit soft-capping (Gemma 2/3), scaling (Cohere, Granite) or extra projections, which the
# chunked loss would silently leave out.
PLAIN_HEADS = {
    "gpt2", "gpt_neo", "gptj", "gpt_neox", "llama", "mistral", "mixtral", "qwen2", "qwen2_moe",
    "qwen3", "qwen3_moe", "phi", "phi3", "olmo", "olmo2", "stablelm", "starcoder2", "smollm3",
    "opt", "bloom", "falcon",
}  # fmt: skip


def resolve_chunk(setting: Any, *, batch_size: int, seq_len: int, vocab: int, hidden: int) -> int | None:
    """Tokens per chunk for ``training.loss_chunk`` (``auto`` / ``off`` / an int); None: don't chunk."""
    if setting in (None, "off"):
        return None
    if setting != "auto":
        return int(setting)
    tokens = batch_size * seq_len
    if tokens * vocab * 4 <= AUTO_MIN_LOGITS_BYTES:
        return None
    # One chunk's logits (chunk x vocab) no bigger than the hidden states (tokens x hidden), but
    # not thinner than MIN_CHUNK_LOGITS_BYTES; a power of two.
    wanted = max(tokens * hidden // vocab, MIN_CHUNK_LOGITS_BYTES // (4 * vocab), 1)
    return min(2 ** math.floor(math.log2(wanted)), tokens)


def configure(model: Any, training: Any, seq_len: int, *, distill: Any = None, teacher: Any = None,
              vocab_size: int | None = None) -> int | None:  # fmt: skip
    """Turn the chunked loss on for a causal LM per ``training.loss_chunk``; returns the chunk
    size in use (None: the plain full-logits loss)."""
    setting = training.get("loss_chunk", "auto")
    head = _hf_model(model).get_output_embeddings()
    if head is None or getattr(head, "weight", None) is None:
        return None
    rows, hidden = head.weight.shape
    chunk = resolve_chunk(setting, batch_size=training.batch_size, seq_len=seq_len, vocab=rows,
                          hidden=hidden)  # fmt: skip
    on = enable(model, chunk, distill=distill, teacher=teacher, vocab_size=vocab_size,
                required=setting not in ("auto", "off", None))  # fmt: skip
    return chunk if on else None


def supports(model: Any) -> str | None:
    """None when ``enable`` can chunk this model's loss, else the reason it cannot."""
    hf = _hf_model(model)
    model_type = getattr(getattr(hf, "config", None), "model_type", None)
    if model_type not in PLAIN_HEADS:
        return f"the {model_type or type(hf).__name__} head is not a plain linear layer known to us"
    head = hf.get_output_embeddings()
    if not isinstance(head, torch.nn.Linear):
        return "the output layer is wrapped (e.g. peft modules_to_save), not a plain nn.Linear"
    if head._forward_hooks or head._forward_pre_hooks:
        return "the output layer has forward hooks, which a chunked head would skip"
    return None


def enable(model: Any, chunk: int | None, *, distill: Any = None, teacher: Any = None,
           vocab_size: int | None = None, required: bool = False) -> bool:  # fmt: skip
    """Give ``model`` (a transformers causal LM, possibly peft-wrapped) the chunked loss.

    Args:
        chunk: tokens per chunk (``resolve_chunk``); None leaves the model as it is.
        distill: the spec's ``distill`` section (alpha, temperature, kl_direction): the loss is
            then distillation against ``teacher``'s hidden states, which the caller passes to the
            forward as ``teacher_hidden`` (see ``teacher_hidden_states``).
        vocab_size: the KL compares the first ``vocab_size`` logits only (padded embedding rows).
        required: the user asked for a chunk size explicitly: an unsupported model is a JobError
            naming ``training.loss_chunk`` instead of a fallback to the plain loss.

    Returns:
        whether the chunked loss is on.
    """
    if chunk is None:
        return False
    reason = supports(model) or (supports(teacher) if teacher is not None else None)
    if reason:
        if required:
            raise JobError(f"cannot chunk the loss: {reason}; set training.loss_chunk: off",
                           "training.loss_chunk")  # fmt: skip
        log.info("loss computed on the full logits: %s", reason)
        return False
    hf = _hf_model(model)
    body, head = getattr(hf, hf.base_model_prefix), hf.get_output_embeddings()
    plain_forward = hf.forward
    teacher_head = _hf_model(teacher).get_output_embeddings() if teacher is not None else None

    def forward(self, input_ids=None, attention_mask=None, labels=None, teacher_hidden=None,
                token_weights=None, **kwargs):  # fmt: skip
        if labels is None:
            return plain_forward(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        kwargs.pop("return_dict", None)
        hidden = body(input_ids=input_ids, attention_mask=attention_mask, **kwargs)[0]
        if teacher_hidden is None:
            loss = linear_cross_entropy(hidden, head.weight, head.bias, labels, chunk,
                                        token_weights)  # fmt: skip
        else:
            loss = linear_distillation(hidden, head, teacher_hidden, teacher_head, labels, chunk,
                                       alpha=distill.alpha, temperature=distill.temperature,
                                       direction=distill.kl_direction, vocab_size=vocab_size)["loss"]  # fmt: skip
        return _Output(loss=loss)

    hf.forward = types.MethodType(forward, hf)
    log.info("loss computed in chunks of %d tokens (the full logits are never held)", chunk)
    return True


def weighted_loss(forward: Any, batch: dict):
    """``train.weighted_loss`` for a causal LM whose loss is chunked: per-token weights go into
    the chunked cross-entropy instead of over full logits."""
    inputs = {k: v for k, v in batch.items() if k != "weights"}
    return forward(**inputs, token_weights=batch["weights"]).loss


def teacher_hidden_states(teacher: Any, inputs: dict) -> Any:
    """The frozen teacher's last hidden states (what its head turns into logits), no grad."""
    hf = _hf_model(teacher)
    with torch.no_grad():
        return getattr(hf, hf.base_model_prefix)(**inputs)[0]


def linear_cross_entropy(hidden: Any, weight: Any, bias: Any, labels: Any, chunk: int,
                         token_weights: Any = None) -> Any:  # fmt: skip
    """Mean next-token cross-entropy of ``hidden @ weight.T + bias`` against ``labels``.

    ``labels`` are unshifted (position t's target is token t+1, the HF convention), -100 where
    nothing is learnt; the mean is over the target tokens, as transformers' causal-LM loss.
    ``token_weights`` (same shape as ``labels``) weight each target's term (bias mitigation).
    """
    targets = F.pad(labels[:, 1:], (0, 1), value=IGNORE).reshape(-1)
    flat = hidden.reshape(-1, hidden.size(-1))
    weights = None
    if token_weights is not None:
        weights = F.pad(token_weights[:, 1:], (0, 1), value=0.0).reshape(-1).float()
    count = (targets != IGNORE).sum().clamp(min=1)
    return LinearCrossEntropy.apply(flat, weight, bias, targets, weights, count, chunk)


def linear_distillation(hidden: Any, head: Any, teacher_hidden: Any, teacher_head: Any,
                        labels: Any, chunk: int, *, alpha: float, temperature: float,
                        direction: str, vocab_size: int | None = None) -> dict:  # fmt: skip
    """``alpha * T^2 * KL + (1 - alpha) * CE`` as ``distill_loss.distillation_loss`` defines it,
    with both models' logits made ``chunk`` tokens at a time from their hidden states.

    Returns:
        ``{"loss", "kl", "ce"}`` (0-dim tensors; ``loss`` carries the gradient).
    """
    from .distill_loss import DIRECTIONS

    if direction not in DIRECTIONS:
        raise ValueError(f"KL direction must be one of {DIRECTIONS}, got {direction!r}")
    targets = F.pad(labels[:, 1:], (0, 1), value=IGNORE).reshape(-1)
    count = (targets != IGNORE).sum().clamp(min=1)
    vocab = vocab_size or min(head.weight.shape[0], teacher_head.weight.shape[0])
    loss, kl, ce = LinearDistillation.apply(
        hidden.reshape(-1, hidden.size(-1)), head.weight, head.bias,
        teacher_hidden.reshape(-1, teacher_hidden.size(-1)).detach(), teacher_head.weight.detach(),
        None if teacher_head.bias is None else teacher_head.bias.detach(),
        targets, count, chunk, float(alpha), float(temperature), direction, vocab,
    )  # fmt: skip
    return {"loss": loss, "kl": kl, "ce": ce}


# ---- the two autograd functions -------------------------------------------------------------


class _GradBuffers:
    """The gradients of (hidden, weight, bias) accumulated chunk by chunk during the forward."""

    def __init__(self, hidden: Any, weight: Any, bias: Any):
        self.dtypes = (hidden.dtype, weight.dtype, None if bias is None else bias.dtype)
        self.hidden = torch.zeros_like(hidden) if hidden.requires_grad else None
        self.weight = torch.zeros_like(weight, dtype=torch.float32) if weight.requires_grad else None
        self.bias = None
        if bias is not None and bias.requires_grad:
            self.bias = torch.zeros_like(bias, dtype=torch.float32)

    def add(self, grad_logits: Any, rows: slice, hidden_chunk: Any, weight: Any) -> None:
        """Add one chunk's contribution from ``grad_logits`` (chunk x vocab, fp32)."""
        # Written in place (out= / addmm_): no chunk-sized temporaries beyond the logits.
        if self.hidden is not None:
            if self.hidden.dtype == weight.dtype == torch.float32:
                torch.mm(grad_logits, weight, out=self.hidden[rows])
            else:
                self.hidden[rows] = (grad_logits.to(weight.dtype) @ weight).to(self.hidden.dtype)
        if self.weight is not None:
            self.weight.addmm_(grad_logits.t(), hidden_chunk.float())
        if self.bias is not None:
            self.bias += grad_logits.sum(0)

    def scaled(self, grad_output: Any) -> tuple:
        """(d hidden, d weight, d bias) for the incoming gradient of the loss, in their dtypes."""
        grads = (self.hidden, self.weight, self.bias)
        return tuple(None if g is None else (g * grad_output).to(dtype)
                     for g, dtype in zip(grads, self.dtypes))  # fmt: skip


def _logits(hidden_chunk: Any, weight: Any, bias: Any) -> Any:
    return F.linear(hidden_chunk, weight, bias).float()  # the loss in fp32 even under autocast


class LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, weights, count, chunk):
        grads = _GradBuffers(hidden, weight, bias)
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        for start in range(0, hidden.size(0), chunk):
            rows = slice(start, start + chunk)
            h, t = hidden[rows], targets[rows]
            logits = _logits(h, weight, bias)
            valid = t != IGNORE
            safe = t.clamp(min=0)
            lse = torch.logsumexp(logits, dim=-1)
            per_token = (lse - logits.gather(1, safe[:, None]).squeeze(1)) * valid
            scale = valid.float() / count
            if weights is not None:
                per_token = per_token * weights[rows]
                scale = scale * weights[rows]
            total += per_token.sum()
            # d CE / d logits = softmax - one_hot for each target token, built in place.
            grad = logits.sub_(lse[:, None]).exp_()
            grad[torch.arange(grad.size(0), device=grad.device), safe] -= 1.0
            grad *= scale[:, None]
            grads.add(grad, rows, h, weight)
        ctx.grads = grads
        return total / count

    @staticmethod
    def backward(ctx, grad_output):
        return (*ctx.grads.scaled(grad_output), None, None, None, None)

class LinearDistillation(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, bias, t_hidden, t_weight, t_bias, targets, count, chunk,
                alpha, temperature, direction, vocab):  # fmt: skip
        grads = _GradBuffers(hidden, weight, bias)
        kl_sum = torch.zeros((), dtype=torch.float32, device=hidden.device)
        ce_sum = torch.zeros((), dtype=torch.float32, device=hidden.device)
        for start in range(0, hidden.size(0), chunk):
            rows = slice(start, start + chunk)
            h, t = hidden[rows], targets[rows]
            logits = _logits(h, weight, bias)
            valid = (t != IGNORE).float()
            safe = t.clamp(min=0)
            # Hard targets: CE over all the student's rows; d/d logits = softmax - one_hot.
            log_probs = torch.log_softmax(logits, dim=-1)
            ce_sum += (-log_probs.gather(1, safe[:, None]).squeeze(1) * valid).sum()
            grad = log_probs.exp_()
            grad[torch.arange(grad.size(0), device=grad.device), safe] -= 1.0
            grad *= 1.0 - alpha
            # Soft targets: KL between the softened distributions over the shared vocabulary.
            log_q = torch.log_softmax(logits[:, :vocab] / temperature, dim=-1)
            teacher_logits = _logits(t_hidden[rows], t_weight, t_bias)[:, :vocab]
            log_p = torch.log_softmax(teacher_logits / temperature, dim=-1)
            q = log_q.exp()
            if direction == "forward":  # KL(p || q); d/d logits = (q - p) / T
                p = log_p.exp()
                kl = (p * (log_p - log_q)).sum(-1)
                grad_kl = q - p
            else:  # KL(q || p); d/d logits = q * (log q - log p - KL) / T
                diff = log_q - log_p
                kl = (q * diff).sum(-1)
                grad_kl = q * (diff - kl[:, None])
            kl_sum += (kl * valid).sum()
            # alpha * T^2 * KL: the 1/T of the softened logits leaves one factor of T.
            grad[:, :vocab] += (alpha * temperature) * grad_kl
            grad *= (valid / count)[:, None]
            grads.add(grad, rows, h, weight)
        kl, ce = kl_sum / count, ce_sum / count
        ctx.grads = grads
        ctx.mark_non_differentiable(kl, ce)
        return alpha * temperature**2 * kl + (1.0 - alpha) * ce, kl, ce

    @staticmethod
    def backward(ctx, grad_output, _grad_kl, _grad_ce):
        return (*ctx.grads.scaled(grad_output),) + (None,) * 10


class _Output(dict):
    """What the patched forward returns: ``.loss`` like a transformers ModelOutput, no logits."""

    def __getattr__(self, name: str) -> Any:
        return self.get(name)


def _hf_model(model: Any) -> Any:
    """The transformers model inside a peft wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model
