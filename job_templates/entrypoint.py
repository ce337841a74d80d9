"""The one entrypoint every backend runs: contract -> spec -> secrets -> recipe -> outputs.

    python -m job_templates.entrypoint [--spec spec.json] [--data train=PATH] [--model-dir DIR] ...

Exit status: 0 done; 2 a problem with the job's inputs (message, no traceback); 143 preempted
(SIGTERM) after flushing a checkpoint, so the platform's restart resumes; 1 a bug (traceback).
"""

from __future__ import annotations

import importlib
import logging
import os
import sys

from .common.publish import push_to_hub
from .common.tracking import tracked
from .config import JobError, Preempted, load_config
from .contract import resolve

RECIPES = {
    "finetune": "job_templates.finetune",
    "pretrain-scratch": "job_templates.scratch",
    "distill": "job_templates.distill",
    "prune": "job_templates.prune",
    "evaluate": "job_templates.evaluate",
    "audit": "job_templates.audit",
    "fairness": "job_templates.fairness",
    "dpo": "job_templates.dpo",
}
EXIT_INPUT_ERROR = 2
EXIT_PREEMPTED = 143  # 128 + SIGTERM: what a process killed by the eviction signal reports
__all__ = ["EXIT_INPUT_ERROR", "EXIT_PREEMPTED", "Preempted", "RECIPES", "main"]

log = logging.getLogger("genai")


def resolve_secrets(secrets: dict[str, str]) -> None:
    """Put each referenced secret's value into this process's environment (never logged)."""
    from .secrets import fetch

    for env_name, reference in secrets.items():
        if env_name not in os.environ:
            os.environ[env_name] = fetch(reference, name=f"secrets.{env_name}")
        log.info("secret %s resolved from %s", env_name, reference.split(":secret:")[0])


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                        stream=sys.stdout)  # fmt: skip
    try:
        contract = resolve(argv)
        spec = load_config(contract.spec_path)
        if spec.task not in RECIPES:
            raise JobError(f"unknown task {spec.task!r}; valid: {', '.join(RECIPES)}", "task")
        log.info("genai-cloud job %s: task=%s platform=%s rank=%d/%d", spec.name, spec.task,
                 contract.platform, contract.rank, contract.world_size)  # fmt: skip
        contract.localize_files(spec)
        if spec.get("secrets"):
            resolve_secrets(spec.secrets)
        recipe = importlib.import_module(RECIPES[spec.task])
        with tracked(spec, contract) as run:  # MLflow / TensorBoard / W&B when spec.tracking asks
            run.log_results(recipe.run(spec, contract))
            push_to_hub(spec, contract)  # output.push_to_hub, when set
        return 0
    except JobError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return EXIT_INPUT_ERROR
    except Preempted as exc:
        print(f"preempted: {exc}", file=sys.stderr, flush=True)
        return EXIT_PREEMPTED


if __name__ == "__main__":
    sys.exit(main())
