"""Task ``pretrain-scratch``: an encoder-decoder transformer built from scratch and trained seq2seq.

    setup  : pairs (a generated toy task, or prompt -> response records, char-level) + vocabulary
    model  : TransformerModel (scratch_model.py) = token embedding * sqrt(d_model) + sinusoidal
             positions -> nn.Transformer(batch_first) -> output layer tied to the embedding
    train  : AdamW, linear warmup then the spec's schedule, teacher forcing, cross-entropy
    eval   : greedy decoding on held-out pairs: exact-sequence and token accuracy
    outputs: model_dir/{model.safetensors, config.json, vocab.json}, output_dir/metrics.json

Sequences: the source is the input tokens; the target is ``<bos> y <eos>``; the decoder reads
``<bos> y`` and learns to predict ``y <eos>``. ``max_seq_len`` bounds each side, specials included.

With ``data.streaming`` the pairs are read as training takes them (``scratch_stream.py``):
``training.max_steps`` steps, a vocabulary from the eval set and the stream's head.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F

from .common.records import read_records
from .config import JobError

# The model and its files live in scratch_model.py. TIED_KEY, TransformerModel and load_model
# are re-exported for callers that load a trained model from here.
from .scratch_model import (  # noqa: F401
    BOS,
    EOS,
    PAD,
    SPECIALS,
    TIED_KEY,
    TransformerModel,
    Vocab,
    build_model,
    load_model,
    model_config,
    save_model,
)

log = logging.getLogger("genai.scratch")

# Toy sequences stay short when the spec has no data section to say otherwise: at 10 tokens a
# reverse task is learnt in well under a minute on a laptop CPU.
DEFAULT_TOY_MAX_LEN = 10
DEFAULT_EVAL_FRACTION = 0.1


# --------------------------------------------------------------------------------------------
# Data: (source ids, target ids) pairs, without specials; batches add them.


def toy_pairs(scratch, max_len: int, seed: int) -> tuple[list, Vocab]:
    """Distinct random sequences of 1..max_len-2 symbols, paired with a copy or their reverse."""
    vocab = Vocab(list(SPECIALS) + [str(k) for k in range(scratch.toy_vocab)], "toy")
    rng, seen = random.Random(seed), set()
    longest = max_len - 2  # room for <bos>/<eos> on the target side
    for _ in range(scratch.toy_examples * 20):  # bounded: a tiny space may hold fewer sequences
        if len(seen) == scratch.toy_examples:
            break
        length = rng.randint(1, longest)
        seen.add(tuple(rng.randrange(scratch.toy_vocab) + len(SPECIALS) for _ in range(length)))
    if len(seen) < scratch.toy_examples:
        log.warning("only %d distinct toy sequences exist at this vocab/length", len(seen))
    sources = sorted(seen)
    rng.shuffle(sources)  # sorted first so the order depends on the seed alone, not on hashing
    flip = scratch.toy_task == "reverse"
    return [(list(s), list(reversed(s)) if flip else list(s)) for s in sources], vocab


def record_pairs(spec, contract) -> tuple[list, list | None, Vocab]:
    """prompt -> response records; a char vocabulary from the training records (``<unk>`` else)."""
    data = spec.data
    if data.format != "instruction":
        raise JobError(
            f"pretrain-scratch trains on prompt -> response pairs; use format 'instruction' "
            f"(got {data.format!r})", "data.format",
        )  # fmt: skip
    train = read_records(contract.channel("train") or data.train, data)
    eval_location = contract.channel("eval") or data.eval
    held_out = read_records(eval_location, data, role="eval") if eval_location else None
    texts = [(r[data.prompt_field], r[data.response_field]) for r in train]
    chars = sorted({ch for prompt, response in texts for ch in prompt + response})
    vocab = Vocab(list(SPECIALS) + chars, "char")
    train_pairs = [(vocab.encode(p), vocab.encode(r)) for p, r in texts]
    eval_pairs = None
    if held_out is not None:
        eval_pairs = [(vocab.encode(r[data.prompt_field]), vocab.encode(r[data.response_field]))
                      for r in held_out]  # fmt: skip
    return train_pairs, eval_pairs, vocab


def load_pairs(spec, contract, max_len: int) -> tuple[list, list, Vocab]:
    """Train and held-out pairs: the eval data if given, else a seeded eval_fraction of train."""
    fraction = spec.data.eval_fraction if spec.data else DEFAULT_EVAL_FRACTION
    if spec.scratch.toy_task:
        train, vocab = toy_pairs(spec.scratch, max_len, spec.training.seed)  # already shuffled
        held_out = None
    else:
        train, held_out, vocab = record_pairs(spec, contract)
        random.Random(spec.training.seed).shuffle(train)  # files are often sorted by topic
    if held_out is None:
        n_eval = max(1, int(len(train) * fraction)) if fraction > 0 else 0
        if len(train) - n_eval < 1:
            raise JobError(
                f"{len(train)} pair(s) are too few to hold out a {fraction:.0%} "
                "evaluation split; add data or set data.eval",
                "data.eval_fraction",
            )
        train, held_out = train[: len(train) - n_eval], train[len(train) - n_eval :]
    long = sum(len(s) > max_len or len(t) > max_len - 2 for s, t in train + held_out)
    if long:
        log.warning("%d pair(s) longer than max_seq_len=%d are truncated", long, max_len)
    return train, held_out, vocab


def make_batch(pairs: list, max_len: int, device) -> tuple[torch.Tensor, ...]:
    """Padded (source, decoder input, labels); labels are PAD where there is nothing to learn."""
    srcs = [s[:max_len] for s, _ in pairs]
    tgts = [[BOS] + t[: max_len - 2] + [EOS] for _, t in pairs]
    src = torch.full((len(pairs), max(map(len, srcs))), PAD, dtype=torch.long)
    tgt = torch.full((len(pairs), max(map(len, tgts))), PAD, dtype=torch.long)
    for i, (s, t) in enumerate(zip(srcs, tgts)):
        src[i, : len(s)] = torch.tensor(s)
        tgt[i, : len(t)] = torch.tensor(t)
    return src.to(device), tgt[:, :-1].to(device), tgt[:, 1:].to(device)


# --------------------------------------------------------------------------------------------
# Training


def lr_factor(training, total_steps: int):
    """Linear warmup, then the spec's schedule (constant, linear or cosine decay to 0)."""
    warmup = training.warmup_steps or int(training.warmup_ratio * total_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        if training.schedule == "constant":
            return 1.0
        if training.schedule == "linear":
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def micro_batches(n: int, batch_size: int, seed: int, rank: int, world: int):
    """Endless seeded shuffles of range(n); each rank walks its own equal-length shard, so every
    rank takes the same number of steps (DDP needs that) and a resumed run sees the same order."""
    epoch = 0
    while True:
        order = list(range(n))
        random.Random(seed + epoch).shuffle(order)
        shard = order[: n - n % world][rank::world]
        for i in range(0, len(shard), batch_size):
            yield shard[i : i + batch_size]
        epoch += 1


def autocast(precision: str, device: torch.device):
    """bf16 autocast on GPUs that have it (fp16 on request); CPU trains in fp32."""
    if device.type == "cuda" and precision == "fp16":
        return torch.autocast("cuda", dtype=torch.float16)
    if device.type == "cuda" and precision in ("auto", "bf16") and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)


def checkpoint_path(contract, step: int | None = None) -> Path | None:
    """The file for ``step``, or (no step) the newest checkpoint there is."""
    folder = Path(contract.checkpoint_dir) / "scratch"
    if step is not None:
        return folder / f"step-{step:08d}.pt"
    found = sorted(folder.glob("step-*.pt"))
    return found[-1] if found else None


def save_checkpoint(contract, step: int, state: dict, keep: int) -> None:
    path = checkpoint_path(contract, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp")
    torch.save({"step": step, **{k: v.state_dict() for k, v in state.items()}}, partial)
    partial.replace(path)  # a kill mid-write never leaves a half checkpoint to resume from
    for old in sorted(path.parent.glob("step-*.pt"))[:-keep]:
        old.unlink()


def resume(contract, state: dict) -> int:
    """Load the newest checkpoint (a restarted spot / preempted job) and return its step."""
    path = checkpoint_path(contract)
    if path is None:
        return 0
    saved = torch.load(path, map_location="cpu", weights_only=True)
    for name, obj in state.items():
        obj.load_state_dict(saved[name])
    log.info("resumed from %s (step %d)", path, saved["step"])
    return saved["step"]


@dataclass
class Trainer:
    """What one optimizer step needs; built once by ``train``."""

    net: nn.Module  # the model, DDP-wrapped when world_size > 1
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    precision: str
    smoothing: float
    device: torch.device
    max_len: int

    def step(self, batches: list[list], max_grad_norm: float | None) -> tuple[float, int]:
        """Accumulate gradients over the micro-batches, then step; returns (mean loss, tokens)."""
        losses, tokens = [], 0
        for pairs in batches:
            src, tgt_in, labels = make_batch(pairs, self.max_len, self.device)
            with autocast(self.precision, self.device):
                logits = self.net(src, tgt_in)
            loss = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(),
                                   ignore_index=PAD, label_smoothing=self.smoothing)  # fmt: skip
            self.scaler.scale(loss / len(batches)).backward()
            losses.append(loss.item())
            tokens += int((labels != PAD).sum())
        self.scaler.unscale_(self.optimizer)
        if max_grad_norm:
            nn.utils.clip_grad_norm_(self.net.parameters(), max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        return sum(losses) / len(losses), tokens


def train(model, train_pairs, eval_pairs: list, spec, contract, device, max_len: int) -> dict:
    """Teacher-forced training; returns the loss curve(s) and throughput. ``train_pairs``: a
    list, or (streaming) ``scratch_stream``'s ``batches`` function."""
    t, world = spec.training, contract.world_size
    if callable(train_pairs):  # data.streaming: the spec requires max_steps
        total = t.max_steps
        batches = train_pairs(contract.rank, world, t.seed, t.batch_size)
    else:
        if len(train_pairs) < world:
            raise JobError(f"{len(train_pairs)} training pair(s) cannot feed {world} processes")
        per_epoch = math.ceil(len(train_pairs) // world / t.batch_size)
        total = t.max_steps or max(1, math.ceil(t.epochs * per_epoch / t.grad_accum))
        order = micro_batches(len(train_pairs), t.batch_size, t.seed, contract.rank, world)
        batches = ([train_pairs[i] for i in indices] for indices in order)
    optimizer = torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(t, total))
    state = {"model": model, "optimizer": optimizer, "scheduler": scheduler}
    start = resume(contract, state)  # before DDP, which broadcasts rank 0's weights
    fp16 = device.type == "cuda" and t.precision == "fp16"  # bf16 and fp32 need no loss scaling
    trainer = Trainer(
        nn.parallel.DistributedDataParallel(model) if world > 1 else model, optimizer, scheduler,
        torch.amp.GradScaler("cuda", enabled=fp16), t.precision,
        spec.scratch.get("label_smoothing", 0.0), device, max_len,
    )  # fmt: skip
    for _ in range(start * t.grad_accum):
        next(batches)  # replay the data order up to where the checkpoint left off
    curve, eval_curve, tokens, began = [], [], 0, time.time()
    for step in range(start + 1, total + 1):
        micro = [next(batches) for _ in range(t.grad_accum)]
        loss, n = trainer.step(micro, t.max_grad_norm)
        tokens += n
        if step % t.log_every == 0 or step == total:
            curve.append([step, round(loss, 5)])
            if contract.is_main:
                log.info("step %d/%d loss %.4f lr %.2e", step, total, loss,
                         scheduler.get_last_lr()[0])  # fmt: skip
        if contract.is_main and t.eval_every and step % t.eval_every == 0 and eval_pairs:
            limit = t.eval_batches * t.batch_size if t.eval_batches else len(eval_pairs)
            result = evaluate(model, eval_pairs[:limit], max_len, device, t.batch_size)
            eval_curve.append({"step": step, **result})
            log.info("step %d held-out %s", step, result)
        if contract.is_main and t.checkpoint_every and step % t.checkpoint_every == 0:
            save_checkpoint(contract, step, state, t.keep_checkpoints)
    elapsed = time.time() - began
    return {"steps": total, "resumed_from_step": start, "train_loss": curve,
            "eval_curve": eval_curve, "train_time_s": round(elapsed, 2),
            "train_tokens_per_s": round(tokens * world / max(elapsed, 1e-9), 1)}  # fmt: skip


@torch.no_grad()
def evaluate(model, pairs: list, max_len: int, device, batch_size: int) -> dict:
    """Held-out teacher-forced loss, plus greedy-decoding accuracy: a sequence counts when it
    matches the reference exactly; token accuracy compares position by position (``<eos>``
    included, so a too-long or too-short output loses tokens)."""
    model.eval()
    loss_sum = label_tokens = exact = token_hits = token_total = 0
    for i in range(0, len(pairs), batch_size):
        chunk = pairs[i : i + batch_size]
        src, tgt_in, labels = make_batch(chunk, max_len, device)
        logits = model(src, tgt_in).float()
        loss_sum += F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=PAD,
                                    reduction="sum").item()  # fmt: skip
        label_tokens += int((labels != PAD).sum())
        for predicted, (_, target) in zip(model.greedy_decode(src, max_len), chunk):
            reference = target[: max_len - 2]
            exact += predicted == reference
            token_hits += sum(a == b for a, b in zip(predicted + [EOS], reference + [EOS]))
            token_total += len(reference) + 1
    model.train()
    return {"loss": round(loss_sum / label_tokens, 5), "examples": len(pairs),
            "sequence_accuracy": round(exact / len(pairs), 5),
            "token_accuracy": round(token_hits / token_total, 5)}  # fmt: skip


# --------------------------------------------------------------------------------------------
# Outputs


def samples(model, pairs: list, vocab: Vocab, max_len: int, device, n: int = 3) -> list[dict]:
    """A few held-out decodes, for a human to glance at in metrics.json."""
    if not pairs:
        return []
    model.eval()
    src = make_batch(pairs[:n], max_len, device)[0]
    predicted = model.greedy_decode(src, max_len)
    model.train()
    return [{"input": vocab.decode(s), "target": vocab.decode(t), "predicted": vocab.decode(p)}
            for (s, t), p in zip(pairs[:n], predicted)]  # fmt: skip


# --------------------------------------------------------------------------------------------
# The recipe


def setup_device(contract) -> tuple[torch.device, bool]:
    """This process's device; joins the process group under torchrun. Returns (device, joined)."""
    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{contract.local_rank}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
    if contract.world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
        return device, True
    return device, False


def run(spec, contract) -> dict:
    """Train a transformer from scratch on spec.scratch's toy task or spec.data's pairs.

    Returns:
        The metrics also written to ``output_dir/metrics.json`` (by rank 0).

    Raises:
        JobError: for data that cannot train this model (wrong format, too few pairs, ...).
    """
    began = time.time()
    scratch, training = spec.scratch, spec.training
    max_len = spec.data.max_seq_len if spec.data else DEFAULT_TOY_MAX_LEN
    torch.manual_seed(training.seed)  # the same initial weights on every rank and every run
    device, joined = setup_device(contract)
    try:
        stats = None
        if spec.data and spec.data.get("streaming") and not scratch.toy_task:
            from .scratch_stream import stream_pairs

            train_pairs, eval_pairs, vocab, stats = stream_pairs(spec, contract)
        else:
            train_pairs, eval_pairs, vocab = load_pairs(spec, contract, max_len)
        model = build_model(scratch, len(vocab.tokens), max_len).to(device)
        params = sum(p.numel() for p in model.parameters())  # a tied matrix counts once
        if contract.is_main:
            log.info("scratch transformer: %d parameters, vocab %d, %s train / %d held-out pairs",
                     params, len(vocab.tokens), "streamed" if stats else len(train_pairs),
                     len(eval_pairs))  # fmt: skip
        history = train(model, train_pairs, eval_pairs, spec, contract, device, max_len)
        metrics = {
            "task": "pretrain-scratch",
            "toy_task": scratch.toy_task,
            "parameters": params,
            "vocab_size": len(vocab.tokens),
            "train_pairs": None if stats else len(train_pairs),
            **history,
        }
        if stats is not None:
            metrics["dataset"] = stats
        if not contract.is_main:
            return metrics
        batch = training.batch_size * 4  # no gradients held: evaluation affords bigger batches
        metrics["eval"] = (
            evaluate(model, eval_pairs, max_len, device, batch) if eval_pairs else None
        )
        metrics["samples"] = samples(model, eval_pairs, vocab, max_len, device)
        metrics["wall_time_s"] = round(time.time() - began, 2)
        log.info("held-out: %s", metrics["eval"])
        save_model(model, model_config(model, scratch, vocab), vocab, Path(contract.model_dir))
        output_dir = Path(contract.output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        return metrics
    finally:
        if joined:
            dist.destroy_process_group()
