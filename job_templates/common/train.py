"""The training loop every recipe shares: one ``Trainer``, used by composition.

    trainer = Trainer(model, train_examples, eval_examples, spec.training, contract, accelerator)
    state, after, resumed_from = trainer.fit_and_evaluate()
    # = resume from the newest complete checkpoint, or notes["eval_before"] = evaluate();
    #   fit() (may raise Preempted after flushing a checkpoint); evaluate()

What it does: AdamW (fused on CUDA; no weight decay on biases and norms), a linear / cosine /
constant schedule with warmup (``warmup_steps`` or ``warmup_ratio``), gradient accumulation and
clipping, an optional ``loss_fn(forward, batch)`` in place of the model's own loss
(``weighted_loss`` for per-example weights), autocast (``device.select_precision``), optional
gradient checkpointing and ``torch.compile``, ``epochs`` or ``max_steps``, a log line every
``log_every`` steps (loss, lr, tokens/s), evaluation every ``eval_every`` steps, DDP or FSDP2 when the contract's world size is > 1
(``strategies.py``; gloo on CPU, nccl on CUDA; only rank 0 writes), checkpoints every
``checkpoint_every`` steps (sharded under FSDP). With ``data.streaming`` the training examples
are a ``streaming.TokenStream`` (a torch ``IterableDataset``) read through a ``DataLoader``:
``max_steps`` steps, each rank on its own shard, each rank's position in the checkpoint. On
torch_xla (TPU) ``xla.XlaRun`` takes the step, the device loader, evaluation and checkpoint copies.

Exact resume. The data order of epoch ``e`` is a permutation drawn from a generator seeded with
``seed + e`` (never from the global RNG), the position inside the epoch is saved as a batch offset,
and the checkpoint restores model, optimizer, scheduler, grad scaler and every RNG. A run that is
killed and resumed therefore takes the same steps on the same batches with the same dropout masks
as one that never stopped: on CPU its final weights are bit-identical.

Preemption. SIGTERM (SageMaker allows 120 s before the kill; Vertex and Azure similar) only sets a
flag; at the next step boundary the loop writes a checkpoint and raises ``Preempted``, which the
entrypoint turns into exit status 143 so the platform's retry resumes. ``contract.extra
["preempt_at"]`` (``genai-cloud run --preempt-at STEP``) sends this process that signal at STEP.
"""

from __future__ import annotations

import logging
import math
import os
import random
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from ..config import JobError, Preempted  # Preempted: what the entrypoint catches (exit 143)
from . import checkpoint, distributed, strategies, tracking
from . import device as devices
from .evaluation import evaluate
from .text import IGNORE
from .xla import XlaRun, retie_weights

log = logging.getLogger("genai")


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA) for reproducible initialisation."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class LoopState:
    """Where the loop is; saved in every checkpoint and restored on resume."""

    step: int = 0  # optimizer steps done
    epoch: int = 0
    offset: int = 0  # micro-batches of this epoch already consumed (per rank)
    seed: int = 0  # the data-order seed: epoch e uses seed + e
    tokens: int = 0  # non-pad tokens trained on (all ranks)
    slots: int = 0  # token positions processed, padding included
    train_seconds: float = 0.0
    losses: list = field(default_factory=list)  # mean loss of every optimizer step
    history: list = field(default_factory=list)  # the log lines, as dicts
    evals: list = field(default_factory=list)  # {"step", **metrics}


def lr_lambda(schedule: str, warmup: int, total: int):
    """The learning-rate multiplier per step for ``training.schedule``."""

    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        if schedule == "linear":
            return max(0.0, 1.0 - progress)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


class Trainer:
    """Trains ``model`` on ``train`` (a ``text.Examples``) per the spec's ``training`` section."""

    def __init__(self, model: Any, train: Any, eval_set: Any, training: Any, contract: Any,
                 accelerator: str = "cpu", loss_fn: Any = None):  # fmt: skip
        """``loss_fn(forward, batch) -> loss`` replaces the model's own loss (e.g. distillation,
        per-example weights); ``forward`` is the wrapped model (DDP / compiled) to call."""
        import torch

        self.training, self.contract = training, contract
        self.train_set, self.eval_set = train, eval_set
        self.rank, self.world = contract.rank, contract.world_size
        kind = devices.detect_kind(accelerator)
        self.precision = devices.select_precision(
            training.precision, kind, devices.bf16_supported(kind)
        )
        # single / ddp / fsdp (common/strategies.py): ``model`` is what checkpoints and saves
        # see (sharded under FSDP until ``fit_and_evaluate`` consolidates it), ``forward`` what
        # a step calls. On XLA: single (xla.py averages the per-chip processes' gradients) or
        # xla-spmd (xla_spmd.py: one process, the model sharded over the chips). Chosen before
        # the device is set up: SPMD must be on before the XLA device is first asked for.
        self.strategy = strategies.create(training, self.world, kind, self.precision, model,
                                          train, contract.local_rank, accelerator)  # fmt: skip
        self.device, choice = devices.setup(accelerator, contract.local_rank)
        compile_model = devices.select_compile(training.compile, choice.kind)
        self.compiled = compile_model
        log.info("device %s (%s), precision %s, compile %s", self.device, choice.reason,
                 self.precision.name, compile_model)  # fmt: skip
        if self.world > 1:
            distributed.init(choice.kind)
        if training.gradient_checkpointing and hasattr(model, "gradient_checkpointing_enable"):
            model.gradient_checkpointing_enable()
            model.config.use_cache = False
            if any(not p.requires_grad for p in model.parameters()):
                # Frozen embeddings (LoRA) give checkpointed blocks inputs without grad, and the
                # recomputed blocks would then get no gradient at all.
                model.enable_input_require_grads()
        # Rows of a micro-batch in this process: under xla-spmd one process feeds every chip of
        # its host, ``batch_size`` rows each (the batch DDP over those chips would have).
        self.batch_size = training.batch_size * getattr(self.strategy, "data_parallel", 1)
        self.model, self.forward = self.strategy.wrap(model, self.device)
        if choice.kind == "xla":
            retie_weights(self.model)  # before the optimizer collects the parameters
        self.forward = self.compile(self.forward)

        # data.streaming: a common.streaming.TokenStream, without length (needs max_steps).
        self.streaming = bool(getattr(train, "streaming", False))
        if self.streaming and choice.kind == "xla":
            raise JobError("data.streaming is not supported on TPU yet", "data.streaming")
        self.batches_per_epoch = None if self.streaming else (
            math.ceil(len(train) // self.world / self.batch_size) or 1)  # fmt: skip
        self.total_steps = self._total_steps()
        self.fast = devices.fast_path(choice.kind)  # what metrics.json reports as fast_path
        self.optimizer = _adamw(self.model, training, fused=self.fast.fused_adamw)
        warmup = training.warmup_steps or math.ceil(training.warmup_ratio * self.total_steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_lambda(training.schedule, warmup, self.total_steps)
        )
        self.scaler = torch.amp.GradScaler(enabled=self.precision.use_grad_scaler)
        self.state = LoopState(seed=training.seed)
        self.notes: dict = {}  # recipe values that must survive a restart
        self.loss_fn = loss_fn or (lambda forward, batch: forward(**batch).loss)
        self.skip_full_mask = self.fast.skip_full_attention_mask
        self._pending_losses: list = []  # device tensors: one loss per step not yet flushed
        self._stop = False
        self.xla = XlaRun(self) if choice.kind == "xla" else None  # step, loader, ckpt on XLA

    def compile(self, fn: Any) -> Any:
        """``fn`` through ``torch.compile`` when this run compiles (CUDA by default), else as is.

        Packed data has one block length, so the only other shape is an epoch's short last
        batch: static graphs for both (``dynamic=False``) keep every full step on kernels
        specialised to its shape. Padded batches vary in length: let dynamo go dynamic there.
        """
        if not self.compiled:
            return fn
        import torch

        return torch.compile(fn, dynamic=False if self.train_set.packed else None)

    # ---- sizes and data order ---------------------------------------------------------------

    @property
    def epochs_done(self) -> float:
        """Passes over the training data so far (fractional; streaming: the passes begun)."""
        if self.streaming:
            return float(self.state.epoch + (1 if self.state.offset else 0))
        return self.state.epoch + self.state.offset / self.batches_per_epoch

    def _total_steps(self) -> int:
        t = self.training
        if t.max_steps:
            return t.max_steps
        if self.streaming:
            raise JobError("required with data.streaming: a stream has no length to count "
                           "epochs over; set the number of optimizer steps", "training.max_steps")  # fmt: skip
        # An epoch's last accumulation group may be short: it still makes one optimizer step.
        steps_per_epoch = math.ceil(self.batches_per_epoch / t.grad_accum)
        return max(1, math.ceil(t.epochs * steps_per_epoch))

    def epoch_batches(self, epoch: int, rank: int | None = None) -> list[list[int]]:
        """This rank's (or ``rank``'s) micro-batches of ``epoch``: a function of (seed, epoch,
        rank) only."""
        import torch

        generator = torch.Generator().manual_seed(self.state.seed + epoch)
        order = torch.randperm(len(self.train_set), generator=generator).tolist()
        order = order[: len(order) - len(order) % self.world] if self.world > 1 else order
        mine = order[self.rank if rank is None else rank :: self.world]
        size = self.batch_size
        return [mine[i : i + size] for i in range(0, len(mine), size)]

    # ---- checkpoints ------------------------------------------------------------------------

    def resume(self) -> bool:
        """Load the newest complete checkpoint, if there is one. Returns whether it did."""
        directory = self.contract.checkpoint_dir
        if self.contract.is_main:
            checkpoint.remove_partials(directory)
        path = checkpoint.latest(directory)
        if path is None:  # none of its own yet: start from training.resume_from, if set
            path = checkpoint.resume_source(self.training.get("resume_from"))
        if path is None:
            return False
        state = checkpoint.load(path)
        if self.strategy.sharded or checkpoint.is_sharded(path):  # DCP reshards to this run
            sharded = self.strategy.state_dict(self.optimizer)
            self.strategy.load_state_dict(self.optimizer, checkpoint.load_sharded(path, sharded))
        else:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        self.strategy.after_load(self.optimizer)
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.state = LoopState(**state["loop"])
        self.notes = state["notes"]
        rngs = state["rng"]
        mine = rngs[self.rank] if self.rank < len(rngs) else rngs[0]
        checkpoint.set_rng_state(mine)
        if self.streaming and "stream" in mine:  # each rank's own place in its shard
            self.state.epoch, self.state.offset = mine["stream"]
        if self.xla is not None and "xla" in mine:
            self.xla.set_rng_seed(mine["xla"])  # dropout masks on the device
        log.info("resumed from %s (step %d/%d, epoch %d, batch %d)", path.name, self.state.step,
                 self.total_steps, self.state.epoch, self.state.offset)  # fmt: skip
        return True

    def save_checkpoint(self) -> None:
        """Write a checkpoint of the current step (rank 0 writes; every rank's RNG is in it)."""
        self._flush_losses()
        mine = checkpoint.rng_state()
        if self.streaming:
            mine["stream"] = [self.state.epoch, self.state.offset]
        if self.xla is not None:
            mine["xla"] = self.xla.rng_seed()
        rngs = [mine]
        if self.world > 1:
            import torch.distributed as dist

            rngs = [None] * self.world
            dist.all_gather_object(rngs, mine)
        state = {
            "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
            "loop": asdict(self.state), "notes": self.notes, "rng": rngs,
        }  # fmt: skip
        started = time.perf_counter()
        if self.strategy.sharded:  # every rank writes its shard (torch.distributed.checkpoint)
            path = checkpoint.save_sharded(self.contract.checkpoint_dir, self.state.step, state,
                                           self.strategy.state_dict(self.optimizer),
                                           keep=self.training.keep_checkpoints,
                                           is_main=self.contract.is_main)  # fmt: skip
        elif self.contract.is_main:
            state.update(model=self.model.state_dict(), optimizer=self.optimizer.state_dict())
            if self.xla is not None:
                state = self.xla.to_host(state)  # torch.save of device tensors: CPU copies
            path = checkpoint.save(self.contract.checkpoint_dir, self.state.step, state,
                                   keep=self.training.keep_checkpoints)  # fmt: skip
        if self.contract.is_main:
            log.info("checkpoint %s written in %.2fs", path, time.perf_counter() - started)
        distributed.barrier(self.world)

    # ---- evaluation -------------------------------------------------------------------------

    def evaluate(self, examples: Any = None) -> dict:
        examples = examples if examples is not None else self.eval_set
        if examples is None or len(examples) == 0:
            return {}
        if self.xla is not None:
            result = self.xla.evaluate(examples)
        else:
            result = evaluate(self.forward, examples, self.device,
                              batch_size=self.batch_size, precision=self.precision,
                              max_batches=self.training.eval_batches, rank=self.rank,
                              world_size=self.world, lockstep=self.strategy.sharded)  # fmt: skip
        tracking.current().log_metrics({f"eval/{k}": v for k, v in result.items()}, self.state.step)
        return result

    # ---- the loop ---------------------------------------------------------------------------

    def fit_and_evaluate(self) -> tuple[LoopState, dict, int | None]:
        """Resume, or evaluate before training (kept in ``notes["eval_before"]``, so a resumed run
        reports the first run's figure); train; evaluate after.

        Returns:
            ``(state, eval after, the step resumed from or None)``.
        """
        resumed_from = self.state.step if self.resume() else None
        if resumed_from is None:
            self.notes["eval_before"] = self.evaluate()
            log.info("eval before training: %s", self.notes["eval_before"])
        state = self.fit()
        after = self.evaluate()
        log.info("eval after training: %s", after)
        # Under FSDP: a plain module with the full weights on every rank, for saving and for
        # whatever the recipe measures next (a no-op for single / ddp).
        self.model = self.forward = self.strategy.consolidate(self.model)
        return state, after, resumed_from

    def fit(self) -> LoopState:
        """Train until ``total_steps``. Raises ``Preempted`` after flushing on SIGTERM."""
        previous = _install_sigterm(self)
        bar = self._progress_bar()
        try:
            if self.streaming:
                self._fit_stream(bar)
            else:
                self._fit_epochs(bar)
            self._flush_losses()
            every = self.training.checkpoint_every
            if every and self.state.step % every and self.state.step:
                self.save_checkpoint()  # a finished run reruns as a no-op
        finally:
            bar.close()
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
        return self.state

    def _fit_epochs(self, bar: Any) -> None:
        while self.state.step < self.total_steps:
            batches = self.epoch_batches(self.state.epoch)
            for index in range(self.state.offset, len(batches), self.training.grad_accum):
                group = batches[index : index + self.training.grad_accum]
                self._step(group)
                self.state.offset = index + len(group)
                bar.update(1)
                self._after_step()
                if self.state.step >= self.total_steps:
                    break
            else:
                self.state.epoch, self.state.offset = self.state.epoch + 1, 0

    def _fit_stream(self, bar: Any) -> None:
        """Steps on batches of the stream (``streaming.TokenStream``), from where it was left."""
        self.train_set.start = (self.state.epoch, self.state.offset)
        batches = iter(self.train_set.loader(self.training.batch_size))
        while self.state.step < self.total_steps:
            self._step([next(batches) for _ in range(self.training.grad_accum)])
            self.state.epoch, self.state.offset = self.train_set.position
            bar.update(1)
            self._after_step()

    def _step(self, group: list) -> None:
        """One optimizer step over ``group`` micro-batches (the last of an epoch may be short):
        index lists into the examples, or (streaming) the batches themselves.

        Nothing here waits for the GPU: tokens are counted on the host copy of the batch, the
        loss stays a device tensor until ``_flush_losses`` (at log, checkpoint and the end), and
        batches travel from pinned memory. A host sync per step would idle the GPU while the
        next step's kernels are being launched.
        """
        if self.xla is not None:
            return self.xla.step(group)  # one XLA graph per step (xla.py)
        import torch

        started = time.perf_counter()
        step_loss, tokens, slots = None, 0, 0
        for n, indices in enumerate(group):
            host = indices if self.streaming else self.train_set.batch(indices)
            mask = host["attention_mask"]
            tokens += int(mask.sum())
            slots += mask.numel()
            batch = self._to_device(host)
            sync = n == len(group) - 1 or self.world == 1
            with self.strategy.sync_context(self.forward, sync):
                with devices.autocast(self.device, self.precision):
                    loss = self.loss_fn(self.forward, batch) / len(group)
                self.scaler.scale(loss).backward()
            step_loss = loss.detach() if step_loss is None else step_loss + loss.detach()
        if self.training.max_grad_norm:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.training.max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.state.step += 1
        self._pending_losses.append(step_loss)
        self.state.tokens += tokens * self.world
        self.state.slots += slots * self.world
        self.state.train_seconds += time.perf_counter() - started

    def _to_device(self, host: dict) -> dict:
        """The batch on the training device, minus an attention mask that masks nothing when the
        fast path says so: without one, SDPA runs its causal flash kernel, whereas under
        ``torch.compile`` transformers turns any mask into an explicit one and SDPA falls back
        to a slower kernel."""
        if self.skip_full_mask and bool(host["attention_mask"].all()):
            host = {k: v for k, v in host.items() if k != "attention_mask"}
        if self.device.type != "cuda":
            return {k: v.to(self.device) for k, v in host.items()}
        # Pinned memory makes the copy truly asynchronous; from pageable memory CUDA first
        # waits for the stream, i.e. for the previous step to finish.
        return {k: v.pin_memory().to(self.device, non_blocking=True) for k, v in host.items()}

    def _flush_losses(self) -> None:
        """Move the losses of the steps since the last flush into ``state.losses`` (one host
        sync, and one all-reduce across ranks, for all of them)."""
        if not self._pending_losses:
            return
        import torch

        started = time.perf_counter()
        if self.xla is not None:  # one copy of the steps' outputs: no graph to compile or run
            self._pending_losses = self.xla.to_host(self._pending_losses)
        losses = torch.stack(self._pending_losses).double()
        self._pending_losses = []
        self.state.losses.extend(distributed.mean_tensor(losses, self.world).tolist())
        # Waiting here for the GPU to finish the queued steps is those steps' time.
        self.state.train_seconds += time.perf_counter() - started

    def _after_step(self) -> None:
        t, s = self.training, self.state
        log_due = s.step % t.log_every == 0 or s.step == self.total_steps
        eval_due = t.eval_every and s.step % t.eval_every == 0 and s.step < self.total_steps
        checkpoint_due = t.checkpoint_every and s.step % t.checkpoint_every == 0
        if log_due or eval_due or checkpoint_due:
            self._flush_losses()  # before evaluating: queued training work is training time
        if log_due:
            self._log()
        if eval_due:
            s.evals.append({"step": s.step, **self.evaluate()})
            log.info("eval at step %d: %s", s.step, _fmt(s.evals[-1]))
        if checkpoint_due:
            self.save_checkpoint()
        if s.step == self.contract.extra.get("preempt_at"):
            log.info("--preempt-at %d: sending this process SIGTERM, as an eviction would", s.step)
            os.kill(os.getpid(), signal.SIGTERM)
        if self._stop_requested():
            self.save_checkpoint()
            raise Preempted(f"stopped at step {s.step} by SIGTERM; checkpoint flushed to "
                            f"{self.contract.checkpoint_dir}")  # fmt: skip

    def _stop_requested(self) -> bool:
        if self.world == 1:
            return self._stop
        import torch
        import torch.distributed as dist

        on = self.device if self.xla is None else "cpu"  # XLA's host group is gloo
        flag = torch.tensor([1.0 if self._stop else 0.0], device=on)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)  # every rank stops at the same step
        return bool(flag.item())

    def _log(self) -> None:
        self._flush_losses()
        s = self.state
        recent = s.losses[-self.training.log_every :]
        line = {"step": s.step, "epoch": s.epoch, "loss": sum(recent) / len(recent),
                "lr": self.scheduler.get_last_lr()[0],
                "tokens_per_s": s.tokens / s.train_seconds if s.train_seconds else 0.0}  # fmt: skip
        s.history.append(line)
        tracking.current().log_metrics({f"train/{k}": v for k, v in line.items() if k != "step"},
                                       s.step)  # fmt: skip
        if self.contract.is_main:
            log.info("step %d/%d %s", s.step, self.total_steps, _fmt(line))

    def _progress_bar(self):
        show = self.contract.is_main and (sys.stdout.isatty() or self.contract.platform == "local")
        if not show:
            return _NoBar()
        from tqdm.auto import tqdm

        return tqdm(total=self.total_steps, initial=self.state.step, desc="train", unit="step",
                    mininterval=2.0, file=sys.stderr, dynamic_ncols=True)  # fmt: skip


def weighted_loss(forward: Any, batch: dict):
    """A ``Trainer`` ``loss_fn`` for batches that carry per-example ``weights`` (bias mitigation).

    Classifier (``weights`` of shape (batch,)): the mean over the batch of weight x cross-entropy.
    Causal LM (``weights`` of shape (batch, seq), each token carrying its example's weight, so a
    packed block mixing examples is weighted token by token): the sum of weight x cross-entropy
    over target tokens divided by the number of target tokens. With every weight 1 both equal the
    model's own loss; ``text.Examples`` normalises weights to mean 1 so the loss keeps its scale.
    """
    import torch.nn.functional as F

    inputs = {k: v for k, v in batch.items() if k not in ("labels", "weights")}
    labels, weights = batch["labels"], batch["weights"]
    logits = forward(**inputs).logits.float()  # CE in fp32 even under autocast
    if labels.dim() == 1:
        per_example = F.cross_entropy(logits, labels, reduction="none")
        return (per_example * weights).mean()
    # Position t predicts token t+1 (what HF does inside the model when given labels).
    logits, labels, weights = logits[:, :-1], labels[:, 1:], weights[:, 1:]
    per_token = F.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1),
                                ignore_index=IGNORE, reduction="none")  # fmt: skip
    targets = (labels.reshape(-1) != IGNORE).float()
    return (per_token * weights.reshape(-1) * targets).sum() / targets.sum().clamp(min=1.0)


# ---- helpers ------------------------------------------------------------------------------------


def _adamw(model: Any, training: Any, fused: bool):
    import torch

    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            # Biases and norm gains are not weights to shrink (the GPT-2 / BERT convention).
            (no_decay if param.ndim < 2 else decay).append(param)
    groups = [{"params": decay, "weight_decay": training.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]  # fmt: skip
    return torch.optim.AdamW(groups, lr=training.lr, fused=fused or None)


def _install_sigterm(trainer: Trainer):
    def on_sigterm(signum, frame):
        trainer._stop = True  # acted on at the next step boundary, where state is consistent
        log.info("SIGTERM received: finishing this step, then flushing a checkpoint")

    try:
        return signal.signal(signal.SIGTERM, on_sigterm)
    except ValueError:  # not the main thread (e.g. a notebook worker): no eviction handling
        return None


def _fmt(values: dict) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in values.items())  # fmt: skip


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass
