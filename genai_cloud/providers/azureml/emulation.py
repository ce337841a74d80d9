"""Azure ML: the rendered command job, its ``${{inputs.*}}`` / ``${{outputs.*}}`` resolved to the
paths Azure mounts, run in each node's copy of the code snapshot.

Datastores live under ``<run>/azureml/datastores/<name>/paths/``: an ``azureml://datastores/<name>
/paths/<p>`` input or output is that folder, mounted (``ro_mount`` / ``rw_mount``) at the same
place on every node, as a blob container is. A local input is uploaded first, as the SDK does at
submission (to ``workspaceblobstore/paths/LocalUpload/``); an output without a path goes where
Azure's default puts it (``workspaceblobstore/paths/azureml/<job name>/<output>/``). With
``distribution: pytorch`` Azure starts ``process_count_per_instance`` processes per node and
sets ``MASTER_ADDR``, ``MASTER_PORT``, ``WORLD_SIZE``, ``NODE_RANK``, ``RANK`` and
``LOCAL_RANK``; so does this.
"""

from __future__ import annotations

import json
import re
import shutil
import uuid
from pathlib import Path
from typing import IO

from ...bundle import safe_extract
from ...errors import GenaiCloudError
from ..local import LocalLayout
from ..emulation import (
    Node,
    cloud_spec,
    free_port,
    host_env,
    job_status,
    local_inputs,
    node_address,
    python_on_path,
    run_nodes,
)

DATASTORE = "workspaceblobstore"  # the workspace's default datastore
_DATASTORE_URI = re.compile(r"^azureml://datastores/([^/]+)/paths/(.*)$")
_PLACEHOLDER = re.compile(r"\$\{\{\s*(inputs|outputs)\.([A-Za-z0-9_]+)\s*\}\}")


def datastore_path(root: Path, uri: str) -> Path:
    match = _DATASTORE_URI.match(uri)
    if not match:
        raise GenaiCloudError(f"--emulate azureml reads datastore paths and local files; "
                              f"{uri!r} is neither", headline="Cannot emulate")  # fmt: skip
    store, path = match.groups()
    return root / store / "paths" / path


def stage(spec, stores: Path):
    """Upload the spec's local inputs as the SDK would; the spec as Azure ML would get it."""
    from ..emulation import copy_input

    fields = {}
    for (section, name), source in local_inputs(spec).items():
        rel = f"LocalUpload/{section}.{name}/{source.name}"
        copy_input(source, stores / DATASTORE / "paths" / rel)
        fields[(section, name)] = f"azureml://datastores/{DATASTORE}/paths/{rel}" + (
            "/" if source.is_dir() else "")  # fmt: skip
    azure = {"subscription_id": spec.azure.subscription_id or str(uuid.UUID(int=0)),
             "resource_group": spec.azure.resource_group or "genai-emulated",
             "workspace": spec.azure.workspace or "genai-emulated"}  # fmt: skip
    return cloud_spec(spec, fields, azure=azure)


def resolve_bindings(job: dict, stores: Path) -> dict[str, str]:
    """``inputs.x`` / ``outputs.y`` -> the path the job sees (a uri_file input: the file)."""
    paths = {}
    for name, item in job.get("inputs", {}).items():
        paths[f"inputs.{name}"] = str(datastore_path(stores, item["path"]))
    for name, item in job.get("outputs", {}).items():
        default = f"azureml://datastores/{DATASTORE}/paths/azureml/{job['name']}/{name}/"
        folder = datastore_path(stores, item.get("path", default))
        folder.mkdir(parents=True, exist_ok=True)
        paths[f"outputs.{name}"] = str(folder)
    return paths


def resolve_command(command: str, bindings: dict[str, str]) -> str:
    def sub(match: re.Match) -> str:
        key = f"{match.group(1)}.{match.group(2)}"
        if key not in bindings:
            raise GenaiCloudError(f"the rendered command names ${{{{{key}}}}}, which the job "
                                  "does not declare", headline="Cannot emulate")  # fmt: skip
        return bindings[key]

    return _PLACEHOLDER.sub(sub, command)


def run(spec, *, run_dir: Path, python: str, outs: tuple[IO[str], ...]):
    """Render for Azure ML, mount its datastores, run every process; (status, layout)."""
    from ...plan import make_plan
    from .render import render_command_job

    stores = run_dir / "azureml" / "datastores"
    plan = make_plan(stage(spec, stores), "azureml")
    job = render_command_job(plan)
    (run_dir / "command_job.json").write_text(json.dumps(job, indent=2, sort_keys=True))
    bindings = resolve_bindings(job, stores)
    command = resolve_command(job["command"], bindings)

    instances = job.get("resources", {}).get("instance_count", 1)
    distribution = job.get("distribution") or {}
    per_node = distribution.get("process_count_per_instance", 1)
    world, port = instances * per_node, free_port()
    nodes = []
    for node in range(instances):
        code = run_dir / f"node-{node}" / "code"
        if code.exists():
            shutil.rmtree(code)  # a fresh snapshot on a fresh node
        safe_extract(plan.bundle.data, code)
        for local in range(per_node):
            env = {**job.get("environment_variables", {}), "AZUREML_RUN_ID": job["name"]}
            if distribution.get("type") == "pytorch":
                env.update({"MASTER_ADDR": node_address(0), "MASTER_PORT": str(port),
                            "WORLD_SIZE": str(world), "NODE_RANK": str(node),
                            "RANK": str(node * per_node + local), "LOCAL_RANK": str(local)})  # fmt: skip
            nodes.append(Node(name=f"node-{node}.{local}", command=["bash", "-c", command],
                              cwd=code, env=env))  # fmt: skip
    codes = run_nodes(nodes, host_env(python_on_path(run_dir, python)), outs)
    lay = LocalLayout(run_dir=run_dir, code_dir=run_dir / "node-0" / "code",
                      model_dir=Path(bindings["outputs.model"]),
                      checkpoint_dir=Path(bindings["outputs.checkpoints"]),
                      output_dir=Path(bindings["outputs.output"]), channels={},
                      command=nodes[0].command, env=nodes[0].env, emulate="azureml")  # fmt: skip
    return job_status(codes), lay
