"""Fixtures of the multi-process training tests (DDP, FSDP): models and data small enough to
run two gloo processes on a CPU, with nothing that lets two ranks' curves part by chance."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def no_dropout_gpt2(tiny_gpt2, tmp_path_factory) -> Path:
    """The tiny GPT-2 with dropout off: each rank draws its own dropout masks, which would make
    the curves differ for a reason that has nothing to do with the gradient arithmetic."""
    out = tmp_path_factory.mktemp("gpt2-no-dropout")
    for file in Path(tiny_gpt2).iterdir():
        shutil.copy(file, out / file.name)
    config = json.loads((out / "config.json").read_text())
    config.update(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, summary_first_dropout=0.0)
    (out / "config.json").write_text(json.dumps(config))
    return out


@pytest.fixture(scope="session")
def small_corpus(corpus_path, tmp_path_factory) -> Path:
    """The first 200 documents: tokenizing all 1,000 twice over costs more than the training."""
    path = tmp_path_factory.mktemp("corpus") / "train.jsonl"
    path.write_text("".join(corpus_path.read_text().splitlines(keepends=True)[:200]))
    return path
