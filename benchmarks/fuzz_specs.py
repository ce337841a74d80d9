"""10,000+ fuzzed spec documents through load -> plan -> render on every provider.

    python benchmarks/fuzz_specs.py [--documents 10000] [--seed 0] [--show 3]

The documents are the test suite's generators (tests/fuzz_specs.py): valid specs and mutations
with wrong types, unknown keys, out-of-range numbers, huge strings, unicode;
tests/test_fuzz_render.py's provider-renderable specs broken in their provider sections; and
(issue 14) hostile YAML text written to a spec file: alias bombs ("billion laughs"), nesting up to
20,000 deep, recursive aliases, integers of up to 20,000 digits, non-finite numbers, NUL bytes and
over-long paths, oversized documents, mangled YAML (tags, anchors, merge keys, cut lines) and
non-UTF-8 bytes.

Counts per provider: valid (rendered), rejected with SpecError, rejected by the provider
(plan / catalog / render), errors that name no field path (or, for a spec file, no file:line),
and tracebacks (any exception that is not a GenaiCloudError). Also the CPU time of each
document's slowest load -> plan -> render (what one `genai-cloud render -p PROVIDER` of it costs),
per family: its maximum and how many took over 1 s. Targets (issues 7 and 14): tracebacks = 0, unnamed = 0, documents over 1 s of CPU = 0.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
SLOW_CPU_S = 1.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--show", type=int, default=3, help="examples of each problem to print")
    args = parser.parse_args()

    from fuzz_specs import documents, hostile_texts
    from hypothesis import HealthCheck, given, seed, settings
    from hypothesis import strategies as st
    from test_fuzz_render import PROVIDERS, check_render, provider_documents

    counts = {p: Counter() for p in PROVIDERS}
    cpu: dict[str, list[float]] = defaultdict(list)  # family -> CPU seconds per document
    problems: dict[str, list[str]] = {}
    spec_file = Path(tempfile.mkdtemp(prefix="fuzz-specs-")) / "spec.yaml"
    tagged = st.one_of(documents.map(lambda d: ("mapping", d)),
                       provider_documents().map(lambda d: ("provider-mapping", d)),
                       hostile_texts)  # fmt: skip

    @seed(args.seed)
    @settings(max_examples=args.documents, deadline=None, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck), phases=["generate"])  # fmt: skip
    @given(doc=tagged)
    def run(doc):
        family, content = doc
        source = content
        if not isinstance(content, dict):
            data = content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass")
            spec_file.write_bytes(data)
            source = spec_file
        slowest = 0.0
        for provider in PROVIDERS:
            started = time.process_time()
            try:
                outcome = check_render(source, provider)
            except AssertionError as exc:  # an error message without a field path
                outcome = "unnamed"
                problems.setdefault(f"unnamed:{str(exc)[:90]}", []).append(repr(content)[:300])
            except Exception:  # noqa: BLE001 - counting them is the point
                outcome = "traceback"
                last = traceback.format_exc().strip().splitlines()[-1]
                problems.setdefault(f"traceback:{last[:120]}", []).append(repr(content)[:300])
            counts[provider][outcome] += 1
            slowest = max(slowest, time.process_time() - started)
        spent = slowest  # what one `validate` / `render -p PROVIDER` of this spec costs
        cpu[family].append(spent)
        if spent > SLOW_CPU_S:
            problems.setdefault(f"slow:{family}", []).append(f"{spent:.2f} s  {content!r:.250}")

    started = time.perf_counter()
    run()
    elapsed = time.perf_counter() - started
    seen = sum(len(v) for v in cpu.values())
    print(f"{seen} documents x {len(PROVIDERS)} providers in {elapsed:.1f} s")
    print(f"{'provider':<10} {'valid':>7} {'SpecError':>10} {'provider':>9} {'unnamed':>8} "
          f"{'traceback':>10}")  # fmt: skip
    for provider, c in counts.items():
        print(f"{provider:<10} {c['valid']:>7} {c['spec']:>10} {c['provider']:>9} "
              f"{c['unnamed']:>8} {c['traceback']:>10}")  # fmt: skip
    print(f"\n{'family':<18} {'documents':>9} {'max CPU s':>10} {'mean ms':>8} {'> 1 s':>6}")
    for family, times in sorted(cpu.items()):
        slow = sum(t > SLOW_CPU_S for t in times)
        print(f"{family:<18} {len(times):>9} {max(times):>10.3f} "
              f"{1000 * sum(times) / len(times):>8.1f} {slow:>6}")  # fmt: skip
    every = [t for times in cpu.values() for t in times]
    slow = sum(t > SLOW_CPU_S for t in every)
    tracebacks = sum(c["traceback"] for c in counts.values())
    unnamed = sum(c["unnamed"] for c in counts.values())
    print(f"\ntracebacks={tracebacks} unnamed={unnamed} over_1s_cpu={slow} "
          f"max_cpu_per_doc={max(every):.3f}s")  # fmt: skip
    for problem, examples in sorted(problems.items(), key=lambda kv: -len(kv[1])):
        print(f"\n[{len(examples)}x] {problem}")
        for example in examples[: args.show]:
            print(f"    {example}")
    return 1 if tracebacks or unnamed or slow else 0


if __name__ == "__main__":
    sys.exit(main())
