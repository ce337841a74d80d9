"""PII detectors: e-mail addresses, IBANs, payment-card numbers, IP addresses, phone numbers.

Each detector finds candidate spans and, where a pattern alone over-matches, validates them:

- IBAN: a country code with its registered length (SWIFT IBAN registry) and the ISO 13616
  mod-97 check digits, written compact or in groups of four.
- card: 13-19 digits, optionally grouped by spaces or dashes, passing the Luhn checksum.
- ip: IPv4 and IPv6 addresses that parse and are globally routable (private, loopback,
  link-local, reserved, documentation and multicast ranges are not personal data).
- phone: international numbers (``+CC ...``, E.164 and national groupings such as
  ``+49 30 12345678`` or ``+33 1 42 68 53 00``) through Google's libphonenumber port
  (``phonenumbers``), which knows every country's number lengths; plus North-American / UK
  national groupings (``(415) 555-2671``, ``020 7946 0958``) by pattern. Without
  ``phonenumbers`` installed, a pattern covers the international forms.

Spans never overlap: a span taken by an earlier kind is skipped by later ones (IBANs and cards
before phones, so an account number is not also counted as a phone). A card-shaped candidate
that fails Luhn still takes its span: a 16-digit number is not a phone either.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator

EMAIL = re.compile(
    r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"
)
IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.]|\.\d)")
# Two or more colons among hex groups; ipaddress decides what is an address (so "12:30:45" is not).
IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
# 13-19 digits, compact or grouped the way cards are printed: 4-4-4-4(-3) or Amex's 4-6-5, one
# separator kind throughout (other groupings are phone numbers: "+55 11 91234-5678").
CARD = re.compile(
    r"(?<![\d+-])(?:\d{13,19}|\d{4}([ -])\d{4}\1\d{4}\1\d{1,4}(?:\1\d{1,3})?|\d{4}([ -])\d{6}\2\d{4,5})"
    r"(?![\d-])"
)
# Country code + check digits, then compact or 4-character groups; the length table cuts it.
IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}")
# National groupings without a country code: North American 3-3-4 (area codes start 2-9) and
# numbers with a leading trunk 0 (UK and most of Europe: 020 7946 0958, 07700 900123), so plain
# counts ("12 345 678"), years and prices do not match; a leading '-', '#' or '/' marks an id.
NATIONAL_PHONE = re.compile(
    r"(?<![\w+#/.-])(?:\([2-9]\d{2}\) ?|[2-9]\d{2}[ .-])\d{3}[ .-]\d{4}(?![\w-])"
    r"|(?<![\w+#/.-])(?:\(0\d{1,4}\) ?|0\d{1,4}[ .-])\d{3,4}[ .-]?\d{3,4}(?![\w-])"
    r"|(?<![\w+#/.-])0[1-9](?:[ .-]\d{2}){4}(?![\w-])"  # French pairs: 01 42 68 53 00
)
# "00" is the international call prefix in most countries: 0049 30 12345678 = +49 30 12345678.
INTERNATIONAL_00 = re.compile(r"(?<![\w+])00(?=[1-9])")
# Used only without phonenumbers: + country code, then 2-5 groups (a "(0)" trunk prefix allowed).
INTERNATIONAL_PHONE = re.compile(
    r"(?<![\w+])\+\d{1,3}(?:[ .-]?\(0\))?(?:[ .-]?\(?\d{1,5}\)?){2,5}(?![\w-])"
)

# IBAN length per country (SWIFT IBAN registry, release 99, 2024).
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BR": 29, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20,
    "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18,
    "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IS": 26, "IT": 27, "JO": 30,
    "KW": 30, "KZ": 20, "LB": 28, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24,
    "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28,
    "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24, "SE": 24, "SI": 19, "SK": 24,
    "SM": 27, "TN": 24, "TR": 26, "UA": 29, "VG": 24, "XK": 20,
}  # fmt: skip

REPLACEMENT = {"email": "[EMAIL]", "iban": "[IBAN]", "card": "[CARD]", "ip": "[IP]",
               "phone": "[PHONE]"}  # fmt: skip

Span = tuple[int, int]


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum every payment card number satisfies."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(compact: str) -> bool:
    """ISO 13616: the registered length, and mod 97 of the rearranged number is 1."""
    if IBAN_LENGTHS.get(compact[:2]) != len(compact):
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def _regex(pattern: re.Pattern, valid: Callable[[str], bool] | None = None):
    def find(text: str) -> Iterator[tuple[Span, bool]]:
        for m in pattern.finditer(text):
            yield m.span(), valid is None or valid(m.group())

    return find


def _ibans(text: str) -> Iterator[tuple[Span, bool]]:
    # A match may run on into the next word ("... 0130 00 EUR"): cut it at the country's length.
    for m in IBAN.finditer(text):
        length = IBAN_LENGTHS.get(m.group()[:2])
        if length is None:
            continue
        positions = [i for i, ch in enumerate(m.group()) if ch != " "]
        if len(positions) < length:
            continue
        compact = "".join(m.group()[i] for i in positions[:length])
        end = m.start() + positions[length - 1] + 1
        if end < len(text) and text[end].isalnum():
            continue  # longer than that country's IBANs: some other code
        if iban_ok(compact):
            yield (m.start(), end), True


def _card_ok(text: str) -> bool:
    digits = re.sub(r"\D", "", text)
    # A run of one repeated digit passes Luhn trivially for some lengths; it is never a card.
    return 13 <= len(digits) <= 19 and len(set(digits)) > 1 and luhn_ok(digits)


def _cards(text: str) -> Iterator[tuple[Span, bool]]:
    # Failing candidates are reported too (as not ok): they still take their span.
    for m in CARD.finditer(text):
        yield m.span(), _card_ok(m.group())


def _public_ip(text: str) -> bool:
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return False  # e.g. an octet > 255 or a leading zero: a version number, not an address
    return addr.is_global and not addr.is_multicast


def _phone_digits_ok(text: str) -> bool:
    digits = re.sub(r"\D", "", text)
    # NANP numbers have 10 digits; trunk-0 national numbers 10-11 (UK, DE, FR, ...).
    return len(digits) == 10 if digits[0] != "0" else 10 <= len(digits) <= 12


def _phones(text: str) -> Iterator[tuple[Span, bool]]:
    try:
        import phonenumbers
    except ImportError:
        phonenumbers = None
    # Same length, so spans carry over: "0049 30 ..." is read as " +49 30 ...".
    plus = INTERNATIONAL_00.sub(" +", text)
    if phonenumbers is None:
        found = [(m.start(), m.end()) for m in INTERNATIONAL_PHONE.finditer(plus)
                 if 8 <= len(re.sub(r"\D", "", m.group())) <= 15]  # fmt: skip
    else:
        # Region "ZZ" (unknown): only numbers written with their "+CC" country code are taken,
        # each checked against that country's possible lengths.
        matcher = phonenumbers.PhoneNumberMatcher(plus, "ZZ",
                                                  leniency=phonenumbers.Leniency.POSSIBLE)  # fmt: skip
        found = [(match.start, match.end) for match in matcher]
    for start, end in found:
        yield (start - 1 if plus[start - 1 : start] == " " and text[start - 1 : start] == "0"
               else start, end), True  # fmt: skip
    for m in NATIONAL_PHONE.finditer(text):
        yield m.span(), _phone_digits_ok(m.group())


# Order matters: see the module docstring.
DETECTORS: list[tuple[str, Callable[[str], Iterator[tuple[Span, bool]]], bool]] = [
    # (kind, finder, whether a candidate that fails validation still takes its span)
    ("email", _regex(EMAIL), False),
    ("iban", _ibans, False),
    ("card", _cards, True),
    ("ip", _regex(IPV4, _public_ip), False),
    ("ip", _regex(IPV6, _public_ip), False),
    ("phone", _phones, False),
]
KINDS = tuple(dict.fromkeys(kind for kind, _, _ in DETECTORS))


def find_pii(text: str) -> list[tuple[str, int, int]]:
    """``(kind, start, end)`` for each PII span in ``text``, in text order."""
    taken: list[Span] = []
    found = []
    for kind, finder, blocks_when_invalid in DETECTORS:
        for (start, end), ok in finder(text):
            if any(start < e and s < end for s, e in taken):
                continue
            if ok or blocks_when_invalid:
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
        "detector": "phonenumbers" if _has_phonenumbers() else "patterns",
    }


def _has_phonenumbers() -> bool:
    try:
        import phonenumbers  # noqa: F401
    except ImportError:
        return False
    return True
