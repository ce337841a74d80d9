"""The `genai-cloud` command line.

User mistakes print a one-line headline and a message and exit with status 2; tracebacks are kept
for our own bugs. ``--help``, ``validate`` and ``render`` import no torch, transformers or cloud SDK.

Exit codes: 0 success; 1 an unexpected error (a bug: please report it); 2 a user error (bad spec,
bad data, unknown provider, unsupported feature, missing SDK); 3 the job ran and failed;
143 the local job was preempted (SIGTERM) after saving a checkpoint; rerun to resume.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from .errors import GenaiCloudError
from .providers import provider_names

EXIT_JOB_FAILED = 3


def _fail(exc: GenaiCloudError) -> None:
    click.secho(f"Error: {exc.headline}", fg="red", bold=True, err=True)
    click.echo(exc.message, err=True)
    sys.exit(exc.exit_code)


def _parse_overrides(pairs: tuple[str, ...]) -> dict:
    """``training.max_steps=10`` -> {"training": {"max_steps": 10}} (values parsed as YAML).

    Values are read like the spec file (``2:4`` stays a string); relative paths in them are
    resolved against the current directory by ``load_spec``.
    """
    import yaml

    from .loading import parse_value

    merged: dict = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        parts = key.split(".")
        if not sep or not all(parts):
            raise GenaiCloudError(f"--set expects KEY=VALUE with KEY a dotted field path such as "
                                  f"training.lr, got {pair!r}", headline="Bad option")  # fmt: skip
        try:
            value = parse_value(raw) if raw else raw
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or str(exc)
            raise GenaiCloudError(f"--set {key}: {raw!r} is not a YAML value ({problem}); quote "
                                  "it to pass a string", headline="Bad option") from None  # fmt: skip
        node = merged
        for depth, part in enumerate(parts[:-1], start=1):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                # An earlier --set gave this field a single value; a field under it cannot be set.
                field = ".".join(parts[:depth])
                raise GenaiCloudError(
                    f"--set {key}: {field} was set to {child!r} by an earlier --set, a single "
                    f"value, so it cannot take {key}; drop one of the two, or give {field} as a "
                    f"mapping (--set '{field}={{{parts[depth]}: ...}}')",
                    headline="Bad option",
                )
            node = child
        node[parts[-1]] = value
    return merged


def _write_text(path: Path, text: str) -> None:
    """Write a file the user named, creating its folders (``mkdir -p``)."""
    with _writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@contextmanager
def _writing(path: Path) -> Iterator[None]:
    """Turn an OSError while writing ``path`` into a user error naming it (no traceback)."""
    try:
        yield
    except OSError as exc:
        blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            why = f"{blocker} is a file, not a folder"
        else:
            why = exc.strerror or str(exc)
            if exc.filename and str(exc.filename) != str(path):
                why += f" ({exc.filename})"
        raise GenaiCloudError(f"cannot write {path}: {why}", headline="Cannot write file") from None


class _WholeNumber(click.ParamType):
    """An int written as 2000000000, 2_000_000_000 or 2e9 (``click.IntRange`` takes only the
    first two)."""

    name = "integer"

    def __init__(self, minimum: int = 1):
        self.minimum = minimum

    def convert(self, value, param, ctx) -> int:
        if isinstance(value, int):
            number = value
        else:
            from decimal import Decimal, InvalidOperation

            try:
                exact = Decimal(str(value).strip())
            except InvalidOperation:
                exact = None
            if exact is None or not exact.is_finite() or exact != exact.to_integral_value():
                self.fail(f"{value!r} is not a whole number; write it as 2000000000, "
                          "2_000_000_000 or 2e9", param, ctx)  # fmt: skip
            # adjusted(): the power of ten of the leading digit; 1e30 tokens is already absurd,
            # and int() of 1e100000 would take a while
            if exact.adjusted() > 30:
                self.fail(f"{value!r} is too large for a token count", param, ctx)
            number = int(exact)
        if number < self.minimum:
            self.fail(f"{value!r} is below {self.minimum}; give a whole number of at least "
                      f"{self.minimum}", param, ctx)  # fmt: skip
        return number


class _PositiveNumber(click.ParamType):
    """A finite number above zero, written as 400000, 400_000 or 4e5."""

    name = "float"

    def convert(self, value, param, ctx) -> float:
        import math

        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if not math.isfinite(number) or number <= 0:
            self.fail(f"{value!r} is not a positive number; write it as 400000, 400_000 or 4e5",
                      param, ctx)  # fmt: skip
        return number


def _load(spec_path: str, overrides: tuple[str, ...] = (), provider: str | None = None):
    """The spec, its warnings printed: machine substitutions for ``provider`` only when one is
    named (``local``: none), for every cloud otherwise (``validate``, ``-p cheapest``)."""
    from .loading import load_spec

    spec = load_spec(spec_path, overrides=_parse_overrides(overrides))
    named = None
    if provider and provider.lower() != "cheapest":
        from .providers.base import canonical_name

        named = [canonical_name(provider)]
    for note in spec.warnings(named):
        click.secho(f"Warning: {note}", fg="yellow", err=True)
    return spec


def _memory(spec) -> str | None:
    """The memory plan's line for this spec (None where it does not apply); a spec that fits
    its accelerators under no strategy raises SpecError here, before anything is launched."""
    from .memory import check

    report = check(spec)
    return f"Memory: {report.summary()}" if report else None


def _place(spec, provider: str, *, configured_only: bool) -> str:
    """``provider``, or for ``cheapest`` the provider cost.cheapest picks (saying why)."""
    if provider.lower() != "cheapest":
        return provider
    from .cost import catalog_providers, cheapest
    from .jobs import configured_providers

    candidates = catalog_providers()
    if configured_only:  # submit launches: only where this machine can reach
        candidates, missing = configured_providers(candidates, spec)
        for name, reason in sorted(missing.items()):
            click.echo(f"Not considered: {name} (not configured: {reason})", err=True)
        if not candidates:
            raise GenaiCloudError("--provider cheapest: no cloud provider is configured here; "
                                  "see the reasons above", headline="No placement")  # fmt: skip
    placement = cheapest(spec, candidates)
    why = placement.why()
    click.echo(why[0].upper() + why[1:], err=True)
    return placement.provider


def _job_provider(job_id: str, provider: str | None) -> str:
    if provider:
        return provider
    from .jobs import infer_provider

    found = infer_provider(job_id)
    if found is None:
        raise GenaiCloudError(f"cannot tell the provider of job {job_id!r} from its id; pass "
                              "--provider", headline="Bad option")  # fmt: skip
    return found


spec_argument = click.argument("spec_path", metavar="SPEC", type=click.Path(dir_okay=False))
set_option = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                          help="Override a spec field, e.g. --set training.max_steps=10.")  # fmt: skip
place_option = click.option("--provider", "-p", required=True,
                            help="local, sagemaker, vertex, azureml, or cheapest (the cheapest "
                                 "provider that can run every feature of the spec).")  # fmt: skip
job_provider_option = click.option("--provider", "-p",
                                   help="Default: read from the job id's shape.")  # fmt: skip
providers_option = click.option("--provider", "-p", "providers", multiple=True,
                                help="Provider(s) to ask (default: every configured one).")  # fmt: skip
label_option = click.option("--label", "labels", multiple=True, metavar="KEY=VALUE",
                            help="Only jobs carrying this label (repeatable).")  # fmt: skip


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="genai-cloud")
def cli() -> None:
    """Fine-tune, distill, prune, audit and fairness-test generative models, on this machine
    or on SageMaker, Vertex AI and Azure ML, from one JobSpec."""


@cli.command()
@click.argument("path", default="genai-job.yaml", type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def init(path: str, force: bool) -> None:
    """Write a commented example spec to PATH.

    \b
    Examples:
      genai-cloud init
      genai-cloud init specs/finetune.yaml --force
    """
    from .templates import EXAMPLE_SPEC

    target = Path(path)
    if target.exists() and not force:
        raise GenaiCloudError(f"{target} exists; pass --force to overwrite it",
                              headline="Not overwriting")  # fmt: skip
    _write_text(target, EXAMPLE_SPEC)
    data = target.parent / "data" / "train.jsonl"
    click.echo(f"Wrote {target}. Next: put training data at {data} (one JSON object with a "
               f'"text" field per line) or edit data.train, then: genai-cloud validate {target}')


@cli.command()
@spec_argument
@set_option
def validate(spec_path: str, overrides: tuple[str, ...]) -> None:
    """Check a spec; print every problem at once.

    Local files and folders it names must exist; remote URIs and hub ids are listed as not
    checked (the job reads them).

    \b
    Examples:
      genai-cloud validate examples/quickstart.yaml
      genai-cloud validate examples/sagemaker.yaml --set training.lr=1e-4
    """
    from .inputs import require_inputs

    spec = _load(spec_path, overrides)
    report = require_inputs(spec, source=spec_path)
    for line in report.unchecked:
        click.echo(f"Not checked here: {line}", err=True)
    memory = _memory(spec)
    click.echo(f"OK: {spec.name} (task {spec.task}, {spec.compute.count} x "
               f"{spec.compute.accelerator} x {spec.compute.nodes} node(s))")  # fmt: skip
    if memory:
        click.echo(memory)


@cli.command()
def schema() -> None:
    """Print the JSON Schema of a spec (for editor autocompletion).

    \b
    Examples:
      genai-cloud schema > genai-job.schema.json
    """
    from .spec import json_schema

    click.echo(json.dumps(json_schema(), indent=2))


@cli.command()
@spec_argument
@place_option
@click.option("--format", "fmt", type=click.Choice(["json", "yaml", "native", "stepfunctions"]),
              default="json", show_default=True,
              help="native: the file the provider's own CLI takes; stepfunctions: a Task state.")
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write to a file.")
@set_option
def render(spec_path: str, provider: str, fmt: str, output: str | None,
           overrides: tuple[str, ...]) -> None:  # fmt: skip
    """Print the provider request a spec becomes (no network, no credentials).

    \b
    Examples:
      genai-cloud render examples/sagemaker.yaml -p sagemaker
      genai-cloud render examples/vertex.yaml -p vertex --format native -o job.yaml
      genai-cloud render examples/sagemaker.yaml -p sagemaker --format stepfunctions
    """
    from .plan import make_plan
    from .providers import get_provider

    spec = _load(spec_path, overrides, provider)
    _memory(spec)
    plan = make_plan(spec, _place(spec, provider, configured_only=False))
    impl = get_provider(plan.provider)
    if fmt == "native":
        text = impl.render_native(plan, path=output)
    elif fmt == "stepfunctions":
        if not hasattr(impl, "render_stepfunctions"):
            raise GenaiCloudError(f"--format stepfunctions needs provider sagemaker, not "
                                  f"{plan.provider}", headline="Bad option")  # fmt: skip
        text = json.dumps(impl.render_stepfunctions(plan), indent=2, sort_keys=True)
    elif fmt == "yaml":
        import yaml

        text = yaml.safe_dump(impl.render(plan), sort_keys=False)
    else:
        text = json.dumps(impl.render(plan), indent=2, sort_keys=True)
    if not output:
        click.echo(text)
        _echo_launch_commands(impl, plan, fmt, output)
        return
    _write_text(Path(output), text + "\n")
    click.echo(f"Wrote {output}", err=True)
    if fmt == "native":
        # The native file names the bundle; put it beside the file so the provider's CLI finds it.
        with _writing(Path(output).parent):
            bundle = impl.write_native_bundle(plan, Path(output).parent)
        click.echo(f"Wrote {bundle}", err=True)
    _echo_launch_commands(impl, plan, fmt, output)


def _echo_launch_commands(impl, plan, fmt: str, output: str | None) -> None:
    """Where the bundle must go and the command that launches the native file, for providers
    whose native file cannot carry them as comments (SageMaker's JSON)."""
    if fmt != "native" or not hasattr(impl, "launch_commands"):
        return
    where = "" if output else f" (`render -o FILE` writes {plan.bundle.name} beside FILE)"
    click.echo(f"Upload the bundle, then launch{where}:", err=True)
    for step in impl.launch_commands(plan, output):
        click.echo(f"  {step}", err=True)


@cli.command()
@spec_argument
@click.option("--emulate", type=click.Choice(provider_names()),
              default="local", show_default=True,
              help="Run the job that cloud's render describes, as its container would.")
@click.option("--nproc", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Processes (torchrun; gloo on CPU).")
@click.option("--run-dir", type=click.Path(file_okay=False),
              help="Default: <output.local_dir>/<job name>; rerunning resumes.")
@click.option("--preempt-at", type=click.IntRange(1), help="Simulate a spot eviction at STEP.")
@click.option("--docker", "docker_image", metavar="IMAGE", help="Run inside this image.")
@click.option("--python", "python", metavar="PATH",
              help="Run the job with this interpreter (e.g. a replica of an image's environment; "
                   "it needs the job's requirements, not genai-cloud).")
@click.option("--again", is_flag=True,
              help="Run even if the run directory holds a finished run (default: say so, stop).")
@set_option
def run(spec_path: str, emulate: str, nproc: int, run_dir: str | None, preempt_at: int | None,
        docker_image: str | None, python: str | None, again: bool,
        overrides: tuple[str, ...]) -> None:  # fmt: skip
    """Run a spec on this machine with the same entrypoint a cloud job runs.

    With --emulate sagemaker|vertex|azureml, the job that cloud's render describes runs the way
    its container runs it (compute.nodes local nodes; SageMaker through its training toolkit).

    \b
    Examples:
      genai-cloud run examples/quickstart.yaml
      genai-cloud run examples/quickstart.yaml --nproc 2 --set training.max_steps=20
      genai-cloud run examples/quickstart.yaml --emulate vertex --python VENV/bin/python
    """
    from .inputs import require_inputs
    from .plan import Plan
    from .providers.local import LocalRun, finished, layout, run_local

    spec = _load(spec_path, overrides, "local")
    require_inputs(spec, source=spec_path)
    try:
        lay = layout(Plan(spec=spec, provider="local"), emulate=emulate, nproc=nproc, run_dir=run_dir)
        done = finished(lay)
    except GenaiCloudError:  # a spec this machine cannot run: run_local says why
        done = []
    if done and not again:
        import datetime

        when = datetime.datetime.fromtimestamp(done[0].stat().st_mtime).strftime("%Y-%m-%d %H:%M")
        click.secho(f"Already complete (finished {when}): {lay.run_dir}; nothing was rerun. Pass "
                    "--again to run it again, or change the spec.", fg="green")  # fmt: skip
        click.echo(_outputs_line(LocalRun(run_dir=lay.run_dir, returncode=0, layout=lay)))
        return
    result = run_local(spec, emulate=emulate, nproc=nproc, run_dir=run_dir,
                       preempt_at=preempt_at, docker_image=docker_image,
                       python=python)  # fmt: skip
    if result.returncode == 0:
        click.secho(f"Done. {_outputs_line(result)}", fg="green")
        if result.model_dir.is_dir() and any(result.model_dir.iterdir()):
            # Run directories are named by the spec's hash: say exactly what to chain next.
            click.echo(f"Next, e.g.: --set model.name_or_path={_shown(result.model_dir)}")
        return
    if result.returncode == 143:
        click.secho(f"Preempted; checkpoint saved in {result.layout.checkpoint_dir}. "
                    "Run the same command again to resume.", fg="yellow", err=True)  # fmt: skip
        sys.exit(143)
    click.secho(f"Job failed with exit status {result.returncode} (log: "
                f"{result.run_dir / 'job.log'})", fg="red", err=True)  # fmt: skip
    sys.exit(EXIT_JOB_FAILED if result.returncode != 2 else 2)


def _shown(path: Path) -> str:
    """``path`` relative to the current directory when it is under it (shorter to paste)."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _outputs_line(result) -> str:
    """What the run wrote, naming only files that exist (audit and fairness save no model and
    write reports rather than metrics.json)."""
    parts = []
    if result.model_dir.is_dir() and any(result.model_dir.iterdir()):
        parts.append(f"Model: {result.model_dir}")
    metrics = result.output_dir / "metrics.json"
    if metrics.is_file():
        parts.append(f"Metrics: {metrics}")
    else:  # audit / fairness: audit.json + audit.html, fairness.json + fairness.html
        results = sorted(result.output_dir.glob("*.json")) + sorted(result.output_dir.glob("*.html"))
        if results:
            parts.append("Results: " + ", ".join(str(p) for p in results))
    return "  ".join(parts) or f"Outputs: {result.output_dir}"


@cli.command()
@spec_argument
@place_option
@set_option
def submit(spec_path: str, provider: str, overrides: tuple[str, ...]) -> None:
    """Launch a spec on a provider (a retried submit returns the job already launched).

    \b
    Examples:
      genai-cloud submit examples/sagemaker.yaml -p sagemaker
      genai-cloud submit examples/vertex.yaml -p cheapest --set compute.spot=true
    """
    from .plan import make_plan
    from .providers import get_provider

    spec = _load(spec_path, overrides, provider)
    _memory(spec)
    plan = make_plan(spec, _place(spec, provider, configured_only=True))
    if spec.budget.max_usd is not None and get_provider(plan.provider).billed:
        from .cost import worst_case

        worst = worst_case(plan)  # BudgetError refuses the launch here
        click.echo(f"Budget: at most ${worst.usd:,.2f} of ${spec.budget.max_usd:,.2f} "
                   f"(runtime capped at {worst.seconds} s)", err=True)  # fmt: skip
    if spec.compute.fallback:
        from .failover import submit_with_fallback

        handle, passed = submit_with_fallback(spec, plan.provider)
        for placement, reason in passed:
            click.echo(f"Moved on from {placement}: {reason}", err=True)
    else:
        handle = get_provider(plan.provider).submit(plan)
    verb = "Submitted" if handle.created else "Already submitted"
    click.echo(f"{verb}: {handle.name} ({handle.provider}, id {handle.job_id})")
    if handle.console_url:
        click.echo(f"Console: {handle.console_url}")


@cli.command()
@click.argument("job_id", required=False)
@providers_option
@label_option
@click.option("--limit", type=click.IntRange(1), default=20, show_default=True,
              help="Without JOB_ID: show this many of the newest jobs.")
def status(job_id: str | None, providers: tuple[str, ...], labels: tuple[str, ...],
           limit: int) -> None:  # fmt: skip
    """Show a job's state; without JOB_ID, one table of recent jobs across providers.

    \b
    Examples:
      genai-cloud status
      genai-cloud status quickstart-3f2a9c1b7e -p local
      genai-cloud status arn:aws:sagemaker:us-east-1:123456789012:training-job/my-job
    """
    if job_id is None:
        _job_table(providers, labels, limit)
        return
    if len(providers) > 1:
        raise GenaiCloudError("a JOB_ID belongs to one --provider", headline="Bad option")
    from .providers import get_provider

    result = get_provider(_job_provider(job_id, providers[0] if providers else None)).status(job_id)
    line = f"{result.job_id}: {result.state.value} ({result.native_state})"
    click.echo(line + (f" - {result.message}" if result.message else ""))


@cli.command("list")
@label_option
@providers_option
@click.option("--limit", type=click.IntRange(1), help="Show at most this many (newest first).")
def list_jobs(labels: tuple[str, ...], providers: tuple[str, ...], limit: int | None) -> None:
    """List genai-cloud jobs across providers (filter with --label KEY=VALUE).

    \b
    Examples:
      genai-cloud list --label team=research
      genai-cloud list -p sagemaker --limit 5
    """
    _job_table(providers, labels, limit)


def _job_table(providers: tuple[str, ...], labels: tuple[str, ...], limit: int | None) -> None:
    from .errors import ProviderError
    from .jobs import cloud_providers, collect, configured_providers, format_table, parse_labels

    wanted = parse_labels(labels)
    names = [p for item in providers for p in item.split(",") if p]
    if not names:
        names, missing = configured_providers(cloud_providers())
        for name, reason in sorted(missing.items()):
            click.echo(f"Skipped {name}: not configured ({reason})", err=True)
        if not names:
            raise GenaiCloudError("no cloud provider is configured here (reasons above); name "
                                  "one with --provider", headline="No providers")  # fmt: skip
    table = collect(names, wanted, limit=limit)  # unknown names are refused before asking any
    if table.asked and set(table.errors) >= set(table.asked):
        # Nothing was listed: "No genai-cloud jobs found" would claim an answer nobody gave.
        raise ProviderError("no provider could list its jobs:\n" + "\n".join(
            f"  - {name}: " + error.replace("\n", "\n    ")
            for name, error in sorted(table.errors.items())
        ), headline="Could not list jobs")  # fmt: skip
    for name, error in sorted(table.errors.items()):
        click.secho(f"Warning: {name}: could not list jobs: {error}", fg="yellow", err=True)
    click.echo(format_table(table))


@cli.command()
@click.argument("job_id")
@job_provider_option
@click.option("--follow", "-f", is_flag=True, help="Keep printing until the job ends.")
def logs(job_id: str, provider: str | None, follow: bool) -> None:
    """Print a job's log (the same for every provider).

    \b
    Examples:
      genai-cloud logs quickstart-3f2a9c1b7e -p local
      genai-cloud logs my-job-3f2a9c1b7e -p sagemaker --follow
    """
    from .providers import get_provider

    for line in get_provider(_job_provider(job_id, provider)).logs(job_id, follow=follow):
        click.echo(line)


@cli.command()
@click.argument("job_id")
@job_provider_option
def cancel(job_id: str, provider: str | None) -> None:
    """Stop a running job.

    \b
    Examples:
      genai-cloud cancel my-job-3f2a9c1b7e -p sagemaker
    """
    from .providers import get_provider

    get_provider(_job_provider(job_id, provider)).cancel(job_id)
    click.echo(f"Stop requested: {job_id}")


@cli.command()
@spec_argument
@click.option("--tokens", type=_WholeNumber(1), metavar="N",
              help="Tokens the job will process in total (2000000000, 2_000_000_000 or 2e9).")
@click.option("--throughput", type=_PositiveNumber(), metavar="TOK_PER_S",
              help="Tokens per second of the whole job (all GPUs); with --tokens.")
@click.option("--provider", "-p", "providers", multiple=True,
              help="Only these providers (default: every one with a price catalog).")
@set_option
def estimate(spec_path: str, tokens: int | None, throughput: float | None,
             providers: tuple[str, ...], overrides: tuple[str, ...]) -> None:  # fmt: skip
    """Price a spec on every provider before launching it, cheapest first.

    \b
    Examples:
      genai-cloud estimate examples/vertex.yaml
      genai-cloud estimate examples/sagemaker.yaml --tokens 2e9 --throughput 400000
    """
    from .cost import estimate as price
    from .cost import format_estimate

    spec = _load(spec_path, overrides)
    memory = _memory(spec)
    names = [p for item in providers for p in item.split(",") if p] or None
    click.echo(format_estimate(price(spec, names, tokens=tokens, throughput=throughput), spec))
    if memory:
        click.echo(memory)


@cli.command()
def providers() -> None:
    """List providers and what each cannot do (and why).

    \b
    Examples:
      genai-cloud providers
    """
    from .errors import ProviderError
    from .providers import Feature, get_provider, provider_names

    for name in provider_names():
        try:
            impl = get_provider(name)
        except ProviderError as exc:
            click.echo(f"{name}: {exc.message}")
            continue
        click.secho(name, bold=True)
        if not impl.unsupported:
            click.echo("  supports every feature")
        for feature in Feature:
            if feature in impl.unsupported:
                click.echo(f"  no {feature.value}: {impl.unsupported[feature]}")


@cli.command()
@click.argument("target", type=click.Choice(["lambda", "gcp", "azure"]))
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="dist",
              show_default=True, help="Folder for the deployment zip.")  # fmt: skip
def package(target: str, out_dir: str) -> None:
    """Build the deployment zip of the serverless launcher (Lambda, Cloud Function, Azure).

    \b
    Examples:
      genai-cloud package lambda
      genai-cloud package gcp --out dist/
    """
    from .serverless.package import build_function_zip, build_lambda_zip

    path = build_lambda_zip(out_dir) if target == "lambda" else build_function_zip(out_dir, target)
    click.echo(f"Wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")


@cli.command()
@spec_argument
@place_option
@click.option("--job", "job_name", help="The training job whose model to register (default: "
              "the job this spec launched; needed when output.register was added afterwards, "
              "since the spec is part of a job's name).")  # fmt: skip
@set_option
def register(spec_path: str, provider: str, job_name: str | None,
             overrides: tuple[str, ...]) -> None:  # fmt: skip
    """Register the finished job's model in the provider's model registry (output.register)."""
    from .plan import make_plan
    from .providers import get_provider

    spec = _load(spec_path, overrides, provider)
    plan = make_plan(spec, _place(spec, provider, configured_only=False))
    if job_name:
        plan.__dict__["job_name"] = job_name  # the cached_property's slot: that job, this spec
    click.echo(get_provider(plan.provider).register(plan))


@cli.command()
@click.argument("runs", nargs=-1, required=True, metavar="RUN [RUN...]")
@click.option("--output", "-o", type=click.Path(dir_okay=False),
              help="Default: <run folder>/report.html for one run, ./report.html for several.")
@click.option("--runs-dir", default="runs", show_default=True, type=click.Path(file_okay=False),
              help="Where job and spec names are looked up (output.local_dir).")  # fmt: skip
def report(runs: tuple[str, ...], output: str | None, runs_dir: str) -> None:
    """Write one self-contained HTML page about runs: curves, charts, model card, spec.

    RUN is a run folder, a job name or a spec name (its newest finished run); several runs get a
    comparison table."""
    from .report import write_report

    path = write_report(list(runs), output, runs_dir)
    click.echo(f"Wrote {path}")


def main(argv: list[str] | None = None) -> None:
    # pydantic looks for plugins by scanning every installed distribution's entry points on the
    # first model it builds (tens of ms); the CLI uses none, and start-up time is a feature here.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    try:
        cli.main(args=argv, prog_name="genai-cloud", standalone_mode=False)
    except GenaiCloudError as exc:
        _fail(exc)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
