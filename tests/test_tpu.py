"""TPU slices (genai_cloud/tpu.py): shapes per generation, and one answer for count / nodes /
topology, from the spec through the Vertex render and the bill."""

from __future__ import annotations

import pytest

from genai_cloud import tpu
from genai_cloud.cost import quote
from genai_cloud.errors import SpecError
from genai_cloud.plan import make_plan
from genai_cloud.providers import get_provider
from genai_cloud.loading import load_spec

BASE = {"name": "demo", "model": {"name_or_path": "gpt2"},
        "data": {"train": "gs://bkt/data/train.jsonl"}, "output": {"uri": "gs://bkt/runs"}}  # fmt: skip
V5E_SHAPES = ["1x1", "2x2", "2x4", "4x4", "4x8", "8x8", "8x16", "16x16"]


def spec(compute: dict, gcp: dict | None = None):
    return load_spec(BASE | {"compute": compute, "gcp": gcp or {}})


def pool(compute: dict, gcp: dict | None = None) -> dict:
    job = get_provider("vertex").render(make_plan(spec(compute, gcp), "vertex"))
    (only,) = job["job_spec"]["worker_pool_specs"]
    return only


@pytest.mark.parametrize("generation", ["tpu-v5e", "tpu-v6e"])
def test_2d_generations_sell_these_shapes_only(generation):
    gen = tpu.generation(generation)
    assert [s for s in V5E_SHAPES if tpu.is_shape(gen, s)] == V5E_SHAPES
    for wrong in ("4x3", "3x3", "2x8", "1x2", "32x32", "2x2x1", "4x4x4", "4 x 4", "0x4", "x4"):
        assert not tpu.is_shape(gen, wrong), wrong


@pytest.mark.parametrize("generation, largest", [("tpu-v4", "16x16x16"), ("tpu-v5p", "16x20x28")])
def test_3d_generations(generation, largest):
    gen = tpu.generation(generation)
    for good in ("2x2x1", "1x2x2", "2x2x2", "2x2x4", "2x4x4", "4x4x4", "4x4x8", "8x8x12", largest):
        assert tpu.is_shape(gen, good), good
    for wrong in ("2x2", "3x4x4", "2x2x3", "2x4x8", "6x6x6", "4x4x6", "32x32x32"):
        assert not tpu.is_shape(gen, wrong), wrong


@pytest.mark.parametrize("compute, gcp, machine, topology, hosts", [
    ({"accelerator": "tpu-v5e", "count": 16}, {}, "ct5lp-hightpu-4t", "4x4", 4),
    ({"accelerator": "tpu-v5e", "count": 64}, {}, "ct5lp-hightpu-4t", "8x8", 16),
    ({"accelerator": "tpu-v5e"}, {"tpu_topology": "16x16"}, "ct5lp-hightpu-4t", "16x16", 64),
    ({"accelerator": "tpu-v5e", "count": 4}, {"tpu_topology": "4x8"}, "ct5lp-hightpu-4t", "4x8", 8),
    ({"accelerator": "tpu-v5e"}, {"tpu_topology": "2x4"}, "ct5lp-hightpu-8t", "2x4", 1),
    ({"accelerator": "tpu-v5e", "count": 8}, {}, "ct5lp-hightpu-8t", "2x4", 1),
    ({"accelerator": "tpu-v6e", "count": 32}, {}, "ct6e-standard-4t", "4x8", 8),
    ({"accelerator": "tpu-v5p", "count": 16}, {}, "ct5p-hightpu-4t", "2x2x4", 4),
    ({"accelerator": "tpu-v5p"}, {"tpu_topology": "4x4x8"}, "ct5p-hightpu-4t", "4x4x8", 32),
])  # fmt: skip
def test_a_slice_renders_its_host_machine_topology_and_bills_every_host(compute, gcp, machine,
                                                                         topology, hosts):  # fmt: skip
    rendered = pool(compute, gcp)
    assert rendered["machine_spec"]["machine_type"] == machine
    assert rendered["machine_spec"]["tpu_topology"] == topology
    assert rendered["replica_count"] == 1  # one replica per slice, however many hosts
    assert rendered["container_spec"]["command"][2].endswith("python -m job_templates.common.xla")
    assert quote(make_plan(spec(compute, gcp), "vertex")).machines == hosts


def test_count_and_topology_say_the_same_thing():
    assert spec({"accelerator": "tpu-v5e"}, {"tpu_topology": "4x4"}).compute.count == 16
    assert spec({"accelerator": "tpu-v5e", "count": 16}, {"tpu_topology": "4x4"}).compute.count == 16
    assert spec({"accelerator": "tpu-v5e", "count": 16}).gcp.tpu_topology is None


def _problems(compute: dict, gcp: dict | None = None) -> str:
    with pytest.raises(SpecError) as err:
        spec(compute, gcp)
    return str(err.value)


def test_nodes_are_refused_with_the_count_that_asks_for_those_hosts():
    message = _problems({"accelerator": "tpu-v5e", "nodes": 4})
    assert "compute.nodes" in message and "compute.count: 16 is a 4x4 slice on 4 hosts" in message
    assert "use compute.nodes" not in message and "gcp.tpu_topology (1x1 2x2" in message


def test_a_count_no_slice_has_names_the_counts_and_shapes_sold():
    message = _problems({"accelerator": "tpu-v5e", "count": 12})
    assert "compute.count: no tpu-v5e slice has 12 chips" in message
    assert "compute.count (1, 4, 8, 16, 32, 64)" in message and "16x16" in message
    assert "compute.nodes" not in message


def test_a_shape_the_generation_does_not_sell_is_refused():
    message = _problems({"accelerator": "tpu-v5e"}, {"tpu_topology": "4x3"})
    assert "gcp.tpu_topology: '4x3' is not a tpu-v5e slice" in message
    message = _problems({"accelerator": "tpu-v4"}, {"tpu_topology": "4x4"})
    assert "'4x4' is not a tpu-v4 slice" in message and "multiple of 4" in message


def test_count_and_topology_that_disagree_are_refused():
    message = _problems({"accelerator": "tpu-v5e", "count": 8}, {"tpu_topology": "4x4"})
    assert "compute.count: 8 chips, but gcp.tpu_topology 4x4 has 16" in message


def test_topology_without_a_tpu_is_refused():
    assert "gcp.tpu_topology: only applies to TPU accelerators" in _problems(
        {"accelerator": "A100"}, {"tpu_topology": "2x2"})  # fmt: skip


def test_every_problem_at_once():
    message = _problems({"accelerator": "tpu-v5e", "nodes": 2}, {"tpu_topology": "3x3"})
    assert "compute.nodes" in message and "gcp.tpu_topology: '3x3'" in message


def test_fsdp_on_a_tpu_renders_the_same_one_replica_slice_and_launcher():
    """SPMD runs one process per host; the launcher (job_templates.common.xla) starts it there,
    so the Vertex pool is the slice's, as for a replica per chip: one replica, every host."""
    compute = {"accelerator": "tpu-v5e", "count": 16}
    for strategy in ("fsdp", "ddp", "auto"):
        job = get_provider("vertex").render(make_plan(load_spec(
            BASE | {"compute": compute, "training": {"strategy": strategy}}), "vertex"))  # fmt: skip
        (only,) = job["job_spec"]["worker_pool_specs"]
        assert only["replica_count"] == 1
        assert only["machine_spec"]["machine_type"] == "ct5lp-hightpu-4t"
        assert only["machine_spec"]["tpu_topology"] == "4x4"
        assert only["container_spec"]["command"][2].endswith("python -m job_templates.common.xla")


def test_gpu_only_fsdp_options_are_refused_on_a_tpu():
    with pytest.raises(SpecError) as err:
        load_spec(BASE | {"compute": {"accelerator": "tpu-v5e", "count": 8},
                          "training": {"strategy": "fsdp",
                                       "fsdp": {"sharding": "hybrid", "cpu_offload": True}}})
    message = str(err.value)
    assert "training.fsdp.sharding: hybrid sharding is FSDP2's, on GPUs" in message
    assert "training.fsdp.cpu_offload: FSDP2's host offload is for GPUs" in message
