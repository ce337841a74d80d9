"""Steps/s, tokens/s and compilations of the shared Trainer on torch_xla, before and after.

    PJRT_DEVICE=CPU /work/venvs/xla/bin/python benchmarks/train_xla.py \
        [--baseline /work/main] [--warmup 3] [--steps 30] [--baseline-warmup 10] [--baseline-steps 10]

Runs under a Python with torch_xla (``tests/xla/build_venv.sh`` builds one). XLA's CPU device
(``PJRT_DEVICE=CPU``) takes the same lazy-tensor path as a TPU: trace, compile, execute. Each side
is measured in a child process of its own (one XLA runtime each), on the same machine in the same
run: the checkout under ``--baseline`` (the code before issue 16) and this checkout.

Same spec for both: the quickstart (examples/quickstart.yaml: tiny GPT-2, packed 128-token blocks,
batch 16, cosine schedule, AdamW, log every 10 steps) with ``compute.accelerator: tpu-v5e``, so
precision ``auto`` resolves to bf16 autocast as on a TPU; no eval, no checkpoint. A side trains
``warmup`` steps, then ``steps`` more; the second phase is timed (it ends with the loss flush, so
the device work is inside) and the XLA compilations are counted in each phase
(``torch_xla.debug.metrics``' ``CompileTime``).

The baseline traces every step into one graph until the loss is read at log time (every 10 steps),
so its warm-up and timed phases are a log window each (10 steps). Target (issue 16): tokens/s after
warm-up >= 20x the baseline's, and 0 compilations after step 3.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "examples" / "quickstart.yaml"


def measure(warmup: int, steps: int) -> dict:
    """Train the quickstart on the XLA device (child process); returns the figures."""
    import torch_xla.debug.metrics as met
    import yaml
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from job_templates.common.records import read_records
    from job_templates.common.text import tokenize
    from job_templates.common.train import Trainer, seed_everything
    from job_templates.config import Config
    from job_templates.contract import Contract

    raw = yaml.safe_load(SPEC.read_text())
    from genai_cloud.spec import DataSpec, TrainingSpec  # defaults filled in, as spec.json has

    data = raw["data"] | {"train": str(SPEC.parent / raw["data"]["train"])}
    data = Config.wrap(DataSpec(**data).model_dump())
    training = raw["training"] | {"max_steps": warmup + steps, "eval_every": None,
                                  "checkpoint_every": None}  # fmt: skip
    training = Config.wrap(TrainingSpec(**training).model_dump())
    model_dir = SPEC.parent / raw["model"]["name_or_path"]
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    examples = tokenize(read_records(Path(data.train), data), tokenizer, data)
    seed_everything(training.seed)
    model = AutoModelForCausalLM.from_pretrained(model_dir)

    def compiles() -> int:
        found = met.metric_data("CompileTime")
        return int(found[0]) if found else 0

    with tempfile.TemporaryDirectory() as tmp:
        contract = Contract(platform="benchmark", spec_path=Path(tmp), channels={},
                            model_dir=Path(tmp), checkpoint_dir=Path(tmp), output_dir=Path(tmp))  # fmt: skip
        trainer = Trainer(model, examples, None, training, contract, accelerator="tpu-v5e")
        started = time.perf_counter()
        trainer.total_steps = warmup
        trainer.fit()
        warm_s, warm_compiles = time.perf_counter() - started, compiles()
        tokens0 = trainer.state.tokens
        started = time.perf_counter()
        trainer.total_steps = warmup + steps
        state = trainer.fit()
        timed_s = time.perf_counter() - started
    return {
        "device": str(trainer.device), "precision": trainer.precision.name,
        "warmup_steps": warmup, "warmup_s": warm_s, "warmup_compiles": warm_compiles,
        "steps": steps, "timed_s": timed_s, "steps_per_s": steps / timed_s,
        "tokens_per_s": (state.tokens - tokens0) / timed_s,
        "compiles_after_warmup": compiles() - warm_compiles,
        "final_loss": state.losses[-1],
    }  # fmt: skip


def run_side(checkout: Path, warmup: int, steps: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(checkout), PJRT_DEVICE=os.environ.get("PJRT_DEVICE", "CPU"))
    # The child imports job_templates from ``checkout`` but this script's measure() from here.
    code = (f"import sys, json; sys.path.insert(0, {str(checkout)!r}); "
            f"sys.path.insert(1, {str(ROOT / 'benchmarks')!r}); import train_xla; "
            f"print('RESULT ' + json.dumps(train_xla.measure({warmup}, {steps})))")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=False)  # a failed side is reported below, with its stderr
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    sys.exit(f"{checkout}: no result (exit {done.returncode})\n{done.stderr[-3000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, default=None,
                        help="checkout measured as 'before' (e.g. /work/main); omit to skip")  # fmt: skip
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--baseline-warmup", type=int, default=10)
    parser.add_argument("--baseline-steps", type=int, default=10)
    args = parser.parse_args()

    after = run_side(ROOT, args.warmup, args.steps)
    print("after :", json.dumps(after))
    if args.baseline is None:
        return
    before = run_side(args.baseline, args.baseline_warmup, args.baseline_steps)
    print("before:", json.dumps(before))
    ratio = after["tokens_per_s"] / before["tokens_per_s"]
    print(f"tokens/s after warm-up: {after['tokens_per_s']:.0f} vs {before['tokens_per_s']:.0f} "
          f"-> {ratio:.1f}x (target >= 20x); compilations after warm-up: "
          f"{after['compiles_after_warmup']} (target 0) vs {before['compiles_after_warmup']}")  # fmt: skip


if __name__ == "__main__":
    main()
