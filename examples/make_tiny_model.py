"""Build ``examples/tiny-gpt2/``: a GPT-2-shaped model small enough to fine-tune on a laptop CPU.

    python examples/make_tiny_model.py [OUT_DIR]

A byte-level BPE tokenizer (vocabulary 2,048) is trained with the ``tokenizers`` library on
``examples/data/corpus.jsonl``; the model is a 2-layer GPT-2 with random weights (seed fixed).
No download: everything is built here, so the quickstart runs offline. Regenerate the corpus first
(``python examples/make_corpus.py``) if you change it. Tests build their own copy the same way
(``build(out_dir)``), so they never depend on the committed fixture being current.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "data" / "corpus.jsonl"
EOS = "<|endoftext|>"
VOCAB_SIZE = 2048
# Small enough to keep the committed fixture about 1 MB and a quickstart step ~50 ms on one core;
# 256 positions leave room for the quickstart's 128-token blocks.
SHAPE = {"n_positions": 256, "n_embd": 64, "n_layer": 2, "n_head": 2}
SEED = 0


def train_tokenizer(texts: list[str]):
    """A GPT-2-style byte-level BPE tokenizer trained on ``texts``, as a transformers tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE, special_tokens=[EOS], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )  # fmt: skip
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=EOS, eos_token=EOS, unk_token=EOS, pad_token=EOS,
        model_max_length=SHAPE["n_positions"],
    )  # fmt: skip


def build(out_dir: str | Path, corpus: str | Path = CORPUS, seed: int = SEED) -> Path:
    """Write tokenizer + config + random-init ``model.safetensors`` into ``out_dir``."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    texts = [json.loads(line)["text"] for line in Path(corpus).read_text().splitlines() if line]
    tokenizer = train_tokenizer(texts)
    config = GPT2Config(
        vocab_size=len(tokenizer), bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.eos_token_id, **SHAPE,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(config)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)  # safetensors by default
    tokenizer.save_pretrained(out)
    _portable_tokenizer_config(out / "tokenizer_config.json")
    return out


def _portable_tokenizer_config(path: Path) -> None:
    """transformers 5 names this tokenizer ``TokenizersBackend``, a class 4.x lacks; both load the
    same tokenizer.json as ``PreTrainedTokenizerFast`` (the job runs on 4.57 and 5.x stacks)."""
    config = json.loads(path.read_text())
    if config.get("tokenizer_class") == "TokenizersBackend":
        config["tokenizer_class"] = "PreTrainedTokenizerFast"
        config.pop("backend", None)
        path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    target = build(sys.argv[1] if len(sys.argv) > 1 else HERE / "tiny-gpt2")
    size = sum(p.stat().st_size for p in target.iterdir()) / 1e6
    print(f"wrote {target} ({size:.2f} MB): {', '.join(sorted(p.name for p in target.iterdir()))}")
