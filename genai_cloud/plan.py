"""spec -> Plan: everything a provider needs to render, decided once and pure.

The job name is ``<spec name>-<key>`` where ``key`` hashes the spec and the bundle. It is the
idempotency key: a retried submit of the same plan finds the job it already launched.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property

from .bundle import Bundle, build_bundle
from .catalog import Instance, resolve_instance
from .naming import DEFAULT_NAMES, NameRules, job_name
from .regions import launch_region, machines, uses_spot
from .runtimes import Runtime, for_spec
from .spec import JobSpec

KEY_LEN = 10  # hex chars of sha256: 40 bits, collisions are not a concern for one user's jobs


@dataclass(frozen=True)
class Placement:
    """A plan's resolved placement (see ``Plan.placement``)."""

    region: str
    instance: Instance
    machines: int  # billed machines
    spot: bool
    hourly_usd: float | None  # per machine, at the rate the spec pays; None: not in the catalog


@dataclass(frozen=True)
class Plan:
    spec: JobSpec
    provider: str
    name_rules: NameRules = field(default=DEFAULT_NAMES, compare=False)

    @cached_property
    def spec_json(self) -> str:
        return self.spec.to_json()

    @cached_property
    def runtime(self) -> Runtime | None:
        """The image row the job runs on (None for a local run: it installs nothing)."""
        return for_spec(self.provider, self.spec)

    @cached_property
    def bundle(self) -> Bundle:
        lock = self.runtime.lock_text() if self.runtime else None
        return build_bundle(self.spec_json, requirements=lock)

    @cached_property
    def key(self) -> str:
        digest = hashlib.sha256()
        for part in (self.provider, self.spec_json, self.bundle.sha256):
            digest.update(part.encode())
            digest.update(b"\0")
        return digest.hexdigest()[:KEY_LEN]

    @cached_property
    def placement(self) -> Placement:
        """Where the job runs and what it pays, resolved once for the render and the price.

        Raises:
            CatalogError: no instance of the provider's catalog fits ``compute``.
        """
        spec, provider = self.spec, self.provider
        instance = resolve_instance(provider, spec.compute)
        region, spot = launch_region(spec, provider), uses_spot(spec, provider)
        return Placement(region=region, instance=instance, spot=spot,
                         machines=machines(spec, provider, instance),
                         hourly_usd=instance.hourly(region, spot=spot))  # fmt: skip

    @cached_property
    def job_name(self) -> str:
        return job_name(self.spec.name, self.key, self.name_rules)


def make_plan(spec: JobSpec, provider: str) -> Plan:
    """Plan a spec for a provider (checks the provider's features first)."""
    from .providers import get_provider

    impl = get_provider(provider)
    impl.check_features(spec)
    return Plan(spec=spec, provider=impl.name, name_rules=impl.name_rules)
