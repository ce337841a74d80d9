"""Experiment tracking for every recipe: MLflow, TensorBoard and Weights & Biases (``tracking``).

The entrypoint runs the recipe inside ``tracked(spec, contract)``; the ``Trainer`` reports each log
line and evaluation to ``current()``. What is logged:

- the spec as parameters (flattened ``section.field``; ``env`` and ``secrets`` left out);
- per-step training metrics (``train/loss``, ``train/lr``, ``train/tokens_per_s``, ...) and every
  evaluation (``eval/<metric>``) at its step;
- the recipe's final numbers (``final/<key>``; nested sections such as ``audit`` flattened);
- as artifacts: the output folder (``metrics.json``, plots, audit / fairness reports) and the
  model card.

Where it goes:

- MLflow: ``tracking.mlflow_uri``, else ``MLFLOW_TRACKING_URI`` (Azure ML sets it to the
  workspace's MLflow and ``MLFLOW_RUN_ID`` to the job's run, which is then logged to), else a file
  store: ``<runs dir>/mlruns`` for ``genai-cloud run`` (``GENAI_RUNS_DIR``), ``<output>/mlruns``
  elsewhere. A SageMaker managed MLflow tracking server's ARN works with ``sagemaker-mlflow``.
- TensorBoard event files: ``tracking.tensorboard_dir``, else Vertex's ``AIP_TENSORBOARD_LOG_DIR``
  (through the /gcs mount), else SageMaker's ``/opt/ml/output/tensorboard`` (uploaded by the
  job's ``TensorBoardOutputConfig``), else ``<output>/tensorboard``.
- W&B: project ``tracking.wandb_project`` (default: the spec's name); ``WANDB_API_KEY`` by
  ``secrets``; ``WANDB_MODE=offline`` for a job without internet.

Only rank 0 tracks. A backend that fails (not installed, unreachable, refusing a value) is
reported once as a warning and switched off: tracking never stops a training job.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
from pathlib import Path
from typing import Any

from ..config import Preempted
from ..contract import gcs_to_fuse

log = logging.getLogger("genai")

BACKENDS = ("mlflow", "tensorboard", "wandb")
# What the job's container installs for each backend (see ``requirements``).
REQUIREMENTS = {"mlflow": "mlflow-skinny>=2.10", "tensorboard": "tensorboard>=2.14",
                "wandb": "wandb>=0.16"}  # fmt: skip
SAGEMAKER_MLFLOW = "sagemaker-mlflow>=0.1"  # the plugin that takes a tracking server ARN as URI
SAGEMAKER_TENSORBOARD_DIR = "/opt/ml/output/tensorboard"  # TensorBoardOutputConfig.LocalPath
_PARAM_CHARS = 6000  # MLflow's limit on a parameter value (MAX_PARAM_VAL_LENGTH)
_UNLOGGED = ("env", "secrets")  # values a user may not want copied into a tracking server


def requirements(tracking: dict | None) -> list[str]:
    """The pip requirements the job needs for ``tracking`` (the spec section, as a dict)."""
    backends = (tracking or {}).get("backends") or []
    needed = [REQUIREMENTS[b] for b in BACKENDS if b in backends]
    if "mlflow" in backends and is_sagemaker_arn((tracking or {}).get("mlflow_uri")):
        needed.append(SAGEMAKER_MLFLOW)
    return needed


def is_sagemaker_arn(uri: str | None) -> bool:
    return bool(uri) and uri.startswith("arn:aws") and ":mlflow-tracking-server/" in uri


class _Null:
    """What ``current()`` is outside a tracked run, and on ranks other than 0."""

    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        pass

    def log_results(self, metrics: Any) -> None:
        pass


_current: Any = _Null()


def current():
    """The tracked run of this process (a no-op one when nothing is tracked)."""
    return _current


@contextlib.contextmanager
def tracked(spec: Any, contract: Any):
    """Track the recipe run inside this block; yields the run (``log_results(metrics)``).

    The run ends FINISHED, KILLED (preempted: the restart logs to a new run) or FAILED.
    """
    global _current
    settings = spec.get("tracking") or {}
    if not settings.get("backends") or not contract.is_main:
        yield _current
        return
    run = Run(spec, contract, settings)
    _current = run
    status = "FAILED"
    try:
        yield run
        status = "FINISHED"
    except Preempted:
        status = "KILLED"
        raise
    finally:
        _current = _Null()
        run.close(status)


class Run:
    """One tracked run: the same calls fanned out to every backend the spec names."""

    def __init__(self, spec: Any, contract: Any, settings: Any):
        self.contract = contract
        name = os.environ.get("GENAI_JOB_NAME") or spec.name
        self.sinks = []
        for backend in BACKENDS:
            if backend in settings["backends"]:
                sink = self._safely(None, f"start {backend}", lambda b=backend:
                                    _SINKS[b](spec, contract, settings, name))  # fmt: skip
                if sink is not None:
                    self.sinks.append(sink)
        params = flatten_params(spec)
        self._each("log the spec", lambda sink: sink.log_params(params, spec))

    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        numbers = {k: float(v) for k, v in metrics.items() if _is_number(v)}
        if numbers:
            self._each("log metrics", lambda sink: sink.log_metrics(numbers, step))

    def log_results(self, metrics: Any) -> None:
        """The recipe's final numbers, as ``final/<key>`` at the last step."""
        if isinstance(metrics, dict):
            step = metrics.get("steps") if isinstance(metrics.get("steps"), int) else None
            self.log_metrics(_flatten_numbers(metrics, "final"), step)

    def close(self, status: str) -> None:
        files = self._artifacts()
        self._each("log artifacts", lambda sink: sink.log_artifacts(files))
        self._each("finish", lambda sink: sink.finish(status))

    def _artifacts(self) -> list[tuple[Path, str]]:
        """(file, folder in the run) for every output and the model card."""
        out = Path(self.contract.output_dir)
        files = []
        if out.is_dir():
            for path in sorted(p for p in out.rglob("*") if p.is_file()):
                parts = path.relative_to(out).parts
                if parts[0] in ("mlruns", "tensorboard", "wandb") or path.name.startswith("."):
                    continue  # the trackers' own files
                files.append((path, "/".join(("output",) + parts[:-1])))
        card = Path(self.contract.model_dir) / "README.md"
        if card.is_file():
            files.append((card, "model"))
        return files

    def _each(self, what: str, call) -> None:
        for sink in list(self.sinks):
            self._safely(sink, what, lambda s=sink: call(s))

    def _safely(self, sink, what: str, call):
        try:
            return call()
        except Exception as exc:  # noqa: BLE001 - any tracking failure must leave training alone
            name = sink.name if sink is not None else what.split()[-1]
            hint = f"; `pip install {REQUIREMENTS[name]}`" if isinstance(exc, ImportError) \
                and name in REQUIREMENTS else ""  # fmt: skip
            log.warning("tracking: %s could not %s (%s: %s%s); training goes on without it",
                        name, what, type(exc).__name__, exc, hint)  # fmt: skip
            if sink in self.sinks:
                self.sinks.remove(sink)
                with contextlib.suppress(Exception):  # close it (an MLflow run stays active)
                    sink.finish("FAILED")
            return None


def flatten_params(spec: Any) -> dict[str, str]:
    """``{"training.lr": "0.0005", ...}``: every spec field but ``env`` and ``secrets``."""
    flat: dict[str, str] = {}

    def walk(value: Any, key: str) -> None:
        if isinstance(value, dict) and value:
            for name, inner in value.items():
                walk(inner, f"{key}.{name}" if key else str(name))
        else:
            text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
            flat[key] = text[:_PARAM_CHARS]

    walk({k: v for k, v in dict(spec).items() if k not in _UNLOGGED}, "")
    return flat


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _flatten_numbers(values: dict, prefix: str, depth: int = 3) -> dict[str, float]:
    flat = {}
    for key, value in values.items():
        name = f"{prefix}/{key}"
        if _is_number(value):
            flat[name] = float(value)
        elif isinstance(value, dict) and depth > 1:
            flat.update(_flatten_numbers(value, name, depth - 1))
    return flat


# ---- backends -----------------------------------------------------------------------------------


class _MLflow:
    name = "mlflow"

    def __init__(self, spec: Any, contract: Any, settings: Any, run_name: str):
        uri = settings.get("mlflow_uri") or os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            runs = os.environ.get("GENAI_RUNS_DIR")
            uri = (Path(runs) if runs else Path(contract.output_dir)).absolute() / "mlruns"
            uri = uri.as_uri()
        if uri.startswith("file:") or "://" not in uri and not is_sagemaker_arn(uri):
            # MLflow 3 asks file stores to opt in; a local folder is what the spec asked for.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        if is_sagemaker_arn(uri):
            try:
                import sagemaker_mlflow  # noqa: F401 - registers the arn: tracking URI scheme
            except ImportError:
                raise RuntimeError(f"a SageMaker tracking server ARN needs `pip install "
                                   f"{SAGEMAKER_MLFLOW}`") from None  # fmt: skip
        import mlflow

        self.mlflow = mlflow
        mlflow.set_tracking_uri(uri)
        attached = os.environ.get("MLFLOW_RUN_ID")  # Azure ML: the job's own run
        if not attached:
            mlflow.set_experiment(settings.get("experiment") or spec.name)
        self.run = mlflow.start_run(run_id=attached or None,
                                    run_name=None if attached else run_name,
                                    tags={"genai.task": spec.task, "genai.spec": spec.name})  # fmt: skip
        log.info("tracking: MLflow run %s at %s", self.run.info.run_id, uri)

    def log_params(self, params: dict, spec: Any) -> None:
        self.mlflow.log_params(params)
        self.mlflow.log_dict(dict(spec), "spec.json")

    def log_metrics(self, metrics: dict, step: int | None) -> None:
        self.mlflow.log_metrics({_mlflow_key(k): v for k, v in metrics.items()}, step=step)

    def log_artifacts(self, files: list[tuple[Path, str]]) -> None:
        for path, folder in files:
            self.mlflow.log_artifact(str(path), folder)

    def finish(self, status: str) -> None:
        self.mlflow.end_run(status)


def _mlflow_key(key: str) -> str:
    # MLflow keys allow letters, digits, '_', '-', '.', ' ', '/'.
    return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in key)


class _TensorBoard:
    name = "tensorboard"

    def __init__(self, spec: Any, contract: Any, settings: Any, run_name: str):
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = tensorboard_dir(settings, contract)
        self.writer = SummaryWriter(log_dir=str(self.log_dir))
        log.info("tracking: TensorBoard event files in %s", self.log_dir)

    def log_params(self, params: dict, spec: Any) -> None:
        text = json.dumps(dict(spec), indent=2, sort_keys=True, default=str)
        self.writer.add_text("spec", f"```\n{text}\n```", 0)

    def log_metrics(self, metrics: dict, step: int | None) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step or 0)
        self.writer.flush()

    def log_artifacts(self, files: list[tuple[Path, str]]) -> None:
        for path, folder in files:
            tag = f"{folder}/{path.name}"
            if path.suffix == ".png":
                import numpy as np
                from PIL import Image

                self.writer.add_image(tag, np.asarray(Image.open(path).convert("RGB")), 0,
                                      dataformats="HWC")  # fmt: skip
            elif path.suffix in (".md", ".json") and path.stat().st_size < 1_000_000:
                self.writer.add_text(tag, path.read_text(encoding="utf-8", errors="replace"), 0)

    def finish(self, status: str) -> None:
        self.writer.close()


def tensorboard_dir(settings: Any, contract: Any) -> Path:
    """Where the event files go (see the module docstring)."""
    if settings.get("tensorboard_dir"):
        return gcs_to_fuse(settings["tensorboard_dir"])
    if os.environ.get("AIP_TENSORBOARD_LOG_DIR"):
        return gcs_to_fuse(os.environ["AIP_TENSORBOARD_LOG_DIR"])
    if contract.platform == "sagemaker":
        # SM_OUTPUT_DATA_DIR is /opt/ml/output/data; the TensorBoard folder is its sibling.
        return Path(contract.output_dir).parent / Path(SAGEMAKER_TENSORBOARD_DIR).name
    return Path(contract.output_dir) / "tensorboard"


class _WandB:
    name = "wandb"

    def __init__(self, spec: Any, contract: Any, settings: Any, run_name: str):
        import wandb

        self.wandb = wandb
        self.run = wandb.init(project=settings.get("wandb_project") or spec.name,
                              entity=settings.get("wandb_entity"), name=run_name,
                              dir=str(contract.output_dir), job_type=spec.task)  # fmt: skip

    def log_params(self, params: dict, spec: Any) -> None:
        self.run.config.update(params)

    def log_metrics(self, metrics: dict, step: int | None) -> None:
        self.run.log(metrics, step=step)

    def log_artifacts(self, files: list[tuple[Path, str]]) -> None:
        artifact = self.wandb.Artifact(f"{self.run.name or 'run'}-outputs", type="outputs")
        for path, folder in files:
            artifact.add_file(str(path), name=f"{folder}/{path.name}")
        self.run.log_artifact(artifact)

    def finish(self, status: str) -> None:
        self.run.finish(exit_code=0 if status == "FINISHED" else 1)


_SINKS = {"mlflow": _MLflow, "tensorboard": _TensorBoard, "wandb": _WandB}
