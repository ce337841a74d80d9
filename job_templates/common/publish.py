"""``output.push_to_hub``: the saved model folder (weights, tokenizer, model card) to a Hugging
Face Hub model repository, once the recipe has finished, from rank 0.

What goes up is what the recipe saved: merged weights, or the LoRA adapter alone when
``model.lora.merge_on_save`` is false (its card and ``adapter_config.json`` name the base model).
The token is read from the environment variable ``token_env`` (``HF_TOKEN``), which the spec fills
from ``secrets`` by reference; it is never logged.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from ..config import JobError

log = logging.getLogger("genai")


def push_to_hub(spec: Any, contract: Any) -> str | None:
    """Upload ``contract.model_dir`` as ``output.push_to_hub`` says; returns the commit URL.

    Raises:
        JobError: naming ``output.push_to_hub`` when there is no model or token, or the hub
            refuses (the model stays in the job's model folder).
    """
    settings = (spec.get("output") or {}).get("push_to_hub")
    if not settings or not contract.is_main:
        return None
    model_dir = Path(contract.model_dir)
    if not model_dir.is_dir() or not any(model_dir.glob("*.safetensors")):
        raise JobError(f"no saved model in {model_dir} to push", "output.push_to_hub")
    token = os.environ.get(settings.get("token_env") or "HF_TOKEN")
    if not token:
        raise JobError(f"{settings.get('token_env') or 'HF_TOKEN'} is not set; give it in "
                       "secrets (a reference to a token with write access)",
                       "output.push_to_hub.token_env")  # fmt: skip
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    repo, revision = settings["repo_id"], settings.get("revision")
    try:
        api.create_repo(repo, private=bool(settings.get("private", True)), repo_type="model",
                        exist_ok=True)  # fmt: skip
        if revision:
            api.create_branch(repo, branch=revision, repo_type="model", exist_ok=True)
        commit = api.upload_folder(
            repo_id=repo, folder_path=str(model_dir), repo_type="model", revision=revision,
            commit_message=settings.get("commit_message") or f"genai-cloud: {spec.name}",
            ignore_patterns=[".*", ".saving-*/**"],  # a kill mid-save leaves a hidden folder
        )  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - HTTP, auth and validation errors share no base
        raise JobError(f"pushing {model_dir} to {repo} failed ({type(exc).__name__}: {exc}); "
                       "the model is still in the job's model folder", "output.push_to_hub") \
            from None  # fmt: skip
    url = getattr(commit, "commit_url", str(commit))
    log.info("pushed the model to the Hugging Face Hub: %s", url)
    return url
