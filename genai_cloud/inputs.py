"""What a spec reads, checked where it can be from here: local files must exist.

``validate`` (and ``run``, before it starts a job) asks ``check_inputs``: every spec field that
names a file or folder the job opens (one table, ``job_templates.contract.INPUT_CHANNELS``) is
either a local path that must exist, a cloud URI this machine does not look into, or, for the
model fields, a hub id / ``pkg://`` folder the job resolves by itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .errors import SpecError


@dataclass
class InputReport:
    missing: list[str] = field(default_factory=list)  # "data.train: no such file or folder: X"
    unchecked: list[str] = field(default_factory=list)  # "data.train: s3://... (remote)"


def inputs_of(spec) -> list[tuple[str, str, bool]]:
    """``(field path, value, is a model field)`` for each input field the spec sets."""
    from job_templates.contract import INPUT_CHANNELS, MODEL_CHANNELS

    found = []
    for section, name in INPUT_CHANNELS:
        part = getattr(spec, section, None)
        value = getattr(part, name, None) if part is not None else None
        if isinstance(value, str) and value:
            found.append((f"{section}.{name}", value, (section, name) in MODEL_CHANNELS))
    return found


def _mounted(spec) -> list[str]:
    """Folders some provider's jobs see that are not on this machine (its volumes)."""
    from .providers.base import get_provider, provider_names

    return [m.rstrip("/") + "/" for name in provider_names()
            for m in get_provider(name).mounted_paths(spec)]  # fmt: skip


def check_inputs(spec) -> InputReport:
    """Sort the spec's inputs into missing local paths and what cannot be checked here."""
    report = InputReport()
    mounted = _mounted(spec)
    for path, value, is_model in inputs_of(spec):
        if "://" in value:  # s3:// gs:// azureml:// https:// hf:// pkg://
            kind = "a package folder" if value.startswith("pkg://") else "remote"
            report.unchecked.append(f"{path}: {value} ({kind}; read by the job)")
        elif any(value.startswith(m) for m in mounted):
            report.unchecked.append(f"{path}: {value} (on a volume the job mounts)")
        elif Path(value).is_absolute() or not is_model:
            # Loading made every relative path that exists absolute; a data or file field is
            # always a path.
            if not Path(value).exists():
                report.missing.append(f"{path}: no such file or folder: {value}{_hub_hint(path, value)}")
        else:
            report.unchecked.append(f"{path}: {value} (a hub id; downloaded by the job)")
    return report


def _hub_hint(path: str, value: str) -> str:
    # `--set data.train=imdb` is how HF users name a hub dataset; here the hub is spelled out.
    if path in ("data.train", "data.eval") and not Path(value).suffix:
        return "; a Hugging Face Hub dataset is written hf://ORG/NAME (e.g. hf://stanfordnlp/imdb)"
    return ""


def require_inputs(spec, source: str | None = None) -> InputReport:
    """``check_inputs``, raising a SpecError naming every missing local input."""
    report = check_inputs(spec)
    if report.missing:
        raise SpecError(report.missing, source=source)
    return report
