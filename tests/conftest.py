"""Shared fixtures: a tiny GPT-2 built locally (no hub download) and the example corpus."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

# The tests never reach a model hub, and the jobs they start inherit this: the test command
# passes the same on a machine with or without internet (tests of the offline probe unset it).
for _name, _value in {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "MPLBACKEND": "Agg"}.items():
    os.environ.setdefault(_name, _value)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
CORPUS = EXAMPLES / "data" / "corpus.jsonl"


def _examples_module(name: str):
    spec = importlib.util.spec_from_file_location(f"_examples_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def corpus_path() -> Path:
    """``examples/data/corpus.jsonl``: ~1,000 generated training-job reports (jsonl, "text")."""
    return CORPUS


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory) -> Path:
    """A folder with a 2-layer GPT-2 (random init, ~230k params) and a byte-level BPE tokenizer
    trained on the example corpus, built the way ``examples/make_tiny_model.py`` builds the
    committed fixture. Load it with ``from_pretrained(path)``; treat it as read-only."""
    out = tmp_path_factory.mktemp("tiny-gpt2")
    return _examples_module("make_tiny_model").build(out, CORPUS)


@pytest.fixture(scope="session")
def make_spec(tiny_gpt2, corpus_path):
    """Build a finetune spec dict for the tiny model; keyword sections override the defaults.

    ``make_spec(training={"max_steps": 5})`` merges into the ``training`` section.
    """

    def build(**sections) -> dict:
        spec = {
            "name": "tiny-finetune",
            "task": "finetune",
            "model": {"name_or_path": str(tiny_gpt2)},
            "data": {"train": str(corpus_path), "format": "jsonl", "max_seq_len": 64,
                     "eval_fraction": 0.05},
            "training": {"max_steps": 10, "batch_size": 8, "lr": 3e-3, "log_every": 5,
                         "seed": 7, "warmup_steps": 2},
        }  # fmt: skip
        for key, value in sections.items():
            if isinstance(value, dict) and isinstance(spec.get(key), dict):
                spec[key] = {**spec[key], **value}
            else:
                spec[key] = value
        return spec

    return build


# Link-local metadata endpoints (AWS / Azure / GCP instance credentials). A test that reaches one
# is a test with an unmocked credential chain: it fails at once instead of probing a real cloud.
_METADATA_HOSTS = {"169.254.169.254", "169.254.170.2", "metadata.google.internal", "fd00:ec2::254"}


@pytest.fixture(autouse=True)
def _no_cloud_metadata(monkeypatch):
    import socket

    real_connect = socket.socket.connect

    def connect(self, address):
        if isinstance(address, tuple) and address[0] in _METADATA_HOSTS:
            raise OSError(f"test tried to reach the cloud metadata endpoint {address[0]}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def run_cli(capsys):
    """Run the CLI in-process: ``run_cli(args) -> (exit code, stdout, stderr)``."""
    from genai_cloud.cli import main

    def invoke(args):
        with pytest.raises(SystemExit) as info:
            main(args)
            raise SystemExit(0)
        out = capsys.readouterr()
        return info.value.code, out.out, out.err

    return invoke
