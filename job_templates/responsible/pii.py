"""PII detectors: e-mail addresses, phone numbers, public IPv4 addresses, payment-card numbers.

Each detector is a regular expression plus, where the pattern alone over-matches, a validator:
IPv4 candidates must parse and be globally routable (private, loopback, link-local, reserved,
documentation and multicast ranges are not personal data); card candidates must have 13-19 digits
and pass the Luhn checksum. Matches never overlap: a span taken by an earlier kind (cards before
phones, so a card number is not also counted as a phone) is skipped by later ones.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable

EMAIL = re.compile(
    r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"
)
IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.]|\.\d)")
# 13-19 digits, optionally grouped by single spaces or dashes (how cards are written).
CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
# International (+CC ...) or North-American style numbers; 7+ digits with separators, so plain
# years, prices and counts do not match.
PHONE = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?|\d{2,4}[ .-])\d{3,4}[ .-]\d{3,4}(?!\w)"
)

REPLACEMENT = {"email": "[EMAIL]", "card": "[CARD]", "ip": "[IP]", "phone": "[PHONE]"}


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum every payment card number satisfies."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card_ok(text: str) -> bool:
    digits = re.sub(r"\D", "", text)
    # A run of one repeated digit passes Luhn trivially for some lengths; it is never a card.
    return 13 <= len(digits) <= 19 and len(set(digits)) > 1 and luhn_ok(digits)


def _public_ipv4(text: str) -> bool:
    try:
        addr = ipaddress.IPv4Address(text)
    except ValueError:
        return False  # e.g. an octet > 255 or a leading zero: a version number, not an address
    return addr.is_global and not addr.is_multicast


def _phone_ok(text: str) -> bool:
    return 7 <= len(re.sub(r"\D", "", text)) <= 15  # E.164 caps numbers at 15 digits


# Order matters: see the module docstring.
DETECTORS: list[tuple[str, re.Pattern, Callable[[str], bool] | None]] = [
    ("email", EMAIL, None),
    ("card", CARD, _card_ok),
    ("ip", IPV4, _public_ipv4),
    ("phone", PHONE, _phone_ok),
]
KINDS = tuple(kind for kind, _, _ in DETECTORS)


def find_pii(text: str) -> list[tuple[str, int, int]]:
    """``(kind, start, end)`` for each PII span in ``text``, in text order."""
    taken: list[tuple[int, int]] = []
    found = []
    for kind, pattern, valid in DETECTORS:
        for m in pattern.finditer(text):
            start, end = m.span()
            if any(start < e and s < end for s, e in taken):
                continue
            ok = valid is None or valid(m.group())
            if ok or kind == "card":
                taken.append((start, end))
            if ok:
                found.append((kind, start, end))
    return sorted(found, key=lambda f: f[1])


def redact(text: str, spans: list[tuple[str, int, int]] | None = None) -> str:
    """``text`` with each PII span replaced by a ``[KIND]`` placeholder."""
    spans = find_pii(text) if spans is None else spans
    out, pos = [], 0
    for kind, start, end in spans:
        out.append(text[pos:start])
        out.append(REPLACEMENT[kind])
        pos = end
    out.append(text[pos:])
    return "".join(out)


def pii_summary(texts: list[str]) -> dict:
    """Counts per kind, records with any PII, and rates (per record)."""
    counts = dict.fromkeys(KINDS, 0)
    records_with = dict.fromkeys(KINDS, 0)
    any_pii = 0
    for text in texts:
        kinds = [k for k, _, _ in find_pii(text)]
        for k in kinds:
            counts[k] += 1
        for k in set(kinds):
            records_with[k] += 1
        any_pii += bool(kinds)
    n = max(len(texts), 1)
    return {
        "counts": counts,
        "records_with": records_with,
        "rates": {k: records_with[k] / n for k in KINDS},
        "records_with_any": any_pii,
        "rate": any_pii / n,
    }
