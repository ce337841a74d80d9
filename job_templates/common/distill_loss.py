"""Knowledge distillation pieces: the loss, and a student cut from the teacher's layers.

The loss (Hinton et al. 2015, "Distilling the Knowledge in a Neural Network")::

    loss = alpha * T^2 * KL + (1 - alpha) * CE

- ``KL`` is taken between the temperature-softened next-token distributions of teacher and
  student, averaged over the target positions only (labels != -100; padding and instruction
  prompts are not distilled). Its direction is explicit:
  ``forward`` = KL(teacher || student) (mean-seeking: the student covers every mode of the
  teacher, the classic choice); ``reverse`` = KL(student || teacher) (mode-seeking: the student
  puts its mass where the teacher is confident, as in MiniLLM).
- ``T^2`` keeps the soft-target gradients on the same scale as the hard-target ones when T changes
  (the gradient of the softened KL shrinks as 1/T^2).
- ``CE`` is the ordinary next-token cross-entropy on the labels.

``alternate_layer_student`` builds a DistilGPT2-style student: the teacher's embeddings, final
norm and head, and an evenly spaced subset of its decoder layers (every other layer by default).
"""

from __future__ import annotations

import copy
import logging
import re
from typing import Any

from ..config import JobError
from .text import IGNORE

log = logging.getLogger("genai")

DIRECTIONS = ("forward", "reverse")
# Where decoder stacks live in the transformers causal-LM families we support: GPT-2 / GPT-J /
# GPT-Neo (transformer.h), Llama / Mistral / Qwen / Gemma (model.layers), GPT-NeoX (gpt_neox.layers).
_LAYER_STACKS = ("transformer.h", "model.layers", "gpt_neox.layers", "model.decoder.layers")


def kl_divergence(student_logits: Any, teacher_logits: Any, temperature: float,
                  direction: str) -> Any:  # fmt: skip
    """Per-position KL between softened distributions, shape ``logits.shape[:-1]``.

    ``forward``: sum_v p_t (log p_t - log p_s); ``reverse``: sum_v p_s (log p_s - log p_t).
    Computed in fp32 from log-softmax (no log of a rounded probability).
    """
    import torch.nn.functional as F

    if direction not in DIRECTIONS:
        raise ValueError(f"KL direction must be one of {DIRECTIONS}, got {direction!r}")
    log_s = F.log_softmax(student_logits.float() / temperature, dim=-1)
    log_t = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    if direction == "forward":
        return (log_t.exp() * (log_t - log_s)).sum(-1)
    return (log_s.exp() * (log_s - log_t)).sum(-1)


def distillation_loss(student_logits: Any, teacher_logits: Any, labels: Any, *, alpha: float,
                      temperature: float, direction: str, vocab_size: int | None = None) -> dict:  # fmt: skip
    """``alpha * T^2 * KL + (1 - alpha) * CE`` over the target positions of a causal-LM batch.

    Args:
        student_logits / teacher_logits: ``(batch, seq, vocab)``; position t predicts token t+1.
        labels: ``(batch, seq)`` token ids, -100 where nothing is to be learnt (HF convention:
            the labels are *not* shifted by the caller).
        vocab_size: the KL compares only the first ``vocab_size`` logits (rows beyond the
            tokenizer's vocabulary exist when an embedding was padded to a multiple of 64). The CE
            keeps all the student's rows, so it still learns to give padding rows no mass.

    Returns:
        ``{"loss", "kl", "ce"}`` (0-dim tensors; ``loss`` carries the gradient).
    """
    import torch.nn.functional as F

    # Shift the labels, not the logits: position t's target is token t+1 and the last position
    # has none. Slicing the (batch, seq, vocab) logits instead would copy them before each softmax.
    targets = F.pad(labels[:, 1:], (0, 1), value=IGNORE)
    mask = targets != IGNORE
    count = mask.sum().clamp(min=1)
    n = vocab_size or min(student_logits.size(-1), teacher_logits.size(-1))
    if n < student_logits.size(-1) or n < teacher_logits.size(-1):
        kl = kl_divergence(student_logits[..., :n], teacher_logits[..., :n], temperature, direction)
    else:
        kl = kl_divergence(student_logits, teacher_logits, temperature, direction)
    kl = (kl * mask).sum() / count
    ce = F.cross_entropy(student_logits.float().flatten(0, 1), targets.flatten(),
                         ignore_index=IGNORE, reduction="sum") / count  # fmt: skip
    loss = alpha * temperature**2 * kl + (1.0 - alpha) * ce
    return {"loss": loss, "kl": kl.detach(), "ce": ce.detach()}


def make_loss_fn(teacher: Any, distill: Any, vocab_size: int, compile: Any = None,
                 chunked: bool = False):  # fmt: skip
    """A ``Trainer`` ``loss_fn(forward, batch)`` that distils ``teacher`` into the student.

    The teacher runs under ``no_grad`` (it is never updated; no activations are kept for it).
    ``compile`` (the trainer's ``Trainer.compile``: ``torch.compile`` on CUDA) also compiles the
    teacher's forward and the loss. Eager, the loss makes a dozen passes over fp32 tensors of
    batch x seq x vocab (3.3 GB each for GPT-2 at 16 x 1024); compiled, the softmaxes, the KL and
    the CE fuse into a few kernels. ``chunked`` (the student went through
    ``chunked_loss.enable`` with this teacher): the teacher gives its hidden states only and the
    student's forward makes both models' logits a chunk at a time, so neither is ever whole.
    """
    import torch

    from .chunked_loss import teacher_hidden_states

    compile = compile or (lambda fn: fn)
    if chunked:
        teacher_body = compile(lambda **inputs: teacher_hidden_states(teacher, inputs))

        def chunked_loss_fn(forward: Any, batch: dict):
            inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask")}
            return forward(**inputs, labels=batch["labels"],
                           teacher_hidden=teacher_body(**inputs)).loss  # fmt: skip

        return chunked_loss_fn
    teacher_forward, loss_parts = compile(teacher), compile(distillation_loss)

    def loss_fn(forward: Any, batch: dict):
        inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask")}
        with torch.no_grad():
            teacher_logits = teacher_forward(**inputs).logits
        student_logits = forward(**inputs).logits
        parts = loss_parts(student_logits, teacher_logits, batch["labels"], alpha=distill.alpha,
                           temperature=distill.temperature, direction=distill.kl_direction,
                           vocab_size=vocab_size)  # fmt: skip
        return parts["loss"]

    return loss_fn


# ---- the student ------------------------------------------------------------------------------


def layer_stack(model: Any) -> tuple[str, Any]:
    """``(dotted path, ModuleList)`` of the model's decoder layers.

    Raises:
        JobError: for an architecture whose layer stack is not at a known place.
    """
    for path in _LAYER_STACKS:
        module = model
        for part in path.split("."):
            module = getattr(module, part, None)
            if module is None:
                break
        if module is not None and hasattr(module, "__len__"):
            return path, module
    raise JobError(f"cannot find the decoder layers of a {type(model).__name__} (looked for "
                   f"{', '.join(_LAYER_STACKS)}); use distill.student_init: config",
                   "distill.student_init")  # fmt: skip


def pick_layers(teacher_layers: int, student_layers: int | None) -> list[int]:
    """Evenly spaced teacher layer indices; default every other one (12 -> 0, 2, ..., 10).

    Raises:
        JobError: when the student would not be smaller than the teacher (for a 1-layer teacher:
            always; it names ``distill.student_init`` and suggests a student of its own).
    """
    if teacher_layers <= 1:
        raise JobError("the teacher has only one layer, so alternate layers cannot "
                       "make a smaller student; use distill.student_init: config with a smaller "
                       "model in model.name_or_path", "distill.student_init")  # fmt: skip
    k = student_layers or max(1, (teacher_layers + 1) // 2)
    if k >= teacher_layers:
        choices = "1" if teacher_layers == 2 else f"1 to {teacher_layers - 1}"
        raise JobError(f"a student of {k} layers is not smaller than the teacher's {teacher_layers}; "
                       f"choose {choices}", "distill.student_layers")  # fmt: skip
    return [i * teacher_layers // k for i in range(k)]


def alternate_layer_student(teacher: Any, student_layers: int | None = None) -> tuple[Any, list]:
    """A student with the teacher's embeddings / head / final norm and a subset of its layers.

    Works for any architecture listed in ``_LAYER_STACKS`` by renaming state-dict keys, so the
    copy is exact (including tied embeddings and per-layer buffers). The student is fp32 on CPU.

    Returns:
        ``(student model in train mode, the teacher layer indices it was built from)``.
    """
    from transformers import AutoModelForCausalLM

    prefix, stack = layer_stack(teacher)
    chosen = pick_layers(len(stack), student_layers)
    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = len(chosen)  # GPT-2 maps this onto n_layer
    if isinstance(getattr(config, "layer_types", None), list):
        config.layer_types = [config.layer_types[i] for i in chosen]  # sliding/full attention mix
    student = AutoModelForCausalLM.from_config(config)
    renumber = {old: new for new, old in enumerate(chosen)}
    pattern = re.compile(rf"^{re.escape(prefix)}\.(\d+)\.(.*)$")
    mapped = {}
    for key, value in teacher.state_dict().items():
        match = pattern.match(key)
        if match is None:
            mapped[key] = value
        elif int(match.group(1)) in renumber:
            mapped[f"{prefix}.{renumber[int(match.group(1))]}.{match.group(2)}"] = value
    student.load_state_dict({k: v.detach().float().clone() for k, v in mapped.items()}, strict=True)
    student.train()
    log.info("student: teacher layers %s of %d (%s)", chosen, len(stack), prefix)
    return student, chosen


def check_same_vocabulary(student_tokenizer: Any, teacher_tokenizer: Any, student: Any,
                          teacher: Any) -> int:  # fmt: skip
    """The shared vocabulary size; a JobError when teacher and student do not share one.

    Distillation compares the two next-token distributions id by id, so the same id must mean
    the same token in both.
    """
    s_vocab, t_vocab = student_tokenizer.get_vocab(), teacher_tokenizer.get_vocab()
    if s_vocab != t_vocab:
        only_s = sorted(set(s_vocab) - set(t_vocab))[:3]
        only_t = sorted(set(t_vocab) - set(s_vocab))[:3]
        detail = (f"{len(s_vocab)} tokens vs the teacher's {len(t_vocab)}"
                  if len(s_vocab) != len(t_vocab) else "same size, different token ids")  # fmt: skip
        raise JobError(
            f"the student's tokenizer (model.name_or_path) and the teacher's (distill.teacher) "
            f"differ: {detail}; e.g. only in student {only_s}, only in teacher {only_t}. "
            "Distillation needs one shared vocabulary: pick a student of the teacher's family",
            "distill.teacher",
        )
    n = len(student_tokenizer)
    for who, model in (("model.name_or_path", student), ("distill.teacher", teacher)):
        rows = model.get_output_embeddings().weight.shape[0]
        if rows < n:
            raise JobError(f"the model has {rows} output rows for a {n}-token tokenizer", who)
    return n
