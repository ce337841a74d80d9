"""What a recipe leaves behind: the model (Hugging Face format), ``metrics.json``, plots.

Only rank 0 calls these. Files appear complete or not at all: each is written under a temporary
name and moved into place with ``os.replace``; ``metrics.json`` is written last, so its presence
means the job finished.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any


def write_json(path: str | Path, payload: dict) -> Path:
    """Write ``payload`` as indented JSON, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=_plain) + "\n")
    os.replace(tmp, path)
    return path


def write_metrics(output_dir: str | Path, metrics: dict) -> Path:
    return write_json(Path(output_dir) / "metrics.json", metrics)


def save_model(model: Any, tokenizer: Any, model_dir: str | Path, merge_adapters: bool = True,
               base_model: str | None = None) -> list[str]:  # fmt: skip
    """``save_pretrained`` (safetensors) model and tokenizer into ``model_dir``.

    A peft (LoRA) model is saved either merged (``merge_adapters``: the adapters folded into the
    base weights, a plain model any ``from_pretrained`` loads; this changes ``model`` in place) or
    as the adapter alone (``adapter_config.json`` + ``adapter_model.safetensors``, loaded on top of
    the base model with ``peft.PeftModel.from_pretrained``). ``base_model`` (the spec's
    ``model.name_or_path``) then replaces the base path peft records, which is where this process
    happened to load it from: a temporary s3:// download or a mount that is gone after the job.

    Everything is written to a hidden sibling folder first and then moved in file by file, so a
    kill mid-save never leaves a truncated weights file where a loader would trust it.
    """
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    staging = model_dir / f".saving-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    model = getattr(model, "module", model)  # unwrap DDP
    model = getattr(model, "_orig_mod", model)  # unwrap torch.compile
    if any(p.device.type == "xla" for p in model.parameters()):
        model.to("cpu")  # torch_xla: safetensors writes host memory
        if hasattr(model, "tie_weights"):
            model.tie_weights()  # the move copies each use of a tied tensor separately
    if merge_adapters and hasattr(model, "merge_and_unload"):  # a peft model
        model = model.merge_and_unload()
    model.save_pretrained(staging, safe_serialization=True)
    adapter_config = staging / "adapter_config.json"
    if base_model and adapter_config.is_file():
        config = json.loads(adapter_config.read_text(encoding="utf-8"))
        config["base_model_name_or_path"] = base_model
        adapter_config.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    if tokenizer is not None:
        tokenizer.save_pretrained(staging)
        portable_tokenizer_config(staging)
    names = sorted(p.name for p in staging.iterdir())
    for name in names:
        target = model_dir / name
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(staging / name, target)
    staging.rmdir()
    return names


def portable_tokenizer_config(folder: str | Path) -> None:
    """Make a saved tokenizer loadable by transformers 4.x as well as 5.x.

    transformers 5 records a generic fast tokenizer as ``TokenizersBackend``, a class 4.x does not
    have ("Tokenizer class TokenizersBackend does not exist"); 4.x and 5.x both load the same
    ``tokenizer.json`` as ``PreTrainedTokenizerFast``. The runtime table mixes both lines (Vertex
    runs 4.57), so a model trained on one stack must load on another.
    """
    path = Path(folder) / "tokenizer_config.json"
    if not path.is_file():
        return
    config = json.loads(path.read_text(encoding="utf-8"))
    if config.get("tokenizer_class") != "TokenizersBackend":
        return
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config.pop("backend", None)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def plot_losses(path: str | Path, losses: list[float], evals: list[dict] | None = None,
                title: str = "training loss") -> Path | None:  # fmt: skip
    """A PNG of the per-step training loss (and eval loss points). None if matplotlib is absent."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display in a container
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    steps = list(range(1, len(losses) + 1))
    ax.plot(steps, losses, linewidth=1, alpha=0.5, label="train (per step)")
    if len(losses) >= 10:
        window = max(2, len(losses) // 20)
        smooth = [sum(losses[max(0, i - window + 1) : i + 1]) / len(losses[max(0, i - window + 1) : i + 1])
                  for i in range(len(losses))]  # fmt: skip
        ax.plot(steps, smooth, linewidth=2, label=f"train (mean of {window})")
    points = [e for e in (evals or []) if "loss" in e]
    if points:
        ax.plot([e["step"] for e in points], [e["loss"] for e in points], "o-", label="eval")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def _plain(value: Any) -> Any:
    """JSON fallback for numpy / torch scalars and paths."""
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
