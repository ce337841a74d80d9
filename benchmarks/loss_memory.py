"""Peak memory and tokens/s of the causal-LM loss path: full logits vs chunked (issue 20).

    python benchmarks/loss_memory.py [--rounds 3] [--steps 6] [--threads 1]
                                     [--vocab 32768] [--seq 512] [--batch 4]

Rows: ``finetune`` (cross-entropy) and ``distill`` (alpha * T^2 * KL + (1 - alpha) * CE against a
frozen teacher twice the student's depth), each trained through job_templates' ``Trainer`` with
``training.loss_chunk: off`` (the full logits: what the recipes did before) and with the chunk
``auto`` picks for this shape. GPT-2-shaped models built from a config (random init, no download)
with a realistic vocabulary: 32,768 rows by default, 512-token packed blocks.

Each run is a fresh subprocess, so its peak resident set is its own: the figure reported is the
peak RSS during the training steps (sampled every millisecond, and the kernel's high-water mark)
minus the RSS just before the first step (model, teacher and data already in memory). That is the
memory the step adds: activations, the loss path and AdamW's state (the last is the same on both
sides, so the ratio understates the loss path's own saving). Variants alternate within each round
so a noisy neighbour hits both alike; medians and the spread (min-max) over the rounds are shown.
Targets: peak >= 2x lower for fine-tune and >= 3x lower for distill, at >= 0.95x the tokens/s.
Tokens per CPU-second (the process's own CPU time over the same window) is printed beside the
wall-clock ratio: on a machine other work is loading, it is the steadier of the two.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _PeakSampler(threading.Thread):
    """The highest RSS seen while the steps run (torch's kernels release the GIL)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak, self.running = _rss_bytes(), True

    def run(self) -> None:
        while self.running:
            self.peak = max(self.peak, _rss_bytes())
            time.sleep(0.001)


def _model(vocab: int, seq: int, layers: int):
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=vocab, n_positions=seq, n_embd=128, n_layer=layers, n_head=4,
                        attn_pdrop=0.0, resid_pdrop=0.0, embd_pdrop=0.0)  # fmt: skip
    return GPT2LMHeadModel(config)


def child(args: argparse.Namespace) -> dict:
    """One measured run (in its own process): returns tokens/s and the step's added peak RSS."""
    import torch

    from job_templates.common import chunked_loss
    from job_templates.common.distill_loss import make_loss_fn
    from job_templates.common.text import Examples
    from job_templates.common.train import Trainer, seed_everything
    from job_templates.config import Config
    from job_templates.contract import Contract

    torch.set_num_threads(args.threads)
    seed_everything(0)
    blocks = torch.randint(0, args.vocab, (args.batch * (args.steps + 1), args.seq)).tolist()
    examples = Examples(input_ids=blocks, labels=blocks, pad_id=0, packed=True)
    training = Config(max_steps=args.steps + 1, epochs=None, lr=1e-3, schedule="constant",
                      warmup_steps=0, warmup_ratio=0.0, batch_size=args.batch, grad_accum=1,
                      weight_decay=0.0, max_grad_norm=1.0, seed=0, precision="fp32",
                      compile="off", gradient_checkpointing=False, log_every=10**9,
                      eval_every=None, checkpoint_every=None, keep_checkpoints=1,
                      eval_batches=None, loss_chunk=args.loss_chunk)  # fmt: skip
    distill = Config(alpha=0.5, temperature=2.0, kl_direction="forward")
    student = _model(args.vocab, args.seq, 2)
    teacher = None
    if args.row == "distill":
        teacher = _model(args.vocab, args.seq, 4).eval().requires_grad_(False)
    chunk = chunked_loss.configure(student, training, args.seq, distill=distill if teacher else None,
                                   teacher=teacher, vocab_size=args.vocab)  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        contract = Contract(platform="benchmark", spec_path=Path(tmp), channels={},
                            model_dir=Path(tmp), checkpoint_dir=Path(tmp), output_dir=Path(tmp))  # fmt: skip
        trainer = Trainer(student, examples, None, training, contract)
        if teacher is not None:
            trainer.loss_fn = make_loss_fn(teacher, distill, args.vocab, chunked=chunk is not None)
        before = _rss_bytes()
        sampler = _PeakSampler()
        sampler.start()
        trainer.total_steps = 1  # the first step: AdamW's state is allocated, nothing is timed
        trainer.fit()
        trainer.total_steps = args.steps + 1
        tokens, started, cpu = trainer.state.tokens, time.perf_counter(), time.process_time()
        trainer.fit()
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        sampler.running = False
        sampler.join()
    high_water = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    trained = trainer.state.tokens - tokens
    return {"tokens_per_s": trained / elapsed, "tokens_per_cpu_s": trained / cpu, "chunk": chunk,
            "peak_added_bytes": max(sampler.peak, high_water) - before}  # fmt: skip


def _measure(row: str, loss_chunk: str, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--child", "--row", row, "--loss-chunk", loss_chunk,
               "--steps", str(args.steps), "--threads", str(args.threads), "--vocab",
               str(args.vocab), "--seq", str(args.seq), "--batch", str(args.batch)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(args.threads)}
    out = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if out.returncode:
        raise SystemExit(f"{row} loss_chunk={loss_chunk} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _spread(values: list[float]) -> str:
    return f"{min(values):,.0f}-{max(values):,.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=6, help="timed steps per run (after one)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--vocab", type=int, default=32768)
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--rows", default="finetune,distill")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--row", help=argparse.SUPPRESS)
    parser.add_argument("--loss-chunk", default="auto", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    import torch

    print(f"torch {torch.__version__}, {args.threads} thread(s); GPT-2-shaped, vocab {args.vocab:,}, "
          f"{args.batch} x {args.seq} tokens a step, {args.steps} timed steps, {args.rounds} "
          "alternating rounds (median, spread min-max)")  # fmt: skip
    targets = {"finetune": 2.0, "distill": 3.0}
    for row in args.rows.split(","):
        runs = {"off": [], "auto": []}
        for _ in range(args.rounds):
            for variant, measured in runs.items():
                measured.append(_measure(row, variant, args))
        chunk = runs["auto"][0]["chunk"]
        peak = {v: statistics.median(r["peak_added_bytes"] for r in rs) for v, rs in runs.items()}
        speed = {v: statistics.median(r["tokens_per_s"] for r in rs) for v, rs in runs.items()}
        work = {v: statistics.median(r["tokens_per_cpu_s"] for r in rs) for v, rs in runs.items()}
        for variant, label in (("off", "full logits"), ("auto", f"chunked ({chunk} tokens)")):
            peaks = [r["peak_added_bytes"] / 2**20 for r in runs[variant]]
            speeds = [r["tokens_per_s"] for r in runs[variant]]
            print(f"{row:<9} {label:<22}: peak +{peak[variant] / 2**20:7,.0f} MiB "
                  f"({_spread(peaks)})  {speed[variant]:8,.0f} tokens/s ({_spread(speeds)})")
        print(f"{row:<9} {'ratio':<22}: memory {peak['off'] / peak['auto']:.2f}x lower "
              f"(target >= {targets.get(row, 2.0):.0f}x), speed {speed['auto'] / speed['off']:.2f}x "
              f"(target >= 0.95x); per CPU-second {work['auto'] / work['off']:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
