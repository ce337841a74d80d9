"""`run --python PATH`: the job runs with another interpreter (a replica of an image's Python)."""

from __future__ import annotations

import io

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
