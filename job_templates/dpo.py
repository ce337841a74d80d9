"""Recipe ``dpo``: preference tuning of a causal LM on prompt / chosen / rejected pairs.

    genai-cloud run examples/dpo.yaml

Top to bottom: pairs (``data.format: preference``; ``dpo.debias`` adds pairs built from the
stereotype and counterfactual templates) -> model + tokenizer (-> LoRA) -> tokens -> the shared
``Trainer`` with the preference loss as its ``loss_fn`` -> metrics before / after -> model + card.

- ``dpo.loss``: ``dpo`` (against a frozen reference: the starting model, or ``dpo.reference``),
  or the reference-free ``simpo`` / ``orpo`` (``common/preference.py`` has the definitions).
- The reference's log-probs are computed once, before training, from the starting weights (with
  LoRA the adapters start at zero, so the starting model *is* the base model): no second model
  in memory while training, and a resumed run recomputes exactly the same numbers.
- Resume, checkpoints, SIGTERM, DDP, precision and LoRA are the Trainer's: an interrupted run
  resumes to the same weights as one that never stopped.

Metrics (on the eval pairs, else the training pairs): preference loss, reward margin (mean
chosen minus rejected reward) and preference accuracy (share of pairs whose chosen reward is the
higher), before and after training and every ``training.eval_every`` steps. With ``dpo.debias``, also the fairness recipe's
counterfactual log-likelihood gap and stereotype preference rate before and after.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from .common import device as devices
from .common.data import load_splits
from .common.footprint import count_parameters
from .common.lora import apply_lora
from .common.model import load_model_and_tokenizer, max_positions
from .common.outputs import plot_losses, save_model, write_metrics
from .common.preference import (
    encode_pairs,
    pair_loss,
    preference_metrics,
    reference_logps,
)
from .common.text import check_max_seq_len
from .common.train import Trainer, seed_everything
from .config import Config, JobError
from .responsible.model_card import write_model_card

log = logging.getLogger("genai.dpo")

DEFAULTS = {"loss": "dpo", "beta": 0.1, "simpo_gamma": 0.5, "reference": None, "debias": False}


def run(spec: Any, contract: Any) -> dict:
    started = time.perf_counter()
    settings = Config.wrap({**DEFAULTS, **(spec.get("dpo") or {})})
    training, data = spec.training, spec.data
    lora = spec.model.get("lora")
    if spec.model.head != "causal-lm":
        raise JobError("task 'dpo' tunes a causal LM: use head 'causal-lm'", "model.head")
    if data.format != "preference" and not settings.debias:
        raise JobError("task 'dpo' needs data.format 'preference' (prompt / chosen / rejected)",
                       "data.format")  # fmt: skip
    device_kind = devices.detect_kind(spec.compute.accelerator)

    # 1. Pairs.
    train_records, eval_records = [], []
    if data.format == "preference":
        train_records, eval_records = load_splits(data, contract, seed=training.seed)
    else:
        log.warning("data.format is %r, not 'preference': only the dpo.debias pairs train",
                    data.format)  # fmt: skip

    # 2. Model (+ LoRA adapters), then the debiasing pairs scored by the starting model.
    seed_everything(training.seed)
    model, tokenizer = load_model_and_tokenizer(spec.model, contract, device_kind=device_kind)
    check_max_seq_len(data.max_seq_len, max_positions(model.config))
    if lora:
        model = apply_lora(model, lora, "causal-lm")
    bias_before = None
    if settings.debias:
        from .responsible.debias_pairs import debias_records, measure_bias

        built = debias_records(model, tokenizer, spec)
        log.info("dpo.debias: %d pairs from the stereotype pairs and counterfactual templates",
                 len(built))  # fmt: skip
        train_records = train_records + built
        bias_before = measure_bias(model, tokenizer, spec)

    # 3. Tokens.
    fields = Config.wrap({**data, "format": "preference"})
    train_set = encode_pairs(train_records, tokenizer, fields)
    eval_set = encode_pairs(eval_records, tokenizer, fields) if eval_records else None
    log.info("train: %s; eval: %s", train_set.stats, eval_set.stats if eval_set else "none")

    # 4. Reference log-probs (from the starting weights: before any resume), then train with
    # the preference metrics as the Trainer's evaluation: before (kept across restarts in its
    # notes), every training.eval_every steps, and after.
    trainer = Trainer(model, train_set, None, training, contract, spec.compute.accelerator,
                      loss_fn=pair_loss(settings))  # fmt: skip
    if settings.loss == "dpo":
        _reference(spec, contract, trainer, settings, [train_set, eval_set], device_kind)
    measured = eval_set or train_set
    trainer.evaluate = lambda examples=None: _measure(trainer, measured, settings)
    state, after, resumed_from = trainer.fit_and_evaluate()
    before = trainer.notes["eval_before"]

    # 5. Outputs.
    metrics = {
        "task": spec.task, "model": spec.model.name_or_path, "loss": settings.loss,
        "beta": settings.beta, "steps": state.step, "epochs": round(trainer.epochs_done, 4),
        "params": count_parameters(trainer.model), "train_losses": state.losses,
        "train_log": state.history,
        "final_train_loss": state.losses[-1] if state.losses else None,
        "measured_on": "eval" if eval_set else "train", "eval_before": before,
        "eval_after": after, "evals_during_training": state.evals, "dataset": train_set.stats, "train_tokens": state.tokens,
        "train_s": state.train_seconds, "wall_s": time.perf_counter() - started,
        "device": str(trainer.device), "precision": trainer.precision.name,
        "lora": dict(lora) if lora else None, "world_size": trainer.world,
        "resumed_from_step": resumed_from,
    }  # fmt: skip
    for key in ("loss", "reward_margin", "preference_accuracy"):
        name = "preference_loss" if key == "loss" else key
        metrics[f"{name}_before"], metrics[f"{name}_after"] = before.get(key), after.get(key)
    if bias_before is not None:
        from .responsible.debias_pairs import measure_bias

        metrics["bias_before"] = bias_before
        metrics["bias_after"] = measure_bias(trainer.model, tokenizer, spec)
        for key in ("loglik_gap", "loglik_per_token_gap", "stereotype_preference_rate"):  # card
            metrics[f"{key}_before"] = bias_before[key]
            metrics[f"{key}_after"] = metrics["bias_after"][key]
    if contract.is_main:
        save_model(trainer.model, tokenizer, contract.model_dir,
                   merge_adapters=bool(lora.merge_on_save) if lora else True,
                   base_model=spec.model.name_or_path)  # fmt: skip
        write_model_card(contract.model_dir, spec, _card_metrics(metrics))
        plot_losses(Path(contract.output_dir) / "plots" / "loss.png", state.losses, [],
                    title=f"{spec.name}: {settings.loss} loss")  # fmt: skip
        write_metrics(contract.output_dir, metrics)  # last: its presence means "finished"
    return metrics


def _reference(spec, contract, trainer, settings, sets, device_kind) -> None:
    """Put the reference's log-probs into each pair set (``dpo.reference``, else the starting
    model: the trainer's model before any step)."""
    reference = trainer.model
    if settings.reference:
        channel = contract.channel("reference") if contract is not None else None
        reference_spec = Config.wrap({**spec.model, "name_or_path": str(channel or settings.reference),
                                      "lora": None, "init": "pretrained"})  # fmt: skip
        try:
            # contract=None: the contract's ``model`` channel is the policy's, not the reference's.
            reference, _ = load_model_and_tokenizer(reference_spec, None, device_kind=device_kind)
        except JobError as exc:
            message = str(exc).removeprefix(f"{exc.where}: ") if exc.where else str(exc)
            raise JobError(message, "dpo.reference") from None
        reference = reference.to(trainer.device)
    for pairs in sets:
        if pairs is not None:
            with devices.autocast(trainer.device, trainer.precision):
                pairs.ref_logps = reference_logps(reference, pairs, trainer.device,
                                                  trainer.training.batch_size)  # fmt: skip
    if reference is not trainer.model:
        del reference  # frozen numbers are all training needs


def _measure(trainer, pairs, settings) -> dict:
    with devices.autocast(trainer.device, trainer.precision):
        return preference_metrics(trainer.model, pairs, trainer.device, settings,
                                  trainer.training.batch_size)  # fmt: skip


def _card_metrics(metrics: dict) -> dict:
    keys = [k for k in metrics if k.endswith(("_before", "_after")) and k != "eval_before"]
    keys += ["final_train_loss", "steps", "train_tokens"]
    return {k: metrics[k] for k in keys
            if isinstance(metrics.get(k), (int, float)) and not isinstance(metrics[k], bool)}  # fmt: skip
