"""The provider-agnostic JobSpec: what to train, on what data, on what compute, where.

One pydantic v2 model tree with ``extra="forbid"`` everywhere, so a misspelt key is an error that
names its path. ``loading.load_spec`` reads YAML or JSON and reports *every* problem at once, each
with its field path, the YAML line it sits on and what would be valid.

Adding a task is one ``Task`` member, one optional section below and one recipe module in
``job_templates/``.
"""

import json
import math
import re
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator
from pydantic_core import PydanticCustomError

from .spec_streaming import streaming_problems
from .tpu import sides, slice_problems

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
    dpo = "dpo"


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
        if not math.isfinite(value):  # int() would raise OverflowError / ValueError
            raise ValueError(f"{value} is not a duration; use seconds or e.g. '45m', '2h', '1d'")
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


def is_hub_dataset(value: str | None) -> bool:
    """``hf://ORG/NAME[@REV]``: a dataset the job loads from the Hugging Face Hub by itself (no
    provider uploads or mounts it)."""
    return bool(value) and value.startswith("hf://")


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
        description="Hub id (e.g. gpt2), a local directory, an s3:// gs:// azureml:// URI, or "
        "run:NAME (the model of a local run: a job name, or a spec name for its latest run)."
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


HUB_DATASET = re.compile(r"^hf://[^/@\s]+(/[^/@\s]+)?(@[^@\s]+)?$")  # hf://ORG/NAME[@REVISION]
_HUB_ONLY = "applies to hub datasets (hf://ORG/NAME); {}"


class DataSpec(Section):
    train: str = Field(description="Training data: a file (JSONL, text, parquet, CSV, arrow), a "
                       "directory, a save_to_disk folder, a cloud URI, or a Hugging Face Hub "
                       "dataset hf://ORG/NAME[@REVISION].")  # fmt: skip
    eval: str | None = Field(None, description="Held-out data; default: a split of `train`.")
    split: str = Field("train", description="The split of `train` to read when the source has "
                       "several (a hub dataset, a DatasetDict folder); slices like "
                       "'train[:1000]' work for hub datasets.")  # fmt: skip
    eval_split: str | None = Field(None, description="The split of `eval`; default: its "
                                   "'validation' split, else 'test'.")  # fmt: skip
    config: str | None = Field(None, description="The hub dataset's configuration (subset).")
    streaming: bool = Field(False, description="Stream data.train (a hub dataset or local "
                            "files): records are read, checked, tokenized and packed as training "
                            "consumes them, in bounded memory (data.shuffle_buffer records), so "
                            "the data may exceed memory and disk; needs training.max_steps.")  # fmt: skip
    max_records: int | None = Field(None, ge=1, description="Read at most this many records of "
                                    "each set (optional with streaming: a cap on the stream).")  # fmt: skip
    shuffle_buffer: int = Field(
        10_000, ge=1, le=10_000_000, description="Streaming: records held to shuffle the stream "
        "(each epoch reshuffled, seeded by training.seed); the job's data memory is about this "
        "many records.",
    )
    max_eval_records: int | None = Field(
        None, ge=1, description="Evaluate on at most this many records (default: all; with "
        "streaming 1000, read from data.eval, or without it held out from the head of "
        "data.train when data.eval_fraction > 0).",
    )
    eval_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    format: Literal["text", "jsonl", "instruction", "chat", "classification", "preference"] = "jsonl"
    text_field: str = "text"
    prompt_field: str = "prompt"
    response_field: str = "response"
    chosen_field: str = Field("chosen", description="Preference data: the preferred completion.")
    rejected_field: str = Field("rejected", description="Preference data: the other completion.")
    messages_field: str = "messages"
    label_field: str = "label"
    group_field: str | None = Field(None, description="Demographic group column (fairness).")
    max_seq_len: int = Field(512, ge=8, le=1_048_576)
    packing: bool = Field(True, description="Concatenate documents into full blocks (no padding).")
    max_record_bytes: int = Field(
        8 * 1024 * 1024, ge=1024, le=1 << 31,
        description="Longest record (a JSON line, or a text block) in bytes; a longer one is an "
        "error naming its file:line (one huge line would cost gigabytes to tokenize).",
    )

    @model_validator(mode="after")
    def _eval_needed(self) -> "DataSpec":
        return self

    @model_validator(mode="after")
    def _hub_options(self) -> "DataSpec":
        problems = []
        for name in ("train", "eval"):
            value = getattr(self, name)
            if value and value.startswith("hf://") and not HUB_DATASET.match(value):
                bad = f"{value!r} is not a hub dataset id; write hf://ORG/NAME[@REVISION]"
                problems.append((name, bad))
        hub = [v for v in (self.train, self.eval) if v and v.startswith("hf://")]
        if self.config and not hub:
            problems.append(("config", _HUB_ONLY.format("neither data.train nor data.eval is")))
        if problems:
            raise field_problems(problems)
        return self


class FsdpSpec(Section):
    """FSDP2 options (``training.strategy: fsdp``, or what ``auto`` picks when DDP does not fit)."""

    sharding: Literal["full", "hybrid"] = Field(
        "full", description="full: shard over every GPU; hybrid: shard within a node, replicate "
        "across nodes (HSDP: less inter-node traffic, more memory per GPU).",
    )
    cpu_offload: bool = Field(False, description="Sharded weights, gradients and optimizer step "
                              "in host memory: fits bigger models, trains slower.")  # fmt: skip
    mixed_precision: bool = Field(True, description="bf16 weights for compute with fp32 gradient "
                                  "reduction, when training.precision resolves to bf16.")  # fmt: skip


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
    loss_chunk: Literal["auto", "off"] | int = Field(
        "auto", description="Causal LMs: compute the LM head and loss this many tokens at a time "
        "so the full logits are never held (off: plain loss; auto: when they would be large).",
    )
    gradient_checkpointing: bool = False
    strategy: Literal["auto", "ddp", "fsdp"] = Field(
        "auto", description="How several GPUs share the model: ddp (a full copy each), fsdp "
        "(sharded, FSDP2), or auto: the cheapest that fits their memory (checked before launch). "
        "On a TPU: ddp is a replica per chip, fsdp shards it over the chips (torch_xla SPMD).",
    )
    fsdp: FsdpSpec = Field(default_factory=FsdpSpec)
    log_every: int = Field(10, ge=1)
    eval_every: int | None = Field(None, ge=1, description="Steps; default: at the end only.")
    checkpoint_every: int | None = Field(None, ge=1, description="Steps between checkpoints.")
    keep_checkpoints: int = Field(2, ge=1)
    eval_batches: int | None = Field(None, ge=1, description="Cap on eval batches (None: all).")
    resume_from: str | None = Field(None, description="Start from this checkpoint when the run "
                                    "has none of its own: a checkpoint folder (step-N) or a "
                                    "checkpoints folder (its newest), an s3:// gs:// azureml:// "
                                    "URI, or run:NAME (a local run's checkpoints).")  # fmt: skip

    @field_validator("compile", "loss_chunk", mode="before")
    @classmethod
    def _yaml_on_off(cls, value: Any) -> Any:
        # YAML 1.1 reads a bare on / off as a boolean.
        return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value

    @field_validator("loss_chunk", mode="before")
    @classmethod
    def _chunk_tokens(cls, value: Any) -> Any:
        if value in ("auto", "off") or (isinstance(value, int) and not isinstance(value, bool)
                                        and value >= 1):  # fmt: skip
            return value
        raise ValueError("must be 'auto', 'off' or a number of tokens >= 1 (e.g. 1024)")

    @model_validator(mode="after")
    def _length_given(self) -> "TrainingSpec":
        if self.epochs is None and self.max_steps is None:
            raise ValueError("set training.epochs or training.max_steps")
        return self


def _squash(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def canonical_accelerator(value: str) -> str:
    """``h100`` -> ``H100``, ``a100 80gb`` -> ``A100-80GB``; an unknown name lists the valid ones
    (and the closest, when one is close)."""
    canon = {_squash(a): a for a in ACCELERATORS}
    if _squash(value) in canon:
        return canon[_squash(value)]
    import difflib

    close = difflib.get_close_matches(_squash(value), list(canon), n=2, cutoff=0.75)
    hint = f"did you mean {' or '.join(repr(canon[c]) for c in close)}? " if close else ""
    raise ValueError(f"unknown accelerator {value!r}; {hint}valid: {', '.join(ACCELERATORS)}")


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
    count: int = Field(1, ge=1, le=64, description="Accelerators per node; for a TPU, the "
                       "slice's chips (16 tpu-v5e chips: a 4x4 slice on 4 hosts).")
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


class PushToHubSpec(Section):
    """The saved model (merged, or the adapter alone without model.lora.merge_on_save) to a Hugging
    Face Hub model repository at the end of the job."""

    repo_id: str = Field(pattern=r"^[A-Za-z0-9][\w.-]*/[\w.-]+$", description="ORG/NAME.")
    private: bool = True
    revision: str | None = Field(None, description="Branch to push to (created if missing).")
    token_env: str = Field("HF_TOKEN", description="The variable holding the token; give it in "
                           "`secrets` (by reference).")  # fmt: skip
    commit_message: str | None = None


class RegisterSpec(Section):
    """Register the finished job's model in the provider's model registry (`genai-cloud register`):
    a version of `name` (SageMaker: a model package group; Vertex / Azure ML: a model)."""

    name: str = Field(pattern=r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$",
                      description="The registered model (SageMaker: model package group).")  # fmt: skip
    image_uri: str | None = Field(None, description="The serving container image the model runs "
                                  "in (SageMaker and Vertex need one; Azure ML does not).")  # fmt: skip
    approval: Literal["PendingManualApproval", "Approved", "Rejected"] = "PendingManualApproval"
    description: str | None = Field(None, max_length=900)


class OutputSpec(Section):
    uri: str | None = Field(
        None, description="Base output URI (s3:// gs:// azureml://) or local directory."
    )
    local_dir: str = Field("runs", description="Where local runs keep their run directories.")
    push_to_hub: PushToHubSpec | None = None
    # Spelt `register` in a spec; a field of that name would shadow pydantic's ABC `register`.
    register_model: RegisterSpec | None = Field(None, alias="register")


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
    gate: bool = Field(False, description="For finetune: stop before training when the audit "
                       "(which runs whenever this section is present) fails fail_on.")  # fmt: skip


class FairnessSpec(Section):
    mode: Literal["classifier", "language-model"] = "classifier"
    positive_label: int | str = 1
    bootstrap: int = Field(200, ge=0)
    pairs: str | None = Field(None, description="Stereotype sentence-pair file (jsonl).")
    fail_on: dict[str, float] = Field(default_factory=dict)
    mitigation: list[Literal["counterfactual", "reweight"]] = Field(default_factory=list)
    gate: bool = Field(False, description="For finetune: evaluate the trained model's fairness "
                       "(a classifier on the eval split, a causal LM on the templates) and fail "
                       "on fail_on.")  # fmt: skip


class DpoSpec(Section):
    """Preference tuning on prompt / chosen / rejected pairs (job_templates/dpo.py)."""

    loss: Literal["dpo", "simpo", "orpo"] = Field(
        "dpo", description="dpo: against a frozen reference; simpo / orpo: reference-free."
    )
    beta: float = Field(0.1, gt=0, description="DPO / SimPO temperature; ORPO's lambda.")
    simpo_gamma: float = Field(0.5, ge=0, description="SimPO's target reward margin.")
    reference: str | None = Field(None, description="Reference model for loss dpo (default: "
                                  "the starting model); its log-probs are computed once.")  # fmt: skip
    debias: bool = Field(False, description="Add pairs built from the bundled stereotype "
                         "sentence pairs and counterfactual templates (anti-stereotype preferred).")  # fmt: skip


class TrackingSpec(Section):
    """Experiment tracking (job_templates/common/tracking.py): rank 0 logs the spec, per-step
    metrics, evaluations and the outputs; a failing backend is warned about and switched off."""

    backends: list[Literal["mlflow", "tensorboard", "wandb"]] = Field(
        default_factory=list, description="Where to log; none by default.")  # fmt: skip
    experiment: str | None = Field(None, description="MLflow experiment; default: the spec name.")
    mlflow_uri: str | None = Field(None, description="Tracking URI (http(s)://, file path, "
                                   "databricks, a SageMaker MLflow tracking server ARN); default: "
                                   "MLFLOW_TRACKING_URI (Azure ML sets the workspace's), else "
                                   "runs/mlruns locally, <output>/mlruns in a cloud job.")  # fmt: skip
    tensorboard_dir: str | None = Field(None, description="Event files; default: Vertex's "
                                        "AIP_TENSORBOARD_LOG_DIR, SageMaker's TensorBoard output, "
                                        "else <output>/tensorboard.")  # fmt: skip
    wandb_project: str | None = Field(None, description="W&B project; default: the spec name.")
    wandb_entity: str | None = None
    vertex_tensorboard: str | None = Field(
        None, pattern=r"^projects/[^/]+/locations/[^/]+/tensorboards/[^/]+$",
        description="A Vertex AI TensorBoard instance to show a Vertex job's event files in "
        "(needs gcp.service_account).")  # fmt: skip

    @field_validator("backends")
    @classmethod
    def _once_each(cls, backends: list[str]) -> list[str]:
        if len(set(backends)) != len(backends):
            raise ValueError("name each backend once")
        return backends


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


class KubernetesSpec(Section):
    """Where a Kubeflow PyTorchJob runs on a cluster (provider ``kubernetes``)."""

    namespace: str = Field("default", pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
    image: str | None = Field(None, description="Default: the PyTorch CUDA runtime image.")
    service_account: str | None = None
    volumes: dict[str, str] = Field(
        default_factory=dict,
        description="PersistentVolumeClaim name -> where the pods mount it (data, models, runs).",
    )
    output_dir: str | None = Field(
        None, description="Folder on one of the volumes for <job>/{model,checkpoints,output}.")
    secrets: dict[str, str] = Field(
        default_factory=dict,
        description="ENV_NAME -> 'secret-name/key' of a Kubernetes Secret in the namespace.",
    )
    node_selector: dict[str, str] = Field(
        default_factory=dict, description="Node labels; replaces the accelerator's GPU label.")
    tolerations: list[dict[str, str | int]] = Field(
        default_factory=list, description="Extra pod tolerations (Kubernetes Toleration fields).")
    image_pull_secrets: list[str] = Field(default_factory=list)

    @field_validator("secrets")
    @classmethod
    def _secret_keys(cls, secrets: dict[str, str]) -> dict[str, str]:
        for env, ref in secrets.items():
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", env):
                raise ValueError(f"{env!r} is not a valid environment variable name")
            if not re.fullmatch(r"[a-z0-9]([-.a-z0-9]*[a-z0-9])?/[-._a-zA-Z0-9]+", ref):
                raise ValueError(f"kubernetes.secrets.{env} must be 'secret-name/key' (a "
                                 f"Kubernetes Secret and one of its keys), not {ref!r}")
        return secrets


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
    task: Task = Field(Task.finetune, validate_default=True)
    model: ModelSpec | None = None
    data: DataSpec | None = None
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    compute: ComputeSpec = Field(default_factory=ComputeSpec)
    output: OutputSpec = Field(default_factory=OutputSpec)
    tracking: TrackingSpec = Field(default_factory=TrackingSpec)
    budget: BudgetSpec = Field(default_factory=BudgetSpec)
    env: dict[str, str] = Field(default_factory=dict, description="Non-secret environment.")
    secrets: dict[str, str] = Field(
        default_factory=dict,
        description="ENV_NAME -> secret reference (Secrets Manager ARN, GCP secret name, "
        "Key Vault URI). Resolved by the entrypoint at run time, never rendered.",
    )
    labels: dict[str, str] = Field(default_factory=dict)
    _notes: list[str] = PrivateAttr(default_factory=list)  # how loosely written names were read

    scratch: ScratchSpec | None = None
    distill: DistillSpec | None = None
    prune: PruneSpec | None = None
    evaluate: EvaluateSpec | None = None
    audit: AuditSpec | None = None
    fairness: FairnessSpec | None = None
    dpo: DpoSpec | None = None

    aws: AwsSpec = Field(default_factory=AwsSpec)
    gcp: GcpSpec = Field(default_factory=GcpSpec)
    azure: AzureSpec = Field(default_factory=AzureSpec)
    kubernetes: KubernetesSpec = Field(default_factory=KubernetesSpec)

    @field_validator("env")
    @classmethod
    def _env_names(cls, env: dict[str, str]) -> dict[str, str]:
        for key in env:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
                raise ValueError(f"{key!r} is not a valid environment variable name")
        from .credentials import env_problems  # secret values belong under `secrets:`

        if problems := env_problems(env):
            raise field_problems(problems)
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

    @model_validator(mode="wrap")
    @classmethod
    def _spelling_notes(cls, data: Any, handler: Any) -> "JobSpec":
        """Remember accelerator names written another way than the canonical one (``a100``), so
        that ``warnings`` can say how they were read."""
        spec = handler(data)
        compute = data.get("compute") if isinstance(data, dict) else None
        written = []
        if isinstance(compute, dict):
            written.append(("compute.accelerator", compute.get("accelerator")))
            fallbacks = compute.get("fallback")
            for i, item in enumerate(fallbacks if isinstance(fallbacks, list) else []):
                if isinstance(item, dict):
                    written.append((f"compute.fallback[{i}].accelerator", item.get("accelerator")))
        for field, raw in written:
            if isinstance(raw, str) and raw not in ACCELERATORS:
                spec._notes.append(f"{field}: {raw!r} read as {canonical_accelerator(raw)!r}.")
        return spec

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
        if self.training.strategy == "fsdp" and task not in (Task.finetune, Task.distill):
            problem("training.strategy", f"fsdp trains tasks 'finetune' and 'distill', not "
                    f"{task.value!r} (which trains with its own loop or changes weights in place); "
                    "use auto or ddp")  # fmt: skip
        if self.compute.is_tpu and self.training.strategy != "ddp":
            # XLA SPMD (job_templates/common/xla_spmd.py) shards over every chip, on the device.
            fsdp = self.training.fsdp
            if fsdp.sharding == "hybrid":
                problem("training.fsdp.sharding", "hybrid sharding is FSDP2's, on GPUs; on a TPU "
                        "the model is sharded over every chip of the slice (use full)")  # fmt: skip
            if fsdp.cpu_offload:
                problem("training.fsdp.cpu_offload", "FSDP2's host offload is for GPUs; on a TPU "
                        "the sharded state stays on the chips (a bigger slice holds more)")  # fmt: skip
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
        hub = self.output.push_to_hub
        if hub is not None and task not in (Task.finetune, Task.distill, Task.prune):
            problem("output.push_to_hub", f"task {task.value!r} saves no model to push")
        elif hub is not None and hub.token_env not in self.secrets:
            problem("output.push_to_hub.token_env", f"{hub.token_env} must be a `secrets` entry "
                    "(a reference to a Hugging Face token with write access), so the job can "
                    "read it and no token is written in the spec")  # fmt: skip
        spot = self.compute.spot or self.gcp.strategy == "SPOT" or self.azure.job_tier == "spot"
        if spot and not self.checkpointing() and not self.compute.allow_spot_without_checkpoints:
            problem("training.checkpoint_every", "required on spot capacity, or an eviction "
                    "restarts the job from step 0 (e.g. 200; or set "
                    "compute.allow_spot_without_checkpoints)")  # fmt: skip
        if task is Task.dpo:
            self._check_dpo(problem)
        if self.data and self.data.streaming:
            for field, message in streaming_problems(self):
                problem(field, message)
        if self.compute.is_tpu or self.gcp.tpu_topology:
            for field, message in slice_problems(self.compute.accelerator, self.compute.count,
                                                 self.compute.nodes, self.gcp.tpu_topology):
                problem(field, message)
        if problems:
            raise field_problems(problems)
        if self.compute.is_tpu and self.gcp.tpu_topology:
            # A TPU's compute.count is the slice's chips: say it once, however it was asked.
            self.compute.count = math.prod(sides(self.gcp.tpu_topology))
        if task is Task.pretrain_scratch and self.scratch is None:
            self.scratch = ScratchSpec()
        for name in ("prune", "evaluate", "audit", "fairness", "dpo"):
            if task.value == name and getattr(self, name) is None:
                setattr(self, name, _SECTION_TYPES[name]())
        return self

    def _check_dpo(self, problem) -> None:
        debias = self.dpo is not None and self.dpo.debias
        if self.data and self.data.format != "preference" and not debias:
            problem("data.format", "must be 'preference' (prompt / chosen / rejected fields) for "
                    "task 'dpo'")  # fmt: skip
        if self.model and self.model.head != "causal-lm":
            problem("model.head", "task 'dpo' tunes a causal LM: use head 'causal-lm'")
        if self.dpo and self.dpo.reference and self.dpo.loss != "dpo":
            problem("dpo.reference", f"loss {self.dpo.loss!r} is reference-free; remove "
                    "dpo.reference or use loss 'dpo'")  # fmt: skip

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
        notes = list(self._notes)
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
        notes += self._hub_data_notes(providers)
        return notes

    def _hub_data_notes(self, providers: list[str] | None) -> list[str]:
        """Where a cloud job gets an hf:// dataset: the hub, from inside the container."""
        if providers == [] or self.data is None:  # a local run reads the hub (or its cache) here
            return []
        notes = []
        for name in ("train", "eval"):
            value = getattr(self.data, name)
            if is_hub_dataset(value):
                notes.append(
                    f"data.{name}: the cloud job downloads {value} from the Hugging Face Hub "
                    "itself, so it needs internet access (a NAT route with aws.subnets / "
                    "gcp.network); without it, pre-stage a copy (save_to_disk or parquet) in the "
                    f"job's storage and point data.{name} at that. Private or gated datasets "
                    "need HF_TOKEN in secrets."
                )
        return notes


_SECTION_TYPES = {
    "prune": PruneSpec,
    "evaluate": EvaluateSpec,
    "audit": AuditSpec,
    "fairness": FairnessSpec,
    "dpo": DpoSpec,
}


def json_schema() -> dict:
    """The JSON Schema of a spec file (for editor autocompletion)."""
    schema = JobSpec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "genai-cloud JobSpec"
    return schema

