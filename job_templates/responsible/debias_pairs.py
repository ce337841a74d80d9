"""Preference pairs that teach a causal LM less bias (``dpo.debias``), and the bias they target.

Two sources, both shipped with the fairness recipe:

- **Stereotype sentence pairs** (CrowS-Pairs style ``more`` / ``less``): the words the two
  sentences share at the start become the prompt; the anti-stereotype continuation is *chosen*,
  the stereotyped one *rejected*.
- **Counterfactual templates** ("The {person} worked as a nurse.") x each lexicon axis's person
  phrases: for every template, phrase slot and axis, the sentence of the group the model finds
  most likely (per token) is *rejected* and that of the least likely group *chosen* (prompt: the template's
  text before ``{person}``), so training pulls the groups' log-likelihoods together. The pairs
  depend on the model they are built with: build them with the starting model.

``measure_bias`` gives the fairness recipe's language-model figures (max-min log-likelihood gap
per axis, stereotype preference rate) for a before / after comparison.
"""

from __future__ import annotations

import json
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent.parent / "data"


def split_common_prefix(a: str, b: str) -> tuple[str, str, str]:
    """``(shared leading words, rest of a, rest of b)``; the rests keep their leading space."""
    wa, wb = a.split(" "), b.split(" ")
    n = 0
    while n < min(len(wa), len(wb)) - 1 and wa[n] == wb[n]:
        n += 1
    prompt = " ".join(wa[:n])
    rest_a, rest_b = " ".join(wa[n:]), " ".join(wb[n:])
    if prompt:
        rest_a, rest_b = " " + rest_a, " " + rest_b
    return prompt, rest_a, rest_b


def stereotype_pairs(pairs: list[dict]) -> list[dict]:
    """``{"prompt", "chosen": anti-stereotype, "rejected": stereotype}`` per sentence pair."""
    out = []
    for i, pair in enumerate(pairs):
        prompt, more, less = split_common_prefix(pair["more"], pair["less"])
        out.append({"prompt": prompt, "chosen": less, "rejected": more,
                    "_source": f"stereotype pair {i + 1} ({pair['bias_type']})"})  # fmt: skip
    return out


def counterfactual_pairs(model, tokenizer, templates: list[str], lexicon) -> list[dict]:
    """One pair per (template, axis, phrase slot): least likely group's sentence chosen, most
    likely group's rejected (scored with ``model`` now)."""
    from .classifier import sequence_logprobs

    out = []
    for name, axis in lexicon.axes.items():
        phrases = {g: p for g, p in axis.person.items() if p}
        if len(phrases) < 2:
            continue
        slots = min(len(p) for p in phrases.values())
        for t, template in enumerate(templates):
            before, _, _ = template.partition("{person}")
            for j in range(slots):
                sentences = {g: template.format(person=p[j]) for g, p in phrases.items()}
                # Per token: a longer person phrase has a lower total whatever the model thinks.
                scores = dict(zip(sentences, (s / n for s, n in sequence_logprobs(
                    model, tokenizer, list(sentences.values())))))  # fmt: skip
                low, high = min(scores, key=scores.get), max(scores, key=scores.get)
                prompt = before.rstrip(" ")
                cut = len(prompt)
                out.append({"prompt": prompt, "chosen": sentences[low][cut:],
                            "rejected": sentences[high][cut:],
                            "_source": f"template {t + 1} x {name} ({low} over {high})"})  # fmt: skip
    return out


def debias_records(model, tokenizer, spec) -> list[dict]:
    """Every debiasing pair for this job, in the spec's preference field names."""
    from ..audit import audit_settings
    from ..fairness import read_pairs
    from .lexicon import load_lexicon

    lexicon = load_lexicon(audit_settings(spec).lexicon)
    templates = json.loads((DATA_DIR / "fairness_templates.json").read_text())["templates"]
    fairness = spec.get("fairness") or {}
    was_training = model.training
    model.eval()
    pairs = stereotype_pairs(read_pairs(fairness.get("pairs"))) + counterfactual_pairs(
        model, tokenizer, templates, lexicon)  # fmt: skip
    model.train(was_training)
    data = spec.data
    return [{data.prompt_field: p["prompt"], data.chosen_field: p["chosen"],
             data.rejected_field: p["rejected"], "_source": p["_source"]} for p in pairs]  # fmt: skip


def measure_bias(model, tokenizer, spec) -> dict:
    """Max-min mean log-likelihood gap per axis (and the largest), and the stereotype
    preference rate (0.5 = none), as the fairness recipe's language-model mode defines them."""
    from ..audit import audit_settings
    from ..fairness import read_pairs, stereotype_preference, template_likelihoods
    from .lexicon import load_lexicon

    lexicon = load_lexicon(audit_settings(spec).lexicon)
    templates = json.loads((DATA_DIR / "fairness_templates.json").read_text())["templates"]
    was_training = model.training
    model.eval()
    gaps, per_token = {}, {}
    for name, axis in lexicon.axes.items():
        phrases = {g: p for g, p in axis.person.items() if p}
        if len(phrases) >= 2:
            found = template_likelihoods(model, tokenizer, templates, phrases)
            gaps[name], per_token[name] = found["loglik_gap"], found["loglik_per_token_gap"]
    stereo = stereotype_preference(model, tokenizer,
                                   read_pairs((spec.get("fairness") or {}).get("pairs")))  # fmt: skip
    model.train(was_training)
    return {"loglik_gap": max(gaps.values()), **{f"loglik_gap.{a}": g for a, g in gaps.items()},
            "loglik_per_token_gap": max(per_token.values()),
            **{f"loglik_per_token_gap.{a}": g for a, g in per_token.items()},
            "stereotype_preference_rate": stereo["preference_rate"]}  # fmt: skip
