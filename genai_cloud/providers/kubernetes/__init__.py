"""Kubernetes: a Kubeflow Training Operator ``PyTorchJob`` on any cluster (EKS, GKE, AKS, on-prem).

The provider object (here), its pure render (``render.py``) and its operations through the
Kubernetes API (``ops.py``, imported on first use). ``run --emulate kubernetes`` gives a local run
the environment the operator gives the master pod.
"""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from ... import contract
from ...bundle import LAUNCHER
from ..base import CloudProvider, Emulation, Feature
from .render import KUBERNETES_NAMES, MASTER_PORT, render, render_yaml

if TYPE_CHECKING:
    from ...plan import Plan
    from ...spec import JobSpec

_JOB_ID = re.compile(r"^[a-z0-9][-a-z0-9]*/pytorchjob/[a-z0-9][-a-z0-9]*$")


class KubernetesProvider(CloudProvider):
    """A PyTorchJob per job: ``submit`` creates the bundle's ConfigMap and the job by name."""

    name = "kubernetes"
    install_extra = "kubernetes"
    login = ("Kubernetes",
             "Point kubectl at the cluster (KUBECONFIG or ~/.kube/config), or run in a pod.")
    name_rules = KUBERNETES_NAMES
    region_fields: ClassVar[tuple[str, ...]] = ()  # a cluster is named by the kubeconfig context
    fixed_region = "a Kubernetes job runs on the cluster of the kubeconfig's current context"
    billed = False  # the cluster's machines are paid for whether the job runs or not
    unsupported: ClassVar[dict[Feature, str]] = {
        Feature.TPU: "a PyTorchJob schedules GPUs or CPUs; run TPU slices on provider 'vertex'",
        Feature.FLEX_START: "FLEX_START is a Vertex AI scheduling strategy",
        Feature.NETWORK_ISOLATION: (
            "egress is the cluster's NetworkPolicy, set by its admins, not per job"),
        Feature.VPC: "the cluster's network is the nodes'; aws.subnets / gcp.network do not apply",
        Feature.CUSTOMER_MANAGED_KEYS: (
            "encryption at rest belongs to the cluster's storage classes and etcd"),
    }

    def make_ops(self):  # the client, imported on first use: render never needs it
        from .ops import KubernetesOps

        return KubernetesOps()

    def render(self, plan: Plan) -> dict:
        return render(plan)

    def render_native(self, plan: Plan, path: str | os.PathLike | None = None) -> str:
        return render_yaml(plan, path)

    def not_configured_reason(self, spec: JobSpec | None = None) -> str | None:
        """The client is installed and a kubeconfig (or a pod's service account) exists."""
        if importlib.util.find_spec("kubernetes") is None:
            return "kubernetes is not installed (pip install 'genai-cloud[kubernetes]')"
        config = os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
        in_pod = bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
        if not in_pod and not any(Path(p).is_file() for p in config.split(os.pathsep)):
            return "no kubeconfig (KUBECONFIG or ~/.kube/config) and not inside a pod"
        return None

    def mounted_paths(self, spec: JobSpec) -> list[str]:
        """Where the pods mount the spec's volumes: data named there is on the cluster."""
        return list(spec.kubernetes.volumes.values())

    def owns_job_id(self, job_id: str) -> bool:
        return bool(_JOB_ID.match(job_id))

    def emulation(self, plan: Plan, run_dir: Path, sources: dict[str, Path]) -> Emulation:
        """The master pod of a one-node, one-process PyTorchJob: the operator's variables
        (training-operator pkg/controller.v1/pytorch/envvar.go, master.go; the master's
        address is localhost here, ``<job>-master-0`` in a cluster) and the render's paths,
        with the pod's volumes as folders of the run directory."""
        code_dir = run_dir / "workspace" / "code"
        out = run_dir / "volume" / plan.job_name
        channels = {n: (src, run_dir / "volume" / "data" / n) for n, src in sources.items()}
        operator = {
            "MASTER_ADDR": "localhost", "MASTER_PORT": str(MASTER_PORT),
            "PET_MASTER_ADDR": "localhost", "PET_MASTER_PORT": str(MASTER_PORT),
            "WORLD_SIZE": "1", "RANK": "0", "PET_NODE_RANK": "0",
            "PET_NNODES": "1", "PET_NPROC_PER_NODE": "1", "PYTHONUNBUFFERED": "1",
        }  # fmt: skip
        env = {
            **operator,
            contract.ENV_PLATFORM: "kubernetes",
            contract.ENV_SPEC: str(code_dir / "spec.json"),
            contract.ENV_MODEL_DIR: str(out / "model"),
            contract.ENV_CHECKPOINT_DIR: str(out / "checkpoints"),
            contract.ENV_OUTPUT_DIR: str(out / "output"),
        }
        for name, (_, dest) in channels.items():
            env[f"{contract.ENV_CHANNEL_PREFIX}{name.upper()}"] = str(dest)
        return Emulation(code_dir=code_dir, model_dir=out / "model",
                         checkpoint_dir=out / "checkpoints", output_dir=out / "output",
                         channels=channels, env=env, entry=[LAUNCHER])  # fmt: skip


__all__ = ["KubernetesProvider"]
