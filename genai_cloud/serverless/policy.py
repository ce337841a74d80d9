"""The launcher's policy: what a spec dropped into its bucket (or POSTed to it) may ask for.

A serverless launcher runs every job as its stack's execution role, so a spec is untrusted input
that spends that role's rights: it must not choose its own code (``model.trust_remote_code``,
``env`` keys that change what code loads, a foreign image), switch off isolation, or spend past
the deployment's limits. The policy comes from the function's environment, which the IaC
templates render (infra/aws/template.yaml, infra/gcp/main.tf, infra/azure/main.tf):

=====================================  ==========================================================
``GENAI_POLICY_ALLOWED_IMAGES``        comma list of image URIs a spec may name (``aws.image_uri``,
                                       ``gcp.image_uri``, ``azure.image``, ``azure.environment``);
                                       an entry ending in ``*`` is a prefix. Default: none (the
                                       runtime table's images only).
``GENAI_POLICY_ALLOWED_ACCELERATORS``  comma list (``compute.accelerator`` and each fallback's).
                                       Default: every accelerator.
``GENAI_POLICY_MAX_NODES``             ``compute.nodes`` at most this. Default 2.
``GENAI_POLICY_MAX_BUDGET_USD``        ``budget.max_usd`` at most this, and this where the spec
                                       sets none (it then caps the runtime). Default 100.
``GENAI_POLICY_ALLOW_TRUST_REMOTE_CODE``  ``true`` lets ``model.trust_remote_code`` through.
``GENAI_POLICY_ALLOW_CODE_ENV``        ``true`` lets ``env`` keys such as ``LD_PRELOAD``,
                                       ``PYTHONPATH``, ``PIP_INDEX_URL`` through.
``GENAI_POLICY_ALLOW_NO_ISOLATION``    ``true`` lets ``aws.network_isolation: false`` through;
                                       otherwise a spec that leaves it unset gets ``true``.
                                       Only where the provider isolates each job (SageMaker):
                                       see below.
=====================================  ==========================================================

Network isolation is a per-job switch on SageMaker only. Vertex AI and Azure ML isolate a network
(a VPC Service Controls perimeter, a workspace's managed virtual network), not a job, so a
launcher for them cannot turn isolation on for a job: there the rule does not apply, each launch
logs that its job is not network-isolated (unless the policy allows that), and a spec that asks
for ``aws.network_isolation: true`` is refused with the provider's reason instead of running
without it. Isolate those deployments' jobs with the network the IaC puts them in.

A refusal is a ``PolicyError`` listing every problem with its field; the HTTP caller gets it as
a 403 body, and a spec dropped into storage gets it written beside the spec as
``<spec>.rejected.json``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ProviderError, SpecError

# Environment variables that decide which code a process loads or where it is downloaded from.
# Prefixes: the dynamic linker, the interpreter, package installers, and the platforms' own
# contract variables (SageMaker's toolkit reads SAGEMAKER_SUBMIT_DIRECTORY / _PROGRAM from env).
CODE_ENV_PREFIXES = ("LD_", "DYLD_", "PYTHON", "PIP_", "UV_", "CONDA_", "SAGEMAKER_", "SM_",
                     "AIP_", "AZUREML_", "GENAI_")  # fmt: skip
CODE_ENV_NAMES = frozenset({
    "PATH", "BASH_ENV", "ENV", "SHELLOPTS", "PS4", "PROMPT_COMMAND", "NODE_OPTIONS",
    "PERL5LIB", "PERL5OPT", "RUBYOPT", "RUBYLIB", "JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS",
    "GLIBC_TUNABLES", "GCONV_PATH", "VIRTUAL_ENV",
    # Where downloads (pip's requirements, the model hub) come from and whom they trust.
    "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "SSL_CERT_FILE", "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "HF_ENDPOINT",
})  # fmt: skip
DEFAULT_MAX_NODES = 2
DEFAULT_MAX_BUDGET_USD = 100.0
_IMAGE_FIELDS = (("aws", "image_uri"), ("gcp", "image_uri"), ("azure", "image"),
                 ("azure", "environment"))  # fmt: skip
# The deployment's identity fields: a spec may not run as anything else.
IDENTITY_FIELDS = (("aws", "role_arn"), ("gcp", "service_account"))


class PolicyError(SpecError):
    """The spec asks for something this launcher's policy does not allow."""

    headline = "Refused by the launcher's policy"



def env_bool(var: str, value: str) -> bool:
    """A launcher setting's boolean (``true``/``false``/``1``/``0``...); anything else is a
    misconfiguration named by its variable."""
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ProviderError(f"{var}={value!r} is not a boolean; use true or false",
                        headline="Misconfigured function")  # fmt: skip

@dataclass(frozen=True)
class LaunchPolicy:
    allowed_images: tuple[str, ...] = ()
    allowed_accelerators: tuple[str, ...] = ()  # empty: any
    max_nodes: int = DEFAULT_MAX_NODES
    max_budget_usd: float = DEFAULT_MAX_BUDGET_USD
    allow_trust_remote_code: bool = False
    allow_code_env: bool = False
    allow_no_isolation: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> LaunchPolicy:
        env = os.environ if env is None else env

        def names(var: str) -> tuple[str, ...]:
            return tuple(p.strip() for p in env.get(var, "").split(",") if p.strip())

        def number(var: str, default: float, kind=float):
            value = env.get(var, "").strip()
            try:
                parsed = kind(value) if value else default
            except ValueError:
                parsed = None
            if parsed is None or parsed <= 0:
                raise ProviderError(f"{var}={value!r} is not a positive number",
                                    headline="Misconfigured function")  # fmt: skip
            return parsed

        def flag(var: str) -> bool:
            value = env.get(var, "").strip()
            return env_bool(var, value) if value else False

        from ..spec import canonical_accelerator

        accelerators = names("GENAI_POLICY_ALLOWED_ACCELERATORS")
        try:
            accelerators = tuple(canonical_accelerator(a) for a in accelerators)
        except ValueError as exc:
            raise ProviderError(f"GENAI_POLICY_ALLOWED_ACCELERATORS: {exc}",
                                headline="Misconfigured function") from None  # fmt: skip
        return cls(
            allowed_images=names("GENAI_POLICY_ALLOWED_IMAGES"),
            allowed_accelerators=accelerators,
            max_nodes=number("GENAI_POLICY_MAX_NODES", DEFAULT_MAX_NODES, int),
            max_budget_usd=number("GENAI_POLICY_MAX_BUDGET_USD", DEFAULT_MAX_BUDGET_USD),
            allow_trust_remote_code=flag("GENAI_POLICY_ALLOW_TRUST_REMOTE_CODE"),
            allow_code_env=flag("GENAI_POLICY_ALLOW_CODE_ENV"),
            allow_no_isolation=flag("GENAI_POLICY_ALLOW_NO_ISOLATION"),
        )

    def apply_defaults(self, raw: dict, *, isolation_gap: str | None) -> dict:
        """The policy's values where the spec leaves them unset: the budget, and network
        isolation where the provider has it (no ``isolation_gap``) and the policy requires it."""
        merged = dict(raw)
        defaults = [("budget", "max_usd", self.max_budget_usd)]
        if isolation_gap is None and not self.allow_no_isolation:
            defaults.append(("aws", "network_isolation", True))
        for section, key, value in defaults:
            part = merged.get(section)
            part = {} if part is None else part
            if isinstance(part, dict) and part.get(key) is None:
                merged[section] = {**part, key: value}
        return merged

    def check(self, spec, *, isolation_gap: str | None, allowed_providers: tuple[str, ...] = (),
              identity: Mapping[tuple[str, str], Any] | None = None,
              source: str | None = None) -> None:  # fmt: skip
        """Raise ``PolicyError`` with every problem of a validated spec.

        ``isolation_gap``: why the target provider cannot isolate a job's network (its
        ``unsupported`` reason), None where it can (SageMaker);
        ``allowed_providers`` bounds the failover placements; ``identity`` holds the
        deployment's own role / service account (a spec may not name another).
        """
        problems = [f"{field}: {message}" for field, message
                    in self.problems(spec, isolation_gap, allowed_providers, identity or {})]  # fmt: skip
        if problems:
            raise PolicyError(problems, source=source)

    def problems(self, spec, isolation_gap, allowed_providers, identity) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        if spec.model is not None and spec.model.trust_remote_code and \
                not self.allow_trust_remote_code:  # fmt: skip
            found.append(("model.trust_remote_code", ("runs Python code from the model's "
                          "repository as the launcher's job role; this launcher refuses it "
                          "(GENAI_POLICY_ALLOW_TRUST_REMOTE_CODE)")))  # fmt: skip
        if not self.allow_code_env:
            for name in sorted(spec.env):
                if is_code_env(name):
                    found.append((f"env.{name}", ("changes which code the job loads or where it "
                                  "downloads code from; this launcher refuses it "
                                  "(GENAI_POLICY_ALLOW_CODE_ENV)")))  # fmt: skip
        if isolation_gap is None:
            if not spec.aws.network_isolation and not self.allow_no_isolation:
                found.append(("aws.network_isolation", ("false lets the job reach the internet "
                              "with the launcher's role; this launcher requires isolation "
                              "(GENAI_POLICY_ALLOW_NO_ISOLATION)")))  # fmt: skip
        elif spec.aws.network_isolation:
            found.append(("aws.network_isolation", (f"this launcher cannot isolate a job: "
                          f"{isolation_gap}; leave it unset")))  # fmt: skip
        for section, key in _IMAGE_FIELDS:
            image = getattr(getattr(spec, section), key)
            if image and not any(_matches(image, p) for p in self.allowed_images):
                allowed = ", ".join(self.allowed_images) or "none: use the default images"
                found.append((f"{section}.{key}", (f"{image!r} is not an image this launcher "
                              f"allows (GENAI_POLICY_ALLOWED_IMAGES: {allowed})")))  # fmt: skip
        found += self._compute_problems(spec, allowed_providers)
        for (section, key), expected in identity.items():
            given = getattr(getattr(spec, section), key)
            if given and given != expected:
                found.append((f"{section}.{key}", (f"jobs launched here run as {expected}; a "
                              "spec may not choose another identity (leave it unset)")))  # fmt: skip
        return found

    def _compute_problems(self, spec, allowed_providers) -> list[tuple[str, str]]:
        found = []
        compute = spec.compute
        allowed = self.allowed_accelerators
        placements = [("compute.accelerator", compute.accelerator)] + [
            (f"compute.fallback.{i}.accelerator", f.accelerator)
            for i, f in enumerate(compute.fallback) if f.accelerator]  # fmt: skip
        for field, accelerator in placements:
            if allowed and accelerator not in allowed:
                found.append((field, (f"{accelerator!r} is not allowed here; allowed: "
                              f"{', '.join(allowed)} (GENAI_POLICY_ALLOWED_ACCELERATORS)")))  # fmt: skip
        if compute.nodes > self.max_nodes:
            found.append(("compute.nodes", (f"{compute.nodes} is over this launcher's maximum "
                          f"of {self.max_nodes} (GENAI_POLICY_MAX_NODES)")))  # fmt: skip
        budget = spec.budget.max_usd
        if budget is not None and budget > self.max_budget_usd:
            found.append(("budget.max_usd", (f"{budget:g} USD is over this launcher's maximum of "
                          f"{self.max_budget_usd:g} USD (GENAI_POLICY_MAX_BUDGET_USD)")))  # fmt: skip
        if allowed_providers:
            for i, fallback in enumerate(compute.fallback):
                if fallback.provider and fallback.provider not in allowed_providers:
                    found.append((f"compute.fallback.{i}.provider", (f"{fallback.provider!r} is "
                                  f"not a provider this launcher may use; allowed: "
                                  f"{', '.join(allowed_providers)}")))  # fmt: skip
        return found


def is_code_env(name: str) -> bool:
    upper = name.upper()
    return upper in CODE_ENV_NAMES or upper.startswith(CODE_ENV_PREFIXES)


def _matches(image: str, pattern: str) -> bool:
    return image.startswith(pattern[:-1]) if pattern.endswith("*") else image == pattern
