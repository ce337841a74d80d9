"""Hostile spec documents are SpecErrors naming their line or field, never tracebacks or hangs."""

import pytest
import yaml

from genai_cloud.errors import SpecError
from genai_cloud.loading import load_spec
from genai_cloud.serverless.core import parse_document
from genai_cloud.spec_limits import MAX_DEPTH, MAX_SPEC_BYTES, MAX_VALUES

BASE = "name: x\nmodel: {name_or_path: gpt2}\ndata: {train: s3://b/t.jsonl}\n"


def billion_laughs(levels: int = 9, width: int = 10) -> str:
    """``a0: &a0 [x, ...]``, then each level a list of ``width`` aliases of the one before."""
    lines = [f"a0: &a0 [{', '.join(['lol'] * width)}]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]")
    return "labels:\n" + "".join(f"  {line}\n" for line in lines) + BASE


def errors_of(tmp_path, text: str) -> list[str]:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    return info.value.errors


def test_an_alias_bomb_stops_at_the_line_that_passes_the_limit(tmp_path):
    # 10^9 values if expanded; the aliases of a2 (1,111 values each) on line 5 pass 5,000.
    (error,) = errors_of(tmp_path, billion_laughs())
    assert "/spec.yaml:5: the alias *a2 takes the document past 5,000 values" in error, error


def test_a_long_flat_document_stops_at_the_limit(tmp_path):
    text = BASE + "labels: {" + ", ".join(f"k{i}: v" for i in range(MAX_VALUES)) + "}\n"
    (error,) = errors_of(tmp_path, text)
    assert "/spec.yaml:4: this value takes the document past 5,000 values" in error, error


def test_aliases_within_the_limit_still_load(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(BASE + "labels: {team: &v ml}\nenv: {TEAM: *v}\n")
    assert load_spec(path).env == {"TEAM": "ml"}


@pytest.mark.parametrize("nesting", ["flow", "block"])
def test_deep_nesting_names_the_line(tmp_path, nesting):
    if nesting == "flow":
        text = BASE + "labels: " + "[" * 1000 + "]" * 1000 + "\n"
    else:
        text = BASE + "".join("  " * i + f"k{i}:\n" for i in range(200)) + "  " * 200 + "v\n"
    (error,) = errors_of(tmp_path, text)
    assert f"/spec.yaml:{4 if nesting == 'flow' else 35}: nested more than {MAX_DEPTH} levels " \
        "deep" in error, error


def test_aliases_that_expand_past_the_depth_limit_are_refused(tmp_path):
    text = "a0: &a0 " + "[" * 20 + "]" * 20 + "\n" + "a1: &a1 " + "[" * 20 + "*a0" + "]" * 20
    (error,) = errors_of(tmp_path, text + "\n" + BASE)
    assert "/spec.yaml:2: the alias *a0 expands to values nested more than" in error, error


@pytest.mark.parametrize("text, line", [
    ("labels: &a [*a]\n", 4),
    ("labels: &a {b: *a}\n", 4),
    ("aws: &a\n  <<: *a\n", 5),
])  # fmt: skip
def test_a_recursive_alias_is_refused(tmp_path, text, line):
    (error,) = errors_of(tmp_path, BASE + text)
    assert f"/spec.yaml:{line}: the alias *a refers to a value that contains it" in error, error


@pytest.mark.parametrize("field, value", [
    ("compute: {max_runtime: .inf}", "inf"), ("compute: {max_runtime: -.inf}", "-inf"),
    ("training: {lr: .nan}", "nan"), ("training: {lr: 1.0e+999}", "inf"),
    ("budget: {max_usd: .Inf}", "inf"),
])  # fmt: skip
def test_non_finite_numbers_name_their_field_and_line(tmp_path, field, value):
    (error,) = errors_of(tmp_path, BASE + field + "\n")
    section, key = field.split(": {")[0], field.split("{")[1].split(":")[0]
    assert error == f"{section}.{key} (line 4): {value} is not a finite number"


def test_a_non_finite_duration_given_in_python_is_a_validation_error():
    spec = {"name": "x", "model": {"name_or_path": "gpt2"}, "data": {"train": "s3://b/t"},
            "compute": {"max_runtime": float("inf")}}  # fmt: skip
    with pytest.raises(SpecError) as info:
        load_spec(spec)
    assert info.value.errors == ["compute.max_runtime: inf is not a finite number"]


def test_an_integer_of_5000_digits_names_its_line(tmp_path):
    (error,) = errors_of(tmp_path, BASE + "training:\n  seed: " + "9" * 5000 + "\n")
    assert error.endswith("/spec.yaml:5: an integer of 5000 digits; numbers in a spec have at "
                          "most 20"), error


def test_a_huge_integer_in_a_mapping_names_its_field():
    spec = {"name": "x", "model": {"name_or_path": "gpt2"}, "data": {"train": "s3://b/t"},
            "training": {"seed": 10**5000}}  # fmt: skip
    with pytest.raises(SpecError) as info:
        load_spec(spec)
    assert info.value.errors == ["training.seed: an integer over 20 digits"]


@pytest.mark.parametrize("value, problem", [
    ("a" * 300, "a path with a 300-byte name in it; file systems allow at most 255 bytes"),
    ("/" + "/".join(["d" * 200] * 25), "a path of 5025 bytes; at most 4096"),
    ("é" * 130, "a path with a 260-byte name in it"),
])  # fmt: skip
@pytest.mark.parametrize("field", ["data.train", "model.name_or_path", "output.local_dir"])
def test_over_long_paths_name_their_field_and_line(tmp_path, field, value, problem):
    section, key = field.split(".")
    spec = {"name": "x", "model": {"name_or_path": "gpt2"}, "data": {"train": "s3://b/t"}}
    spec[section] = {**spec.get(section, {}), key: value}
    (error,) = errors_of(tmp_path, yaml.safe_dump(spec, allow_unicode=True, width=10**6))
    line = yaml.safe_dump(spec, allow_unicode=True, width=10**6).splitlines().index(
        f"{section}:") + 2  # the key sits on the line after its section
    assert error.startswith(f"{field} (line {line}): {problem}"), error


@pytest.mark.parametrize("field", ["data.train", "model.name_or_path"])
def test_a_long_path_in_a_mapping_names_its_field(field):
    section, key = field.split(".")
    spec = {"name": "x", "model": {"name_or_path": "gpt2"}, "data": {"train": "s3://b/t"}}
    spec[section] = {**spec[section], key: "x" * 300}
    with pytest.raises(SpecError) as info:
        load_spec(spec)
    assert info.value.errors == [(f"{field}: a path with a 300-byte name in it; file systems "
                                 "allow at most 255 bytes per name")]  # fmt: skip


@pytest.mark.parametrize("source", ["yaml", "dict"])
def test_a_nul_byte_names_its_field(tmp_path, source):
    message = "contains a NUL byte (\\0), which no path, name or environment variable can hold"
    if source == "yaml":
        errors = errors_of(tmp_path, BASE.replace("s3://b/t.jsonl", '"/data/t\\0.jsonl"'))
        assert errors == [f"data.train (line 3): {message}"]
    else:
        spec = {"name": "x", "model": {"name_or_path": "gp\x00t2"}, "data": {"train": "a\x00"},
                "env": {"A": "\x00"}}  # fmt: skip
        with pytest.raises(SpecError) as info:
            load_spec(spec)
        assert info.value.errors == [f"{f}: {message}"
                                     for f in ("model.name_or_path", "data.train", "env.A")]


def test_an_oversized_file_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text(BASE + "# " + "x" * MAX_SPEC_BYTES + "\n")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert f"a spec file may be at most {MAX_SPEC_BYTES:,} bytes" in info.value.errors[0]


@pytest.mark.parametrize("name, reason", [("a" * 300 + ".yaml", "File name too long"),
                                          ("sp\x00ec.yaml", "embedded null byte")])
def test_an_unopenable_spec_path_is_a_spec_error(tmp_path, name, reason):
    with pytest.raises(SpecError) as info:
        load_spec(str(tmp_path / name))
    assert "cannot open spec file" in info.value.errors[0] and reason in info.value.errors[0]


def test_too_many_values_in_a_mapping_are_refused():
    spec = {"name": "x", "model": {"name_or_path": "gpt2"}, "data": {"train": "s3://b/t"},
            "labels": {f"k{i}": "v" for i in range(MAX_VALUES + 10)}}  # fmt: skip
    with pytest.raises(SpecError) as info:
        load_spec(spec)
    assert info.value.errors == [(f"(top level): more than {MAX_VALUES:,} values; a spec holds a "
                                 "few hundred")]  # fmt: skip


def test_the_serverless_parser_has_the_same_limits():
    with pytest.raises(SpecError) as info:
        parse_document(billion_laughs(), "s3://b/specs/x.yaml")
    assert info.value.errors[0].startswith("s3://b/specs/x.yaml:5: the alias *a2 takes the")
    with pytest.raises(SpecError) as info:
        parse_document('{"spec": ' + "[" * 100_000 + "]" * 100_000 + "}", "http")
    assert "nested more than 32 levels deep" in info.value.errors[0]


def test_the_cli_exits_2_on_an_alias_bomb(tmp_path, run_cli):
    path = tmp_path / "spec.yaml"
    path.write_text(billion_laughs())
    code, out, err = run_cli(["validate", str(path)])
    assert code == 2 and "the document past 5,000 values" in err + out
    assert "Traceback" not in err


def test_a_control_character_names_its_line(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_bytes(BASE.encode() + b"labels: {a: b\x18}\n")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert info.value.errors[0].endswith("/spec.yaml:4: not valid YAML/JSON (character #x0018 is "
                                         "not allowed in YAML; remove it)")  # fmt: skip
