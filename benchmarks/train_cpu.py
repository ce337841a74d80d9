"""Tokens/s of genai-cloud's training loops against plain Hugging Face / PyTorch baselines.

    python benchmarks/train_cpu.py [--steps 60] [--repeats 2] [--threads N]
                                   [--rows finetune,distill,prune]

Rows: ``finetune`` (ours vs an HF ``Trainer`` script), ``distill`` (ours: the distill recipe's loss
through the shared Trainer, teacher tiny-gpt2 -> its 1-layer alternate-layer student, vs an HF
``Trainer`` subclass overriding ``compute_loss`` the way distillation blog posts do it),
``prune`` (the masked recovery fine-tune after 50 % global magnitude pruning: ours vs a plain
PyTorch loop over the same pruned model; plus the one-shot pruning time of magnitude and Wanda).

Same machine, same process, same tiny GPT-2 (examples/tiny-gpt2), same corpus
(examples/data/corpus.jsonl), same batch (16 x 128 tokens), optimizer family (AdamW), schedule,
step count and fp32 precision. Each side is timed around its training call only (no eval, no
checkpoint, no save) over the same window: the loop, from its first step to its last, with the
optimizer and data already set up (a ``TrainerCallback`` from ``on_train_begin`` to
``on_train_end`` on the HF side). Runs alternate ours / baseline for ``--repeats`` rounds and the
median of each side is reported with its spread, so a noisy neighbour on a shared machine
penalises neither side more than the other. Both sides use AdamW without weight decay.

The Trainer side is written the way the transformers ``run_clm`` example does it: tokenize,
concatenate, cut into blocks (``group_texts``), ``default_data_collator``, ``Trainer.train()``.
Target (issue 2): ratio >= 1.0 (no wrapper tax) and packing >= 95 % non-pad tokens.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
MODEL = ROOT / "examples" / "tiny-gpt2"
CORPUS = ROOT / "examples" / "data" / "corpus.jsonl"
BATCH, SEQ, LR, WARMUP, SEED = 16, 128, 3e-3, 10, 42
DISTILL_ALPHA, DISTILL_T = 0.5, 2.0


def ours(steps: int) -> tuple[float, float]:
    """(tokens/s, packing non-pad fraction) of job_templates' Trainer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from genai_cloud.spec import DataSpec, TrainingSpec
    from job_templates.common.records import read_records
    from job_templates.common.text import tokenize
    from job_templates.common.train import Trainer, seed_everything
    from job_templates.config import Config
    from job_templates.contract import Contract

    data = Config.wrap(DataSpec(train=str(CORPUS), max_seq_len=SEQ).model_dump())
    training = Config.wrap(TrainingSpec(max_steps=steps, batch_size=BATCH, lr=LR, warmup_steps=WARMUP,
                                        seed=SEED, log_every=10**9).model_dump())  # fmt: skip
    examples = tokenize(read_records(CORPUS, data), AutoTokenizer.from_pretrained(MODEL), data)
    seed_everything(SEED)
    model = AutoModelForCausalLM.from_pretrained(MODEL)
    with tempfile.TemporaryDirectory() as tmp:
        contract = Contract(platform="benchmark", spec_path=Path(tmp), channels={},
                            model_dir=Path(tmp), checkpoint_dir=Path(tmp), output_dir=Path(tmp))  # fmt: skip
        trainer = Trainer(model, examples, None, training, contract)
        started = time.perf_counter()
        state = trainer.fit()
        elapsed = time.perf_counter() - started
    return state.tokens / elapsed, examples.non_pad_fraction


def _hf_blocks():
    """The corpus the way transformers' ``run_clm`` prepares it (tokenize, concatenate, cut)."""
    import torch
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(MODEL)
    texts = [json.loads(line)["text"] for line in CORPUS.read_text().splitlines() if line]
    ids = [t for text in texts for t in tokenizer(text)["input_ids"] + [tokenizer.eos_token_id]]
    blocks = [ids[i : i + SEQ] for i in range(0, len(ids) - SEQ + 1, SEQ)]  # group_texts

    class Blocks(torch.utils.data.Dataset):
        def __len__(self):
            return len(blocks)

        def __getitem__(self, i):
            return {"input_ids": blocks[i], "labels": blocks[i]}

    return Blocks()


def _hf_args(tmp: str, steps: int):
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=tmp, max_steps=steps, per_device_train_batch_size=BATCH, learning_rate=LR,
        lr_scheduler_type="cosine", warmup_steps=WARMUP, max_grad_norm=1.0, seed=SEED,
        logging_steps=10**9, save_strategy="no", report_to=[], use_cpu=True,
        dataloader_num_workers=0, disable_tqdm=True,
    )  # fmt: skip


def _loop_timer():
    """A TrainerCallback timing HF's training loop alone: from ``on_train_begin`` (the optimizer,
    scheduler and dataloader already made, as ours are when ``Trainer.fit`` starts) to
    ``on_train_end``, the same window ours is timed over."""
    from transformers import TrainerCallback

    class LoopTimer(TrainerCallback):
        started = ended = 0.0

        def on_train_begin(self, args, state, control, **kwargs):
            self.started = time.perf_counter()

        def on_train_end(self, args, state, control, **kwargs):
            self.ended = time.perf_counter()

        @property
        def seconds(self) -> float:
            return self.ended - self.started

    return LoopTimer()


def hf_trainer(steps: int) -> float:
    """tokens/s of a plain transformers Trainer on the same model and data."""
    from transformers import AutoModelForCausalLM, Trainer, default_data_collator

    model = AutoModelForCausalLM.from_pretrained(MODEL)
    timer = _loop_timer()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(model=model, args=_hf_args(tmp, steps), train_dataset=_hf_blocks(),
                          data_collator=default_data_collator, callbacks=[timer])  # fmt: skip
        trainer.train()
    return steps * BATCH * SEQ / timer.seconds


def _ours_trainer(model, examples, steps: int, tmp: str, loss_fn=None):
    from genai_cloud.spec import TrainingSpec
    from job_templates.common.train import Trainer
    from job_templates.config import Config
    from job_templates.contract import Contract

    training = Config.wrap(TrainingSpec(max_steps=steps, batch_size=BATCH, lr=LR, warmup_steps=WARMUP,
                                        seed=SEED, log_every=10**9).model_dump())  # fmt: skip
    contract = Contract(platform="benchmark", spec_path=Path(tmp), channels={},
                        model_dir=Path(tmp), checkpoint_dir=Path(tmp), output_dir=Path(tmp))  # fmt: skip
    return Trainer(model, examples, None, training, contract, loss_fn=loss_fn)


def _examples():
    from transformers import AutoTokenizer

    from genai_cloud.spec import DataSpec
    from job_templates.common.records import read_records
    from job_templates.common.text import tokenize
    from job_templates.config import Config

    data = Config.wrap(DataSpec(train=str(CORPUS), max_seq_len=SEQ).model_dump())
    return tokenize(read_records(CORPUS, data), AutoTokenizer.from_pretrained(MODEL), data)


def _teacher_student():
    from transformers import AutoModelForCausalLM

    from job_templates.common.distill_loss import alternate_layer_student

    teacher = AutoModelForCausalLM.from_pretrained(MODEL).eval().requires_grad_(False)
    student, _ = alternate_layer_student(teacher)
    return teacher, student


def distill_ours(steps: int) -> float:
    """tokens/s of the distill recipe's loss through job_templates' Trainer."""
    from job_templates.common.distill_loss import make_loss_fn
    from job_templates.common.train import seed_everything
    from job_templates.config import Config

    examples = _examples()
    seed_everything(SEED)
    teacher, student = _teacher_student()
    options = Config(alpha=DISTILL_ALPHA, temperature=DISTILL_T, kl_direction="forward")
    with tempfile.TemporaryDirectory() as tmp:
        loss_fn = make_loss_fn(teacher, options, teacher.config.vocab_size)
        trainer = _ours_trainer(student, examples, steps, tmp, loss_fn)
        started = time.perf_counter()
        state = trainer.fit()
        elapsed = time.perf_counter() - started
    return state.tokens / elapsed


def distill_hf(steps: int) -> float:
    """tokens/s of an HF Trainer subclass with a distillation ``compute_loss``."""
    import torch
    import torch.nn.functional as F
    from transformers import Trainer, default_data_collator

    teacher, student = _teacher_student()
    T, alpha = DISTILL_T, DISTILL_ALPHA

    class DistillTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            out = model(**inputs)
            with torch.no_grad():
                teacher_logits = teacher(input_ids=inputs["input_ids"]).logits
            kl = F.kl_div(F.log_softmax(out.logits / T, -1), F.log_softmax(teacher_logits / T, -1),
                          log_target=True, reduction="none").sum(-1).mean()  # fmt: skip
            loss = alpha * T * T * kl + (1 - alpha) * out.loss
            return (loss, out) if return_outputs else loss

    timer = _loop_timer()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = DistillTrainer(model=student, args=_hf_args(tmp, steps), train_dataset=_hf_blocks(),
                                 data_collator=default_data_collator, callbacks=[timer])  # fmt: skip
        trainer.train()
    return steps * BATCH * SEQ / timer.seconds


def _pruned_model():
    from transformers import AutoModelForCausalLM

    from job_templates.common import pruning
    from job_templates.config import Config

    model = AutoModelForCausalLM.from_pretrained(MODEL)
    spec = Config(method="magnitude", pattern="unstructured", sparsity=0.5)
    return model, pruning.prune_model(model, spec)


def prune_ours(steps: int) -> float:
    """tokens/s of the prune recipe's masked recovery fine-tune (job_templates' Trainer)."""
    from job_templates.common.train import seed_everything

    examples = _examples()
    seed_everything(SEED)
    model, _ = _pruned_model()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = _ours_trainer(model, examples, steps, tmp)
        started = time.perf_counter()
        state = trainer.fit()
        elapsed = time.perf_counter() - started
    return state.tokens / elapsed


def prune_plain(steps: int) -> float:
    """tokens/s of a plain PyTorch loop fine-tuning the same pruned (masked) model."""
    import torch

    examples = _examples()
    torch.manual_seed(SEED)
    model, _ = _pruned_model()
    model.train()
    # AdamW's own default weight decay is 0.01; ours (training.weight_decay) is 0: match it.
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.0)
    warm = lambda step: min(1.0, (step + 1) / WARMUP)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warm)
    order = torch.randperm(len(examples)).tolist()
    started = time.perf_counter()  # the optimizer exists already, as in ours
    for step in range(steps):
        rows = [order[(step * BATCH + i) % len(order)] for i in range(BATCH)]
        loss = model(**examples.batch(rows)).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    return steps * BATCH * SEQ / (time.perf_counter() - started)


def prune_seconds() -> dict:
    """One-shot pruning wall time: global magnitude, and Wanda with 8 calibration batches."""
    import torch
    from transformers import AutoModelForCausalLM

    from job_templates.common import pruning
    from job_templates.config import Config

    examples = _examples()
    times = {}
    for method in ("magnitude", "wanda"):
        model = AutoModelForCausalLM.from_pretrained(MODEL)
        started = time.perf_counter()
        norms = None
        if method == "wanda":
            batches = [examples.batch(range(i * BATCH, (i + 1) * BATCH)) for i in range(8)]
            norms = pruning.input_norms(
                model, pruning.prunable(model), batches, torch.device("cpu")
            )
        modules = pruning.prune_model(model, Config(method=method, pattern="unstructured",
                                                    sparsity=0.5), norms)  # fmt: skip
        pruning.make_permanent(modules)
        times[method] = time.perf_counter() - started
    return times


def _rounds(repeats: int, ours_fn, base_fn, steps: int) -> tuple[list[float], list[float]]:
    ours_runs, base_runs = [], []
    for _ in range(repeats):  # alternate, so a noisy neighbour hits both sides alike
        ours_runs.append(ours_fn(steps))
        base_runs.append(base_fn(steps))
    return ours_runs, base_runs


def _row(label: str, base_label: str, ours_runs: list[float], base_runs: list[float]) -> None:
    """Medians of the alternating rounds, each with its spread (slowest-fastest round), and the
    ratio of the medians with the range of the per-round ratios."""
    mid_ours, mid_base = statistics.median(ours_runs), statistics.median(base_runs)
    for name, mid, runs in ((label, mid_ours, ours_runs), (base_label, mid_base, base_runs)):
        print(f"{name:<26}: {mid:10,.0f} tokens/s   spread {min(runs):,.0f}-{max(runs):,.0f}  "
              f"runs: {[round(x) for x in runs]}")  # fmt: skip
    per_round = [o / b for o, b in zip(ours_runs, base_runs)]
    print(f"{'ratio (medians)':<26}: {mid_ours / mid_base:.2f}  per round "
          f"{min(per_round):.2f}-{max(per_round):.2f}  (target >= 1.0)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3, help="alternating rounds")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--rows", default="finetune,distill,prune",
                        help="comma-separated: finetune, distill, prune")  # fmt: skip
    args = parser.parse_args()
    rows = set(args.rows.split(","))
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.steps} steps of "
          f"{BATCH}x{SEQ} tokens, median of {args.repeats} alternating rounds")  # fmt: skip
    if "finetune" in rows:
        ours_runs, hf_runs, packing = [], [], 0.0
        for _ in range(args.repeats):
            tps, packing = ours(args.steps)
            ours_runs.append(tps)
            hf_runs.append(hf_trainer(args.steps))
        _row("finetune: genai-cloud loop", "finetune: HF Trainer", ours_runs, hf_runs)
        print(f"{'packing':<26}: {packing:.2%} non-pad tokens  (target >= 95%)")
    if "distill" in rows:
        _row("distill: genai-cloud", "distill: HF Trainer+loss",
             *_rounds(args.repeats, distill_ours, distill_hf, args.steps))  # fmt: skip
    if "prune" in rows:
        _row("prune recovery: ours", "prune recovery: plain loop",
             *_rounds(args.repeats, prune_ours, prune_plain, args.steps))  # fmt: skip
        times = prune_seconds()
        print(f"{'prune one-shot (50 %)':<26}: magnitude {times['magnitude'] * 1000:.0f} ms, "
              f"wanda (8 calibration batches) {times['wanda'] * 1000:.0f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
