"""Run a job on this machine through exactly the code path a cloud job takes.

The runner unpacks the same bundle a cloud job receives into a run directory, lays out inputs,
model, checkpoint and output folders, and runs the bundled entrypoint in a subprocess (or
``torchrun`` for ``nproc > 1``; Docker optional). ``--emulate sagemaker|vertex|azureml`` instead
runs the job that cloud's render describes, the way its container runs it (``emulation/``).

The run directory is named after the job (spec name + plan hash), so running the same spec again
resumes from its checkpoints.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Iterator

from ..bundle import safe_extract
from ..contract import (
    ENV_CHANNEL_PREFIX,
    ENV_CHECKPOINT_DIR,
    ENV_MODEL_DIR,
    ENV_OUTPUT_DIR,
    ENV_PLATFORM,
    ENV_SPEC,
)
from ..errors import DataError, GenaiCloudError, JobFailedError, ProviderError
from ..spec import is_hub_dataset, is_remote_uri
from .base import Emulation, JobHandle, JobState, JobStatus, Provider, get_provider, provider_names

EXIT_PREEMPTED = 143  # the entrypoint's status after flushing a checkpoint on SIGTERM
SIGTERM_GRACE_S = 120  # what SageMaker gives a job between SIGTERM and the kill


@dataclass
class LocalLayout:
    """Everything a local run will create and execute, decided without touching the disk."""

    run_dir: Path
    code_dir: Path
    model_dir: Path
    checkpoint_dir: Path
    output_dir: Path
    channels: dict[str, tuple[Path, Path]]  # name -> (source file/dir, where the job sees it)
    command: list[str]
    env: dict[str, str]
    emulate: str
    extra_files: dict[Path, str] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "emulate": self.emulate,
            "run_dir": str(self.run_dir),
            "code_dir": str(self.code_dir),
            "model_dir": str(self.model_dir),
            "checkpoint_dir": str(self.checkpoint_dir),
            "output_dir": str(self.output_dir),
            "channels": {k: {"source": str(s), "mounted_at": str(d)}
                         for k, (s, d) in self.channels.items()},  # fmt: skip
            "command": self.command,
            "env": dict(sorted(self.env.items())),
        }


@dataclass
class LocalRun:
    run_dir: Path
    returncode: int
    layout: LocalLayout

    @property
    def model_dir(self) -> Path:
        return self.layout.model_dir

    @property
    def output_dir(self) -> Path:
        return self.layout.output_dir

    @property
    def metrics(self) -> dict:
        path = self.layout.output_dir / "metrics.json"
        return json.loads(path.read_text()) if path.is_file() else {}


def _local_channels(spec) -> dict[str, Path]:
    channels = {}
    if spec.data is None:
        return channels
    for name in ("train", "eval"):
        source = getattr(spec.data, name)
        if source is None or is_hub_dataset(source):  # the job loads hf:// by itself
            continue
        if is_remote_uri(source):
            raise DataError(
                f"data.{name} is {source!r}: a local run reads local files. Download it first "
                f"(e.g. `aws s3 cp` / `gsutil cp`) and point data.{name} at the copy."
            )
        channels[name] = Path(source)
    return channels


def layout(plan, *, emulate: str = "local", nproc: int = 1, run_dir: str | Path | None = None,
           preempt_at: int | None = None) -> LocalLayout:  # fmt: skip
    """The run directory, environment and command of a local run (pure), laid out as the
    ``emulate`` provider's ``emulation`` says (the clouds' emulations run their rendered jobs
    instead: see ``Provider.emulator`` and ``run_local``)."""
    if emulate not in provider_names():
        raise GenaiCloudError(f"unknown emulation {emulate!r}; valid: "
                              f"{', '.join(provider_names())}", headline="Bad option")  # fmt: skip
    spec = plan.spec
    run_dir = Path(run_dir or Path(spec.output.local_dir) / plan.job_name).absolute()
    sources = _local_channels(spec)
    env = {"PYTHONUNBUFFERED": "1", "GENAI_JOB_NAME": plan.job_name, **spec.env}
    env["GENAI_RUNS_DIR"] = str(run_dir.parent)  # tracking's default MLflow store: <runs>/mlruns
    emulation = get_provider(emulate).emulation(plan, run_dir, sources)
    if emulation is None:
        raise GenaiCloudError(f"provider {emulate!r} has no local emulation", headline="Bad option")
    code_dir, model_dir = emulation.code_dir, emulation.model_dir
    checkpoint_dir, output_dir = emulation.checkpoint_dir, emulation.output_dir
    channels, entry = emulation.channels, emulation.entry
    env.update(emulation.env)
    extra_files: dict[Path, str] = dict(emulation.extra_files)
    args: list[str] = list(emulation.args)

    if preempt_at is not None:
        args.append(f"--preempt-at={preempt_at}")
    if nproc > 1:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                    f"--nproc-per-node={nproc}"]  # fmt: skip
        command = launcher + (["-m", entry[1]] if entry[0] == "-m" else entry) + args
    else:
        command = [sys.executable, *entry, *args]
    return LocalLayout(
        run_dir=run_dir, code_dir=code_dir, model_dir=model_dir, checkpoint_dir=checkpoint_dir,
        output_dir=output_dir, channels=channels, command=command, env=env, emulate=emulate,
        extra_files=extra_files,
    )  # fmt: skip


def prepare(plan, lay: LocalLayout) -> None:
    """Create the run directory: fresh code from the bundle, inputs, empty output folders."""
    if lay.code_dir.exists():
        shutil.rmtree(lay.code_dir)
    safe_extract(plan.bundle.data, lay.code_dir)
    for path in (lay.model_dir, lay.checkpoint_dir, lay.output_dir):
        path.mkdir(parents=True, exist_ok=True)
    for name, (source, dest) in lay.channels.items():
        if not source.exists():
            raise DataError(f"data.{name}: {source} does not exist")
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        files = [source] if source.is_file() else sorted(p for p in source.iterdir() if p.is_file())
        for file in files:
            _link_or_copy(file, dest / file.name)
    for path, content in lay.extra_files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)


def _link_or_copy(source: Path, dest: Path) -> None:
    try:
        os.link(source, dest)  # same filesystem: free, and the job cannot corrupt the original
    except OSError:
        shutil.copy2(source, dest)


def run_local(spec, *, emulate: str = "local", nproc: int = 1, run_dir: str | Path | None = None,
              preempt_at: int | None = None, stream: IO[str] | None = None,
              docker_image: str | None = None, check: bool = False,
              python: str | Path | None = None) -> LocalRun:  # fmt: skip
    """Run a spec on this machine and wait for it.

    Args:
        spec: a ``JobSpec`` (or a path to a spec file).
        emulate: ``local``, or the cloud whose rendered job to run as its container would
            (``emulation/``: every node of ``compute.nodes``, the cloud's own launcher).
        nproc: processes per node; more than one launches through torchrun (gloo on CPU).
        run_dir: where to run (default: ``<output.local_dir>/<job name>``; reruns resume).
        preempt_at: send the job SIGTERM at this step, as a spot eviction would.
        stream: where the job's log goes (default: stdout).
        docker_image: run inside this image with ``docker run`` instead of a subprocess.
        check: raise ``JobFailedError`` when the job exits non-zero.
        python: the interpreter the job runs with (a replica of an image's environment);
            default: this one.
    """
    from ..loading import load_spec
    from ..plan import Plan
    from ..spec import JobSpec

    if not isinstance(spec, JobSpec):
        spec = load_spec(spec)
    if emulate not in provider_names():
        raise GenaiCloudError(f"unknown emulation {emulate!r}; valid: "
                              f"{', '.join(provider_names())}", headline="Bad option")  # fmt: skip
    runner = get_provider(emulate).emulator()
    if runner is not None:
        return _run_emulated(spec, emulate, runner, nproc=nproc, run_dir=run_dir,
                             preempt_at=preempt_at, stream=stream, docker_image=docker_image,
                             check=check, python=python)  # fmt: skip
    if python is not None and docker_image:
        raise GenaiCloudError("--python and --docker: the image brings its own Python; give "
                              "one of the two", headline="Bad option")  # fmt: skip
    plan = Plan(spec=spec, provider="local")
    lay = layout(plan, emulate=emulate, nproc=nproc, run_dir=run_dir, preempt_at=preempt_at)
    prepare(plan, lay)
    command = _docker_command(lay, docker_image) if docker_image else lay.command
    if python is not None:
        from .emulation import check_python

        command = [check_python(python), *command[1:]]
    env = {**os.environ, **lay.env}
    env.setdefault("OMP_NUM_THREADS", str(thread_count(nproc)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(lay.code_dir), env.get("PYTHONPATH")]))
    with open(lay.run_dir / "job.log", "a", encoding="utf-8") as log:
        code, preempted = _stream(command, cwd=lay.code_dir, env=env,
                                  outs=(stream or sys.stdout, log),
                                  rename=_source_names(lay))  # fmt: skip
    if code != 0 and preempted and nproc > 1:
        code = EXIT_PREEMPTED  # torchrun reports a child's 143 as its own failure (exit 1)
    result = LocalRun(run_dir=lay.run_dir, returncode=code, layout=lay)
    root = Path(spec.output.local_dir).absolute()
    if code == 0 and lay.run_dir.parent == root:  # runs/latest/<spec name>, for run:NAME
        from ..runs import mark_latest

        mark_latest(spec.name, lay.run_dir, root)
    if check and code != 0:
        raise JobFailedError(f"local job exited with status {code}; its log is above.")
    return result


def _run_emulated(spec, emulate: str, runner, *, nproc: int, run_dir, preempt_at, stream,
                  docker_image, check: bool, python) -> LocalRun:  # fmt: skip
    from .emulation import check_python, image_mismatch

    refused = {"--nproc": nproc > 1, "--preempt-at": preempt_at is not None,
               "--docker": docker_image is not None}  # fmt: skip
    if any(refused.values()):
        flags = ", ".join(flag for flag, given in refused.items() if given)
        raise GenaiCloudError(f"{flags}: not with --emulate {emulate}, which runs the job as "
                              f"{emulate} would (compute.nodes nodes, the processes its render "
                              "starts); use --emulate local", headline="Bad option")  # fmt: skip
    run_dir = Path(run_dir or Path(spec.output.local_dir) / _job_name(spec)).absolute()
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "job.log", "a", encoding="utf-8") as log:
        mismatch = image_mismatch(spec, emulate, python)
        if mismatch:  # before the job: else the first sign is a long pip failure
            for out in (sys.stderr, log):
                out.write(f"Warning: {mismatch}\n")
        code, lay = runner(spec, run_dir=run_dir, python=check_python(python),
                           outs=(stream or sys.stdout, log))  # fmt: skip
    if check and code != 0:
        raise JobFailedError(f"emulated {emulate} job exited with status {code}; its log is above.")
    return LocalRun(run_dir=run_dir, returncode=code, layout=lay)


def _job_name(spec) -> str:
    from ..plan import Plan

    return Plan(spec=spec, provider="local").job_name
def thread_count(nproc: int = 1) -> int:
    """CPU threads per job process when neither the environment nor the spec sets
    ``OMP_NUM_THREADS``: the cores not already busy, shared among the processes.

    torch starts one thread per core; on a laptop whose cores are busy with other work the
    threads then wait on each other (measured on a loaded 2-core machine: 565 tokens/s with
    the default against 5,092 with one thread for the quickstart).
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    try:
        busy = os.getloadavg()[0]
    except (AttributeError, OSError):
        busy = 0.0
    idle = max(1, int(cores - busy + 0.5))
    return max(1, min(cores, idle) // max(1, nproc))


def finished(lay: LocalLayout) -> list[Path]:
    """The result files of a run directory whose job already finished (metrics.json, or the
    audit / fairness results); empty when it has not."""
    out = lay.output_dir
    return [p for p in (out / "metrics.json", out / "audit.json", out / "fairness.json")
            if p.is_file()]  # fmt: skip


def _source_names(lay: LocalLayout) -> dict[str, str]:
    """Where the job sees each input -> the path the user gave, so that a ``file:line`` error
    names the user's file rather than the run directory's copy of it."""
    names = {}
    for source, dest in lay.channels.values():
        seen = dest / source.name if source.is_file() else dest
        names[str(seen)] = str(source)
    return names


def _stream(command: list[str], *, cwd: Path, env: dict, outs: tuple[IO[str], ...],
            rename: dict[str, str] | None = None,
            grace_s: float = SIGTERM_GRACE_S) -> tuple[int, bool]:  # fmt: skip
    """Run ``command``, copying its output to ``outs``; return (exit status, saw preemption).

    The job runs in its own process group. A SIGTERM or SIGINT (Ctrl-C) that reaches this
    process (``docker stop``, systemd, a CI runner's cancel) is passed on as SIGTERM to the
    whole group, as a spot eviction would be: the job flushes a checkpoint and exits 143, and
    its last lines still reach ``outs``. After ``grace_s`` (or a second signal) the group is
    killed. A job killed by a signal reports 128 + its number, like a shell.
    """
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, bufsize=1,
                            start_new_session=True)  # fmt: skip
    forwarder = _SignalForwarder(proc, grace_s)
    preempted = False
    try:
        forwarder.install()
        assert proc.stdout is not None
        for line in proc.stdout:
            preempted = preempted or line.startswith("preempted:")
            for seen, given in (rename or {}).items():
                line = line.replace(seen, given)
            for out in (*forwarder.notes(), line):
                for stream in outs:
                    stream.write(out)
                    stream.flush()
        code = proc.wait()
    except KeyboardInterrupt:  # not the main thread, so no handler: still stop the job cleanly
        forwarder.forward(signal.SIGINT, None)
        code = proc.wait()
    finally:
        forwarder.uninstall()
        if proc.poll() is None:  # we are failing ourselves: never leave the job orphaned
            forwarder.kill()
            proc.wait()
    for note in forwarder.notes():
        for stream in outs:
            stream.write(note)
            stream.flush()
    code = 128 - code if code < 0 else code  # -15 (killed by SIGTERM) -> 143
    return code, preempted or forwarder.received is not None


class _SignalForwarder:
    """Passes SIGTERM/SIGINT on to a job's process group; kills it after the grace period.

    The handlers only signal and set flags (writing to a stream from a signal handler can hit
    a buffered writer mid-write); ``notes()`` hands the messages to the streaming loop.
    """

    def __init__(self, proc: subprocess.Popen, grace_s: float):
        self.proc, self.grace_s = proc, grace_s
        self.received: int | None = None
        self._previous: dict[int, object] = {}
        self._pending: list[str] = []
        self._timer = None

    def install(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[signum] = signal.signal(signum, self.forward)
            except ValueError:  # not the main thread: only KeyboardInterrupt can tell us
                return

    def uninstall(self) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()
        if self._timer is not None:
            self._timer.cancel()

    def forward(self, signum: int, frame) -> None:
        name = signal.Signals(signum).name
        if self.received is not None:  # a second signal: stop waiting
            self._pending.append(f"genai-cloud: {name} again: killing the job now\n")
            self.kill()
            return
        self.received = signum
        self._pending.append(
            f"genai-cloud: {name} received; sent SIGTERM to the job (process group "
            f"{self.proc.pid}), waiting up to {self.grace_s:g} s for it to flush a checkpoint "
            f"(send {name} again to kill it now)\n")  # fmt: skip
        self._signal_group(signal.SIGTERM)
        import threading

        self._timer = threading.Timer(self.grace_s, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def _expire(self) -> None:
        if self.proc.poll() is None:
            self._pending.append(f"genai-cloud: the job did not stop within {self.grace_s:g} s "
                                 "of SIGTERM; killed it\n")  # fmt: skip
            self.kill()

    def kill(self) -> None:
        self._signal_group(signal.SIGKILL)

    def _signal_group(self, signum: int) -> None:
        try:
            os.killpg(self.proc.pid, signum)  # the group's id is the job's pid (a new session)
        except (ProcessLookupError, PermissionError):
            pass  # already gone

    def notes(self) -> list[str]:
        notes = []
        while self._pending:  # pop, not swap: a handler may append at any bytecode
            notes.append(self._pending.pop(0))
        return notes


def _docker_command(lay: LocalLayout, image: str) -> list[str]:
    if shutil.which("docker") is None:
        raise GenaiCloudError("--docker needs the docker CLI and a running engine; no `docker` "
                              "on PATH. Install Docker, or run without --docker.",
                              headline="Docker not found")  # fmt: skip
    probe = subprocess.run(["docker", "info"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        said = (probe.stderr.strip().splitlines() or [""])[-1][:300]
        raise GenaiCloudError("--docker: the Docker engine is not running (`docker info` failed"
                              + (f": {said}" if said else "") + "). Start Docker (Docker "
                              "Desktop, or `sudo systemctl start docker`), or run without --docker.",
                              headline="Docker not running")  # fmt: skip
    run_dir = str(lay.run_dir)
    command = ["docker", "run", "--rm", "-v", f"{run_dir}:{run_dir}", "-w", str(lay.code_dir)]
    for key, value in sorted(lay.env.items()):
        command += ["-e", f"{key}={value}"]
    command += ["-e", f"PYTHONPATH={lay.code_dir}", image, "python", *lay.command[1:]]
    return command


class LocalProvider(Provider):
    """``submit`` runs the job here and returns when it ends (there is no queue to return to)."""

    name = "local"
    billed = False

    def render(self, plan) -> dict:
        return layout(plan).as_dict()

    def emulation(self, plan, run_dir: Path, sources: dict[str, Path]) -> Emulation:
        """The neutral contract: GENAI_* variables name every path."""
        code_dir = run_dir / "code"
        model_dir, checkpoint_dir = run_dir / "model", run_dir / "checkpoints"
        output_dir = run_dir / "output"
        channels = {n: (src, run_dir / "input" / n) for n, src in sources.items()}
        env = {
            ENV_PLATFORM: "local",
            ENV_SPEC: str(code_dir / "spec.json"),
            ENV_MODEL_DIR: str(model_dir),
            ENV_CHECKPOINT_DIR: str(checkpoint_dir),
            ENV_OUTPUT_DIR: str(output_dir),
        }
        for name, (_, dest) in channels.items():
            env[f"{ENV_CHANNEL_PREFIX}{name.upper()}"] = str(dest)
        return Emulation(code_dir=code_dir, model_dir=model_dir, checkpoint_dir=checkpoint_dir,
                         output_dir=output_dir, channels=channels, env=env)

    def submit(self, plan) -> JobHandle:
        run = run_local(plan.spec)
        state = JobState.SUCCEEDED if run.returncode == 0 else JobState.FAILED
        return JobHandle(provider=self.name, job_id=str(run.run_dir), name=plan.job_name,
                         details={"state": state.value, "returncode": run.returncode})  # fmt: skip

    def status(self, job_id: str) -> JobStatus:
        run_dir = _run_dir(job_id)
        metrics = next(run_dir.glob("**/metrics.json"), None)
        state = JobState.SUCCEEDED if metrics else JobState.FAILED
        return JobStatus(job_id=job_id, state=state, native_state=state.value)

    def logs(self, job_id: str, follow: bool = False) -> Iterator[str]:
        """The run's job.log (a local run has ended by the time its id is known: ``follow``
        has nothing to wait for)."""
        log = _run_dir(job_id) / "job.log"  # checked now, not at the first next()
        if not log.is_file():
            raise ProviderError(f"{log} does not exist: {job_id} is not a local run directory "
                                f"(or its run never started). {_LOCAL_IDS}",
                                headline="Unknown job")  # fmt: skip
        return iter(log.read_text(errors="replace").splitlines())


_LOCAL_IDS = ("A local job id is its run directory: the id `submit -p local` prints; for "
              "`genai-cloud run`, <output.local_dir>/<job name> or its --run-dir.")  # fmt: skip


def _run_dir(job_id: str) -> Path:
    run_dir = Path(job_id)
    if not run_dir.is_dir():
        raise ProviderError(f"no local run at {run_dir}. {_LOCAL_IDS}", headline="Unknown job")
    return run_dir
