"""Recipe ``evaluate``: score a model without training it.

Top to bottom: (language model) eval records -> tokens -> sliding-window perplexity -> generation
samples; (classifier) accuracy / macro F1; (image generator) FID and Inception Score of generated
images against real ones -> metrics.json (+ samples.json).

Perplexity. The eval documents (``data.eval``, else all of ``data.train``) are tokenized and joined
with EOS into one stream, as training packs them. A window of ``data.max_seq_len`` tokens slides
over it ``evaluate.stride`` tokens at a time; each token is scored once, in the window where it is
newest, so after the first window every token sees ``max_seq_len - stride`` tokens of context
(Hugging Face's "perplexity of fixed-length models" method). ``stride`` unset = ``max_seq_len``:
disjoint windows, the same number the finetune recipe reports for packed blocks. A smaller stride
costs ``max_seq_len / stride`` times more compute and gives the lower, long-context perplexity.

Generation: greedy continuations of ``evaluate.prompts`` (or of the first line of the first
``generate_samples`` records), ``max_new_tokens`` each. Image metrics: ``common.image_metrics``.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from .common import device as devices
from .common.data import data_location
from .common.evaluation import evaluate
from .common.image_metrics import image_scores, load_images
from .common.model import load_model_and_tokenizer, max_positions
from .common.outputs import write_json, write_metrics
from .common.records import read_records
from .common.text import IGNORE, check_max_seq_len, tokenize
from .common.train import seed_everything
from .config import Config, JobError

log = logging.getLogger("genai")


def run(spec: Any, contract: Any) -> dict:
    started = time.perf_counter()
    options, data = spec.evaluate, spec.data
    seed_everything(spec.training.seed)
    model_spec = spec.get("model")  # absent when only image metrics are asked for
    metrics: dict = {"task": "evaluate", "model": model_spec and model_spec.name_or_path,
                     "warnings": []}  # fmt: skip
    classifier = bool(model_spec) and model_spec.head == "sequence-classification"
    wanted = options.perplexity or options.generate_samples or classifier
    needs_model = bool(model_spec) and wanted

    if needs_model:
        device, choice = devices.setup(spec.compute.accelerator, contract.local_rank)
        precision = devices.select_precision(spec.training.precision, choice.kind,
                                             devices.bf16_supported(choice.kind))  # fmt: skip
        model, tokenizer = load_model_and_tokenizer(spec.model, contract, device_kind=choice.kind)
        model.to(device).eval()
        records = eval_records(data, contract)
        check_max_seq_len(data.max_seq_len, max_positions(model.config))
        batch = spec.training.batch_size
        if classifier:
            examples = tokenize(records, tokenizer, data, label_ids(model, records, data))
            metrics["classification"] = evaluate(model, examples, device, batch_size=batch,
                                                 precision=precision)  # fmt: skip
        elif options.perplexity:
            stream = token_stream(records, tokenizer, data)
            metrics["perplexity"] = sliding_window_perplexity(
                model, stream, window=data.max_seq_len, stride=options.stride, device=device,
                batch_size=batch, precision=precision)  # fmt: skip
            log.info("perplexity: %s", metrics["perplexity"])
        if options.generate_samples and not classifier:
            prompts = options.prompts or first_lines(records, data, options.generate_samples)
            metrics["samples"] = generate(model, tokenizer, prompts, device, options.max_new_tokens)

    if options.image_metrics:
        metrics["images"] = score_images(options, spec.training.batch_size)
        metrics["warnings"] += metrics["images"].pop("warnings")

    metrics["wall_s"] = time.perf_counter() - started
    if contract.is_main:
        if metrics.get("samples"):
            write_json(contract.output_dir / "samples.json", {"samples": metrics["samples"]})
        write_metrics(contract.output_dir, metrics)
    return metrics


def eval_records(data: Any, contract: Any) -> list[dict]:
    """All records of ``data.eval`` when given, else of ``data.train`` (nothing is trained on)."""
    location = data_location(data, contract, "eval")
    if location is not None:
        return read_records(location, data, role="eval")
    return read_records(data_location(data, contract, "train"), data)


def token_stream(records: list[dict], tokenizer: Any, data: Any) -> tuple[list[int], list[int]]:
    """``(ids, labels)`` of all documents joined by EOS (labels -100 where not scored, e.g. the
    prompt of an instruction record)."""
    packed = tokenize(records, tokenizer, Config({**data, "packing": True}))
    ids = [t for block in packed.input_ids for t in block]
    labels = [t for block in packed.labels for t in block]
    return ids, labels


def windows(length: int, window: int, stride: int) -> list[tuple[int, int, int]]:
    """``(begin, end, scored)`` per window: tokens ``end - scored .. end`` are scored in it.

    Each token is scored exactly once; ``stride >= window`` gives disjoint windows.
    """
    spans, previous_end = [], 0
    for begin in range(0, length, stride):
        end = min(begin + window, length)
        spans.append((begin, end, end - previous_end))
        previous_end = end
        if end == length:
            break
    return spans


def sliding_window_perplexity(model: Any, stream: tuple[list[int], list[int]], *, window: int,
                              stride: int | None, device: Any, batch_size: int,
                              precision: Any = None) -> dict:  # fmt: skip
    """Perplexity of ``stream`` scored in overlapping windows (see the module docstring)."""
    import torch
    import torch.nn.functional as F

    ids, labels = stream
    stride = stride or window
    if stride > window:
        log.warning("evaluate.stride %d > data.max_seq_len %d would skip tokens; using %d",
                    stride, window, window)  # fmt: skip
        stride = window
    spans = windows(len(ids), window, stride)
    nll, count = torch.zeros((), dtype=torch.float64), 0
    for start in range(0, len(spans), batch_size):
        group = spans[start : start + batch_size]
        width = max(end - begin for begin, end, _ in group)
        x = torch.full((len(group), width), 0, dtype=torch.long)
        y = torch.full((len(group), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(group), width), dtype=torch.long)
        for row, (begin, end, scored) in enumerate(group):
            n = end - begin
            x[row, :n] = torch.tensor(ids[begin:end])
            mask[row, :n] = 1
            # Only the window's newest ``scored`` tokens count; the rest are context.
            y[row, n - scored : n] = torch.tensor(labels[end - scored : end])
        x, y, mask = x.to(device), y.to(device), mask.to(device)
        with torch.no_grad(), devices.autocast(device, precision) if precision else _null():
            logits = model(input_ids=x, attention_mask=mask).logits
        targets = y[:, 1:]
        nll += F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.size(-1)),
                               targets.reshape(-1), ignore_index=IGNORE, reduction="sum").double().cpu()  # fmt: skip
        count += int((targets != IGNORE).sum())
    loss = nll.item() / max(count, 1)
    return {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), "tokens": count,
            "windows": len(spans), "window": window, "stride": stride}  # fmt: skip


def first_lines(records: list[dict], data: Any, n: int) -> list[str]:
    """Prompts from the data: the first line of each of the first ``n`` records, cut to its
    first half of words so the model has something to continue."""
    prompts = []
    for record in records[:n]:
        if data.format == "instruction":
            text = record[data.prompt_field]
        elif data.format == "chat":
            text = next((m["content"] for m in record[data.messages_field]), "")
        else:
            text = record.get(data.text_field, record.get("text", ""))
        words = (text.strip().splitlines() or [""])[0].split()
        prompts.append(" ".join(words[: max(1, len(words) // 2)]))
    return prompts


def generate(model: Any, tokenizer: Any, prompts: list[str], device: Any,
             max_new_tokens: int) -> list[dict]:  # fmt: skip
    """Greedy continuations (deterministic, so reruns and model comparisons line up)."""
    import torch

    samples = []
    for prompt in prompts:
        encoded = tokenizer(prompt, return_tensors="pt").to(device)
        with torch.no_grad():
            out = model.generate(**encoded, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id)  # fmt: skip
        new = out[0, encoded["input_ids"].shape[1] :]
        samples.append(
            {"prompt": prompt, "completion": tokenizer.decode(new, skip_special_tokens=True)}
        )
    return samples


def label_ids(model: Any, records: list[dict], data: Any) -> dict:
    """Data label value -> the model's class id, from the model's own ``label2id``."""
    label2id = {str(k): int(v) for k, v in (model.config.label2id or {}).items()}
    mapping = {}
    for record in records:
        value = record[data.label_field]
        if str(value) not in label2id:
            raise JobError(f"label {value!r} is not one of the model's classes "
                           f"({', '.join(label2id)})", record.get("_source"))  # fmt: skip
        mapping[value] = label2id[str(value)]
    return mapping


def score_images(options: Any, batch_size: int) -> dict:
    """FID / IS of the generated images (paths already localized by the entrypoint)."""
    if not options.feature_extractor:
        raise JobError("set the feature extractor's weights file for FID / IS (nothing is "
                       "downloaded at run time)", "evaluate.feature_extractor")  # fmt: skip
    if not options.generated_images:
        raise JobError("set the folder or array of generated images", "evaluate.generated_images")
    generated = load_images(options.generated_images, "evaluate.generated_images")
    real = None
    if options.real_images:
        real = load_images(options.real_images, "evaluate.real_images")
    else:
        log.warning("no evaluate.real_images: Inception Score only, no FID")
    return image_scores(generated, real, options.feature_extractor, batch_size=batch_size)


def _null():
    import contextlib

    return contextlib.nullcontext()
