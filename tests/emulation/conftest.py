"""Fixtures for running the clouds' rendered jobs locally (genai_cloud.providers.emulation)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# Put first on a job's sys.path by the `image_python` wrapper: a job that imports genai_cloud or
# pydantic (absent from every cloud image) fails as it would there.
_BLOCKER = '''
import sys


class _NotInTheImage:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("genai_cloud", "pydantic"):
            raise ImportError(f"{name} is not in the training image")
        return None


sys.meta_path.insert(0, _NotInTheImage())
'''


OTHER_RANKS_GID = 4242  # any group no file here has


def _wrapped(interpreter: Path, root: Path, markers: Path, *, block_sdk: bool) -> Path:
    """A ``python`` in ``root`` that starts ``interpreter``: each start is recorded in
    ``invocations`` beside it, so a test can tell it was used. As root, a process of a rank other
    than 0 (Azure sets RANK; a Vertex worker pool's CLUSTER_SPEC names it) runs with group
    OTHER_RANKS_GID, its children too: a file it creates is owned by that group, so a test can
    find rank > 0 writes in shared storage (``worker-*`` markers in ``markers`` show it applied).
    Ownership, not mode: transformers writes 0600 files itself. ``block_sdk`` hides genai_cloud
    and pydantic from an interpreter that has them."""
    path = ""
    if block_sdk:
        (root / "site").mkdir()
        (root / "site" / "sitecustomize.py").write_text(_BLOCKER)
        path = f'PYTHONPATH="{root / "site"}${{PYTHONPATH:+:$PYTHONPATH}}" '
    wrapper = root / "python"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> "{root / "invocations"}"\n'
        'run=""\n'
        'case "${RANK:-}${CLUSTER_SPEC:-}" in\n'
        "  [1-9]*|*'\"type\": \"workerpool1\"'*)\n"
        '    if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then\n'
        f'      run="setpriv --regid {OTHER_RANKS_GID} --clear-groups"; $run touch "{markers}/worker-$$"\n'
        "    fi;;\n"
        "esac\n"
        f'{path}exec $run {interpreter} "$@"\n'
    )
    wrapper.chmod(0o755)
    return wrapper


@pytest.fixture
def rank_markers(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("rank-markers")


@pytest.fixture
def image_python(tmp_path_factory, rank_markers) -> Path:
    """An interpreter for ``--python``: this one, but without genai_cloud and pydantic, like a
    cloud image with the job's requirements installed."""
    root = tmp_path_factory.mktemp("image-python")
    # The image's own environment: a venv over this interpreter, so that what the job installs
    # (the bundle's pinned lock) goes into it and never into this machine's site-packages.
    env = root / "env"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(env)], check=True)
    return _wrapped(env / "bin" / "python", root, rank_markers, block_sdk=True)


@pytest.fixture
def replica_python(tmp_path_factory, rank_markers):
    """``replica(provider, spec)``: the interpreter of the replica of the image the render picks
    for ``spec`` (its runtime row: the image's Python, torch and the lock installed on top, and
    for SageMaker the training toolkit), a faithful stand-in for ``--python``. Skips naming the
    build command when that replica is not built here; fails instead under
    ``GENAI_STACKS_REQUIRED=1`` (CI builds them all first)."""
    from genai_cloud.runtimes import for_spec
    from genai_cloud.loading import load_spec
    from tests.stacks.build import ready_python

    def find(provider: str, spec: dict) -> Path:
        row = for_spec(provider, load_spec(spec))
        python = ready_python(row)
        if python is None:
            reason = (f"the {row.name} replica (Python {row.python}, torch {row.torch}) is not "
                      f"built: `python -m tests.stacks.build --only {row.lock}`")  # fmt: skip
            if os.environ.get("GENAI_STACKS_REQUIRED"):
                pytest.fail(reason)
            pytest.skip(reason)
        root = tmp_path_factory.mktemp(f"replica-{row.lock}")
        return _wrapped(python, root, rank_markers, block_sdk=False)

    return find


@pytest.fixture
def quick_spec(make_spec, tmp_path):
    """A finetune spec of the tiny model: 4 steps, checkpoints at 2 and 4."""

    def build(**sections):
        training = {"max_steps": 4, "checkpoint_every": 2, **sections.pop("training", {})}
        return make_spec(training=training, output={"local_dir": str(tmp_path / "runs")},
                         **sections)  # fmt: skip

    return build


@pytest.fixture
def created_by_other_ranks(rank_markers):
    """``check(*folders)``: files under ``folders`` that a rank > 0 process created (owned by
    group ``OTHER_RANKS_GID``); it also checks that such a process did run with that group, so
    an empty answer means something. Skips where ranks cannot be told apart (not root)."""

    def check(*folders: Path) -> list[str]:
        markers = list(rank_markers.glob("worker-*"))
        if not markers:
            pytest.skip("telling ranks' files apart needs root and setpriv")
        assert all(m.stat().st_gid == OTHER_RANKS_GID for m in markers)
        return [str(path) for folder in folders for path in folder.rglob("*")
                if path.stat().st_gid == OTHER_RANKS_GID]  # fmt: skip

    return check
