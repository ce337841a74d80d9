"""Kubernetes: the PyTorchJob render checked by the kubeflow-training SDK models and the
kubernetes client's V1PodTemplateSpec (round trips: a misspelt field would be dropped and the
comparison fail); operations at the client boundary; the operator's environment emulated."""

from __future__ import annotations

import base64
import copy
import io
import json
from unittest import mock

import pytest
from fuzz_specs import JUNK, valid_specs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kubeflow.training import ApiClient as TrainingApiClient
from kubeflow.training.utils.utils import FakeResponse
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from test_fuzz_render import check_render

from genai_cloud import jobs
from genai_cloud.errors import ProviderError, UnsupportedFeatureError
from genai_cloud.loading import load_spec
from genai_cloud.plan import make_plan
from genai_cloud.providers import JobState, get_provider
from genai_cloud.providers.kubernetes import ops
from genai_cloud.providers.kubernetes.render import KubernetesRenderError
from genai_cloud.providers.local import layout, run_local
from job_templates.contract import resolve

BASE = {
    "name": "demo",
    "model": {"name_or_path": "/mnt/models/tiny"},
    "data": {"train": "/mnt/data/train.jsonl"},
    "training": {"checkpoint_every": 50},
    "kubernetes": {"namespace": "ml", "output_dir": "/mnt/runs",
                   "volumes": {"datasets": "/mnt/data", "models": "/mnt/models",
                               "runs": "/mnt/runs"}},
}  # fmt: skip


def make(**sections):
    spec = copy.deepcopy(BASE)
    for key, value in sections.items():
        spec[key] = {**spec.get(key, {}), **value} if isinstance(value, dict) else value
    return make_plan(load_spec(spec), "kubernetes")


def render(**sections) -> dict:
    return get_provider("kubernetes").render(make(**sections))


def round_trip(client, obj: dict, model: str) -> dict:
    return client.sanitize_for_serialization(client.deserialize(FakeResponse(obj), model))


def test_every_object_is_what_the_sdk_models_read():
    out = render(compute={"accelerator": "H100", "count": 8, "nodes": 3, "spot": True})
    training = TrainingApiClient()
    assert round_trip(training, out["pytorchJob"], "KubeflowOrgV1PyTorchJob") == out["pytorchJob"]
    core = k8s.ApiClient()
    for replica in out["pytorchJob"]["spec"]["pytorchReplicaSpecs"].values():
        template = replica["template"]
        assert round_trip(core, template, "V1PodTemplateSpec") == template
    assert round_trip(core, out["configMap"], "V1ConfigMap") == out["configMap"]
    # The round trip itself catches a misspelt field: it is dropped on the way in.
    bad = copy.deepcopy(out["pytorchJob"]["spec"]["pytorchReplicaSpecs"]["Master"]["template"])
    bad["spec"]["containers"][0]["volumeMount"] = []
    assert round_trip(core, bad, "V1PodTemplateSpec") != bad


def test_master_and_workers_one_pod_per_node_with_a_process_per_gpu():
    plan = make(compute={"accelerator": "A100", "count": 4, "nodes": 3})
    job = get_provider("kubernetes").render(plan)["pytorchJob"]
    assert (job["apiVersion"], job["kind"]) == ("kubeflow.org/v1", "PyTorchJob")
    assert job["metadata"] == {"name": plan.job_name, "namespace": "ml", "labels": {
        "genai-cloud-key": plan.key, "app.kubernetes.io/managed-by": "genai-cloud"}}
    spec = job["spec"]
    assert spec["nprocPerNode"] == "4"
    replicas = spec["pytorchReplicaSpecs"]
    assert (replicas["Master"]["replicas"], replicas["Worker"]["replicas"]) == (1, 2)
    pod = replicas["Worker"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["name"] == "pytorch"  # the operator's env and port go to this container
    assert container["resources"]["limits"] == {"nvidia.com/gpu": "4"}
    assert container["command"][-1].endswith("exec python -m torch.distributed.run run_job.py")
    gpu = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert gpu["nodeSelectorTerms"] == [{"matchExpressions": [{
        "key": "nvidia.com/gpu.product", "operator": "In",
        "values": ["NVIDIA-A100-SXM4-40GB", "NVIDIA-A100-PCIE-40GB"]}]}]  # fmt: skip
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} \
        in pod["tolerations"]  # fmt: skip
    assert spec["runPolicy"]["activeDeadlineSeconds"] == 86400


def test_one_process_on_one_cpu_node_runs_without_torchrun():
    job = render()["pytorchJob"]
    assert set(job["spec"]["pytorchReplicaSpecs"]) == {"Master"}
    pod = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
    assert job["spec"]["nprocPerNode"] == "1"
    assert pod["containers"][0]["command"][-1].endswith("exec python run_job.py")
    assert "resources" not in pod["containers"][0]
    assert "affinity" not in pod and "tolerations" not in pod


def test_spot_asks_for_any_clouds_spot_nodes_and_tolerates_their_taints():
    pod = render(compute={"accelerator": "T4", "spot": True})["pytorchJob"]["spec"][
        "pytorchReplicaSpecs"]["Master"]["template"]["spec"]
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"]
    spot = {(t["matchExpressions"][1]["key"], t["matchExpressions"][1]["values"][0]) for t in terms}
    assert spot == {("cloud.google.com/gke-spot", "true"), ("karpenter.sh/capacity-type", "spot"),
                    ("eks.amazonaws.com/capacityType", "SPOT"),
                    ("kubernetes.azure.com/scalesetpriority", "spot")}  # fmt: skip
    # every term still asks for the GPU: expressions within a term are ANDed
    assert all(t["matchExpressions"][0]["values"] == ["Tesla-T4"] for t in terms)
    keys = {t["key"] for t in pod["tolerations"]}
    assert {"cloud.google.com/gke-spot", "kubernetes.azure.com/scalesetpriority"} <= keys


def test_node_selector_replaces_the_gpu_label():
    pod = render(compute={"accelerator": "L4"},
                 kubernetes={"node_selector": {"cloud.google.com/gke-accelerator": "nvidia-l4"}}
                 )["pytorchJob"]["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]  # fmt: skip
    assert pod["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    assert "affinity" not in pod


def test_the_bundle_travels_in_a_config_map_an_init_container_unpacks():
    plan = make()
    out = get_provider("kubernetes").render(plan)
    assert base64.b64decode(out["configMap"]["binaryData"]["bundle.tar.gz"]) == plan.bundle.data
    pod = out["pytorchJob"]["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
    (init,) = pod["initContainers"]
    assert init["command"] == ["tar", "-xzf", "/workspace/bundle/bundle.tar.gz",
                               "-C", "/workspace/code"]  # fmt: skip
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["bundle"]["configMap"]["name"] == out["configMap"]["metadata"]["name"]
    claims = {v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]
              if "persistentVolumeClaim" in v}  # fmt: skip
    assert claims == {"datasets", "models", "runs"}
    mounts = {m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert {"/workspace/code", "/mnt/data", "/mnt/models", "/mnt/runs", "/dev/shm"} <= mounts


def test_secrets_are_secret_key_refs_and_paths_the_neutral_contract():
    plan = make(kubernetes={"secrets": {"HF_TOKEN": "hf-token/token"}}, env={"MODE": "x"})
    container = get_provider("kubernetes").render(plan)["pytorchJob"]["spec"][
        "pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["HF_TOKEN"] == {"name": "HF_TOKEN", "valueFrom": {
        "secretKeyRef": {"name": "hf-token", "key": "token"}}}
    values = {k: e.get("value") for k, e in env.items()}
    root = f"/mnt/runs/{plan.job_name}"
    assert values["GENAI_MODEL_DIR"] == f"{root}/model" and values["MODE"] == "x"
    # What the job reads from that environment (with the operator's variables beside it).
    contract = resolve([], {k: v for k, v in values.items() if v is not None})
    assert contract.platform == "kubernetes"
    assert str(contract.model_dir) == f"{root}/model"
    assert str(contract.checkpoint_dir) == f"{root}/checkpoints"


def test_a_secret_value_is_refused_by_the_spec():
    from genai_cloud.errors import SpecError

    with pytest.raises(SpecError, match="kubernetes.secrets.HF_TOKEN must be 'secret-name/key'"):
        make(kubernetes={"secrets": {"HF_TOKEN": "hf_abcdefghijklmnop"}})


def test_every_problem_at_once_each_naming_its_field(tmp_path):
    local = tmp_path / "train.jsonl"
    local.write_text('{"text": "x"}\n')
    with pytest.raises(KubernetesRenderError) as info:
        render(data={"train": str(local)}, kubernetes={"output_dir": None},
               budget={"max_usd": 5})  # fmt: skip
    message = info.value.message
    assert "data.train:" in message and "cannot read" in message
    assert "kubernetes.output_dir: required" in message
    assert "budget.max_usd:" in message


def test_unsupported_features_say_why():
    with pytest.raises(UnsupportedFeatureError, match="tpu is not supported"):
        make(compute={"accelerator": "tpu-v5e", "count": 4})
    with pytest.raises(UnsupportedFeatureError, match="aws.network_isolation"):
        make(aws={"network_isolation": True})


def test_native_yaml_is_both_objects_with_the_kubectl_command():
    import yaml

    plan = make()
    text = get_provider("kubernetes").render_native(plan, "out/job.yaml")
    assert text.splitlines()[0].startswith("# kubectl apply -f out/job.yaml")
    docs = list(yaml.safe_load_all(text))
    assert [d["kind"] for d in docs] == ["ConfigMap", "PyTorchJob"]
    assert "&id" not in text  # one copy of each object, no YAML anchors


# ---- operations, at the client boundary ------------------------------------------------------


@pytest.fixture
def cluster(monkeypatch):
    """Autospec'd CustomObjectsApi / CoreV1Api: a wrong argument is an error, as on the wire."""
    custom = mock.create_autospec(k8s.CustomObjectsApi, instance=True)
    core = mock.create_autospec(k8s.CoreV1Api, instance=True)
    custom.get_namespaced_custom_object.side_effect = ApiException(status=404, reason="NotFound")
    custom.create_namespaced_custom_object.side_effect = (
        lambda group, version, namespace, plural, body: body)
    monkeypatch.setattr(ops, "apis", lambda: (custom, core))
    return custom, core


def test_one_provider_reads_the_kubeconfig_once(cluster, monkeypatch):
    made = []
    monkeypatch.setattr(ops, "apis", lambda: made.append(cluster) or cluster)
    provider = get_provider("kubernetes")
    handle = provider.submit(make())
    provider.cancel(handle.job_id)
    assert len(made) == 1 and cluster[0].delete_namespaced_custom_object.call_count == 1
    get_provider("kubernetes").cancel(handle.job_id)  # another provider object: its own clients
    assert len(made) == 2


def test_submit_creates_the_config_map_then_the_job(cluster):
    custom, core = cluster
    plan = make()
    handle = get_provider("kubernetes").submit(plan)
    assert handle.created and handle.job_id == f"ml/pytorchjob/{plan.job_name}"
    namespace, body = core.create_namespaced_config_map.call_args.args
    assert namespace == "ml" and body["metadata"]["name"] == f"{plan.job_name}-bundle"
    args = custom.create_namespaced_custom_object.call_args.args
    assert args[:4] == ("kubeflow.org", "v1", "ml", "pytorchjobs")
    assert args[4] == get_provider("kubernetes").render(plan)["pytorchJob"]


def test_a_retried_submit_finds_the_job_and_creates_nothing(cluster):
    custom, core = cluster
    plan = make()
    job = get_provider("kubernetes").render(plan)["pytorchJob"]
    custom.get_namespaced_custom_object.side_effect = None
    custom.get_namespaced_custom_object.return_value = job
    handle = get_provider("kubernetes").submit(plan)
    assert not handle.created and handle.name == plan.job_name
    core.create_namespaced_config_map.assert_not_called()
    custom.create_namespaced_custom_object.assert_not_called()


def test_a_config_map_left_by_an_earlier_try_is_reused(cluster):
    custom, core = cluster
    core.create_namespaced_config_map.side_effect = ApiException(status=409, reason="Conflict")
    assert get_provider("kubernetes").submit(make()).created
    custom.create_namespaced_custom_object.assert_called_once()


def test_a_forbidden_namespace_is_one_clear_error(cluster):
    custom, _ = cluster
    custom.get_namespaced_custom_object.side_effect = ApiException(status=403, reason="Forbidden")
    with pytest.raises(ProviderError) as info:
        get_provider("kubernetes").submit(make())
    assert info.value.headline == "Kubernetes access denied" and "403 Forbidden" in info.value.message


@pytest.mark.parametrize("conditions, state", [
    ([], JobState.PENDING),
    ([{"type": "Created", "status": "True"}], JobState.PENDING),
    ([{"type": "Created", "status": "True"}, {"type": "Running", "status": "True"}],
     JobState.RUNNING),
    ([{"type": "Running", "status": "False"}, {"type": "Succeeded", "status": "True"}],
     JobState.SUCCEEDED),
    ([{"type": "Running", "status": "False"},
      {"type": "Failed", "status": "True", "message": "OOMKilled"}], JobState.FAILED),
])  # fmt: skip
def test_status_follows_the_newest_true_condition(cluster, conditions, state):
    custom, _ = cluster
    custom.get_namespaced_custom_object.side_effect = None
    custom.get_namespaced_custom_object.return_value = {
        "metadata": {"name": "demo-1", "namespace": "ml"}, "status": {"conditions": conditions}}
    status = get_provider("kubernetes").status("ml/pytorchjob/demo-1")
    assert status.state is state and status.job_id == "ml/pytorchjob/demo-1"
    assert custom.get_namespaced_custom_object.call_args.args == (
        "kubeflow.org", "v1", "ml", "pytorchjobs", "demo-1")
    if state is JobState.FAILED:
        assert status.message == "OOMKilled"


def test_cancel_deletes_the_job_and_its_bundle(cluster):
    custom, core = cluster
    get_provider("kubernetes").cancel("ml/pytorchjob/demo-1")
    assert custom.delete_namespaced_custom_object.call_args.args == (
        "kubeflow.org", "v1", "ml", "pytorchjobs", "demo-1")
    core.delete_namespaced_config_map.assert_called_once_with("demo-1-bundle", "ml")


def test_logs_read_the_master_pods_training_container(cluster):
    _, core = cluster
    core.read_namespaced_pod_log.return_value = "step 1\nstep 2\n"
    lines = list(get_provider("kubernetes").logs("ml/pytorchjob/demo-1"))
    assert lines == ["step 1", "step 2"]
    core.read_namespaced_pod_log.assert_called_once_with(
        name="demo-1-master-0", namespace="ml", container="pytorch")


def test_list_selects_genai_cloud_jobs_by_label(cluster):
    custom, _ = cluster
    custom.list_namespaced_custom_object.return_value = {"items": [
        {"metadata": {"name": "a", "namespace": "ml", "creationTimestamp": "2025-01-01T00:00:00Z"}},
        {"metadata": {"name": "b", "namespace": "ml", "creationTimestamp": "2025-02-01T00:00:00Z"}},
    ]}  # fmt: skip
    found = get_provider("kubernetes").list({"team": "nlp"}, namespace="ml")
    assert [s.details["name"] for s in found] == ["b", "a"]
    assert custom.list_namespaced_custom_object.call_args.kwargs == {
        "label_selector": "genai-cloud-key,team=nlp"}


def test_a_bad_job_id_names_the_shape():
    with pytest.raises(ProviderError, match="<namespace>/pytorchjob/<name>"):
        get_provider("kubernetes").status("us-east-1/demo-1")


def test_job_ids_are_told_apart_from_the_clouds():
    assert jobs.infer_provider("ml/pytorchjob/demo-1") == "kubernetes"
    assert jobs.infer_provider("us-east-1/tune-a-0123456789") == "sagemaker"


# ---- the operator's environment, emulated ----------------------------------------------------


def test_emulation_sets_the_operators_environment(tmp_path):
    spec = {"name": "toy", "task": "pretrain-scratch", "scratch": {"toy_task": "copy"}}
    plan = make_plan(load_spec(spec), "local")
    lay = layout(plan, emulate="kubernetes", run_dir=tmp_path / "run")
    env = lay.env
    assert {k: env[k] for k in ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK",
                                "PET_NNODES", "PET_NODE_RANK", "PET_NPROC_PER_NODE",
                                "PET_MASTER_ADDR", "PET_MASTER_PORT")} == {
        "MASTER_ADDR": "localhost", "MASTER_PORT": "23456", "WORLD_SIZE": "1", "RANK": "0",
        "PET_NNODES": "1", "PET_NODE_RANK": "0", "PET_NPROC_PER_NODE": "1",
        "PET_MASTER_ADDR": "localhost", "PET_MASTER_PORT": "23456"}  # fmt: skip
    contract = resolve([], env)
    assert contract.platform == "kubernetes"
    assert contract.model_dir == lay.model_dir == tmp_path / "run" / "volume" / plan.job_name / "model"
    assert lay.command[1:] == ["run_job.py"]  # what the pod runs from /workspace/code


@pytest.mark.slow
def test_the_same_job_runs_under_the_emulated_operator(make_spec, tmp_path):
    spec = load_spec(make_spec(training={"max_steps": 4, "log_every": 2}))
    log = io.StringIO()
    run = run_local(spec, emulate="kubernetes", run_dir=tmp_path / "k8s", stream=log)
    assert run.returncode == 0, log.getvalue()[-2000:]
    assert "platform=kubernetes rank=0/1" in log.getvalue()
    metrics = json.loads((run.output_dir / "metrics.json").read_text())
    assert metrics["steps"] == 4 and metrics["world_size"] == 1
    assert metrics["eval_loss_after"] < metrics["eval_loss_before"]
    assert (run.model_dir / "config.json").is_file()


# ---- fuzzed specs: never a traceback --------------------------------------------------------

K8S_KEYS = ["namespace", "image", "service_account", "volumes", "output_dir", "secrets",
            "node_selector", "tolerations", "image_pull_secrets", "bogus"]  # fmt: skip


@st.composite
def kubernetes_documents(draw) -> dict:
    """A spec renderable on Kubernetes, then maybe broken in its kubernetes / compute parts."""
    doc = draw(valid_specs())
    doc["data"]["train"] = "/mnt/data/train.jsonl"
    doc["model"]["name_or_path"] = "/mnt/data/model"
    doc["kubernetes"] = {"volumes": {"data": "/mnt/data"}, "output_dir": "/mnt/data/runs"}
    for _ in range(draw(st.integers(0, 3))):
        where = draw(st.sampled_from(["kubernetes", "compute"]))
        key = draw(st.sampled_from(K8S_KEYS if where == "kubernetes" else
                                   ["accelerator", "count", "nodes", "spot", "max_runtime"]))
        value = draw(JUNK | st.sampled_from(["/mnt/data", "relative/dir", "a/b", "H100", "T4",
                                             "tpu-v5e", "Ml", {"claim": "/x"}]))  # fmt: skip
        doc[where][key] = value
    return doc


@settings(max_examples=120, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
@given(doc=kubernetes_documents())
def test_fuzzed_specs_render_or_fail_cleanly_on_kubernetes(doc):
    check_render(doc, "kubernetes")


def test_the_kubernetes_fuzzer_reaches_render():
    """Guard against a generator that only ever exercises the spec loader."""
    seen = set()

    @settings(max_examples=60, deadline=None, database=None)
    @given(doc=kubernetes_documents())
    def run(doc):
        seen.add(check_render(doc, "kubernetes"))

    run()
    assert {"valid", "provider"} <= seen, seen
