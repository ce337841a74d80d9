"""Recipe ``finetune``: fine-tune a causal LM (or a sequence classifier) on the job's data.

Top to bottom: data -> model + tokenizer -> tokens (packed) -> eval before -> train -> eval after
-> save model -> metrics.json + loss plot. Resumes by itself from the newest checkpoint.

Outputs (rank 0): the model in Hugging Face format (safetensors + tokenizer) in the contract's
model dir; ``metrics.json`` and ``plots/loss.png`` in its output dir.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from .common.data import load_splits
from .common.model import count_parameters, load_model_and_tokenizer, max_positions
from .common.outputs import plot_losses, save_model, write_metrics
from .common.text import check_max_seq_len, label_map, tokenize
from .common.train import Trainer, seed_everything
from .config import JobError

log = logging.getLogger("genai")


def run(spec: Any, contract: Any) -> dict:
    started = time.perf_counter()
    training, data = spec.training, spec.data
    classifier = spec.model.head == "sequence-classification"
    if spec.model.get("lora"):
        raise JobError("LoRA adapters are not supported by this recipe yet; remove model.lora",
                       "model.lora")  # fmt: skip
    seed_everything(training.seed)  # before the model: a random init must repeat exactly

    # 1. Data and model.
    train_records, eval_records = load_splits(data, contract, seed=training.seed)
    labels = label_map(train_records, data) if classifier else None
    model, tokenizer = load_model_and_tokenizer(
        spec.model, contract, num_labels=len(labels) if labels else None,
        id2label={i: str(v) for v, i in labels.items()} if labels else None)  # fmt: skip
    check_max_seq_len(data.max_seq_len, max_positions(model.config))

    # 2. Tokens: packed blocks for a causal LM, padded examples for a classifier.
    train_set = tokenize(train_records, tokenizer, data, labels)
    eval_set = tokenize(eval_records, tokenizer, data, labels) if eval_records else None
    log.info("train: %s; eval: %s", train_set.stats, eval_set.stats if eval_set else "none")

    # 3. Train, evaluating before and after. A resumed run reuses the first run's "before".
    trainer = Trainer(model, train_set, eval_set, training, contract, spec.compute.accelerator)
    resumed = trainer.resume()
    resumed_from = trainer.state.step if resumed else None
    if not resumed:
        trainer.notes["eval_before"] = trainer.evaluate()
        log.info("eval before training: %s", trainer.notes["eval_before"])
    state = trainer.fit()
    eval_after = trainer.evaluate()
    log.info("eval after training: %s", eval_after)

    # 4. Outputs.
    metrics = _metrics(spec, trainer, train_set, eval_after, resumed_from, started)
    if contract.is_main:
        save_model(trainer.model, tokenizer, contract.model_dir)
        evals = _eval_points(trainer.notes["eval_before"], state.evals, eval_after, state.step)
        plot_losses(contract.output_dir / "plots" / "loss.png", state.losses, evals,
                    title=f"{spec.name}: fine-tune loss")  # fmt: skip
        write_metrics(contract.output_dir, metrics)  # last: its presence means "finished"
    return metrics


def _metrics(spec: Any, trainer: Trainer, train_set: Any, eval_after: dict,
             resumed_from: int | None, started: float) -> dict:  # fmt: skip
    state, before = trainer.state, trainer.notes["eval_before"]
    metrics = {
        "task": spec.task,
        "model": spec.model.name_or_path,
        "head": spec.model.head,
        "steps": state.step,
        "epochs": round(trainer.epochs_done, 4),
        "params": count_parameters(trainer.model),
        "train_losses": state.losses,
        "train_log": state.history,
        "final_train_loss": state.losses[-1] if state.losses else None,
        "eval_before": before,
        "eval_after": eval_after,
        "evals_during_training": state.evals,
        "train_tokens": state.tokens,
        "train_s": state.train_seconds,
        "tokens_per_s": state.tokens / state.train_seconds if state.train_seconds else 0.0,
        "wall_s": time.perf_counter() - started,
        "packing": spec.data.packing and spec.model.head != "sequence-classification",
        "non_pad_fraction": state.tokens / state.slots if state.slots else None,
        "dataset": train_set.stats,
        "device": str(trainer.device),
        "precision": trainer.precision.name,
        "world_size": trainer.world,
        "resumed_from_step": resumed_from,
    }
    for key in ("loss", "perplexity", "accuracy", "f1_macro"):
        if key in before or key in eval_after:
            metrics[f"eval_{key}_before" if key == "loss" else f"{key}_before"] = before.get(key)
            metrics[f"eval_{key}_after" if key == "loss" else f"{key}_after"] = eval_after.get(key)
    return metrics


def _eval_points(before: dict, during: list[dict], after: dict, last_step: int) -> list[dict]:
    points = [{"step": 0, **before}] if before else []
    points += during
    if after:
        points.append({"step": last_step, **after})
    return points
