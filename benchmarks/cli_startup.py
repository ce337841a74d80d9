"""Wall time and peak memory of `genai-cloud render` against `python -c "import boto3"`.

    python benchmarks/cli_startup.py [--runs 15]

Both run as fresh processes on the same machine, interleaved; each figure is the median over the
runs, peak memory is the child's max RSS from wait4. Targets (issue 2): render <= 0.25 s and
<= 60 MiB, and no torch / transformers / aiplatform / azure module loaded.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SPEC = """\
name: bench
model: {name_or_path: gpt2}
data: {train: s3://bucket/data/train.jsonl}
output: {uri: s3://bucket/out}
compute: {accelerator: A10G}
aws: {role_arn: "arn:aws:iam::123456789012:role/SageMakerExecution", region: us-east-1}
"""
HEAVY = ("torch", "transformers", "google.cloud.aiplatform", "azure")
RENDER_PROBE = """
import sys
from genai_cloud.cli import main
sys.argv = ["genai-cloud", "render", {spec!r}, "-p", {provider!r}]
try:
    main(sys.argv[1:])
except SystemExit as exc:
    assert not exc.code, exc.code
heavy = sorted({{m.split('.')[0] for m in sys.modules if m.startswith({heavy!r})}})
sys.stderr.write("HEAVY=" + ",".join(heavy) + "\\n")
"""


def measure(command: list[str]) -> tuple[float, float, str]:
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    err = proc.stderr.read().decode() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{command} failed:\n{err}")
    return elapsed, usage.ru_maxrss / 1024, err  # ru_maxrss is KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--provider", default=None, help="default: sagemaker if present")
    args = parser.parse_args()
    provider = args.provider or (
        "sagemaker" if Path(__file__).parent.parent.joinpath(
            "genai_cloud/providers/sagemaker.py").exists() else "local"
    )
    spec = Path(tempfile.mkdtemp()) / "bench.yaml"
    spec.write_text(SPEC)
    render = [sys.executable, "-c", RENDER_PROBE.format(spec=str(spec), provider=provider,
                                                        heavy=HEAVY)]  # fmt: skip
    baseline = [sys.executable, "-c", "import boto3"]
    rows: dict[str, list[tuple[float, float]]] = {"render": [], "boto3": []}
    heavy = ""
    measure(render), measure(baseline)  # warm the page cache
    for _ in range(args.runs):
        t, mem, err = measure(render)
        rows["render"].append((t, mem))
        heavy = next((ln for ln in err.splitlines() if ln.startswith("HEAVY=")), heavy)
        t, mem, _ = measure(baseline)
        rows["boto3"].append((t, mem))
    med = {k: (statistics.median(t for t, _ in v), statistics.median(m for _, m in v))
           for k, v in rows.items()}  # fmt: skip
    (rt, rm), (bt, bm) = med["render"], med["boto3"]
    print(f"genai-cloud render -p {provider}: {rt:.3f} s, {rm:.1f} MiB (median of {args.runs})")
    print(f"python -c 'import boto3':      {bt:.3f} s, {bm:.1f} MiB")
    print(f"ratio render/boto3: time {rt / bt:.2f}x, memory {rm / bm:.2f}x")
    print(f"heavy modules loaded by render: {heavy.removeprefix('HEAVY=') or 'none'}")
    ok = rt <= 0.25 and rm <= 60 and heavy in ("HEAVY=", "")
    print(f"target (<= 0.25 s, <= 60 MiB, no heavy modules): {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
