"""The provider interface, the feature matrix and the registry.

A provider is a small stateless object: ``render(plan)`` is pure (no network, no credentials) and
returns exactly the request ``submit`` sends. Clients are created inside ``submit``/``status``/...
so that importing a provider module never imports its cloud SDK.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from ..errors import ProviderError, UnsupportedFeatureError
from ..naming import DEFAULT_NAMES, NameRules

if TYPE_CHECKING:
    from ..plan import Plan
    from ..spec import JobSpec


class Feature(str, Enum):
    GPU = "gpu"
    TPU = "tpu"
    MULTI_GPU = "multi-gpu"
    MULTI_NODE = "multi-node"
    SPOT = "spot"
    FLEX_START = "flex-start"
    VPC = "vpc"
    NETWORK_ISOLATION = "network-isolation"
    CUSTOMER_MANAGED_KEYS = "customer-managed-keys"
    SECRETS = "secrets"


def required_features(spec: JobSpec) -> set[Feature]:
    """What a spec asks of the platform it runs on: the neutral sections' asks, and what each
    registered provider's own section asks (``Provider.section_features``)."""
    needed: set[Feature] = set()
    compute = spec.compute
    if compute.is_gpu:
        needed.add(Feature.GPU)
    if compute.is_tpu:
        needed.add(Feature.TPU)
    if compute.count > 1 and not compute.is_tpu:
        needed.add(Feature.MULTI_GPU)
    if compute.nodes > 1:
        needed.add(Feature.MULTI_NODE)
    if compute.spot:
        needed.add(Feature.SPOT)
    if spec.secrets:
        needed.add(Feature.SECRETS)
    for name in provider_names():
        needed |= provider_class(name).section_features(spec)
    return needed


# The spec field that asks for each feature: unsupported-feature errors name it.
FEATURE_FIELDS = {
    Feature.GPU: "compute.accelerator", Feature.TPU: "compute.accelerator",
    Feature.MULTI_GPU: "compute.count", Feature.MULTI_NODE: "compute.nodes",
    Feature.SPOT: "compute.spot", Feature.FLEX_START: "gcp.strategy",
    Feature.VPC: "aws.subnets / gcp.network", Feature.NETWORK_ISOLATION: "aws.network_isolation",
    Feature.CUSTOMER_MANAGED_KEYS: "aws.kms_key_id / aws.volume_kms_key_id / gcp.kms_key_name",
    Feature.SECRETS: "secrets",
}  # fmt: skip


@dataclass
class Emulation:
    """Where a provider's container puts the code, inputs and outputs, and the environment and
    arguments it gives the job: what ``run --emulate <provider>`` reproduces in a run folder."""

    code_dir: Path
    model_dir: Path
    checkpoint_dir: Path
    output_dir: Path
    channels: dict[str, tuple[Path, Path]]  # name -> (source file/dir, where the job sees it)
    env: dict[str, str] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)  # after the entry point
    entry: list[str] = field(default_factory=lambda: ["-m", "job_templates.entrypoint"])
    extra_files: dict[Path, str] = field(default_factory=dict)


class JobState(str, Enum):
    """The states every provider's native states map onto."""

    PENDING = "pending"
    RUNNING = "running"
    STOPPING = "stopping"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    STOPPED = "stopped"

    @property
    def done(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.STOPPED)


@dataclass
class JobHandle:
    """What ``submit`` returns at once: enough to ask for status, logs or cancel later."""

    provider: str
    job_id: str
    name: str
    created: bool = True  # False when an identical job already existed (idempotent submit)
    console_url: str | None = None
    details: dict = field(default_factory=dict)


@dataclass
class JobStatus:
    job_id: str
    state: JobState
    native_state: str
    message: str | None = None
    details: dict = field(default_factory=dict)


# The cloud SDKs' "no usable credentials" exceptions, by class name so that nothing is imported:
# google.auth DefaultCredentialsError / RefreshError, azure.core ClientAuthenticationError,
# azure.identity CredentialUnavailableError, botocore NoCredentialsError / PartialCredentialsError.
_CREDENTIAL_ERRORS = {
    "DefaultCredentialsError", "RefreshError", "ClientAuthenticationError",
    "CredentialUnavailableError", "NoCredentialsError", "PartialCredentialsError",
}  # fmt: skip


def _credentials_problem(exc: BaseException, cloud: str, fix: str) -> ProviderError | None:
    names = {cls.__name__ for cls in type(exc).__mro__}
    if not names & _CREDENTIAL_ERRORS:
        return None
    first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return ProviderError(f"{first_line[:300]}\n{fix}", headline=f"{cloud} credentials not found")


def credentials_hint(cloud: str, fix: str):
    """Decorate a provider operation so that a missing-credentials error from the cloud SDK
    becomes one clear ``ProviderError`` saying how to log in (generators are guarded too)."""

    def decorate(operation):
        def guard_iteration(items):
            try:
                yield from items
            except Exception as exc:
                problem = _credentials_problem(exc, cloud, fix)
                if problem is None:
                    raise
                raise problem from None

        @functools.wraps(operation)
        def guarded(*args, **kwargs):
            try:
                result = operation(*args, **kwargs)
            except Exception as exc:
                problem = _credentials_problem(exc, cloud, fix)
                if problem is None:
                    raise
                raise problem from None
            return guard_iteration(result) if inspect.isgenerator(result) else result

        return guarded

    return decorate


class Provider:
    """Base class: subclasses set ``name`` and implement the five operations.

    ``unsupported`` maps each feature the provider cannot do to the reason, shown to the user in
    one sentence before anything is rendered.
    """

    name: ClassVar[str]
    install_extra: ClassVar[str | None] = None
    name_rules: ClassVar[NameRules] = DEFAULT_NAMES
    unsupported: ClassVar[dict[Feature, str]] = {}
    billed: ClassVar[bool] = True  # runs on paid machines: budget.max_usd is checked at submit

    # Where a job runs: the spec fields that pin the region, in order ("section.field"), and the
    # environment variables the provider's SDK reads for its default region.
    region_fields: ClassVar[tuple[str, ...]] = ("compute.region",)
    region_env: ClassVar[tuple[str, ...]] = ()
    # Why a compute.fallback entry may not move this provider's job to another region (None:
    # it may).
    fixed_region: ClassVar[str | None] = None

    @classmethod
    def section_features(cls, spec: JobSpec) -> set[Feature]:
        """The features this provider's own spec section asks for (``gcp.strategy: SPOT`` ...),
        whichever provider the spec then runs on."""
        return set()

    def uses_spot(self, spec: JobSpec) -> bool:
        """Whether the spec runs on spot / preemptible capacity here."""
        return spec.compute.spot

    def billed_machines(self, spec: JobSpec, instance) -> int:
        """Machines billed for one job (one per node unless the provider says otherwise)."""
        return spec.compute.nodes

    def not_configured_reason(self, spec: JobSpec | None = None) -> str | None:
        """None when this provider is usable from here (SDK installed, credentials or a workspace
        found, offline), else why not: which providers ``status`` / ``list`` ask by default."""
        return None

    def owns_job_id(self, job_id: str) -> bool:
        """Whether a job id has this provider's shape (a bare name belongs to nobody)."""
        return False

    def job_region(self, status: JobStatus) -> str | None:
        """The region a listed job ran in, from its status."""
        return status.details.get("region")

    def job_instance_type(self, status: JobStatus) -> str | None:
        """The catalog instance type a listed job ran on, from its status."""
        return status.details.get("instance_type")

    def find_existing(self, plan: Plan) -> tuple[JobHandle, JobStatus] | None:
        """The job an earlier submit of ``plan`` launched, with its status; None if there is
        none (or the provider cannot look one up)."""
        return None

    def placement_problem_in_status(self, status: JobStatus) -> str | None:
        """'capacity: ...' (or quota / spot) when a failed or stopped job died for want of
        machines, else None."""
        return None

    def emulation(self, plan: Plan, run_dir: Path, sources: dict[str, Path]) -> Emulation | None:
        """How ``run --emulate <this provider>`` lays out a local run in ``run_dir`` as this
        provider's container would, for the inputs ``sources`` (name -> local file or folder);
        None when it cannot be emulated this way (see ``emulator``)."""
        return None

    def mounted_paths(self, spec: JobSpec) -> list[str]:
        """Folders this provider's jobs see that are not on this machine (a Kubernetes
        volume's mount path): ``validate`` does not look for local files under them."""
        return []

    def emulator(self):
        """A runner that executes this provider's *rendered* job as its container would:
        ``run(spec, *, run_dir, python, outs) -> (exit status, LocalLayout of the first node)``
        (the clouds' own toolkits and launchers, every node). None: ``emulation`` lays the run
        out instead."""
        return None

    def check_features(self, spec: JobSpec) -> None:
        for feature in sorted(required_features(spec), key=lambda f: f.value):
            if feature in self.unsupported:
                raise UnsupportedFeatureError(
                    f"{FEATURE_FIELDS[feature]}: {self.name} cannot run this spec: "
                    f"{feature.value} is not supported ({self.unsupported[feature]})."
                )

    def render(self, plan: Plan) -> dict:
        raise NotImplementedError

    def write_native_bundle(self, plan: Plan, folder: Path) -> Path:
        """Put the bundle where the native file (``render --format native -o``) expects it."""
        return plan.bundle.write(folder)

    def render_native(self, plan: Plan, path: str | Path | None = None) -> str:
        """The file the provider's own CLI takes (JSON or YAML text); ``path``, where it will be
        written, lets a header name it in the command that submits it."""
        import json

        return json.dumps(self.render(plan), indent=2, sort_keys=True)

    def submit(self, plan: Plan) -> JobHandle:
        raise self._not_implemented("submit")

    def status(self, job_id: str) -> JobStatus:
        raise self._not_implemented("status")

    def logs(self, job_id: str, follow: bool = False) -> Iterator[str]:
        raise self._not_implemented("logs")

    def cancel(self, job_id: str) -> None:
        raise self._not_implemented("cancel")

    def register(self, plan: Plan) -> str:
        """Register the finished job's model (``output.register``) in the provider's model
        registry; returns what it registered (an ARN, a resource name)."""
        raise ProviderError(f"registering models is not built for {self.name} yet",
                            headline="Not supported")  # fmt: skip

    def _not_implemented(self, operation: str) -> ProviderError:
        return ProviderError(
            f"`{operation}` is not implemented for provider {self.name!r} yet.",
            headline="Not implemented",
        )



class CloudProvider(Provider):
    """A provider whose operations are a cloud client's: ``make_ops`` builds the ops object on
    first use (so ``render`` never imports the SDK), and each operation forwards to it. ``login``
    (the cloud's name, how to log in) turns the SDK's missing-credentials errors into that hint;
    None where the ops object words them itself."""

    login: ClassVar[tuple[str, str] | None] = None

    def __init__(self):
        self._ops = None

    def make_ops(self):
        raise NotImplementedError

    @property
    def ops(self):
        if self._ops is None:
            self._ops = self.make_ops()
        return self._ops

    def _call(self, operation: str, *args, **kwargs):
        call = getattr(self.ops, operation)
        if self.login is not None:
            call = credentials_hint(*self.login)(call)
        return call(*args, **kwargs)

    def submit(self, plan: Plan) -> JobHandle:
        return self._call("submit", plan, self.render(plan))

    def status(self, job_id: str) -> JobStatus:
        return self._call("status", job_id)

    def logs(self, job_id: str, follow: bool = False) -> Iterator[str]:
        return self._call("logs", job_id, follow=follow)

    def cancel(self, job_id: str) -> None:
        self._call("cancel", job_id)

    def list(self, labels: dict[str, str] | None = None, *scope, **named_scope) -> list[JobStatus]:
        """genai-cloud jobs carrying every ``labels`` pair, newest first, in the scope the
        cloud's ops take (a region, a project, a namespace)."""
        return self._call("list", labels or {}, *scope, **named_scope)

    def find_existing(self, plan: Plan) -> tuple[JobHandle, JobStatus] | None:
        return self._call("find_existing", plan)

    def register(self, plan: Plan) -> str:
        if not hasattr(self.ops, "register"):  # a cloud without a model registry of its own
            return super().register(plan)
        return self._call("register", plan)

# name -> "module:Class". Modules are imported only when a provider is asked for by name.
_REGISTRY: dict[str, str] = {
    "local": "genai_cloud.providers.local:LocalProvider",
    "sagemaker": "genai_cloud.providers.sagemaker:SageMakerProvider",
    "vertex": "genai_cloud.providers.vertex:VertexProvider",
    "azureml": "genai_cloud.providers.azureml:AzureMLProvider",
    "kubernetes": "genai_cloud.providers.kubernetes:KubernetesProvider",
}
_ALIASES = {"aws": "sagemaker", "gcp": "vertex", "google": "vertex", "azure": "azureml"}


def register(name: str, target: str) -> None:
    """Register a provider class by ``"module:Class"`` path."""
    _REGISTRY[name] = target


def provider_names() -> list[str]:
    return sorted(_REGISTRY)


def canonical_name(name: str) -> str:
    """``aws`` -> ``sagemaker`` and the like; other names lower-cased."""
    return _ALIASES.get(name.lower(), name.lower())


def get_provider(name: str) -> Provider:
    """The provider registered as ``name``; an unknown name lists the valid ones."""
    return provider_class(name)()


def provider_class(name: str) -> type[Provider]:
    """The class registered as ``name`` (its module imported now); an unknown name lists the
    valid ones."""
    key = canonical_name(name)
    target = _REGISTRY.get(key)
    if target is None:
        raise ProviderError(
            f"unknown provider {name!r}; valid providers: {', '.join(provider_names())}"
        )
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise ProviderError(
                f"provider {key!r} is not implemented yet.", headline="Not implemented"
            ) from None
        raise
    return getattr(module, class_name)
