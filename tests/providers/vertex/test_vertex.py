"""Vertex AI render: every CustomJob is checked by the real aiplatform_v1 proto, strictly."""

import json
from pathlib import Path

import pytest
import yaml
from google.cloud import aiplatform_v1
from google.protobuf import json_format

from genai_cloud.bundle import Bundle
from genai_cloud.catalog import instances
from genai_cloud.errors import ProviderError, UnsupportedFeatureError
from genai_cloud.loading import load_spec
from genai_cloud.plan import make_plan
from genai_cloud.providers import get_provider
from genai_cloud.providers.vertex.render import KEY_LABEL
from job_templates.contract import resolve

BASE = {
    "name": "demo",
    "model": {"name_or_path": "gpt2"},
    "data": {"train": "gs://bkt/data/train.jsonl"},
    "output": {"uri": "gs://bkt/runs"},
    "training": {"checkpoint_every": 50},
}
SECRET = "projects/p/secrets/hf-token"


def merge(base, extra):
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and key in out else value
    return out


def make(overrides=None, provider="vertex", base=BASE):
    plan = make_plan(load_spec(merge(base, overrides or {})), provider)
    # Pin what other files change (the templates, spec defaults): snapshots stay about render.
    plan.__dict__["bundle"] = Bundle(data=b"bundle", sha256="ab" * 32)
    plan.__dict__["key"] = "0123456789"
    return plan


def render(overrides=None):
    return get_provider("vertex").render(make(overrides))


def proto(job: dict) -> aiplatform_v1.CustomJob:
    """Strict: an unknown or misspelt field raises json_format.ParseError."""
    message = aiplatform_v1.CustomJob.pb()()
    json_format.ParseDict(job, message)
    return aiplatform_v1.CustomJob.wrap(message)


SPREAD = {
    "cpu": {},
    "t4": {"compute": {"accelerator": "T4"}},
    "t4x4": {"compute": {"accelerator": "T4", "count": 4}},
    "l4x8": {"compute": {"accelerator": "L4", "count": 8}},
    "v100": {"compute": {"accelerator": "V100", "count": 2}},
    "a100x8": {"compute": {"accelerator": "A100", "count": 8}},
    "a100-80": {"compute": {"accelerator": "A100-80GB", "count": 1}},
    "h100x8x2": {"compute": {"accelerator": "H100", "count": 8, "nodes": 2}},
    "h200": {"compute": {"accelerator": "H200", "count": 8}},
    "tpu-v5e-1": {"compute": {"accelerator": "tpu-v5e"}},
    "tpu-v5e-8": {"compute": {"accelerator": "tpu-v5e", "count": 8}},
    "tpu-v5e-4x4": {"compute": {"accelerator": "tpu-v5e", "count": 4},
                    "gcp": {"tpu_topology": "4x4"}},
    "tpu-v4": {"compute": {"accelerator": "tpu-v4", "count": 4}},
    "tpu-v5p": {"compute": {"accelerator": "tpu-v5p", "count": 4}},
    "tpu-v6e-4": {"compute": {"accelerator": "tpu-v6e", "count": 4}},
    "spot": {"compute": {"accelerator": "L4", "spot": True}},
    "flex": {"compute": {"accelerator": "A100", "count": 8},
             "gcp": {"strategy": "FLEX_START", "max_wait": "2h"}},
    "secured": {"compute": {"accelerator": "T4"},
                "gcp": {"kms_key_name": "projects/p/locations/us-central1/keyRings/r/cryptoKeys/k",
                        "network": "projects/123/global/networks/vpc",
                        "service_account": "trainer@p.iam.gserviceaccount.com"}},
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(SPREAD))
def test_every_render_is_a_valid_custom_job(case):
    job = proto(render(SPREAD[case]))
    pools = job.job_spec.worker_pool_specs
    assert pools[0].replica_count == 1
    assert job.labels[KEY_LABEL] == "0123456789"
    assert job.job_spec.base_output_directory.output_uri_prefix == "gs://bkt/runs/demo-0123456789"
    assert job.job_spec.enable_web_access is False


def test_a_misspelt_field_fails_the_proto_check():
    job = render()
    job["job_spec"]["worker_pool_specs"][0]["machine_spec"]["acclerator_count"] = 1
    with pytest.raises(json_format.ParseError):
        proto(job)


def test_gpu_machine_and_multi_node_pools():
    job = proto(render(SPREAD["h100x8x2"]))
    chief, workers = job.job_spec.worker_pool_specs
    assert chief.machine_spec.machine_type == "a3-highgpu-8g"
    assert chief.machine_spec.accelerator_type == aiplatform_v1.AcceleratorType.NVIDIA_H100_80GB
    assert chief.machine_spec.accelerator_count == 8
    assert workers.replica_count == 1 and workers.machine_spec == chief.machine_spec
    script = chief.container_spec.command[2]
    assert "--nnodes=2" in script and "--nproc_per_node=8" in script
    assert "pytorch-gpu" in chief.container_spec.image_uri


def test_t4_rides_on_an_n1_machine():
    spec = proto(render(SPREAD["t4x4"])).job_spec.worker_pool_specs[0].machine_spec
    assert (spec.machine_type, spec.accelerator_count) == ("n1-standard-16", 4)
    assert spec.accelerator_type == aiplatform_v1.AcceleratorType.NVIDIA_TESLA_T4


@pytest.mark.parametrize("case, machine, topology", [
    ("tpu-v5e-1", "ct5lp-hightpu-1t", "1x1"),
    ("tpu-v5e-8", "ct5lp-hightpu-8t", "2x4"),
    ("tpu-v5e-4x4", "ct5lp-hightpu-4t", "4x4"),
    ("tpu-v6e-4", "ct6e-standard-4t", "2x2"),
])  # fmt: skip
def test_tpu_machine_types_and_topologies(case, machine, topology):
    pool = proto(render(SPREAD[case])).job_spec.worker_pool_specs[0]
    assert pool.machine_spec.machine_type == machine
    assert pool.machine_spec.tpu_topology == topology
    assert "pytorch-xla" in pool.container_spec.image_uri
    assert {e.name: e.value for e in pool.container_spec.env}["PJRT_DEVICE"] == "TPU"
    # The PJRT launcher: one process per local chip, on every host of the slice.
    assert pool.container_spec.command[2].endswith("exec python -m job_templates.common.xla")
    assert pool.replica_count == 1 and len(proto(render(SPREAD[case])).job_spec.worker_pool_specs) == 1


def test_tpu_v4_names_its_accelerator_on_cloud_tpu():
    spec = proto(render(SPREAD["tpu-v4"])).job_spec.worker_pool_specs[0].machine_spec
    assert spec.machine_type == "cloud-tpu"
    assert spec.accelerator_type == aiplatform_v1.AcceleratorType.TPU_V4_POD


def test_catalog_enum_names_are_real_sdk_members():
    members = set(aiplatform_v1.AcceleratorType.__members__)
    rows = instances("vertex")
    named = [r for r in rows if r.extra.get("accelerator_type")]
    assert {r.extra["accelerator_type"] for r in named} <= members
    # Every GPU row names an enum; TPU rows without one are fixed by their machine type.
    assert all(
        r.extra.get("accelerator_type") for r in rows if r.count and "tpu" not in r.accelerator
    )
    assert all(r.extra.get("tpu_topology") for r in rows if r.accelerator.startswith("tpu-"))
    assert all(r.price and r.spot_price for r in rows)


def test_scheduling_spot_and_flex_start():
    spot = proto(render(SPREAD["spot"])).job_spec.scheduling
    assert spot.strategy == aiplatform_v1.Scheduling.Strategy.SPOT
    flex = proto(render(SPREAD["flex"])).job_spec.scheduling
    assert flex.strategy == aiplatform_v1.Scheduling.Strategy.FLEX_START
    assert flex.max_wait_duration.total_seconds() == 7200
    assert flex.timeout.total_seconds() == 86400


def test_security_settings_are_rendered():
    job = proto(render(SPREAD["secured"]))
    assert job.encryption_spec.kms_key_name.endswith("cryptoKeys/k")
    assert job.job_spec.network == "projects/123/global/networks/vpc"
    assert job.job_spec.service_account == "trainer@p.iam.gserviceaccount.com"


def test_cpu_render_snapshot():
    job = render({"env": {"HF_HOME": "/tmp/hf"}, "labels": {"team": "nlp"}})
    script = job["job_spec"]["worker_pool_specs"][0]["container_spec"].pop("command")[2]
    assert script.splitlines() == [
        "set -euo pipefail",
        (
            "mkdir -p /tmp/genai-bundle && tar -xzf "
            "/gcs/bkt/genai-cloud/bundles/bundle-abababababababab.tar.gz "
            "-C /tmp/genai-bundle && cd /tmp/genai-bundle"
        ),
        "python -m pip install --quiet --disable-pip-version-check -r requirements.txt",
        "exec python run_job.py",
    ]
    assert job == {
        "display_name": "demo-0123456789",
        "job_spec": {
            "worker_pool_specs": [{
                "machine_spec": {"machine_type": "n1-standard-4"},
                "replica_count": 1,
                "disk_spec": {"boot_disk_type": "pd-ssd", "boot_disk_size_gb": 100},
                "container_spec": {
                    "image_uri": "us-docker.pkg.dev/vertex-ai/training/pytorch-xla.2-4.py310:latest",
                    "env": [
                        {"name": "GENAI_CHANNEL_TRAIN", "value": "gs://bkt/data/train.jsonl"},
                        {"name": "GENAI_JOB_NAME", "value": "demo-0123456789"},
                        {"name": "HF_HOME", "value": "/tmp/hf"},
                    ],
                },
            }],
            "base_output_directory": {"output_uri_prefix": "gs://bkt/runs/demo-0123456789"},
            "scheduling": {"timeout": "86400s", "restart_job_on_worker_restart": False},
            "enable_web_access": False,
        },
        "labels": {"team": "nlp", "genai-cloud-key": "0123456789", "genai-cloud-task": "finetune"},
    }  # fmt: skip


def test_native_yaml_is_the_camel_case_job_spec():
    plan = make(SPREAD["flex"])
    text = get_provider("vertex").render_native(plan)
    assert "gcloud ai custom-jobs create" in text and "--labels=genai-cloud-key=0123456789" in text
    loaded = yaml.safe_load(text)
    assert "workerPoolSpecs" in loaded and "maxWaitDuration" in loaded["scheduling"]
    assert not any(
        "_" in key for key in _keys(loaded)
    )  # gcloud: "keys with underscore are invalid"
    from_yaml, from_render = aiplatform_v1.CustomJobSpec.pb()(), aiplatform_v1.CustomJobSpec.pb()()
    json_format.ParseDict(loaded, from_yaml)
    json_format.ParseDict(get_provider("vertex").render(plan)["job_spec"], from_render)
    assert from_yaml == from_render


def _keys(value):
    if isinstance(value, dict):
        for key, inner in value.items():
            yield key
            yield from _keys(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _keys(inner)


def test_render_meets_the_entrypoint_contract(monkeypatch):
    """The container env plus what Vertex derives from base_output_directory resolve to the
    FUSE paths of the job's own folder."""
    job = render({"data": {"eval": "gs://bkt/data/eval/"}})
    base = job["job_spec"]["base_output_directory"]["output_uri_prefix"]
    env = {
        e["name"]: e["value"]
        for e in job["job_spec"]["worker_pool_specs"][0]["container_spec"]["env"]
    }
    env.update(AIP_MODEL_DIR=f"{base}/model/", AIP_CHECKPOINT_DIR=f"{base}/checkpoints/",
               CLOUD_ML_JOB_ID="4242")  # fmt: skip
    monkeypatch.setattr("job_templates.contract.GCS_FUSE_ROOT", Path("/gcs"))
    contract = resolve([], env=env)
    job_dir = Path("/gcs/bkt/runs/demo-0123456789")
    assert contract.platform == "vertex"
    assert contract.channels == {"train": Path("/gcs/bkt/data/train.jsonl"),
                                 "eval": Path("/gcs/bkt/data/eval")}  # fmt: skip
    assert (contract.model_dir, contract.checkpoint_dir, contract.output_dir) == (
        job_dir / "model",
        job_dir / "checkpoints",
        job_dir / "output",
    )


def test_secret_references_are_never_rendered():
    plan = make({"secrets": {"HF_TOKEN": SECRET}})
    provider = get_provider("vertex")
    assert SECRET not in json.dumps(provider.render(plan)) + provider.render_native(plan)
    assert "HF_TOKEN" not in json.dumps(provider.render(plan))


def test_outputs_default_to_the_staging_bucket_when_output_uri_is_unset():
    plan = make({"output": {"uri": None}, "gcp": {"staging_bucket": "gs://stage/"}})
    job = get_provider("vertex").render(plan)
    base = job["job_spec"]["base_output_directory"]["output_uri_prefix"]
    assert base == "gs://stage/genai-cloud/outputs/demo-0123456789"
    assert "/gcs/stage/genai-cloud/bundles/bundle-abab" in json.dumps(job)
    with pytest.raises(ProviderError, match=r"or gcp\.staging_bucket"):
        render({"output": {"uri": None}})


@pytest.mark.parametrize("overrides, field", [
    ({"output": {"uri": None}}, "output.uri"),
    ({"output": {"uri": "s3://bkt/out"}}, "output.uri"),
    ({"data": {"train": "s3://bkt/train.jsonl"}}, "data.train"),
    ({"data": {"train": "/abs/local.jsonl"}}, "data.train"),
    # TPU count / nodes / topology are refused with the spec: tests/test_tpu.py
    ({"gcp": {"max_wait": "1h"}}, "gcp.max_wait"),
    ({"compute": {"spot": True}, "gcp": {"strategy": "STANDARD"}}, "gcp.strategy"),
    ({"gcp": {"kms_key_name": "my-key"}}, "gcp.kms_key_name"),
])  # fmt: skip
def test_settings_vertex_cannot_take_are_named(overrides, field):
    with pytest.raises(ProviderError, match=field.replace(".", r"\.")):
        render(overrides)


IMAGE_EVAL = {"name": "demo", "task": "evaluate", "output": {"uri": "gs://bkt/runs"},
              "evaluate": {"image_metrics": True, "perplexity": False,
                           "feature_extractor": "gs://bkt/models/inception.pt2",
                           "generated_images": "gs://bkt/gen/", "real_images": "gs://bkt/real/"}}  # fmt: skip


def test_image_eval_files_in_cloud_storage_render():
    job = get_provider("vertex").render(make(base=IMAGE_EVAL))
    assert proto(job).job_spec.worker_pool_specs[0].container_spec.image_uri


@pytest.mark.parametrize("field", ["feature_extractor", "generated_images", "real_images"])
@pytest.mark.parametrize("value", ["/abs/local/images", "./relative", "azureml://datastores/d/paths/p",
                                   "s3://b/images"])  # fmt: skip
def test_evaluate_files_the_job_cannot_see_are_refused_by_field(field, value):
    with pytest.raises(ProviderError) as err:
        get_provider("vertex").render(make({"evaluate": {field: value}}, base=IMAGE_EVAL))
    assert f"evaluate.{field}: " in err.value.message and "gs://" in err.value.message


def test_every_problem_is_reported_at_once():
    with pytest.raises(ProviderError) as err:
        render({"output": {"uri": None}, "data": {"train": "s3://b/t.jsonl"},
                "gcp": {"max_wait": "1h"}})  # fmt: skip
    assert all(f in err.value.message for f in ("output.uri", "data.train", "gcp.max_wait"))


def test_feature_matrix_tpu_and_flex_start_only_on_vertex():
    for overrides in ({"compute": {"accelerator": "tpu-v5e"}}, {"gcp": {"strategy": "FLEX_START"}}):
        make(overrides)  # fine on Vertex
        with pytest.raises(UnsupportedFeatureError, match="azureml cannot run"):
            make_plan(load_spec(merge(BASE, overrides)), "azureml")
    with pytest.raises(UnsupportedFeatureError, match="network-isolation"):
        make({"aws": {"network_isolation": True}})


def test_display_name_respects_the_128_char_limit():
    plan = make({"name": "x" * 63})
    assert len(get_provider("vertex").render(plan)["display_name"]) <= 128


def test_rendering_imports_no_cloud_sdk():
    import subprocess
    import sys

    code = (
        "import sys, json\n"
        "from genai_cloud.loading import load_spec\n"
        "from genai_cloud.plan import make_plan\n"
        "from genai_cloud.providers import get_provider\n"
        f"base = {BASE!r}\n"
        "get_provider('vertex').render_native(make_plan(load_spec(base), 'vertex'))\n"
        "base['data'] = {'train': 'azureml://datastores/d/paths/t.jsonl'}; base['output'] = {}\n"
        "get_provider('azureml').render_native(make_plan(load_spec(base), 'azureml'))\n"
        # google.cloud itself is a namespace package that .pth files create at start-up.
        "heavy = [m for m in sys.modules if m.startswith(('google.cloud.', 'google.auth', "
        "'google.api_core', 'azure.', 'torch'))]\n"
        "print(json.dumps(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_gs_files_are_opened_through_the_fuse_mount():
    from job_templates.contract import GCS_FUSE_ROOT, Contract

    contract = Contract(platform="vertex", spec_path=Path("spec.json"), channels={},
                        model_dir=Path("m"), checkpoint_dir=Path("c"), output_dir=Path("o"))  # fmt: skip
    spec = {"evaluate": {"feature_extractor": "gs://b/models/inception.pt2", "real_images": None},
            "fairness": {"pairs": "gs://b/pairs.jsonl"}}  # fmt: skip
    contract.localize_files(spec)
    assert spec["evaluate"] == {"feature_extractor": str(GCS_FUSE_ROOT / "b/models/inception.pt2"),
                                "real_images": None}  # fmt: skip
    assert spec["fairness"]["pairs"] == str(GCS_FUSE_ROOT / "b/pairs.jsonl")


def test_native_header_names_the_file_it_is_written_to():
    plan = make()
    assert "--config=THIS_FILE" in get_provider("vertex").render_native(plan)
    assert "--config='out dir/job.yaml'\n" in get_provider("vertex").render_native(
        plan, path="out dir/job.yaml")
