"""What ``run --emulate sagemaker`` reproduces: the training toolkit's /opt/ml tree, its SM_*
variables and config files, and ``python <sagemaker_program>`` run from /opt/ml/code."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ...bundle import LAUNCHER
from ..base import Emulation

if TYPE_CHECKING:
    from ...plan import Plan


def emulation(plan: Plan, run_dir: Path, sources: dict[str, Path]) -> Emulation:
    spec = plan.spec
    ml = run_dir / "opt" / "ml"
    code_dir, model_dir = ml / "code", ml / "model"
    checkpoint_dir, output_dir = ml / "checkpoints", ml / "output" / "data"
    channels = {n: (src, ml / "input" / "data" / n) for n, src in sources.items()}
    hosts = [f"algo-{i + 1}" for i in range(spec.compute.nodes)]
    env = {
        "SM_MODEL_DIR": str(model_dir),
        "SM_OUTPUT_DATA_DIR": str(output_dir),
        "SM_CHANNELS": json.dumps(sorted(channels)),
        "SM_HPS": json.dumps({}),
        "SM_NUM_GPUS": "0",
        "SM_NUM_CPUS": str(os.cpu_count() or 1),
        "SM_HOSTS": json.dumps(hosts),
        "SM_CURRENT_HOST": hosts[0],
        "SM_MODULE_DIR": str(code_dir),
        "SM_USER_ENTRY_POINT": LAUNCHER,
    }
    for name, (_, dest) in channels.items():
        env[f"SM_CHANNEL_{name.upper()}"] = str(dest)
    env["SM_TRAINING_ENV"] = json.dumps({
        "channel_input_dirs": {n: str(d) for n, (_, d) in channels.items()},
        "model_dir": str(model_dir), "hosts": hosts, "current_host": hosts[0],
        "job_name": plan.job_name, "hyperparameters": {},
    })  # fmt: skip
    config = ml / "input" / "config"
    extra_files = {
        config / "hyperparameters.json": "{}",
        config / "resourceconfig.json": json.dumps({"current_host": hosts[0], "hosts": hosts}),
        config / "inputdataconfig.json": json.dumps(
            {n: {"TrainingInputMode": "File"} for n in channels}),
    }  # fmt: skip
    return Emulation(code_dir=code_dir, model_dir=model_dir, checkpoint_dir=checkpoint_dir,
                     output_dir=output_dir, channels=channels, env=env,
                     entry=[LAUNCHER],  # the toolkit runs `python <sagemaker_program>` from code/
                     extra_files=extra_files)  # fmt: skip
