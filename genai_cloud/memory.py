"""Does the spec's model fit its accelerators, and under which strategy: checked before launch.

``validate``, ``render``, ``estimate`` and ``submit`` call ``check``; the job itself asks the same
plan (``job_templates/common/memory_plan.py``, standard library only) when ``training.strategy``
is ``auto``. A spec that fits under no strategy is refused with the figures and what would fit.

The model's size comes from its local ``config.json``, else from a table of known hub models or
the size in its name ("Llama-3.1-8B"), said in the report; a model known by none of these (an
``s3://`` URI with no size in its name) is not checked.
"""

from __future__ import annotations

from dataclasses import dataclass

from job_templates.common import memory_plan as mp

from . import tpu
from .errors import SpecError
from .spec import JobSpec

TRAINING_TASKS = ("finetune", "distill", "prune")
GPU_KINDS = ("T4", "L4", "A10G", "A100", "A100-80GB", "H100", "H200")  # smallest first
BF16_GPUS = ("L4", "A10", "A10G", "A100", "A100-80GB", "H100", "H200")  # Ampere and newer


@dataclass
class MemoryReport:
    """The plan of one spec: the strategy chosen (None: fits nowhere) and every figure."""

    accelerator: str
    count: int
    nodes: int
    shape: mp.ModelShape
    work: mp.Workload
    strategy: str | None
    plans: dict  # strategy -> memory_plan.Breakdown

    @property
    def capacity(self) -> float:
        return mp.DEVICE_GIB[self.accelerator] * mp.GIB

    def summary(self) -> str:
        """One line: what was chosen and what it needs per device."""
        device = "chip" if self.work.device == "xla" else "GPU"
        if self.strategy is None:
            return f"fits no strategy on {self.count} x {self.accelerator} x {self.nodes} node(s)"
        plan = self.plans[self.strategy]
        return (f"{mp.describe_params(self.shape.params)}-parameter model ({self.shape.source}): "
                f"{_strategy_name(self.strategy)} needs {plan.describe()} per {device} of "
                f"{mp.gib(self.capacity)}")  # fmt: skip


def workload(spec: JobSpec, accelerator: str, *, lora: bool | None = None,
             checkpointing: bool | None = None, half_weights: bool | None = None,
             batch_size: int | None = None) -> mp.Workload:  # fmt: skip
    """The plan's inputs from the spec (``lora`` / ``checkpointing`` override it, for advice)."""
    training, model = spec.training, spec.model
    shape = _student_shape(spec)
    precision = training.precision
    if precision == "auto":
        precision = "bf16" if accelerator in BF16_GPUS or accelerator.startswith("tpu-") else "fp16"
    use_lora = (model.lora is not None) if lora is None else lora
    trainable = mp.lora_trainable(shape, model.lora.r if model.lora else 8) if use_lora else None
    teacher = mp.shape_for(spec.distill.teacher) if spec.task == "distill" else None
    return mp.Workload(
        batch_size=batch_size or training.batch_size, seq_len=spec.data.max_seq_len if spec.data else 512,
        trainable=trainable, precision=precision,
        weight_bytes=2 if (model.dtype in ("bfloat16", "float16") if half_weights is None
                           else half_weights) else 4,
        checkpointing=training.gradient_checkpointing if checkpointing is None else checkpointing,
        teacher=teacher, device="xla" if accelerator.startswith("tpu-") else "cuda",
    )  # fmt: skip


def plan_for(spec: JobSpec, accelerator: str | None = None, count: int | None = None,
             nodes: int | None = None, **overrides) -> MemoryReport | None:  # fmt: skip
    """The memory plan of ``spec`` (on another placement when given); None where it does not
    apply (CPU, a task that trains nothing, a model of unknown size)."""
    accelerator = accelerator or spec.compute.accelerator
    if spec.task not in TRAINING_TASKS or spec.model is None or accelerator not in mp.DEVICE_GIB:
        return None
    shape = _student_shape(spec)
    if shape is None:
        return None
    count, nodes = count or spec.compute.count, nodes or spec.compute.nodes
    work = workload(spec, accelerator, **overrides)
    wanted = "ddp" if spec.task == "prune" else spec.training.strategy  # prune shards nothing
    fsdp = spec.training.fsdp
    strategy, plans = mp.choose(shape, work, mp.DEVICE_GIB[accelerator] * mp.GIB,
                                world=count * nodes, per_node=count, wanted=wanted,
                                sharding=fsdp.sharding, cpu_offload=fsdp.cpu_offload)  # fmt: skip
    return MemoryReport(accelerator, count, nodes, shape, work, strategy, plans)


def check(spec: JobSpec) -> MemoryReport | None:
    """The plan, or a ``SpecError`` with the figures and what would fit when nothing does."""
    report = plan_for(spec)
    if report is None or report.strategy is not None:
        return report
    raise SpecError([refusal(spec, report)])


def refusal(spec: JobSpec, report: MemoryReport) -> str:
    """"8B full fine-tune on 1 x A10G needs ~130 GiB per GPU (...); fits 8 x A100-80GB with
    FSDP, or LoRA on 1 x A10G"."""
    cheapest = min(report.plans.values(), key=lambda p: p.total)
    what = f"{mp.describe_params(report.shape.params)} {_task_name(spec)}"
    device = "chip" if report.work.device == "xla" else "GPU"
    head = (f"compute: {what} on {report.count * report.nodes} x {report.accelerator} needs "
            f"~{cheapest.describe()} per {device} even with {_strategy_name(cheapest.strategy)}, "
            f"more than its {mp.gib(report.capacity * mp.HEADROOM)} usable "
            f"(model size from {report.shape.source})")  # fmt: skip
    ideas = _what_fits(spec, report)
    return head + "; " + (", or ".join(ideas) if ideas else "no placement tried fits it")


def _what_fits(spec: JobSpec, report: MemoryReport) -> list[str]:
    ideas = []
    here = f"{report.count * report.nodes} x {report.accelerator}"
    if report.work.device == "xla":
        return _tpu_ideas(spec, report)
    bigger = [g for g in GPU_KINDS if mp.DEVICE_GIB[g] >= mp.DEVICE_GIB[report.accelerator]]
    # More of the same GPU, then bigger GPUs, then more nodes of 8: the first placement that fits.
    placements = [(gpu, count, report.nodes) for gpu in bigger for count in (1, 2, 4, 8)
                  if not (gpu == report.accelerator and count <= report.count)]
    placements += [(gpu, 8, nodes) for nodes in (2, 4, 8, 16) if nodes > report.nodes
                   for gpu in bigger]  # fmt: skip
    fits = _first_fit(spec, placements)
    if fits:
        ideas.append(f"fits {fits}")
    if spec.training.strategy == "ddp" and report.count * report.nodes > 1:
        sharded = plan_for(spec.model_copy(update={"training": spec.training.model_copy(
            update={"strategy": "fsdp"})}))  # fmt: skip
        if sharded and sharded.strategy:
            ideas.append(f"training.strategy: fsdp (or auto) on {here}")
    if not spec.training.gradient_checkpointing:
        ckpt = plan_for(spec, checkpointing=True)
        if ckpt and ckpt.strategy:
            ideas.append(f"training.gradient_checkpointing: true on {here}")
    if spec.task == "finetune" and spec.model.lora is None:
        # LoRA trains a few adapters; its frozen base may be held in bf16 and its activations
        # recomputed: the first of these that fits is the advice.
        for extra, settings in (("", {}), (" with model.dtype: bfloat16", {"half_weights": True}),
                                (" with model.dtype: bfloat16 and training.gradient_checkpointing",
                                 {"half_weights": True, "checkpointing": True})):  # fmt: skip
            lora = plan_for(spec, lora=True, **settings)
            if lora and lora.strategy:
                ideas.append(f"LoRA (model.lora){extra} on {here}")
                break
    if not ideas and spec.training.batch_size > 1:
        # Activations grow with the micro-batch: one sequence at a time, recomputed, with
        # gradient accumulation keeping the global batch.
        here_first = [(report.accelerator, report.count, report.nodes)] + placements
        fits = _first_fit(spec, here_first, batch_size=1, checkpointing=True)
        if fits:
            ideas.append("training.batch_size: 1 with training.gradient_checkpointing: true (and "
                         f"training.grad_accum for the global batch) fits {fits}")  # fmt: skip
    return ideas


def _tpu_ideas(spec: JobSpec, report: MemoryReport) -> list[str]:
    """What would fit on TPUs: sharding over these chips (XLA SPMD) when a replica per chip was
    asked for, a bigger slice of the same chips (sharded), then what makes a model smaller."""
    ideas, chips = [], report.count * report.nodes
    here = f"{chips} x {report.accelerator}"
    sharded = spec.model_copy(update={"training": spec.training.model_copy(
        update={"strategy": "fsdp"})})  # fmt: skip
    if spec.training.strategy == "ddp":
        option = plan_for(sharded)
        if option and option.strategy:
            ideas.append(f"training.strategy: fsdp (or auto): XLA SPMD sharding on {here}")
            return ideas
    gen = tpu.generation(report.accelerator)
    larger = [c for c in tpu.slice_chip_counts(gen) if c > chips] if gen else []
    how = ("training.strategy: fsdp (or auto) on " if spec.training.strategy == "ddp" else "")
    for extra, settings in (("", {}), (" and training.gradient_checkpointing: true",
                                       {"checkpointing": True})):  # fmt: skip
        if settings and report.work.checkpointing:
            continue
        fits = next((c for c in larger if (o := plan_for(sharded, count=c, **settings))
                     and o.strategy), None)  # fmt: skip
        if fits:
            ideas.append(f"{how}a {fits}-chip {report.accelerator} slice (compute.count: "
                         f"{fits}) with XLA SPMD sharding{extra}")  # fmt: skip
            break
    if not spec.model.lora and spec.task == "finetune":
        ideas.append("LoRA (model.lora) with model.dtype: bfloat16")
    if not report.work.checkpointing and not any("checkpointing" in i for i in ideas):
        ideas.append("training.gradient_checkpointing: true")
    if spec.training.batch_size > 1:
        ideas.append("a smaller training.batch_size")
    if report.accelerator != "tpu-v5p":
        ideas.append("a chip with more memory (tpu-v5p: 95 GiB)")
    return ideas


def _first_fit(spec: JobSpec, placements: list, **overrides) -> str | None:
    """"8 x H100 with FSDP" for the first ``(gpu, count, nodes)`` the plan fits, or None."""
    for gpu, count, nodes in placements:
        option = plan_for(spec, gpu, count, nodes, **overrides)
        if option and option.strategy:
            where = f"{count} x {gpu}" if nodes == 1 else f"{nodes} nodes x {count} x {gpu}"
            return f"{where} with {_strategy_name(option.strategy)}"
    return None


def _student_shape(spec: JobSpec) -> mp.ModelShape | None:
    if spec.task != "distill" or spec.distill.student_init != "alternate-layers":
        return mp.shape_for(spec.model.name_or_path)
    teacher = mp.shape_for(spec.distill.teacher)
    if teacher is None:
        return None
    from dataclasses import replace

    layers = spec.distill.student_layers or max(1, teacher.layers // 2)
    scale = layers / teacher.layers
    override = int(teacher.params_override * scale) if teacher.params_override else None
    return replace(teacher, layers=layers, params_override=override,
                   source=f"{layers} layers of the teacher, {teacher.source}")  # fmt: skip


def _task_name(spec: JobSpec) -> str:
    if spec.task == "finetune":
        return "LoRA fine-tune" if spec.model.lora else "full fine-tune"
    return {"distill": "distillation", "prune": "pruning recovery"}[spec.task]


def _strategy_name(name: str) -> str:
    return {"single": "one GPU", "ddp": "DDP", "fsdp": "FSDP", "hsdp": "FSDP (hybrid)",
            "xla": "one replica per TPU chip", "xla-spmd": "XLA SPMD sharding"}[name]  # fmt: skip
