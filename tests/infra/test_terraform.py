"""infra/gcp and infra/azure: the Terraform parses, every variable is described and documented."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

INFRA = Path(__file__).resolve().parents[2] / "infra"
MODULES = ("gcp", "azure")


def _parse(module: str) -> dict[str, dict]:
    hcl2 = pytest.importorskip("hcl2")
    parsed = {}
    for path in sorted((INFRA / module).glob("*.tf")):
        with path.open() as handle:
            parsed[path.name] = hcl2.load(handle)
    return parsed


def _blocks(parsed: dict, kind: str) -> dict[str, dict]:
    found: dict[str, dict] = {}
    for doc in parsed.values():
        for block in doc.get(kind, []):
            for name, body in block.items():
                found[name.strip('"')] = body
    return found


@pytest.mark.parametrize("module", MODULES)
def test_terraform_parses_and_variables_are_documented(module):
    parsed = _parse(module)
    assert {"main.tf", "variables.tf", "outputs.tf", "versions.tf"} <= set(parsed)
    variables = _blocks(parsed, "variable")
    assert variables
    readme = (INFRA / "README.md").read_text()
    for name, body in variables.items():
        assert len(body.get("description", "")) > 20, f"{module} variable {name}: no description"
        assert f"`{name}`" in readme, f"{module} variable {name} is not in infra/README.md"


def test_gcp_grants_act_as_on_the_job_account_only():
    resources = _parse("gcp")
    sa_user = [b for doc in resources.values() for block in doc.get("resource", [])
               for kind, named in block.items() for b in named.values()
               if str(b.get("role", "")).strip('"') == "roles/iam.serviceAccountUser"]  # fmt: skip
    (grant,) = sa_user
    assert "google_service_account.job.name" in grant["service_account_id"]
    text = (INFRA / "gcp" / "main.tf").read_text()
    assert 'resource "google_project_iam_member"' in text
    assert "roles/iam.serviceAccountUser" not in text.split("google_service_account_iam_member")[0]
    assert "uniform_bucket_level_access = true" in text and 'runtime     = "python313"' in text


def test_azure_launcher_gets_only_the_data_scientist_role_on_the_workspace():
    text = (INFRA / "azure" / "main.tf").read_text()
    assert 'role_definition_name = "AzureML Data Scientist"' in text
    assert "scope                = azurerm_machine_learning_workspace.this.id" in text
    assert 'var.low_priority ? "LowPriority" : "Dedicated"' in text
    assert 'Contributor"' not in text.replace("Queue Data Contributor", "")


@pytest.mark.parametrize("module", MODULES)
def test_terraform_is_formatted(module):
    if shutil.which("terraform") is None:
        pytest.skip("terraform is not installed")
    done = subprocess.run(["terraform", "fmt", "-check", "-diff", str(INFRA / module)],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def _resources(module: str) -> dict[str, dict]:
    """``"type.name"`` -> body for every resource of a module."""
    found = {}
    for doc in _parse(module).values():
        for block in doc.get("resource", []):
            for kind, named in block.items():
                for name, body in named.items():
                    found[f"{kind.strip(chr(34))}.{name.strip(chr(34))}"] = body
    return found


def test_gcp_trigger_and_job_account_are_scoped_to_their_prefixes():
    resources = _resources("gcp")
    (trigger,) = resources["google_cloudfunctions2_function.launcher"]["event_trigger"]
    (bucket_filter,) = trigger["event_filters"]
    assert "google_storage_bucket.specs.name" in bucket_filter["value"]  # not the job's bucket
    job = [body for name, body in resources.items() if name.startswith(
        "google_storage_bucket_iam_member.") and "google_service_account.job" in body["member"]]
    assert len(job) == 2 and all("google_storage_bucket.main" in b["bucket"] for b in job)
    (writes,) = [b for b in job if "objectUser" in b["role"]]
    assert "genai-cloud/outputs/" in writes["condition"][0]["expression"]
    assert "specs" not in writes["condition"][0]["expression"]
    specs = [b for b in resources.values() if "google_storage_bucket.specs" in str(b.get("bucket"))]
    assert specs and all("google_service_account.launcher" in b["member"] for b in specs)
    (records,) = [b for b in specs if "objectCreator" in b["role"]]
    assert ".rejected.json" in records["condition"][0]["expression"]
    env = (INFRA / "gcp" / "main.tf").read_text()
    assert "GENAI_POLICY_ALLOW_TRUST_REMOTE_CODE = tostring(var.allow_trust_remote_code)" in env


def test_azure_identity_reads_only_the_named_secrets_and_http_needs_entra_id():
    resources = _resources("azure")
    secrets = resources["azurerm_role_assignment.cluster_reads_secrets"]
    assert "var.secret_names" in secrets["for_each"]
    assert secrets["scope"].strip('"').endswith("/secrets/${each.value}")
    app = resources["azurerm_linux_function_app.launcher"]
    (auth,) = app["auth_settings_v2"]
    assert auth["require_authentication"] is True
    assert auth["unauthenticated_action"].strip(chr(34)) == "Return401"
    assert "var.entra_client_id" in auth["active_directory_v2"][0]["client_id"]
    assert "var.allow_code_env" in app["app_settings"]["GENAI_POLICY_ALLOW_CODE_ENV"]
