"""The spec as the entrypoint sees it: the bundle's ``spec.json``, read without pydantic.

The SDK writes spec.json with every default filled in, so the container needs neither pydantic
nor genai-cloud; recipes read it with attribute access (``spec.training.lr``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class Config(dict):
    """A dict whose keys also read as attributes, recursively."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    @classmethod
    def wrap(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return cls({k: cls.wrap(v) for k, v in value.items()})
        if isinstance(value, list):
            return [cls.wrap(v) for v in value]
        return value


class JobError(Exception):
    """A problem with the job's inputs (data, model, settings): printed without a traceback,
    exit status 2. ``where`` names the file:line or field when there is one."""

    def __init__(self, message: str, where: str | None = None):
        super().__init__(f"{where}: {message}" if where else message)
        self.where = where


class Preempted(Exception):
    """Raised by a training loop after it has flushed a checkpoint on SIGTERM (exit 143).

    Defined here rather than in ``entrypoint`` because ``python -m job_templates.entrypoint``
    runs that module as ``__main__``: a class defined there would exist twice."""


def load_config(path: str | Path) -> Config:
    path = Path(path)
    if not path.is_file():
        raise JobError(f"spec not found at {path} (pass --spec or run from the bundle root)")
    return Config.wrap(json.loads(path.read_text(encoding="utf-8")))
