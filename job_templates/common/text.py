"""Records -> token examples for a causal LM or a sequence classifier.

``tokenize(records, tokenizer, data)`` follows ``data.format`` (see ``records.py``):

- ``text`` / ``jsonl``: each document's tokens, then EOS.
- ``instruction``: prompt then response (+ EOS); the prompt's labels are -100, so the loss is on
  the response only. A newline separates them unless the prompt already ends in whitespace.
- ``chat``: the tokenizer's chat template when it has one, else a simple role-tagged rendering
  (``<|user|>\\n...\\n``); only assistant turns count in the loss.
- ``classification``: the text, truncated to ``max_seq_len``; the label mapped to a class id.

``data.packing`` then concatenates the causal-LM examples into full blocks of ``max_seq_len``
tokens (documents separated by EOS, the last block padded), so almost no compute goes to padding;
``Examples.non_pad_fraction`` reports how much. Without packing each example is truncated to
``max_seq_len`` and a batch is padded to its longest member.

Records carrying ``_weight`` (``responsible.mitigation`` reweighting) make weighted examples: the
weights are normalised to mean 1, a classifier example keeps one weight, and a causal-LM example
gives its weight to each of its tokens (a packed block can mix examples). ``batch()`` then adds a
``weights`` tensor for ``train.weighted_loss``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..config import JobError
from ..responsible.mitigation import WEIGHT_KEY

log = logging.getLogger("genai")
IGNORE = -100  # the label value torch's cross-entropy skips


@dataclass
class Examples:
    """Token examples: ``len()``, ``batch(indices) -> dict of tensors`` for the model's forward.

    ``labels`` is a list of per-token label lists (causal LM) or a list of class ids (classifier);
    ``weights``, when set, is shaped the same way (per-token lists or one float per example).
    """

    input_ids: list[list[int]]
    labels: list
    pad_id: int
    packed: bool = False
    stats: dict = field(default_factory=dict)
    weights: list | None = None
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def non_pad_fraction(self) -> float:
        return self.stats.get("non_pad_fraction", 1.0)

    def batch(self, indices) -> dict:
        """``input_ids``, ``attention_mask`` and ``labels`` tensors for these examples (and
        ``weights`` for weighted examples)."""
        if self.packed:
            # Packed blocks all have one length: pad once, then a batch is a single gather.
            if not self._cache:
                self._cache.update(self._pad(range(len(self))))
            return {k: v[list(indices)] for k, v in self._cache.items()}
        return self._pad(indices)

    def _pad(self, indices) -> dict:
        import torch

        indices = list(indices)
        rows = [self.input_ids[i] for i in indices]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        per_token = isinstance(self.labels[0], list)
        labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
        for n, (i, row) in enumerate(zip(indices, rows)):
            ids[n, : len(row)] = torch.tensor(row)
            mask[n, : len(row)] = 1
            if per_token:
                labels[n, : len(row)] = torch.tensor(self.labels[i])
        if not per_token:
            labels = torch.tensor([self.labels[i] for i in indices], dtype=torch.long)
        out = {"input_ids": ids, "attention_mask": mask, "labels": labels}
        if self.weights is not None:
            out["weights"] = self._weights(indices, width, per_token)
        return out

    def _weights(self, indices: list[int], width: int, per_token: bool):
        import torch

        if not per_token:
            return torch.tensor([self.weights[i] for i in indices], dtype=torch.float32)
        weights = torch.zeros((len(indices), width), dtype=torch.float32)  # padding: no weight
        for n, i in enumerate(indices):
            weights[n, : len(self.weights[i])] = torch.tensor(self.weights[i])
        return weights


def check_max_seq_len(max_seq_len: int, limit: int | None) -> None:
    """Raise a JobError naming ``data.max_seq_len`` when it exceeds the model's positions."""
    if limit is not None and max_seq_len > limit:
        raise JobError(f"{max_seq_len} is longer than the model's {limit} positions; set it to "
                       f"{limit} or less", "data.max_seq_len")  # fmt: skip


def tokenize(records: list[dict], tokenizer: Any, data: Any,
             label_ids: dict | None = None) -> Examples:  # fmt: skip
    """Tokenize records per ``data.format`` and pack them when ``data.packing`` (causal LM only)."""
    weights = example_weights(records)
    if data.format == "classification":
        return _classification(records, tokenizer, data, label_ids or label_map(records, data),
                               weights)  # fmt: skip
    pairs = [render(r, tokenizer, data) for r in records]
    if data.packing:
        return pack(pairs, data.max_seq_len, tokenizer.pad_token_id, weights)
    ids, labels, kept, skipped = [], [], [], 0
    for n, (seq, lab) in enumerate(pairs):
        seq, lab = seq[: data.max_seq_len], lab[: data.max_seq_len]
        if all(x == IGNORE for x in lab[1:]):
            skipped += 1  # nothing left to learn from (e.g. a prompt longer than max_seq_len)
            continue
        ids.append(seq)
        labels.append(lab)
        kept.append(n)
    if not ids:
        raise JobError(f"no example has a target token within data.max_seq_len={data.max_seq_len}")
    if skipped:
        log.warning("%d examples had no target tokens within max_seq_len and were skipped", skipped)
    real = sum(len(s) for s in ids)
    token_weights = [[weights[n]] * len(ids[k]) for k, n in enumerate(kept)] if weights else None
    return Examples(ids, labels, tokenizer.pad_token_id, packed=False,
                    stats={"examples": len(ids), "tokens": real, "skipped": skipped},
                    weights=token_weights)  # fmt: skip


def render(record: dict, tokenizer: Any, data: Any) -> tuple[list[int], list[int]]:
    """One causal-LM record's ``(input_ids, labels)`` per ``data.format`` (EOS added; labels
    -100 where there is no loss), untruncated and unpacked."""
    renderers = {"text": _plain, "jsonl": _plain, "instruction": _instruction, "chat": _chat}
    return renderers[data.format](record, tokenizer, data)


def example_weights(records: list[dict]) -> list[float] | None:
    """The records' ``_weight`` values normalised to mean 1 (missing: 1), or None if none has one.

    Raises:
        JobError: a weight that is not a finite number >= 0, or weights that are all zero.
    """
    if not any(WEIGHT_KEY in r for r in records):
        return None
    weights = [r.get(WEIGHT_KEY, 1.0) for r in records]
    for record, w in zip(records, weights):
        if not isinstance(w, (int, float)) or isinstance(w, bool) or not 0 <= w < float("inf"):
            raise JobError(f"example weight must be a finite number >= 0, got {w!r}",
                           record.get("_source"))  # fmt: skip
    mean = sum(weights) / len(weights)
    if mean == 0:
        raise JobError("every example weight is 0: nothing would be learned")
    return [w / mean for w in weights]


def pack(pairs: list[tuple[list[int], list[int]]], block: int, pad_id: int,
         weights: list[float] | None = None) -> Examples:  # fmt: skip
    """Concatenate ``(input_ids, labels)`` pairs into blocks of exactly ``block`` tokens.

    Documents run on across block boundaries (no token is dropped); only the last block is
    padded, with labels -100 and attention mask 0 there. ``weights`` (one per pair) become
    per-token weights that follow each token into its block.
    """
    flat_ids = [t for ids, _ in pairs for t in ids]
    flat_labels = [t for _, labels in pairs for t in labels]
    if not flat_ids:
        raise JobError("the dataset has no tokens")
    flat_weights = [w for (ids, _), w in zip(pairs, weights) for _ in ids] if weights else None
    blocks_ids, blocks_labels, blocks_weights = [], [], []
    for start in range(0, len(flat_ids), block):
        blocks_ids.append(flat_ids[start : start + block])
        blocks_labels.append(flat_labels[start : start + block])
        if flat_weights:
            blocks_weights.append(flat_weights[start : start + block])
    slots = len(blocks_ids) * block
    stats = {"examples": len(pairs), "blocks": len(blocks_ids), "tokens": len(flat_ids),
             "non_pad_fraction": len(flat_ids) / slots}  # fmt: skip
    return Examples(blocks_ids, blocks_labels, pad_id, packed=True, stats=stats,
                    weights=blocks_weights if flat_weights else None)  # fmt: skip


def _eos(tokenizer: Any) -> list[int]:
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    return [eos] if eos is not None else []


# Texts longer than this are tokenized a piece at a time: a fast tokenizer keeps offsets, masks
# and pre-token splits for the whole input at once (~160 bytes per input byte measured here,
# benchmarks/record_memory.py), so one long record would cost gigabytes in a single call.
ENCODE_PIECE_CHARS = 64 * 1024


def _encode(tokenizer: Any, text: str, special: bool = True) -> list[int]:
    if len(text) <= ENCODE_PIECE_CHARS:
        return tokenizer(text, add_special_tokens=special)["input_ids"]
    ids: list[int] = []
    for piece in _pieces(text, ENCODE_PIECE_CHARS):
        ids += tokenizer(piece, add_special_tokens=False)["input_ids"]
    if special:  # what the tokenizer adds around a text (BOS; CLS ... SEP), around the whole
        plain = tokenizer("a", add_special_tokens=False)["input_ids"]
        marked = tokenizer("a", add_special_tokens=True)["input_ids"]
        for at in range(len(marked) - len(plain) + 1):
            if marked[at : at + len(plain)] == plain:
                return marked[:at] + ids + marked[at + len(plain) :]
    return ids


def _pieces(text: str, size: int) -> Iterator[str]:
    """``text`` cut into pieces of about ``size`` characters, each cut just before a space
    that precedes a word: BPE pre-tokenizers split there anyway (GPT-2's attaches the space to
    the next word), so the pieces tokenize as the whole would. A text without such a space
    (one long word) is cut at ``size``."""
    start = 0
    while len(text) - start > size:
        cut = text.rfind(" ", start + size // 2, start + size)
        while cut > start and text[cut - 1] == " ":  # keep a run of spaces whole
            cut -= 1
        if cut <= start:
            cut = start + size
        yield text[start:cut]
        start = cut
    yield text[start:]


def _plain(record: dict, tokenizer: Any, data: Any) -> tuple[list[int], list[int]]:
    # Plain-text files give {"text": ...} whatever data.text_field says (see records.py).
    text = record[data.text_field] if data.text_field in record else record["text"]
    ids = _encode(tokenizer, text) + _eos(tokenizer)
    return ids, list(ids)


def _instruction(record: dict, tokenizer: Any, data: Any) -> tuple[list[int], list[int]]:
    prompt = record[data.prompt_field]
    if prompt and not prompt[-1].isspace():
        prompt += "\n"
    prompt_ids = _encode(tokenizer, prompt)
    response_ids = _encode(tokenizer, record[data.response_field], special=False) + _eos(tokenizer)
    return prompt_ids + response_ids, [IGNORE] * len(prompt_ids) + response_ids


def _chat(record: dict, tokenizer: Any, data: Any) -> tuple[list[int], list[int]]:
    messages = record[data.messages_field]
    if getattr(tokenizer, "chat_template", None):
        templated = _chat_with_template(messages, tokenizer)
        if templated is not None:
            return templated
    ids, labels = [], []
    for i, message in enumerate(messages):
        text = f"<|{message['role']}|>\n{message['content']}\n"
        piece = _encode(tokenizer, text, special=i == 0)
        ids += piece
        labels += piece if message["role"] == "assistant" else [IGNORE] * len(piece)
    eos = _eos(tokenizer)
    return ids + eos, labels + eos


def _chat_with_template(messages: list[dict], tokenizer: Any):
    """Render with the model's own template; mark assistant turns by character spans.

    Returns None when the template's renders are not prefixes of each other or the tokenizer
    gives no offsets; the caller then uses the role-tagged rendering.
    """
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    spans, previous = [], 0
    for i, message in enumerate(messages):
        prefix = tokenizer.apply_chat_template(messages[: i + 1], tokenize=False)
        if not full.startswith(prefix):
            return None
        if message["role"] == "assistant":
            spans.append((previous, len(prefix)))
        previous = len(prefix)
    try:
        encoded = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    except (NotImplementedError, ValueError):
        return None  # slow tokenizers have no offsets
    ids = encoded["input_ids"]
    labels = [tok if any(a <= start < b for a, b in spans) else IGNORE
              for tok, (start, _end) in zip(ids, encoded["offset_mapping"])]  # fmt: skip
    return ids, labels


def label_map(records: list[dict], data: Any) -> dict:
    """Class value -> id, sorted so the mapping is the same on every run and every rank."""
    values = {r[data.label_field] for r in records}
    if any(isinstance(v, (dict, list)) or v is None for v in values):
        bad = next(r for r in records if isinstance(r[data.label_field], (dict, list, type(None))))
        raise JobError(f"label must be a string or integer, got {bad[data.label_field]!r}",
                       bad.get("_source"))  # fmt: skip
    if len(values) < 2:
        raise JobError(f"classification needs at least 2 distinct labels in {data.label_field!r}; "
                       f"found {sorted(map(str, values))}", "data.train")  # fmt: skip
    ordered = sorted(values, key=lambda v: (isinstance(v, str), v))
    return {value: i for i, value in enumerate(ordered)}


def _classification(records: list[dict], tokenizer: Any, data: Any, label_ids: dict,
                    weights: list[float] | None = None) -> Examples:  # fmt: skip
    ids, labels = [], []
    for record in records:
        value = record[data.label_field]
        if value not in label_ids:
            raise JobError(f"label {value!r} does not occur in the training data "
                           f"(known: {', '.join(map(str, label_ids))})", record.get("_source"))  # fmt: skip
        encoded = tokenizer(record[data.text_field], truncation=True, max_length=data.max_seq_len)
        ids.append(encoded["input_ids"])
        labels.append(label_ids[value])
    real = sum(len(s) for s in ids)
    return Examples(ids, labels, tokenizer.pad_token_id, packed=False,
                    stats={"examples": len(ids), "tokens": real}, weights=weights)  # fmt: skip
