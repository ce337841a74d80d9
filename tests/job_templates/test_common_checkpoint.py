"""Atomic checkpoints and RNG capture (job_templates/common/checkpoint.py)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from job_templates.common import checkpoint

torch = pytest.importorskip("torch")


def _state(step: int) -> dict:
    return {"model": {"w": torch.full((2, 2), float(step))}, "loop": {"step": step},
            "rng": [checkpoint.rng_state()]}  # fmt: skip


def test_keeps_the_newest_k_and_ignores_partial_writes(tmp_path):
    for step in (5, 10, 15):
        checkpoint.save(tmp_path, step, _state(step), keep=2)
    assert [s for s, _ in checkpoint.list_checkpoints(tmp_path)] == [10, 15]
    # A writer killed mid-write leaves a temporary folder: never listed, removed on restart.
    partial = tmp_path / ".tmp-step-00000020-999"
    partial.mkdir()
    (partial / checkpoint.STATE_FILE).write_bytes(b"truncated")
    (tmp_path / "step-00000025").mkdir()  # a folder without its state file is not complete
    assert checkpoint.latest(tmp_path).name == "step-00000015"
    checkpoint.remove_partials(tmp_path)
    assert not partial.exists()
    loaded = checkpoint.load(checkpoint.latest(tmp_path))
    assert torch.equal(loaded["model"]["w"], torch.full((2, 2), 15.0))


def test_saving_the_same_step_again_replaces_it(tmp_path):
    checkpoint.save(tmp_path, 5, _state(1), keep=3)
    checkpoint.save(tmp_path, 5, _state(2), keep=3)
    assert len(checkpoint.list_checkpoints(tmp_path)) == 1
    assert checkpoint.load(checkpoint.latest(tmp_path))["loop"]["step"] == 2


def test_rng_state_round_trips_through_a_weights_only_load(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    checkpoint.save(tmp_path, 1, {"rng": [checkpoint.rng_state()]}, keep=1)
    expected = (random.random(), np.random.rand(), torch.rand(3))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    checkpoint.set_rng_state(checkpoint.load(checkpoint.latest(tmp_path))["rng"][0])
    again = (random.random(), np.random.rand(), torch.rand(3))
    assert again[0] == expected[0] and again[1] == expected[1]
    assert torch.equal(again[2], expected[2])
