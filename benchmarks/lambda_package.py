"""Lambda package size and cold import time of the handler, against `python -c "import boto3"`.

    python benchmarks/lambda_package.py [--runs 7] [--python313 PATH]

Targets (issue 8): zip <= 5 MB without boto3, cold import of the handler module <= 0.2 s.

Each import runs in a fresh interpreter started with -I -S -B: no site-packages (only the
unzipped package and the standard library are importable, as in /var/task) and no bytecode
writes (/var/task is read-only), so the zip's own .pyc files are what a cold start gets.

Rows:
- the deployable zip (runtime python3.13, Linux wheels) imported by a Python 3.13 interpreter,
  when one is found (pyenv or PATH);
- the same package built for python3.11 from this interpreter's site-packages, imported by this
  interpreter: the like-for-like row against the boto3 baseline, which uses this interpreter.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from genai_cloud.serverless.package import build_lambda_zip, zip_listing

HANDLER = "genai_cloud.serverless.aws_lambda"
HEAVY = ("torch", "transformers", "boto3", "botocore", "google.cloud.aiplatform", "azure.ai.ml")
_PROBE = """
import sys, time, json
sys.path.insert(0, {root!r})
t = time.perf_counter()
import {module}
{extra}
elapsed = time.perf_counter() - t
heavy = [m for m in {heavy!r} if m in sys.modules]
print(json.dumps({{"s": elapsed, "heavy": heavy}}))
"""


def find_python(version: str) -> str | None:
    for candidate in [shutil.which(f"python{version}"),
                      *sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}*/bin/python{version}")))]:  # fmt: skip
        if not candidate:
            continue
        probe = subprocess.run([candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                               check=False, capture_output=True, text=True)  # fmt: skip
        if probe.stdout.strip() == version:
            return candidate
    return None


def import_time(python: str, root: str, module: str, flags: list[str], extra: str = "") -> dict:
    code = _PROBE.format(root=root, module=module, heavy=HEAVY, extra=extra)
    start = time.perf_counter()
    done = subprocess.run([python, *flags, "-c", code], check=False, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"import of {module} failed with {python}:\n{done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["wall"] = wall
    return result


def measure(python: str, root: str, module: str, flags: list[str], runs: int,
            extra: str = "") -> dict:  # fmt: skip
    samples = [import_time(python, root, module, flags, extra) for _ in range(runs)]
    return {
        "import_s": statistics.median(s["s"] for s in samples),
        "process_s": statistics.median(s["wall"] for s in samples),
        "heavy": sorted({m for s in samples for m in s["heavy"]}),
    }


def row(label: str, result: dict) -> str:
    heavy = ",".join(result["heavy"]) or "-"
    return f"{label:<52} {result['import_s']:>9.3f} {result['process_s']:>10.3f}  {heavy}"


def main() -> int:
    parser = argparse.ArgumentParser(description="Lambda package size and cold import time")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--python313", default=None, help="a Python 3.13 interpreter")
    args = parser.parse_args()
    python313 = args.python313 or find_python("3.13")
    with tempfile.TemporaryDirectory() as tmp:
        zips = {"python3.11": build_lambda_zip(Path(tmp) / "py311.zip", runtime="python3.11")}
        zips["python3.13"] = build_lambda_zip(Path(tmp) / "py313.zip", runtime="python3.13",
                                              python=python313)  # fmt: skip
        print(f"{'package':<28} {'zip MB':>8} {'unzipped MB':>12} {'files':>6}  boto3 inside")
        for runtime, path in zips.items():
            names = zip_listing(path)
            with zipfile.ZipFile(path) as archive:
                unzipped = sum(i.file_size for i in archive.infolist())
                archive.extractall(Path(tmp) / runtime)
            has_boto = any(n.startswith(("boto3/", "botocore/")) for n in names)
            print(f"{runtime + ' zip':<28} {path.stat().st_size / 1e6:>8.2f} "
                  f"{unzipped / 1e6:>12.2f} {len(names):>6}  {has_boto}")  # fmt: skip
        print(f"\nmedians of {args.runs} fresh processes")
        print(f"{'import':<52} {'import s':>9} {'process s':>10}  heavy modules loaded")
        isolated = ["-I", "-S", "-B"]
        results = {}
        results["boto3"] = measure(sys.executable, "", "boto3", [], args.runs)
        print(row(f"python{sys.version_info[0]}.{sys.version_info[1]} -c 'import boto3' (baseline)",
                  results["boto3"]))  # fmt: skip
        results["h311"] = measure(sys.executable, str(Path(tmp) / "python3.11"), HANDLER,
                                  isolated, args.runs)  # fmt: skip
        print(row("handler, python3.11 package, this Python", results["h311"]))
        # The first launch also imports the spec machinery (pydantic models, providers): the
        # real cold path of an invocation that validates a spec.
        warm = "genai_cloud.serverless.core.warm_up()"
        results["w311"] = measure(sys.executable, str(Path(tmp) / "python3.11"), HANDLER,
                                  isolated, args.runs, extra=warm)  # fmt: skip
        print(row("  + spec machinery (first launch), python3.11", results["w311"]))
        if python313:
            results["h313"] = measure(python313, str(Path(tmp) / "python3.13"), HANDLER,
                                      isolated, args.runs)  # fmt: skip
            print(row("handler, python3.13 zip (deployable), Python 3.13", results["h313"]))
            results["w313"] = measure(python313, str(Path(tmp) / "python3.13"), HANDLER,
                                      isolated, args.runs, extra=warm)  # fmt: skip
            print(row("  + spec machinery (first launch), Python 3.13", results["w313"]))
        else:
            print("no Python 3.13 found: the deployable zip's import was not timed")
        base = results["boto3"]["import_s"]
        print(f"\nsame interpreter, vs import boto3: handler {results['h311']['import_s'] / base:.2f}x, "
              f"handler + spec machinery {results['w311']['import_s'] / base:.2f}x")  # fmt: skip
        best = results.get("h313", results["h311"])["import_s"]
        size = zips["python3.13"].stat().st_size / 1e6
        print(
            f"target zip <= 5 MB: {size:.2f} MB {'ok' if size <= 5 else 'MISSED'}; "
            f"target import <= 0.2 s: {best:.3f} s {'ok' if best <= 0.2 else 'MISSED'}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
