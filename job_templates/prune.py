"""Recipe ``prune``: zero out a fraction of a causal LM's weights, optionally recover, report.

Top to bottom: data -> model + tokenizer -> tokens -> eval dense -> (Wanda: activation norms from
calibration batches) -> masks (``common.pruning``) -> eval pruned -> optional recovery fine-tune
with the masks held fixed (``prune.recovery_steps``, the shared ``Trainer``: checkpoints, resume
and SIGTERM included) -> masks made permanent -> save -> metrics.json.

What to expect, honestly: the saved weights are dense tensors with zeros in them. They are the
same size on disk and run at the same speed as the dense model; the gains need a sparse runtime.
For the ``2:4`` pattern that runtime exists in torch itself (``to_sparse_semi_structured``, NVIDIA
Ampere or newer); ``metrics.json`` says whether this machine has it. Unstructured sparsity at 50 %
does not speed up a GPU matmul; it helps compression and sparse CPU kernels at high sparsity.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from .common import pruning
from .common.chunked_loss import configure as configure_chunks
from .common.data import load_splits
from .common.device import detect_kind
from .common.footprint import compare_inference, count_parameters, size_on_disk, weight_bytes
from .common.model import load_model_and_tokenizer, max_positions
from .common.outputs import plot_losses, save_model, write_metrics
from .common.text import check_max_seq_len, tokenize
from .common.train import Trainer, seed_everything
from .config import Config, JobError

log = logging.getLogger("genai")

SPEED_NOTE = ("pruned weights are stored as dense tensors with zeros: same file size and same "
              "inference speed as the dense model unless a sparse kernel runs them")  # fmt: skip


def run(spec: Any, contract: Any) -> dict:
    started = time.perf_counter()
    data, prune_spec = spec.data, spec.prune
    if spec.model.head != "causal-lm":
        raise JobError("pruning here reports perplexity: set model.head: causal-lm", "model.head")
    if spec.model.get("lora"):
        raise JobError("pruning changes the base weights; remove model.lora", "model.lora")
    seed_everything(spec.training.seed)

    # 1. Data, model, tokens.
    train_records, eval_records = load_splits(data, contract, seed=spec.training.seed)
    model, tokenizer = load_model_and_tokenizer(
        spec.model, contract, device_kind=detect_kind(spec.compute.accelerator)
    )
    check_max_seq_len(data.max_seq_len, max_positions(model.config))
    train_set = tokenize(train_records, tokenizer, data)
    eval_set = tokenize(eval_records, tokenizer, data) if eval_records else None
    if eval_set is None:
        log.warning("no eval data (data.eval / data.eval_fraction): perplexity is not reported")

    # 2. The Trainer owns device, precision and (for recovery) the loop and its checkpoints.
    recovery = Config({**spec.training, "max_steps": max(1, prune_spec.recovery_steps)})
    chunk = configure_chunks(model, recovery, data.max_seq_len)
    trainer = Trainer(model, train_set, eval_set, recovery, contract, spec.compute.accelerator)
    measure = eval_set or train_set
    dense_eval = trainer.evaluate()
    dense_speed = _speed(trainer, measure)
    log.info("dense: %s", dense_eval)

    # 3. Prune. Deterministic, so a resumed run rebuilds the same masks before loading them.
    norms = None
    if prune_spec.method == "wanda":
        calibration = trainer.epoch_batches(0)[: prune_spec.calibration_batches]
        norms = pruning.input_norms(trainer.model, pruning.prunable(trainer.model),
                                    [train_set.batch(b) for b in calibration], trainer.device,
                                    trainer.precision, trainer.world)  # fmt: skip
        log.info("wanda: input norms from %d calibration batches x %d process(es)",
                 len(calibration), trainer.world)  # fmt: skip
    modules = pruning.prune_model(trainer.model, prune_spec, norms)
    pruned_eval = trainer.evaluate()
    log.info("pruned (%s, %s, %.0f%%): %s", prune_spec.method, prune_spec.pattern,
             100 * prune_spec.sparsity, pruned_eval)  # fmt: skip

    # 4. Optional recovery: the masks stay on as forward pre-hooks, so pruned weights stay 0.
    state, recovered_eval, resumed_from = None, None, None
    if prune_spec.recovery_steps:
        if trainer.resume():
            resumed_from = trainer.state.step
        state = trainer.fit()
        recovered_eval = trainer.evaluate()
        log.info("after %d recovery steps: %s", state.step, recovered_eval)
    pruning.make_permanent(modules)
    report = pruning.sparsity_report(trainer.model, modules)
    log.info("sparsity: %.4f of pruned layers, %.4f of all parameters",
             report["sparsity_pruned_layers"], report["sparsity_all_parameters"])  # fmt: skip

    # 5. Outputs.
    final_eval = recovered_eval or pruned_eval
    metrics = {
        "task": "prune", "model": spec.model.name_or_path, "method": prune_spec.method,
        "pattern": prune_spec.pattern, "target_sparsity": prune_spec.sparsity,
        **report,
        "eval_dense": dense_eval, "eval_pruned": pruned_eval, "eval_recovered": recovered_eval,
        "perplexity_before": dense_eval.get("perplexity"),
        "perplexity_pruned": pruned_eval.get("perplexity"),
        "perplexity_after": final_eval.get("perplexity"),
        "recovery_steps": state.step if state else 0,
        "recovery_losses": state.losses if state else [],
        "resumed_from_step": resumed_from,
        "params": count_parameters(trainer.model),
        "weight_bytes": weight_bytes(trainer.model),
        **_speed_report(dense_speed, _speed(trainer, measure)),
        "speed_note": SPEED_NOTE,
        "semi_structured_2_4": pruning.semi_structured_status(),
        "device": str(trainer.device), "precision": trainer.precision.name,
        "compiled": trainer.compiled, "fast_path": vars(trainer.fast), "loss_chunk": chunk,
    }  # fmt: skip
    if contract.is_main:
        save_model(trainer.model, tokenizer, contract.model_dir)
        metrics["size_on_disk_bytes"] = size_on_disk(contract.model_dir)
        if state is not None:
            plot_losses(contract.output_dir / "plots" / "loss.png", state.losses, state.evals,
                        title=f"{spec.name}: recovery fine-tune loss")  # fmt: skip
    metrics["wall_s"] = time.perf_counter() - started
    if contract.is_main:
        write_metrics(contract.output_dir, metrics)  # last: its presence means "finished"
    return metrics


def _speed(trainer: Trainer, examples: Any) -> dict:
    return compare_inference({"model": trainer.model}, examples, trainer.device,
                             batch_size=trainer.training.batch_size,
                             precision=trainer.precision)["model"]  # fmt: skip


def _speed_report(dense: dict, pruned: dict) -> dict:
    """Dense and pruned forward tokens/s. They are measured minutes apart (pruning rewrites the
    weights in place), so on a shared machine their ratio carries that noise; ``spread``
    (slowest / fastest of each one's rounds) shows how much there was."""
    return {
        "inference_tokens_per_s_dense": dense["tokens_per_s"],
        "inference_tokens_per_s_pruned": pruned["tokens_per_s"],
        "inference_spread": {"dense": dense["spread"], "pruned": pruned["spread"]},
    }
