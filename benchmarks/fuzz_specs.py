"""10,000 fuzzed spec documents through load -> plan -> render on every provider.

    python benchmarks/fuzz_specs.py [--documents 10000] [--seed 0] [--show 3]

The documents are the test suite's generators (tests/fuzz_specs.py: valid specs and mutations
with wrong types, unknown keys, out-of-range numbers, huge strings, unicode; plus
tests/test_fuzz_render.py's provider-renderable specs broken in their provider sections).
Counts per provider: valid (rendered), rejected with SpecError, rejected by the provider
(plan / catalog / render), errors that name no field path, and tracebacks (any exception that is
not a GenaiCloudError). Target (issue 7): tracebacks = 0 and unnamed = 0.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--show", type=int, default=3, help="examples of each problem to print")
    args = parser.parse_args()

    from fuzz_specs import documents
    from hypothesis import HealthCheck, given, seed, settings
    from test_fuzz_render import PROVIDERS, check_render, provider_documents

    counts = {p: Counter() for p in PROVIDERS}
    problems: dict[str, list[str]] = {}
    seen = [0]

    @seed(args.seed)
    @settings(max_examples=args.documents, deadline=None, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck), phases=["generate"])  # fmt: skip
    @given(doc=documents | provider_documents())
    def run(doc):
        seen[0] += 1
        for provider in PROVIDERS:
            try:
                outcome = check_render(doc, provider)
            except AssertionError as exc:  # an error message without a field path
                outcome = "unnamed"
                problems.setdefault(f"unnamed:{str(exc)[:90]}", []).append(repr(doc)[:300])
            except Exception:  # noqa: BLE001 - counting them is the point
                outcome = "traceback"
                last = traceback.format_exc().strip().splitlines()[-1]
                problems.setdefault(f"traceback:{last[:120]}", []).append(repr(doc)[:300])
            counts[provider][outcome] += 1

    started = time.perf_counter()
    run()
    elapsed = time.perf_counter() - started
    print(f"{seen[0]} documents x {len(PROVIDERS)} providers in {elapsed:.1f} s")
    print(f"{'provider':<10} {'valid':>7} {'SpecError':>10} {'provider':>9} {'unnamed':>8} "
          f"{'traceback':>10}")  # fmt: skip
    for provider, c in counts.items():
        print(f"{provider:<10} {c['valid']:>7} {c['spec']:>10} {c['provider']:>9} "
              f"{c['unnamed']:>8} {c['traceback']:>10}")  # fmt: skip
    for problem, examples in sorted(problems.items(), key=lambda kv: -len(kv[1])):
        print(f"\n[{len(examples)}x] {problem}")
        for example in examples[: args.show]:
            print(f"    {example}")
    bad = sum(c["traceback"] + c["unnamed"] for c in counts.values())
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
