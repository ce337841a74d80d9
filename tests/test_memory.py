"""The memory plan before launch: validate / render / estimate / submit refuse a spec whose model
fits its accelerators under no strategy, with the figures and what would fit."""

from __future__ import annotations

import json

import pytest
import yaml

from genai_cloud import memory
from genai_cloud.errors import SpecError
from genai_cloud.loading import load_spec


def _spec(model: str = "meta-llama/Llama-3.1-8B", accelerator: str = "A10G", count: int = 1,
          nodes: int = 1, task: str = "finetune", **training) -> dict:  # fmt: skip
    spec = {"name": "big", "task": task, "model": {"name_or_path": model},
            "data": {"train": "s3://bucket/train.jsonl", "max_seq_len": 2048},
            "training": {"batch_size": 1, **training},
            "compute": {"accelerator": accelerator, "count": count, "nodes": nodes}}  # fmt: skip
    if task == "distill":
        spec["distill"] = {"teacher": model}
    return spec


def test_8b_full_finetune_on_one_a10g_is_refused_with_figures_and_what_fits():
    with pytest.raises(SpecError) as info:
        memory.check(load_spec(_spec()))
    message = str(info.value)
    assert "compute: 8.03B full fine-tune on 1 x A10G needs ~" in message
    assert "weights 29.9 GiB, gradients 29.9 GiB, optimizer 59.8 GiB" in message  # 16 B/param
    assert "fits 8 x A100 with FSDP" in message
    assert "LoRA (model.lora) with model.dtype: bfloat16" in message
    assert "the published llama-3.1-8b configuration" in message


def test_auto_picks_ddp_for_a_small_model_and_fsdp_for_an_8b_one():
    small = memory.check(load_spec(_spec(model="gpt2", accelerator="H100", count=8)))
    assert small.strategy == "ddp" and "DDP needs" in small.summary()
    big = memory.check(load_spec(_spec(accelerator="A100-80GB", count=8)))
    assert big.strategy == "fsdp"
    plan = big.plans["fsdp"]
    assert plan.weights == pytest.approx(8_030_261_248 * 4 / 8, rel=1e-3)
    assert plan.total < 0.92 * 79.2 * 2**30 < big.plans["ddp"].total


def test_forced_ddp_that_cannot_fit_points_to_fsdp():
    with pytest.raises(SpecError, match=r"training.strategy: fsdp \(or auto\) on 8 x A100-80GB"):
        memory.check(load_spec(_spec(accelerator="A100-80GB", count=8, strategy="ddp")))


def test_a_70b_spec_is_pointed_to_more_nodes_and_a_smaller_micro_batch():
    spec = _spec(model="meta-llama/Llama-3.1-70B", accelerator="A100", count=8, batch_size=16)
    spec["data"]["max_seq_len"] = 1024
    with pytest.raises(SpecError) as info:
        memory.check(load_spec(spec))
    # 70.6B x 16 bytes / 16 GPUs = 66 GiB of states per GPU: only H200s hold that, 2 nodes of 8.
    assert "weights 32.9 GiB" in str(info.value)  # 70.6B x 4 bytes / 8 GPUs
    assert ("training.batch_size: 1 with training.gradient_checkpointing: true (and "
            "training.grad_accum for the global batch) fits 2 nodes x 8 x H200 with FSDP"
            in str(info.value))  # fmt: skip


def test_a_tpu_spec_that_fits_no_chip_even_sharded_is_refused_with_the_slice_that_fits():
    with pytest.raises(SpecError) as info:
        memory.check(load_spec(_spec(accelerator="tpu-v5e", count=4)))
    message = str(info.value)
    # 8.03B x 16 bytes over 4 chips: 7.5 GiB of fp32 weights per chip, plus activations.
    assert "on 4 x tpu-v5e needs ~" in message and "weights 7.5 GiB, gradients 7.5 GiB" in message
    assert "per chip even with XLA SPMD sharding, more than its 14.7 GiB usable" in message
    assert ("a 64-chip tpu-v5e slice (compute.count: 64) with XLA SPMD sharding and "
            "training.gradient_checkpointing: true" in message)  # fmt: skip
    assert "not supported" not in message


def test_auto_on_tpu_keeps_a_replica_per_chip_when_it_fits_and_shards_when_it_does_not():
    small = memory.check(load_spec(_spec(model="gpt2", accelerator="tpu-v5e", count=4)))
    assert small.strategy == "xla" and "one replica per TPU chip needs" in small.summary()
    big = memory.check(load_spec(_spec(accelerator="tpu-v5e", count=64,
                                       gradient_checkpointing=True)))  # fmt: skip
    assert big.strategy == "xla-spmd" and "XLA SPMD sharding needs" in big.summary()
    plan = big.plans["xla-spmd"]
    assert plan.weights == pytest.approx(8_030_261_248 * 4 / 64, rel=1e-3)
    assert plan.optimizer == pytest.approx(2 * plan.weights)
    assert plan.total <= 0.92 * 16.0 * 2**30 < big.plans["xla"].total


def test_fsdp_on_tpu_plans_sharding_only_and_ddp_a_replica_only():
    sharded = memory.check(load_spec(_spec(model="gpt2", accelerator="tpu-v5e", count=4,
                                           strategy="fsdp")))  # fmt: skip
    assert list(sharded.plans) == ["xla-spmd"] and sharded.strategy == "xla-spmd"
    with pytest.raises(SpecError) as info:  # 1.24B x 16 bytes: no v5e chip holds a replica
        memory.check(load_spec(_spec(model="meta-llama/Llama-3.2-1B", accelerator="tpu-v5e",
                                     count=8, strategy="ddp", gradient_checkpointing=True)))
    assert "even with one replica per TPU chip" in str(info.value)
    assert "training.strategy: fsdp (or auto): XLA SPMD sharding on 8 x tpu-v5e" in str(info.value)


def test_distillation_counts_a_replicated_teacher():
    report = memory.check(load_spec(_spec(model="gpt2", accelerator="A100-80GB", task="distill")))
    plan = report.plans[report.strategy]
    assert plan.teacher > 124e6 * 2  # the bf16 teacher whole on the GPU, plus its logits
    assert "the teacher is replicated on every device" in plan.notes
    assert report.shape.layers == 6  # alternate-layers student: half of GPT-2's 12


def test_not_checked_on_cpu_or_for_an_unknown_model(tiny_gpt2):
    assert memory.check(load_spec(_spec(accelerator="cpu"))) is None
    assert memory.check(load_spec(_spec(model="s3://bucket/some-model"))) is None
    local = memory.check(load_spec(_spec(model=str(tiny_gpt2), accelerator="T4")))
    assert local.strategy == "single" and local.shape.source.endswith("config.json")


def test_validate_prints_the_plan_and_refuses_exit_2(tmp_path, run_cli):
    ok, bad = tmp_path / "ok.yaml", tmp_path / "bad.yaml"
    ok.write_text(yaml.safe_dump(_spec(accelerator="A100-80GB", count=8)))
    bad.write_text(yaml.safe_dump(_spec()))
    code, out, _ = run_cli(["validate", str(ok)])
    assert code == 0 and "Memory: 8.03B-parameter model" in out and "FSDP needs" in out
    code, out, err = run_cli(["validate", str(bad)])
    assert code == 2 and "needs ~" in err and "Traceback" not in err
    code, _, err = run_cli(["render", str(bad), "-p", "sagemaker"])
    assert code == 2 and "fits 8 x A100 with FSDP" in err
    code, _, err = run_cli(["estimate", str(bad)])
    assert code == 2 and "fits 8 x A100 with FSDP" in err


def test_strategy_fields_travel_in_the_spec_and_fsdp_is_for_finetune_and_distill():
    spec = load_spec(_spec(accelerator="A100-80GB", count=8, strategy="fsdp",
                           fsdp={"sharding": "hybrid", "cpu_offload": True}))  # fmt: skip
    training = json.loads(spec.to_json())["training"]
    assert training["strategy"] == "fsdp"
    assert training["fsdp"] == {"sharding": "hybrid", "cpu_offload": True, "mixed_precision": True}
    with pytest.raises(SpecError, match="training.strategy.*fsdp trains tasks 'finetune' and "
                                        "'distill', not 'prune'"):  # fmt: skip
        spec = _spec(task="prune", strategy="fsdp")
        load_spec(spec)
