"""LoRA: adapters on a loaded model (``apply_lora``), and adapter-only saves loaded back.

``apply_lora`` wraps a model in peft LoRA adapters per ``model.lora``; the modules it adapts are
``model.lora.target_modules`` or a sensible default per architecture (``LORA_TARGETS``).

A folder holding an adapter-only save (``adapter_config.json``, written by
``model.lora.merge_on_save: false``) is loaded by ``common.model.load_model_and_tokenizer`` as its
base model (``base_model_name_or_path``, resolved like any model location) with the adapter merged
in (``merge_adapter``), so recipes get a plain model.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from ..config import JobError
from .footprint import count_parameters
from .locations import resolve_location

log = logging.getLogger("genai")


ADAPTER_CONFIG = "adapter_config.json"
# peft's task types for the heads a spec can ask for.
_ADAPTER_TASKS = {"causal-lm": "CAUSAL_LM", "sequence-classification": "SEQ_CLS"}


def adapter_config(location: str) -> dict | None:
    """The parsed ``adapter_config.json`` when ``location`` is a folder holding an adapter-only peft
    save (``model.lora.merge_on_save: false``), else None.

    Raises:
        JobError: an ``adapter_config.json`` that is not a JSON object.
    """
    path = Path(location) / ADAPTER_CONFIG
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise JobError(f"cannot read {path}: {exc}", "model.name_or_path") from None
    if not isinstance(config, dict):
        raise JobError(f"{path} is not a JSON object", "model.name_or_path")
    return config


def adapter_base(location: str, adapter: dict) -> str:
    """Where the adapter's base model is, by ``resolve_location``'s rules (never the contract's
    ``model`` channel: that is the adapter itself)."""
    base = adapter.get("base_model_name_or_path")
    if not base:
        raise JobError(f"{location!r} is a LoRA adapter, but its {ADAPTER_CONFIG} does not name a "
                       "base model (base_model_name_or_path); save it with "
                       "model.lora.merge_on_save: true", "model.name_or_path")  # fmt: skip
    try:
        return resolve_location(str(base))
    except JobError as exc:
        raise base_unreachable(location, adapter, exc) from None


def base_unreachable(location: str, adapter: dict, exc: Exception) -> JobError:
    detail = str(exc)
    if isinstance(exc, JobError) and exc.where:
        detail = detail.removeprefix(f"{exc.where}: ")
    base = adapter.get("base_model_name_or_path")
    return JobError(
        f"{location!r} is a LoRA adapter (adapter-only save) whose base model is {base!r}, and "
        f"that cannot be loaded: {detail}. Save the fine-tuned model merged "
        "(model.lora.merge_on_save: true), or make the base reachable at that location",
        "model.name_or_path",
    )


def has_tokenizer(folder: str) -> bool:
    return any((Path(folder) / name).is_file()
               for name in ("tokenizer_config.json", "tokenizer.json"))  # fmt: skip


def check_adapter_task(location: str, adapter: dict, head: str) -> None:
    task = adapter.get("task_type")
    heads = {v: k for k, v in _ADAPTER_TASKS.items()}
    if task in heads and head in _ADAPTER_TASKS and task != _ADAPTER_TASKS[head]:
        raise JobError(f"the LoRA adapter in {location!r} was trained with a {heads[task]} head; "
                       f"set model.head: {heads[task]}", "model.head")  # fmt: skip


def merge_adapter(model: Any, location: str, adapter: dict):
    """``model`` (the adapter's base) with the LoRA adapter in ``location`` merged into its weights:
    a plain transformers model, every parameter trainable, as ``from_pretrained`` returns it."""
    try:
        from peft import PeftModel
    except ImportError:
        raise JobError(f"{location!r} is a LoRA adapter; loading it needs peft (pip install "
                       "peft)", "model.name_or_path") from None  # fmt: skip
    try:
        adapted = PeftModel.from_pretrained(model, location)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise JobError(f"cannot apply the LoRA adapter in {location!r} to its base "
                       f"{adapter.get('base_model_name_or_path')!r}: {exc}",
                       "model.name_or_path") from None  # fmt: skip
    merged = adapted.merge_and_unload()
    merged.requires_grad_(True)  # peft froze the base for adapter training; recipes train it all
    log.info("loaded LoRA adapter %s onto %s and merged it", location,
             adapter.get("base_model_name_or_path"))  # fmt: skip
    return merged


# Where LoRA goes when model.lora.target_modules is empty: the attention projections, as in the LoRA
# paper (Hu et al. 2021: adapting q and v recovers most of full fine-tuning); q, k, v and the output
# projection where they are cheap to name. Keys are ``config.model_type``; peft's own table covers
# the rest.
LORA_TARGETS = {
    "gpt2": ["c_attn", "attn.c_proj"],  # c_attn is q, k, v fused; attn.c_proj is the output
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "mistral": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "qwen2": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "gemma": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "bert": ["query", "value"],
    "roberta": ["query", "value"],
    "distilbert": ["q_lin", "v_lin"],
    "gpt_neox": ["query_key_value"],
    "t5": ["q", "v"],
}


def lora_targets(model: Any, requested: list[str] | None = None) -> list[str]:
    """The module names LoRA adapts: ``requested``, else the default for the architecture.

    A requested name must match (peft's rule: the full module name, or its ending after a dot)
    only modules LoRA can wrap (``ADAPTABLE``): peft fails on any other module a name matches,
    such as GPT-2's ``attn`` block or the ``h`` layer list.

    Raises:
        JobError: a requested name that matches no module or a module LoRA cannot adapt, or an
            architecture without a default (all list the model's linear layers to choose from).
    """
    modules = list(model.named_modules())
    if requested:
        adaptable = _adaptable_types()
        missing, unadaptable = [], []
        for target in requested:
            matched = [(n, m) for n, m in modules if _matches(n, target)]
            if not matched:
                missing.append(target)
            bad = [(n, m) for n, m in matched if not isinstance(m, adaptable)]
            if bad:
                kinds = sorted({type(m).__name__ for _, m in bad})
                unadaptable.append(f"{target!r} matches {len(bad)} module(s) LoRA cannot adapt "
                                   f"({', '.join(kinds)}, e.g. {bad[0][0]})")  # fmt: skip
        problems = ([f"{missing} match no module of this model"] if missing else []) + unadaptable
        if problems:
            raise JobError(f"{'; '.join(problems)}; LoRA adapts linear layers (also embeddings "
                           f"and convolutions); the linear layers are: "
                           f"{', '.join(_linear_names(model))}", "model.lora.target_modules")  # fmt: skip
        return list(requested)
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as PEFT

    model_type = getattr(model.config, "model_type", "")
    targets = LORA_TARGETS.get(model_type) or PEFT.get(model_type)
    if not targets:
        raise JobError(f"no default LoRA targets for model type {model_type!r}; set "
                       f"model.lora.target_modules to some of: {', '.join(_linear_names(model))}",
                       "model.lora.target_modules")  # fmt: skip
    return list(targets)


def apply_lora(model: Any, lora_spec: Any, head: str = "causal-lm"):
    """Wrap ``model`` in peft LoRA adapters; only the adapters (and a classifier head) train.

    Args:
        lora_spec: the spec's ``model.lora`` (``r``, ``alpha``, ``dropout``, ``target_modules``).
        head: ``causal-lm`` or ``sequence-classification`` (the new head then trains in full).

    Returns:
        a ``peft.PeftModel``.
    """
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers.pytorch_utils import Conv1D

    targets = lora_targets(model, lora_spec.get("target_modules"))
    # GPT-2's Conv1D stores weights transposed (in x out); peft must know to merge them right.
    fan_in_fan_out = any(isinstance(m, Conv1D) for n, m in model.named_modules()
                         if any(_matches(n, t) for t in targets))  # fmt: skip
    task = TaskType.SEQ_CLS if head == "sequence-classification" else TaskType.CAUSAL_LM
    config = LoraConfig(task_type=task, r=lora_spec.r, lora_alpha=lora_spec.alpha,
                        lora_dropout=lora_spec.dropout, target_modules=targets,
                        fan_in_fan_out=fan_in_fan_out)  # fmt: skip
    model = get_peft_model(model, config)
    counts = count_parameters(model)
    log.info("LoRA r=%d alpha=%d on %s: %d of %d parameters train (%.2f%%)", lora_spec.r,
             lora_spec.alpha, targets, counts["trainable"], counts["total"],
             100 * counts["trainable"] / counts["total"])  # fmt: skip
    return model


def _matches(name: str, target: str) -> bool:
    return name == target or name.endswith("." + target)  # peft's rule for a list of names


def _adaptable_types() -> tuple[type, ...]:
    """The module types peft 0.21's LoRA wraps (``peft.tuners.lora.layer.dispatch_default``)."""
    import torch
    from transformers.pytorch_utils import Conv1D

    nn = torch.nn
    types = (nn.Linear, Conv1D, nn.Embedding, nn.Conv1d, nn.Conv2d, nn.Conv3d,
             nn.MultiheadAttention)  # fmt: skip
    try:  # a module already wrapped by peft adapts as its base layer does
        from peft.tuners.tuners_utils import BaseTunerLayer
    except ImportError:
        return types
    return (*types, BaseTunerLayer)


def _linear_names(model: Any) -> list[str]:
    import torch
    from transformers.pytorch_utils import Conv1D

    leaf = {n.rsplit(".", 1)[-1] for n, m in model.named_modules()
            if isinstance(m, (torch.nn.Linear, Conv1D))}  # fmt: skip
    return sorted(leaf)
