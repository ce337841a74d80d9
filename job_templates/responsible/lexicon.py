"""Group lexicons: which words put a text in which demographic group, and how to swap them.

A lexicon file is JSON::

    {"axes": {"gender": {"groups": {"female": {"terms": [...], "person": [...]}, ...},
                         "swap_pairs": [["she", "he"], ...]}, ...}}

``terms`` are matched as whole words (multi-word terms allowed), case-insensitively. ``person``
phrases fill counterfactual templates ("The {person} ..."); ``swap_pairs`` (optional) drive
counterfactual augmentation. A group given as a plain list is read as its ``terms``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..config import JobError

DEFAULT_LEXICON = Path(__file__).resolve().parent.parent / "data" / "lexicon.json"


@dataclass
class Axis:
    name: str
    groups: dict[str, list[str]]
    person: dict[str, list[str]]
    swap_pairs: list[tuple[str, str]] = field(default_factory=list)
    _patterns: dict[str, re.Pattern] = field(default_factory=dict, repr=False)

    def pattern(self, group: str) -> re.Pattern:
        if group not in self._patterns:
            # Longest terms first so "black women" wins over a shorter overlapping term.
            terms = sorted(self.groups[group], key=len, reverse=True)
            body = "|".join(re.escape(t).replace(r"\ ", r"\s+") for t in terms)
            self._patterns[group] = re.compile(rf"(?<![\w-])(?:{body})(?![\w-])", re.IGNORECASE)
        return self._patterns[group]

    def groups_in(self, text: str) -> list[str]:
        """The groups of this axis that ``text`` mentions (in lexicon order)."""
        return [g for g in self.groups if self.pattern(g).search(text)]


@dataclass
class Lexicon:
    axes: dict[str, Axis]
    source: str

    def groups_in(self, text: str) -> dict[str, list[str]]:
        """axis -> mentioned groups, for the axes the text mentions at all."""
        found = {}
        for name, axis in self.axes.items():
            groups = axis.groups_in(text)
            if groups:
                found[name] = groups
        return found


def lexicon_name(source: str) -> str:
    """How reports name a lexicon: "bundled" for the default, else the file's name (a report
    or model card must not carry this machine's absolute paths)."""
    return "bundled (job_templates/data/lexicon.json)" if Path(source) == DEFAULT_LEXICON \
        else Path(source).name  # fmt: skip


def load_lexicon(path: str | Path | None = None) -> Lexicon:
    """Read a lexicon file (default: the bundled one).

    Raises:
        JobError: the file is missing, not JSON, or not shaped like a lexicon.
    """
    file = Path(path) if path else DEFAULT_LEXICON
    where = str(file)
    if not file.is_file():
        raise JobError(f"lexicon file not found: {file}", "audit.lexicon")
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise JobError(f"lexicon is not valid JSON ({exc})", where) from None
    axes_raw = raw.get("axes") if isinstance(raw, dict) else None
    if not isinstance(axes_raw, dict) or not axes_raw:
        raise JobError('a lexicon needs a non-empty "axes" mapping: '
                       '{"axes": {"gender": {"groups": {"female": ["she", ...]}}}}', where)  # fmt: skip
    return Lexicon({name: _axis(name, body, where) for name, body in axes_raw.items()}, where)


def _axis(name: str, body, where: str) -> Axis:
    groups_raw = body.get("groups") if isinstance(body, dict) else None
    if not isinstance(groups_raw, dict) or len(groups_raw) < 2:
        raise JobError(f"axis {name!r} needs a 'groups' mapping with at least two groups", where)
    groups, person = {}, {}
    for group, spec in groups_raw.items():
        terms = spec if isinstance(spec, list) else (spec or {}).get("terms")
        if not terms or not all(isinstance(t, str) and t.strip() for t in terms):
            raise JobError(f"axes.{name}.groups.{group}: 'terms' must be a non-empty list of "
                           "strings", where)  # fmt: skip
        groups[group] = [t.strip().lower() for t in terms]
        person[group] = list(spec.get("person", [])) if isinstance(spec, dict) else []
    pairs = []
    for pair in body.get("swap_pairs", []):
        if not (
            isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) for p in pair)
        ):
            raise JobError(f"axes.{name}.swap_pairs: each entry must be [word, word], got {pair!r}",
                           where)  # fmt: skip
        pairs.append((pair[0].lower(), pair[1].lower()))
    return Axis(name, groups, person, pairs)
