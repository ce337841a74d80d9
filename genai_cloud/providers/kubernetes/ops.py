"""Submit, status, logs, cancel and list a PyTorchJob through the Kubernetes API.

The ``kubernetes`` client is imported on first use (``pip install 'genai-cloud[kubernetes]'``);
it reads the kubeconfig (``KUBECONFIG`` or ``~/.kube/config``, current context) or, inside a pod,
the service account. PyTorchJobs are custom objects (``CustomObjectsApi``); the bundle's
ConfigMap and the pods' logs are core objects (``CoreV1Api``).

A job id is ``<namespace>/pytorchjob/<name>``. Submit is describe-or-create by name (the plan's
name hashes the spec and bundle), so a retried submit finds the job it launched.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ...errors import ProviderError, require
from ..base import JobHandle, JobState, JobStatus
from .render import API_VERSION, CONTAINER, KEY_LABEL, PLURAL, bundle_name

if TYPE_CHECKING:
    from ...plan import Plan

GROUP, _, VERSION = API_VERSION.partition("/")
_JOB_ID = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?)/pytorchjob/([a-z0-9]([-a-z0-9]*[a-z0-9])?)$")
# The operator's job conditions (JobConditionType) -> ours; the newest true condition wins.
STATES = {
    "Created": JobState.PENDING,
    "Running": JobState.RUNNING,
    "Restarting": JobState.RUNNING,
    "Suspended": JobState.STOPPED,
    "Succeeded": JobState.SUCCEEDED,
    "Failed": JobState.FAILED,
}
LOGIN_HINT = ("Point kubectl at the cluster (KUBECONFIG, or `aws eks update-kubeconfig` / "
              "`gcloud container clusters get-credentials` / `az aks get-credentials`).")  # fmt: skip


def apis():
    """(CustomObjectsApi, CoreV1Api) for the current kubeconfig context, or in-cluster."""
    kubernetes = require("kubernetes", "kubernetes")
    from kubernetes.config import ConfigException

    try:
        kubernetes.config.load_kube_config()
    except ConfigException as no_kubeconfig:
        try:
            kubernetes.config.load_incluster_config()
        except ConfigException:
            raise ProviderError(f"no kubeconfig ({no_kubeconfig}) and not inside a pod. "
                                f"{LOGIN_HINT}",
                                headline="Kubernetes credentials not found") from None  # fmt: skip
    return kubernetes.client.CustomObjectsApi(), kubernetes.client.CoreV1Api()


def job_id(namespace: str, name: str) -> str:
    return f"{namespace}/pytorchjob/{name}"


def parse_job_id(value: str) -> tuple[str, str]:
    """``<namespace>/pytorchjob/<name>`` -> (namespace, name)."""
    match = _JOB_ID.match(value)
    if not match:
        raise ProviderError(f"{value!r} is not a Kubernetes job id; give "
                            "<namespace>/pytorchjob/<name> as `submit` prints it",
                            headline="Bad job id")  # fmt: skip
    return match.group(1), match.group(3)


def _api_exception() -> type[Exception]:
    """The client's error for an HTTP answer the API server refused (``.status``, ``.reason``)."""
    from kubernetes.client.exceptions import ApiException

    return ApiException


def _status_code(exc: BaseException) -> int | None:
    return getattr(exc, "status", None)


def _get(custom, namespace: str, name: str) -> dict | None:
    try:
        return custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    except _api_exception() as exc:
        if _status_code(exc) == 404:
            return None
        raise _api_error(exc, f"reading PyTorchJob {namespace}/{name}") from None


def to_status(job: dict) -> JobStatus:
    meta = job.get("metadata", {})
    conditions = [c for c in (job.get("status") or {}).get("conditions") or []
                  if c.get("status") == "True"]  # fmt: skip
    last = conditions[-1] if conditions else {}
    native = last.get("type", "Created")
    return JobStatus(
        job_id=job_id(meta.get("namespace", "default"), meta.get("name", "")),
        state=STATES.get(native, JobState.PENDING), native_state=native,
        message=last.get("message"),
        details={"name": meta.get("name"), "created": meta.get("creationTimestamp"),
                 "started": (job.get("status") or {}).get("startTime"),
                 "ended": (job.get("status") or {}).get("completionTime"),
                 "labels": meta.get("labels") or {}},
    )  # fmt: skip


def _handle(job: dict, *, created: bool) -> JobHandle:
    meta = job["metadata"]
    return JobHandle(provider="kubernetes", job_id=job_id(meta["namespace"], meta["name"]),
                     name=meta["name"], created=created)  # fmt: skip


def _api_error(exc: BaseException, doing: str) -> Exception:
    """An API refusal as one line naming what was being done."""
    code = _status_code(exc)
    reason = getattr(exc, "reason", "") or ""
    if code in (401, 403):
        return ProviderError(f"{doing}: {code} {reason}. Check the kubeconfig's user may do "
                             f"this in the namespace. {LOGIN_HINT}",
                             headline="Kubernetes access denied")  # fmt: skip
    if code == 404 and "pytorchjob" in doing.lower():
        return ProviderError(f"{doing}: 404 {reason}: is the Kubeflow Training Operator "
                             "installed (CRD pytorchjobs.kubeflow.org)?",
                             headline="Kubernetes error")  # fmt: skip
    return ProviderError(f"{doing}: {code} {reason}", headline="Kubernetes error")


class KubernetesOps:
    """The Kubernetes API calls of one ``KubernetesProvider``: the kubeconfig is read and the
    API clients are made once, on first use."""

    def __init__(self):
        self._apis = None

    def apis(self):
        """(CustomObjectsApi, CoreV1Api), made on the first call (``apis`` above)."""
        if self._apis is None:
            self._apis = apis()
        return self._apis

    def find_existing(self, plan: Plan) -> tuple[JobHandle, JobStatus] | None:
        custom, _ = self.apis()
        found = _get(custom, plan.spec.kubernetes.namespace, plan.job_name)
        return None if found is None else (_handle(found, created=False), to_status(found))

    def submit(self, plan: Plan, objects: dict) -> JobHandle:
        """Create the bundle's ConfigMap, then the PyTorchJob (describe-or-create by name)."""
        custom, core = self.apis()
        namespace = plan.spec.kubernetes.namespace
        found = _get(custom, namespace, plan.job_name)
        if found is not None:
            return _handle(found, created=False)
        try:
            core.create_namespaced_config_map(namespace, objects["configMap"])
        except _api_exception() as exc:
            if _status_code(exc) != 409:  # 409: an earlier try made it; its content is the same
                what = f"creating ConfigMap {namespace}/{bundle_name(plan)}"
                raise _api_error(exc, what) from None
        try:
            made = custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL,
                                                          objects["pytorchJob"])  # fmt: skip
        except _api_exception() as exc:
            if _status_code(exc) == 409:  # a concurrent submit of the same plan won the race
                return _handle(_get(custom, namespace, plan.job_name) or objects["pytorchJob"],
                               created=False)  # fmt: skip
            raise _api_error(exc, f"creating PyTorchJob {namespace}/{plan.job_name}") from None
        return _handle(made, created=True)

    def status(self, value: str) -> JobStatus:
        namespace, name = parse_job_id(value)
        custom, _ = self.apis()
        found = _get(custom, namespace, name)
        if found is None:
            raise ProviderError(f"no PyTorchJob {name} in namespace {namespace}",
                                headline="Unknown job")  # fmt: skip
        return to_status(found)

    def cancel(self, value: str) -> None:
        """Delete the job (its pods go with it) and its bundle's ConfigMap."""
        namespace, name = parse_job_id(value)
        custom, core = self.apis()
        try:
            custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name,
                                                   propagation_policy="Foreground")  # fmt: skip
        except _api_exception() as exc:
            if _status_code(exc) == 404:
                raise ProviderError(f"no PyTorchJob {name} in namespace {namespace}",
                                    headline="Unknown job") from None  # fmt: skip
            raise _api_error(exc, f"deleting PyTorchJob {namespace}/{name}") from None
        try:
            core.delete_namespaced_config_map(f"{name}-bundle", namespace)
        except _api_exception() as exc:
            if _status_code(exc) != 404:
                raise _api_error(exc, f"deleting ConfigMap {namespace}/{name}-bundle") from None

    def logs(self, value: str, follow: bool = False) -> Iterator[str]:
        """The master pod's log (rank 0 writes the job's progress)."""
        namespace, name = parse_job_id(value)
        _, core = self.apis()
        pod = f"{name}-master-0"  # the operator's pod name: <job>-<replica type>-<index>
        try:
            if follow:
                from kubernetes import watch

                yield from watch.Watch().stream(core.read_namespaced_pod_log, name=pod,
                                                namespace=namespace,
                                                container=CONTAINER)  # fmt: skip
                return
            text = core.read_namespaced_pod_log(name=pod, namespace=namespace, container=CONTAINER)
        except _api_exception() as exc:
            if _status_code(exc) in (400, 404):  # 400: the container has not started yet
                raise ProviderError(f"no log for {pod} in {namespace} yet (pod not found or not "
                                    "started)", headline="No log yet") from None  # fmt: skip
            raise _api_error(exc, f"reading the log of {namespace}/{pod}") from None
        yield from text.splitlines()

    def list(self, labels: dict[str, str], namespace: str = "default") -> list[JobStatus]:
        """genai-cloud PyTorchJobs in ``namespace`` carrying every ``labels`` pair, newest first."""
        custom, _ = self.apis()
        selector = ",".join([KEY_LABEL, *(f"{k}={v}" for k, v in sorted(labels.items()))])
        try:
            answer = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL,
                                                          label_selector=selector)  # fmt: skip
        except _api_exception() as exc:
            raise _api_error(exc, f"listing PyTorchJobs in {namespace}") from None
        statuses = [to_status(job) for job in answer.get("items", [])]
        return sorted(statuses, key=lambda s: s.details.get("created") or "", reverse=True)
