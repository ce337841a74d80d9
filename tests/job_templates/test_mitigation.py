"""Bias mitigation: the transforms themselves, and a planted-bias experiment showing they work."""

from __future__ import annotations

import json
import random

import pytest

from genai_cloud.loading import load_spec
from job_templates.config import Config, JobError
from job_templates.fairness import evaluate_groups
from job_templates.responsible.lexicon import load_lexicon
from job_templates.responsible.mitigation import (
    WEIGHT_KEY,
    apply_mitigation,
    counterfactual_augment,
    record_groups,
    reweight,
    swap_map,  # fmt: skip
    swap_terms,
)


def finetune_spec(mitigation: list[str], fmt: str = "classification") -> Config:
    raw = {"name": "mitigate", "task": "finetune",
           "model": {"name_or_path": "unused", "head": "sequence-classification"},
           "data": {"train": "unused", "format": fmt}, "fairness": {"mitigation": mitigation}}  # fmt: skip
    if fmt != "classification":
        raw["model"]["head"] = "causal-lm"
    return Config.wrap(json.loads(load_spec(raw).to_json()))


def test_reweight_matches_kamiran_calders_by_hand():
    # 4 in group a (3 positive), 2 in group b (0 positive); n = 6
    groups = ["a", "a", "a", "a", "b", "b", None]
    labels = [1, 1, 1, 0, 0, 0, 1]
    w = reweight(groups, labels)
    # w(a,1) = P(a)P(1)/P(a,1) = (4/6)(3/6)/(3/6) = 2/3 ; w(a,0) = (4/6)(3/6)/(1/6) = 2
    # w(b,0) = (2/6)(3/6)/(2/6) = 1/2 ; ungrouped records keep weight 1
    assert w == pytest.approx([2 / 3, 2 / 3, 2 / 3, 2, 0.5, 0.5, 1.0])
    # weighted, group and label are independent: P_w(y=1 | a) = P_w(y=1) = 1/2
    pos_a = sum(x for x, g, y in zip(w, groups, labels) if g == "a" and y == 1)
    all_a = sum(x for x, g in zip(w, groups) if g == "a")
    assert pos_a / all_a == pytest.approx(0.5)


def test_swap_terms_keeps_case_and_whole_words():
    mapping = swap_map(load_lexicon().axes["gender"])
    assert swap_terms("She told her brother. HE agreed.", mapping) == \
        "He told his sister. SHE agreed."  # fmt: skip
    assert swap_terms("The theme is shepherds", mapping) == "The theme is shepherds"


def test_counterfactual_augment_adds_swapped_copies_only_where_text_changes():
    records = [{"text": "she won", "label": 1}, {"text": "the film won", "label": 0}]
    out = counterfactual_augment(records, ["text"], load_lexicon(), axes=["gender"])
    assert [r["text"] for r in out] == ["she won", "the film won", "he won"]
    assert out[2]["label"] == 1 and out[2]["_counterfactual"] == "gender"


def test_counterfactual_needs_swap_pairs(tmp_path):
    path = tmp_path / "lexicon.json"
    path.write_text(json.dumps({"axes": {"tone": {"groups": {"a": ["calm"], "b": ["loud"]}}}}))
    with pytest.raises(JobError, match="needs an axis with 'swap_pairs'"):
        counterfactual_augment([{"text": "x"}], ["text"], load_lexicon(path))


@pytest.mark.parametrize("axis,text,swapped", [
    ("age", "The young man loved it", "The old man loved it"),
    ("age", "Great for the young.", "Great for the elderly."),
    ("race_ethnicity", "A Black woman wrote it", "A White woman wrote it"),
    ("religion", "We met at the church", "We met at the mosque"),
    ("nationality", "The German crew", "The Russian crew"),
    ("disability", "A disabled reviewer", "A non-disabled reviewer"),
])  # fmt: skip
def test_every_bundled_axis_has_swap_pairs(axis, text, swapped):
    lexicon = load_lexicon()
    assert swap_terms(text, swap_map(lexicon.axes[axis])) == swapped
    # every swap word is a term of its axis, so a swapped copy is about the other group
    terms = {t for ts in lexicon.axes[axis].groups.values() for t in ts}
    assert {w for pair in lexicon.axes[axis].swap_pairs for w in pair} <= terms


def test_bundled_age_axis_knows_bare_young():
    assert load_lexicon().axes["age"].groups_in("Made for the young") == ["young"]


def test_counterfactual_rewrites_the_group_column_of_copies():
    records = [{"text": "she won", "label": 1, "g": "female"},
               {"text": "the young man won", "label": 0, "g": "young"},
               {"text": "he won", "label": 0, "g": "team-7"}]  # fmt: skip
    out = counterfactual_augment(records, ["text"], load_lexicon(), group_field="g")
    copies = {r["text"]: r["g"] for r in out[3:]}
    # "young man" is on two axes: gender swaps man -> woman (group column about age: kept),
    # age swaps young man -> old man (group column rewritten to the new age group)
    assert copies == {"he won": "male", "the young woman won": "young",
                      "the old man won": "old", "she won": "team-7"}  # fmt: skip


def test_mitigation_that_adds_nothing_says_so(caplog):
    from job_templates.responsible.mitigation import mitigate

    records = [{"text": "the film was long", "label": 1}, {"text": "a dull plot", "label": 0}]
    with caplog.at_level("WARNING"):
        out, summary = mitigate(records, finetune_spec(["counterfactual"]), load_lexicon())
    assert out == records and sum(summary["counterfactual"].values()) == 0
    assert "added nothing" in summary["lines"][0] and "added nothing" in caplog.text
    assert set(summary["counterfactual"]) == {"gender", "race_ethnicity", "religion", "age",
                                              "disability", "nationality"}  # fmt: skip


def test_reweight_needs_labels():
    with pytest.raises(JobError, match="reweight needs labels"):
        apply_mitigation(
            [{"text": "she"}], finetune_spec(["reweight"], fmt="jsonl"), load_lexicon()
        )


def test_record_groups_prefers_the_group_column():
    records = [{"text": "she and he", "g": "x"}, {"text": "she", "g": ""}]
    assert record_groups(records, load_lexicon(), "text", group_field="g") == ["x", None]
    assert record_groups(records, load_lexicon(), "text") == [None, "female"]


# --------------------------------------------------------------------------------------------
# Planted bias: sentiment decides the label, but in training 90% of positive examples are about
# a woman and 90% of negative ones about a man, and 30% of texts carry a neutral word, so the
# only clue on those is the subject's gender. The evaluation set has gender independent of the
# label; a model that learned the shortcut selects women far more often.

POS = ["lovely", "great", "superb", "wonderful", "brilliant", "charming", "delightful", "moving"]
NEG = ["awful", "boring", "dreadful", "terrible", "dull", "clumsy", "tedious", "painful"]
NEU = ["okay", "average", "ordinary", "fine", "long", "short"]


def planted(n: int, rng: random.Random, p_female_pos: float, p_female_neg: float) -> list[dict]:
    rows = []
    for _ in range(n):
        y = rng.random() < 0.5
        female = rng.random() < (p_female_pos if y else p_female_neg)
        subject = rng.choice(["she", "the woman"] if female else ["he", "the man"])
        word = rng.choice(NEU) if rng.random() < 0.3 else rng.choice(POS if y else NEG)
        rows.append({"text": f"{subject} found it {word}", "label": int(y),
                     "g": "female" if female else "male"})  # fmt: skip
    return rows


def train_and_measure(train, evals, mitigation, tokenizer) -> dict:
    from job_templates.responsible.classifier import fit_classifier, predict
    from job_templates.responsible.tiny import tiny_bert_classifier

    records = apply_mitigation(train, finetune_spec(mitigation), load_lexicon())
    model = tiny_bert_classifier(tokenizer, seed=0)
    fit_classifier(model, tokenizer, [r["text"] for r in records], [r["label"] for r in records],
                   [r.get(WEIGHT_KEY, 1.0) for r in records], epochs=10, lr=2e-3, batch_size=32)  # fmt: skip
    ids, _ = predict(model, tokenizer, [r["text"] for r in evals])
    labels = [r["label"] for r in evals]
    res = evaluate_groups(labels, ids, [r["g"] for r in evals], bootstrap=0)
    res["metrics"]["accuracy"] = sum(p == y for p, y in zip(ids, labels)) / len(labels)
    res["metrics"]["train_records"] = len(records)
    return res["metrics"]


@pytest.mark.slow
def test_mitigation_shrinks_a_planted_fairness_gap():
    import torch

    from job_templates.responsible.tiny import word_tokenizer

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: extra threads only contend on a shared machine
    try:
        rng = random.Random(0)
        train, evals = planted(600, rng, 0.9, 0.1), planted(400, rng, 0.5, 0.5)
        tokenizer = word_tokenizer(POS + NEG + NEU + ["she he the woman man found it"])
        runs = {m: train_and_measure(train, evals, [m] if m else [], tokenizer)
                for m in ("", "reweight", "counterfactual")}  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    for name, m in runs.items():
        print(f"{name or 'none':>14}: " + ", ".join(f"{k}={v:.3f}" for k, v in m.items()))
    base = runs[""]
    assert base["demographic_parity_difference"] > 0.2  # the shortcut was learned
    assert base["equalized_odds_difference"] > 0.2
    for name in ("reweight", "counterfactual"):
        m = runs[name]
        assert m["demographic_parity_difference"] < base["demographic_parity_difference"] / 3, name
        assert m["equalized_odds_difference"] < base["equalized_odds_difference"] / 3, name
        assert m["accuracy"] > 0.8, name  # fairer without giving up the real signal
