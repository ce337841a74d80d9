"""spec -> a Kubeflow Training Operator ``PyTorchJob`` and the ``ConfigMap`` carrying its bundle.

Pure: no cluster, no credentials. ``render(plan)`` returns ``{"configMap": ..., "pytorchJob":
...}``, the two objects ``submit`` creates (camelCase, as the API server takes them);
``render_yaml`` is the same as one file for ``kubectl apply -f``.

What the job looks like (training-operator v1, ``kubeflow.org/v1``):

- ``Master`` (1 replica) + ``Worker`` (nodes - 1): one pod per node. The operator gives every
  pod ``MASTER_ADDR`` (``<job>-master-0``), ``MASTER_PORT``, ``WORLD_SIZE`` (pods x
  ``nprocPerNode``), ``RANK`` / ``PET_NODE_RANK`` (the pod's node rank), ``PET_NNODES``,
  ``PET_NPROC_PER_NODE``, ``PET_MASTER_ADDR`` / ``PET_MASTER_PORT`` (pkg/controller.v1/pytorch/
  envvar.go, master.go); ``torchrun`` reads the ``PET_*`` ones as its defaults, so the pod runs
  ``python -m torch.distributed.run run_job.py`` with no flags (``nprocPerNode``: GPUs per node).
- The bundle (~100 KB, under a ConfigMap's 1 MiB) travels in a ConfigMap; an init container
  unpacks it into an ``emptyDir`` the training container starts in. No object storage needed.
- Data, models and outputs live on PersistentVolumeClaims (``kubernetes.volumes``) or at URIs
  the job reads itself (s3://, hub ids); the model, checkpoints and reports go to
  ``kubernetes.output_dir/<job>/`` on a volume, so they outlive the pods.
- GPUs: ``nvidia.com/gpu`` limits, node affinity on the GPU Feature Discovery label
  ``nvidia.com/gpu.product``, and a toleration for the ``nvidia.com/gpu`` taint GPU node pools
  carry. Spot: node affinity on the spot labels of GKE, EKS (managed node groups and Karpenter)
  and AKS, with the taints they put on spot nodes tolerated.
- Secrets: ``kubernetes.secrets`` become ``secretKeyRef`` environment entries (the value stays
  in the cluster's Secret); ``secrets`` (cloud references) stay in spec.json for the entrypoint.
"""

from __future__ import annotations

import base64
import os
import shlex
from typing import TYPE_CHECKING

from ... import contract
from ...bundle import LAUNCHER
from ...errors import ProviderError
from ...naming import NameRules

if TYPE_CHECKING:
    from ...plan import Plan
    from ...spec import JobSpec

API_VERSION = "kubeflow.org/v1"
KIND = "PyTorchJob"
PLURAL = "pytorchjobs"
CONTAINER = "pytorch"  # the operator injects its env and port into the container of this name
MASTER_PORT = 23456  # PyTorchJobDefaultPort (pkg/apis/kubeflow.org/v1/pytorch_types.go)
KEY_LABEL = "genai-cloud-key"  # Plan.key: finds the job again
BUNDLE_KEY = "bundle.tar.gz"
CODE_DIR = "/workspace/code"
BUNDLE_MOUNT = "/workspace/bundle"
# Pod names are "<job>-worker-<i>" and the master's Service "<job>-master-0": DNS-1035 labels of
# at most 63 characters, so "-worker-254" (compute.nodes <= 256) leaves 52 for the job.
KUBERNETES_NAMES = NameRules(max_len=52, allowed="a-z0-9-", lowercase=True)
CPU_IMAGE = GPU_IMAGE = "pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime"  # runs on CPU nodes too

# NVIDIA GPU Feature Discovery's nvidia.com/gpu.product: the product name nvidia-smi reports,
# spaces as dashes. Several SKUs (SXM / PCIe) per accelerator; kubernetes.node_selector
# replaces this when a cluster labels its nodes otherwise (e.g. GKE's gke-accelerator).
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
GPU_PRODUCTS = {
    "T4": ["Tesla-T4"],
    "L4": ["NVIDIA-L4"],
    "A10": ["NVIDIA-A10"],
    "A10G": ["NVIDIA-A10G"],
    "V100": ["Tesla-V100-SXM2-16GB", "Tesla-V100-PCIE-16GB", "Tesla-V100-SXM2-32GB"],
    "A100": ["NVIDIA-A100-SXM4-40GB", "NVIDIA-A100-PCIE-40GB"],
    "A100-80GB": ["NVIDIA-A100-SXM4-80GB", "NVIDIA-A100-80GB-PCIe"],
    "H100": ["NVIDIA-H100-80GB-HBM3", "NVIDIA-H100-PCIe"],
    "H200": ["NVIDIA-H200"],
}
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
# Spot / preemptible node labels (any one matches) and the taints those nodes carry.
SPOT_LABELS = (
    ("cloud.google.com/gke-spot", "true"),  # GKE Spot VMs
    ("eks.amazonaws.com/capacityType", "SPOT"),  # EKS managed node groups
    ("karpenter.sh/capacity-type", "spot"),  # Karpenter (EKS and others)
    ("kubernetes.azure.com/scalesetpriority", "spot"),  # AKS spot node pools
)
SPOT_TOLERATIONS = (
    {"key": "cloud.google.com/gke-spot", "operator": "Equal", "value": "true",
     "effect": "NoSchedule"},
    {"key": "kubernetes.azure.com/scalesetpriority", "operator": "Equal", "value": "spot",
     "effect": "NoSchedule"},
)  # fmt: skip


class KubernetesRenderError(ProviderError):
    """The spec cannot become a PyTorchJob; lists every reason at once."""

    headline = "Cannot render for Kubernetes"

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(f"  - {p}" for p in problems))


def render(plan: Plan) -> dict:
    """``{"configMap": ..., "pytorchJob": ...}`` for a plan.

    Raises:
        KubernetesRenderError: every problem found, each naming the spec field to change.
    """
    spec = plan.spec
    problems = _problems(spec)
    if problems:
        raise KubernetesRenderError(problems)
    namespace = spec.kubernetes.namespace
    config_map = {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": bundle_name(plan), "namespace": namespace, "labels": labels(plan)},
        "binaryData": {BUNDLE_KEY: base64.b64encode(plan.bundle.data).decode()},
    }  # fmt: skip
    # Master and workers run the same pod; each gets its own copy (no shared objects, so the
    # YAML has no anchors and a caller editing one replica does not edit the other).
    replicas = {"Master": {"replicas": 1, "restartPolicy": "OnFailure",
                           "template": pod_template(plan)}}  # fmt: skip
    if spec.compute.nodes > 1:
        replicas["Worker"] = {"replicas": spec.compute.nodes - 1, "restartPolicy": "OnFailure",
                              "template": pod_template(plan)}  # fmt: skip
    job = {
        "apiVersion": API_VERSION, "kind": KIND,
        "metadata": {"name": plan.job_name, "namespace": namespace, "labels": labels(plan)},
        "spec": {
            "nprocPerNode": str(processes_per_node(spec)),
            "pytorchReplicaSpecs": replicas,
            "runPolicy": {
                "activeDeadlineSeconds": spec.compute.max_runtime,
                "backoffLimit": 3,  # pod restarts; the entrypoint resumes from checkpoints
                "cleanPodPolicy": "None",  # keep finished pods: `logs` reads them
            },
        },
    }  # fmt: skip
    return {"configMap": config_map, "pytorchJob": job}


def bundle_name(plan: Plan) -> str:
    return f"{plan.job_name}-bundle"


def labels(plan: Plan) -> dict[str, str]:
    return {**plan.spec.labels, KEY_LABEL: plan.key, "app.kubernetes.io/managed-by": "genai-cloud"}


def processes_per_node(spec: JobSpec) -> int:
    """One training process per GPU; one on a CPU node."""
    return spec.compute.count if spec.compute.is_gpu else 1


def output_paths(spec: JobSpec, job_name: str) -> dict[str, str]:
    root = f"{spec.kubernetes.output_dir.rstrip('/')}/{job_name}"
    return {"model": f"{root}/model", "checkpoints": f"{root}/checkpoints",
            "output": f"{root}/output"}  # fmt: skip


def _problems(spec: JobSpec) -> list[str]:
    k8s = spec.kubernetes
    problems = []
    mounts = list(k8s.volumes.values())
    if spec.budget.max_usd is not None:
        problems.append("budget.max_usd: a cluster's machines have no catalog price to enforce "
                        "it with; cap the run with compute.max_runtime instead")  # fmt: skip
    if k8s.output_dir is None:
        problems.append("kubernetes.output_dir: required: a folder on one of kubernetes.volumes "
                        "for the model, checkpoints and reports (a pod's disk goes with it)")  # fmt: skip
    elif not _on_volume(k8s.output_dir, mounts):
        problems.append(f"kubernetes.output_dir: {k8s.output_dir} is not under a mount of "
                        f"kubernetes.volumes ({', '.join(mounts) or 'none'})")  # fmt: skip
    for path in mounts:
        if not path.startswith("/"):
            problems.append(f"kubernetes.volumes: mount path {path!r} must be absolute")
    for section, name in contract.INPUT_CHANNELS:
        value = getattr(getattr(spec, section, None), name, None)
        if isinstance(value, str) and os.path.isabs(value) and not _on_volume(value, mounts):
            problems.append(f"{section}.{name}: {value} is a path on this machine, which the "
                            "cluster's pods cannot read; put it on a volume (kubernetes.volumes) "
                            "and give its path in the pod, or use an s3:// URI or a hub id")  # fmt: skip
    if spec.compute.is_gpu and spec.compute.accelerator not in GPU_PRODUCTS and not k8s.node_selector:
        problems.append(f"compute.accelerator: no GPU label known for {spec.compute.accelerator}; "
                        "name the nodes with kubernetes.node_selector")  # fmt: skip
    if not spec.name[:1].isalpha():
        problems.append(f"name: {spec.name!r} must start with a letter: Kubernetes names the "
                        "job's pods and services after it")  # fmt: skip
    return problems


def _on_volume(path: str, mounts: list[str]) -> bool:
    return any(path == m or path.startswith(m.rstrip("/") + "/") for m in mounts)


def launch_command(spec: JobSpec) -> str:
    """Install the bundle's requirements, then run it; torchrun takes its layout from the
    operator's PET_* variables when more than one process runs."""
    single = spec.compute.nodes == 1 and processes_per_node(spec) == 1
    run = f"python {LAUNCHER}" if single else f"python -m torch.distributed.run {LAUNCHER}"
    return "\n".join([
        "set -eu",
        f"cd {CODE_DIR}",
        "python -m pip install --quiet --disable-pip-version-check -r requirements.txt",
        f"exec {run}",
    ])  # fmt: skip


def environment(plan: Plan) -> list[dict]:
    """The container's environment: the neutral contract's paths, the spec's env, then each
    Kubernetes Secret by reference."""
    spec = plan.spec
    paths = output_paths(spec, plan.job_name)
    plain = {
        contract.ENV_PLATFORM: "kubernetes",
        contract.ENV_SPEC: f"{CODE_DIR}/spec.json",
        contract.ENV_MODEL_DIR: paths["model"],
        contract.ENV_CHECKPOINT_DIR: paths["checkpoints"],
        contract.ENV_OUTPUT_DIR: paths["output"],
        "GENAI_JOB_NAME": plan.job_name,
        **spec.env,
    }
    env = [{"name": k, "value": v} for k, v in plain.items()]
    for name, ref in sorted(spec.kubernetes.secrets.items()):
        secret, _, key = ref.partition("/")
        env.append({"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}})
    return env


def _affinity(spec: JobSpec) -> dict | None:
    """Required node affinity: the GPU product (unless kubernetes.node_selector names the
    nodes) and, for spot, any one of the spot labels. Terms are ORed, expressions ANDed."""
    gpu = []
    if spec.compute.is_gpu and not spec.kubernetes.node_selector:
        gpu = [{"key": GPU_PRODUCT_LABEL, "operator": "In",
                "values": list(GPU_PRODUCTS[spec.compute.accelerator])}]  # fmt: skip
    if spec.compute.spot:
        terms = [{"matchExpressions": [*(dict(e, values=list(e["values"])) for e in gpu),
                                       {"key": k, "operator": "In", "values": [v]}]}
                 for k, v in SPOT_LABELS]  # fmt: skip
    elif gpu:
        terms = [{"matchExpressions": gpu}]
    else:
        return None
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": terms}}}  # fmt: skip


def pod_template(plan: Plan) -> dict:
    """The pod every replica runs (``V1PodTemplateSpec`` fields, camelCase)."""
    spec, k8s = plan.spec, plan.spec.kubernetes
    image = k8s.image or (GPU_IMAGE if spec.compute.is_gpu else CPU_IMAGE)
    mounts = [{"name": "code", "mountPath": CODE_DIR}, {"name": "dshm", "mountPath": "/dev/shm"}]
    volumes = [
        {"name": "bundle", "configMap": {"name": bundle_name(plan),
                                         "items": [{"key": BUNDLE_KEY, "path": BUNDLE_KEY}]}},
        {"name": "code", "emptyDir": {}},
        # DataLoader workers and NCCL share tensors through /dev/shm; a container's default is 64 MB.
        {"name": "dshm", "emptyDir": {"medium": "Memory"}},
    ]  # fmt: skip
    for index, (claim, path) in enumerate(sorted(k8s.volumes.items())):
        volumes.append({"name": f"data-{index}", "persistentVolumeClaim": {"claimName": claim}})
        mounts.append({"name": f"data-{index}", "mountPath": path})
    container = {
        "name": CONTAINER, "image": image,
        "command": ["bash", "-c", launch_command(spec)],
        "env": environment(plan),
        "ports": [{"name": "pytorchjob-port", "containerPort": MASTER_PORT}],
        "volumeMounts": mounts,
    }  # fmt: skip
    if spec.compute.is_gpu:
        count = str(spec.compute.count)
        container["resources"] = {"limits": {"nvidia.com/gpu": count},
                                  "requests": {"nvidia.com/gpu": count}}  # fmt: skip
    unpack = {
        "name": "unpack-bundle", "image": image,
        "command": ["tar", "-xzf", f"{BUNDLE_MOUNT}/{BUNDLE_KEY}", "-C", CODE_DIR],
        "volumeMounts": [{"name": "bundle", "mountPath": BUNDLE_MOUNT, "readOnly": True},
                         {"name": "code", "mountPath": CODE_DIR}],
    }  # fmt: skip
    pod: dict = {"initContainers": [unpack], "containers": [container], "volumes": volumes}
    tolerations = ([GPU_TOLERATION] if spec.compute.is_gpu else []) + (
        list(SPOT_TOLERATIONS) if spec.compute.spot else []) + list(k8s.tolerations)
    tolerations = [dict(t) for t in tolerations]
    if tolerations:
        pod["tolerations"] = tolerations
    if k8s.node_selector:
        pod["nodeSelector"] = dict(k8s.node_selector)
    affinity = _affinity(spec)
    if affinity:
        pod["affinity"] = affinity
    if k8s.service_account:
        pod["serviceAccountName"] = k8s.service_account
    if k8s.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": n} for n in k8s.image_pull_secrets]
    return {"metadata": {"labels": labels(plan)}, "spec": pod}


def render_yaml(plan: Plan, path: str | os.PathLike | None = None) -> str:
    """Both objects as one file; the header is the command that submits it."""
    import yaml

    objects = render(plan)
    where = shlex.quote(str(path)) if path else "THIS_FILE"
    header = (f"# kubectl apply -f {where}   (then: kubectl -n {plan.spec.kubernetes.namespace} "
              f"get pytorchjob {plan.job_name})\n")  # fmt: skip
    return header + yaml.safe_dump_all([objects["configMap"], objects["pytorchJob"]],
                                       sort_keys=False)  # fmt: skip
