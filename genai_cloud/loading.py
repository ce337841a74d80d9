"""Loading a spec file: YAML or JSON -> JobSpec, with every problem reported at once.

Each error names its field path, the YAML line it sits on (or ``from --set`` for a value an
override gave) and what would be valid. A file must be UTF-8, and a mapping may name a key once
(PyYAML alone keeps the last silently). Relative local paths are resolved against the spec file's
folder; those given as overrides (``--set``) against the current directory.

Hostile documents (alias bombs, deep nesting, recursive aliases, huge integers, non-finite
numbers, NUL bytes, over-long paths) are refused by ``spec_limits`` as problems naming their line
or field, before they cost more than a bad spec.

PyYAML follows YAML 1.1, where an unquoted ``2:4`` or ``1:30`` is a base-60 integer (124, 90);
the loader here drops that form (as YAML 1.2 did), so they stay strings. Other numbers parse as
before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from .contract import INPUT_CHANNELS, MODEL_CHANNELS
from .errors import SpecError
from .spec import FIELD_PROBLEMS, JobSpec, is_remote_uri
from .spec_limits import MAX_SPEC_BYTES, LimitedComposer, LimitExceeded, tree_problems


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
        _check_file(path)
        raw, lines = _parse(_read_text(path), name)
        if not lines and not overrides:  # nothing but whitespace and comments
            raise SpecError([f"{name}: the file holds no spec; a spec needs at least `name:` and "
                             "`task:` (see examples/quickstart.yaml)"], source=name)  # fmt: skip
        _check_tree(raw, lines, name)
        raw = _resolve_relative_paths(raw, path.parent)
    overridden: set[tuple] = set()
    if overrides:
        _check_tree(overrides, {}, name, overridden=set(_leaf_paths(overrides)))
        raw = _deep_merge(raw, _resolve_relative_paths(overrides, Path.cwd()))
        overridden = set(_leaf_paths(overrides))
    if not isinstance(raw, dict):
        raise SpecError(["the top level must be a mapping of sections (name, task, model, ...)"],
                        source=name)  # fmt: skip
    if isinstance(source, dict):
        _check_tree(raw, lines, name, overridden)
    raw = _resolve_runs(raw, lines, overridden, name)
    try:
        return JobSpec.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(_describe(exc, lines, overridden), source=name) from None


def _check_file(path: Path) -> None:
    try:
        if "\x00" in str(path):  # is_file() says False: "not found" would mislead
            raise ValueError("embedded null byte")
        found = path.is_file()
    except (OSError, ValueError) as exc:  # a name too long for the file system, or a NUL in it
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        shown = str(path) if len(str(path)) <= 80 else str(path)[:77] + "..."
        raise SpecError([f"cannot open spec file {shown!r}: {reason}"], source=shown) from None
    if not found:
        raise SpecError([f"spec file not found: {path}"], source=str(path))


def _check_tree(raw: Any, lines: dict[tuple, int], name: str | None,
                overridden: set[tuple] = frozenset()) -> None:  # fmt: skip
    """NUL bytes, non-finite numbers, over-long paths (and depth and size for a mapping given
    as such) as problems naming their field, before any path reaches the file system."""
    problems = [f"{_where(path, lines, overridden)}: {message}"
                for path, message in tree_problems(raw)]  # fmt: skip
    if problems:
        raise SpecError(problems, source=name)
def _resolve_runs(raw: dict, lines: dict, overridden: set, name: str | None) -> dict:
    """``run:NAME`` in the model / resume fields -> that local run's folder (see ``runs.py``)."""
    from .runs import resolve_run_refs, runs_dir

    raw, problems = resolve_run_refs(raw, runs_dir(raw))
    if problems:
        raise SpecError([f"{_where(field, lines, overridden)}: {message}"
                         for field, message in problems], source=name)  # fmt: skip
    return raw


def _read_text(path: Path) -> str:
    try:
        size = path.stat().st_size
        if size > MAX_SPEC_BYTES:
            raise SpecError([(f"{path}: {size:,} bytes; a spec file may be at most "
                             f"{MAX_SPEC_BYTES:,} bytes")], source=str(path))  # fmt: skip
        data = path.read_bytes()
    except OSError as exc:
        raise SpecError([f"{path}: cannot read it ({exc.strerror or exc})"], source=str(path)) \
            from None  # fmt: skip
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        hint = "save it as UTF-8"
        if data.startswith((b"\xff\xfe", b"\xfe\xff")):  # the byte-order marks of UTF-16
            hint = "it looks like UTF-16; save it as UTF-8"
        problem = (f"{path}: not UTF-8 text (byte {exc.start} is 0x{data[exc.start]:02x}, "
                   f"line {line}); {hint}")  # fmt: skip
        raise SpecError([problem], source=str(path)) from None


def _leaf_paths(tree: dict, prefix: tuple = ()):
    """Every path an override sets: ``{"training": {"lr": 1}}`` -> ``("training", "lr")``."""
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            yield from _leaf_paths(value, prefix + (str(key),))
        else:
            yield prefix + (str(key),)


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

        class SpecLoader(LimitedComposer, yaml.SafeLoader):
            def construct_object(self, node, deep=False):
                # An explicit tag on a value it cannot read (``!!timestamp x``, ``!!int a``)
                # raises a plain ValueError/AttributeError inside PyYAML: name the line instead.
                try:
                    return super().construct_object(node, deep)
                except (ValueError, TypeError, AttributeError, OverflowError):
                    value = node.value if isinstance(node.value, str) else "..."
                    tag = node.tag.replace("tag:yaml.org,2002:", "!!")
                    raise yaml.constructor.ConstructorError(
                        problem=f"{value[:40]!r} is not a valid {tag} value",
                        problem_mark=node.start_mark) from None

        SpecLoader.yaml_implicit_resolvers = {
            first: [(tag, _NotSexagesimal(rx) if tag in (_INT, _FLOAT) else rx)
                    for tag, rx in resolvers]
            for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
        }  # fmt: skip
        _spec_loader = SpecLoader
    return _spec_loader


def parse_value(text: str) -> Any:
    """One YAML scalar or flow value (a ``--set`` value), read like a spec file reads it.

    Raises:
        yaml.YAMLError: not YAML, or a mapping in it names one key twice.
    """
    import yaml

    if len(text) > MAX_SPEC_BYTES:
        raise yaml.YAMLError(f"{len(text):,} characters; at most {MAX_SPEC_BYTES:,}")
    loader = spec_loader()(text)  # its reader refuses control characters: a YAMLError
    try:
        node = loader.get_single_node()
        for path, first, again in _duplicate_keys(node):
            raise yaml.constructor.ConstructorError(
                problem=f"{'.'.join(map(str, path))!r} appears twice", problem_mark=again
            )
        return None if node is None else loader.construct_document(node)
    except LimitExceeded as exc:
        raise yaml.YAMLError(exc.message) from None
    finally:
        loader.dispose()


def parse_yaml(text: str, name: str) -> Any:
    """A YAML/JSON document as Python values, with the spec loader's limits.

    Raises:
        SpecError: not YAML, over a limit, or a key named twice (each naming its line).
    """
    data, lines = _parse(text, name)
    _check_tree(data, lines, name)
    return data


def _parse(text: str, name: str) -> tuple[Any, dict[tuple, int]]:
    import yaml

    if len(text) > MAX_SPEC_BYTES:
        raise SpecError([(f"{name}: {len(text):,} characters; a spec may be at most "
                         f"{MAX_SPEC_BYTES:,}")], source=name)  # fmt: skip
    loader = None
    try:
        loader = spec_loader()(text)  # its reader refuses control characters (ReaderError)
        node = loader.get_single_node()
        duplicates = [f"{name}:{again.line + 1}: {'.'.join(map(str, path))} appears twice in one "
                      f"mapping (lines {first.line + 1} and {again.line + 1}); keep one"
                      for path, first, again in _duplicate_keys(node)]  # fmt: skip
        if duplicates:  # PyYAML would keep the last one without a word
            raise SpecError(duplicates, source=name)
        data = None if node is None else loader.construct_document(node)
    except LimitExceeded as exc:
        raise SpecError([f"{name}:{exc.line}: {exc.message}"], source=name) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{name}:{mark.line + 1}" if mark else name
        problem = getattr(exc, "problem", None) or str(exc)
        if isinstance(exc, yaml.reader.ReaderError):  # a control character, at a position
            where = f"{name}:{text.count(chr(10), 0, exc.position) + 1}"
            problem = f"character #x{exc.character:04x} is not allowed in YAML; remove it"
        raise SpecError([f"{where}: not valid YAML/JSON ({problem})"], source=name) from None
    finally:
        if loader is not None:
            loader.dispose()
    lines: dict[tuple, int] = {}
    _index_lines(node, (), lines)
    return (data if data is not None else {}), lines


_MERGE = "tag:yaml.org,2002:merge"


def _duplicate_keys(node, path: tuple = (), seen: set | None = None):
    """(key path, first mark, repeated mark) for each key a mapping names twice, in file order.

    Runs on the composed nodes, before ``<<`` merge keys are flattened: a key that overrides a
    merged one is not a duplicate.
    """
    import yaml

    seen = set() if seen is None else seen
    if node is None or id(node) in seen:  # an alias repeats a node already checked
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first: dict[tuple, Any] = {}
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.tag != _MERGE:
                ident = (key.tag, key.value)
                if ident in first:
                    yield path + (key.value,), first[ident], key.start_mark
                else:
                    first[ident] = key.start_mark
            name = key.value if isinstance(key, yaml.ScalarNode) else "?"
            yield from _duplicate_keys(value, path + (name,), seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            yield from _duplicate_keys(item, path + (i,), seen)


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


def _describe(exc: ValidationError, lines: dict[tuple, int],
              overridden: set[tuple] = frozenset()) -> list[str]:  # fmt: skip
    """One line per problem, each saying where it is: the spec file's line, or ``(from --set)``
    for a value that came from ``overridden`` (the paths ``--set`` gave)."""
    problems = []
    for err in exc.errors(include_url=False):
        loc = tuple(str(p) if not isinstance(p, int) else p for p in err["loc"])
        # pydantic appends the tag of a failing validator; keep only real field names.
        loc = tuple(p for p in loc if not (isinstance(p, str) and p.startswith("function-")))
        if err["type"] == FIELD_PROBLEMS:  # cross-field checks name the fields they are about
            for field, message in err["ctx"]["problems"]:
                where = _where(loc + tuple(field.split(".")), lines, overridden)
                problems.append(f"{where}: {message}")
            continue
        problems.append(f"{_where(loc, lines, overridden)}: {_message(err, loc)}")
    return problems


def _where(loc: tuple, lines: dict[tuple, int], overridden: set[tuple] = frozenset()) -> str:
    path = ".".join(str(p) for p in loc) or "(top level)"
    # The innermost field that has a source: the value --set gave replaced the file's there.
    for cut in range(len(loc), 0, -1):
        key = tuple(str(p) if not isinstance(p, int) else p for p in loc[:cut])
        if tuple(str(p) for p in key) in overridden:
            return f"{path} (from --set)"
        if key in lines:
            return f"{path} (line {lines[key]})"
    return path


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
        if not isinstance(value, str) or not value or is_remote_uri(value) or "://" in value \
                or value.startswith("run:"):  # resolved by _resolve_runs  # fmt: skip
            return value
        if Path(value).is_absolute():
            return value
        candidate = (base / value).resolve()
        # Model ids look like relative paths ("gpt2", "org/model"): keep them unless they exist.
        keep = not always and not candidate.exists() and not value.startswith(".")
        return value if keep else str(candidate)

    raw = dict(raw)
    # The fields that name files or folders are the job's input channels: one table for both.
    for section, key in INPUT_CHANNELS:
        part = raw.get(section)
        if isinstance(part, dict) and key in part:
            raw[section] = {**part, key: fix(part[key], (section, key) not in MODEL_CHANNELS)}
    output = raw.get("output")  # where local runs go: beside the spec, like its inputs
    if isinstance(output, dict) and isinstance(output.get("local_dir"), str):
        raw["output"] = {**output, "local_dir": fix(output["local_dir"], True)}
    return raw


def _deep_merge(base: dict, extra: dict) -> dict:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
