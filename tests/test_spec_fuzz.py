"""Fuzzed spec documents never produce a traceback; every error names a field path."""

import re

import yaml
from fuzz_specs import documents, hostile_texts
from hypothesis import HealthCheck, given, settings

from genai_cloud.errors import GenaiCloudError, SpecError
from genai_cloud.loading import load_spec
from genai_cloud.spec import JobSpec

FIELDS = tuple(JobSpec.model_fields)
FIELD_AND_LINE = re.compile(r"^(\(top level\): |.+? \(line \d+\): )")


def names_a_field(line: str, doc: dict) -> bool:
    """An error line starts with a field path rooted at a top-level key, or '(top level)'."""
    roots = FIELDS + tuple(str(k) for k in doc) + ("(top level)",)
    return any(line.startswith(root) and line[len(root):len(root) + 1] in (".", " ", ":")
               for root in roots)  # fmt: skip


def check_document(doc: dict, tmp_path) -> str:
    """Load a document from a dict and from YAML text; return 'valid' or 'invalid'."""
    outcomes = []
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    for source in (doc, path):
        try:
            load_spec(source)
            outcomes.append("valid")
        except SpecError as exc:
            assert exc.errors, "a SpecError must list its problems"
            for line in exc.errors:
                assert names_a_field(line, doc) or "spec.yaml" in line, line
            outcomes.append("invalid")
    assert outcomes[0] == outcomes[1], "dict and YAML loading must agree"
    return outcomes[0]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(doc=documents)
def test_fuzzed_specs_fail_cleanly(doc, tmp_path):
    try:
        check_document(doc, tmp_path)
    except GenaiCloudError:
        raise AssertionError("only SpecError is expected from loading")


@settings(max_examples=40, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(doc=hostile_texts)
def test_hostile_yaml_is_a_spec_error_naming_its_line_or_field(doc, tmp_path):
    """Alias bombs, deep nesting, recursive aliases, huge or non-finite numbers, NUL bytes,
    over-long paths, oversized and mangled documents: valid, or SpecError lines that each name
    a field or the file's line; never another exception."""
    family, text = doc
    path = tmp_path / "spec.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
    try:
        load_spec(path)
    except SpecError as exc:
        assert exc.errors, family
        for line in exc.errors:
            assert str(path) in line or FIELD_AND_LINE.match(line), (family, line)
