"""Experiment tracking (job_templates/common/tracking.py): a real fine-tune logs to MLflow and
TensorBoard, read back with the MLflow client and TensorBoard's event reader; failures only warn."""

from __future__ import annotations

import json
import logging
import sys
import types
from pathlib import Path

import pytest

from genai_cloud.loading import load_spec
from job_templates import entrypoint
from job_templates.common import tracking
from job_templates.config import Config, Preempted
from job_templates.contract import Contract

torch = pytest.importorskip("torch")
mlflow = pytest.importorskip("mlflow")
event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def _run(spec: dict, tmp_path: Path, monkeypatch) -> int:
    monkeypatch.setenv("GENAI_RUNS_DIR", str(tmp_path / "runs"))  # what `genai-cloud run` sets
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    monkeypatch.setenv("GENAI_JOB_NAME", "tiny-finetune-0123456789")
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(load_spec(spec).to_json())
    return entrypoint.main([f"--spec={spec_path}", f"--model-dir={tmp_path / 'model'}",
                            f"--checkpoint-dir={tmp_path / 'ckpt'}",
                            f"--output-dir={tmp_path / 'out'}"])  # fmt: skip


def _tracked_spec(make_spec, *backends, **tracking_settings) -> dict:
    return make_spec(training={"max_steps": 6, "log_every": 3, "eval_every": 4, "eval_batches": 1},
                     tracking={"backends": list(backends), **tracking_settings},
                     env={"SOME_TOKEN_LIKE_VALUE": "not-for-the-tracker"})  # fmt: skip


def _mlflow_run(tmp_path: Path):
    client = mlflow.MlflowClient((tmp_path / "runs" / "mlruns").as_uri())
    experiment = client.get_experiment_by_name("tiny-finetune")
    [run] = client.search_runs([experiment.experiment_id])
    return client, run


def _steps(client, run, key: str) -> list[int]:
    return [m.step for m in client.get_metric_history(run.info.run_id, key)]


def _artifacts(client, run_id: str, folder: str | None = None) -> set[str]:
    found = set()
    for item in client.list_artifacts(run_id, folder):
        found |= _artifacts(client, run_id, item.path) if item.is_dir else {item.path}
    return found


def test_finetune_logs_spec_metrics_and_outputs_to_mlflow_and_tensorboard(make_spec, tmp_path,
                                                                          monkeypatch):  # fmt: skip
    assert _run(_tracked_spec(make_spec, "mlflow", "tensorboard"), tmp_path, monkeypatch) == 0

    client, run = _mlflow_run(tmp_path)
    assert run.info.status == "FINISHED" and run.info.run_name == "tiny-finetune-0123456789"
    params = run.data.params
    assert params["training.lr"] == "0.003" and params["data.format"] == "jsonl"
    assert params["tracking.backends"] == '["mlflow", "tensorboard"]'
    assert not [k for k in params if k.startswith(("env", "secrets"))]
    assert _steps(client, run, "train/loss") == [3, 6]
    assert _steps(client, run, "eval/loss") == [0, 4, 6]  # before, during, after
    tokens_per_s = client.get_metric_history(run.info.run_id, "train/tokens_per_s")
    assert all(m.value > 0 for m in tokens_per_s)
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert run.data.metrics["final/eval_loss_after"] == pytest.approx(metrics["eval_loss_after"])
    assert run.data.metrics["final/steps"] == 6
    assert {"spec.json", "output/metrics.json", "output/plots/loss.png",
            "model/README.md"} <= _artifacts(client, run.info.run_id)  # fmt: skip

    reader = event_accumulator.EventAccumulator(str(tmp_path / "out" / "tensorboard"))
    reader.Reload()
    tags = reader.Tags()
    assert [e.step for e in reader.Scalars("train/loss")] == [3, 6]
    assert [e.step for e in reader.Scalars("eval/loss")] == [0, 4, 6]
    assert reader.Scalars("train/loss")[-1].value == pytest.approx(
        client.get_metric_history(run.info.run_id, "train/loss")[-1].value, rel=1e-6)
    assert "output/plots/loss.png" in tags["images"]
    assert {"spec/text_summary", "model/README.md/text_summary"} <= set(tags["tensors"])


def test_a_failing_tracker_warns_and_training_finishes(make_spec, tmp_path, monkeypatch, caplog):
    def refuse(*args, **kwargs):
        raise ConnectionError("tracking server went away")

    monkeypatch.setattr(mlflow, "log_metrics", refuse)
    monkeypatch.setitem(sys.modules, "wandb", None)  # not installed
    with caplog.at_level(logging.WARNING, logger="genai"):
        code = _run(_tracked_spec(make_spec, "mlflow", "tensorboard", "wandb"), tmp_path,
                    monkeypatch)  # fmt: skip
    assert code == 0 and (tmp_path / "out" / "metrics.json").is_file()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("tracking: mlflow could not log metrics (ConnectionError: tracking server went "
               "away); training goes on without it" in w for w in warnings)  # fmt: skip
    assert any("tracking: wandb could not start wandb" in w and "pip install wandb>=0.16" in w
               for w in warnings)  # fmt: skip
    assert len([w for w in warnings if "mlflow could not" in w]) == 1  # switched off after one
    reader = event_accumulator.EventAccumulator(str(tmp_path / "out" / "tensorboard"))
    reader.Reload()
    assert [e.step for e in reader.Scalars("train/loss")] == [3, 6]  # the others went on
    assert mlflow.active_run() is None  # the switched-off run was ended, not left open
    [run] = _mlflow_run(tmp_path)[1:]
    assert run.info.status == "FAILED"


# ---- the run object, without a training job -----------------------------------------------------


def _contract(tmp_path: Path, rank: int = 0, platform: str = "local") -> Contract:
    return Contract(platform=platform, spec_path=tmp_path, channels={},
                    model_dir=tmp_path / "model", checkpoint_dir=tmp_path / "ckpt",
                    output_dir=tmp_path / "out", rank=rank, world_size=2)  # fmt: skip


def _spec(**tracking_settings) -> Config:
    return Config.wrap({"name": "demo", "task": "audit", "env": {}, "secrets": {},
                        "tracking": tracking_settings})  # fmt: skip


class FakeWandb(types.ModuleType):
    """The calls a W&B run gets, recorded (wandb itself is optional and not installed here)."""

    def __init__(self):
        super().__init__("wandb")
        self.calls = []
        outer = self

        class Run:
            name = "demo-run"
            config = types.SimpleNamespace(update=lambda params: outer.calls.append(("config", params)))

            def log(self, metrics, step=None):
                outer.calls.append(("log", metrics, step))

            def log_artifact(self, artifact):
                outer.calls.append(("artifact", artifact.files))

            def finish(self, exit_code=0):
                outer.calls.append(("finish", exit_code))

        class Artifact:
            def __init__(self, name, type):
                self.files = []

            def add_file(self, path, name):
                self.files.append(name)

        self.Artifact = Artifact
        self.init = lambda **kwargs: outer.calls.append(("init", kwargs)) or Run()


def test_wandb_gets_config_metrics_artifacts_and_the_exit_code(tmp_path, monkeypatch):
    fake = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "report.json").write_text("{}")
    settings = _spec(backends=["wandb"], wandb_project="p")
    with pytest.raises(Preempted), tracking.tracked(settings, _contract(tmp_path)):
        tracking.current().log_metrics({"train/loss": 2.5, "note": "text"}, 3)
        raise Preempted("evicted")
    kinds = [c[0] for c in fake.calls]
    assert kinds == ["init", "config", "log", "artifact", "finish"]
    assert fake.calls[0][1]["project"] == "p" and fake.calls[0][1]["job_type"] == "audit"
    assert fake.calls[1][1]["tracking.wandb_project"] == "p"
    assert fake.calls[2][1:] == ({"train/loss": 2.5}, 3)  # numbers only
    assert fake.calls[3][1] == ["output/report.json"]
    assert fake.calls[4][1] == 1  # not FINISHED
    assert isinstance(tracking.current(), tracking._Null)  # the run is over


def test_only_rank_0_tracks(tmp_path, monkeypatch):
    fake = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    with tracking.tracked(_spec(backends=["wandb"]), _contract(tmp_path, rank=1)) as run:
        run.log_metrics({"train/loss": 1.0}, 1)
    assert fake.calls == []


def test_tensorboard_goes_where_each_platform_collects_it(tmp_path, monkeypatch):
    monkeypatch.delenv("AIP_TENSORBOARD_LOG_DIR", raising=False)
    settings = {"tensorboard_dir": None}
    assert tracking.tensorboard_dir(settings, _contract(tmp_path)) == tmp_path / "out" / "tensorboard"
    sagemaker = _contract(tmp_path, platform="sagemaker")
    sagemaker.output_dir = Path("/opt/ml/output/data")
    assert str(tracking.tensorboard_dir(settings, sagemaker)) == tracking.SAGEMAKER_TENSORBOARD_DIR
    monkeypatch.setenv("AIP_TENSORBOARD_LOG_DIR", "gs://bkt/runs/job/logs/")
    assert tracking.tensorboard_dir(settings, _contract(tmp_path)) == Path("/gcs/bkt/runs/job/logs")
    assert tracking.tensorboard_dir({"tensorboard_dir": "/tb"}, _contract(tmp_path)) == Path("/tb")


def test_requirements_follow_the_backends():
    assert tracking.requirements({"backends": []}) == []
    assert tracking.requirements({"backends": ["tensorboard", "mlflow"]}) == [
        "mlflow-skinny>=2.10", "tensorboard>=2.14"]  # fmt: skip
    arn = "arn:aws:sagemaker:us-east-1:123456789012:mlflow-tracking-server/team"
    assert tracking.requirements({"backends": ["mlflow"], "mlflow_uri": arn})[-1] == \
        tracking.SAGEMAKER_MLFLOW  # fmt: skip


def test_a_task_without_training_logs_its_results_and_reports(tmp_path, monkeypatch):
    """The audit recipe has no Trainer: the entrypoint still logs the spec, the final numbers
    and the report files."""
    examples = Path(__file__).resolve().parents[2] / "examples"
    spec = load_spec({"name": "audit-reviews", "task": "audit",
                      "data": {"train": str(examples / "data" / "audit_reviews.jsonl"),
                               "format": "classification", "group_field": "group"},
                      "tracking": {"backends": ["mlflow"], "experiment": "audits"}})  # fmt: skip
    monkeypatch.setenv("GENAI_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(spec.to_json())
    assert entrypoint.main([f"--spec={spec_path}", f"--model-dir={tmp_path / 'model'}",
                            f"--checkpoint-dir={tmp_path / 'ckpt'}",
                            f"--output-dir={tmp_path / 'out'}"]) == 0  # fmt: skip
    client = mlflow.MlflowClient((tmp_path / "runs" / "mlruns").as_uri())
    [run] = client.search_runs([client.get_experiment_by_name("audits").experiment_id])
    audit = json.loads((tmp_path / "out" / "audit.json").read_text())
    assert run.data.metrics["final/pii_rate"] == pytest.approx(audit["metrics"]["pii_rate"])
    assert run.data.params["task"] == "audit"
    assert {"output/audit.json", "output/audit.md"} <= _artifacts(client, run.info.run_id)


def test_the_local_runner_points_tracking_at_its_runs_folder(tmp_path):
    from genai_cloud.plan import Plan
    from genai_cloud.providers.local import layout

    spec = load_spec({"name": "demo", "model": {"name_or_path": "gpt2"},
                      "data": {"train": "/data/train.jsonl"},
                      "output": {"local_dir": str(tmp_path / "runs")}})  # fmt: skip
    lay = layout(Plan(spec=spec, provider="local"))
    assert lay.env["GENAI_RUNS_DIR"] == str(tmp_path / "runs")
