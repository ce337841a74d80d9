"""The Trainer on torch_xla (job_templates/common/xla.py), on XLA's CPU device.

``PJRT_DEVICE=CPU`` takes the lazy-tensor path a TPU takes (trace, compile, execute), so these
pin what a TPU job relies on: the loss curve of eager PyTorch, a compile count that stops
growing after the first steps, N processes training exactly as one with the same global batch,
and exact resume after kill -9. They run under the torch_xla venv's Python
(``tests/xla/build_venv.sh``; torch_xla pins a torch the main environment does not have), which
runs ``tests/xla/xla_job.py`` or the entrypoint; the assertions are here.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
JOB = ROOT / "tests" / "xla" / "xla_job.py"
# fp32 on both sides: XLA fuses and reorders float ops, eager does not; measured differences are
# ~1e-7 relative per step over 8 steps (tiny GPT-2), so 1e-4 leaves room and still catches a real
# difference (untied embeddings, a lost gradient, a wrong loss scale all show at 1e-3 or more).
RTOL = 1e-4
STEPS = 8


def _xla_python() -> Path | None:
    configured = os.environ.get("GENAI_XLA_PYTHON")
    if configured:  # CI sets it after building the venv: missing there is a failure, not a skip
        return Path(configured)
    default = ROOT / ".ci" / ".xla" / "bin" / "python"
    return default if default.exists() else None


XLA_PYTHON = _xla_python()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(XLA_PYTHON is None, reason="no torch_xla venv: run tests/xla/build_venv.sh "
                       "(CI does) or set GENAI_XLA_PYTHON to its python"),
]


def _env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    return env | {"PYTHONPATH": str(ROOT), "PJRT_DEVICE": "CPU", "OMP_NUM_THREADS": "1",
                  "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "MPLBACKEND": "Agg"} | extra


def _result(done: subprocess.CompletedProcess) -> dict:
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def _job(*args: str, **env: str) -> dict:
    done = subprocess.run([str(XLA_PYTHON), str(JOB), *args], env=_env(**env), cwd=ROOT,
                          capture_output=True, text=True, timeout=1200, check=False)  # fmt: skip
    return _result(done)


def _close(got: list[float], want: list[float]) -> bool:
    return len(got) == len(want) and all(abs(g - w) <= RTOL * abs(w) for g, w in zip(got, want))


@pytest.fixture(scope="module")
def xla_run() -> dict:
    return _job("curve", "--device", "xla", "--steps", str(STEPS))


@pytest.fixture(scope="module")
def eager_run() -> dict:
    return _job("curve", "--device", "cpu", "--steps", str(STEPS))


def test_xla_loss_curve_matches_eager_cpu(xla_run, eager_run):
    assert xla_run["device"].startswith("xla") and eager_run["device"] == "cpu"
    assert _close(xla_run["losses"], eager_run["losses"]), (xla_run["losses"], eager_run["losses"])
    assert xla_run["losses"][-1] < xla_run["losses"][0] - 0.5  # it trains
    assert _close([xla_run["eval"]["loss"]], [eager_run["eval"]["loss"]])
    assert xla_run["eval"]["tokens"] == eager_run["eval"]["tokens"]
    assert xla_run["tokens"] == eager_run["tokens"]


def test_one_graph_per_step_and_no_compilation_after_warmup(xla_run):
    compiles = xla_run["compiles"]  # after each step, counted when the step's graph was cut
    # Step 1 creates the optimizer state, step 2 updates it: two graphs, then none.
    assert compiles[1:] == [compiles[1]] * (STEPS - 1), compiles
    assert compiles[-1] <= 2
    # One execution per step: nothing reads a device value in the middle of a step.
    assert xla_run["executions_after_fit"] == STEPS, xla_run
    # Evaluation compiles its own graph (and the one that zeroes its sums), once.
    assert xla_run["compiles_after_eval"] - compiles[-1] <= 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_train_as_one_with_the_same_global_batch(xla_run):
    port, world = str(_free_port()), 2
    procs = [subprocess.Popen([str(XLA_PYTHON), str(JOB), "curve", "--device", "xla", "--steps",
                               str(STEPS), "--batch-size", str(8 // world)],
                              env=_env(RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE=str(world),
                                       MASTER_ADDR="127.0.0.1", MASTER_PORT=port),
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for r in range(world)]  # fmt: skip
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=1200)
        results.append(_result(subprocess.CompletedProcess(proc.args, proc.returncode, out, err)))
    assert [r["world"] for r in results] == [world, world]
    for result in results:  # every rank reports the global mean
        assert _close(result["losses"], xla_run["losses"]), (result["losses"], xla_run["losses"])
        assert _close([result["eval"]["loss"]], [xla_run["eval"]["loss"]])


def _spec(tmp: Path) -> Path:
    from genai_cloud.spec import JobSpec

    spec = JobSpec.model_validate({
        "name": "xla-resume", "task": "finetune",
        "model": {"name_or_path": str(ROOT / "examples" / "tiny-gpt2")},  # dropout 0.1: RNG too
        "data": {"train": str(ROOT / "examples" / "data" / "corpus.jsonl"), "format": "jsonl",
                 "max_seq_len": 64, "eval_fraction": 0.02},
        "training": {"max_steps": 10, "batch_size": 8, "lr": 3e-3, "warmup_steps": 2, "seed": 7,
                     "log_every": 1, "checkpoint_every": 4},
        "compute": {"accelerator": "tpu-v5e"},  # torch_xla, bf16 autocast (precision auto)
    })  # fmt: skip
    path = tmp / "spec.json"
    path.write_text(spec.to_json())
    return path


def _entrypoint(spec: Path, run: Path, cache: Path, kill_at_step: int | None = None,
                sig: int = signal.SIGKILL, module: str = "job_templates.entrypoint", **env: str):
    """Run the job; with ``kill_at_step``, send it ``sig`` once it logs that step."""
    args = [str(XLA_PYTHON), "-m", module, "--spec", str(spec),
            "--model-dir", str(run / "model"), "--checkpoint-dir", str(run / "checkpoints"),
            "--output-dir", str(run / "output")]  # fmt: skip
    # One compilation cache for the three runs: the same graphs, compiled once.
    proc = subprocess.Popen(args, env=_env(XLA_PERSISTENT_CACHE_PATH=str(cache), **env), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if kill_at_step is not None and f" step {kill_at_step}/" in line:
            proc.send_signal(sig)
            kill_at_step = None
            if sig == signal.SIGKILL:
                break
    proc.wait(timeout=1200)
    return proc.returncode, "".join(lines)


@pytest.fixture(scope="module")
def compile_cache(tmp_path_factory) -> Path:
    """One persistent XLA compilation cache for the entrypoint runs: the same graphs, compiled
    once (the compile-count test above runs without it)."""
    return tmp_path_factory.mktemp("xla-cache")


def test_resume_after_kill_9_matches_an_uninterrupted_run(tmp_path, compile_cache):
    from safetensors.torch import load_file

    spec, cache = _spec(tmp_path), compile_cache
    code, log = _entrypoint(spec, tmp_path / "reference", cache)
    assert code == 0, log[-4000:]
    code, log = _entrypoint(spec, tmp_path / "run", cache, kill_at_step=6)
    assert code == -signal.SIGKILL, log[-4000:]
    assert (tmp_path / "run" / "checkpoints" / "step-00000004").is_dir()
    code, log = _entrypoint(spec, tmp_path / "run", cache)
    assert code == 0, log[-4000:]

    reference = json.loads((tmp_path / "reference" / "output" / "metrics.json").read_text())
    resumed = json.loads((tmp_path / "run" / "output" / "metrics.json").read_text())
    assert resumed["resumed_from_step"] == 4 and reference["resumed_from_step"] is None
    assert resumed["device"].startswith("xla") and resumed["precision"] == "bf16"
    assert resumed["train_losses"] == reference["train_losses"]
    assert resumed["eval_after"] == reference["eval_after"]
    want = load_file(tmp_path / "reference" / "model" / "model.safetensors")
    got = load_file(tmp_path / "run" / "model" / "model.safetensors")
    assert want.keys() == got.keys() and all((want[k] == got[k]).all() for k in want)



def test_the_pjrt_launcher_turns_sigterm_into_a_checkpoint_and_exit_143(tmp_path, compile_cache):
    """``python -m job_templates.common.xla`` (what a Vertex TPU job runs) runs the job in a
    worker thread of a process per chip (one here: XLA's CPU device), where no signal handler
    can be installed; the launcher's SIGTERM must still stop it cleanly at a step boundary."""
    code, log = _entrypoint(_spec(tmp_path), tmp_path, compile_cache, kill_at_step=3,
                            sig=signal.SIGTERM, module="job_templates.common.xla",
                            GENAI_XLA_LAUNCH="1")  # fmt: skip
    assert code == 143, log[-4000:]
    assert "rank=0/1" in log and "SIGTERM" not in log.split(" step 3/")[0]
    steps = sorted(int(p.name.split("-")[1]) for p in (tmp_path / "checkpoints").glob("step-*"))
    assert steps and 3 <= steps[-1] < 10, steps
    assert not (tmp_path / "output" / "metrics.json").exists()
