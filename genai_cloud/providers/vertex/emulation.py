"""Vertex AI: each worker pool replica of the rendered CustomJob runs its ``container_spec``.

What Vertex gives a replica, given here: ``CLUSTER_SPEC`` (every pool's ``host:port``, and this
replica's ``task``), ``AIP_MODEL_DIR`` / ``AIP_CHECKPOINT_DIR`` / ``AIP_TENSORBOARD_LOG_DIR``
under ``base_output_directory``, ``CLOUD_ML_JOB_ID``, the container's ``env``, and every bucket
under the Cloud Storage FUSE mount ``/gcs/<bucket>``. The command and args run as rendered with
two mount points moved into the run folder: ``/gcs`` (``<run>/gcs``, shared by the replicas, as
the buckets are; ``GENAI_GCS_FUSE_ROOT`` tells the job) and the container's own ``/tmp``
(``<run>/<replica>/tmp``: each VM has its own disk).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import IO

from ..local import LocalLayout
from ..emulation import (
    Node,
    cloud_spec,
    copy_input,
    free_port,
    host_env,
    job_status,
    local_inputs,
    node_address,
    python_on_path,
    run_nodes,
)

BUCKET = "genai-emulated"
PROJECT = "genai-emulated"
FUSE = "/gcs/"  # where Vertex mounts every bucket
SCRATCH = "/tmp/"  # the container's local disk


def stage(spec, gcs: Path):
    """Copy the spec's local inputs into the emulated bucket; the spec as Vertex would get it."""
    fields = {}
    for (section, name), source in local_inputs(spec).items():
        key = f"inputs/{section}.{name}/{source.name}"
        copy_input(source, gcs / BUCKET / key)
        fields[(section, name)] = f"gs://{BUCKET}/{key}" + ("/" if source.is_dir() else "")
    gcp = {"project": spec.gcp.project or PROJECT, "staging_bucket": BUCKET}
    return cloud_spec(spec, fields, gcp=gcp, output={"uri": f"gs://{BUCKET}/outputs"})


def replicas(job_spec: dict) -> list[tuple[str, int, dict]]:
    """``(pool name, replica index, pool)`` for every VM of the job, chief first."""
    return [(f"workerpool{i}", r, pool) for i, pool in enumerate(job_spec["worker_pool_specs"])
            for r in range(pool.get("replica_count", 1))]  # fmt: skip


def cluster_spec(job_spec: dict, pool: str, index: int, port: int) -> dict:
    """What Vertex puts in ``CLUSTER_SPEC`` for one replica (addresses are loopback here)."""
    cluster: dict[str, list[str]] = {}
    for n, (name, _, _) in enumerate(replicas(job_spec)):
        cluster.setdefault(name, []).append(f"{node_address(n)}:{port}")
    return {"cluster": cluster, "environment": "cloud", "task": {"type": pool, "index": index}}


def relocate(word: str, gcs: Path, scratch: Path) -> str:
    """``word`` with the two mount points moved (one pass: a new path is not moved again)."""
    moved = {FUSE: f"{gcs}/", SCRATCH: f"{scratch}/"}
    return re.sub(f"{re.escape(FUSE)}|{re.escape(SCRATCH)}", lambda m: moved[m.group(0)], word)


def run(spec, *, run_dir: Path, python: str, outs: tuple[IO[str], ...]):
    """Render for Vertex, put the bundle in the bucket, run every replica; (status, layout)."""
    from ...plan import make_plan
    from .render import bundle_uri, render_custom_job

    gcs = run_dir / "gcs"
    plan = make_plan(stage(spec, gcs), "vertex")
    job = render_custom_job(plan)
    (run_dir / "custom_job.json").write_text(json.dumps(job, indent=2, sort_keys=True))
    bundle = gcs / bundle_uri(plan)[len("gs://"):]
    bundle.parent.mkdir(parents=True, exist_ok=True)
    bundle.write_bytes(plan.bundle.data)

    job_spec = job["job_spec"]
    base = job_spec["base_output_directory"]["output_uri_prefix"].rstrip("/")
    port = free_port()
    nodes = []
    for n, (pool, index, spec_of_pool) in enumerate(replicas(job_spec)):
        name = f"{pool}-{index}"
        scratch = run_dir / name / "tmp"
        if scratch.exists():
            shutil.rmtree(scratch)  # a fresh VM
        scratch.mkdir(parents=True)
        container = spec_of_pool["container_spec"]
        env = {item["name"]: item["value"] for item in container.get("env", [])}
        env.update({
            "AIP_MODEL_DIR": f"{base}/model/",
            "AIP_CHECKPOINT_DIR": f"{base}/checkpoints/",
            "AIP_TENSORBOARD_LOG_DIR": f"{base}/logs/",
            "CLOUD_ML_JOB_ID": job["display_name"],
            "CLOUD_ML_PROJECT_ID": plan.spec.gcp.project,
            "CLUSTER_SPEC": json.dumps(cluster_spec(job_spec, pool, index, port)),
            "GENAI_GCS_FUSE_ROOT": str(gcs),
            "TMPDIR": str(scratch),
        })  # fmt: skip
        words = [*container.get("command", []), *container.get("args", [])]
        nodes.append(Node(name=name, command=[relocate(w, gcs, scratch) for w in words],
                          cwd=scratch, env=env))  # fmt: skip
    codes = run_nodes(nodes, host_env(python_on_path(run_dir, python)), outs)
    out = gcs / base[len("gs://"):]
    lay = LocalLayout(run_dir=run_dir, code_dir=run_dir / nodes[0].name / "tmp" / "genai-bundle",
                      model_dir=out / "model", checkpoint_dir=out / "checkpoints",
                      output_dir=out / "output", channels={}, command=nodes[0].command,
                      env=nodes[0].env, emulate="vertex")  # fmt: skip
    return job_status(codes), lay
