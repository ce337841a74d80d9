"""`run --python PATH`: the job runs with another interpreter (a replica of an image's Python)."""

from __future__ import annotations

import io

import pytest

from genai_cloud.errors import GenaiCloudError
from genai_cloud.loading import load_spec
from genai_cloud.providers.local import run_local


def test_a_local_run_uses_the_given_interpreter_without_genai_cloud(quick_spec, tmp_path,
                                                                    image_python):  # fmt: skip
    log = io.StringIO()
    run = run_local(load_spec(quick_spec(training={"max_steps": 2})),
                    run_dir=tmp_path / "job", stream=log, python=image_python)  # fmt: skip
    assert run.returncode == 0, log.getvalue()[-3000:]
    assert "-m job_templates.entrypoint" in (image_python.parent / "invocations").read_text()
    assert (run.model_dir / "model.safetensors").is_file()


def test_the_blocker_really_hides_genai_cloud(image_python):
    """The stand-in image cannot import genai_cloud or pydantic (so a job that did would fail)."""
    import subprocess

    probe = subprocess.run([str(image_python), "-c", "import genai_cloud"], capture_output=True,
                           text=True, check=False)  # fmt: skip
    assert probe.returncode != 0 and "not in the training image" in probe.stderr
    probe = subprocess.run([str(image_python), "-c", "import pydantic"], capture_output=True,
                           text=True, check=False)  # fmt: skip
    assert probe.returncode != 0 and "not in the training image" in probe.stderr


def test_a_bad_interpreter_is_a_bad_option(quick_spec, tmp_path, run_cli):
    import json

    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(quick_spec()))
    code, _, err = run_cli(["run", str(spec), "--python", str(tmp_path / "nope")])
    assert code == 2 and "Bad option" in err and "not an executable interpreter" in err
    assert "Traceback" not in err


def test_python_and_docker_are_one_too_many(quick_spec, tmp_path, image_python):
    with pytest.raises(GenaiCloudError, match="--python and --docker"):
        run_local(load_spec(quick_spec()), run_dir=tmp_path, python=image_python,
                  docker_image="python:3.11")  # fmt: skip


def test_a_file_created_by_rank_1_is_found(image_python, created_by_other_ranks, tmp_path):
    """The check the two-node tests use can fail: rank 1's file is found, rank 0's is not."""
    import os
    import subprocess

    write = "import sys; open(sys.argv[1], 'w').write('x')"
    for rank in ("0", "1"):
        subprocess.run([str(image_python), "-c", write, str(tmp_path / f"by-rank-{rank}")],
                       env={**os.environ, "RANK": rank}, check=True)  # fmt: skip
    assert created_by_other_ranks(tmp_path) == [str(tmp_path / "by-rank-1")]


def test_a_venv_interpreter_keeps_its_venv(tmp_path):
    """Rendered commands say `python`: the run's bin/python must start the given venv's Python
    with that venv's packages (a symlink would drop the venv)."""
    import subprocess
    import venv

    from genai_cloud.providers.emulation import python_on_path

    venv.create(tmp_path / "venv", with_pip=False)
    bin_dir = python_on_path(tmp_path / "run", str(tmp_path / "venv" / "bin" / "python"))
    prefix = subprocess.run([str(bin_dir / "python"), "-c", "import sys; print(sys.prefix)"],
                            capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    assert prefix == str(tmp_path / "venv")


def test_a_wrapper_script_brings_its_environments_programs(image_python, tmp_path):
    """``--python`` may be a script that execs the real interpreter (as the stand-in image is):
    the emulated image's PATH gets that environment's ``torchrun`` and ``pip``, not this
    machine's, which would start another Python."""
    import subprocess

    from genai_cloud.providers.emulation import python_on_path

    shim = python_on_path(tmp_path, str(image_python))
    venv_bin = image_python.parent / "env" / "bin"
    assert (shim / "pip").resolve() == (venv_bin / "pip").resolve()
    which = subprocess.run([str(shim / "python"), "-c", "import sys; print(sys.prefix)"],
                           capture_output=True, text=True, check=True)  # fmt: skip
    assert which.stdout.strip() == str(venv_bin.parent)
