"""Which XLA jobs shard (job_templates/common/xla_spmd.py), in the main environment: the choice
the launcher makes before it starts processes and the partition of each tensor. Training under
SPMD itself is pinned in tests/xla/test_xla_spmd.py (torch_xla venv)."""

from __future__ import annotations

import pytest

from job_templates.common import memory_plan
from job_templates.common.xla_spmd import MESH_AXIS, chosen_for, partition_spec, use_spmd
from job_templates.config import Config


def _spec(model: str, strategy: str = "auto", accelerator: str = "tpu-v5e", **training) -> Config:
    return Config.wrap({"task": "finetune", "model": {"name_or_path": model},
                        "data": {"max_seq_len": 2048},
                        "training": {"strategy": strategy, "batch_size": 1, **training},
                        "compute": {"accelerator": accelerator}})  # fmt: skip


def test_fsdp_shards_ddp_never_and_auto_when_a_replica_does_not_fit_one_chip(monkeypatch):
    monkeypatch.delenv("GENAI_XLA_SPMD", raising=False)
    assert chosen_for(_spec("gpt2", "fsdp"))
    assert not chosen_for(_spec("gpt2", "ddp"))
    assert not chosen_for(_spec("gpt2"))  # 124M: a replica fits a 16 GiB v5e chip
    assert chosen_for(_spec("meta-llama/Llama-3.1-8B"))  # ~120 GiB a replica
    assert not chosen_for(_spec("meta-llama/Llama-3.1-8B", "ddp"))
    assert not chosen_for(_spec("s3://bucket/unknown-model"))  # unknown size: taken to fit
    assert not chosen_for(Config.wrap({**_spec("gpt2", "fsdp"), "task": "prune"}))


def test_auto_agrees_with_the_memory_plan():
    shape = memory_plan.shape_for("meta-llama/Llama-3.2-1B")
    work = memory_plan.Workload(batch_size=1, seq_len=512, device="xla")
    replica = memory_plan.per_device(shape, work, "xla").total
    for accelerator, chip_gib in (("tpu-v5e", 16.0), ("tpu-v5p", 95.0)):
        fits = replica <= memory_plan.usable(chip_gib * memory_plan.GIB)
        assert use_spmd("auto", accelerator, shape, work) is (not fits)
    assert not use_spmd("auto", "tpu-v5p", shape, work)  # 95 GiB holds the 1B replica


def test_the_launchers_choice_reaches_the_job(monkeypatch):
    monkeypatch.setenv("GENAI_XLA_SPMD", "1")
    assert use_spmd("auto", "tpu-v5e", None, None)


@pytest.mark.parametrize("shape, devices, want", [
    ((50257, 768), 4, (None, MESH_AXIS)),  # the vocabulary does not divide: the hidden size does
    ((1024, 768), 4, (MESH_AXIS, None)),  # both divide: the larger
    ((768,), 4, (MESH_AXIS,)),
    ((10, 6), 4, (MESH_AXIS, None)),  # none divides: the largest, padded by XLA
    ((), 4, ()),
])  # fmt: skip
def test_each_tensor_is_sharded_on_one_dimension(shape, devices, want):
    assert partition_spec(shape, devices) == want
