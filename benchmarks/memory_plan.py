"""The memory plan (job_templates/common/memory_plan.py) against measured peak memory, on CPU.

    python benchmarks/memory_plan.py [--rows NAME,...]

Each row trains a tiny model built from a config (random init, fp32, CPU, one process) for three
steps the way the Trainer does (forward with labels, backward, gradient clipping, AdamW,
``zero_grad(set_to_none=True)``) in a fresh interpreter, and measures the peak resident memory
above what the process held just before the model was built (``VmHWM`` is reset through
``/proc/self/clear_refs`` once the model is built, so the transients of random initialisation do
not count; its weights do), and glibc is told to serve every allocation over 64 KiB
with its own mmap (``MALLOC_MMAP_THRESHOLD_``) so freed tensors leave the resident set at once
instead of lingering in malloc's arenas. The plan's figure for the same shape, batch and precision
is printed beside it. Target (issue 17): plan / measured within 15 % (ratio 0.85 - 1.15).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# name: (model config, batch, seq, activation checkpointing)
ROWS = {
    "llama-s": ({"model_type": "llama", "hidden_size": 256, "num_hidden_layers": 4,
                 "num_attention_heads": 4, "num_key_value_heads": 4, "intermediate_size": 688,
                 "vocab_size": 8192, "max_position_embeddings": 512, "tie_word_embeddings": False},
                8, 256, False),
    "llama-gqa-deep": ({"model_type": "llama", "hidden_size": 192, "num_hidden_layers": 8,
                        "num_attention_heads": 6, "num_key_value_heads": 2,
                        "intermediate_size": 512, "vocab_size": 4096,
                        "max_position_embeddings": 512, "tie_word_embeddings": True}, 4, 512, False),
    "llama-wide-ckpt": ({"model_type": "llama", "hidden_size": 512, "num_hidden_layers": 4,
                         "num_attention_heads": 8, "num_key_value_heads": 8,
                         "intermediate_size": 1376, "vocab_size": 8192,
                         "max_position_embeddings": 512, "tie_word_embeddings": False},
                        8, 256, True),
    "gpt2-s": ({"model_type": "gpt2", "n_embd": 256, "n_layer": 4, "n_head": 4,
                "vocab_size": 8192, "n_positions": 512, "resid_pdrop": 0.0, "embd_pdrop": 0.0,
                "attn_pdrop": 0.0}, 8, 256, False),
}  # fmt: skip

_CHILD = r"""
import json, sys
import torch
from transformers import AutoConfig, AutoModelForCausalLM
torch.manual_seed(0)
config, batch, seq, ckpt = json.loads(sys.argv[1])
cfg = AutoConfig.for_model(**config)
def rss(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
def train(model, ids):
    if ckpt:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    for _ in range(3):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
# Warm-up on a minute model of the same architecture: the first call of each kernel pages in
# libtorch's code and its thread pools (~100-200 MiB of resident set that is not tensors).
small = {k: v for k, v in config.items()}
small.update({k: 1 for k in ("num_hidden_layers", "n_layer")if k in small})
train(AutoModelForCausalLM.from_config(AutoConfig.for_model(**small)), torch.randint(0, 64, (batch, seq)))
import gc; gc.collect()
ids = torch.randint(0, cfg.vocab_size, (batch, seq))
base = rss("VmRSS:")
model = AutoModelForCausalLM.from_config(cfg)
# Reset VmHWM to the current resident set (baseline + the weights): what random initialisation
# allocated and freed on the way is not training memory.
open("/proc/self/clear_refs", "w").write("5")
train(model, ids)
print(json.dumps({"peak": rss("VmHWM:") - base, "params": sum(p.numel() for p in model.parameters()),
                  "config": {**cfg.to_dict(), "_attn_implementation": model.config._attn_implementation}}))
"""


def measure(config: dict, batch: int, seq: int, checkpointing: bool) -> dict:
    """Peak bytes above the pre-model baseline of three training steps, in a fresh process."""
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": "1",
           "TRANSFORMERS_VERBOSITY": "error"}  # fmt: skip
    out = subprocess.run([sys.executable, "-c", _CHILD,
                          json.dumps([config, batch, seq, checkpointing])],
                         capture_output=True, text=True, env=env, check=True)  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def planned(config: dict, batch: int, seq: int, checkpointing: bool) -> float:
    """The plan's bytes for the full config (every default filled in) the child trained."""
    from job_templates.common import memory_plan as mp

    shape = mp.shape_from_config(config)
    work = mp.Workload(batch_size=batch, seq_len=seq, precision="fp32", checkpointing=checkpointing,
                       device="cpu")  # fmt: skip
    return mp.per_device(shape, work, "single").total


def row(name: str) -> dict:
    config, batch, seq, ckpt = ROWS[name]
    measured = measure(config, batch, seq, ckpt)
    plan = planned(measured["config"], batch, seq, ckpt)
    return {"row": name, "params": measured["params"], "batch": batch, "seq": seq,
            "checkpointing": ckpt, "measured_mib": measured["peak"] / 2**20,
            "plan_mib": plan / 2**20, "ratio": plan / measured["peak"]}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default=",".join(ROWS), help=f"of: {', '.join(ROWS)}")
    args = parser.parse_args()
    results = [row(name) for name in args.rows.split(",")]
    print(f"{'row':<16}{'params':>10}{'b x s':>10}{'ckpt':>6}{'measured':>12}{'plan':>12}"
          f"{'plan/measured':>15}")  # fmt: skip
    for r in results:
        print(f"{r['row']:<16}{r['params']:>10,}{r['batch']:>4} x {r['seq']:<4}"
              f"{'yes' if r['checkpointing'] else 'no':>6}{r['measured_mib']:>9.0f} MiB"
              f"{r['plan_mib']:>8.0f} MiB{r['ratio']:>15.3f}")  # fmt: skip
    worst = max(abs(r["ratio"] - 1) for r in results)
    print(f"largest deviation {worst:.1%} (target: within 15 %)")
    return 0 if worst <= 0.15 else 1


if __name__ == "__main__":
    sys.exit(main())
