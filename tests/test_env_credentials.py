"""Secret values in `env` are refused with "use `secrets:`" before any render (issue 14)."""

import pytest

from genai_cloud.credentials import credential_reason
from genai_cloud.errors import SpecError
from genai_cloud.loading import load_spec

BASE = {"name": "x", "model": {"name_or_path": "gpt2"}, "data": {"train": "s3://b/t.jsonl"}}
HF = "hf_" + "aB3" * 12


@pytest.mark.parametrize("name, value, why", [
    ("HF_TOKEN", HF, "a Hugging Face token"),
    ("MY_SETTING", HF, "a Hugging Face token"),
    ("GH", "ghp_" + "x1" * 18, "a GitHub token"),
    ("GH", "github_pat_" + "A1_" * 20, "a GitHub token"),
    ("OPENAI", "sk-proj-" + "Zz9" * 10, "an OpenAI/Anthropic-style API key"),
    ("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE", "an AWS access key id"),
    ("G", "AIza" + "S" * 35, "a Google API key"),
    ("SLACK", "xoxb-123456789012-abcdef", "a Slack token"),
    ("GL", "glpat-" + "a" * 20, "a GitLab token"),
    ("PIP", "pypi-AgEIcHlwaS5vcmc" + "x" * 20, "a PyPI token"),
    ("PEM", "-----BEGIN RSA PRIVATE KEY-----\nMIIE", "a private key"),
    ("AUTH", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.sig", "a JSON web token"),
    ("STORE", "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=abc==", "an Azure"),
    ("HTTPS_PROXY", "http://me:hunter2@proxy:3128", "a URL with a password"),
    ("WANDB_API_KEY", "0123", "the name WANDB_API_KEY says"),
    ("AWS_SECRET_ACCESS_KEY", "x", "the name AWS_SECRET_ACCESS_KEY says"),
    ("DB_PASSWORD", "x", "the name DB_PASSWORD says"),
    ("CLIENT_SECRET_VALUE", "x", "the name CLIENT_SECRET_VALUE says"),
    ("github_token", "x", "the name github_token says"),
])  # fmt: skip
def test_credentials_are_recognised(name, value, why):
    reason = credential_reason(name, value)
    assert reason is not None and why in reason, reason


@pytest.mark.parametrize("name, value", [
    ("HF_HOME", "/tmp/hf"), ("TOKENIZERS_PARALLELISM", "false"), ("KMS_KEY_ID", "alias/k"),
    ("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True"), ("LIBRARY", "sk-learn"),
    ("HTTPS_PROXY", "http://proxy:3128"), ("HF_TOKEN", ""), ("GIT_SHA", "a" * 40),
    ("SSH_KEY_PATH", "/secrets/key"), ("MODEL", "hf_internal_testing"),
])  # fmt: skip
def test_ordinary_settings_pass(name, value):
    assert credential_reason(name, value) is None
    assert load_spec({**BASE, "env": {name: value}}).env == {name: value}


def test_a_token_in_env_names_its_field_and_line_and_points_at_secrets(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text("name: x\nmodel: {name_or_path: gpt2}\ndata: {train: s3://b/t.jsonl}\n"
                    f"env:\n  HF_HOME: /tmp\n  HF_TOKEN: {HF}\n")  # fmt: skip
    with pytest.raises(SpecError) as info:
        load_spec(path)
    (error,) = info.value.errors
    assert error.startswith("env.HF_TOKEN (line 6): looks like a credential (its value looks "
                            "like a Hugging Face token)")  # fmt: skip
    assert "use `secrets:` (secrets.HF_TOKEN: <Secrets Manager ARN" in error
    assert HF not in str(info.value)  # the error never repeats the secret


def test_a_token_given_with_set_is_refused_before_render(tmp_path, run_cli):
    path = tmp_path / "spec.yaml"
    path.write_text("name: x\nmodel: {name_or_path: gpt2}\ndata: {train: s3://b/t.jsonl}\n"
                    "aws: {role_arn: 'arn:aws:iam::123456789012:role/r', region: us-east-1}\n"
                    "output: {uri: s3://b/out}\n")  # fmt: skip
    code, out, err = run_cli(["render", str(path), "-p", "sagemaker", "--set", f"env.HF_TOKEN={HF}"])
    assert code == 2, out + err
    assert "env.HF_TOKEN (from --set): looks like a credential" in err
    assert HF not in out + err  # nothing rendered, nothing echoed


def test_the_same_value_under_secrets_is_a_reference_error_not_a_leak():
    with pytest.raises(SpecError) as info:
        load_spec({**BASE, "secrets": {"HF_TOKEN": HF}})
    assert "must be a reference, not a value" in info.value.errors[0]
