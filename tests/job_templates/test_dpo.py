"""Recipe ``dpo``: our preference losses against TRL's own code, the recipe end to end (LoRA,
exact resume, reference-free losses), the spec's checks, and debiasing a tiny LM."""

from __future__ import annotations

import collections
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from genai_cloud.errors import SpecError
from genai_cloud.loading import load_spec
from job_templates import entrypoint
from job_templates.common.preference import batch_loss, encode_pairs, preference_metrics
from job_templates.config import Config

torch = pytest.importorskip("torch")
PREFERENCES = Path(__file__).resolve().parents[2] / "examples" / "data" / "preferences.jsonl"


def _records(n: int) -> list[dict]:
    lines = PREFERENCES.read_text().splitlines()[:n]
    return [
        {**json.loads(line), "_source": f"preferences.jsonl:{i + 1}"}
        for i, line in enumerate(lines)
    ]


DATA = Config.wrap({"prompt_field": "prompt", "chosen_field": "chosen",
                    "rejected_field": "rejected", "max_seq_len": 64})  # fmt: skip


@pytest.fixture(scope="module")
def lm_and_batch(tiny_gpt2):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_gpt2).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_gpt2)
    pairs = encode_pairs(_records(6), tokenizer, DATA)
    # A reference that is not the policy, so the DPO log-ratios are not all zero.
    pairs.ref_logps = -torch.rand(len(pairs), 2) * 5 - 150
    return model, pairs.batch(list(range(len(pairs))))


class _Accelerator:
    device = "cpu"

    def gather(self, x):
        return x

    def gather_for_metrics(self, x):
        return x


def _trl_dpo(model, batch, beta):
    """TRL's ``DPOTrainer._compute_loss`` on our batch: its model call returns the per-token
    completion log-probs TRL's fused head would (TRL's ``selective_log_softmax``)."""
    from trl import DPOTrainer
    from trl.trainer.utils import selective_log_softmax

    completion_mask = (batch["labels"] != -100).long()
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    per_token = (
        selective_log_softmax(logits[:, :-1], batch["input_ids"][:, 1:]) * completion_mask[:, 1:]
    )
    zeros = torch.zeros_like(per_token)

    def fused(**kwargs):
        return SimpleNamespace(log_probs=per_token, entropy=zeros, mean_logits=zeros,
                               is_top1=zeros.bool())  # fmt: skip

    metrics = collections.defaultdict(lambda: collections.defaultdict(list))
    trainer = SimpleNamespace(model=SimpleNamespace(training=True), accelerator=_Accelerator(),
                              aux_loss_enabled=False, ld_alpha=None, precompute_ref_logps=True,
                              f_divergence_type="reverse_kl", loss_types=["sigmoid"],
                              loss_weights=[1.0], beta=beta, use_weighting=False,
                              _metrics=metrics, _total_train_tokens=0, _tp_size=1)  # fmt: skip
    ref_chosen, ref_rejected = batch["ref_logps"].chunk(2)
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"],
              "completion_mask": completion_mask, "ref_chosen_logps": ref_chosen,
              "ref_rejected_logps": ref_rejected}  # fmt: skip
    loss = DPOTrainer._compute_loss(trainer, fused, inputs, False)
    return float(loss), {k: v[0] for k, v in metrics["train"].items()}


def test_dpo_loss_rewards_and_accuracy_equal_trls(lm_and_batch):
    pytest.importorskip("trl")
    model, batch = lm_and_batch
    settings = Config.wrap({"loss": "dpo", "beta": 0.1, "simpo_gamma": 0.5})
    with torch.no_grad():
        loss, chosen, rejected, _, _ = batch_loss(model, batch, settings)
    trl_loss, trl = _trl_dpo(model, batch, beta=0.1)
    assert float(loss) == pytest.approx(trl_loss, rel=1e-5)
    assert float((chosen - rejected).mean()) == pytest.approx(trl["rewards/margins"], rel=1e-5)
    assert float((chosen > rejected).float().mean()) == trl["rewards/accuracies"]
    assert 0 < trl["rewards/accuracies"] < 1  # the check compares something non-trivial


def _trl_fake(**attrs):
    return SimpleNamespace(accelerator=_Accelerator(), label_smoothing=0.0, alpha=0.0, **attrs)


def test_simpo_loss_equals_trls_cpo_simpo(lm_and_batch):
    pytest.importorskip("trl")
    from trl.experimental.cpo import CPOTrainer

    model, batch = lm_and_batch
    settings = Config.wrap({"loss": "simpo", "beta": 2.0, "simpo_gamma": 0.8})
    with torch.no_grad():
        loss, chosen, rejected, _, _ = batch_loss(model, batch, settings)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    avg = CPOTrainer.get_batch_logps(logits, batch["labels"], average_log_prob=True)
    fake = _trl_fake(loss_type="simpo", beta=2.0, simpo_gamma=0.8)
    losses, trl_chosen, trl_rejected = CPOTrainer.cpo_loss(fake, *avg.chunk(2))
    assert float(loss) == pytest.approx(float(losses.mean()), rel=1e-5)
    assert torch.allclose(chosen, trl_chosen, rtol=1e-5) and torch.allclose(rejected, trl_rejected,
                                                                            rtol=1e-5)  # fmt: skip


def test_orpo_loss_equals_trls_odds_ratio_plus_chosen_nll(lm_and_batch):
    pytest.importorskip("trl")
    import torch.nn.functional as F
    from trl.experimental.orpo import ORPOTrainer

    model, batch = lm_and_batch
    settings = Config.wrap({"loss": "orpo", "beta": 0.25, "simpo_gamma": 0.0})
    with torch.no_grad():
        loss, chosen, _, _, _ = batch_loss(model, batch, settings)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    avg = ORPOTrainer.get_batch_logps(logits, batch["labels"], average_log_prob=True)
    ratio_losses, trl_chosen, *_ = ORPOTrainer.odds_ratio_loss(_trl_fake(beta=0.25), *avg.chunk(2))
    # TRL's ORPO takes the chosen NLL as a token mean; here it is over the completion tokens
    # (the paper's Eq. 6) and averaged per pair: the mean of the per-pair token means.
    n = len(batch["labels"]) // 2
    per_pair_nll = torch.stack([F.cross_entropy(logits[i, :-1], batch["labels"][i, 1:],
                                                ignore_index=-100) for i in range(n)])  # fmt: skip
    assert float(loss) == pytest.approx(float(per_pair_nll.mean() - ratio_losses.mean()), rel=1e-5)
    assert torch.allclose(chosen, trl_chosen, rtol=1e-5)


# ---- the recipe -----------------------------------------------------------------------------------


def _dpo_spec(make_spec, tmp_path, **sections) -> dict:
    data = tmp_path / "prefs.jsonl"
    data.write_text("\n".join(PREFERENCES.read_text().splitlines()[:48]) + "\n")
    spec = make_spec(**sections)
    spec.update(task="dpo", name="tiny-dpo")
    spec["data"] = {"train": str(data), "format": "preference", "max_seq_len": 64,
                    "eval_fraction": 0.25}  # fmt: skip
    spec["training"] = {"max_steps": 6, "batch_size": 8, "lr": 5e-3, "log_every": 1, "seed": 3,
                        "checkpoint_every": 2, **sections.get("training", {})}  # fmt: skip
    return spec


def _run(spec: dict, run_dir: Path, *extra: str) -> int:
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "spec.json"
    path.write_text(load_spec(spec).to_json())
    return entrypoint.main([f"--spec={path}", f"--model-dir={run_dir / 'model'}",
                            f"--checkpoint-dir={run_dir / 'ckpt'}",
                            f"--output-dir={run_dir / 'out'}", *extra])  # fmt: skip


def _weights(model_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(model_dir / "model.safetensors")


def test_dpo_with_lora_learns_the_preference_and_resumes_exactly(make_spec, tmp_path):
    lora = {"model": {"lora": {"r": 4, "alpha": 8, "dropout": 0.1}}}  # dropout: RNG must resume
    spec = _dpo_spec(make_spec, tmp_path, **lora, training={"eval_every": 3})
    assert _run(spec, tmp_path / "whole") == 0
    whole = json.loads((tmp_path / "whole" / "out" / "metrics.json").read_text())
    assert whole["steps"] == 6 and whole["measured_on"] == "eval"
    assert whole["eval_before"]["pairs"] == 12 and whole["preference_accuracy_before"] == 0.0
    assert whole["reward_margin_after"] > 0 and whole["preference_accuracy_after"] > 0.5
    assert whole["eval_after"]["loss"] < whole["eval_before"]["loss"] == pytest.approx(0.693147)
    (during,) = whole["evals_during_training"]
    assert during["step"] == 3 and 0 < during["preference_accuracy"] <= 1

    assert _run(spec, tmp_path / "cut", "--preempt-at=3") == entrypoint.EXIT_PREEMPTED
    assert _run(spec, tmp_path / "cut") == 0
    cut = json.loads((tmp_path / "cut" / "out" / "metrics.json").read_text())
    assert cut["resumed_from_step"] == 3
    assert cut["train_losses"] == whole["train_losses"]
    assert cut["eval_after"] == whole["eval_after"]
    assert cut["eval_before"] == whole["eval_before"]  # the first run's, kept in the checkpoint
    assert cut["evals_during_training"] == whole["evals_during_training"]
    a, b = _weights(tmp_path / "whole" / "model"), _weights(tmp_path / "cut" / "model")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    card = (tmp_path / "whole" / "model" / "README.md").read_text()
    assert "preference_accuracy_after" in card and "task `dpo`" in card


@pytest.mark.parametrize("loss", ["simpo", "orpo"])
def test_reference_free_losses_train_without_a_reference(make_spec, tmp_path, loss):
    spec = _dpo_spec(make_spec, tmp_path, dpo={"loss": loss, "beta": 2.0 if loss == "simpo" else 0.2},
                     training={"max_steps": 4})  # fmt: skip
    assert _run(spec, tmp_path / loss) == 0
    m = json.loads((tmp_path / loss / "out" / "metrics.json").read_text())
    assert m["loss"] == loss and m["steps"] == 4
    assert m["reward_margin_after"] > m["reward_margin_before"]


def test_preference_metrics_count_ties_as_not_preferred(lm_and_batch):
    model, batch = lm_and_batch

    class Same:  # chosen and rejected get the same rewards: margin 0, accuracy 0
        def batch(self, indices):
            rows = {k: v for k, v in batch.items()}
            n = len(rows["input_ids"]) // 2
            for key in ("input_ids", "attention_mask", "labels"):
                rows[key] = torch.cat([rows[key][:n], rows[key][:n]])
            return rows

        def __len__(self):
            return len(batch["input_ids"]) // 2

    settings = Config.wrap({"loss": "simpo", "beta": 1.0, "simpo_gamma": 0.0})
    got = preference_metrics(model, Same(), "cpu", settings, batch_size=len(Same()))
    assert got["reward_margin"] == 0 and got["preference_accuracy"] == 0


def _problems(raw: dict) -> str:
    with pytest.raises(SpecError) as err:
        load_spec(raw)
    return str(err.value)


def test_spec_checks_for_dpo():
    base = {"name": "d", "task": "dpo", "model": {"name_or_path": "gpt2"},
            "data": {"train": "p.jsonl", "format": "preference"}}  # fmt: skip
    spec = load_spec(base)
    assert spec.dpo.loss == "dpo" and spec.dpo.beta == 0.1 and spec.data.chosen_field == "chosen"
    msg = _problems({**base, "data": {"train": "p.jsonl", "format": "jsonl"}})
    assert "data.format" in msg and "'preference'" in msg
    msg = _problems({**base, "dpo": {"loss": "simpo", "reference": "gpt2"}})
    assert "dpo.reference" in msg and "reference-free" in msg
    assert "dpo.loss" in _problems({**base, "dpo": {"loss": "kto"}})


# ---- debiasing a tiny LM --------------------------------------------------------------------------


def test_debias_pairs_prefer_the_anti_stereotype_continuation():
    from job_templates.responsible.debias_pairs import split_common_prefix, stereotype_pairs

    assert split_common_prefix("The girl was bad at math.", "The boy was bad at math.") == (
        "The", " girl was bad at math.", " boy was bad at math.")  # fmt: skip
    pair = stereotype_pairs([{"more": "Women are too emotional.", "less": "Men are too emotional.",
                              "bias_type": "gender"}])[0]  # fmt: skip
    assert (pair["prompt"], pair["chosen"], pair["rejected"]) == (
        "", "Men are too emotional.", "Women are too emotional.")  # fmt: skip


def _biased_lm(make_spec, tmp_path) -> Path:
    """The tiny GPT-2 fine-tuned on planted bias: each template is only ever seen with one
    gender's person phrases (alternating), and every stereotyped sentence of the bundled pairs."""
    from job_templates.fairness import read_pairs
    from job_templates.responsible.debias_pairs import DATA_DIR
    from job_templates.responsible.lexicon import load_lexicon

    templates = json.loads((DATA_DIR / "fairness_templates.json").read_text())["templates"]
    person = load_lexicon().axes["gender"].person
    lines = [t.format(person=p) for i, t in enumerate(templates)
             for p in person["female" if i % 2 else "male"]]  # fmt: skip
    lines += [pair["more"] for pair in read_pairs(None)]
    corpus = tmp_path / "biased.jsonl"
    corpus.write_text("".join(json.dumps({"text": line}) + "\n" for line in lines * 6))
    spec = make_spec(data={"train": str(corpus), "eval_fraction": 0.0, "max_seq_len": 32},
                     training={"max_steps": 60, "batch_size": 16, "lr": 3e-3})  # fmt: skip
    assert _run(spec, tmp_path / "biased") == 0
    return tmp_path / "biased" / "model"


@pytest.mark.slow  # ~45 s: a planted-bias fine-tune, then the debiasing DPO run
def test_dpo_debias_shrinks_stereotype_preference_and_loglik_gaps(make_spec, tmp_path):
    # Measured: stereotype preference 0.667 -> 0.5; gender per-token log-likelihood gap 0.63 ->
    # 0.07 (summed 46.2 -> 34.7); the largest per-token gap of any axis 0.63 -> 0.39. DPO has no
    # "equal" target: harder training overshoots (lr 1e-3 x 20 steps: stereotype preference 0.25,
    # other axes' gaps grow), so this run is short and gentle.
    biased = _biased_lm(make_spec, tmp_path)
    spec = _dpo_spec(make_spec, tmp_path, dpo={"debias": True, "beta": 0.1},
                     training={"max_steps": 20, "batch_size": 16, "lr": 3e-4,
                               "checkpoint_every": None})  # fmt: skip
    spec["model"]["name_or_path"] = str(biased)
    spec["data"]["eval_fraction"] = 0.0
    assert _run(spec, tmp_path / "debias") == 0
    m = json.loads((tmp_path / "debias" / "out" / "metrics.json").read_text())
    before, after = m["bias_before"], m["bias_after"]
    assert m["dataset"]["pairs"] > 100  # 48 report pairs + the stereotype and template pairs
    rate = before["stereotype_preference_rate"], after["stereotype_preference_rate"]
    assert rate[0] > 0.6 and rate[1] < rate[0] and abs(rate[1] - 0.5) < abs(rate[0] - 0.5)
    assert after["loglik_per_token_gap.gender"] < before["loglik_per_token_gap.gender"] / 2
    assert after["loglik_gap.gender"] < before["loglik_gap.gender"]
    assert after["loglik_per_token_gap"] < before["loglik_per_token_gap"]  # the largest, any axis
    assert after["loglik_gap"] < before["loglik_gap"]


def test_a_named_reference_model_is_loaded_and_errors_name_dpo_reference(make_spec, tmp_path,
                                                                         tiny_gpt2, capsys):  # fmt: skip
    spec = _dpo_spec(make_spec, tmp_path, dpo={"reference": str(tiny_gpt2)},
                     training={"max_steps": 1})  # fmt: skip
    assert _run(spec, tmp_path / "ref") == 0
    m = json.loads((tmp_path / "ref" / "out" / "metrics.json").read_text())
    assert m["eval_before"]["loss"] == pytest.approx(0.693147)  # the reference is the start model
    spec["dpo"]["reference"] = str(tmp_path / "missing-model")
    assert _run(spec, tmp_path / "bad") == entrypoint.EXIT_INPUT_ERROR
    assert "dpo.reference" in capsys.readouterr().err
