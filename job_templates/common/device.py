"""Where and how a recipe computes: device, precision, compilation.

The choices are pure functions of what the machine offers, so they are testable without the
hardware (a stand-in ``torch_xla`` module, ``cuda_available=False``...):

- device: ``torch_xla`` when the spec asks for a TPU and torch_xla imports; CUDA when present;
  otherwise CPU.
- precision ``auto``: bf16 autocast on a CUDA GPU that supports it (Ampere and newer), fp16 with a
  grad scaler on older GPUs, bf16 on TPU, fp32 on CPU (CPU autocast is slower for small models).
- compile ``auto``: ``torch.compile`` on CUDA only; on CPU the compile time outweighs the gain for
  the short jobs people run there.
- the rest of the GPU fast path (``fast_path``): TF32 matmuls, SDPA attention, fused AdamW, no
  attention mask for batches that mask nothing (packed blocks: SDPA then runs its causal flash
  kernel) and, for a model built from a config, a vocabulary padded to a multiple of 64 -- all on
  CUDA only. On a
  CPU none of them speeds anything up, and keeping them off there keeps CPU runs bit-reproducible
  against a plain PyTorch loop.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
from dataclasses import dataclass
from types import ModuleType
from typing import Any


@dataclass(frozen=True)
class DeviceChoice:
    kind: str  # "cpu" | "cuda" | "xla"
    reason: str


@dataclass(frozen=True)
class Precision:
    name: str  # "fp32" | "bf16" | "fp16"
    autocast_dtype: Any  # torch dtype or None
    use_grad_scaler: bool


def select_device(
    accelerator: str, cuda_available: bool, xla_module: ModuleType | None
) -> DeviceChoice:
    """Pick the device kind for ``compute.accelerator`` given what this machine has.

    Args:
        accelerator: the spec's ``compute.accelerator`` (``cpu``, ``A100``, ``tpu-v5e``...).
        cuda_available: ``torch.cuda.is_available()``.
        xla_module: the imported ``torch_xla`` module, or None when it does not import.
    """
    wants_tpu = accelerator.lower().startswith("tpu")
    if wants_tpu and xla_module is not None:
        return DeviceChoice("xla", f"{accelerator} requested and torch_xla is available")
    if wants_tpu:
        # Fall back rather than fail: the same spec should still run on a laptop for a dry run.
        fallback = "cuda" if cuda_available else "cpu"
        return DeviceChoice(fallback, f"{accelerator} requested but torch_xla is not installed")
    if accelerator.lower() == "cpu":
        return DeviceChoice("cpu", "compute.accelerator is cpu")
    if cuda_available:
        return DeviceChoice("cuda", f"{accelerator} requested and CUDA is available")
    return DeviceChoice("cpu", f"{accelerator} requested but no CUDA device is visible")


def select_precision(precision: str, device_kind: str, bf16_supported: bool) -> Precision:
    """Resolve ``training.precision`` (``auto|bf16|fp16|fp32``) for a device kind."""
    import torch

    if precision == "auto":
        if device_kind == "cuda":
            precision = "bf16" if bf16_supported else "fp16"
        elif device_kind == "xla":
            precision = "bf16"
        else:
            precision = "fp32"
    if precision == "bf16":
        return Precision("bf16", torch.bfloat16, use_grad_scaler=False)
    if precision == "fp16":
        # fp16 gradients underflow without loss scaling; the scaler exists for CUDA only.
        return Precision("fp16", torch.float16, use_grad_scaler=device_kind == "cuda")
    return Precision("fp32", None, use_grad_scaler=False)


def select_compile(compile_setting: str, device_kind: str) -> bool:
    """Resolve ``training.compile`` (``auto|on|off``)."""
    if compile_setting == "auto":
        return device_kind == "cuda"
    return compile_setting == "on"


# Tensor cores read matrices in tiles of 64 (bf16): a 50257-token vocabulary makes the LM head's
# matmul ragged; 50304 does not (nanoGPT measured ~25 % on GPT-2 124M from this alone).
VOCAB_MULTIPLE = 64


@dataclass(frozen=True)
class FastPath:
    """The speed settings a recipe applies for a device kind (see ``fast_path``)."""

    tf32: bool
    attn_implementation: str | None  # passed to from_pretrained / from_config; None: its default
    fused_adamw: bool
    vocab_multiple: int | None  # pad the embeddings of a config-built model to this multiple
    skip_full_attention_mask: bool  # drop an all-ones mask so SDPA can take its flash kernel


def fast_path(device_kind: str, init: str = "pretrained") -> FastPath:
    """The GPU fast path for ``device_kind`` (``cpu`` | ``cuda`` | ``xla``); everything off elsewhere.

    Args:
        init: the spec's ``model.init``. Only a ``random`` (config-built) model gets its vocabulary
            padded: a pretrained model's embedding size is part of its published weights.
    """
    cuda = device_kind == "cuda"
    return FastPath(
        tf32=cuda,
        attn_implementation="sdpa" if cuda else None,
        fused_adamw=cuda,
        vocab_multiple=VOCAB_MULTIPLE if cuda and init == "random" else None,
        skip_full_attention_mask=cuda,
    )


def detect_kind(accelerator: str) -> str:
    """The device kind this process will train on for ``compute.accelerator``."""
    import torch

    xla = import_xla() if accelerator.lower().startswith("tpu") else None
    return select_device(accelerator, torch.cuda.is_available(), xla).kind


def import_xla() -> ModuleType | None:
    try:
        return importlib.import_module("torch_xla")
    except ImportError:
        return None


def torch_device(choice: DeviceChoice, local_rank: int = 0):
    """The ``torch.device`` for a choice (one process per device under torchrun)."""
    import torch

    if choice.kind == "cuda":
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    if choice.kind == "xla":
        import torch_xla.core.xla_model as xm  # type: ignore[import-not-found]

        return xm.xla_device()
    return torch.device("cpu")


def setup(accelerator: str, local_rank: int = 0):
    """Choose and prepare the device for this process: returns (torch.device, DeviceChoice)."""
    import torch

    xla = import_xla() if accelerator.lower().startswith("tpu") else None
    choice = select_device(accelerator, torch.cuda.is_available(), xla)
    if "requested but" in choice.reason:  # the spec asked for an accelerator this machine lacks
        logging.getLogger("genai").warning("%s: training on %s instead", choice.reason, choice.kind)
    if fast_path(choice.kind).tf32:
        # TF32 matmuls: ~free speed on Ampere+ with no visible effect on fine-tuning quality.
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return torch_device(choice, local_rank), choice


def bf16_supported(device_kind: str) -> bool:
    import torch

    return device_kind == "cuda" and torch.cuda.is_bf16_supported()


def autocast(device, precision: Precision):
    """The autocast context for a step (a no-op in fp32)."""
    import torch

    if precision.autocast_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=precision.autocast_dtype)
