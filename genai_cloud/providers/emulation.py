"""Run a job on this machine as a cloud runs it: the request the provider renders, executed the way
that cloud's training container executes it, one process tree per node.

``genai-cloud run SPEC --emulate sagemaker|vertex|azureml`` (each cloud's runner is its
``providers/<cloud>/emulation.py``, reached through ``Provider.emulator``; this module holds what
they share):

* **sagemaker** — the real SageMaker training toolkit (``sagemaker-training``, the program the
  Deep Learning Containers start) reads the rendered ``CreateTrainingJob`` request laid out as
  SageMaker lays it (``<node>/opt/ml/input/config/*.json``, channels under
  ``input/data/<name>``), downloads the bundle from a local S3 server (moto), installs
  ``requirements.txt`` and runs ``sagemaker_program`` (torchrun when the request asks for it);
* **vertex** — each worker pool replica runs ``container_spec.command`` + ``args`` as rendered,
  with ``CLUSTER_SPEC``, ``AIP_*`` and the buckets under a Cloud Storage FUSE-shaped ``/gcs``;
* **azureml** — the command job's ``${{inputs.*}}`` / ``${{outputs.*}}`` resolve to mounted
  paths and the command runs in each node's copy of the code snapshot with the PyTorch
  distribution's ``MASTER_ADDR`` / ``RANK`` / ... environment.

Local inputs are first put where the cloud would read them (S3 / the bucket / an Azure input) and
the spec is rendered for that cloud, so the job sees cloud URIs exactly as it would there.
Secrets: a variable already set in this shell is used as is (the entrypoint fetches only
what is unset), so export ``HF_TOKEN`` & co. instead of reaching a real secret store.
``compute.nodes`` nodes run at once, each with its own local disk, as separate machines would;
they reach each other over loopback addresses (``127.0.0.N``, all loopback on Linux), so no
``/etc/hosts`` entry is needed. ``python`` picks the interpreter a node runs (a replica of an
image's environment); the job then needs nothing from genai_cloud.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ..contract import INPUT_CHANNELS
from ..errors import GenaiCloudError
from ..spec import is_remote_uri

EMULATION_EXTRA = "pip install 'genai-cloud[emulate]'"
# Variables of this shell that belong to some platform's contract: a node must not inherit them
# (it would see a contract its cloud never sets).
_FOREIGN_PREFIXES = ("SM_", "SAGEMAKER_", "GENAI_", "AIP_", "CLOUD_ML_", "AZUREML_", "AZ_BATCH")
_FOREIGN = {"CLUSTER_SPEC", "TF_CONFIG", "RANK", "LOCAL_RANK", "WORLD_SIZE", "NODE_RANK",
            "MASTER_ADDR", "MASTER_PORT", "PYTHONPATH", "TRAINING_JOB_NAME"}  # fmt: skip


@dataclass
class Node:
    """One emulated machine: what it runs, in which folder, with which environment."""

    name: str
    command: list[str]
    cwd: Path
    env: dict[str, str]  # the platform's variables (the host's PATH etc. are added at run time)


def node_address(index: int) -> str:
    """Node ``index``'s address: 127.0.0.1, 127.0.0.2, ... (the whole 127/8 is loopback)."""
    return f"127.0.0.{index + 1}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def check_python(python: str | os.PathLike | None) -> str:
    """The interpreter nodes run: ``python`` (an image replica's) or this one."""
    if python is None:
        return sys.executable
    path = shutil.which(str(python)) or str(python)
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise GenaiCloudError(f"--python {python}: not an executable interpreter; give the "
                              "path of a Python (e.g. a venv's bin/python)",
                              headline="Bad option")  # fmt: skip
    return os.path.abspath(path)


def image_mismatch(spec, provider: str, python: str | None) -> str | None:
    """Why this machine's Python is not a faithful stand-in for the image the render picks (its
    runtime row's Python), or None. Only without ``--python``: the job then installs the image's
    pinned lock over this interpreter, which fails (a pin needing the image's Python) or runs
    another stack than the cloud would."""
    from ..runtimes import for_spec

    row = for_spec(provider, spec)
    if python is not None or row is None:
        return None
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    if here == row.python:
        return None
    return (f"--emulate {provider}: the {row.name} image ({row.image}) runs Python {row.python} "
            f"with torch {row.torch}, this machine runs Python {here}; its pinned lock "
            f"(job_templates/locks/{row.lock}.txt) may not install here. Pass --python with an "
            f"interpreter of Python {row.python} (a replica: `python -m tests.stacks.build "
            f"--only {row.lock}`, then `--python <venv>/bin/python`).")


def python_on_path(run_dir: Path, python: str) -> Path:
    """A folder whose ``python`` is the chosen interpreter: rendered commands say ``python``,
    and in the image that is the image's Python. A script that execs it, not a symlink: a
    symlinked venv interpreter does not find its venv (``pyvenv.cfg`` is looked up beside the
    path it was started by). The environment's other programs (``torchrun``, ``pip``) come
    along, as on the image's PATH: the host's ``torchrun`` would start the host's Python."""
    python = image_environment(run_dir, python)
    shim = run_dir / "bin"
    shim.mkdir(parents=True, exist_ok=True)
    for program in _programs_dir(python).iterdir():
        link = shim / program.name
        if program.name.startswith("python") or link.exists() or link.is_symlink():
            continue
        if program.is_file() and os.access(program, os.X_OK):
            link.symlink_to(program)  # scripts name their venv's python in their #! line
    for name in ("python", "python3"):
        path = shim / name
        if path.is_symlink() or path.exists():
            path.unlink()
        path.write_text(f'#!/bin/sh\nexec {shlex.quote(python)} "$@"\n')
        path.chmod(0o755)
    return shim


def _programs_dir(python: str) -> Path:
    """Where the interpreter's environment keeps its programs (a venv's ``bin``), asked of the
    interpreter itself: ``python`` may be a wrapper script or a shim in another folder."""
    probe = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('scripts'))"],
                           capture_output=True, text=True, check=False)  # fmt: skip
    found = probe.stdout.strip().splitlines()[-1:] if probe.returncode == 0 else []
    return Path(found[0]) if found and Path(found[0]).is_dir() else Path(python).parent


def image_environment(run_dir: Path, python: str) -> str:
    """The interpreter of the emulated image's environment: ``python`` as given (``--python``:
    a replica of the image), or, when it is this process's own interpreter, a virtualenv over it
    (``--system-site-packages``: everything this machine has, plus what the job installs). The
    toolkits pip-install the bundle's pinned lock into the image; without this layer that
    install would change this machine's own packages (a lock pinning transformers 4.x would
    downgrade the 5.x here)."""
    if os.path.realpath(python) != os.path.realpath(sys.executable):
        return python
    env_dir = run_dir / "image-env"
    layered = env_dir / "bin" / "python"
    if not layered.exists():
        subprocess.run([python, "-m", "venv", "--system-site-packages", str(env_dir)],
                       check=True, capture_output=True)  # fmt: skip
    return str(layered)


def local_inputs(spec) -> dict[tuple[str, str], Path]:
    """Spec fields naming local files or folders the job reads (what a cloud would deliver)."""
    found = {}
    for (section, name) in INPUT_CHANNELS:
        values = getattr(spec, section, None)
        value = getattr(values, name, None) if values is not None else None
        if value and not is_remote_uri(value) and Path(value).exists():
            found[(section, name)] = Path(value)
    return found


def cloud_spec(spec, fields: dict[tuple[str, str], str], **sections):
    """``spec`` with input fields pointed at cloud URIs and provider sections merged in."""
    from ..spec import JobSpec

    data = spec.model_dump(mode="json", exclude_none=True)
    for (section, name), uri in fields.items():
        data.setdefault(section, {})[name] = uri
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value}
    return JobSpec.model_validate(data)


def copy_input(source: Path, dest: Path) -> None:
    """Deliver a file or folder, as a cloud's download would (a fresh copy the job may not
    corrupt the original through)."""
    if source.is_dir():
        shutil.copytree(source, dest, dirs_exist_ok=True)
    else:
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, dest)


def host_env(bin_dir: Path) -> dict[str, str]:
    """This machine's environment less every platform's variables, the chosen ``python`` first
    on PATH."""
    env = {k: v for k, v in os.environ.items()
           if k not in _FOREIGN and not k.startswith(_FOREIGN_PREFIXES)}  # fmt: skip
    env["PATH"] = os.pathsep.join([str(bin_dir), env.get("PATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_nodes(nodes: list[Node], base_env: dict[str, str], outs: tuple[IO[str], ...]) -> list[int]:
    """Start every node at once (a multi-node job rendezvous needs them all up), copy their
    output to ``outs`` (each line prefixed with its node when there are several), wait for all."""
    lock = threading.Lock()
    procs = []
    for node in nodes:
        node.cwd.mkdir(parents=True, exist_ok=True)
        procs.append(subprocess.Popen(node.command, cwd=node.cwd, env={**base_env, **node.env},
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True, bufsize=1))  # fmt: skip

    def pump(proc, prefix):
        for line in proc.stdout:
            with lock:
                for out in outs:
                    out.write(prefix + line)
                    out.flush()

    prefixes = [f"[{node.name}] " if len(nodes) > 1 else "" for node in nodes]
    threads = [threading.Thread(target=pump, args=pair, daemon=True)
               for pair in zip(procs, prefixes)]  # fmt: skip
    for thread in threads:
        thread.start()
    try:
        codes = [proc.wait() for proc in procs]
    except KeyboardInterrupt:
        for proc in procs:
            proc.terminate()
        codes = [proc.wait() for proc in procs]
    for thread in threads:
        thread.join(timeout=5)
    return codes


def job_status(codes: list[int]) -> int:
    """The job's status: the first failing node's, else 0 (a cloud fails a job when any node
    fails)."""
    return next((code for code in codes if code != 0), 0)
