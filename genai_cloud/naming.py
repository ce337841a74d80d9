"""Job-name rules: what a provider allows in a job name, and the name a plan gets.

Each provider declares its own ``NameRules`` next to its code (``Provider.name_rules``); this
module sits below the plan and the providers so that both can use it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class NameRules:
    """A provider's job-name rules."""

    max_len: int
    allowed: str  # regex character class of allowed characters
    lowercase: bool = False


DEFAULT_NAMES = NameRules(max_len=63, allowed="a-zA-Z0-9-")


def job_name(stem: str, key: str, rules: NameRules = DEFAULT_NAMES) -> str:
    """``stem-key`` cut to the provider's length, with only its allowed characters."""
    if rules.lowercase:
        stem = stem.lower()
    stem = re.sub(f"[^{rules.allowed}]+", "-", stem).strip("-") or "job"
    stem = re.sub("-{2,}", "-", stem)
    stem = stem[: rules.max_len - len(key) - 1].rstrip("-")
    return f"{stem}-{key}"
