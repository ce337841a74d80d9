"""Loading a spec file: YAML or JSON -> JobSpec, with every problem reported at once.

Each error names its field path, the YAML line it sits on and what would be valid. Relative local
paths are resolved against the spec file's folder; those given as overrides (``--set``) against the
current directory.

PyYAML follows YAML 1.1, where an unquoted ``2:4`` or ``1:30`` is a base-60 integer (124, 90);
the loader here drops that form (as YAML 1.2 did), so they stay strings. Other numbers parse as
before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from .errors import SpecError
from .spec import FIELD_PROBLEMS, JobSpec, is_remote_uri


def load_spec(source: str | Path | dict, *, overrides: dict | None = None) -> JobSpec:
    """Load and validate a spec from a YAML/JSON file (or a dict).

    Relative local paths in ``data``, ``model`` and the task sections are resolved against the
    spec file's folder; relative paths in ``overrides`` (the command line's ``--set``) against the
    current working directory, like any command-line argument.

    Raises:
        SpecError: with every problem, each as ``path (line N): message``.
    """
    lines: dict[tuple, int] = {}
    name = None
    if isinstance(source, dict):
        raw = source
    else:
        path = Path(source)
        name = str(path)
        if not path.is_file():
            raise SpecError([f"spec file not found: {path}"], source=name)
        text = path.read_text(encoding="utf-8")
        raw, lines = _parse(text, name)
        raw = _resolve_relative_paths(raw, path.parent)
    if overrides:
        raw = _deep_merge(raw, _resolve_relative_paths(overrides, Path.cwd()))
    if not isinstance(raw, dict):
        raise SpecError(["the top level must be a mapping of sections (name, task, model, ...)"],
                        source=name)  # fmt: skip
    try:
        return JobSpec.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(_describe(exc, lines), source=name) from None


_INT, _FLOAT = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
_spec_loader = None


class _NotSexagesimal:
    """A YAML 1.1 int/float resolver pattern minus its base-60 form (the only one with a ':')."""

    def __init__(self, pattern):
        self.pattern = pattern

    def match(self, value: str):
        return None if ":" in value else self.pattern.match(value)


def spec_loader():
    """A ``yaml.SafeLoader`` subclass that reads ``2:4`` and ``1:30`` as strings, not base 60."""
    global _spec_loader
    if _spec_loader is None:
        import yaml

        class SpecLoader(yaml.SafeLoader):
            pass

        SpecLoader.yaml_implicit_resolvers = {
            first: [(tag, _NotSexagesimal(rx) if tag in (_INT, _FLOAT) else rx)
                    for tag, rx in resolvers]
            for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
        }  # fmt: skip
        _spec_loader = SpecLoader
    return _spec_loader


def parse_value(text: str) -> Any:
    """One YAML scalar or flow value (a ``--set`` value), read like a spec file reads it."""
    import yaml

    return yaml.load(text, Loader=spec_loader())  # a SafeLoader subclass


def _parse(text: str, name: str) -> tuple[Any, dict[tuple, int]]:
    import yaml

    loader = spec_loader()(text)
    try:
        node = loader.get_single_node()
        data = None if node is None else loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{name}:{mark.line + 1}" if mark else name
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError([f"{where}: not valid YAML/JSON ({problem})"], source=name) from None
    finally:
        loader.dispose()
    lines: dict[tuple, int] = {}
    _index_lines(node, (), lines)
    return (data if data is not None else {}), lines


def _index_lines(node, path: tuple, out: dict[tuple, int]) -> None:
    import yaml

    if node is None:
        return
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            out[path + (key.value,)] = key.start_mark.line + 1
            _index_lines(value, path + (key.value,), out)
            out[path + (key.value,)] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index_lines(item, path + (i,), out)


def _describe(exc: ValidationError, lines: dict[tuple, int]) -> list[str]:
    problems = []
    for err in exc.errors(include_url=False):
        loc = tuple(str(p) if not isinstance(p, int) else p for p in err["loc"])
        # pydantic appends the tag of a failing validator; keep only real field names.
        loc = tuple(p for p in loc if not (isinstance(p, str) and p.startswith("function-")))
        if err["type"] == FIELD_PROBLEMS:  # cross-field checks name the fields they are about
            for field, message in err["ctx"]["problems"]:
                problems.append(_where(loc + tuple(field.split(".")), lines) + f": {message}")
            continue
        problems.append(f"{_where(loc, lines)}: {_message(err, loc)}")
    return problems


def _where(loc: tuple, lines: dict[tuple, int]) -> str:
    path = ".".join(str(p) for p in loc) or "(top level)"
    line = _nearest_line(loc, lines)
    return f"{path} (line {line})" if line else path


def _nearest_line(loc: tuple, lines: dict[tuple, int]) -> int | None:
    for cut in range(len(loc), -1, -1):
        key = tuple(str(p) if not isinstance(p, int) else p for p in loc[:cut])
        if key in lines and cut:
            return lines[key]
    return None


def _message(err: dict, loc: tuple) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        parent = _model_at(loc[:-1])
        valid = ", ".join(parent.model_fields) if parent else ""
        return f"unknown field {loc[-1]!r}" + (f"; valid fields: {valid}" if valid else "")
    if kind == "missing":
        return "field required"
    msg = err["msg"]
    if kind == "value_error":
        msg = msg.removeprefix("Value error, ")
    if "input" in err and kind not in ("missing",) and not isinstance(err["input"], (dict, list)):
        shown = repr(err["input"])
        if len(shown) > 60:
            shown = shown[:57] + "..."
        msg = f"{msg} (got {shown})"
    return msg


def _model_at(loc: tuple) -> type[BaseModel] | None:
    model: type[BaseModel] = JobSpec
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        inner = _section_type(field.annotation)
        if inner is None:
            return None
        model = inner
    return model


def _section_type(annotation) -> type[BaseModel] | None:
    import typing

    candidates = [annotation, *typing.get_args(annotation)]
    for c in candidates:
        if isinstance(c, type) and issubclass(c, BaseModel):
            return c
    return None


def _resolve_relative_paths(raw: Any, base: Path) -> Any:
    if not isinstance(raw, dict):
        return raw

    def fix(value, always: bool):
        if not isinstance(value, str) or not value or is_remote_uri(value) or "://" in value:
            return value
        if Path(value).is_absolute():
            return value
        candidate = (base / value).resolve()
        # Model ids look like relative paths ("gpt2", "org/model"): keep them unless they exist.
        keep = not always and not candidate.exists() and not value.startswith(".")
        return value if keep else str(candidate)

    raw = dict(raw)
    for section, keys, always in (
        ("data", ("train", "eval"), True),
        ("model", ("name_or_path",), False),
        ("distill", ("teacher",), False),
        ("fairness", ("pairs",), True),
        ("audit", ("lexicon",), True),
        ("evaluate", ("feature_extractor", "generated_images", "real_images"), True),
    ):
        part = raw.get(section)
        if isinstance(part, dict):
            part = dict(part)
            for key in keys:
                if key in part:
                    part[key] = fix(part[key], always)
            raw[section] = part
    return raw


def _deep_merge(base: dict, extra: dict) -> dict:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
