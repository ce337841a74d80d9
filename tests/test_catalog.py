"""The instance catalogs: schema of every data file, SageMaker's choices, overrides and errors."""

from __future__ import annotations

import json
import re

import pytest

from genai_cloud import catalog as cat
from genai_cloud.catalog import CatalogError, find_instance, instance_for, resolve_instance
from genai_cloud.errors import GenaiCloudError
from genai_cloud.spec import ACCELERATORS, ComputeSpec

CATALOG_FILES = sorted(cat.DATA_DIR.glob("*.json"))
ROW_KEYS = {"type", "accelerator", "count", "gpu_memory_gib", "vcpus", "memory_gib", "price",
            "spot_price", "extra"}  # fmt: skip


@pytest.mark.parametrize("path", CATALOG_FILES, ids=lambda p: p.stem)
def test_catalog_file_schema(path):
    data = json.loads(path.read_text())
    assert data["provider"] == path.stem
    assert data["source"] and re.fullmatch(r"\d{4}-\d{2}-\d{2}", data["date"])
    assert data["currency"] == "USD"
    types = [row["type"] for row in data["instances"]]
    assert len(types) == len(set(types)), "duplicate instance types"
    for row in data["instances"]:
        assert set(row) <= ROW_KEYS and {"type", "accelerator", "count"} <= set(row), row["type"]
        assert (row["count"] == 0) == (row["accelerator"] == "cpu"), row["type"]
        assert data["default_region"] in row["price"], f"{row['type']}: no default-region price"
        for region, price in row["price"].items():
            assert 0 < price < 500, (row["type"], region)
            spot = row.get("spot_price", {}).get(region)
            assert spot is None or 0 < spot < price, (row["type"], region)


@pytest.mark.parametrize("path", CATALOG_FILES, ids=lambda p: p.stem)
def test_catalog_accelerators_are_ones_a_spec_can_name(path):
    # A row whose accelerator is not in spec.ACCELERATORS can never be chosen by instance_for.
    rows = json.loads(path.read_text())["instances"]
    unknown = sorted({r["accelerator"] for r in rows} - set(ACCELERATORS))
    assert unknown == [], f"not in genai_cloud.spec.ACCELERATORS: {unknown}"


def test_sagemaker_types_are_real_sagemaker_training_types():
    import botocore.session

    model = botocore.session.get_session().get_service_model("sagemaker")
    shape = model.operation_model("CreateTrainingJob").input_shape
    valid = set(shape.members["ResourceConfig"].members["InstanceType"].enum)
    assert {i.type for i in cat.instances("sagemaker")} <= valid


@pytest.mark.parametrize(
    "accelerator, count, expected",
    [
        ("cpu", 1, "ml.m5.xlarge"),
        ("T4", 1, "ml.g4dn.xlarge"),
        ("T4", 4, "ml.g4dn.12xlarge"),
        ("A10G", 1, "ml.g5.xlarge"),
        ("A10G", 4, "ml.g5.12xlarge"),
        ("A10G", 8, "ml.g5.48xlarge"),
        ("L4", 1, "ml.g6.xlarge"),
        ("L4", 8, "ml.g6.48xlarge"),
        ("V100", 1, "ml.p3.2xlarge"),
        ("A100", 8, "ml.p4d.24xlarge"),
        ("A100-80GB", 8, "ml.p4de.24xlarge"),
        ("H100", 8, "ml.p5.48xlarge"),
        ("H200", 8, "ml.p5e.48xlarge"),
        ("T4", 2, "ml.g4dn.12xlarge"),  # no 2-GPU T4 type: the next bigger one
        ("H100", 1, "ml.p5.48xlarge"),
    ],
)  # fmt: skip
def test_sagemaker_instance_for(accelerator, count, expected):
    assert instance_for("sagemaker", accelerator, count).type == expected


def test_gpu_facts_of_the_big_types():
    p4d, p4de, p5 = (find_instance("sagemaker", t) for t in
                     ("ml.p4d.24xlarge", "ml.p4de.24xlarge", "ml.p5.48xlarge"))  # fmt: skip
    assert (p4d.count, p4d.gpu_memory_gib) == (8, 40)
    assert (p4de.count, p4de.gpu_memory_gib) == (8, 80)
    assert (p5.count, p5.gpu_memory_gib, p5.vcpus) == (8, 80, 192)


def test_prices_and_spot_estimates():
    g5 = find_instance("sagemaker", "ml.g5.xlarge")
    assert g5.hourly() == g5.price["us-east-1"]
    assert g5.hourly(spot=True) < g5.hourly()
    assert g5.hourly("eu-west-1") > g5.hourly("us-east-1")
    assert g5.hourly("ap-south-1") is None  # unknown region: no made-up number


def test_too_many_gpus_per_node_says_to_use_nodes():
    with pytest.raises(CatalogError, match="compute.nodes"):
        instance_for("sagemaker", "H100", 16)


def test_accelerator_sagemaker_lacks():
    with pytest.raises(CatalogError) as info:
        instance_for("sagemaker", "tpu-v5e", 1)
    assert isinstance(info.value, GenaiCloudError) and "A10G" in info.value.message


def test_override_is_validated_against_the_accelerator():
    ok = resolve_instance(
        "sagemaker", ComputeSpec(accelerator="A10G", instance_type="ml.g5.24xlarge")
    )
    assert ok.count == 4
    with pytest.raises(CatalogError, match="carries T4"):
        resolve_instance(
            "sagemaker", ComputeSpec(accelerator="A10G", instance_type="ml.g4dn.xlarge")
        )
    with pytest.raises(CatalogError, match="ml.g5.xlarge"):
        resolve_instance("sagemaker", ComputeSpec(accelerator="A10G", instance_type="ml.g5.mega"))


def test_unknown_provider_catalog():
    with pytest.raises(CatalogError, match="no catalog"):
        cat.catalog("nimbus")


# ---- a machine other than the one asked for is said, not chosen silently ----------------------


def _spec(**compute):
    from genai_cloud.loading import load_spec

    return load_spec({"name": "demo", "model": {"name_or_path": "gpt2"},
                      "data": {"train": "s3://b/train.jsonl"}, "compute": compute})  # fmt: skip


def test_a_count_rounded_up_is_a_warning_naming_what_is_paid_and_run():
    spec = _spec(accelerator="H100", count=3)
    notes = [n for n in spec.warnings() if n.startswith("compute.count")]
    assert len(notes) == 1
    note = notes[0]
    for provider, machine in (("sagemaker", "ml.p5.48xlarge"), ("vertex", "a3-highgpu-8g"),
                              ("azureml", "Standard_ND96isr_H100_v5")):  # fmt: skip
        assert f"{provider} ({machine})" in note
        assert resolve_instance(provider, spec.compute).type == machine  # choice unchanged
    assert "round it up to 8 H100 GPUs per node" in note and "you pay for 8" in note
    assert "8 training processes run per node" in note and "global batch is 8/3 times" in note
    assert "azureml: 1, 2, 8" in note  # what could be asked instead


def test_a_substituted_gpu_kind_is_a_warning():
    notes = _spec(accelerator="A100", count=1).warnings()
    upgraded = [n for n in notes if n.startswith("compute.accelerator")]
    assert len(upgraded) == 1 and "azureml (Standard_NC24ads_A100_v4) uses A100-80GB" in upgraded[0]
    assert "you pay the A100-80GB price" in upgraded[0]
    # SageMaker has no single A100 either: its smallest is 8 of them.
    assert any("sagemaker (ml.p4d.24xlarge) rounds it up to 8 A100 GPUs" in n for n in notes)


@pytest.mark.parametrize("compute", [
    {"accelerator": "H100", "count": 8},
    {"accelerator": "A10G", "count": 1},
    {"accelerator": "cpu"},
    {"accelerator": "H100", "count": 3, "instance_type": "ml.p5.48xlarge"},  # chosen by name
])  # fmt: skip
def test_no_warning_when_the_machine_is_what_was_asked(compute):
    assert not [n for n in _spec(**compute).warnings() if n.startswith("compute.")]


def test_tpu_chips_rounded_up_are_said_without_the_gpu_process_count():
    (note,) = cat.substitution_notes(ComputeSpec(accelerator="tpu-v5e", count=2))
    assert "vertex (ct5lp-hightpu-4t) rounds it up to 4 tpu-v5e chips per node" in note
    assert "processes" not in note


def test_the_cli_prints_the_warning(tmp_path, capsys):
    from genai_cloud.cli import main

    path = tmp_path / "job.yaml"
    path.write_text("name: demo\nmodel: {name_or_path: gpt2}\ndata: {train: s3://b/t.jsonl}\n")
    with pytest.raises(SystemExit) as info:
        main(["validate", str(path), "--set", "compute.accelerator=H100",
              "--set", "compute.count=3"])  # fmt: skip
        raise SystemExit(0)
    err = capsys.readouterr().err
    assert info.value.code == 0 and "Warning: compute.count: no machine has 3 x H100" in err
