"""Plans: job names within each provider's rules, stable keys, feature checks before render."""

import re

import pytest

from genai_cloud.errors import ProviderError
from genai_cloud.loading import load_spec
from genai_cloud.plan import Plan, job_name
from genai_cloud.providers import Feature, get_provider, provider_names, required_features
from genai_cloud.providers.sagemaker.render import SAGEMAKER_NAMES

SPEC = {"name": "demo", "model": {"name_or_path": "gpt2"}, "data": {"train": "s3://b/t.jsonl"}}


def test_job_name_is_stable_and_changes_with_the_spec():
    a = Plan(load_spec(SPEC), "local")
    b = Plan(load_spec(SPEC), "local")
    c = Plan(load_spec({**SPEC, "training": {"lr": 1e-4}}), "local")
    assert a.job_name == b.job_name
    assert a.job_name != c.job_name
    assert a.job_name.startswith("demo-")


@pytest.mark.parametrize("stem", ["x" * 200, "my_job.v2", "--a--b--", "ünïcode-näme", "9"])
def test_sagemaker_names_obey_the_api_pattern(stem):
    name = job_name(stem, "0123456789", SAGEMAKER_NAMES)
    assert len(name) <= 63
    assert re.fullmatch(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}", name), name


def test_unknown_provider_lists_valid_ones():
    with pytest.raises(ProviderError) as info:
        get_provider("aws-batch")
    for name in provider_names():
        assert name in info.value.message


def test_required_features():
    spec = load_spec({**SPEC, "compute": {"accelerator": "H100", "count": 8, "nodes": 2,
                                          "spot": True}, "training": {"checkpoint_every": 100}})
    assert required_features(spec) >= {Feature.GPU, Feature.MULTI_GPU, Feature.MULTI_NODE,
                                       Feature.SPOT}  # fmt: skip
    tpu = load_spec({**SPEC, "compute": {"accelerator": "tpu-v5e", "count": 4}})
    assert Feature.TPU in required_features(tpu)
    assert Feature.MULTI_GPU not in required_features(tpu)
