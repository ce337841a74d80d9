"""Scenarios the XLA tests run under the torch_xla venv's Python; each prints one JSON line.

    python tests/xla/xla_job.py curve  --device xla|cpu --steps 8 [--precision fp32] [--batch-size 8]
    python tests/xla/xla_job.py padded --steps 8           (unpacked data: bucketed widths)
    CPU_NUM_DEVICES=4 python tests/xla/xla_job.py curve --strategy fsdp --batch-size 2
                                      (xla-spmd over 4 virtual CPU devices; reports shardings)

Started torchrun-style (``RANK`` / ``WORLD_SIZE`` / ``MASTER_ADDR`` / ``MASTER_PORT`` set), each
process trains on its shard with ``--batch-size`` rows (the global batch is world x that).

Tiny GPT-2 (examples/tiny-gpt2) with dropout off, so eager CPU and XLA compute the same function,
on the quickstart corpus; sections get their defaults from genai_cloud.spec, as spec.json has them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
MODEL = ROOT / "examples" / "tiny-gpt2"
CORPUS = ROOT / "examples" / "data" / "corpus.jsonl"

TRAINING = {"lr": 3e-3, "warmup_steps": 4, "batch_size": 8, "weight_decay": 0.01, "seed": 42,
            "precision": "fp32", "log_every": 5, "eval_batches": 4}  # fmt: skip
DATA = {"train": str(CORPUS), "format": "jsonl", "text_field": "text", "max_seq_len": 64}


def section(cls_name: str, values: dict):
    from genai_cloud import spec
    from job_templates.config import Config

    return Config.wrap(getattr(spec, cls_name)(**values).model_dump())


def build(args):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from job_templates.common.records import read_records
    from job_templates.common.text import tokenize
    from job_templates.common.train import seed_everything

    data = section("DataSpec", DATA | {"packing": args.scenario != "padded"})
    tokenizer = AutoTokenizer.from_pretrained(MODEL)
    records = read_records(CORPUS, data)[: args.records]
    train = tokenize(records[: -args.eval_records], tokenizer, data)
    evals = tokenize(records[-args.eval_records :], tokenizer, data)
    config = AutoConfig.from_pretrained(MODEL)
    config.attn_pdrop = config.embd_pdrop = config.resid_pdrop = 0.0  # same function everywhere
    seed_everything(42)
    model = AutoModelForCausalLM.from_pretrained(MODEL, config=config)
    return model, train, evals


def curve(args) -> dict:
    from job_templates.common.train import Trainer
    from job_templates.contract import Contract

    model, train, evals = build(args)
    training = section("TrainingSpec", TRAINING | {"max_steps": args.steps,
                                                   "precision": args.precision,
                                                   "batch_size": args.batch_size,
                                                   "grad_accum": args.grad_accum,
                                                   "strategy": args.strategy})
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    accelerator = "tpu-v5e" if args.device == "xla" else "cpu"
    compiles, executions = [], []
    with tempfile.TemporaryDirectory() as tmp:
        contract = Contract(platform="local", spec_path=Path(tmp), channels={}, model_dir=Path(tmp),
                            checkpoint_dir=Path(tmp), output_dir=Path(tmp), rank=rank,
                            local_rank=rank, world_size=world)  # fmt: skip
        trainer = Trainer(model, train, evals, training, contract, accelerator=accelerator)
        after_step = trainer._after_step

        def count_then_continue():  # compilations / executions so far, after each step's cut
            compiles.append(_compiles())
            executions.append(_executions())
            after_step()

        trainer._after_step = count_then_continue
        trainer.fit()  # ends by reading the losses: every step's graph has run
        executions_after_fit = _executions()
        after = trainer.evaluate()
        compiles_after_eval = _compiles()
        extra = _sharded(trainer, Path(tmp)) if trainer.strategy.name == "xla-spmd" else {}
    return {"rank": rank, "world": world, "device": str(trainer.device), "precision": trainer.precision.name,
            "losses": trainer.state.losses, "eval": after, "compiles": compiles, "executions": executions,
            "executions_after_fit": executions_after_fit,
            "compiles_after_eval": compiles_after_eval, "tokens": trainer.state.tokens,
            "strategy": trainer.strategy.name, **extra}  # fmt: skip


def _sharded(trainer, tmp: Path) -> dict:
    """Under xla-spmd: every parameter's and AdamW moment's sharding, and a save_pretrained /
    from_pretrained round trip of the trained (sharded) weights."""
    import torch
    import torch_xla
    from transformers import AutoModelForCausalLM

    from job_templates.common.outputs import save_model
    from job_templates.common.xla_spmd import sharding_specs

    spec = torch_xla._XLAC._get_xla_sharding_spec
    moments = {name: spec(trainer.optimizer.state[p]["exp_avg"])
               for name, p in trainer.model.named_parameters() if p in trainer.optimizer.state}
    shardings = sharding_specs(trainer.model)
    before = {k: v.detach().cpu().clone() for k, v in trainer.model.state_dict().items()}
    save_model(trainer.model, None, tmp / "saved")  # moves the model to the CPU
    loaded = AutoModelForCausalLM.from_pretrained(tmp / "saved").state_dict()
    same = sorted(before) == sorted(loaded) and all(torch.equal(before[k], loaded[k]) for k in before)
    return {"shardings": shardings, "moments": moments,
            "devices": trainer.strategy.devices, "round_trip_equal": same,
            "round_trip_keys": len(before)}


def _executions() -> int:
    # Under SPMD one execution runs on every device: torch_xla counts it as replicated.
    return _compiles("ExecuteTime") + _compiles("ExecuteReplicatedTime")


def _compiles(metric: str = "CompileTime") -> int:
    try:
        import torch_xla.debug.metrics as met
    except ImportError:
        return 0
    found = met.metric_data(metric)
    return int(found[0]) if found else 0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=["curve", "padded"])
    parser.add_argument("--device", default="xla")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--grad-accum", type=int, default=1)
    parser.add_argument("--strategy", default="auto")
    parser.add_argument("--records", type=int, default=200)
    parser.add_argument("--eval-records", type=int, default=20)
    args = parser.parse_args()
    print("RESULT " + json.dumps(curve(args)), flush=True)


if __name__ == "__main__":
    main()
