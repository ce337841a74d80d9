"""What ``run --emulate azureml`` reproduces: the command line Azure ML resolves, with each
``${{inputs.x}}`` / ``${{outputs.y}}`` replaced by a local path."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..base import Emulation

if TYPE_CHECKING:
    from ...plan import Plan


def emulation(plan: Plan, run_dir: Path, sources: dict[str, Path]) -> Emulation:
    model_dir, checkpoint_dir = run_dir / "model", run_dir / "checkpoints"
    output_dir = run_dir / "output"
    channels = {n: (src, run_dir / "input" / n) for n, src in sources.items()}
    args = [f"--data={n}={d}" for n, (_, d) in channels.items()]
    args += [f"--model-dir={model_dir}", f"--checkpoint-dir={checkpoint_dir}",
             f"--output-dir={output_dir}"]  # fmt: skip
    return Emulation(code_dir=run_dir / "code", model_dir=model_dir,
                     checkpoint_dir=checkpoint_dir, output_dir=output_dir, channels=channels,
                     env={"AZUREML_RUN_ID": plan.job_name}, args=args)  # fmt: skip
