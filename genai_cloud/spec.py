"""The provider-agnostic JobSpec: what to train, on what data, on what compute, where.

One pydantic v2 model tree with ``extra="forbid"`` everywhere, so a misspelt key is an error that
names its path. ``load_spec`` reads YAML or JSON and reports *every* problem at once, each with its
field path, the YAML line it sits on and what would be valid.

Adding a task is one ``Task`` member, one optional section below and one recipe module in
``job_templates/``.
"""

import json
import re
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

SPEC_VERSION = 1


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, use_enum_values=True)


class Task(str, Enum):
    finetune = "finetune"
    pretrain_scratch = "pretrain-scratch"
    distill = "distill"
    prune = "prune"
    evaluate = "evaluate"
    audit = "audit"
    fairness = "fairness"


# Accelerators the catalog knows. Kept here (not read from the catalog) so that validating a spec
# stays a pure, import-light operation.
ACCELERATORS = (
    "cpu", "T4", "L4", "A10", "A10G", "V100", "A100", "A100-80GB", "H100", "H200",
    "tpu-v4", "tpu-v5e", "tpu-v5p", "tpu-v6e",
)  # fmt: skip
URI_SCHEMES = ("s3://", "gs://", "azureml://", "https://", "http://")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: float | str) -> int:
    """``90``, ``"90s"``, ``"30m"``, ``"2h"``, ``"1d"`` -> seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = int(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"{value!r} is not a duration; use seconds or e.g. '45m', '2h', '1d'")
        seconds = int(float(match.group(1)) * _DURATION_UNITS[match.group(2)])
    if seconds <= 0:
        raise ValueError("must be a positive duration")
    return seconds


def is_remote_uri(path: str) -> bool:
    return path.startswith(URI_SCHEMES)


FIELD_PROBLEMS = "field_problems"


def field_problems(problems: list[tuple[str, str]]) -> PydanticCustomError:
    """One validation error for checks across fields, naming each field it is about.

    ``problems`` holds ``(field path relative to the validated model, message)`` pairs; loading
    reports each as ``path (line N): message``, like a single field's error.
    """
    summary = "; ".join(f"{field}: {message}" for field, message in problems)
    return PydanticCustomError(FIELD_PROBLEMS, "{summary}",
                               {"summary": summary, "problems": problems})  # fmt: skip


# --------------------------------------------------------------------------------------------
# Core sections


class LoraSpec(Section):
    """Low-rank adapters via peft. ``target_modules`` empty = a default per architecture."""

    r: int = Field(8, ge=1, le=1024)
    alpha: int = Field(16, ge=1)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: list[str] = Field(default_factory=list)
    merge_on_save: bool = Field(True, description="Merge adapters into the base weights on save.")


class ModelSpec(Section):
    name_or_path: str = Field(
        description="Hub id (e.g. gpt2), a local directory, or an s3:// gs:// azureml:// URI."
    )
    revision: str | None = None
    head: Literal["causal-lm", "sequence-classification"] = "causal-lm"
    num_labels: int | None = Field(None, ge=2, description="Classes for sequence-classification.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    init: Literal["pretrained", "random"] = Field(
        "pretrained", description="'random' builds the model from its config with fresh weights."
    )
    trust_remote_code: bool = False
    lora: LoraSpec | None = None


class DataSpec(Section):
    train: str = Field(description="Training data: a file, a directory, or a cloud URI.")
    eval: str | None = Field(None, description="Held-out data; default: a split of `train`.")
    eval_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    format: Literal["text", "jsonl", "instruction", "chat", "classification"] = "jsonl"
    text_field: str = "text"
    prompt_field: str = "prompt"
    response_field: str = "response"
    messages_field: str = "messages"
    label_field: str = "label"
    group_field: str | None = Field(None, description="Demographic group column (fairness).")
    max_seq_len: int = Field(512, ge=8, le=1_048_576)
    packing: bool = Field(True, description="Concatenate documents into full blocks (no padding).")

    @model_validator(mode="after")
    def _eval_needed(self) -> "DataSpec":
        return self


class TrainingSpec(Section):
    epochs: float | None = Field(1.0, gt=0)
    max_steps: int | None = Field(None, ge=1, description="Overrides epochs when set.")
    lr: float = Field(5e-5, gt=0, lt=1)
    schedule: Literal["linear", "cosine", "constant"] = "cosine"
    warmup_steps: int = Field(0, ge=0)
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    batch_size: int = Field(8, ge=1, description="Per device.")
    grad_accum: int = Field(1, ge=1)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float | None = Field(1.0, gt=0)
    seed: int = 42
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    compile: Literal["auto", "on", "off"] = "auto"
    gradient_checkpointing: bool = False
    log_every: int = Field(10, ge=1)
    eval_every: int | None = Field(None, ge=1, description="Steps; default: at the end only.")
    checkpoint_every: int | None = Field(None, ge=1, description="Steps between checkpoints.")
    keep_checkpoints: int = Field(2, ge=1)
    eval_batches: int | None = Field(None, ge=1, description="Cap on eval batches (None: all).")

    @model_validator(mode="after")
    def _length_given(self) -> "TrainingSpec":
        if self.epochs is None and self.max_steps is None:
            raise ValueError("set training.epochs or training.max_steps")
        return self


def canonical_accelerator(value: str) -> str:
    """``h100`` -> ``H100``; an unknown name lists the valid ones."""
    canon = {a.lower(): a for a in ACCELERATORS}
    if value.lower() not in canon:
        raise ValueError(f"unknown accelerator {value!r}; valid: {', '.join(ACCELERATORS)}")
    return canon[value.lower()]


class FallbackSpec(Section):
    """Another placement to try when the first answers with no capacity, quota or spot."""

    provider: str | None = None
    region: str | None = None
    accelerator: str | None = None
    count: int | None = Field(None, ge=1, le=64)
    spot: bool | None = None

    @field_validator("accelerator")
    @classmethod
    def _known_accelerator(cls, value: str | None) -> str | None:
        return None if value is None else canonical_accelerator(value)


class ComputeSpec(Section):
    accelerator: str = Field("cpu", description=f"One of: {', '.join(ACCELERATORS)}.")
    count: int = Field(1, ge=1, le=64, description="Accelerators per node.")
    nodes: int = Field(1, ge=1, le=256)
    spot: bool = False
    allow_spot_without_checkpoints: bool = False
    max_runtime: int = Field(86_400, description="Seconds, or '45m', '2h', '1d'.")
    volume_gb: int = Field(100, ge=1, le=16_384)
    instance_type: str | None = Field(None, description="Override the catalog's choice.")
    region: str | None = Field(
        None, description="Fallback region after aws.region / gcp.region (GCP-style names on "
        "Vertex, e.g. us-central1).",
    )
    fallback: list[FallbackSpec] = Field(
        default_factory=list, description="Placements to try in order on capacity/quota errors."
    )

    @field_validator("accelerator")
    @classmethod
    def _known_accelerator(cls, value: str) -> str:
        return canonical_accelerator(value)

    @field_validator("max_runtime", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> int:
        return parse_duration(value)

    @property
    def is_tpu(self) -> bool:
        return self.accelerator.startswith("tpu-")

    @property
    def is_gpu(self) -> bool:
        return self.accelerator != "cpu" and not self.is_tpu


class BudgetSpec(Section):
    max_usd: float | None = Field(
        None, gt=0, description="Refuse a launch whose worst-case cost exceeds this (USD)."
    )


class OutputSpec(Section):
    uri: str | None = Field(
        None, description="Base output URI (s3:// gs:// azureml://) or local directory."
    )
    local_dir: str = Field("runs", description="Where local runs keep their run directories.")


# --------------------------------------------------------------------------------------------
# Task sections (each read only by its own recipe)


class ScratchSpec(Section):
    """A transformer built from scratch (``nn.Transformer``) for ``pretrain-scratch``."""

    d_model: int = Field(128, ge=8)
    nhead: int = Field(4, ge=1)
    num_encoder_layers: int = Field(2, ge=1)
    num_decoder_layers: int = Field(2, ge=1)
    dim_feedforward: int = Field(256, ge=8)
    dropout: float = Field(0.1, ge=0, lt=1)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    toy_task: Literal["copy", "reverse"] | None = Field(
        None, description="Generate a toy seq2seq task instead of reading data."
    )
    toy_vocab: int = Field(16, ge=4)
    toy_examples: int = Field(4000, ge=10)

    @model_validator(mode="after")
    def _heads_divide(self) -> "ScratchSpec":
        if self.d_model % self.nhead:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by nhead ({self.nhead})")
        return self


class DistillSpec(Section):
    teacher: str = Field(description="Teacher model: hub id, local directory or URI.")
    alpha: float = Field(0.5, ge=0, le=1, description="Weight of the KL term.")
    temperature: float = Field(2.0, gt=0)
    kl_direction: Literal["forward", "reverse"] = Field(
        "forward", description="forward: KL(teacher||student); reverse: KL(student||teacher)."
    )
    student_init: Literal["config", "alternate-layers"] = "alternate-layers"
    student_layers: int | None = Field(None, ge=1)


class PruneSpec(Section):
    method: Literal["magnitude", "wanda"] = "magnitude"
    sparsity: float = Field(0.5, gt=0, lt=1)
    pattern: Literal["unstructured", "2:4"] = "unstructured"
    calibration_batches: int = Field(8, ge=1)
    recovery_steps: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _pattern_fits_sparsity(self) -> "PruneSpec":
        # The same rule as job_templates/common/pruning.check_pattern, caught before the launch.
        if self.pattern == "2:4" and abs(self.sparsity - 0.5) > 1e-9:
            message = (f"2:4 keeps 2 of every 4 weights, i.e. sparsity 0.5, not {self.sparsity}; "
                       "set prune.sparsity: 0.5 or prune.pattern: unstructured")
            raise field_problems([("sparsity", message)])
        return self


class EvaluateSpec(Section):
    perplexity: bool = True
    stride: int | None = Field(None, ge=1, description="Sliding-window stride for long texts.")
    generate_samples: int = Field(3, ge=0)
    max_new_tokens: int = Field(40, ge=1)
    prompts: list[str] = Field(default_factory=list)
    image_metrics: bool = False
    feature_extractor: str | None = Field(None, description="Weights path for FID/IS.")
    generated_images: str | None = None
    real_images: str | None = None


class AuditSpec(Section):
    near_duplicate_threshold: float = Field(0.8, gt=0, le=1)
    lexicon: str | None = Field(None, description="Path to a group lexicon (default: bundled).")
    redact: bool = False
    fail_on: dict[str, float] = Field(
        default_factory=dict, description="metric name -> maximum allowed value."
    )
    gate: bool = Field(False, description="For finetune: run the audit first and stop on failure.")


class FairnessSpec(Section):
    mode: Literal["classifier", "language-model"] = "classifier"
    positive_label: int | str = 1
    bootstrap: int = Field(200, ge=0)
    pairs: str | None = Field(None, description="Stereotype sentence-pair file (jsonl).")
    fail_on: dict[str, float] = Field(default_factory=dict)
    mitigation: list[Literal["counterfactual", "reweight"]] = Field(default_factory=list)


# --------------------------------------------------------------------------------------------
# Provider sections


class AwsSpec(Section):
    region: str | None = None
    role_arn: str | None = Field(None, pattern=r"^arn:aws[a-z-]*:iam::\d{12}:role/.+$")
    bucket: str | None = Field(None, description="S3 bucket for bundles (default: from output.uri).")
    image_uri: str | None = None
    input_mode: Literal["File", "FastFile", "Pipe"] = "File"
    kms_key_id: str | None = None
    volume_kms_key_id: str | None = None
    subnets: list[str] = Field(default_factory=list)
    security_group_ids: list[str] = Field(default_factory=list)
    network_isolation: bool = False
    inter_container_encryption: bool = False


class GcpSpec(Section):
    project: str | None = None
    region: str | None = None
    staging_bucket: str | None = Field(
        None, description="gs:// bucket for bundles; also the default output location."
    )
    service_account: str | None = None
    network: str | None = None
    kms_key_name: str | None = None
    image_uri: str | None = None
    strategy: Literal["STANDARD", "SPOT", "FLEX_START"] | None = None
    max_wait: int | None = Field(None, description="FLEX_START max wait, seconds or '2h'.")
    restart_job_on_worker_restart: bool = False
    tpu_topology: str | None = None

    @field_validator("max_wait", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> int | None:
        return None if value is None else parse_duration(value)


class AzureSpec(Section):
    subscription_id: str | None = None
    resource_group: str | None = None
    workspace: str | None = None
    compute: str | None = Field(None, description="Compute cluster name.")
    environment: str | None = Field(None, description="Curated environment or registered env.")
    image: str | None = None
    identity: Literal["managed", "user"] | None = None
    job_tier: Literal["spot", "basic", "standard", "premium"] | None = None
    experiment_name: str | None = None


# --------------------------------------------------------------------------------------------


_SECRET_REF = re.compile(
    r"^(arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:.+"  # AWS Secrets Manager ARN
    r"|projects/[^/]+/secrets/[^/]+(/versions/[^/]+)?"  # GCP Secret Manager name
    r"|https://[a-z0-9-]+\.vault\.azure\.net/secrets/.+)$"  # Azure Key Vault secret URI
)
_LABEL = re.compile(r"^[a-z0-9_-]{1,63}$")


class JobSpec(Section):
    """A training job, independent of where it runs."""

    version: Literal[1] = SPEC_VERSION
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$", description="Job name stem.")
    task: Task = Task.finetune
    model: ModelSpec | None = None
    data: DataSpec | None = None
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    compute: ComputeSpec = Field(default_factory=ComputeSpec)
    output: OutputSpec = Field(default_factory=OutputSpec)
    budget: BudgetSpec = Field(default_factory=BudgetSpec)
    env: dict[str, str] = Field(default_factory=dict, description="Non-secret environment.")
    secrets: dict[str, str] = Field(
        default_factory=dict,
        description="ENV_NAME -> secret reference (Secrets Manager ARN, GCP secret name, "
        "Key Vault URI). Resolved by the entrypoint at run time, never rendered.",
    )
    labels: dict[str, str] = Field(default_factory=dict)

    scratch: ScratchSpec | None = None
    distill: DistillSpec | None = None
    prune: PruneSpec | None = None
    evaluate: EvaluateSpec | None = None
    audit: AuditSpec | None = None
    fairness: FairnessSpec | None = None

    aws: AwsSpec = Field(default_factory=AwsSpec)
    gcp: GcpSpec = Field(default_factory=GcpSpec)
    azure: AzureSpec = Field(default_factory=AzureSpec)

    @field_validator("env")
    @classmethod
    def _env_names(cls, env: dict[str, str]) -> dict[str, str]:
        for key in env:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
                raise ValueError(f"{key!r} is not a valid environment variable name")
        return env

    @field_validator("secrets")
    @classmethod
    def _secret_refs(cls, secrets: dict[str, str]) -> dict[str, str]:
        for key, ref in secrets.items():
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
                raise ValueError(f"{key!r} is not a valid environment variable name")
            if not _SECRET_REF.match(ref):
                raise ValueError(
                    f"secrets.{key} must be a reference, not a value: an AWS Secrets Manager ARN, "
                    "a GCP 'projects/P/secrets/S' name or an Azure Key Vault secret URI"
                )
        return secrets

    @field_validator("labels")
    @classmethod
    def _label_rules(cls, labels: dict[str, str]) -> dict[str, str]:
        # The strictest of the three clouds (GCP): lowercase, digits, '_' and '-', <= 63 chars.
        for key, value in labels.items():
            if not _LABEL.match(key) or (value and not _LABEL.match(value)):
                raise ValueError(
                    f"label {key}={value!r}: keys and values must be 1-63 chars of [a-z0-9_-]"
                )
        return labels

    @model_validator(mode="after")
    def _sections_for_task(self) -> "JobSpec":
        problems: list[tuple[str, str]] = []

        def problem(field: str, message: str) -> None:
            problems.append((field, message))

        task = Task(self.task)
        images_only = task is Task.evaluate and self.evaluate and self.evaluate.image_metrics \
            and not self.evaluate.perplexity  # fmt: skip
        needs_model = task not in (Task.audit, Task.pretrain_scratch) and not images_only
        if needs_model and self.model is None:
            problem("model", f"required for task {task.value!r}")
        toy = task is Task.pretrain_scratch and self.scratch and self.scratch.toy_task
        if self.data is None and not toy and not images_only:
            problem("data", f"required for task {task.value!r}")
        if task is Task.distill and self.distill is None:
            problem("distill", "required for task 'distill' (at least distill.teacher)")
        if self.model and self.model.head == "sequence-classification":
            if self.data and self.data.format != "classification":
                problem("data.format", "must be 'classification' for a classification head")
        # The recipes' own refusals (job_templates/prune.py, distill.py), caught before a launch.
        lora_refused = {Task.prune: "pruning changes the base weights",
                        Task.distill: "a distilled student trains all its weights"}  # fmt: skip
        if self.model and self.model.lora is not None and task in lora_refused:
            problem("model.lora", f"{lora_refused[task]}; remove model.lora (LoRA adapters are "
                    "for task 'finetune')")  # fmt: skip
        lora = self.model.lora if self.model else None
        if lora is not None and self.model.init == "random" and not lora.merge_on_save:
            problem("model.lora.merge_on_save", "an adapter saved alone needs its base weights, "
                    "and a random init is not saved anywhere; set merge_on_save: true")  # fmt: skip
        if task is Task.evaluate and self.evaluate and self.evaluate.image_metrics:
            # The inputs job_templates/evaluate.score_images needs.
            if not self.evaluate.feature_extractor:
                problem("evaluate.feature_extractor", "required when evaluate.image_metrics is "
                        "true: the feature extractor's weights file for FID / IS (a torch.export "
                        "program; nothing is downloaded at run time)")  # fmt: skip
            if not self.evaluate.generated_images:
                problem("evaluate.generated_images", "required when evaluate.image_metrics is "
                        "true: a folder of PNG/JPEG images, or a .npy / .pt uint8 array")
        spot = self.compute.spot or self.gcp.strategy == "SPOT" or self.azure.job_tier == "spot"
        if spot and not self.checkpointing() and not self.compute.allow_spot_without_checkpoints:
            problem("training.checkpoint_every", "required on spot capacity, or an eviction "
                    "restarts the job from step 0 (e.g. 200; or set "
                    "compute.allow_spot_without_checkpoints)")  # fmt: skip
        if problems:
            raise field_problems(problems)
        if task is Task.pretrain_scratch and self.scratch is None:
            self.scratch = ScratchSpec()
        for name in ("prune", "evaluate", "audit", "fairness"):
            if task.value == name and getattr(self, name) is None:
                setattr(self, name, _SECTION_TYPES[name]())
        return self

    # ---- helpers used by plan / providers -------------------------------------------------

    def to_json(self) -> str:
        """Canonical JSON: sorted keys, defaults filled in. This is what travels in the bundle."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, indent=2)

    def checkpointing(self) -> bool:
        return self.training.checkpoint_every is not None

    def warnings(self, providers: list[str] | None = None) -> list[str]:
        """Valid but risky choices, reported by `validate` and before a launch.

        ``providers``: where the job may run, for the machine substitutions (all with a catalog
        when None; ``[]`` for none, e.g. a local run)."""
        notes = []
        if self.compute.allow_spot_without_checkpoints and not self.checkpointing():
            notes.append(
                "spot capacity without training.checkpoint_every: an eviction restarts the job "
                "from step 0."
            )
        # Where no machine has exactly compute.count x compute.accelerator, the catalog picks a
        # bigger one (or another GPU kind): say what is paid for and what runs.
        from .catalog import substitution_notes

        notes += substitution_notes(self.compute, providers)
        from .runtimes import override_notes

        notes += override_notes(self, providers)
        return notes


_SECTION_TYPES = {
    "prune": PruneSpec,
    "evaluate": EvaluateSpec,
    "audit": AuditSpec,
    "fairness": FairnessSpec,
}


def json_schema() -> dict:
    """The JSON Schema of a spec file (for editor autocompletion)."""
    schema = JobSpec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "genai-cloud JobSpec"
    return schema


# Loading lives in its own module; it is re-exported here because callers think of it as part
# of the spec ("from genai_cloud.spec import load_spec").
from .loading import load_spec  # noqa: E402, F401
