"""SIGTERM / SIGINT to the local runner reach the job's process group: the job flushes, its last
lines reach the terminal and job.log, and the runner exits 143 (issue 14)."""

import io
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from genai_cloud.providers.local import _stream

# A job that reports ready, then on SIGTERM prints its last lines, writes a "checkpoint" and
# exits 143, as job_templates' Trainer does (or ignores SIGTERM when asked to).
JOB = r"""
import os, signal, sys, time
def on_term(signum, frame):
    print("SIGTERM received: finishing this step, then flushing a checkpoint", flush=True)
    time.sleep(0.3)
    open("checkpoint", "w").write("step 7")
    print("preempted: checkpoint flushed at step 7", flush=True)
    sys.exit(143)
# A grandchild in the same group: it must get the signal too. Forked before the handler is set,
# so it dies of the signal's default action even while it is still starting up.
child = os.fork()
if child == 0:
    time.sleep(60)
    os._exit(0)
signal.signal(signal.SIGTERM, signal.SIG_IGN if "--stubborn" in sys.argv else on_term)
open("grandchild", "w").write(str(child))
print("ready", flush=True)
time.sleep(60)
"""


def signal_when_ready(out: io.StringIO, *signums: int) -> threading.Thread:
    """Send this process each signal once the job has printed 'ready' (the handlers are in)."""

    def send():
        deadline = time.monotonic() + 30
        while "ready" not in out.getvalue() and time.monotonic() < deadline:
            time.sleep(0.02)
        for signum in signums:
            os.kill(os.getpid(), signum)
            time.sleep(0.1)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie (already dead, not yet reaped by its parent) counts as gone.
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "State:\tZ" in status.read_text()


def wait_gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if gone(pid):
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_is_forwarded_and_the_jobs_last_lines_are_streamed(tmp_path, signum):
    terminal, log = io.StringIO(), io.StringIO()
    sender = signal_when_ready(terminal, signum)
    code, preempted = _stream([sys.executable, "-c", JOB], cwd=tmp_path, env=dict(os.environ),
                              outs=(terminal, log), grace_s=20)  # fmt: skip
    sender.join()
    assert (code, preempted) == (143, True)
    for out in (terminal, log):
        text = out.getvalue()
        assert f"genai-cloud: {signal.Signals(signum).name} received; sent SIGTERM" in text
        assert text.rstrip().endswith("preempted: checkpoint flushed at step 7")
    assert (tmp_path / "checkpoint").read_text() == "step 7"
    assert wait_gone(int((tmp_path / "grandchild").read_text()))  # the whole group got it
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # our handler is uninstalled


def test_a_job_that_ignores_sigterm_is_killed_after_the_grace_period(tmp_path):
    terminal = io.StringIO()
    sender = signal_when_ready(terminal, signal.SIGTERM)
    started = time.monotonic()
    code, _ = _stream([sys.executable, "-c", JOB, "--stubborn"], cwd=tmp_path,
                      env=dict(os.environ), outs=(terminal,), grace_s=1.0)  # fmt: skip
    sender.join()
    assert code == 128 + signal.SIGKILL
    assert 1.0 <= time.monotonic() - started < 15
    assert "did not stop within 1 s of SIGTERM; killed it" in terminal.getvalue()
    assert not (tmp_path / "checkpoint").exists()


def test_a_second_signal_kills_the_job_at_once(tmp_path):
    terminal = io.StringIO()
    sender = signal_when_ready(terminal, signal.SIGINT, signal.SIGINT)
    code, _ = _stream([sys.executable, "-c", JOB, "--stubborn"], cwd=tmp_path,
                      env=dict(os.environ), outs=(terminal,), grace_s=60)  # fmt: skip
    sender.join()
    assert code == 128 + signal.SIGKILL
    assert "SIGINT again: killing the job now" in terminal.getvalue()


@pytest.mark.slow
def test_sigterm_to_genai_cloud_run_flushes_the_checkpoint_and_exits_143(make_spec, tmp_path):
    """A real `genai-cloud run` (tiny GPT-2), sent SIGTERM mid-training as `docker stop` would."""
    spec = make_spec(training={"max_steps": 100_000, "checkpoint_every": 100_000,
                               "log_every": 1}, output={"local_dir": str(tmp_path)})  # fmt: skip
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    cli = subprocess.Popen([sys.executable, "-m", "genai_cloud", "run", str(path), "--run-dir",
                            str(run_dir)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, env=env)  # fmt: skip
    lines = []
    for line in cli.stdout:  # wait until training is under way
        lines.append(line)
        if re.search(r"step 3/100000", line):
            break
    else:
        pytest.fail("the job never reached step 3:\n" + "".join(lines[-40:]))
    cli.send_signal(signal.SIGTERM)  # to the CLI only, as docker stop signals PID 1
    rest, _ = cli.communicate(timeout=120)
    output = "".join(lines) + rest
    assert cli.returncode == 143, output[-3000:]
    note = re.search(r"genai-cloud: SIGTERM received; sent SIGTERM to the job \(process group "
                     r"(\d+)\)", output)  # fmt: skip
    assert note, output[-3000:]
    assert "preempted:" in rest and "Preempted; checkpoint saved in" in rest
    log = (run_dir / "job.log").read_text()
    assert "SIGTERM received: finishing this step, then flushing a checkpoint" in log
    assert "preempted:" in log and note.group(0) in log
    assert any((run_dir / "checkpoints").iterdir())
    assert wait_gone(int(note.group(1)))  # no orphaned job
