"""TPU slices: the shapes each generation is sold in, and what a spec's count / nodes / topology ask.

A TPU job asks for chips, in one of two ways that must agree when both are given:
``compute.count`` (the slice's chips: 16 tpu-v5e chips is a 4x4 slice) or ``gcp.tpu_topology``
(its shape; the product is the chip count). ``compute.nodes`` does not apply: a slice larger than
one host spans several hosts by itself, and Vertex runs it as one replica.

Shapes (Cloud TPU documentation, "TPU v5e" / "TPU v6e" / "TPU v4" / "TPU v5p" configuration
pages; https://cloud.google.com/tpu/docs/v5e and siblings):

- v5e, v6e: 2-D tori 1x1 2x2 2x4 (one host: 1, 4 or 8 chips), then 4x4 4x8 8x8 8x16 16x16 (up to
  256 chips, 64 hosts), whose hosts hold 4 chips each (ct5lp-hightpu-4t / ct6e-standard-4t).
- v4, v5p: 3-D AxBxC with 4 chips per host: 2x2x1 (one host), 2x2x2, 2x2x4, 2x4x4, then any
  shape whose three sides are multiples of 4 (4x4x4, 4x4x8, 4x8x8, 8x8x8, ...), up to 4096 chips
  (v4, 16x16x16) and 8960 (v5p, 16x20x28).

Pure and light: imported by spec validation, the catalog, cost and the Vertex render.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_SHAPE = re.compile(r"^[1-9]\d*(x[1-9]\d*){1,2}$")
_SMALL_3D = ((1, 2, 2), (2, 2, 2), (2, 2, 4), (2, 4, 4))  # sorted sides; above: multiples of 4
# The 3-D shape chosen for a chip count when only compute.count is given (cubes where possible).
_DEFAULT_3D = {4: "2x2x1", 8: "2x2x2", 16: "2x2x4", 32: "2x4x4", 64: "4x4x4", 128: "4x4x8",
               256: "4x8x8", 512: "8x8x8", 1024: "8x8x16", 2048: "8x16x16", 4096: "16x16x16"}  # fmt: skip


@dataclass(frozen=True)
class Generation:
    name: str
    dims: int  # 2 (v5e, v6e) or 3 (v4, v5p)
    host_chips: int  # chips per host of a multi-host slice
    single_host_max: int  # the most chips one host holds
    max_chips: int
    shapes_2d: tuple[str, ...] = ()


_2D = ("1x1", "2x2", "2x4", "4x4", "4x8", "8x8", "8x16", "16x16")
GENERATIONS = {
    "tpu-v5e": Generation("tpu-v5e", 2, 4, 8, 256, _2D),
    "tpu-v6e": Generation("tpu-v6e", 2, 4, 8, 256, _2D),
    "tpu-v4": Generation("tpu-v4", 3, 4, 4, 4096),
    "tpu-v5p": Generation("tpu-v5p", 3, 4, 4, 8960),
}


@dataclass(frozen=True)
class Slice:
    """The slice a spec asks for: ``topology`` over ``hosts`` hosts of ``chips_per_host``."""

    accelerator: str
    topology: str
    chips: int
    hosts: int
    chips_per_host: int


def generation(accelerator: str) -> Generation | None:
    return GENERATIONS.get(accelerator.lower())


def sides(topology: str) -> tuple[int, ...] | None:
    """``"2x2x4"`` -> ``(2, 2, 4)``; None when it does not look like a shape."""
    if not _SHAPE.match(topology):
        return None
    return tuple(int(part) for part in topology.split("x"))


def is_shape(gen: Generation, topology: str) -> bool:
    """Whether ``topology`` is a slice shape ``gen`` is sold in."""
    found = sides(topology)
    if found is None or len(found) != gen.dims:
        return False
    if gen.dims == 2:
        return topology in gen.shapes_2d
    ordered = tuple(sorted(found))
    chips = math.prod(found)
    return chips <= gen.max_chips and (ordered in _SMALL_3D or all(s % 4 == 0 for s in found))


def slice_chip_counts(gen: Generation) -> list[int]:
    """The chip counts ``compute.count`` can name for ``gen``, smallest first."""
    if gen.dims == 2:
        return [math.prod(sides(s)) for s in gen.shapes_2d]
    return sorted(c for c in _DEFAULT_3D if c <= gen.max_chips)


def default_topology(gen: Generation, chips: int) -> str | None:
    if gen.dims == 2:
        return next((s for s in gen.shapes_2d if math.prod(sides(s)) == chips), None)
    return _DEFAULT_3D.get(chips) if chips <= gen.max_chips else None


COUNT_MAX = 64  # the bound on compute.count in spec.ComputeSpec: larger slices go by their shape


def _how(gen: Generation) -> str:
    """The one way to ask for a slice, for every count / nodes / topology message."""
    counts = ", ".join(str(c) for c in slice_chip_counts(gen) if c <= COUNT_MAX)
    shapes = " ".join(gen.shapes_2d) if gen.dims == 2 else (
        "2x2x1 2x2x2 2x2x4 2x4x4, then AxBxC with every side a multiple of 4")  # fmt: skip
    return (f"ask for a {gen.name} slice by its chips, compute.count ({counts}), or by its shape, "
            f"gcp.tpu_topology ({shapes})")  # fmt: skip


def slice_problems(accelerator: str, count: int, nodes: int,
                   topology: str | None) -> list[tuple[str, str]]:  # fmt: skip
    """``(field, message)`` for every way ``count`` / ``nodes`` / ``topology`` fail to name a
    slice of ``accelerator``; [] when they do (or the accelerator is no TPU we know)."""
    gen = generation(accelerator)
    if gen is None:
        return [("gcp.tpu_topology", "only applies to TPU accelerators")] if topology else []
    problems = []
    if nodes > 1:
        chips = nodes * gen.host_chips
        shape = default_topology(gen, chips)
        example = f"compute.count: {chips} is a {shape} slice on {nodes} hosts; " if shape else ""
        problems.append(("compute.nodes", ("a TPU slice spans its hosts by itself: leave "
                         f"compute.nodes at 1 and {example}{_how(gen)}")))  # fmt: skip
    if topology:
        if not is_shape(gen, topology):
            problems.append(("gcp.tpu_topology", f"{topology!r} is not a {gen.name} slice; "
                             + _how(gen)))  # fmt: skip
        elif count not in _counts_for(gen, math.prod(sides(topology))):
            problems.append(("compute.count", (f"{count} chips, but gcp.tpu_topology {topology} "
                             f"has {math.prod(sides(topology))}; give one of the two (or, for a "
                             f"multi-host slice, its {gen.host_chips} chips per host)")))  # fmt: skip
    elif count > gen.single_host_max and count not in slice_chip_counts(gen):
        problems.append(("compute.count", f"no {gen.name} slice has {count} chips; {_how(gen)}"))
    return problems


def host_chips(accelerator: str, chips: int) -> int:
    """The chips of the machine (host) that carries a ``chips``-chip slice: the slice itself
    when one host holds it, else one host of the multi-host slice."""
    gen = generation(accelerator)
    if gen is None or chips <= gen.single_host_max:
        return chips
    return gen.host_chips


def _counts_for(gen: Generation, chips: int) -> tuple[int, ...]:
    """What compute.count may say next to a ``chips``-chip topology: nothing (1), the chips, or
    for a multi-host slice the chips of one host (what a TPU VM's machine type carries)."""
    return (1, chips, gen.host_chips) if chips > gen.single_host_max else (1, chips)


def resolve(accelerator: str, count: int, topology: str | None,
            single_host_topology: str | None = None) -> Slice | None:  # fmt: skip
    """The slice a valid spec asks for (None: not a TPU). ``single_host_topology``: the shape of
    the one-host machine the catalog picked for ``count`` (when the slice fits one host)."""
    gen = generation(accelerator)
    if gen is None:
        return None
    chips = math.prod(sides(topology)) if topology else count
    if chips <= gen.single_host_max:
        shape = topology or single_host_topology or default_topology(gen, chips)
        return Slice(gen.name, shape, math.prod(sides(shape)), 1, math.prod(sides(shape)))
    shape = topology or default_topology(gen, chips)
    return Slice(gen.name, shape, chips, chips // gen.host_chips, gen.host_chips)
