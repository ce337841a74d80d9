"""Fixtures for running the clouds' rendered jobs locally (genai_cloud.providers.emulation)."""

from __future__ import annotations

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


@pytest.fixture
def image_python(tmp_path_factory) -> Path:
    """An interpreter for ``--python``: this one, but without genai_cloud and pydantic, like a
    cloud image with the job's requirements installed (``invocations`` beside it lists the
    arguments of every start)."""
    root = tmp_path_factory.mktemp("image-python")
    (root / "site").mkdir()
    (root / "site" / "sitecustomize.py").write_text(_BLOCKER)
    wrapper = root / "python"
    # Each start is recorded in `invocations` beside it, so a test can tell it was used.
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> "{root / "invocations"}"\n'
                       f'PYTHONPATH="{root / "site"}${{PYTHONPATH:+:$PYTHONPATH}}" '
                       f'exec {sys.executable} "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


@pytest.fixture
def quick_spec(make_spec, tmp_path):
    """A finetune spec of the tiny model: 4 steps, checkpoints at 2 and 4."""

    def build(**sections):
        training = {"max_steps": 4, "checkpoint_every": 2, **sections.pop("training", {})}
        return make_spec(training=training, output={"local_dir": str(tmp_path / "runs")},
                         **sections)  # fmt: skip

    return build
