"""torch_xla (TPU) training for the shared Trainer: one compiled graph per step, on every chip.

XLA is lazy: torch ops on an XLA tensor only record a graph; the graph is compiled (once per
distinct graph) and executed when a step is marked or a value is read on the host. So the loop
must (1) cut the graph exactly at the optimizer step, (2) feed it tensors of a few fixed shapes,
and (3) never read a device value in the middle of a step. ``XlaRun`` does that for a Trainer:

- **One graph per step.** Forward + backward of the step's micro-batches, the gradient
  all-reduce across chips, clipping, the optimizer and the zeroing of gradients are traced, then
  ``xm.mark_step()`` cuts, compiles (first time) and launches the graph asynchronously.
- **Device loader.** Right after the launch, the next step's batch is copied to the device, so
  the host->device transfer overlaps the step the device is running.
- **Static shapes.** Every micro-batch has ``batch_size`` rows (an epoch's short last batch gets
  rows with nothing to learn: labels -100, one visible pad token, so its loss and gradients are
  those of the short batch). Packed blocks have one length; padded examples are padded to the
  smallest of a few bucket widths (the longest example, /2, /4, /8; multiples of 8). Compilations
  therefore stop after the first steps: one graph per bucket, plus evaluation's.
- **Losses without extra executions.** A step's loss is an output of the step's own graph; the
  Trainer keeps the device tensors and ``to_host`` copies them all at log time, with no new
  graph to compile or run.
- **Every chip.** ``python -m job_templates.common.xla`` (what a TPU job runs) starts one process
  per local chip through PJRT (``torch_xla.launch``); each process sets the contract's
  ``RANK`` / ``LOCAL_RANK`` / ``WORLD_SIZE`` from the XLA runtime, so the data sharding, rank-0
  writes and checkpoints work as under DDP. Gradients are averaged inside the step's graph
  (``xm.reduce_gradients``: an all-reduce over the chips' interconnect). Host-side agreement
  (barriers, the stop flag, every rank's RNG in a checkpoint) uses a gloo process group whose
  rendezvous is torch_xla's ``xla://`` (the TPU metadata names the master host).
  Processes started the torchrun way (``RANK`` / ``WORLD_SIZE`` set, one XLA device each, as on
  XLA's CPU device, whose collectives do not cross processes) average the gradients over gloo
  on the host instead: the same arithmetic, one more graph per step. Each rank's loss is
  weighted by its share of the global micro-batch's targets, so N processes compute the loss
  one process would on the same global batch. An eviction's SIGTERM reaches the launcher,
  which tells the replicas through a stop file (see ``launch``).
- **No hidden host reads.** Causal LM batches travel without an attention mask (right padding
  under causal attention needs none) and transformers' per-forward padding check is off:
  either would read device values on the host in the middle of the step.
- **Tied weights.** ``.to(xla)`` unties shared tensors (GPT-2's embedding and LM head);
  ``retie_weights`` ties them again before the optimizer sees the parameters.
- **Checkpoints.** Model and optimizer state are copied to the CPU before ``torch.save``
  (what ``xm.save`` does) and load back onto the device; the XLA RNG seed (dropout) is saved per
  rank, so a resumed run draws the same masks as one that never stopped.
- **Precision.** ``auto`` is bf16 autocast on XLA (``device.select_precision``): fp32 master
  weights and optimizer state, bf16 matmuls (the TPU's MXU format), losses and norms in fp32.
- **Evaluation.** Padded to the same fixed batch shape, one graph per batch, the sums stay on the
  device and are read once at the end.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

from .device import autocast as devices_autocast
from .evaluation import classification_scores
from .text import IGNORE

# ``python -m job_templates.common.xla`` (what a TPU job runs): the launcher is xla_launch.py.
from .xla_launch import STOP_FILE as _STOP_FILE
from .xla_launch import init_process_group, launch  # noqa: F401  (distributed.init; __main__)

log = logging.getLogger("genai")

# Padded (non-packed) batches are padded to one of these fractions of the longest example, so a
# run compiles at most this many training graphs instead of one per batch length.
BUCKET_FRACTIONS = (1, 2, 4, 8)
WIDTH_MULTIPLE = 8  # bucket widths are multiples of 8: the TPU lays out tensors in (8, 128) tiles


def bucket_widths(longest: int) -> list[int]:
    """The padded widths a run uses for examples up to ``longest`` tokens, smallest first."""
    widths = {-(-max(1, -(-longest // f)) // WIDTH_MULTIPLE) * WIDTH_MULTIPLE
              for f in BUCKET_FRACTIONS}  # fmt: skip
    return sorted(widths)


def pad_batch(host: dict, rows: int, width: int | None, pad_id: int) -> dict:
    """``host`` (a ``text.Examples.batch``) grown to ``rows`` rows and, for 2-D tensors, ``width``
    columns. Added rows and columns carry nothing to learn (labels -100, mask 0, weight 0); an
    added row sees one pad token, so no attention row is fully masked (that gives NaN)."""
    import torch

    n = host["input_ids"].shape[0]
    width = width or host["input_ids"].shape[1]
    fill = {"input_ids": pad_id, "labels": IGNORE}
    out = {}
    for key, value in host.items():
        shape = (rows, width) if value.dim() == 2 else (rows,)
        grown = torch.full(shape, fill.get(key, 0), dtype=value.dtype)
        if value.dim() == 2:
            grown[:n, : value.shape[1]] = value
        else:
            grown[:n] = value
        out[key] = grown
    if n < rows:
        out["attention_mask"][n:, 0] = 1
    return out


def retie_weights(model: Any) -> None:
    """Tie ``model``'s shared weights again after ``.to(xla)``: the move gives each use of a tied
    tensor (GPT-2's embedding and LM head) its own device copy, which would then train apart."""
    if hasattr(model, "tie_weights"):
        model.tie_weights()


class XlaRun:
    """The XLA side of one ``Trainer``: its step, device loader, checkpoints and evaluation."""

    def __init__(self, trainer: Any):
        import torch_xla.core.xla_model as xm
        import torch_xla.runtime as xr

        self.trainer, self.xm = trainer, xm
        examples = trainer.train_set
        self.widths = None if examples.packed else bucket_widths(
            max(len(ids) for ids in examples.input_ids))  # fmt: skip
        # xla-spmd (xla_spmd.py): one program over every chip; XLA writes its collectives.
        self.spmd = trainer.strategy if trainer.strategy.name == "xla-spmd" else None
        self.send = self.spmd.send if self.spmd else xm.send_cpu_data_to_device
        # PJRT replicas (one per chip) all-reduce inside the graph; torchrun-style processes with
        # one XLA device each (XLA's CPU device) cannot, and average on the host over gloo.
        self.in_graph_reduce = xr.world_size() > 1 and not self.spmd
        self.host_reduce = trainer.world > 1 and not self.spmd and not self.in_graph_reduce
        self._epochs: dict[int, dict] = {}
        # Targets per example (tokens with a label; one per classifier example), to weight each
        # rank's loss by its share of the global batch's targets (SPMD: the loss is global).
        self.targets = _target_counts(examples) if trainer.world > 1 and not self.spmd else None
        self._prefetched: tuple | None = None
        self._stop_file = os.environ.get(_STOP_FILE)
        # torch.manual_seed does not reach the device's generator (dropout): seed it from the spec.
        xm.set_rng_state(int(trainer.training.seed), trainer.device)
        _no_pad_check(trainer.model)
        log.info("XLA: %d replica(s) in the runtime, %d process(es); gradients averaged %s",
                 1 if self.spmd else xr.world_size(), trainer.world,
                 "by the SPMD partitioner" if self.spmd else "in the graph" if self.in_graph_reduce
                 else "over gloo" if self.host_reduce else "nowhere (one process)")  # fmt: skip

    # ---- the step -------------------------------------------------------------------------

    def step(self, group: list[list[int]]) -> None:
        """One optimizer step over ``group`` as one XLA graph (``Trainer._step`` on XLA)."""
        import torch

        t, xm = self.trainer, self.xm
        started = time.perf_counter()
        batches, tokens, slots = self._take(group)
        step_loss = None
        for batch, scale in batches:
            with devices_autocast(t.device, t.precision):
                loss = t.loss_fn(t.forward, batch)
            loss = (loss if scale is None else loss * scale) / len(group)
            loss.backward()
            step_loss = loss.detach() if step_loss is None else step_loss + loss.detach()
        if self.in_graph_reduce:
            xm.reduce_gradients(t.optimizer)  # all-reduce mean over the chips, inside the graph
        elif self.host_reduce:
            self._host_reduce_gradients()
        if t.training.max_grad_norm:
            # Tensor ops only (no host read): the norm and the clip factor stay in the graph.
            torch.nn.utils.clip_grad_norm_(t.model.parameters(), t.training.max_grad_norm)
        t.optimizer.step()
        if self.spmd:
            self.spmd.shard_optimizer_state(t.optimizer)
        t.scheduler.step()
        t.optimizer.zero_grad(set_to_none=True)
        xm.mark_step()  # cut: compile once, launch asynchronously
        self._prefetch_next()  # overlaps the copy with the step now running
        t.state.step += 1
        t._pending_losses.append(step_loss)
        t.state.tokens += tokens * t.world
        t.state.slots += slots * t.world
        t.state.train_seconds += time.perf_counter() - started
        if self._stop_file and os.path.exists(self._stop_file):
            t._stop = True  # the launcher was sent SIGTERM (see ``launch``)

    def _host_reduce_gradients(self) -> None:
        """Average gradients across torchrun-style processes on the host (gloo)."""
        import torch
        import torch.distributed as dist

        self.xm.mark_step()
        params = [p for p in self.trainer.model.parameters() if p.grad is not None]
        grads = self.to_host([p.grad for p in params])
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.trainer.world
        offset = 0
        for p, g in zip(params, grads):
            p.grad.copy_(flat[offset : offset + g.numel()].view_as(g).to(p.device))
            offset += g.numel()

    # ---- the device loader ----------------------------------------------------------------

    def _load(self, group: list[list[int]], epoch: int, start: int) -> tuple:
        """The group (micro-batches ``start``... of ``epoch``) on the device, fixed-shape, with
        each micro-batch's loss scale (None for one process) and its real / slot counts."""
        t = self.trainer
        examples, rows = t.train_set, t.batch_size
        batches, tokens, slots = [], 0, 0
        for m, indices in enumerate(group):
            host = examples.batch(indices)
            tokens += int(host["attention_mask"].sum())
            weighted_rows = "weights" in host and host["weights"].dim() == 1
            # A per-example weighted loss averages over rows: added rows would dilute it.
            target_rows = len(indices) if weighted_rows else rows
            width = None if self.widths is None else _bucket(self.widths, host["input_ids"].shape[1])
            host = pad_batch(host, target_rows, width, examples.pad_id)
            slots += host["attention_mask"].numel()
            batch = _unmasked(host)
            scale = self._scale(indices, epoch, start + m)
            batches.append(self.send((batch, scale), t.device))
        return batches, tokens, slots

    def _scale(self, indices: list[int], epoch: int, position: int):
        """``world x my targets / the global micro-batch's targets``, as a tensor (a Python float
        would be compiled in as a constant when it is 1.0). Each rank's loss is a mean over its
        own targets; scaled so, the mean over ranks is the mean over the global batch's targets,
        which is what one process training on the whole global batch computes."""
        if self.targets is None:
            return None
        import torch

        mine = sum(self.targets[i] for i in indices)
        total = sum(sum(self.targets[i] for i in batches[position])
                    for batches in self._epoch(epoch).values() if position < len(batches))  # fmt: skip
        return torch.tensor(mine * self.trainer.world / total if total else 0.0)

    def _take(self, group: list[list[int]]) -> tuple:
        key = _key(group)
        if self._prefetched is not None and self._prefetched[0] == key:
            found, self._prefetched = self._prefetched[1], None
            return found
        s = self.trainer.state
        return self._load(group, s.epoch, s.offset)

    def _prefetch_next(self) -> None:
        """Copy the group the loop takes next (the Trainer's offset still names this step's)."""
        t = self.trainer
        s, accum = t.state, t.training.grad_accum
        if s.step + 1 >= t.total_steps:
            return
        start, epoch = s.offset + accum, s.epoch
        if start >= len(self._epoch(epoch)[t.rank]):
            start, epoch = 0, s.epoch + 1
        group = self._epoch(epoch)[t.rank][start : start + accum]
        self._prefetched = (_key(group), self._load(group, epoch, start))

    def _epoch(self, epoch: int) -> dict[int, list]:
        """Micro-batches of ``epoch`` by rank: this rank's, and every rank's when losses are
        scaled across ranks (the orders are a function of seed, epoch and rank: no messages)."""
        if epoch not in self._epochs:
            t = self.trainer
            ranks = range(t.world) if self.targets is not None else [t.rank]
            self._epochs = {epoch: {r: t.epoch_batches(epoch, r) for r in ranks}}  # one epoch
        return self._epochs[epoch]

    # ---- host transfers, checkpoints, RNG -------------------------------------------------

    def to_host(self, value: Any) -> Any:
        """``value`` (tensors nested in dicts / lists) with every XLA tensor copied to the CPU,
        all in one transfer; reading already-computed tensors runs no graph."""
        return self.xm._maybe_convert_to_cpu(value)

    def rng_seed(self) -> int:
        return int(self.xm.get_rng_state(self.trainer.device))

    def set_rng_seed(self, seed: int) -> None:
        self.xm.set_rng_state(int(seed), self.trainer.device)

    # ---- evaluation -----------------------------------------------------------------------

    def evaluate(self, examples: Any) -> dict:
        """``evaluation.evaluate`` on XLA: fixed-shape batches, one graph each, sums read once."""
        import math

        import torch

        t, xm = self.trainer, self.xm
        model, device, size = t.forward, t.device, t.batch_size
        indices = list(range(len(examples)))[t.rank :: t.world]
        batches = [indices[i : i + size] for i in range(0, len(indices), size)]
        if t.training.eval_batches is not None:
            batches = batches[: t.training.eval_batches]
        classifier = not isinstance(examples.labels[0], list)
        widths = None if examples.packed else bucket_widths(max(len(r) for r in examples.input_ids))
        num_labels = getattr(getattr(model, "config", None), "num_labels", 2)
        loss_sum = torch.zeros((), device=device)
        count = torch.zeros((), device=device)
        confusion = torch.zeros((num_labels, num_labels), device=device)
        xm.mark_step()  # the sums become device data: every batch below is then the same graph
        was_training = model.training
        model.eval()
        with torch.no_grad():
            for batch_indices in batches:
                host = examples.batch(batch_indices)
                host.pop("weights", None)
                width = None if widths is None else _bucket(widths, host["input_ids"].shape[1])
                host = _unmasked(pad_batch(host, size, width, examples.pad_id))
                batch = self.send(host, device)
                with devices_autocast(device, t.precision):
                    out = model(**batch)
                labels = batch["labels"]
                if classifier:
                    valid = labels != IGNORE
                    n = valid.sum()
                    pred = out.logits.argmax(-1)
                    confusion.index_put_((labels.clamp(min=0), pred), valid.float(),
                                         accumulate=True)  # fmt: skip
                else:
                    n = (labels[:, 1:] != IGNORE).sum()
                loss_sum += out.loss.float() * n
                count += n
                xm.mark_step()
        model.train(was_training)
        sums = self.to_host([loss_sum, count, confusion])
        if t.world > 1 and not self.spmd:  # SPMD's sums are over every host's rows already
            import torch.distributed as dist

            for s in sums:
                dist.all_reduce(s)
        loss_total, n_total, confusion = (s.double() for s in sums)
        total = max(n_total.item(), 1.0)
        loss = loss_total.item() / total
        if classifier:
            return {"loss": loss, **classification_scores(confusion), "examples": int(n_total)}
        return {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), "tokens": int(n_total)}


def _no_pad_check(model: Any) -> None:
    """Turn off transformers' "input_ids may be padded" check in ``model``'s inner models: given no
    attention mask (see ``_unmasked``) it reads token ids on the host at every forward, a sync in
    the middle of each step, to show a one-time warning."""
    for module in model.modules():
        if hasattr(type(module), "warn_if_padding_and_no_attention_mask"):
            module.warn_if_padding_and_no_attention_mask = _skip

def _skip(*_args: Any) -> None:
    return None


def _unmasked(host: dict) -> dict:
    """A causal LM batch without its attention mask; other batches as they are.

    Rows are right-padded, so under causal attention no real token sees a pad and the mask
    changes nothing the loss reads. Given a mask, transformers reads it on the host to decide
    whether SDPA may skip it: a device->host sync (an extra execution) in the middle of the step.
    Classifiers pool over the sequence and keep theirs."""
    if host["labels"].dim() != 2:
        return host
    return {k: v for k, v in host.items() if k != "attention_mask"}


def _target_counts(examples: Any) -> list[int]:
    if not isinstance(examples.labels[0], list):
        return [1] * len(examples)
    # HF shifts the labels inside the model: position 0 is never a target.
    return [sum(1 for label in labels[1:] if label != IGNORE) for labels in examples.labels]


def _bucket(widths: list[int], width: int) -> int:
    return next((w for w in widths if w >= width), widths[-1])


def _key(group: list[list[int]]) -> tuple:
    return tuple(tuple(indices) for indices in group)


if __name__ == "__main__":
    sys.exit(launch())
