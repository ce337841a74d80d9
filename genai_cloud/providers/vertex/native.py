"""``render --format native`` for Vertex AI: the file ``gcloud ai custom-jobs create --config``
takes (the CustomJobSpec in camelCase), headed by the command that submits it. Pure, like
``vertex.render_custom_job``.
"""

from __future__ import annotations

import os
import shlex
from typing import TYPE_CHECKING

from .render import bundle_uri, region_of, render_custom_job

if TYPE_CHECKING:
    from ...plan import Plan


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def to_camel(value):
    """snake_case proto field names -> the JSON (camelCase) names gcloud's --config expects."""
    if isinstance(value, dict):
        return {_camel(k): to_camel(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_camel(v) for v in value]
    return value


def _block_dumper():
    import yaml

    class BlockDumper(yaml.SafeDumper):
        """Multi-line strings (the launch script) as readable ``|`` blocks."""

    def text(dumper, value):
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    BlockDumper.add_representer(str, text)
    return BlockDumper


def render_gcloud_config(plan: Plan, path: str | os.PathLike | None = None) -> str:
    """YAML of the CustomJobSpec (camelCase), headed by the command that submits it (naming
    ``path``, where the file is written, when given).

    gcloud's --config holds only the job spec; display name, labels and the KMS key are flags.
    """
    import yaml

    job = render_custom_job(plan)
    region = region_of(plan.spec)
    label_flag = ",".join(f"{k}={v}" for k, v in sorted(job["labels"].items()))
    flags = [f"--region={region}", f"--display-name={job['display_name']}",
             f"--labels={label_flag}"]  # fmt: skip
    if plan.spec.gcp.project:
        flags.append(f"--project={plan.spec.gcp.project}")
    if "encryption_spec" in job:
        flags.append(f"--kms-key={job['encryption_spec']['kms_key_name']}")
    header = [
        "# Submit with:",
        f"#   gcloud storage cp {plan.bundle.name} {bundle_uri(plan)}",
        "#   gcloud ai custom-jobs create " + " ".join(flags) + f" --config={shlex.quote(str(path)) if path else 'THIS_FILE'}",
        f"# ({plan.bundle.name} is the bundle `genai-cloud` built for this spec.)",
    ]
    body = yaml.dump(to_camel(job["job_spec"]), Dumper=_block_dumper(), sort_keys=False, width=100)
    return "\n".join(header) + "\n" + body
