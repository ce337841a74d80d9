"""Limits that keep a hostile spec document from costing more than a bad one.

A spec is a few KB of mappings a handful of levels deep. YAML lets a 2 KB document expand to
10^8 values through aliases ("billion laughs"), nest past Python's recursion limit, refer to
itself, or spell numbers Python cannot convert (a 5,000-digit integer, ``.inf`` as a duration);
a path value can hold a NUL byte or be longer than any file system allows. Each of these is
refused here as a problem naming its line or field, long before it costs CPU or memory.

Two places check: the YAML composer (``LimitedComposer``: nesting, alias expansion, recursive
aliases and integer digits, counted as nodes are built, so the limit stops the work rather than
measuring it afterwards), and ``tree_problems`` on the parsed mapping (NUL bytes, non-finite
numbers, over-long paths; also depth and size for a mapping that did not come from YAML, such
as a serverless request's JSON).
"""

from __future__ import annotations

import math
from typing import Any

# The largest real specs are a few KB; 256 KiB leaves room for long prompt lists while keeping
# the pure-Python YAML parser well under a second.
MAX_SPEC_BYTES = 256 * 1024
# The schema is at most 4 levels deep (compute.fallback[0].accelerator); 32 is generous and far
# below Python's recursion limit, which the YAML composer and pydantic both recurse into.
MAX_DEPTH = 32
# Values after alias expansion (every scalar, list and mapping counts once per appearance). The
# pure-Python parser takes 20-35 us a value on a busy machine, so the limit also keeps a parse
# near 0.2 s; the largest real specs (a list of evaluation prompts) hold a few hundred.
MAX_VALUES = 5_000
# No field needs more than a 64-bit integer (20 digits); Python refuses str -> int conversion
# past 4,300 digits with a ValueError.
MAX_INT_DIGITS = 20
# Linux NAME_MAX (one path component) and PATH_MAX (a whole path), in bytes.
NAME_MAX = 255
PATH_MAX = 4096

# Local-path fields (section, key): checked for component and total length.
PATH_FIELDS = (
    ("data", "train"), ("data", "eval"), ("model", "name_or_path"), ("distill", "teacher"),
    ("fairness", "pairs"), ("audit", "lexicon"), ("evaluate", "feature_extractor"),
    ("evaluate", "generated_images"), ("evaluate", "real_images"), ("output", "local_dir"),
    ("output", "uri"),
)  # fmt: skip

_INT_TAG, _FLOAT_TAG = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"


class LimitExceeded(Exception):
    """A YAML document is over a limit; ``line`` is 1-based."""

    def __init__(self, line: int, message: str):
        super().__init__(message)
        self.line = line
        self.message = message


class LimitedComposer:
    """A mixin for a ``yaml`` loader: the composer with depth, expansion and alias limits.

    Each node's expanded size and depth are computed as it is composed (its children are done
    by then, an alias is a finished node). A running count of the document's expanded values
    (one per node, an alias's whole expansion per alias) stops a billion-laughs document at the
    first alias that takes it past ``MAX_VALUES``, and a merely long one at its 5,001st value,
    after reading only that much text.
    """

    def compose_document(self):
        self._depth = 0
        self._open_anchors: set[str] = set()
        self._measure: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded size, depth)
        self._values = 0  # the document's values so far, aliases expanded
        try:
            return super().compose_document()
        finally:
            self._measure = {}

    def compose_node(self, parent, index):
        import yaml

        event = self.peek_event()
        line = event.start_mark.line + 1
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self._open_anchors:
                raise LimitExceeded(line, f"the alias *{event.anchor} refers to a value that "
                                    "contains it (a recursive alias); a spec cannot hold one")  # fmt: skip
            node = super().compose_node(parent, index)
            self._check(node, line, alias=event.anchor)
            return node
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise LimitExceeded(line, f"nested more than {MAX_DEPTH} levels deep; a spec needs "
                                "a handful (section, field, list)")  # fmt: skip
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            self._open_anchors.add(anchor)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
            self._open_anchors.discard(anchor)
        if isinstance(node, yaml.ScalarNode) and node.tag == _INT_TAG:
            digits = sum(c.isdigit() for c in node.value)
            if digits > MAX_INT_DIGITS:
                raise LimitExceeded(line, f"an integer of {digits} digits; numbers in a spec "
                                    f"have at most {MAX_INT_DIGITS}")  # fmt: skip
        self._check(node, line)
        return node

    def _check(self, node, line: int, alias: str | None = None) -> None:
        if id(node) in self._measure:
            size, depth = self._measure[id(node)]
        else:
            children = node.value if isinstance(node.value, list) else []
            size, depth = 1, 1
            for child in children:
                for part in child if isinstance(child, tuple) else (child,):
                    part_size, part_depth = self._measure[id(part)]
                    size += part_size
                    depth = max(depth, part_depth + 1)
            self._measure[id(node)] = (size, depth)
        # An alias puts its whole value below the current level (its nodes were each checked
        # only at their anchor's depth).
        if alias and self._depth + depth > MAX_DEPTH:
            raise LimitExceeded(line, f"the alias *{alias} expands to values nested more than "
                                f"{MAX_DEPTH} levels deep")  # fmt: skip
        self._values += size if alias else 1
        if self._values > MAX_VALUES:
            what = f"the alias *{alias} takes" if alias else "this value takes"
            raise LimitExceeded(line, f"{what} the document past {MAX_VALUES:,} values (aliases "
                                "repeat what they name); a spec holds a few hundred")  # fmt: skip


def tree_problems(raw: Any) -> list[tuple[tuple, str]]:
    """``(field path, message)`` for each limit a parsed document breaks.

    Walks iteratively (no recursion), stops counting at ``MAX_VALUES`` and reports at most one
    problem per kind of limit beyond NUL bytes and numbers (each of which names its field).
    """
    problems: list[tuple[tuple, str]] = []
    stack: list[tuple[tuple, Any]] = [((), raw)]
    seen = 0
    while stack:
        path, value = stack.pop()
        seen += 1
        if seen > MAX_VALUES:
            problems.append(((), f"more than {MAX_VALUES:,} values; a spec holds a few hundred"))
            break
        if len(path) > MAX_DEPTH:
            problems.append((path[:MAX_DEPTH], f"nested more than {MAX_DEPTH} levels deep"))
            break
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):  # YAML allows any key: null, 1, [a], {a: b}
                    problems.append((path, f"a key must be a name, not {_shown(repr(key))}"))
                    continue
                if "\x00" in key:
                    problems.append((path, f"a key contains a NUL byte ({_shown(key)})"))
                stack.append((path + (key,), item))
        elif isinstance(value, (list, tuple)):
            stack.extend((path + (i,), item) for i, item in enumerate(value))
        elif isinstance(value, str):
            if "\x00" in value:
                problems.append((path, ("contains a NUL byte (\\0), which no path, name or "
                                 "environment variable can hold")))  # fmt: skip
        elif isinstance(value, (bytes, bytearray)):
            problems.append((path, "binary data (a !!binary value) is not a spec value; give text"))
        elif isinstance(value, float) and not math.isfinite(value):
            problems.append((path, f"{value} is not a finite number"))
        elif isinstance(value, int) and value.bit_length() > 66:  # over 20 decimal digits
            problems.append((path, f"an integer over {MAX_INT_DIGITS} digits"))
    problems.reverse()  # the stack visits the document bottom-up; report top-down
    if not problems and isinstance(raw, dict):
        problems = _path_problems(raw)
    return problems


def _path_problems(raw: dict) -> list[tuple[tuple, str]]:
    problems = []
    for section, key in PATH_FIELDS:
        part = raw.get(section)
        value = part.get(key) if isinstance(part, dict) else None
        if not isinstance(value, str) or "://" in value:
            continue
        size = len(value.encode("utf-8", "surrogatepass"))
        longest = max((len(p.encode("utf-8", "surrogatepass")) for p in value.split("/")),
                      default=0)  # fmt: skip
        if size > PATH_MAX:
            problems.append(((section, key), f"a path of {size} bytes; at most {PATH_MAX}"))
        elif longest > NAME_MAX:
            problems.append(((section, key), (f"a path with a {longest}-byte name in it; file "
                             f"systems allow at most {NAME_MAX} bytes per name")))  # fmt: skip
    return problems


def _shown(text: str) -> str:
    shown = repr(text)
    return shown if len(shown) <= 40 else shown[:37] + "..."
