"""Accelerator x count -> instance / machine type per provider, with on-demand and spot prices.

The data lives in ``data/catalog/<provider>.json`` (one file per provider, each naming its price
source and date). Schema of one file::

    {"provider": "sagemaker", "source": "<where the prices come from>", "date": "YYYY-MM-DD",
     "currency": "USD", "default_region": "us-east-1",
     "instances": [
       {"type": "ml.g5.xlarge", "accelerator": "A10G", "count": 1, "gpu_memory_gib": 24,
        "vcpus": 4, "memory_gib": 16,
        "price": {"us-east-1": 1.408}, "spot_price": {"us-east-1": 0.42},
        "extra": {...provider specific: Vertex accelerator_type enum, TPU topology, ...}}]}

CPU instances use ``"accelerator": "cpu"`` and ``"count": 0``. ``gpu_memory_gib`` is per GPU.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from .errors import GenaiCloudError
from .tpu import host_chips

DATA_DIR = Path(__file__).parent / "data" / "catalog"
_UPGRADES = {"a100": "A100-80GB"}


@dataclass(frozen=True)
class Instance:
    provider: str
    type: str
    accelerator: str
    count: int
    gpu_memory_gib: float = 0
    vcpus: int = 0
    memory_gib: float = 0
    price: dict = field(default_factory=dict, compare=False)
    spot_price: dict = field(default_factory=dict, compare=False)
    extra: dict = field(default_factory=dict, compare=False)

    def hourly(self, region: str | None = None, *, spot: bool = False) -> float | None:
        """USD per hour in ``region`` (or the catalog's default region); None if unknown."""
        table = self.spot_price if spot else self.price
        region = region or catalog(self.provider)["default_region"]
        return table.get(region)


class CatalogError(GenaiCloudError):
    headline = "Unknown instance"


@lru_cache(maxsize=None)
def catalog(provider: str) -> dict:
    path = DATA_DIR / f"{provider}.json"
    if not path.is_file():
        raise CatalogError(f"no catalog for provider {provider!r}")
    return json.loads(path.read_text())


def instances(provider: str) -> list[Instance]:
    data = catalog(provider)
    return [Instance(provider=provider, **row) for row in data["instances"]]


def find_instance(provider: str, instance_type: str) -> Instance:
    """Validate an explicit ``compute.instance_type``; an unknown one lists close valid ones."""
    rows = instances(provider)
    for row in rows:
        if row.type == instance_type:
            return row
    prefix = instance_type.rsplit(".", 1)[0] if "." in instance_type else instance_type[:4]
    close = [r.type for r in rows if r.type.startswith(prefix)] or [r.type for r in rows]
    raise CatalogError(
        f"compute.instance_type {instance_type!r} is not a known {provider} type; "
        f"valid: {', '.join(close[:12])}"
    )


def instance_for(provider: str, accelerator: str, count: int = 1) -> Instance:
    """The smallest instance with ``count`` accelerators of this kind (exact count preferred)."""
    rows = [r for r in instances(provider) if r.accelerator.lower() == accelerator.lower()]
    if not rows:
        known = sorted({r.accelerator for r in instances(provider)})
        raise CatalogError(
            f"compute.accelerator: {provider} offers no {accelerator!r} instances; "
            f"available: {', '.join(known)}"
        )
    if accelerator.lower() == "cpu":
        return rows[0]
    count = host_chips(accelerator, count)  # a multi-host TPU slice: the machine is one host
    exact = [r for r in rows if r.count == count]
    if exact:
        return min(exact, key=lambda r: (r.vcpus, r.memory_gib))
    # Some clouds sell single A100s only in the 80 GB kind: a bigger GPU beats 8x the GPUs.
    upgrade = _UPGRADES.get(accelerator.lower())
    if upgrade:
        better = [r for r in instances(provider) if r.accelerator == upgrade and r.count == count]
        if better:
            return min(better, key=lambda r: (r.vcpus, r.memory_gib))
    bigger = sorted((r for r in rows if r.count > count), key=lambda r: r.count)
    if bigger:
        return bigger[0]
    counts = sorted({r.count for r in rows})
    raise CatalogError(
        f"{provider} has no instance with {count} x {accelerator}; per-node counts: "
        f"{', '.join(map(str, counts))}. Use compute.nodes for more."
    )


def resolve_instance(provider: str, compute) -> Instance:
    """The instance a spec's ``compute`` section asks for on ``provider``."""
    if compute.instance_type:
        found = find_instance(provider, compute.instance_type)
        if compute.accelerator != "cpu" and found.accelerator.lower() != compute.accelerator.lower():
            raise CatalogError(
                f"compute.instance_type {found.type!r} carries {found.accelerator}, but "
                f"compute.accelerator is {compute.accelerator!r}"
            )
        return found
    return instance_for(provider, compute.accelerator, compute.count)


# --------------------------------------------------------------------------------------------
# When the instance is not what the spec asked for


@dataclass(frozen=True)
class Substitution:
    """``instance`` is what ``provider`` runs ``count`` x ``accelerator`` on, and differs:
    more accelerators per node (``rounded``), another kind (``upgraded``), or both."""

    provider: str
    accelerator: str
    count: int
    instance: Instance

    @property
    def rounded(self) -> bool:
        return self.instance.count > self.count

    @property
    def upgraded(self) -> bool:
        return self.instance.accelerator.lower() != self.accelerator.lower()


def catalog_names() -> list[str]:
    """The providers with a catalog file."""
    return sorted(path.stem for path in DATA_DIR.glob("*.json"))


def substitution(provider: str, compute) -> Substitution | None:
    """How ``instance_for`` departs from ``compute`` on ``provider`` (None: it does not, the
    instance is named by ``compute.instance_type``, or the provider offers no such kind)."""
    if compute.instance_type or compute.accelerator.lower() == "cpu":
        return None
    try:
        instance = instance_for(provider, compute.accelerator, compute.count)
    except CatalogError:  # refused when rendering for that provider, with its own message
        return None
    found = Substitution(provider, compute.accelerator, compute.count, instance)
    return found if found.rounded or found.upgraded else None


def _names(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def substitution_notes(compute, providers: list[str] | None = None) -> list[str]:
    """One warning per different machine the catalog picks instead of what ``compute`` asks,
    naming the providers that do it, what is paid for and what runs (so the user can say it
    in the spec). The choice itself is not changed."""
    found: dict[tuple[str, int], list[Substitution]] = {}
    for provider in providers if providers is not None else catalog_names():
        sub = substitution(provider, compute)
        if sub is not None:
            found.setdefault((sub.instance.accelerator, sub.instance.count), []).append(sub)
    notes = []
    asked, count = compute.accelerator, compute.count
    tpu = asked.lower().startswith("tpu-")
    unit = "chips" if tpu else "GPUs"
    for (kind, per_node), subs in found.items():
        where = _names([f"{s.provider} ({s.instance.type})" for s in subs])
        one = len(subs) == 1
        if subs[0].rounded:
            note = (f"compute.count: no machine has {count} x {asked}, so {where} "
                    f"{'rounds' if one else 'round'} it up to {per_node} {kind} {unit} per node: "
                    f"you pay for {per_node}")  # fmt: skip
            if tpu:
                note += "."
            else:
                times = per_node // count if per_node % count == 0 else f"{per_node}/{count}"
                note += (f", and {per_node} training processes run per node, so the global batch "
                         f"is {times} times what {count} would give (training.batch_size is per "
                         "device).")  # fmt: skip
            sold = "; ".join(
                f"{s.provider}: {', '.join(map(str, _counts(s.provider, asked)))}" for s in subs
            )
            note += (f" Set compute.count to a count {'it sells' if one else 'they sell'} "
                     f"({sold}) to choose yourself.")  # fmt: skip
        else:
            note = (f"compute.accelerator: no machine has {count} x {asked}, so {where} "
                    f"{'uses' if one else 'use'} "
                    f"{kind} instead: you pay the {kind} price. Set compute.accelerator: {kind} "
                    "to say so.")  # fmt: skip
        notes.append(note)
    return notes


def _counts(provider: str, accelerator: str) -> list[int]:
    return sorted({r.count for r in instances(provider)
                   if r.accelerator.lower() == accelerator.lower()})  # fmt: skip
