"""Errors the CLI prints as a headline and a message, without a traceback.

Anything that is a user's mistake (a bad spec, a missing file, an unknown provider) raises a
``GenaiCloudError``; anything else is our bug and keeps its traceback.
"""

from __future__ import annotations


class GenaiCloudError(Exception):
    """A user-facing error: ``headline`` is one line, ``message`` says what would be valid."""

    headline = "genai-cloud error"
    exit_code = 2

    def __init__(self, message: str, *, headline: str | None = None):
        super().__init__(message)
        self.message = message
        if headline:
            self.headline = headline

    def __str__(self) -> str:
        # A one-line message follows the headline; a longer one (a list of problems, each
        # "  - ...") starts on its own line, so the first problem is not glued to the headline.
        message = self.message.strip("\n")
        sep = "\n" if "\n" in message else " "
        return f"{self.headline}:{sep}{message}"


class SpecError(GenaiCloudError):
    """The spec is invalid. ``errors`` lists every problem, each naming its field path."""

    headline = "Invalid job spec"

    def __init__(self, errors: list[str], *, source: str | None = None):
        self.errors = list(errors)
        self.source = source
        where = f" in {source}" if source else ""
        lines = "\n".join(f"  - {e}" for e in self.errors)
        super().__init__(f"{len(self.errors)} problem(s){where}:\n{lines}")


class DataError(GenaiCloudError):
    """Training or evaluation data is missing or malformed (names file:line)."""

    headline = "Invalid data"


class ProviderError(GenaiCloudError):
    """Unknown provider, unsupported feature, or a provider answer we cannot act on."""

    headline = "Provider error"


class UnsupportedFeatureError(ProviderError):
    headline = "Unsupported feature"


# Why a placement was passed over. "capacity": the cloud has no machines of that kind now;
# "quota": this account may not have more of them; "spot": no spot/preemptible capacity.
PLACEMENT_KINDS = ("capacity", "quota", "spot")


class PlacementError(ProviderError):
    """A provider refused a placement for a reason another placement may not share (raised by
    each provider's operations, acted on by ``failover``)."""

    headline = "No capacity"

    def __init__(self, message: str, *, kind: str):
        super().__init__(message)
        self.kind = kind if kind in PLACEMENT_KINDS else "capacity"


class MissingDependencyError(GenaiCloudError):
    """An optional SDK is not installed; the message carries the pip command that fixes it."""

    headline = "Missing dependency"


class JobFailedError(GenaiCloudError):
    headline = "Job failed"


def require(module: str, extra: str):
    """Import an optional module, or raise with the install hint for its extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - exercised through callers
        raise MissingDependencyError(
            f"`{module}` is not installed ({exc}). Install it with: pip install 'genai-cloud[{extra}]'"
        ) from None
