"""The neutral in-container contract: where the entrypoint finds its spec, data and output dirs.

Every platform says the same things differently:

=============  ==========================  ==========================  ===========================
what           SageMaker                   Vertex AI                   Azure ML / local
=============  ==========================  ==========================  ===========================
spec           bundle root ``spec.json``   bundle root ``spec.json``   ``--spec`` / bundle root
data channel   ``SM_CHANNEL_<NAME>``       ``GENAI_CHANNEL_<NAME>``    ``--data name=PATH``
model dir      ``SM_MODEL_DIR``            ``AIP_MODEL_DIR``           ``--model-dir``
checkpoints    ``/opt/ml/checkpoints``     ``AIP_CHECKPOINT_DIR``      ``--checkpoint-dir``
other outputs  ``SM_OUTPUT_DATA_DIR``      ``<base>/output``           ``--output-dir``
rank / world   torchrun ``RANK``...        ``CLUSTER_SPEC`` + torchrun  torchrun / ``RANK``...
=============  ==========================  ==========================  ===========================

Explicit command-line flags always win, then the platform's variables, then neutral ``GENAI_*``
variables. ``gs://`` locations are read through the Cloud Storage FUSE mount ``/gcs/<bucket>/``.

This module is imported by both the SDK (``genai_cloud.contract``) and the entrypoint inside the
container, so it depends on the standard library only.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse

PLATFORMS = ("local", "sagemaker", "vertex", "azureml", "kubernetes")
BUNDLE_ROOT = Path(__file__).resolve().parent.parent
GCS_FUSE_ROOT = Path(os.environ.get("GENAI_GCS_FUSE_ROOT", "/gcs"))

# Neutral variable names the local runner sets and any platform may set.
ENV_PLATFORM = "GENAI_PLATFORM"
ENV_SPEC = "GENAI_SPEC"
ENV_MODEL_DIR = "GENAI_MODEL_DIR"
ENV_CHECKPOINT_DIR = "GENAI_CHECKPOINT_DIR"
ENV_OUTPUT_DIR = "GENAI_OUTPUT_DIR"
ENV_CHANNEL_PREFIX = "GENAI_CHANNEL_"


# Spec fields naming a file or folder the job reads -> the input channel a platform delivers it
# through (a SageMaker channel, an Azure ML input; Vertex reads gs:// through its FUSE mount
# instead). The providers build their inputs from this table and the job looks the fields up
# through the same names, so the two sides cannot drift apart. Data and model fields have readers
# of their own (common/data.py, common/model.py, distill.load_teacher); the rest are files the
# recipes open by path, which ``localize_files`` points at the delivered copies.
DATA_CHANNELS = {("data", "train"): "train", ("data", "eval"): "eval"}
MODEL_CHANNELS = {("model", "name_or_path"): "model", ("distill", "teacher"): "teacher",
                  ("dpo", "reference"): "reference"}  # fmt: skip
FILE_CHANNELS = {
    ("evaluate", "generated_images"): "generated",
    ("evaluate", "real_images"): "real",
    ("evaluate", "feature_extractor"): "feature_extractor",
    ("audit", "lexicon"): "lexicon",
    ("fairness", "pairs"): "pairs",
    ("training", "resume_from"): "resume",
}
INPUT_CHANNELS = {**DATA_CHANNELS, **MODEL_CHANNELS, **FILE_CHANNELS}


@dataclass
class Contract:
    platform: str
    spec_path: Path
    channels: dict[str, Path]
    model_dir: Path
    checkpoint_dir: Path
    output_dir: Path
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    extra: dict = field(default_factory=dict)

    @property
    def is_main(self) -> bool:
        """Only rank 0 writes outputs."""
        return self.rank == 0

    def channel(self, name: str) -> Path | None:
        return self.channels.get(name)

    def locate(self, channel: str, value: str) -> Path:
        """Where the job opens the file or folder a spec field names: the copy delivered in
        ``channel`` when the platform made one, else ``value`` itself (gs:// via the FUSE mount).

        SageMaker copies an S3 object into a folder named after its channel, so a field naming a
        file (``s3://b/inception.pt2``) is found as that file inside the channel's folder.
        """
        delivered = self.channel(channel)
        if delivered is None:
            return gcs_to_fuse(value)
        inside = delivered / PurePosixPath(value.rstrip("/")).name
        return inside if delivered.is_dir() and inside.is_file() else delivered

    def localize_files(self, spec: dict) -> None:
        """Point each ``FILE_CHANNELS`` field of ``spec`` at where this job can open it."""
        for (section, name), channel in FILE_CHANNELS.items():
            values = spec.get(section) or {}
            if values.get(name):
                values[name] = str(self.locate(channel, values[name]))


def gcs_to_fuse(uri: str) -> Path:
    """``gs://bucket/a/b`` -> ``/gcs/bucket/a/b`` (Vertex mounts every bucket there)."""
    if not uri.startswith("gs://"):
        return Path(uri)
    return GCS_FUSE_ROOT / uri[len("gs://") :]


def detect_platform(env: dict[str, str]) -> str:
    if env.get(ENV_PLATFORM) in PLATFORMS:
        return env[ENV_PLATFORM]
    if "SM_MODEL_DIR" in env or "SM_TRAINING_ENV" in env:
        return "sagemaker"
    if "AIP_MODEL_DIR" in env or "CLOUD_ML_JOB_ID" in env:
        return "vertex"
    if "AZUREML_RUN_ID" in env or "AZUREML_JOB_ID" in env or "AZUREML_RUN_TOKEN" in env:
        return "azureml"
    return "local"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    import argparse  # here, not at the top: the SDK imports this module's tables on `render`

    parser = argparse.ArgumentParser(prog="job_templates.entrypoint")
    parser.add_argument("--spec", help="Path to spec.json (default: the bundle's own).")
    parser.add_argument("--data", action="append", default=[], metavar="NAME=PATH")
    parser.add_argument("--model-dir")
    parser.add_argument("--checkpoint-dir")
    parser.add_argument("--output-dir")
    parser.add_argument("--preempt-at", type=int, default=None,
                        help="Simulate an eviction (SIGTERM) at this step.")  # fmt: skip
    # SageMaker's toolkit passes hyperparameters as --key value; we carry none, ignore strays.
    args, _unknown = parser.parse_known_args(argv)
    return args


def resolve(argv: list[str] | None = None, env: dict[str, str] | None = None) -> Contract:
    """Work out the contract from flags and the environment of this process."""
    env = dict(os.environ if env is None else env)
    args = parse_args(argv)
    platform = detect_platform(env)
    reader = {
        "sagemaker": _sagemaker,
        "vertex": _vertex,
        "azureml": _neutral,
        "kubernetes": _neutral,  # the render names every path in GENAI_* variables
        "local": _neutral,
    }[platform]
    paths = reader(env)

    channels = paths.pop("channels")
    channels.update(_neutral_channels(env))
    for item in args.data:
        name, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--data expects NAME=PATH, got {item!r}")
        channels[name] = gcs_to_fuse(value)

    spec = args.spec or env.get(ENV_SPEC) or _default_spec()
    model_dir = args.model_dir or env.get(ENV_MODEL_DIR) or paths["model_dir"]
    checkpoint_dir = args.checkpoint_dir or env.get(ENV_CHECKPOINT_DIR) or paths["checkpoint_dir"]
    output_dir = args.output_dir or env.get(ENV_OUTPUT_DIR) or paths["output_dir"]

    rank, local_rank, world = _ranks(env)
    return Contract(
        platform=platform,
        spec_path=gcs_to_fuse(str(spec)),
        channels=channels,
        model_dir=gcs_to_fuse(str(model_dir)),
        checkpoint_dir=gcs_to_fuse(str(checkpoint_dir)),
        output_dir=gcs_to_fuse(str(output_dir)),
        rank=rank,
        local_rank=local_rank,
        world_size=world,
        extra={"preempt_at": args.preempt_at},
    )


def _default_spec() -> Path:
    for candidate in (Path.cwd() / "spec.json", BUNDLE_ROOT / "spec.json"):
        if candidate.is_file():
            return candidate
    return BUNDLE_ROOT / "spec.json"


def _sagemaker(env: dict[str, str]) -> dict:
    model_dir = Path(env.get("SM_MODEL_DIR", "/opt/ml/model"))
    names = json.loads(env.get("SM_CHANNELS", "[]"))
    channels = {name: Path(env[f"SM_CHANNEL_{name.upper()}"]) for name in names
                if f"SM_CHANNEL_{name.upper()}" in env}  # fmt: skip
    for key, value in env.items():
        if key.startswith("SM_CHANNEL_") and key != "SM_CHANNELS":
            channels.setdefault(key[len("SM_CHANNEL_") :].lower(), Path(value))
    return {
        "channels": channels,
        "model_dir": model_dir,
        # CheckpointConfig.LocalPath is /opt/ml/checkpoints: a sibling of the model dir.
        "checkpoint_dir": model_dir.parent / "checkpoints",
        "output_dir": Path(env.get("SM_OUTPUT_DATA_DIR", model_dir.parent / "output" / "data")),
    }


def _vertex(env: dict[str, str]) -> dict:
    model_dir = env.get("AIP_MODEL_DIR", "/tmp/genai/model")
    base = model_dir.rstrip("/").rsplit("/", 1)[0] if "/" in model_dir.rstrip("/") else model_dir
    return {
        "channels": {},
        "model_dir": model_dir,
        "checkpoint_dir": env.get("AIP_CHECKPOINT_DIR", f"{base}/checkpoints"),
        "output_dir": f"{base}/output",
    }


def _neutral(env: dict[str, str]) -> dict:
    root = Path.cwd()
    return {
        "channels": {},
        "model_dir": root / "model",
        "checkpoint_dir": root / "checkpoints",
        "output_dir": root / "output",
    }


def _neutral_channels(env: dict[str, str]) -> dict[str, Path]:
    return {
        key[len(ENV_CHANNEL_PREFIX) :].lower(): gcs_to_fuse(value)
        for key, value in env.items()
        if key.startswith(ENV_CHANNEL_PREFIX)
    }


def _ranks(env: dict[str, str]) -> tuple[int, int, int]:
    """torchrun (and Azure's PyTorch distribution) set RANK / LOCAL_RANK / WORLD_SIZE."""
    rank = int(env.get("RANK", 0))
    local_rank = int(env.get("LOCAL_RANK", 0))
    world = int(env.get("WORLD_SIZE", 1))
    return rank, local_rank, world
