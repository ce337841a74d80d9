"""How many bytes a training run needs on each device, per strategy: the memory plan.

Imported by the job (``strategies.auto_strategy``) and by the SDK (``genai_cloud.memory``:
``validate`` / ``render`` / ``estimate`` refuse a spec that fits nowhere), so it uses the standard
library only.

Per device, for one micro-batch of ``b`` sequences of ``s`` tokens:

- **weights** ``P x w`` (``w`` = 4 bytes: the Trainer keeps fp32 master weights and autocasts;
  2 when the model is loaded in bf16/fp16), **gradients** ``T x w`` and **AdamW state** (two
  moments) ``2 T x w`` for ``T`` trainable parameters: the 16 bytes a parameter of mixed-precision
  Adam (ZeRO, Rajbhandari et al. 2019, section 3.1). DDP holds all of it on every rank; FSDP
  divides it by the shard group (every rank, or the GPUs of a node for ``hybrid``) and adds the
  unsharded working set (two blocks all-gathered at a time: the current one and the prefetched
  next; the root's embeddings and head stay gathered for the step); CPU offload moves the shards
  to host memory.
- **activations** saved for backward, per layer ``b s`` times (attention: the norm's input, its
  output and the q/k/v/output projections' inputs; MLP: its input and the ``ffn``-wide
  intermediates), in the autocast dtype; plus the attention probabilities (``a s^2 b``) when the
  attention kernel materialises them (eager), not with SDPA's flash / memory-efficient kernels.
  This follows Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large Transformer
  Models", eq. 1: ``s b h (34 + 5 a s / h)`` bytes per layer in 16-bit with dropout). With
  activation checkpointing each layer keeps only its input ``b s h`` and one layer is recomputed
  at a time. The LM head's logits (``b s V`` and the loss's fp32 copies) come on top.
- **a distillation teacher**: replicated on every rank (never sharded), frozen: weights only in
  its dtype, plus its logits for the loss.

``auto`` takes the cheapest strategy that fits: DDP (no extra communication), else FSDP (sharded
over every rank, or within each node with ``training.fsdp.sharding: hybrid``). On a TPU: a
replica per chip (``xla``), else the same states sharded over every chip of the slice
(``xla-spmd``, torch_xla SPMD; XLA's partitioner all-gathers weights where it needs them, counted
as FSDP's working set, an estimate not measured on a TPU; the activations are each chip's rows).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

GIB = 1024**3

# Usable memory per accelerator, GiB: what the device reports (nvidia-smi's total; TPU HBM per
# chip from the Cloud TPU system-architecture pages), not the marketing round number.
DEVICE_GIB = {
    "T4": 15.0, "L4": 22.5, "A10": 22.5, "A10G": 22.5, "V100": 15.8, "A100": 39.6,
    "A100-80GB": 79.2, "H100": 79.6, "H200": 139.8,
    "tpu-v4": 32.0, "tpu-v5e": 16.0, "tpu-v5p": 95.0, "tpu-v6e": 32.0,
}  # fmt: skip
# The allocator never hands out every byte (fragmentation, cuBLAS workspaces, NCCL buffers).
HEADROOM = 0.92
CUDA_CONTEXT_BYTES = 600 * 1024**2  # CUDA context + kernels of torch, measured ~0.5-0.7 GiB

# Published shapes of common hub models, for planning without their config.json (offline).
# (hidden, layers, heads, kv heads, ffn, vocab, positions (learned) or 0, gated MLP, tied)
KNOWN_MODELS = {
    "gpt2": (768, 12, 12, 12, 3072, 50257, 1024, False, True),
    "distilgpt2": (768, 6, 12, 12, 3072, 50257, 1024, False, True),
    "gpt2-medium": (1024, 24, 16, 16, 4096, 50257, 1024, False, True),
    "gpt2-large": (1280, 36, 20, 20, 5120, 50257, 1024, False, True),
    "gpt2-xl": (1600, 48, 25, 25, 6400, 50257, 1024, False, True),
    "llama-2-7b": (4096, 32, 32, 32, 11008, 32000, 0, True, False),
    "llama-2-13b": (5120, 40, 40, 40, 13824, 32000, 0, True, False),
    "llama-3-8b": (4096, 32, 32, 8, 14336, 128256, 0, True, False),
    "llama-3.1-8b": (4096, 32, 32, 8, 14336, 128256, 0, True, False),
    "llama-3-70b": (8192, 80, 64, 8, 28672, 128256, 0, True, False),
    "llama-3.1-70b": (8192, 80, 64, 8, 28672, 128256, 0, True, False),
    "llama-3.2-1b": (2048, 16, 32, 8, 8192, 128256, 0, True, True),
    "llama-3.2-3b": (3072, 28, 24, 8, 8192, 128256, 0, True, True),
    "mistral-7b": (4096, 32, 32, 8, 14336, 32000, 0, True, False),
}  # fmt: skip
_SIZE_IN_NAME = re.compile(r"(?<![0-9.])(\d+(?:\.\d+)?)\s*([bBmM])(?![a-zA-Z])")


@dataclass(frozen=True)
class ModelShape:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    ffn: int
    vocab: int
    positions: int = 0  # learned position embeddings (GPT-2); 0 for rotary
    gated: bool = False  # SwiGLU MLP (Llama, Mistral): gate, up and down projections
    tied: bool = True  # the LM head shares the embedding matrix
    activation: str = "gelu"
    attention: str = "sdpa"  # "eager" materialises the attention probabilities
    dropout: bool = False
    params_override: int | None = None  # when only a total is known ("8B" in the name)
    source: str = "config.json"  # how the shape is known: said in every report

    @property
    def params(self) -> int:
        if self.params_override:
            return self.params_override
        h, kv = self.hidden, self.hidden * self.kv_heads // self.heads
        attention = 2 * h * h + 2 * h * kv + (4 * h if not self.gated else 0)  # GPT-2 has biases
        mlp = (3 if self.gated else 2) * h * self.ffn + (0 if self.gated else self.ffn + h)
        norms = (2 if self.gated else 4) * h
        embeddings = self.vocab * h + self.positions * h
        head = 0 if self.tied else self.vocab * h
        final_norm = h if self.gated else 2 * h  # RMSNorm: a gain; LayerNorm: gain and bias
        return self.layers * (attention + mlp + norms) + embeddings + head + final_norm

    @property
    def block_params(self) -> int:
        root = self.vocab * self.hidden * (1 if self.tied else 2) + self.positions * self.hidden
        return max(1, (self.params - root) // max(1, self.layers))

    @property
    def root_params(self) -> int:
        return self.params - self.block_params * self.layers


@dataclass(frozen=True)
class Workload:
    batch_size: int  # per device, one micro-batch
    seq_len: int
    trainable: int | None = None  # None: every parameter (full fine-tune); fewer with LoRA
    precision: str = "bf16"  # the autocast dtype: bf16 | fp16 | fp32
    weight_bytes: int = 4  # 4: fp32 master weights; 2: a model loaded in bf16 / fp16
    checkpointing: bool = False
    teacher: ModelShape | None = None
    teacher_bytes: int = 2  # bf16 teacher on GPU
    device: str = "cuda"  # "cuda" | "cpu" | "xla": decides the fixed overheads


@dataclass
class Breakdown:
    strategy: str
    weights: float
    gradients: float
    optimizer: float
    activations: float
    teacher: float = 0.0
    working: float = 0.0  # FSDP's all-gathered blocks and their unsharded gradients
    step_temporaries: float = 0.0  # AdamW's foreach step on CUDA
    overhead: float = 0.0
    notes: list = field(default_factory=list)

    @property
    def total(self) -> float:
        """The peak: weights, optimizer state, teacher and FSDP working set are there all
        along; activations peak when backward starts (set_to_none: no gradients yet), gradients
        when it ends, as the activations have been freed (with the optimizer step's temporaries)."""
        steady = self.weights + self.optimizer + self.teacher + self.working + self.overhead
        return steady + max(self.activations, self.gradients + self.step_temporaries)

    def describe(self) -> str:
        parts = [("weights", self.weights), ("gradients", self.gradients),
                 ("optimizer", self.optimizer), ("activations", self.activations),
                 ("teacher", self.teacher), ("FSDP working set", self.working),
                 ("optimizer-step temporaries", self.step_temporaries)]  # fmt: skip
        shown = ", ".join(f"{name} {gib(v)}" for name, v in parts if v)
        return f"{gib(self.total)} ({shown})"


def gib(n: float) -> str:
    return f"{n / GIB:.1f} GiB" if n >= GIB / 10 else f"{n / 1024**2:.0f} MiB"


def usable(capacity_bytes: float) -> float:
    return capacity_bytes * HEADROOM


# ---- activations --------------------------------------------------------------------------------


def layer_activation_bytes(shape: ModelShape, batch: int, seq: int, dtype_bytes: int) -> float:
    """Bytes one transformer layer saves for backward (no checkpointing)."""
    h, f, tokens = shape.hidden, shape.ffn, batch * seq
    kv = h * shape.kv_heads // shape.heads
    if shape.gated:
        # RMSNorm x2 (input, normalised, scaled) | q, k, v after rotary, attention output and its
        # contiguous copy | MLP: gate, up, silu(gate), their product.
        items = 3 * h + 2 * h + 2 * kv + 2 * h + 3 * h + 4 * f
    else:
        # LayerNorm x2 (input) | qkv input, q, k, v, projection input | fc input, the GELU
        # input and output; tanh-approximated GELU written out (gelu_new) keeps 3 more.
        gelu = 2 * f + (3 * f if shape.activation == "gelu_new" else 0)
        items = 2 * h + 5 * h + h + gelu
    total = items * tokens * dtype_bytes
    if shape.dropout:
        total += 2 * h * tokens  # one byte per element for the two residual dropout masks
    if shape.attention == "eager":
        scores = shape.heads * seq * seq * batch
        total += scores * dtype_bytes * (2 if shape.dropout else 1) + (scores if shape.dropout else 0)
    return total


def activation_bytes(shape: ModelShape, work: Workload) -> float:
    """Everything the forward pass keeps for backward, plus the loss's logits."""
    d = {"fp32": 4}.get(work.precision, 2)
    b, s = work.batch_size, work.seq_len
    per_layer = layer_activation_bytes(shape, b, s, d)
    # Logits in the autocast dtype, the loss's fp32 copy of them (none when they are fp32
    # already), its log-softmax, and the gradient of the logits during backward.
    logits = b * s * shape.vocab * (d + (4 if d != 4 else 0) + 4 + 4)
    edges = 3 * b * s * shape.hidden * 4  # embeddings' output, the final norm
    if work.checkpointing:
        # Each layer keeps its input; the one being recomputed holds its full set, but only once
        # the loss's logits are gone.
        return shape.layers * b * s * shape.hidden * d + max(per_layer, logits) + edges
    return shape.layers * per_layer + logits + edges


def lora_trainable(shape: ModelShape, rank: int = 8) -> int:
    """Trainable parameters of LoRA rank ``rank`` on the attention's q and v projections."""
    kv = shape.hidden * shape.kv_heads // shape.heads
    return shape.layers * rank * (2 * shape.hidden + shape.hidden + kv)


# ---- the plan -----------------------------------------------------------------------------------


def per_device(shape: ModelShape, work: Workload, strategy: str, *, world: int = 1,
               per_node: int = 1, cpu_offload: bool = False) -> Breakdown:  # fmt: skip
    """Bytes each device needs under ``strategy`` (``single``, ``ddp``, ``fsdp`` = shard over
    every rank, ``hsdp`` = shard within a node of ``per_node`` devices, ``xla`` = a whole
    replica on every TPU chip, ``xla-spmd`` = weights, gradients and AdamW state sharded over
    all chips by XLA SPMD, each chip computing the activations of its ``batch_size`` rows)."""
    w, params = work.weight_bytes, shape.params
    trainable = params if work.trainable is None else work.trainable
    shards = {"fsdp": world, "hsdp": per_node, "xla-spmd": world}.get(strategy, 1)
    weights, grads, optim = params * w / shards, trainable * w / shards, 2 * trainable * w / shards
    working, notes = 0.0, []
    compute = {"fp32": 4}.get(work.precision, 2)
    if shards > 1:
        # Two blocks gathered (current + prefetched) with their unsharded gradients, and the
        # root (embeddings, head) gathered for the whole step.
        working = 2 * shape.block_params * (compute + 4) + shape.root_params * (compute + 4)
    temporaries = trainable * w / shards if work.device == "cuda" else 0.0
    if cpu_offload and shards > 1:
        notes.append("weights, gradients and optimizer state in host memory")
        weights = grads = optim = 0.0
    teacher = 0.0
    if work.teacher is not None:
        t = work.teacher
        teacher = t.params * work.teacher_bytes + work.batch_size * work.seq_len * t.vocab * 4
        notes.append("the teacher is replicated on every device")
    return Breakdown(strategy=strategy, weights=weights, gradients=grads, optimizer=optim,
                     activations=activation_bytes(shape, work), teacher=teacher, working=working,
                     step_temporaries=temporaries,
                     overhead=CUDA_CONTEXT_BYTES if work.device == "cuda" else 0.0,
                     notes=notes)  # fmt: skip


def candidates(world: int, per_node: int, device: str, wanted: str = "auto",
               sharding: str = "full") -> list[str]:  # fmt: skip
    """Strategies in the order ``auto`` tries them (cheapest communication first), narrowed to
    ``wanted`` (``training.strategy``); FSDP as ``training.fsdp.sharding`` says (``hsdp`` for
    hybrid sharding over several nodes)."""
    if device == "xla":
        # A replica per chip (common/xla.py), else the model sharded over every chip by XLA
        # SPMD (common/xla_spmd.py): ddp asks for the first, fsdp for the second.
        return {"ddp": ["xla"], "fsdp": ["xla-spmd"]}.get(wanted, ["xla", "xla-spmd"])
    if world == 1:
        return ["single"]
    nodes = world // max(1, per_node)
    fsdp = "hsdp" if sharding == "hybrid" and nodes > 1 and per_node > 1 else "fsdp"
    return {"ddp": ["ddp"], "fsdp": [fsdp]}.get(wanted, ["ddp", fsdp])


def choose(shape: ModelShape, work: Workload, capacity_bytes: float, *, world: int,
           per_node: int, wanted: str = "auto", sharding: str = "full",
           cpu_offload: bool = False):  # fmt: skip
    """``(the cheapest strategy that fits or None, {strategy: Breakdown})``."""
    plans = {}
    for name in candidates(world, per_node, work.device, wanted, sharding):
        plans[name] = per_device(shape, work, name, world=world, per_node=per_node,
                                 cpu_offload=cpu_offload and name in ("fsdp", "hsdp"))  # fmt: skip
    for name, plan in plans.items():
        if plan.total <= usable(capacity_bytes):
            return name, plans
    return None, plans


# ---- model shapes ---------------------------------------------------------------------------


def shape_from_config(config: dict, source: str = "config.json") -> ModelShape:
    """The shape of a Hugging Face ``config.json`` (GPT-2 or Llama-style keys)."""
    text = config.get("text_config") or config  # multimodal wrappers nest the LM's config
    hidden = text.get("hidden_size") or text.get("n_embd") or text.get("d_model")
    layers = text.get("num_hidden_layers") or text.get("n_layer") or text.get("num_layers")
    heads = text.get("num_attention_heads") or text.get("n_head") or 1
    if not hidden or not layers:
        raise ValueError(f"{source}: no hidden size / layer count")
    gated = text.get("hidden_act", text.get("activation_function")) in ("silu", "swiglu") and \
        "intermediate_size" in text  # fmt: skip
    ffn = text.get("intermediate_size") or text.get("n_inner") or 4 * hidden
    dropout = any((text.get(k) or 0) > 0 for k in ("resid_pdrop", "attn_pdrop", "hidden_dropout",
                                                    "attention_dropout"))  # fmt: skip
    return ModelShape(
        hidden=hidden, layers=layers, heads=heads, kv_heads=text.get("num_key_value_heads") or heads,
        ffn=ffn, vocab=text.get("vocab_size") or 32000,
        positions=text.get("n_positions") or 0 if not gated else 0,
        gated=gated, tied=bool(text.get("tie_word_embeddings", True)),
        activation=text.get("activation_function") or text.get("hidden_act") or "gelu",
        attention=config.get("_attn_implementation") or "sdpa", dropout=dropout, source=source,
    )  # fmt: skip


def shape_for(name_or_path: str) -> ModelShape | None:
    """The shape of ``model.name_or_path`` without loading it: its local ``config.json``, the
    table of known hub models, or the size in its name ("Qwen2.5-7B", "...-1.5b") on an assumed
    Llama-style shape. None when none of these tells."""
    path = Path(name_or_path)
    config = path / "config.json"
    if config.is_file():
        return shape_from_config(json.loads(config.read_text(encoding="utf-8")), str(config))
    key = name_or_path.rstrip("/").split("/")[-1].lower()
    for suffix in ("-hf", "-instruct", "-chat", "-base"):
        key = key.removesuffix(suffix)
    key = re.sub(r"-v\d+(\.\d+)*$", "", key)  # Mistral-7B-v0.1
    if key in KNOWN_MODELS:
        h, n, a, kv, f, v, p, gated, tied = KNOWN_MODELS[key]
        return ModelShape(hidden=h, layers=n, heads=a, kv_heads=kv, ffn=f, vocab=v, positions=p,
                          gated=gated, tied=tied, activation="silu" if gated else "gelu_new",
                          source=f"the published {key} configuration")  # fmt: skip
    match = _SIZE_IN_NAME.search(name_or_path.rstrip("/").split("/")[-1])
    if not match:
        return None
    params = int(float(match.group(1)) * (1e9 if match.group(2).lower() == "b" else 1e6))
    return assumed_shape(params, f"the {match.group(0)} in its name, on a Llama-style shape")


def assumed_shape(params: int, source: str) -> ModelShape:
    """A Llama-style shape of about ``params`` parameters (for activations; the total is kept)."""
    ladder = [(2048, 16), (3072, 28), (4096, 32), (5120, 40), (6656, 60), (8192, 80), (16384, 126)]
    hidden, layers = ladder[-1]
    for h, n in ladder:
        if 12 * h * h * n >= params * 0.8:
            hidden, layers = h, n
            break
    return ModelShape(hidden=hidden, layers=layers, heads=hidden // 128, kv_heads=8,
                      ffn=int(hidden * 3.5), vocab=128256, gated=True, tied=False,
                      activation="silu", params_override=params, source=source)  # fmt: skip


def chips_needed(shape: ModelShape, work: Workload, chip_bytes: float, have: int) -> int | None:
    """The fewest chips (a power of two from ``have``) over which ``xla-spmd`` fits, or None."""
    count = max(1, have)
    while count <= 4096:
        if per_device(shape, work, "xla-spmd", world=count).total <= usable(chip_bytes):
            return count
        count *= 2
    return None


def describe_params(n: float) -> str:
    if n >= 1e9:
        return f"{n / 1e9:.3g}B"
    return f"{n / 1e6:.3g}M" if n >= 1e6 else f"{n / 1e3:.3g}K"

