"""Does an ``env`` entry look like a credential? (Secret values belong under ``secrets:``.)

Every provider shows a job's environment in plain text to anyone who can describe the job
(SageMaker's DescribeTrainingJob returns ``Environment``; Vertex's CustomJob and Azure's job
definition list ``env``), and the local runner writes it into ``layout()``'s output. So a spec
whose ``env`` holds a token is refused, pointing at ``secrets:``, which holds references that the
entrypoint resolves inside the job.

Two signals, either enough: a name that says secret (``HF_TOKEN``, ``*_SECRET*``, ``*_KEY``,
``*PASSWORD*``), or a value in a known token format (Hugging Face ``hf_…``, GitHub ``ghp_…``,
OpenAI ``sk-…``, AWS access key ids ``AKIA…``, Google API keys ``AIza…``, Slack, GitLab, PyPI,
Stripe, private keys, JWTs, URLs with a password, Azure connection strings with an ``AccountKey``). The formats come from
each vendor's published token prefixes; lengths keep ordinary words (``sk-learn``) out.
"""

from __future__ import annotations

import re

_SECRET_NAME = re.compile(
    r"(^|_)(TOKEN|ACCESS_TOKEN|AUTH_TOKEN|API_?KEY|KEY|PRIVATE_KEY|ACCESS_KEY)$"
    r"|SECRET|PASSWORD|PASSWD|(^|_)PWD$",
    re.IGNORECASE,
)
# Names that end like a secret but are not one (a key *id*, a tokenizer switch, a path).
_NOT_SECRET_NAMES = re.compile(r"TOKENIZERS_PARALLELISM|_KEY_ID$|_KEY_FILE$|_KEY_PATH$", re.IGNORECASE)
_TOKEN_FORMATS = [
    ("a Hugging Face token", re.compile(r"\bhf_[A-Za-z0-9]{30,}")),
    ("a GitHub token", re.compile(r"\b(gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{40,})")),
    ("an OpenAI/Anthropic-style API key", re.compile(r"\bsk-[A-Za-z0-9_-]{20,}")),
    ("an AWS access key id", re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("a Google API key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}")),
    ("a Slack token", re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}")),
    ("a GitLab token", re.compile(r"\bglpat-[A-Za-z0-9_-]{20,}")),
    ("a PyPI token", re.compile(r"\bpypi-AgE[A-Za-z0-9_-]{20,}")),
    ("a Stripe key", re.compile(r"\b[rs]k_live_[A-Za-z0-9]{20,}")),
    ("a private key", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")),
    ("a JSON web token", re.compile(r"\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.")),
    ("an Azure connection string with a key",
     re.compile(r"(AccountKey|SharedAccessKey|SharedAccessSignature)=", re.IGNORECASE)),
    ("a URL with a password in it", re.compile(r"://[^/\s:@]+:[^/\s@]+@")),
]  # fmt: skip


def credential_reason(name: str, value: str) -> str | None:
    """Why ``name=value`` looks like a credential, or None."""
    for what, pattern in _TOKEN_FORMATS:
        if pattern.search(value):
            return f"its value looks like {what}"
    if value and _SECRET_NAME.search(name) and not _NOT_SECRET_NAMES.search(name):
        return f"the name {name} says it is a secret"
    return None


def env_problems(env: dict[str, str]) -> list[tuple[str, str]]:
    """``(name, message)`` for each entry of a spec's ``env`` that looks like a credential."""
    problems = []
    for name, value in env.items():
        why = credential_reason(name, value) if isinstance(value, str) else None
        if why:
            problems.append((name, (f"looks like a credential ({why}); a job's environment is "
                             "shown in plain text by the provider (SageMaker's "
                             "DescribeTrainingJob, the Vertex and Azure job definitions): "
                             f"store it in a secret manager and use `secrets:` "
                             f"(secrets.{name}: <Secrets Manager ARN | projects/P/secrets/S | "
                             "Key Vault secret URI>)")))  # fmt: skip
    return problems
