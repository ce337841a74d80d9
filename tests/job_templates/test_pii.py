"""PII detection on a planted set: every kind in several national formats, and look-alikes that
are not PII (dates, order ids, versions, times, private addresses, failing checksums)."""

from __future__ import annotations

import pytest

from job_templates.responsible import pii

# (sentence, the PII it holds as (kind, exact span text)). Card and IBAN numbers are the issuers'
# published test numbers; phone numbers use fictional or directory-style numbers.
PLANTED = [
    ("Call me on +49 30 12345678 tomorrow.", [("phone", "+49 30 12345678")]),
    ("Paris office: +33 1 42 68 53 00.", [("phone", "+33 1 42 68 53 00")]),
    ("Mobile +91 98765 43210 (after 6pm)", [("phone", "+91 98765 43210")]),
    ("Sydney desk +61 2 9876 5432", [("phone", "+61 2 9876 5432")]),
    (
        "US: +1 415-555-2671 or (415) 555-2671",
        [("phone", "+1 415-555-2671"), ("phone", "(415) 555-2671")],
    ),
    (
        "London +44 20 7946 0958, locally 020 7946 0958",
        [("phone", "+44 20 7946 0958"), ("phone", "020 7946 0958")],
    ),
    ("E.164 form +14155552671 works too", [("phone", "+14155552671")]),
    (
        "Tokyo +81 3-1234-5678; Madrid +34 912 34 56 78",
        [("phone", "+81 3-1234-5678"), ("phone", "+34 912 34 56 78")],
    ),
    ("Sao Paulo +55 11 91234-5678", [("phone", "+55 11 91234-5678")]),
    ("Berlin with trunk +49 (0)30 12345678", [("phone", "+49 (0)30 12345678")]),
    ("ring 212.555.0199 now", [("phone", "212.555.0199")]),
    ("UK mobile 07700 900123", [("phone", "07700 900123")]),
    ("From abroad 0049 30 12345678", [("phone", "0049 30 12345678")]),
    (
        "Berlin locally 030 12345678 or (020) 7946 0958",
        [("phone", "030 12345678"), ("phone", "(020) 7946 0958")],
    ),
    ("Paris locally 01 42 68 53 00", [("phone", "01 42 68 53 00")]),
    ("IBAN DE89 3704 0044 0532 0130 00 EUR", [("iban", "DE89 3704 0044 0532 0130 00")]),
    ("pay GB82 WEST 1234 5698 7654 32 today", [("iban", "GB82 WEST 1234 5698 7654 32")]),
    ("compact NL91ABNA0417164300.", [("iban", "NL91ABNA0417164300")]),
    ("FR: FR14 2004 1010 0505 0001 3M02 606", [("iban", "FR14 2004 1010 0505 0001 3M02 606")]),
    ("visa 4111 1111 1111 1111", [("card", "4111 1111 1111 1111")]),
    (
        "mc 5500-0000-0000-0004 amex 378282246310005",
        [("card", "5500-0000-0000-0004"), ("card", "378282246310005")],
    ),
    (
        "server 8.8.8.8 and 2001:4860:4860::8888",
        [("ip", "8.8.8.8"), ("ip", "2001:4860:4860::8888")],
    ),
    ("mail jane.doe@example.com", [("email", "jane.doe@example.com")]),
]
NEGATIVES = [
    "Shipped on 2024-01-15, invoiced 15/01/2024, paid 12.03.2024.",
    "Order ORD-2024-0042 and order #100234567 are late.",
    "Upgrade from v1.2.3 to 3.10.13 or 2.5.0-rc1.",
    "ISBN 978-3-16-148410-0, zip 94107, price $1,299.00.",
    "The meeting is at 12:30:45 on 2023-11-05 14:22.",
    "Private hosts 192.168.0.1, 10.0.0.7, ::1, fe80::1 and docs 2001:db8::1.",
    "Not a card 4012 8888 8888 1882; not an IBAN DE00 3704 0044 0532 0130 00.",
    "Build 20240115.3 served 1,234,567 users in 2024.",
    "Tracking 1Z999AA10123456784 and SKU AB-1234-5678.",
    "Scored 98 of 100 in 45 minutes; room 4B, floor 12.",
    "SKU 123-4567-890, 12 345 678 users, score 123 456 789, order 100-200-3000.",
    "Seasons 2019 2020 2021; pages 120-134; ticket 2024/0012/334.",
]


def _found(text):
    return [(kind, text[s:e]) for kind, s, e in pii.find_pii(text)]


def test_planted_pii_recall_and_precision():
    expected = {(i, k, t) for i, (_, spans) in enumerate(PLANTED) for k, t in spans}
    found = {(i, k, t) for i, (text, _) in enumerate(PLANTED) for k, t in _found(text)}
    found |= {(f"neg{i}", k, t) for i, text in enumerate(NEGATIVES) for k, t in _found(text)}
    true_positives = expected & found
    recall = len(true_positives) / len(expected)
    precision = len(true_positives) / len(found)
    assert found - expected == set(), "false positives"
    assert expected - found == set(), "missed"
    assert (recall, precision) == (1.0, 1.0)


@pytest.mark.parametrize("text", [
    "+49 30 12345678", "+33 1 42 68 53 00", "+91 98765 43210", "+61 2 9876 5432",
])  # fmt: skip
def test_international_phones_are_redacted(text):
    assert pii.redact(f"call {text} now") == "call [PHONE] now"


def test_iban_mod97_and_length():
    assert pii.iban_ok("DE89370400440532013000")
    assert not pii.iban_ok("DE88370400440532013000")  # check digits off by one
    assert not pii.iban_ok("DE8937040044053201300")  # one character short for DE


def test_pattern_fallback_without_phonenumbers(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_phonenumbers(name, *args, **kwargs):
        if name == "phonenumbers":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_phonenumbers)
    assert _found("Call +33 1 42 68 53 00 or +61 2 9876 5432.") == [
        ("phone", "+33 1 42 68 53 00"),
        ("phone", "+61 2 9876 5432"),
    ]
    assert _found("Shipped on 2024-01-15, version 3.10.13.") == []
    assert pii.pii_summary(["x"])["detector"] == "patterns"
