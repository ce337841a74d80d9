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
