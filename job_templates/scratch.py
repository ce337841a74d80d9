"""Task ``pretrain-scratch``: an encoder-decoder transformer built from scratch and trained seq2seq.

    setup  : pairs (a generated toy task, or prompt -> response records, char-level) + vocabulary
    model  : TransformerModel = token embedding * sqrt(d_model) + sinusoidal positions
             -> nn.Transformer(batch_first) -> output layer tied to the embedding
    train  : AdamW, linear warmup then the spec's schedule, teacher forcing, cross-entropy
    eval   : greedy decoding on held-out pairs: exact-sequence and token accuracy
    outputs: model_dir/{model.safetensors, config.json, vocab.json}, output_dir/metrics.json

Sequences: the source is the input tokens; the target is ``<bos> y <eos>``; the decoder reads
``<bos> y`` and learns to predict ``y <eos>``. ``max_seq_len`` bounds each side, specials included.
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

log = logging.getLogger("genai.scratch")

SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
PAD, BOS, EOS, UNK = range(len(SPECIALS))
# Toy sequences stay short when the spec has no data section to say otherwise: at 10 tokens a
# reverse task is learnt in well under a minute on a laptop CPU.
DEFAULT_TOY_MAX_LEN = 10
DEFAULT_EVAL_FRACTION = 0.1
# The state-dict key that aliases the embedding (tied weights): not written twice on save.
TIED_KEY = "generator.weight"


# --------------------------------------------------------------------------------------------
# Model


class PositionalEncoding(nn.Module):
    """The fixed sinusoidal encoding of "Attention Is All You Need", added to the embeddings."""

    def __init__(self, d_model: int, max_len: int, dropout: float):
        super().__init__()
        position = torch.arange(max_len).unsqueeze(1)
        freq = torch.exp(torch.arange(0, d_model, 2) * (-math.log(10000.0) / d_model))
        pe = torch.zeros(max_len, d_model)
        pe[:, 0::2] = torch.sin(position * freq)
        pe[:, 1::2] = torch.cos(position * freq)
        # A buffer moves with .to(device) but is no parameter; not saved since it is a formula.
        self.register_buffer("pe", pe.unsqueeze(0), persistent=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(x + self.pe[:, : x.size(1)])


class TransformerModel(nn.Module):
    """Encoder-decoder transformer; token ids in, next-token logits out (batch first)."""

    def __init__(self, vocab_size: int, d_model: int, nhead: int, num_encoder_layers: int,
                 num_decoder_layers: int, dim_feedforward: int, dropout: float,
                 max_len: int):  # fmt: skip
        super().__init__()
        self.d_model, self.max_len = d_model, max_len
        self.embedding = nn.Embedding(vocab_size, d_model, padding_idx=PAD)
        self.positions = PositionalEncoding(d_model, max_len, dropout)
        self.transformer = nn.Transformer(
            d_model=d_model, nhead=nhead, num_encoder_layers=num_encoder_layers,
            num_decoder_layers=num_decoder_layers, dim_feedforward=dim_feedforward,
            dropout=dropout, batch_first=True,
        )  # fmt: skip
        # The nested-tensor fast path is a prototype that warns and gains nothing at these sizes.
        self.transformer.encoder.use_nested_tensor = False
        # Tied output layer (Press & Wolf 2017): one matrix reads and writes tokens.
        self.generator = nn.Linear(d_model, vocab_size)
        self.generator.weight = self.embedding.weight
        # With the sqrt(d_model) input scaling, N(0, d^-1/2) keeps embeddings and logits O(1).
        nn.init.normal_(self.embedding.weight, std=d_model**-0.5)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.positions(self.embedding(ids) * math.sqrt(self.d_model))

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        src_pad = src == PAD  # True = a padding key nobody attends to
        return self.transformer.encoder(self.embed(src), src_key_padding_mask=src_pad), src_pad

    def decode(self, tgt: torch.Tensor, memory: torch.Tensor, src_pad: torch.Tensor) -> torch.Tensor:
        # Boolean like the padding masks (mixing bool and float masks is deprecated in torch).
        causal = nn.Transformer.generate_square_subsequent_mask(
            tgt.size(1), device=tgt.device, dtype=torch.bool
        )
        out = self.transformer.decoder(
            self.embed(tgt), memory, tgt_mask=causal, tgt_is_causal=True,
            tgt_key_padding_mask=tgt == PAD, memory_key_padding_mask=src_pad,
        )  # fmt: skip
        return self.generator(out)

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        memory, src_pad = self.encode(src)
        return self.decode(tgt, memory, src_pad)

    @torch.no_grad()
    def greedy_decode(self, src: torch.Tensor, max_len: int | None = None) -> list[list[int]]:
        """Most likely output for each source row, without <bos>/<eos>, stopping at <eos>."""
        max_len = max_len or self.max_len
        memory, src_pad = self.encode(src)
        ys = torch.full((src.size(0), 1), BOS, dtype=torch.long, device=src.device)
        done = torch.zeros(src.size(0), dtype=torch.bool, device=src.device)
        for _ in range(max_len - 1):
            next_id = self.decode(ys, memory, src_pad)[:, -1].argmax(-1)
            next_id = next_id.masked_fill(done, PAD)  # finished rows only grow padding
            ys = torch.cat([ys, next_id.unsqueeze(1)], dim=1)
            done |= next_id == EOS
            if done.all():
                break
        outputs = []
        for row in ys[:, 1:].tolist():
            outputs.append(row[: row.index(EOS)] if EOS in row else [t for t in row if t != PAD])
        return outputs


# --------------------------------------------------------------------------------------------
# Data: (source ids, target ids) pairs, without specials; batches add them.


@dataclass
class Vocab:
    tokens: list[str]
    level: str  # "toy" (one token per symbol) or "char"

    def __post_init__(self):
        self.index = {t: i for i, t in enumerate(self.tokens)}

    def encode(self, text: str) -> list[int]:
        return [self.index.get(ch, UNK) for ch in text]

    def decode(self, ids: list[int]) -> str:
        sep = " " if self.level == "toy" else ""
        return sep.join(self.tokens[i] for i in ids if i >= len(SPECIALS))

    def to_json(self) -> dict:
        return {"level": self.level, "tokens": self.tokens,
                "specials": dict(zip(("pad", "bos", "eos", "unk"), SPECIALS))}  # fmt: skip


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
    """prompt -> response records, a char vocabulary from the training split (``<unk>`` else)."""
    data = spec.data
    if data.format != "instruction":
        raise JobError(
            f"pretrain-scratch trains on prompt -> response pairs; use format 'instruction' "
            f"(got {data.format!r})", "data.format",
        )  # fmt: skip
    train = read_records(contract.channel("train") or data.train, data)
    eval_location = contract.channel("eval") or data.eval
    held_out = read_records(eval_location, data) if eval_location else None
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
        n_eval = int(len(train) * fraction)
        if len(train) - n_eval < 1 or (fraction > 0 and n_eval < 1):
            raise JobError(f"{len(train)} pair(s) are too few to hold out a {fraction:.0%} "
                           "evaluation split; add data or set data.eval", "data.eval_fraction")
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
