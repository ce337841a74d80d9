"""Recipe ``distill``: train a smaller student to imitate a teacher causal LM.

Top to bottom: data -> teacher (frozen) -> student (the teacher's alternate layers, or a model of
its own from ``model.name_or_path``) -> same-vocabulary check -> tokens -> eval before -> train on
``alpha * T^2 * KL + (1 - alpha) * CE`` (``common.distill_loss``) -> eval student and teacher ->
save the student -> metrics.json + loss plot. Resumes by itself from the newest checkpoint: the
shared ``Trainer`` checkpoints the student, its optimizer and every RNG; the teacher is reloaded.

Spec: ``distill.teacher`` (hub id, local directory, ``s3://`` / ``gs://`` / ``pkg://``, or the job
input channel ``teacher``), ``alpha``, ``temperature``, ``kl_direction`` (``forward`` =
KL(teacher || student), ``reverse`` = KL(student || teacher)), ``student_init``
(``alternate-layers``: DistilGPT2's recipe, every other teacher layer, or ``student_layers`` evenly
spaced ones; ``config``: the model at ``model.name_or_path``, random when ``model.init: random``).

With ``data.streaming`` the student trains on ``common.streaming.TokenStream`` blocks (read,
tokenized and packed as consumed; ``training.max_steps`` steps); without eval data the
inference comparison runs on the stream's first blocks.

Outputs (rank 0): the student in Hugging Face format in the model dir; ``metrics.json`` with
student vs teacher perplexity, parameter counts, size on disk and the inference tokens/s ratio.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from .common.chunked_loss import configure as configure_chunks
from .common.data import load_splits
from .common.device import detect_kind
from .common.distill_loss import alternate_layer_student, check_same_vocabulary, make_loss_fn
from .common.evaluation import evaluate
from .common.footprint import compare_inference, count_parameters, size_on_disk, weight_bytes
from .common.model import load_model_and_tokenizer, max_positions
from .common.outputs import plot_losses, save_model, write_metrics
from .common.text import check_max_seq_len, tokenize
from .common.train import Trainer, seed_everything
from .config import Config, JobError

log = logging.getLogger("genai")


def run(spec: Any, contract: Any) -> dict:
    started = time.perf_counter()
    training, data, distill = spec.training, spec.data, spec.distill
    if spec.model.head != "causal-lm":
        raise JobError("distillation here is for causal LMs; set model.head: causal-lm",
                       "model.head")  # fmt: skip
    if spec.model.get("lora"):
        raise JobError(
            "a distilled student trains all its weights; remove model.lora", "model.lora"
        )
    seed_everything(training.seed)  # before the student: a random init must repeat exactly

    # 1. Data, teacher, student.
    streaming = bool(data.get("streaming"))  # records read as training consumes them
    if streaming:
        from .common.streaming import TokenStream, sample, stream_splits

        source, eval_records = stream_splits(data, contract)
    else:
        train_records, eval_records = load_splits(data, contract, seed=training.seed)
    teacher, teacher_tokenizer = load_teacher(spec, contract)
    student, tokenizer, layers = build_student(spec, contract, teacher, teacher_tokenizer)
    vocab = check_same_vocabulary(tokenizer, teacher_tokenizer, student, teacher)
    check_max_seq_len(data.max_seq_len, max_positions(student.config))
    check_max_seq_len(data.max_seq_len, max_positions(teacher.config))

    # 2. Tokens (packed blocks), the same for both models.
    if streaming:
        train_set = TokenStream(source, tokenizer, data, training.seed, contract)
    else:
        train_set = tokenize(train_records, tokenizer, data)
    eval_set = tokenize(eval_records, tokenizer, data) if eval_records else None
    log.info("train: %s; eval: %s", train_set.stats, eval_set.stats if eval_set else "none")

    # 3. Train the student against the frozen teacher.
    # The logits of both models are made a chunk at a time when they would be large.
    chunk = configure_chunks(student, training, data.max_seq_len, distill=distill, teacher=teacher,
                             vocab_size=vocab)  # fmt: skip
    trainer = Trainer(student, train_set, eval_set, training, contract, spec.compute.accelerator)
    freeze(teacher, trainer.device)
    trainer.loss_fn = make_loss_fn(teacher, distill, vocab, compile=trainer.compile,
                                   chunked=chunk is not None)  # fmt: skip
    state, eval_after, resumed_from = trainer.fit_and_evaluate()
    teacher_eval = score_teacher(teacher, eval_set, trainer)
    log.info("teacher: %s", teacher_eval)

    # 4. Outputs.
    metrics = {
        "task": "distill", "teacher": distill.teacher, "student_init": distill.student_init,
        "student_layers_from_teacher": layers, "alpha": distill.alpha,
        "temperature": distill.temperature, "kl_direction": distill.kl_direction,
        "steps": state.step, "train_losses": state.losses, "train_log": state.history,
        "final_train_loss": state.losses[-1] if state.losses else None,
        "eval_before": trainer.notes["eval_before"], "eval_after": eval_after,
        "teacher_eval": teacher_eval, "evals_during_training": state.evals,
        "train_tokens": state.tokens, "train_s": state.train_seconds,
        "tokens_per_s": state.tokens / state.train_seconds if state.train_seconds else 0.0,
        "device": str(trainer.device), "precision": trainer.precision.name,
        "world_size": trainer.world, "resumed_from_step": resumed_from,
        "compiled": trainer.compiled, "fast_path": vars(trainer.fast), "loss_chunk": chunk,
        **compare(trainer, teacher, eval_set or (sample(train_set) if streaming else train_set)),
    }  # fmt: skip
    metrics["student_perplexity"] = eval_after.get("perplexity")
    metrics["teacher_perplexity"] = teacher_eval.get("perplexity")
    if contract.is_main:
        save_model(trainer.model, tokenizer, contract.model_dir)
        metrics["student_size_on_disk_bytes"] = size_on_disk(contract.model_dir)
        plot_losses(contract.output_dir / "plots" / "loss.png", state.losses, state.evals,
                    title=f"{spec.name}: distillation loss")  # fmt: skip
    metrics["wall_s"] = time.perf_counter() - started
    if contract.is_main:
        write_metrics(contract.output_dir, metrics)  # last: its presence means "finished"
    return metrics


def load_teacher(spec: Any, contract: Any):
    """The teacher and its tokenizer, from the ``teacher`` input channel or ``distill.teacher``.

    Load errors name ``distill.teacher`` (the shared loader names ``model.name_or_path``).
    """
    kind = detect_kind(spec.compute.accelerator)  # cuda: SDPA attention (the GPU fast path)
    channel = contract.channel("teacher") if contract is not None else None
    teacher_spec = Config(name_or_path=str(channel or spec.distill.teacher), revision=None,
                          head="causal-lm", dtype="auto", init="pretrained",
                          trust_remote_code=bool(spec.model.get("trust_remote_code")))  # fmt: skip
    try:
        # contract=None: the contract's ``model`` channel is the student's, never the teacher's.
        teacher, tokenizer = load_model_and_tokenizer(teacher_spec, None, device_kind=kind)
    except JobError as exc:
        message = str(exc).removeprefix(f"{exc.where}: ") if exc.where else str(exc)
        raise JobError(message, "distill.teacher") from None
    return teacher, tokenizer


def build_student(spec: Any, contract: Any, teacher: Any, teacher_tokenizer: Any):
    """``(student, tokenizer, teacher layers used or None)`` per ``distill.student_init``."""
    distill = spec.distill
    if distill.student_init == "alternate-layers":
        if spec.model.name_or_path != distill.teacher:
            log.info("student_init alternate-layers: the student is cut from distill.teacher; "
                     "model.name_or_path (%s) is not read", spec.model.name_or_path)  # fmt: skip
        student, layers = alternate_layer_student(teacher, distill.student_layers)
        return student, teacher_tokenizer, layers
    if distill.student_layers is not None:
        log.warning("distill.student_layers applies to student_init alternate-layers only")
    student, tokenizer = load_model_and_tokenizer(
        spec.model, contract, device_kind=detect_kind(spec.compute.accelerator)
    )
    if count_parameters(student)["total"] >= count_parameters(teacher)["total"]:
        log.warning("the student (model.name_or_path) is not smaller than the teacher")
    return student, tokenizer, None


def freeze(teacher: Any, device: Any) -> None:
    """Teacher on the training device, eval mode, no gradients; bf16 on CUDA (half the memory,
    tensor-core speed, and a frozen model has no optimizer state that would need fp32)."""
    import torch

    teacher.eval()
    teacher.requires_grad_(False)
    dtype = torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else None
    teacher.to(device=device, dtype=dtype)


def score_teacher(teacher: Any, eval_set: Any, trainer: Trainer) -> dict:
    if eval_set is None or len(eval_set) == 0:
        return {}
    return evaluate(teacher, eval_set, trainer.device, batch_size=trainer.training.batch_size,
                    precision=trainer.precision, max_batches=trainer.training.eval_batches,
                    rank=trainer.rank, world_size=trainer.world)  # fmt: skip


def compare(trainer: Trainer, teacher: Any, examples: Any) -> dict:
    """Parameter counts, weight bytes and forward tokens/s of student vs teacher (measured in
    alternating rounds, so machine noise hits both alike)."""
    student = trainer.model
    speed = compare_inference({"student": student, "teacher": teacher}, examples, trainer.device,
                              batch_size=trainer.training.batch_size,
                              precision=trainer.precision)  # fmt: skip
    s_tps, t_tps = speed["student"]["tokens_per_s"], speed["teacher"]["tokens_per_s"]
    s_params, t_params = count_parameters(student)["total"], count_parameters(teacher)["total"]
    return {
        "student_params": s_params,
        "teacher_params": t_params,
        "params_ratio": s_params / t_params,
        "student_weight_bytes": weight_bytes(student),
        "teacher_weight_bytes": weight_bytes(teacher),
        "teacher_size_on_disk_bytes": size_on_disk(teacher.name_or_path),
        "student_inference_tokens_per_s": s_tps,
        "teacher_inference_tokens_per_s": t_tps,
        "inference_speedup": s_tps / t_tps if t_tps else None,
        "inference_spread": {name: v["spread"] for name, v in speed.items()},
    }
