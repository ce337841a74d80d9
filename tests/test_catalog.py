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
