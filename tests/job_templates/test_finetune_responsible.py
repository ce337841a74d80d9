"""Responsible-AI wiring of the finetune recipe: the audit gate, bias mitigation (weighted loss),
and the model card."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from genai_cloud.loading import load_spec
from job_templates import entrypoint
from job_templates.common.text import IGNORE, Examples, example_weights, pack, tokenize
from job_templates.common.train import weighted_loss
from job_templates.config import Config, JobError

torch = pytest.importorskip("torch")
REVIEWS = Path(__file__).resolve().parents[2] / "examples" / "data" / "audit_reviews.jsonl"


def _run(spec: dict, tmp_path: Path) -> int:
    tmp_path.mkdir(parents=True, exist_ok=True)
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(load_spec(spec).to_json())
    return entrypoint.main([f"--spec={spec_path}", f"--model-dir={tmp_path / 'model'}",
                            f"--checkpoint-dir={tmp_path / 'ckpt'}",
                            f"--output-dir={tmp_path / 'out'}"])  # fmt: skip


def _reviews_spec(make_spec, **sections) -> dict:
    """A classifier on the 60 labelled reviews (group column ``group``) for a few steps."""
    return make_spec(
        model={"head": "sequence-classification"},
        data={"train": str(REVIEWS), "format": "classification", "group_field": "group",
              "eval_fraction": 0.2, "packing": False},
        training={"max_steps": 3, "batch_size": 8, "lr": 1e-3, "log_every": 1},
        **sections,
    )  # fmt: skip


# ---- the audit gate -----------------------------------------------------------------------------


def test_failing_audit_gate_stops_the_job_with_its_reasons(make_spec, tmp_path, capsys):
    # Measured on the 48-record training split: exact duplicates 0.083, max |DPL| 0.21.
    audit = {"gate": True, "fail_on": {"exact_duplicate_fraction": 0.05,
                                       "max_abs_dpl.group": 0.1, "pii_rate": 0.5}}  # fmt: skip
    code = _run(_reviews_spec(make_spec, audit=audit), tmp_path)
    assert code == entrypoint.EXIT_INPUT_ERROR
    err = capsys.readouterr().err
    assert "audit.fail_on" in err and "gate failed" in err
    assert "exact_duplicate_fraction = 0.08333 > 0.05" in err
    assert (
        "max_abs_dpl.group = 0.2071 > 0.1" in err and "pii_rate" not in err
    )  # only limits exceeded
    report = json.loads((tmp_path / "out" / "audit" / "audit.json").read_text())
    assert report["records"] == 48  # the training split only: 12 of 60 held out for eval
    assert not (tmp_path / "model").exists() and not (tmp_path / "out" / "metrics.json").exists()


def test_unknown_gate_metric_lists_the_valid_ones(make_spec, tmp_path, capsys):
    code = _run(_reviews_spec(make_spec, audit={"gate": True, "fail_on": {"pii": 0.1}}), tmp_path)
    assert code == entrypoint.EXIT_INPUT_ERROR
    err = capsys.readouterr().err
    assert "unknown metric(s) 'pii'" in err and "pii_rate" in err


def test_passing_gate_trains_and_the_card_carries_the_audit(make_spec, tmp_path):
    yaml = pytest.importorskip("yaml")
    code = _run(_reviews_spec(make_spec, audit={"gate": True, "fail_on": {"pii_rate": 0.5}}),
                tmp_path)  # fmt: skip
    assert code == 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["steps"] == 3 and metrics["audit"]["pii_rate"] == pytest.approx(2 / 48, abs=0.03)
    assert (tmp_path / "out" / "audit" / "audit.md").is_file()

    card = (tmp_path / "model" / "README.md").read_text()
    _, front, body = card.split("---\n", 2)
    meta = yaml.safe_load(front)
    assert meta["library_name"] == "transformers"
    assert meta["pipeline_tag"] == "text-classification"
    reported = {m["name"]: m["value"] for m in meta["model-index"][0]["results"][0]["metrics"]}
    assert reported["accuracy_after"] == pytest.approx(metrics["accuracy_after"], abs=1e-6)
    assert reported["steps"] == 3
    assert "48 training records audited" in body and "pii_rate" in body


FAIRNESS_EVAL = REVIEWS.parent / "fairness_eval.jsonl"


def test_fairness_gate_after_training_fails_with_the_model_saved_and_carded(make_spec, tmp_path,
                                                                             capsys):  # fmt: skip
    spec = _reviews_spec(make_spec, fairness={"gate": True, "bootstrap": 0, "fail_on": {
        "demographic_parity_ratio": 0.99, "accuracy": 0.0}})  # fmt: skip
    spec["data"]["eval"] = str(FAIRNESS_EVAL)
    code = _run(spec, tmp_path)
    assert code == entrypoint.EXIT_INPUT_ERROR
    err = capsys.readouterr().err
    assert "fairness gate failed after training" in err and "demographic_parity_ratio = " in err
    report = json.loads((tmp_path / "out" / "fairness" / "fairness.json").read_text())
    assert report["records"] == 80 and report["findings"][0]["gate"]
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["fairness"]["accuracy"] == report["metrics"]["accuracy"]
    card = (tmp_path / "model" / "README.md").read_text()
    assert "Mode: classifier. Data: `fairness_eval.jsonl` (80 records)." in card
    assert "Over its fail_on limit: demographic_parity_ratio" in card and str(tmp_path) not in card


def test_counterfactual_that_adds_nothing_is_in_the_model_card(make_spec, tmp_path, tiny_gpt2):
    plain = tmp_path / "plain.jsonl"
    plain.write_text("".join(json.dumps({"text": f"the film was long {i}"}) + "\n"
                             for i in range(40)))  # fmt: skip
    spec = make_spec(data={"train": str(plain)}, training={"max_steps": 1},
                     fairness={"mitigation": ["counterfactual"]})  # fmt: skip
    assert _run(spec, tmp_path) == 0
    card = (tmp_path / "model" / "README.md").read_text()
    assert "counterfactual augmentation added nothing" in card
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["mitigation"]["counterfactual"]["gender"] == 0
    assert str(tmp_path) not in card and str(tiny_gpt2) not in card


# ---- weights: normalised, carried by examples, used by the loss ---------------------------------


def test_example_weights_are_normalised_to_mean_one():
    assert example_weights([{"text": "a"}, {"text": "b"}]) is None
    got = example_weights([{"_weight": 1.0}, {"_weight": 3.0}, {}])  # missing counts as 1
    assert got == pytest.approx([0.6, 1.8, 0.6])
    with pytest.raises(JobError, match="finite number"):
        example_weights([{"_weight": -1.0, "_source": "d.jsonl:4"}])


def test_packing_gives_each_token_its_example_weight():
    pairs = [([1, 2, 3], [1, 2, 3]), ([4, 5], [4, 5]), ([6, 7, 8, 9], [6, 7, 8, 9])]
    blocks = pack(pairs, 4, pad_id=0, weights=[0.5, 2.0, 1.0])
    assert blocks.weights == [[0.5, 0.5, 0.5, 2.0], [2.0, 1.0, 1.0, 1.0], [1.0]]
    batch = blocks.batch([2])
    assert batch["weights"].tolist() == [[1.0, 0.0, 0.0, 0.0]]  # padding weighs nothing


class _Fixed:
    """A stand-in model whose forward returns fixed logits."""

    def __init__(self, logits):
        self.logits = logits

    def __call__(self, **inputs):
        assert "labels" not in inputs and "weights" not in inputs
        return Config(logits=self.logits)


def test_weighted_classifier_loss_by_hand():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    batch = {"input_ids": torch.zeros(3, 2, dtype=torch.long),
             "attention_mask": torch.ones(3, 2, dtype=torch.long),
             "labels": torch.tensor([0, 0, 1]), "weights": torch.tensor([0.5, 2.0, 0.5])}  # fmt: skip
    ce = [math.log(1 + math.exp(-2.0)), math.log(1 + math.exp(1.0)), math.log(2.0)]
    expected = (0.5 * ce[0] + 2.0 * ce[1] + 0.5 * ce[2]) / 3
    assert weighted_loss(_Fixed(logits), batch).item() == pytest.approx(expected, rel=1e-6)
    # Up-weighting the misclassified example raises the loss above the unweighted mean.
    assert weighted_loss(_Fixed(logits), batch).item() > sum(ce) / 3


def test_weighted_causal_loss_by_hand_and_equals_hf_with_unit_weights(tiny_gpt2):
    from transformers import AutoModelForCausalLM

    # Two sequences of 3 tokens, vocabulary 2: position t predicts label t+1.
    logits = torch.zeros(2, 3, 2)
    logits[0, 0, 1] = 1.0  # p(token 1) = sigmoid(1) at row 0, position 0
    batch = {"input_ids": torch.zeros(2, 3, dtype=torch.long),
             "attention_mask": torch.ones(2, 3, dtype=torch.long),
             "labels": torch.tensor([[0, 1, 0], [0, 1, IGNORE]]),
             "weights": torch.tensor([[3.0, 3.0, 3.0], [1.0, 1.0, 1.0]])}  # fmt: skip
    # Targets: row 0 -> 1 (p = sigmoid(1)), 0 (p = .5); row 1 -> 1 (p = .5); one IGNORE.
    expected = (3.0 * -math.log(1 / (1 + math.exp(-1.0))) + 3.0 * math.log(2) + math.log(2)) / 3
    assert weighted_loss(_Fixed(logits), batch).item() == pytest.approx(expected, rel=1e-6)

    model = AutoModelForCausalLM.from_pretrained(tiny_gpt2).eval()
    ids = torch.randint(0, 100, (2, 8), generator=torch.Generator().manual_seed(0))
    labels = ids.clone()
    labels[1, 5:] = IGNORE
    real = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    with torch.no_grad():
        own = model(**real).loss
        ours = weighted_loss(model, {**real, "weights": torch.ones(2, 8)})
    assert ours.item() == pytest.approx(own.item(), rel=1e-5)


def test_tokenize_carries_classifier_weights(tiny_gpt2):
    from transformers import AutoTokenizer

    data = Config(format="classification", text_field="text", label_field="label", max_seq_len=16)
    records = [{"text": "she liked it", "label": 1, "_weight": 2.0},
               {"text": "he did not", "label": 0, "_weight": 1.0},
               {"text": "fine", "label": 1, "_weight": 3.0}]  # fmt: skip
    examples = tokenize(records, AutoTokenizer.from_pretrained(tiny_gpt2), data)
    assert isinstance(examples, Examples) and examples.weights == pytest.approx([1.0, 0.5, 1.5])
    assert examples.batch([2, 0])["weights"].tolist() == pytest.approx([1.5, 1.0])


# ---- mitigation inside finetune -----------------------------------------------------------------


def test_mitigation_reaches_the_training_split_only(make_spec, tmp_path):
    plain = _reviews_spec(make_spec)
    assert _run(plain, tmp_path / "plain") == 0
    both = _reviews_spec(make_spec, fairness={"mitigation": ["counterfactual", "reweight"]})
    assert _run(both, tmp_path / "mitigated") == 0
    base = json.loads((tmp_path / "plain" / "out" / "metrics.json").read_text())
    got = json.loads((tmp_path / "mitigated" / "out" / "metrics.json").read_text())
    # Counterfactual copies add training examples; the 12 held-out records are untouched.
    assert got["dataset"]["examples"] > base["dataset"]["examples"] == 48
    assert got["eval_before"]["examples"] == base["eval_before"]["examples"] == 12
    # Same seed, same first batch order, different data and weights: a different first loss.
    assert got["train_losses"][0] != pytest.approx(base["train_losses"][0], rel=1e-4)
    card = (tmp_path / "mitigated" / "model" / "README.md").read_text()
    added = got["mitigation"]["counterfactual"]["gender"]
    assert got["dataset"]["examples"] == 48 + added and added > 0
    # Every copy mirrors its record into the other group (the group column rewritten) with the
    # same label, so group and label are already independent: reweighting has nothing left to do.
    assert (f"Bias mitigation on the training data: counterfactual augmentation added {added} "
            f"swapped copies (gender {added}); reweighting changed nothing") in card  # fmt: skip
    assert f"(48 -> {48 + added} training records)" in card


def test_reweight_on_a_causal_lm_is_a_clear_error(make_spec, tmp_path, capsys):
    code = _run(make_spec(fairness={"mitigation": ["reweight"]}), tmp_path)
    assert code == entrypoint.EXIT_INPUT_ERROR
    assert "fairness.mitigation: reweight needs labels" in capsys.readouterr().err


def test_fairness_gate_on_a_causal_lm_measures_the_templates(make_spec, tmp_path, capsys):
    spec = make_spec(training={"max_steps": 1},
                     fairness={"gate": True, "fail_on": {"stereotype_deviation": 0.0}})  # fmt: skip
    code = _run(spec, tmp_path)
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert set(metrics["fairness"]) >= {"loglik_gap.gender", "stereotype_preference_rate"}
    # 24 pairs: a deviation from 0.5 of exactly 0 is unlikely, and any other value crosses 0.0
    deviation = metrics["fairness"]["stereotype_deviation"]
    assert (code == entrypoint.EXIT_INPUT_ERROR) == (deviation > 0)
    assert "Mode: language-model." in (tmp_path / "model" / "README.md").read_text()


def test_an_audit_section_without_gate_reports_into_the_card_and_trains(make_spec, tmp_path):
    code = _run(_reviews_spec(make_spec, audit={"fail_on": {"exact_duplicate_fraction": 0.0}}),
                tmp_path)  # fmt: skip
    assert code == 0  # fail_on only stops the job under audit.gate
    report = json.loads((tmp_path / "out" / "audit" / "audit.json").read_text())
    assert report["findings"][0]["metric"] == "exact_duplicate_fraction"
    card = (tmp_path / "model" / "README.md").read_text()
    assert "48 training records audited" in card
    assert "Over its fail_on limit: exact_duplicate_fraction = 0.08333 > 0 (4 of 48" in card
    assert "Finding: pii_rate = 0.02083 > 0 (1 of 48 records hold PII: card 1)" in card
