"""Tokens/s of genai-cloud's fine-tune loop against a plain Hugging Face ``Trainer`` script.

    python benchmarks/train_cpu.py [--steps 60] [--repeats 2] [--threads N]

Same machine, same process, same tiny GPT-2 (examples/tiny-gpt2), same corpus
(examples/data/corpus.jsonl), same batch (16 x 128 tokens), optimizer family (AdamW), schedule,
step count and fp32 precision. Each side is timed around its training call only (no eval, no
checkpoint, no save); runs alternate ours / Trainer and the best of ``--repeats`` is kept, so a
noisy neighbour on a shared machine penalises neither side more than the other.

The Trainer side is written the way the transformers ``run_clm`` example does it: tokenize,
concatenate, cut into blocks (``group_texts``), ``default_data_collator``, ``Trainer.train()``.
Target (issue 2): ratio >= 1.0 (no wrapper tax) and packing >= 95 % non-pad tokens.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
MODEL = ROOT / "examples" / "tiny-gpt2"
CORPUS = ROOT / "examples" / "data" / "corpus.jsonl"
BATCH, SEQ, LR, WARMUP, SEED = 16, 128, 3e-3, 10, 42


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


def hf_trainer(steps: int) -> float:
    """tokens/s of a plain transformers Trainer on the same model and data."""
    import torch
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        Trainer,
        TrainingArguments,
        default_data_collator,
    )

    tokenizer = AutoTokenizer.from_pretrained(MODEL)
    texts = [json.loads(line)["text"] for line in CORPUS.read_text().splitlines() if line]
    ids = [t for text in texts for t in tokenizer(text)["input_ids"] + [tokenizer.eos_token_id]]
    blocks = [ids[i : i + SEQ] for i in range(0, len(ids) - SEQ + 1, SEQ)]  # group_texts

    class Blocks(torch.utils.data.Dataset):
        def __len__(self):
            return len(blocks)

        def __getitem__(self, i):
            return {"input_ids": blocks[i], "labels": blocks[i]}

    model = AutoModelForCausalLM.from_pretrained(MODEL)
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp, max_steps=steps, per_device_train_batch_size=BATCH, learning_rate=LR,
            lr_scheduler_type="cosine", warmup_steps=WARMUP, max_grad_norm=1.0, seed=SEED,
            logging_steps=10**9, save_strategy="no", report_to=[], use_cpu=True,
            dataloader_num_workers=0, disable_tqdm=True,
        )  # fmt: skip
        trainer = Trainer(model=model, args=args, train_dataset=Blocks(),
                          data_collator=default_data_collator)  # fmt: skip
        started = time.perf_counter()
        trainer.train()
        elapsed = time.perf_counter() - started
    return steps * BATCH * SEQ / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = parser.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    ours_runs, hf_runs, packing = [], [], 0.0
    for _ in range(args.repeats):
        tps, packing = ours(args.steps)
        ours_runs.append(tps)
        hf_runs.append(hf_trainer(args.steps))
    best_ours, best_hf = max(ours_runs), max(hf_runs)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.steps} steps of "
          f"{BATCH}x{SEQ} tokens, best of {args.repeats}")  # fmt: skip
    print(f"genai-cloud loop : {best_ours:10,.0f} tokens/s   runs: {[round(x) for x in ours_runs]}")
    print(f"HF Trainer       : {best_hf:10,.0f} tokens/s   runs: {[round(x) for x in hf_runs]}")
    print(f"ratio            : {best_ours / best_hf:.2f}  (target >= 1.0)")
    print(f"packing          : {packing:.2%} non-pad tokens  (target >= 95%)")


if __name__ == "__main__":
    main()
