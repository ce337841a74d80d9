"""Peak memory of tokenizing one huge single-line record: one tokenizer call vs pieces.

    python benchmarks/record_memory.py [--mb 5]

Writes a jsonl file whose only record is ``--mb`` MB of the example corpus's text, then, each in
a fresh process (peak RSS is per process), reads and tokenizes it with the tiny GPT-2 tokenizer
(examples/tiny-gpt2):

- baseline: the whole text in one tokenizer call (what ``job_templates/common/text._encode`` did
  before issue 14);
- pieces: ``read_records`` + ``_encode`` as they are now (texts over 64K characters tokenized
  in pieces; ``data.max_record_bytes`` raised to let the record in).

Prints each peak RSS above an idle process that imported the same modules, their ratio, and
whether both produced the same tokens. The default 8 MiB ``data.max_record_bytes`` refuses such a
record outright (file:line) unless raised.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOKENIZER = ROOT / "examples" / "tiny-gpt2"
CORPUS = ROOT / "examples" / "data" / "corpus.jsonl"


def child(mode: str, path: str) -> None:
    sys.path.insert(0, str(ROOT))
    import hashlib

    from transformers import AutoTokenizer

    from job_templates.common import text
    from job_templates.common.records import read_records
    from job_templates.config import Config

    tokenizer = AutoTokenizer.from_pretrained(TOKENIZER)
    data = Config.wrap({"format": "jsonl", "text_field": "text", "prompt_field": "prompt",
                        "response_field": "response", "messages_field": "messages",
                        "label_field": "label", "max_record_bytes": 1 << 31})
    idle = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    ids: list[int] = []
    if mode == "baseline":
        record = json.loads(Path(path).read_text())
        ids = tokenizer(record["text"], add_special_tokens=True)["input_ids"]
    elif mode == "pieces":
        (record,) = read_records(path, data)
        ids = text._encode(tokenizer, record["text"])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    digest = hashlib.sha256(json.dumps(ids).encode()).hexdigest()[:16]
    print(json.dumps({"idle_kb": idle, "peak_kb": peak, "tokens": len(ids), "digest": digest}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=5.0, help="size of the one record, MB")
    args = parser.parse_args()

    texts = [json.loads(line)["text"] for line in CORPUS.read_text().splitlines() if line.strip()]
    corpus = " ".join(texts)
    size = int(args.mb * 1_000_000)
    body = (corpus + " ") * (size // (len(corpus) + 1) + 1)
    folder = Path(tempfile.mkdtemp(prefix="record-memory-"))
    path = folder / "one-record.jsonl"
    path.write_text(json.dumps({"text": body[:size]}) + "\n")

    results = {}
    for mode in ("baseline", "pieces"):
        out = subprocess.run([sys.executable, __file__, "--child", mode, str(path)],
                             capture_output=True, text=True, check=True)  # fmt: skip
        results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"one {args.mb:g} MB record ({path.stat().st_size:,} bytes), tiny GPT-2 tokenizer")
    for mode, r in results.items():
        grown = (r["peak_kb"] - r["idle_kb"]) / 1024
        print(f"{mode:<9} peak RSS {r['peak_kb'] / 1024:8.0f} MiB  (+{grown:7.0f} MiB over "
              f"idle)  tokens {r['tokens']:,}  digest {r['digest']}")  # fmt: skip
    base, new = (results[m]["peak_kb"] - results[m]["idle_kb"] for m in ("baseline", "pieces"))
    same = results["baseline"]["digest"] == results["pieces"]["digest"]
    print(f"growth ratio baseline/pieces: {base / max(new, 1):.1f}x; same tokens: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3])
    else:
        sys.exit(main())
