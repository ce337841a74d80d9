"""Generated spec documents for fuzzing: valid ones and mutations of them (hypothesis)."""

from __future__ import annotations

from hypothesis import strategies as st

from genai_cloud.spec import ACCELERATORS

TEXT = st.text(max_size=40) | st.text(min_size=1000, max_size=5000) | st.sampled_from(
    ["", " ", "🙂🙂", "é" * 64, "\x00", "null", "-1", "1e309", "${{inputs.x}}", "../../etc"]
)
JUNK = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | TEXT | st.lists(
    st.integers(), max_size=3
) | st.dictionaries(st.text(max_size=8), st.integers(), max_size=3)


@st.composite
def valid_specs(draw) -> dict:
    accelerator = draw(st.sampled_from(ACCELERATORS))
    spec = {
        "name": draw(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,30}", fullmatch=True)),
        "task": draw(st.sampled_from(["finetune", "evaluate", "prune", "audit"])),
        "model": {"name_or_path": draw(st.sampled_from(["gpt2", "s3://b/m", "gs://b/m"]))},
        "data": {
            "train": draw(st.sampled_from(["s3://b/t.jsonl", "gs://b/t", "/data/t.jsonl"])),
            "format": draw(st.sampled_from(["text", "jsonl", "instruction", "chat"])),
            "max_seq_len": draw(st.integers(8, 4096)),
        },
        "training": {
            "lr": draw(st.floats(1e-6, 1e-2)),
            "batch_size": draw(st.integers(1, 64)),
            "checkpoint_every": draw(st.integers(1, 1000)),
        },
        "compute": {
            "accelerator": accelerator,
            "count": draw(st.sampled_from([1, 2, 4, 8])),
            "nodes": draw(st.integers(1, 4)),
            "spot": draw(st.booleans()),
            "max_runtime": draw(st.sampled_from([3600, "2h", "45m", "1d"])),
        },
        "labels": {"team": "ml"},
    }
    return spec


PATHS = [
    (), ("model",), ("data",), ("training",), ("compute",), ("output",), ("labels",),
    ("secrets",), ("aws",), ("gcp",), ("azure",), ("env",),
]  # fmt: skip
KEYS = ["name", "task", "lr", "batch_size", "accelerator", "count", "max_runtime", "train",
        "format", "name_or_path", "head", "role_arn", "nodes", "epochs", "bogus_key", "🙂"]


@st.composite
def mutated_specs(draw) -> dict:
    spec = draw(valid_specs())
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(PATHS))
        node = spec
        for part in path:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        action = draw(st.sampled_from(["set", "delete", "replace-section"]))
        key = draw(st.sampled_from(KEYS))
        if action == "set":
            node[key] = draw(JUNK)
        elif action == "delete" and node:
            node.pop(draw(st.sampled_from(sorted(node, key=str))), None)
        elif path:
            parent = spec
            for part in path[:-1]:
                parent = parent[part]
            parent[path[-1]] = draw(JUNK)
    return spec


documents = valid_specs() | mutated_specs()


# --------------------------------------------------------------------------------------------
# Hostile YAML text (issue 14): documents built to cost CPU or memory, or to reach the file
# system with values it cannot take. Each is a (family, text or bytes) pair.

BASE_TEXT = ("name: fuzz\nmodel: {name_or_path: gpt2}\ndata: {train: s3://b/t.jsonl}\n"
             "training: {max_steps: 5, lr: 0.001}\n")  # fmt: skip
# Where a hostile value goes: YAML flow-mapping prefixes and the closing braces they need.
SLOTS = ["labels: {k: %s}", "env: {A: %s}", "training: {seed: %s}", "compute: {count: %s}",
         "compute: {max_runtime: %s}", "budget: {max_usd: %s}", "aws: {subnets: %s}",
         "gcp: {max_wait: %s}", "evaluate: {prompts: %s}", "audit: {fail_on: {x: %s}}",
         "unknown_section: %s", "model: {name_or_path: %s}", "data: {train: %s}",
         "output: {local_dir: %s}", "distill: {teacher: %s}", "secrets: {A: %s}"]  # fmt: skip
PATH_SLOTS = ["data: {train: %s}", "model: {name_or_path: %s}", "output: {local_dir: %s}",
              "distill: {teacher: %s}", "fairness: {pairs: %s}", "audit: {lexicon: %s}",
              "data: {train: s3://b/t, eval: %s}", "evaluate: {real_images: %s}"]  # fmt: skip


def _placed(draw, value: str, slots=SLOTS) -> str:
    """BASE_TEXT with ``value`` in one slot (a later key replaces BASE_TEXT's own section)."""
    slot = draw(st.sampled_from(slots))
    text = "\n".join(line for line in BASE_TEXT.splitlines()
                     if not line.startswith(slot.split(":")[0] + ":"))  # fmt: skip
    return text + "\n" + slot % value + "\n"


@st.composite
def alias_bombs(draw) -> str:
    levels, width = draw(st.integers(2, 12)), draw(st.integers(2, 20))
    lines = [f"  a0: &a0 [{', '.join(['lol'] * width)}]"]
    for i in range(1, levels):
        lines.append(f"  a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]")
    where = draw(st.sampled_from(["labels", "env", "unknown", "evaluate"]))
    return f"{where}:\n" + "\n".join(lines) + "\n" + BASE_TEXT


@st.composite
def deep_nesting(draw) -> str:
    depth = draw(st.integers(10, 20_000))
    kind = draw(st.sampled_from(["flow-list", "flow-map", "block"]))
    if kind == "flow-list":
        value = "[" * depth + "]" * depth
    elif kind == "flow-map":
        value = "{a: " * depth + "x" + "}" * depth
    else:
        depth = min(depth, 2_000)  # indentation grows quadratically
        return BASE_TEXT + "labels:\n" + "".join(" " * (i + 1) + f"k{i}:\n"
                                                 for i in range(depth)) + " " * (depth + 1) + "v\n"
    return _placed(draw, value)


@st.composite
def recursive_aliases(draw) -> str:
    return BASE_TEXT + draw(st.sampled_from([
        "labels: &a [*a]\n", "labels: &a {b: *a}\n", "aws: &a\n  <<: *a\n",
        "env: &a {A: [1, {b: [*a]}]}\n", "compute: &a {fallback: [*a]}\n",
        "x: &a [&b [*b, *a]]\n",
    ]))  # fmt: skip


@st.composite
def huge_numbers(draw) -> str:
    kind = draw(st.sampled_from(["digits", "non-finite"]))
    if kind == "digits":
        digits = draw(st.integers(15, 20_000))
        sign = draw(st.sampled_from(["", "-", "+"]))
        value = sign + draw(st.sampled_from(["9", "1", "0x1", "0b1"])) + "9" * digits
        value = value.replace("0b19", "0b11") if value.startswith(("0b", "-0b")) else value
    else:
        value = draw(st.sampled_from([".inf", "-.inf", ".nan", ".NaN", "+.INF", "1.0e+999",
                                      "-1.0e+400", "1e999", "2.5e+308"]))  # fmt: skip
    return _placed(draw, value)


@st.composite
def bad_paths(draw) -> str:
    kind = draw(st.sampled_from(["nul", "long-name", "long-path", "multibyte", "nul-key"]))
    if kind == "nul":
        value = '"' + draw(st.sampled_from(["a\\0b", "\\0", "/data/x\\0.jsonl", "gpt2\\0"])) + '"'
    elif kind == "long-name":
        value = "a" * draw(st.integers(200, 5_000))
    elif kind == "long-path":
        value = "/" + "/".join(["d" * draw(st.integers(1, 255))] * draw(st.integers(10, 60)))
    elif kind == "multibyte":
        value = "é" * draw(st.integers(100, 300))
    else:
        return BASE_TEXT + 'env: {"A\\0B": x}\n'
    return _placed(draw, value, PATH_SLOTS + SLOTS[:2])


@st.composite
def oversized(draw) -> str:
    kind = draw(st.sampled_from(["values", "comment", "string", "prompts"]))
    n = draw(st.integers(5_000, 60_000))
    if kind == "values":
        return BASE_TEXT + "labels: {" + ", ".join(f"k{i}: v" for i in range(n)) + "}\n"
    if kind == "comment":
        return BASE_TEXT + "# " + "x" * (n * 8) + "\n"
    if kind == "string":
        return BASE_TEXT + "env: {A: " + "x" * (n * 8) + "}\n"
    return BASE_TEXT + "task: evaluate\nevaluate:\n  prompts:\n" + "".join(
        f"  - prompt {i}\n" for i in range(n))


SYNTAX = ["&", "*", "!!", "<<: ", "\t", "{", "}", "[", "]", ": ", "- ", "? ", "%YAML 1.1\n",
          "---\n", "...\n", "!!python/object/apply:os.system ['true']", "!!binary AA==",
          "!!timestamp 2001-12-14", "!!set {a, b}", "!!omap [a: 1]", "'", '"', "\\x00", "#",
          "|\n", ">\n", "\n", "&x ", "*x", "<<: *x\n", "!!float", "!!int", "~", "\u2028", "\ufeff"]


@st.composite
def mangled_text(draw) -> str:
    """A valid spec's YAML with YAML syntax inserted, lines cut or swapped."""
    import yaml

    text = yaml.safe_dump(draw(valid_specs()), allow_unicode=True)
    for _ in range(draw(st.integers(1, 8))):
        at = draw(st.integers(0, len(text)))
        action = draw(st.sampled_from(["insert", "cut", "duplicate-line"]))
        if action == "insert":
            text = text[:at] + draw(st.sampled_from(SYNTAX)) + text[at:]
        elif action == "cut":
            text = text[:at] + text[at + draw(st.integers(1, 20)):]
        else:
            lines = text.splitlines(keepends=True) or [""]
            i = draw(st.integers(0, len(lines) - 1))
            text = "".join(lines[: i + 1] + lines[i:])
    return text


@st.composite
def raw_bytes(draw) -> bytes:
    """Bytes that are not all UTF-8: BOMs, UTF-16, random binary, a spec with a bad byte."""
    kind = draw(st.sampled_from(["utf16", "random", "bad-byte", "empty"]))
    if kind == "utf16":
        return BASE_TEXT.encode("utf-16")
    if kind == "random":
        return draw(st.binary(min_size=1, max_size=2_000))
    if kind == "empty":
        return b""
    data = bytearray(BASE_TEXT.encode())
    data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0x80, 0xFF))
    return bytes(data)


HOSTILE_FAMILIES = {
    "alias-bomb": alias_bombs(), "deep-nesting": deep_nesting(),
    "recursive-alias": recursive_aliases(), "huge-number": huge_numbers(),
    "bad-path": bad_paths(), "oversized": oversized(), "mangled": mangled_text(),
    "bytes": raw_bytes(),
}  # fmt: skip
hostile_texts = st.one_of(*[strategy.map(lambda text, f=family: (f, text))
                            for family, strategy in HOSTILE_FAMILIES.items()])  # fmt: skip
