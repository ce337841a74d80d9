"""The from-scratch encoder-decoder transformer of task ``pretrain-scratch``, and its files.

    TransformerModel = token embedding * sqrt(d_model) + sinusoidal positions
                       -> nn.Transformer(batch_first) -> output layer tied to the embedding

Masks: source and target padding are boolean key-padding masks (``True`` = a padding key nobody
attends to); the decoder adds the boolean causal mask, so position i sees targets 0..i only.
``greedy_decode`` feeds back the most likely token until every row has produced ``<eos>``.

Files (``save_model`` / ``load_model``): ``model.safetensors`` (the tied output weight stored
once), ``config.json`` (the shape) and ``vocab.json`` (tokens, level, specials). The recipe that
trains it is ``scratch.py``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .config import JobError

SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
PAD, BOS, EOS, UNK = range(len(SPECIALS))
# The state-dict key that aliases the embedding (tied weights): not written twice on save.
TIED_KEY = "generator.weight"


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

    def decode(
        self, tgt: torch.Tensor, memory: torch.Tensor, src_pad: torch.Tensor
    ) -> torch.Tensor:
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
# Vocabulary and files


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


def build_model(scratch, vocab_size: int, max_len: int) -> TransformerModel:
    return TransformerModel(
        vocab_size, scratch.d_model, scratch.nhead, scratch.num_encoder_layers,
        scratch.num_decoder_layers, scratch.dim_feedforward, scratch.dropout, max_len,
    )  # fmt: skip


def model_config(model: TransformerModel, scratch, vocab: Vocab) -> dict:
    return {
        "architecture": "TransformerModel", "task": "pretrain-scratch",
        "vocab_size": len(vocab.tokens), "d_model": scratch.d_model, "nhead": scratch.nhead,
        "num_encoder_layers": scratch.num_encoder_layers,
        "num_decoder_layers": scratch.num_decoder_layers,
        "dim_feedforward": scratch.dim_feedforward, "dropout": scratch.dropout,
        "max_len": model.max_len, "tie_word_embeddings": True, "toy_task": scratch.toy_task,
        "pad_id": PAD, "bos_id": BOS, "eos_id": EOS, "unk_id": UNK,
    }  # fmt: skip


def save_model(model: TransformerModel, config: dict, vocab: Vocab, model_dir: Path) -> None:
    from safetensors.torch import save_file

    model_dir.mkdir(parents=True, exist_ok=True)
    # safetensors refuses two names for one tensor: the tied output weight is the embedding's.
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()
             if k != TIED_KEY}  # fmt: skip
    save_file(state, str(model_dir / "model.safetensors"), metadata={"format": "pt"})
    (model_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (model_dir / "vocab.json").write_text(json.dumps(vocab.to_json(), indent=2) + "\n")


def load_model(model_dir: str | Path) -> tuple[TransformerModel, Vocab]:
    """Rebuild a saved model (config.json + model.safetensors + vocab.json), in eval mode."""
    from safetensors.torch import load_file

    model_dir = Path(model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    raw_vocab = json.loads((model_dir / "vocab.json").read_text())
    model = TransformerModel(
        config["vocab_size"], config["d_model"], config["nhead"], config["num_encoder_layers"],
        config["num_decoder_layers"], config["dim_feedforward"], config["dropout"],
        config["max_len"],
    )  # fmt: skip
    missing, unexpected = model.load_state_dict(load_file(model_dir / "model.safetensors"),
                                                strict=False)  # fmt: skip
    if unexpected or set(missing) != {TIED_KEY}:
        raise JobError(f"{model_dir} does not match its config.json (missing {missing}, "
                       f"unexpected {unexpected})")  # fmt: skip
    return model.eval(), Vocab(raw_vocab["tokens"], raw_vocab["level"])
