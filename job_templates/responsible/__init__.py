"""Responsible-AI pieces shared by the ``audit`` and ``fairness`` recipes and by ``finetune``.

- ``lexicon``: group lexicons (which words put a text in which demographic group).
- ``pii``, ``quality``, ``dedup``: the data-audit detectors.
- ``representation``: group counts, shares, label rates, Clarify-style CI / DPL.
- ``mitigation``: counterfactual augmentation and group x label reweighting.
- ``classifier``: model-path resolution, batched inference, a small weighted training loop.
- ``report``: JSON / Markdown / HTML / PNG writers; ``model_card``: the Hugging Face README.md.

Only the standard library is imported at module load; numpy, torch, transformers, datasketch,
fairlearn and matplotlib are imported by the functions that need them.
"""
