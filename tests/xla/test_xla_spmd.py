"""xla-spmd (job_templates/common/xla_spmd.py): one process shards tiny GPT-2 over 4 devices.

XLA's CPU client exposes ``CPU_NUM_DEVICES`` virtual devices (``XLA_FLAGS=
--xla_force_host_platform_device_count`` does not reach PJRT's CPU client in torch_xla 2.9:
one device), so SPMD's partitioner, collectives and sharded checkpoints run here as on a TPU
host's chips. Same venv and helpers as test_xla.py; 2 rows per device = the 8-row batch the
unsharded runs take.
"""

from __future__ import annotations

import json
import signal

import pytest

# tests/xla is on sys.path (pytest's rootdir-relative import of this file's folder).
from test_xla import STEPS, _close, _entrypoint, _job, _spec, pytestmark  # noqa: F401

DEVICES = "4"


@pytest.fixture(scope="module")
def spmd_run() -> dict:
    return _job("curve", "--device", "xla", "--steps", str(STEPS), "--strategy", "fsdp",
                "--batch-size", "2", CPU_NUM_DEVICES=DEVICES)  # fmt: skip


@pytest.fixture(scope="module")
def unsharded_run() -> dict:
    return _job("curve", "--device", "xla", "--steps", str(STEPS))


def test_parameters_and_adamw_moments_are_sharded_over_the_four_devices(spmd_run):
    assert spmd_run["strategy"] == "xla-spmd" and spmd_run["devices"] == 4
    shardings = spmd_run["shardings"]
    assert len(shardings) == 28  # GPT-2's parameters, the tied embedding / head counted once
    for name, spec in shardings.items():  # e.g. {devices=[1,4]0,1,2,3}: a quarter per device
        assert spec.startswith("{devices=[") and spec.endswith("]0,1,2,3}"), (name, spec)
        assert "replicated" not in spec and "4" in spec.split("]")[0], (name, spec)
    assert spmd_run["moments"] == shardings  # AdamW's state sharded as its parameter


def test_sharded_losses_match_the_unsharded_xla_run_with_the_same_global_batch(spmd_run,
                                                                                unsharded_run):
    assert _close(spmd_run["losses"], unsharded_run["losses"]), (spmd_run["losses"],
                                                                 unsharded_run["losses"])
    assert spmd_run["losses"][-1] < spmd_run["losses"][0] - 0.5
    assert _close([spmd_run["eval"]["loss"]], [unsharded_run["eval"]["loss"]])
    assert spmd_run["tokens"] == unsharded_run["tokens"]


def test_compilations_stop_after_warmup_under_spmd(spmd_run):
    compiles = spmd_run["compiles"]
    assert compiles[1:] == [compiles[1]] * (STEPS - 1) and compiles[-1] <= 2, compiles
    assert spmd_run["executions_after_fit"] == STEPS, spmd_run
    assert spmd_run["compiles_after_eval"] - compiles[-1] <= 2


def test_saved_weights_load_back_equal(spmd_run):
    assert spmd_run["round_trip_equal"] and spmd_run["round_trip_keys"] > 28


def test_the_launcher_runs_spmd_once_and_resumes_after_kill_9_exactly(tmp_path, compile_cache):
    """``python -m job_templates.common.xla`` with ``training.strategy: fsdp`` runs one process
    over the 4 devices (no per-chip processes); its checkpoints (sharded tensors assembled on the
    CPU) resume to the uninterrupted run's losses and weights."""
    from safetensors.torch import load_file

    spec = _spec(tmp_path)
    data = json.loads(spec.read_text())
    data["training"].update(strategy="fsdp", batch_size=2)  # 2 rows x 4 devices
    spec.write_text(json.dumps(data))
    env = {"CPU_NUM_DEVICES": DEVICES, "GENAI_XLA_LAUNCH": "1"}
    launcher = "job_templates.common.xla"
    code, log = _entrypoint(spec, tmp_path / "reference", compile_cache, module=launcher, **env)
    assert code == 0, log[-4000:]
    assert "rank=0/1" in log and "sharded over 4 devices" in log, log[-4000:]
    code, log = _entrypoint(spec, tmp_path / "run", compile_cache, kill_at_step=6,
                            module=launcher, **env)  # fmt: skip
    assert code == -signal.SIGKILL, log[-4000:]
    code, log = _entrypoint(spec, tmp_path / "run", compile_cache, module=launcher, **env)
    assert code == 0, log[-4000:]
    reference = json.loads((tmp_path / "reference" / "output" / "metrics.json").read_text())
    resumed = json.loads((tmp_path / "run" / "output" / "metrics.json").read_text())
    assert resumed["resumed_from_step"] == 4
    assert resumed["train_losses"] == reference["train_losses"]
    assert resumed["eval_after"] == reference["eval_after"]
    want = load_file(tmp_path / "reference" / "model" / "model.safetensors")
    got = load_file(tmp_path / "run" / "model" / "model.safetensors")
    assert want.keys() == got.keys() and all((want[k] == got[k]).all() for k in want)


@pytest.fixture(scope="module")
def compile_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("xla-spmd-cache")
