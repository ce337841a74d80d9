"""Load a model and its tokenizer from wherever ``model.name_or_path`` points.

Where a model can live (a folder, a hub id, ``gs://``, ``s3://``, ``pkg://``, the job's ``model``
channel) is ``common.locations``; an adapter-only LoRA folder loads as its base with the adapter
merged in (``common.lora``), so recipes get a plain model.

``model.init: random`` builds the architecture from the config with fresh weights (seeded by the
caller), for pre-training from scratch or tests.

Given the device kind, loading applies the GPU fast path (``device.fast_path``): SDPA attention and,
for a config-built model, a vocabulary padded to a multiple of 64.
"""

from __future__ import annotations

import logging
from typing import Any

from ..config import Config, JobError
from .device import fast_path
from .locations import resolve_location
from .lora import (
    adapter_base,
    adapter_config,
    base_unreachable,
    check_adapter_task,
    has_tokenizer,
    merge_adapter,
)

log = logging.getLogger("genai")

DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}


def load_tokenizer(location: str, model_spec: Any):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(
            location, revision=model_spec.get("revision"),
            trust_remote_code=bool(model_spec.get("trust_remote_code")),
        )  # fmt: skip
    except (OSError, ValueError) as exc:
        raise JobError(f"cannot load a tokenizer from {location!r}: {exc}", "model.name_or_path")
    if tokenizer.pad_token is None:
        # Causal LMs (GPT-2, Llama) ship without a pad token; padded positions are masked out of
        # the loss anyway, so reusing EOS is safe and avoids resizing the embeddings.
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.sep_token or tokenizer.unk_token
    return tokenizer


def load_model_and_tokenizer(model_spec: Any, contract: Any = None, *, num_labels: int | None = None,
                             id2label: dict[int, str] | None = None,
                             device_kind: str | None = None):  # fmt: skip
    """Build the model (head per ``model.head``) and tokenizer for a spec's ``model`` section.

    Args:
        model_spec: the spec's ``model`` section (``name_or_path``, ``revision``, ``head``,
            ``dtype``, ``init``, ``trust_remote_code``, ``num_labels``).
        contract: the job's contract (for a ``model`` channel and gs:// paths), or None.
        num_labels / id2label: for ``sequence-classification``, taken from the data when the spec
            does not say.
        device_kind: where the model will train (``device.detect_kind``); ``cuda`` turns on the
            fast path's SDPA attention and vocabulary padding. None: load as transformers does.

    A folder with ``adapter_config.json`` (an adapter-only LoRA save) loads its base model
    (``base_model_name_or_path``, by ``resolve_location``'s rules; the base's ``revision`` as
    recorded in the adapter) and merges the adapter in (``merge_and_unload``): the result is a plain
    model. The tokenizer comes from the adapter folder if it has one, else from the base.

    Returns:
        ``(model, tokenizer)``; the model is on the CPU in train mode.

    Raises:
        JobError: naming ``model.name_or_path`` when nothing loadable is there (for an adapter:
            also when its base cannot be found), ``model.head`` when an adapter was trained for
            the other head.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

    location = resolve_location(model_spec.name_or_path, contract)
    adapter = adapter_config(location)
    base_spec = model_spec
    if adapter is not None:
        # The base's own revision is recorded with the adapter; the spec's is the adapter's.
        base_spec = Config({**model_spec, "revision": adapter.get("revision")})
        check_adapter_task(location, adapter, model_spec.get("head", "causal-lm"))
        base_location = adapter_base(location, adapter)
    else:
        base_location = location
    if adapter is None or has_tokenizer(location):
        tokenizer = load_tokenizer(location, model_spec)
    else:  # an adapter saved without its tokenizer: the base's
        tokenizer = load_tokenizer(base_location, base_spec)
    common = {
        "revision": base_spec.get("revision"),
        "trust_remote_code": bool(model_spec.get("trust_remote_code")),
    }
    try:
        config = AutoConfig.from_pretrained(base_location, **common)
    except (OSError, ValueError) as exc:
        if adapter is not None:
            raise base_unreachable(location, adapter, exc) from None
        raise JobError(f"cannot load a model config from {location!r}: {exc}", "model.name_or_path")
    if config.pad_token_id is None:
        config.pad_token_id = tokenizer.pad_token_id

    if model_spec.get("head", "causal-lm") == "sequence-classification":
        cls = AutoModelForSequenceClassification
        config.num_labels = model_spec.get("num_labels") or num_labels or 2
        if id2label:
            config.id2label = {int(k): v for k, v in id2label.items()}
            config.label2id = {v: int(k) for k, v in id2label.items()}
    else:
        cls = AutoModelForCausalLM

    dtype = getattr(torch, DTYPES.get(model_spec.get("dtype", "auto"), "float32"))
    init = model_spec.get("init") or "pretrained"
    speed = fast_path(device_kind or "cpu", init)
    model = _build(cls, config, base_location, dtype, common, init, speed.attn_implementation)
    if adapter is not None:
        if init == "random":
            log.info("model.init random: the LoRA adapter in %s is not applied (its base is "
                     "built from the config with fresh weights)", location)  # fmt: skip
        else:
            model = merge_adapter(model, location, adapter)
    if speed.vocab_multiple:
        before = model.get_input_embeddings().weight.shape[0]
        # The extra rows never occur as labels, so training only pushes their logits down.
        model.resize_token_embeddings(pad_to_multiple_of=speed.vocab_multiple, mean_resizing=False)
        log.info("vocabulary padded from %d to %d rows (a multiple of %d, for tensor cores)",
                 before, model.get_input_embeddings().weight.shape[0], speed.vocab_multiple)  # fmt: skip
    if cls is AutoModelForCausalLM:
        pin_causal_lm_loss(model)
    model.train()
    return model, tokenizer


def pin_causal_lm_loss(model: Any) -> None:
    """Give a causal LM whose class name transformers does not map to a loss (GPT-2's
    ``GPT2LMHeadModel``) the causal-LM loss explicitly. Otherwise every forward with labels logs
    "loss_type=None ... unrecognized", and that logging call splits the ``torch.compile`` graph
    between the logits and the loss."""
    try:
        from transformers.loss.loss_utils import LOSS_MAPPING
    except ImportError:  # transformers < 4.46 computes the loss inside the model
        return
    # Ask the class, not the instance: reading the property is what logs the warning.
    if getattr(model, "loss_type", None) not in LOSS_MAPPING and hasattr(type(model), "loss_function"):
        model.loss_function = LOSS_MAPPING["ForCausalLM"]


def _build(cls: Any, config: Any, location: str, dtype: Any, common: dict, init: str,
           attn: str | None):  # fmt: skip
    """from_config (random init) or from_pretrained, asking for ``attn`` attention if given and
    falling back to the model's default when the architecture does not support it."""
    extra = {"attn_implementation": attn} if attn else {}
    try:
        if init == "random":
            return cls.from_config(config, trust_remote_code=common["trust_remote_code"],
                                   **extra).to(dtype)  # fmt: skip
        # dtype 'auto' trains fp32 master weights; autocast supplies bf16/fp16 compute.
        return cls.from_pretrained(location, config=config, dtype=dtype, **common, **extra)
    except (OSError, ValueError) as exc:
        if extra and any(word in str(exc).lower() for word in ("attention", "attn")):
            log.info("%s attention is not available for this model (%s); using its default",
                     attn, exc)  # fmt: skip
            return _build(cls, config, location, dtype, common, init, None)
        raise JobError(f"cannot load model weights from {location!r}: {exc}",
                       "model.name_or_path") from None  # fmt: skip


def max_positions(config: Any) -> int | None:
    """The longest sequence the model's position embeddings allow (None: no fixed limit)."""
    for name in ("n_positions", "max_position_embeddings", "n_ctx", "max_sequence_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None
