"""``pretrain-scratch`` with ``data.streaming``: prompt -> response pairs read as training takes
them (``common/streaming.py``'s source, shards and shuffle buffer), never held whole.

The character vocabulary cannot wait for the whole stream: it is built from the eval records and
the first ``data.shuffle_buffer`` training records (the same on every rank); a character first
seen later encodes as ``<unk>``. Resume replays the stream up to the checkpoint's step (reading
the pairs again, not training on them), as the in-memory recipe replays its data order.
"""

from __future__ import annotations

import itertools
import logging
import random
from collections.abc import Callable, Iterator
from typing import Any

from .common.streaming import DEFAULT_SHUFFLE_BUFFER, shuffled, stream_splits
from .config import JobError
from .scratch_model import SPECIALS, Vocab

log = logging.getLogger("genai.scratch")


def stream_pairs(spec: Any, contract: Any) -> tuple[Callable, list, Vocab, dict]:
    """``(batches(rank, world) -> endless micro-batches of pairs, eval pairs, vocab, stats)``.

    Raises:
        JobError: a format other than ``instruction``, or a training stream with no record.
    """
    data = spec.data
    if data.format != "instruction":
        raise JobError("pretrain-scratch trains on prompt -> response pairs; use format "
                       f"'instruction' (got {data.format!r})", "data.format")  # fmt: skip
    source, held = stream_splits(data, contract)
    buffer = data.get("shuffle_buffer") or DEFAULT_SHUFFLE_BUFFER
    sample = list(itertools.islice(source.records(), buffer))
    if not sample:
        raise JobError(f"the dataset at {source.location} is empty (no records)", "data.train")
    fields = (data.prompt_field, data.response_field)
    chars = sorted({ch for r in held + sample for f in fields for ch in r[f]})
    vocab = Vocab(list(SPECIALS) + chars, "char")
    del sample  # the vocabulary is all it was read for
    stats = {"streaming": True, "records_read": 0, "peak_buffer": 0, "shuffle_buffer": buffer}

    def encode(record: dict) -> tuple[list[int], list[int]]:
        return vocab.encode(record[fields[0]]), vocab.encode(record[fields[1]])

    def batches(rank: int, world: int, seed: int, size: int) -> Iterator[list]:
        for epoch in itertools.count():
            rng = random.Random(f"scratch:{seed}:{epoch}:{rank}")
            pairs = map(encode, shuffled(source.records(rank, world), buffer, rng, stats))
            made = 0
            while chunk := list(itertools.islice(pairs, size)):
                made += 1
                yield chunk
            if not made:
                raise JobError(f"rank {rank} of {world} got no training data from the stream "
                               "(fewer records than processes)", "data.train")  # fmt: skip

    log.info("streaming: vocabulary of %d characters from %d eval + the first %d training records",
             len(chars), len(held), buffer)  # fmt: skip
    return batches, [encode(r) for r in held], vocab, stats
