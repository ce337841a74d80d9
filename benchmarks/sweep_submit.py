"""Submit a 100-job learning-rate sweep to (moto) SageMaker: concurrently vs sequentially.

    python benchmarks/sweep_submit.py [--jobs 100] [--workers 32] [--latency-ms 50]

What is measured, honestly: moto runs as a server in a *separate process* (so its CPU work does
not share this process's GIL) behind a WSGI wrapper that waits ``--latency-ms`` before answering
each request, standing in for the network + service time of a real AWS API call (SageMaker and S3
calls take tens to hundreds of ms from a laptop). ``--latency-ms 0`` measures moto alone. Every
job goes through the real ``SageMakerProvider.submit``: HeadObject (+ PutObject of its bundle),
DescribeTrainingJob, CreateTrainingJob, over HTTP. Plans (spec, bundle, render) are built before
the clock starts, since they are the same work in both modes.

Target (issue 3): concurrent >= 5x sequential, time linear in N, exactly N jobs.
Caveat: a real account also has a CreateTrainingJob rate limit; botocore's standard retries absorb
throttling, but at high rates the limit, not the client, sets the pace.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

REGION = "us-east-1"
BUCKET = "genai-sweep"
ROLE = "arn:aws:iam::123456789012:role/genai-sagemaker"

_SERVER = """
import sys, time
from werkzeug.serving import make_server
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

port, latency = int(sys.argv[1]), float(sys.argv[2])
app = DomainDispatcherApplication(create_backend_app)

def delayed(environ, start_response):
    if not environ.get("PATH_INFO", "").startswith("/moto-api"):
        time.sleep(latency)  # stands in for network + service time of a real AWS call
    return app(environ, start_response)

make_server("127.0.0.1", port, delayed, threaded=True).serve_forever()
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(latency_s: float) -> tuple[subprocess.Popen, str]:
    port = free_port()
    # The server's stderr goes to a file that is shown if it does not come up (a missing
    # moto[server] dependency, say), instead of a bare "did not start".
    log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - lives as long as the server
    proc = subprocess.Popen([sys.executable, "-c", _SERVER, str(port), str(latency_s)],
                            stdout=subprocess.DEVNULL, stderr=log)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        if proc.poll() is not None:
            break
        try:
            urllib.request.urlopen(f"{url}/moto-api/data.json", timeout=1)
            return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    log.seek(0)
    raise SystemExit("moto server did not start (it needs `pip install 'moto[server]'`, which "
                     f"the [dev] extra installs):\n{log.read()[-2000:]}")


def reset(url: str) -> None:
    import boto3

    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST"))
    boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)


def sweep_plans(n: int, tag: str):
    from genai_cloud.loading import load_spec
    from genai_cloud.plan import make_plan

    plans = []
    for i in range(n):
        lr = 1e-5 * (1.05**i)  # a log-spaced grid: 1e-5 ... ~1.3e-3 for 100 jobs
        spec = load_spec({
            "name": f"lr-sweep-{tag}-{i:03d}",
            "model": {"name_or_path": "gpt2"},
            "data": {"train": f"s3://{BUCKET}/data/train.jsonl"},
            "training": {"lr": lr},
            "output": {"uri": f"s3://{BUCKET}/runs"},
            "aws": {"role_arn": ROLE, "region": REGION},
            "labels": {"sweep": f"lr-{tag}"},
        })  # fmt: skip
        plan = make_plan(spec, "sagemaker")
        plan.bundle, plan.key  # noqa: B018 - build bundle and key before timing
        plans.append(plan)
    return plans


def count_jobs() -> int:
    import boto3

    client = boto3.client("sagemaker", region_name=REGION)
    return sum(len(p["TrainingJobSummaries"])
               for p in client.get_paginator("list_training_jobs").paginate())  # fmt: skip


def run(plans, workers: int) -> tuple[float, list]:
    """Submit every plan with a fresh provider (fresh clients: no warm connections carried over
    between runs); ``workers`` = 1 is the sequential baseline."""
    from genai_cloud.providers.sagemaker import SageMakerProvider

    provider = SageMakerProvider()
    for service in ("s3", "sagemaker"):
        provider.ops.client(service, REGION)  # client construction is not what we measure
    start = time.perf_counter()
    if workers == 1:
        handles = [provider.submit(p) for p in plans]
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            handles = list(pool.map(provider.submit, plans))
    return time.perf_counter() - start, handles


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--workers", type=int, default=32)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    args = parser.parse_args()

    proc, url = start_server(args.latency_ms / 1000)
    os.environ.update({"AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION})  # fmt: skip
    try:
        n = args.jobs
        print(f"moto server (separate process) at {url}, {args.latency_ms:.0f} ms per request; "
              f"{n} jobs, {args.workers} workers")  # fmt: skip
        results = {}
        for label, workers, size in (("sequential", 1, n), ("concurrent", args.workers, n // 4),
                                     ("concurrent", args.workers, n // 2),
                                     ("concurrent", args.workers, n)):  # fmt: skip
            reset(url)
            plans = sweep_plans(size, f"{label[:3]}{size}")
            seconds, handles = run(plans, workers)
            jobs = count_jobs()
            assert jobs == size and all(h.created for h in handles), (label, size, jobs)
            results[(label, size)] = seconds
            print(f"{label:>10}  N={size:<4d} {seconds:7.2f} s  {seconds / size * 1000:7.1f} ms/job"
                  f"  jobs in SageMaker: {jobs}")  # fmt: skip
        # Retried sweep: the same plans again find their jobs; nothing new is launched.
        seconds, handles = run(plans, args.workers)
        assert count_jobs() == n and not any(h.created for h in handles)
        print(f"{'resubmit':>10}  N={n:<4d} {seconds:7.2f} s  all {n} found existing, "
              f"jobs in SageMaker: {count_jobs()}")  # fmt: skip

        ratio = results[("sequential", n)] / results[("concurrent", n)]
        linear = results[("concurrent", n)] / results[("concurrent", n // 2)]
        print(f"speed-up concurrent vs sequential at N={n}: {ratio:.1f}x (target >= 5x)")
        print(f"concurrent time N={n} / N={n // 2}: {linear:.2f} (linear would be 2.0)")
        return 0
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
