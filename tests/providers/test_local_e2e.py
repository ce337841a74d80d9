"""The same bundle, run end to end under each platform's emulated contract.

This is the local proof of the cloud path: the entrypoint finds its data, writes its model,
checkpoints and metrics where SageMaker / Vertex / Azure ML would collect them.
"""

import io
import json

import pytest

from genai_cloud.providers.local import run_local
from genai_cloud.spec import load_spec


@pytest.mark.slow
@pytest.mark.parametrize("emulate", ["sagemaker", "vertex", "azureml"])
def test_finetune_under_each_platform_contract(make_spec, tmp_path, emulate):
    from transformers import AutoModelForCausalLM

    spec = load_spec(make_spec(training={"max_steps": 4, "checkpoint_every": 2},
                               output={"local_dir": str(tmp_path)}))  # fmt: skip
    log = io.StringIO()
    run = run_local(spec, emulate=emulate, run_dir=tmp_path / emulate, stream=log)
    assert run.returncode == 0, log.getvalue()[-3000:]
    assert f"platform={emulate}" in log.getvalue()

    where = {
        "sagemaker": tmp_path / emulate / "opt" / "ml",
        "vertex": tmp_path / emulate / "gcs" / "local-bucket",
        "azureml": tmp_path / emulate,
    }[emulate]
    assert run.model_dir.is_relative_to(where) and run.output_dir.is_relative_to(where)
    metrics = json.loads((run.output_dir / "metrics.json").read_text())
    assert metrics["steps"] == 4
    assert sorted(p.name for p in run.layout.checkpoint_dir.iterdir())[-1].endswith("4")
    model = AutoModelForCausalLM.from_pretrained(run.model_dir)
    assert model.config.n_layer == 2
