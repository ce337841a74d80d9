"""Recipe ``finetune``: fine-tune a causal LM (or a sequence classifier) on the job's data.

Top to bottom: data (-> audit gate -> bias mitigation) -> model + tokenizer (-> LoRA) -> tokens
(packed) -> eval before -> train -> eval after -> save model + model card -> metrics.json + loss
plot. Resumes by itself from the newest checkpoint.

- ``audit``: the data audit (``audit.py``) runs on the training records first; its report goes to
  ``<output dir>/audit`` and its findings into the model card. With ``audit.gate`` a metric
  above ``audit.fail_on`` stops the job (exit 2) before training.
- ``fairness.mitigation``: counterfactual augmentation and / or group x label reweighting of the
  training split (never the eval split); reweighted examples train with ``weighted_loss``. What
  it added is logged (a warning when nothing) and written in the model card.
- ``fairness.gate``: after training, the fairness evaluation (``fairness.py``) of the trained
  model (a classifier on the eval split; a causal LM on the counterfactual templates and
  stereotype pairs); its report goes to
  ``<output dir>/fairness``, its results into the model card, and a ``fairness.fail_on`` limit
  crossed (or n/a) fails the job after the model is saved.
- ``model.lora``: peft LoRA adapters; saved merged into the base weights (``merge_on_save``) or
  as the adapter alone.
- ``data.streaming``: the training records are read, tokenized and packed as the Trainer
  consumes them (``common/streaming.py``), for ``training.max_steps`` steps; the eval set is
  bounded by ``data.max_eval_records``.
- On CUDA the GPU fast path is chosen automatically (``common/device.py``).

Outputs (rank 0): the model in Hugging Face format (safetensors + tokenizer + ``README.md`` model
card) in the contract's model dir; ``metrics.json`` and ``plots/loss.png`` in its output dir.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from .common import chunked_loss
from .common.data import load_splits
from .common.device import detect_kind, fast_path
from .common.footprint import count_parameters
from .common.lora import apply_lora
from .common.model import load_model_and_tokenizer, max_positions
from .common.outputs import plot_losses, save_model, write_metrics
from .common.text import check_max_seq_len, label_map, tokenize
from .common.train import Trainer, seed_everything, weighted_loss
from .config import JobError
from .responsible.model_card import write_model_card

log = logging.getLogger("genai")


def run(spec: Any, contract: Any) -> dict:
    started = time.perf_counter()
    training, data = spec.training, spec.data
    classifier = spec.model.head == "sequence-classification"
    lora = spec.model.get("lora")
    if lora and spec.model.get("init") == "random" and not lora.merge_on_save:
        raise JobError("an adapter saved alone needs its base weights, and a random init is not "
                       "saved anywhere; set merge_on_save: true", "model.lora.merge_on_save")  # fmt: skip
    device_kind = detect_kind(spec.compute.accelerator)

    # 1. Data: audited first when audit.gate is set, then bias mitigation on the training split.
    # With data.streaming the training records are read as training consumes them (the spec
    # refuses the audit, mitigation and classifier heads there: they need every record).
    source, train_records, eval_records = _read_data(spec, contract)
    audit = _audit_gate(spec, contract, train_records) if spec.get("audit") else None
    mitigation = None
    if (spec.get("fairness") or {}).get("mitigation"):
        train_records, mitigation = _mitigate(spec, train_records)
    labels = label_map(train_records, data) if classifier else None

    # 2. Model (+ LoRA adapters).
    seed_everything(training.seed)  # just before the model: a random init must repeat exactly
    model, tokenizer = load_model_and_tokenizer(
        spec.model, contract, num_labels=len(labels) if labels else None,
        id2label={i: str(v) for v, i in labels.items()} if labels else None,
        device_kind=device_kind)  # fmt: skip
    check_max_seq_len(data.max_seq_len, max_positions(model.config))
    if lora:
        model = apply_lora(model, lora, spec.model.head)

    # 3. Tokens: packed blocks for a causal LM, padded examples for a classifier.
    if source is not None:
        from .common.streaming import TokenStream

        train_set = TokenStream(source, tokenizer, data, training.seed, contract)
    else:
        train_set = tokenize(train_records, tokenizer, data, labels)
    eval_set = tokenize(eval_records, tokenizer, data, labels) if eval_records else None
    log.info("train: %s; eval: %s", train_set.stats, eval_set.stats if eval_set else "none")

    # 4. Train, evaluating before and after. A resumed run reuses the first run's "before".
    chunk = None if classifier else chunked_loss.configure(model, training, data.max_seq_len)
    loss_fn = None
    if train_set.weights is not None:
        loss_fn = chunked_loss.weighted_loss if chunk else weighted_loss
    trainer = Trainer(model, train_set, eval_set, training, contract, spec.compute.accelerator,
                      loss_fn=loss_fn)  # fmt: skip
    state, eval_after, resumed_from = trainer.fit_and_evaluate()

    # 5. Outputs.
    metrics = _metrics(spec, trainer, train_set, eval_after, resumed_from, started)
    metrics["fast_path"] = vars(fast_path(device_kind, spec.model.get("init") or "pretrained"))
    metrics["loss_chunk"] = chunk
    if audit is not None:
        metrics["audit"] = audit["metrics"]
    if mitigation is not None:
        metrics["mitigation"] = {k: v for k, v in mitigation.items() if k != "lines"}
    fairness = None
    if (spec.get("fairness") or {}).get("gate"):
        fairness = _fairness_gate(spec, contract, trainer.model, tokenizer, eval_records)
        metrics["fairness"] = fairness["metrics"]
    if contract.is_main:
        save_model(trainer.model, tokenizer, contract.model_dir,
                   merge_adapters=bool(lora.merge_on_save) if lora else True,
                   base_model=spec.model.name_or_path)  # fmt: skip
        write_model_card(contract.model_dir, spec, _card_metrics(metrics), audit=audit,
                         fairness=fairness, mitigation=mitigation)  # fmt: skip
        evals = _eval_points(trainer.notes["eval_before"], state.evals, eval_after, state.step)
        plot_losses(contract.output_dir / "plots" / "loss.png", state.losses, evals,
                    title=f"{spec.name}: fine-tune loss")  # fmt: skip
        write_metrics(contract.output_dir, metrics)  # last: its presence means "finished"
    if fairness is not None:
        from .responsible.findings import gate_reasons

        reasons = gate_reasons(fairness["findings"])
        if reasons:
            raise JobError("the fairness gate failed after training (the model is saved; report: "
                           f"{Path(contract.output_dir) / 'fairness'}): " + "; ".join(reasons),
                           "fairness.fail_on")  # fmt: skip
    return metrics


def _read_data(spec: Any, contract: Any) -> tuple[Any, list[dict] | None, list[dict]]:
    """``(the training stream or None, the training records or None, the eval records)``."""
    if spec.data.get("streaming"):
        from .common.streaming import stream_splits

        source, eval_records = stream_splits(spec.data, contract)
        return source, None, eval_records
    train_records, eval_records = load_splits(spec.data, contract, seed=spec.training.seed)
    return None, train_records, eval_records


def _audit_gate(spec: Any, contract: Any, records: list[dict]) -> dict:
    """Audit the training records; rank 0 writes the report; with ``audit.gate``, fail on
    ``audit.fail_on`` (without it the findings only go to the report and the model card)."""
    from .audit import audit_records, audit_settings, check_thresholds, write_outputs

    result = audit_records(records, spec)
    out = Path(contract.output_dir) / "audit"
    if contract.is_main:
        write_outputs(result, out)
    if not audit_settings(spec).gate:
        log.info("data audit: %d records, %d findings (report in %s; audit.gate is off)",
                 len(records), len(result["findings"]), out)  # fmt: skip
        return result
    reasons = check_thresholds(result, audit_settings(spec).fail_on)
    if reasons:
        raise JobError(f"the data audit gate failed, so nothing was trained (report: {out}): "
                       + "; ".join(reasons), "audit.fail_on")  # fmt: skip
    log.info("audit gate passed (%d records; report in %s)", len(records), out)
    return result


def _mitigate(spec: Any, records: list[dict]) -> tuple[list[dict], dict]:
    from .audit import audit_settings
    from .responsible.lexicon import load_lexicon
    from .responsible.mitigation import mitigate

    records, summary = mitigate(records, spec, load_lexicon(audit_settings(spec).lexicon))
    log.info("bias mitigation %s: %d -> %d training records; %s", spec.fairness.mitigation,
             summary["records_before"], len(records), "; ".join(summary["lines"]))  # fmt: skip
    return records, summary


def _fairness_gate(spec: Any, contract: Any, model: Any, tokenizer: Any,
                   records: list[dict]) -> dict:  # fmt: skip
    """The trained model's fairness; rank 0 writes the report. A classifier is scored on the eval
    split (Fairlearn group metrics), a causal LM on the counterfactual templates and stereotype
    pairs (``fairness.py``'s language-model mode, whatever ``fairness.mode`` says)."""
    from .fairness import fairness_settings, finish, score_classifier, score_language_model

    settings = fairness_settings(spec)
    if spec.model.head != "sequence-classification":
        result = score_language_model(model, tokenizer, spec, settings)
    else:
        if not records:
            raise JobError("fairness.gate needs held-out records: set data.eval or "
                           "data.eval_fraction > 0", "fairness.gate")  # fmt: skip
        where = spec.data.get("eval") or "a split of data.train"
        result = score_classifier(model, tokenizer, records, spec, settings, str(where))
    out = Path(contract.output_dir) / "fairness"
    finish(result, settings, out if contract.is_main else None)
    model.train()
    return result


def _card_metrics(metrics: dict) -> dict:
    """The numbers the model card's results table shows."""
    keys = [k for k in metrics if k.endswith(("_before", "_after"))]
    keys += ["final_train_loss", "steps", "train_tokens"]
    return {k: metrics[k] for k in keys
            if isinstance(metrics.get(k), (int, float)) and not isinstance(metrics[k], bool)}  # fmt: skip


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
        "compiled": trainer.compiled,
        "lora": dict(spec.model.lora) if spec.model.get("lora") else None,
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
