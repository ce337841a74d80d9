"""``data.streaming``: training records read, checked, tokenized and packed as the Trainer
consumes them, in bounded memory, so the data may be bigger than memory or disk.

    source, eval_records = stream_splits(spec.data, contract)
    train_set = TokenStream(source, tokenizer, spec.data, spec.training.seed, contract)
    Trainer(model, train_set, eval_set, ...)   # a torch IterableDataset; needs max_steps

Per rank and epoch: the source's records in order (``records.iter_records``: JSONL / text lines,
parquet / CSV / arrow rows read in place, a hub dataset loaded with ``streaming=True``, each
checked by ``check_record`` and keeping its ``file:line`` / ``:row N``) -> the held-out head
skipped -> every ``world``-th record from the rank's own offset (disjoint shards: every rank reads
the stream and keeps its share) -> ``data.max_records`` as a cap -> a shuffle buffer of
``data.shuffle_buffer`` records seeded by (``training.seed``, epoch, rank) -> ``text.render`` ->
packed into blocks of ``data.max_seq_len`` tokens (the epoch's last block short) or, without
``data.packing``, one truncated example per record -> batches of the Trainer's ``DataLoader``.

Memory: the shuffle buffer, one partial block and a batch; never the dataset.

Epochs: when a rank's share runs out before ``training.max_steps``, its next epoch reopens the
source and reshuffles (a new seed per epoch); ``epochs`` in the metrics counts the passes begun.

Resume: each rank's position (epoch, blocks of that epoch consumed) travels in the checkpoint. A
resumed run reopens that epoch and skips the blocks already trained on (reading and tokenizing
them again, not training on them), so it trains on the same blocks in the same order as a run
that never stopped. With another world size the shards differ, and the positions are only close.

Eval: at most ``data.max_eval_records`` records (default 1000), held in memory: from
``data.eval``, or without it (and ``data.eval_fraction`` > 0) the first records of
``data.train``, which training then skips (a stream has no length to take a fraction of).
"""

from __future__ import annotations

import itertools
import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from torch.utils.data import IterableDataset

from ..config import JobError
from .data import data_location
from .records import iter_records
from .text import IGNORE, Examples, render

log = logging.getLogger("genai")

DEFAULT_EVAL_RECORDS = 1000  # the spec's default for data.max_eval_records with streaming
DEFAULT_SHUFFLE_BUFFER = 10_000  # the spec's default for data.shuffle_buffer


@dataclass
class StreamSource:
    """Where the training stream comes from; ``records`` reopens it (one pass, one rank)."""

    location: Any
    data: Any
    skip: int = 0  # records at the head held out for evaluation

    def records(self, rank: int = 0, world: int = 1) -> Iterator[dict]:
        """This rank's share of the training records, in source order."""
        cap = self.data.get("max_records")
        stop = None if cap is None else self.skip + cap
        return itertools.islice(iter_records(self.location, self.data), self.skip + rank, stop,
                                world)  # fmt: skip


def stream_splits(data: Any, contract: Any) -> tuple[StreamSource, list[dict]]:
    """``(the training stream, the eval records)``; the eval records are bounded by
    ``data.max_eval_records`` (default ``DEFAULT_EVAL_RECORDS``, or ``data.max_records`` when
    smaller) and empty without ``data.eval`` when ``data.eval_fraction`` is 0.

    Raises:
        JobError: an eval source with no records, or (when the first record is read) bad data.
    """
    train = data_location(data, contract, "train")
    cap = data.get("max_records") or DEFAULT_EVAL_RECORDS
    n_eval = data.get("max_eval_records") or min(DEFAULT_EVAL_RECORDS, cap)
    eval_location = data_location(data, contract, "eval")
    if eval_location is not None:
        evals = list(itertools.islice(iter_records(eval_location, data, role="eval"), n_eval))
        if not evals:
            raise JobError(f"the dataset at {eval_location} is empty (no records)", "data.eval")
        return StreamSource(train, data), evals
    if not data.get("eval_fraction"):
        return StreamSource(train, data), []
    evals = list(itertools.islice(iter_records(train, data), n_eval))
    log.info("streaming: held out the first %d records of %s for evaluation "
             "(data.max_eval_records; training skips them)", len(evals), train)  # fmt: skip
    return StreamSource(train, data, skip=len(evals)), evals


def shuffled(records: Iterator[dict], size: int, rng: random.Random, stats: dict) -> Iterator:
    """``records`` in a random order drawn from a buffer of at most ``size`` of them: each
    record read replaces a random one of the buffer, which is yielded."""
    buffer: list[dict] = []
    for record in records:
        stats["records_read"] += 1
        if len(buffer) < size:
            buffer.append(record)
            stats["peak_buffer"] = max(stats["peak_buffer"], len(buffer))
            continue
        at = rng.randrange(size)
        yield buffer[at]
        buffer[at] = record
    rng.shuffle(buffer)
    yield from buffer


class TokenStream(IterableDataset):
    """Token blocks of one rank, epoch after epoch, without end: what ``Trainer`` trains on when
    ``data.streaming`` (it needs ``training.max_steps``). ``position`` is ``(epoch, blocks of
    that epoch yielded)``; ``start`` is where the next iteration begins (set on resume)."""

    streaming = True
    weights = None  # per-example weights come from bias mitigation, which cannot stream

    def __init__(self, source: StreamSource, tokenizer: Any, data: Any, seed: int,
                 contract: Any) -> None:  # fmt: skip
        self.source, self.tokenizer, self.data, self.seed = source, tokenizer, data, seed
        self.rank, self.world = contract.rank, contract.world_size
        self.packed = bool(data.packing)
        self.seq_len = data.max_seq_len
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else (tokenizer.eos_token_id or 0)
        self.buffer_size = data.get("shuffle_buffer") or DEFAULT_SHUFFLE_BUFFER
        self.start = self.position = (0, 0)
        self.stats = {"streaming": True, "records_read": 0, "peak_buffer": 0, "blocks": 0,
                      "skipped": 0, "epochs": 0, "shuffle_buffer": self.buffer_size}  # fmt: skip

    def __iter__(self) -> Iterator[dict]:
        epoch, skip = self.start
        while True:
            made = 0
            self.stats["epochs"] = epoch + 1
            for made, block in enumerate(self.epoch_blocks(epoch), start=1):
                if made > skip:
                    self.position = (epoch, made)
                    self.stats["blocks"] += 1
                    yield block
            if made == 0:
                raise JobError(f"rank {self.rank} of {self.world} got no training data from the "
                               "stream (fewer records than processes, or every record empty)",
                               "data.train")  # fmt: skip
            epoch, skip = epoch + 1, 0

    def epoch_blocks(self, epoch: int) -> Iterator[dict]:
        """This rank's blocks of ``epoch``: a function of (source, seed, epoch, rank, world)."""
        rng = random.Random(f"stream:{self.seed}:{epoch}:{self.rank}")
        records = self.source.records(self.rank, self.world)
        return self._blocks(shuffled(records, self.buffer_size, rng, self.stats))

    def _blocks(self, records: Iterator[dict]) -> Iterator[dict]:
        size, ids, labels = self.seq_len, [], []
        for record in records:
            seq, lab = render(record, self.tokenizer, self.data)
            if not self.packed:
                seq, lab = seq[:size], lab[:size]
                if all(x == IGNORE for x in lab[1:]):
                    self.stats["skipped"] += 1  # no target token within max_seq_len
                    continue
                yield {"input_ids": seq, "labels": lab}
                continue
            ids += seq
            labels += lab
            while len(ids) >= size:
                yield {"input_ids": ids[:size], "labels": labels[:size]}
                del ids[:size], labels[:size]
        if ids:
            yield {"input_ids": ids, "labels": labels}  # the epoch's last block, short

    def collate(self, rows: list[dict]) -> dict:
        """A batch of blocks as the model's tensors, padded to the longest (as ``Examples``)."""
        return _as_examples(rows, self.pad_id).batch(range(len(rows)))

    def loader(self, batch_size: int):
        """Batches of ``batch_size`` blocks, in this process (no workers: ``position`` is then
        exactly the blocks handed out)."""
        from torch.utils.data import DataLoader

        return DataLoader(self, batch_size=batch_size, collate_fn=self.collate, num_workers=0)


def sample(stream: TokenStream, blocks: int = 16) -> Examples:
    """The first ``blocks`` blocks of the stream's first epoch as in-memory ``Examples`` (for a
    measurement that needs a few batches); the stream's counters are left as they were."""
    stats = dict(stream.stats)
    rows = list(itertools.islice(stream.epoch_blocks(0), blocks))
    stream.stats = stats
    return _as_examples(rows, stream.pad_id)


def _as_examples(rows: list[dict], pad_id: int) -> Examples:
    return Examples([r["input_ids"] for r in rows], [r["labels"] for r in rows], pad_id,
                    packed=False, stats={"examples": len(rows)})  # fmt: skip
