"""What ``run --emulate vertex`` reproduces: AIP_* locations as gs:// URIs read through a local
stand-in for the Cloud Storage FUSE mount (``/gcs/<bucket>/...``), and a one-pool CLUSTER_SPEC."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from ...contract import ENV_CHANNEL_PREFIX
from ..base import Emulation

if TYPE_CHECKING:
    from ...plan import Plan

FAKE_BUCKET = "local-bucket"  # the bucket name an emulated Vertex run sees under its /gcs mount


def emulation(plan: Plan, run_dir: Path, sources: dict[str, Path]) -> Emulation:
    base = f"gs://{FAKE_BUCKET}/{plan.job_name}"
    fuse = run_dir / "gcs"
    bucket_dir = fuse / FAKE_BUCKET / plan.job_name
    channels = {n: (src, bucket_dir / "data" / n) for n, src in sources.items()}
    env = {
        "GENAI_GCS_FUSE_ROOT": str(fuse),
        "AIP_MODEL_DIR": f"{base}/model/",
        "AIP_CHECKPOINT_DIR": f"{base}/checkpoints/",
        "AIP_TENSORBOARD_LOG_DIR": f"{base}/logs/",
        "CLOUD_ML_JOB_ID": plan.job_name,
        "CLUSTER_SPEC": json.dumps({"cluster": {"workerpool0": ["localhost:2222"]},
                                    "task": {"type": "workerpool0", "index": 0}}),
    }  # fmt: skip
    for name in channels:
        env[f"{ENV_CHANNEL_PREFIX}{name.upper()}"] = f"{base}/data/{name}"
    return Emulation(code_dir=run_dir / "code", model_dir=bucket_dir / "model",
                     checkpoint_dir=bucket_dir / "checkpoints", output_dir=bucket_dir / "output",
                     channels=channels, env=env)  # fmt: skip
