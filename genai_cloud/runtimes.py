"""The runtime table: which image each cloud runs the job in, what that image ships, and the pinned
lock the job installs on top of it.

One row per provider x device kind. It is the single source for the renders (the image URI), for
the bundle (its ``requirements.txt`` is the row's lock), for Azure's environment (the conda spec
pins the same Python, torch and lock) and for the tests that replay the job on replicas of these
stacks (``python -m tests.stacks.build``). ``job_templates/`` supports every stack listed here.

Why these images (newest prebuilt training images each cloud publishes, checked 2026-12):

- SageMaker GPU: the Hugging Face training DLC ``2.11.0-transformers5.13.1`` (Hugging Face's
  "Available DLCs on AWS" page), torch and transformers preinstalled, so the lock reinstalls
  nothing heavy. The Hugging Face DLCs are GPU-only.
- SageMaker CPU: the PyTorch training DLC ``2.9.0-cpu-py312`` (aws/deep-learning-containers
  available_images: the newest SageMaker PyTorch training image); the lock adds transformers.
- Vertex AI: the newest prebuilt PyTorch training containers are 2.4 / Python 3.10
  (``pytorch-gpu.2-4.py310``; ``pytorch-xla.2-4.py310`` for CPU and TPU, it carries torch_xla).
  transformers 5 needs torch >= 2.6, so Vertex runs the last 4.x line (4.57).
- Azure ML: no image ships our stack, so the environment is a conda spec on Azure's OpenMPI base
  image (CUDA 12.8 for GPU, the wheel's own CUDA matches) pinning Python 3.12 and torch 2.9.1.

Overrides (``aws.image_uri``, ``gcp.image_uri``, ``azure.image``) still win; an image not in this
table gets a warning, and the job installs the lock of the row it replaces.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

LOCKS_DIR = Path(__file__).resolve().parent.parent / "job_templates" / "locks"
SOURCE_REQUIREMENTS = LOCKS_DIR.parent / "requirements.txt"  # top-level, unpinned: what locks solve
DEVICE_KINDS = ("gpu", "cpu", "tpu")


@dataclass(frozen=True)
class Runtime:
    """One image the job runs in and the pinned lock installed on top of it."""

    name: str  # provider-device, e.g. "sagemaker-gpu"
    provider: str
    device: str  # gpu / cpu / tpu
    image: str  # SageMaker: repository:tag (the registry host depends on the region)
    python: str  # the image's interpreter (major.minor)
    torch: str  # the torch the image ships (Azure: the one its conda spec pins)
    transformers: str | None  # preinstalled in the image, None when the lock brings it
    lock: str  # job_templates/locks/<lock>.txt; rows with the same stack share one
    secret_client: tuple[str, ...]  # the platform's secret SDK, added to the lock
    image_ships: tuple[str, ...] = ()  # what the image already has that the job imports
    solve_with: tuple[str, ...] = ()  # extra constraints when the lock is resolved (see below)
    source: str = ""  # where the image and its versions are published

    @property
    def lock_path(self) -> Path:
        return LOCKS_DIR / f"{self.lock}.txt"

    def lock_text(self) -> str:
        """The pinned requirements the job installs (the bundle's ``requirements.txt``)."""
        return self.lock_path.read_text()

    def lock_lines(self) -> list[str]:
        return [line.strip() for line in self.lock_text().splitlines()
                if line.strip() and not line.lstrip().startswith("#")]  # fmt: skip

    def pinned(self, package: str) -> str | None:
        """The version the lock pins for ``package`` (None when it is not in the lock)."""
        for line in self.lock_lines():
            name, _, version = line.partition("==")
            if _normalize(name) == _normalize(package):
                return version.split(";")[0].strip()
        return None


_SM_HF = "https://huggingface.co/docs/sagemaker/en/dlcs/available"
_SM_DLC = "https://aws.github.io/deep-learning-containers/reference/available_images/"
_VERTEX = "https://cloud.google.com/vertex-ai/docs/training/pre-built-containers"
_AZURE = "https://github.com/Azure/AzureML-Containers"
_VERTEX_REPO = "us-docker.pkg.dev/vertex-ai/training"
_GCP_SECRETS = ("google-cloud-secret-manager",)
_AZURE_SECRETS = ("azure-keyvault-secrets", "azure-identity")
# One transformers line for every stack with torch >= 2.6: the SageMaker GPU image's, so a CPU run
# anywhere behaves like the GPU job. Below torch 2.6 transformers 5 switches PyTorch off
# ("Disabling PyTorch because PyTorch >= 2.6 is required"), so Vertex keeps the 4.x line.
_TRANSFORMERS_5 = ("transformers==5.13.1",)
_TRANSFORMERS_4 = ("transformers<5",)
_SM_SHIPS = ("boto3", "sagemaker-training==5.1.4")

RUNTIMES: tuple[Runtime, ...] = (
    # The SageMaker DLCs ship the sagemaker-training toolkit (the program the container starts;
    # it installs the bundle's requirements.txt and runs the entrypoint) and its boto3. Pinned to
    # the version `--emulate sagemaker` is tested with, so a replica runs that emulation as is.
    Runtime("sagemaker-gpu", "sagemaker", "gpu",
            "huggingface-pytorch-training:2.11.0-transformers5.13.1-cu130-amzn2023",
            python="3.12", torch="2.11.0", transformers="5.13.1", lock="sagemaker-gpu",
            secret_client=(), image_ships=_SM_SHIPS, source=_SM_HF),
    Runtime("sagemaker-cpu", "sagemaker", "cpu",
            "pytorch-training:2.9.0-cpu-py312-ubuntu22.04-sagemaker",
            python="3.12", torch="2.9.0", transformers=None, lock="sagemaker-cpu",
            secret_client=(), image_ships=_SM_SHIPS, solve_with=_TRANSFORMERS_5, source=_SM_DLC),
    Runtime("vertex-gpu", "vertex", "gpu", f"{_VERTEX_REPO}/pytorch-gpu.2-4.py310:latest",
            python="3.10", torch="2.4.1", transformers=None, lock="vertex",
            secret_client=_GCP_SECRETS, solve_with=_TRANSFORMERS_4, source=_VERTEX),
    Runtime("vertex-cpu", "vertex", "cpu", f"{_VERTEX_REPO}/pytorch-xla.2-4.py310:latest",
            python="3.10", torch="2.4.1", transformers=None, lock="vertex",
            secret_client=_GCP_SECRETS, solve_with=_TRANSFORMERS_4, source=_VERTEX),
    # The same image as vertex-cpu: Vertex's pytorch-xla containers carry torch_xla for TPU VMs.
    Runtime("vertex-tpu", "vertex", "tpu", f"{_VERTEX_REPO}/pytorch-xla.2-4.py310:latest",
            python="3.10", torch="2.4.1", transformers=None, lock="vertex",
            secret_client=_GCP_SECRETS, image_ships=("torch_xla",), solve_with=_TRANSFORMERS_4,
            source=_VERTEX),
    Runtime("azureml-gpu", "azureml", "gpu",
            "mcr.microsoft.com/azureml/openmpi5.0-cuda12.8-ubuntu24.04:latest",
            python="3.12", torch="2.9.1", transformers=None, lock="azureml",
            secret_client=_AZURE_SECRETS, solve_with=_TRANSFORMERS_5, source=_AZURE),
    Runtime("azureml-cpu", "azureml", "cpu",
            "mcr.microsoft.com/azureml/openmpi5.0-ubuntu24.04:latest",
            python="3.12", torch="2.9.1", transformers=None, lock="azureml",
            secret_client=_AZURE_SECRETS, solve_with=_TRANSFORMERS_5, source=_AZURE),
)  # fmt: skip


def _normalize(name: str) -> str:
    return name.strip().lower().replace("_", "-").replace(".", "-")


def device_kind(spec) -> str:
    """gpu / cpu / tpu for a spec's compute section."""
    if spec.compute.is_tpu:
        return "tpu"
    return "gpu" if spec.compute.is_gpu else "cpu"


def runtime(provider: str, device: str) -> Runtime:
    """The table's row for ``provider`` on ``device``; a clear error naming the valid rows."""
    for row in RUNTIMES:
        if row.provider == provider and row.device == device:
            return row
    valid = ", ".join(f"{r.provider}/{r.device}" for r in RUNTIMES)
    raise KeyError(f"no runtime for {provider}/{device}; the table has: {valid}")


def for_spec(provider: str, spec) -> Runtime | None:
    """The row a spec runs on with ``provider`` (None for providers without images: local)."""
    device = device_kind(spec)
    rows = [r for r in RUNTIMES if r.provider == provider]
    if not rows:
        return None
    return next((r for r in rows if r.device == device), None) or runtime(provider, "cpu")


def stacks() -> dict[str, Runtime]:
    """One row per distinct lock (rows sharing a lock share a Python/torch stack)."""
    out: dict[str, Runtime] = {}
    for row in RUNTIMES:
        out.setdefault(row.lock, row)
    return out


# Spec field that replaces the table's image, per provider.
OVERRIDE_FIELDS = {"sagemaker": ("aws", "image_uri"), "vertex": ("gcp", "image_uri"),
                   "azureml": ("azure", "image")}  # fmt: skip


def _known_image(provider: str, image: str) -> bool:
    for row in RUNTIMES:
        if row.provider != provider:
            continue
        # SageMaker rows hold repository:tag; the URI adds the regional registry in front.
        if image == row.image or (provider == "sagemaker" and image.endswith("/" + row.image)):
            return True
    return False


def override_notes(spec, providers: list[str] | None = None) -> list[str]:
    """A warning per image override that is not in the runtime table."""
    notes = []
    for provider, (section, field) in OVERRIDE_FIELDS.items():
        if providers is not None and provider not in providers:
            continue
        image = getattr(getattr(spec, section), field, None)
        if not image or _known_image(provider, image):
            continue
        row = for_spec(provider, spec)
        notes.append(
            f"{section}.{field} {image!r} is not in the runtime table: the job still installs "
            f"the {row.name} lock (resolved for Python {row.python}, torch {row.torch}); an "
            f"image with another Python or torch may fail at start (tested images: the README's "
            f"runtime table)."
        )
    return notes
