"""What ``data.streaming`` needs of the rest of a spec, checked before any launch.

A stream has no length and is never held whole, so it needs a step count, and every part of a
job that looks at all the training records at once (a label map, the data audit, bias
mitigation) cannot run on it. ``job_templates/common/streaming.py`` is the job side.
"""

from __future__ import annotations

from typing import Any

# The tasks whose recipes train from a stream (job_templates/finetune.py, distill.py, scratch.py).
STREAMING_TASKS = ("finetune", "distill", "pretrain-scratch")
_WHOLE = "reads all its training records at once"


def streaming_problems(spec: Any) -> list[tuple[str, str]]:
    """``(field path, message)`` for each part of ``spec`` that cannot run on streamed data."""
    task = getattr(spec.task, "value", spec.task)
    problems: list[tuple[str, str]] = []

    def add(field: str, message: str) -> None:
        problems.append((field, message))

    if task not in STREAMING_TASKS:
        add("data.streaming", f"task {task!r} {_WHOLE}; remove data.streaming (tasks "
            f"that stream: {', '.join(STREAMING_TASKS)})")  # fmt: skip
        return problems
    if spec.training.max_steps is None:
        add("training.max_steps", "required with data.streaming: a stream has no "
            "length to count epochs over, so set the number of optimizer steps to "
            "train (e.g. 1000); data.max_records is optional")  # fmt: skip
    if spec.model is not None and spec.model.head == "sequence-classification":
        add("data.streaming", "a classification head maps the labels of every "
            "training record to class ids before training; remove data.streaming "
            "(or cap the data with data.max_records / a split slice)")  # fmt: skip
    if spec.audit is not None and task == "finetune":
        add("audit", f"the data audit {_WHOLE}; remove the audit section, or run "
            "task 'audit' on a bounded copy (data.max_records) first")  # fmt: skip
    if spec.fairness is not None and spec.fairness.mitigation:
        add("fairness.mitigation", f"bias mitigation {_WHOLE} (to augment and "
            "reweight them); remove it or data.streaming")  # fmt: skip
    if spec.compute.is_tpu:
        add("data.streaming", "not supported on TPU yet (the XLA loop indexes "
            "an in-memory dataset); remove data.streaming")  # fmt: skip
    return problems
