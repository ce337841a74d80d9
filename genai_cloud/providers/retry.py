"""One retry loop for the cloud calls whose SDKs do not retry well by themselves (Vertex, Azure).

Each provider says which of its errors are transient (throttling, timeouts) and which mean "no
capacity / quota / spot here" (another placement may have it); the loop is the same for all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import PlacementError


def call_with_retries(what: str, call: Callable[[], Any], *, attempts: int,
                      is_transient: Callable[[Exception], bool],
                      placement_problem: Callable[[Exception], tuple[str, str] | None],
                      unavailable: type[Exception], delay: Callable[[int], float],
                      sleep: Callable[[float], None],
                      translate: Callable[[Exception], Exception | None] = lambda exc: None):  # fmt: skip
    """``call()``, retried while it fails transiently.

    Raises:
        PlacementError: ``placement_problem`` recognised the error, as ``(kind, message)``.
        unavailable: still failing transiently after ``attempts`` tries.
        Any other error: ``translate(exc)`` when it gives one, else the error itself.
    """
    for attempt in range(attempts):
        try:
            return call()
        except Exception as exc:
            problem = placement_problem(exc)
            if problem is not None:
                raise PlacementError(f"{what}: {problem[1]}", kind=problem[0]) from None
            if not is_transient(exc):
                translated = translate(exc)
                if translated is None:
                    raise
                raise translated from None
            if attempt == attempts - 1:
                raise unavailable(f"{what}: no answer after {attempts} tries: {exc}") from None
            sleep(delay(attempt))
    raise AssertionError("unreachable")
