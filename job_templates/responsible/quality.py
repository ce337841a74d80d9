"""Document-quality rules in the spirit of Gopher (Rae et al. 2021, appendix A) and C4 (Raffel et
al. 2020, section 2.2). Each rule returns True when a document *fails* it; the audit reports
per-rule failure counts and the fraction of documents failing any rule.

Gopher's thresholds were tuned on web pages. Two are adapted for fine-tuning data, where a record
is often one sentence: the minimum is 3 words (C4's per-line minimum) instead of 50, and the
stop-word rule only applies to texts of 20+ words (a short label-like answer rarely has two).
"""

from __future__ import annotations

import re
from collections import Counter

WORD = re.compile(r"\S+")
MIN_WORDS, MAX_WORDS = 3, 100_000
MIN_MEAN_WORD_LEN, MAX_MEAN_WORD_LEN = 3, 10
MAX_SYMBOL_RATIO = 0.1  # ("#" + ellipses) per word
MAX_BULLET_LINES = 0.9
MAX_ELLIPSIS_LINES = 0.3
MIN_ALPHA_WORDS = 0.8  # share of words with at least one letter
STOP_WORDS = frozenset({"the", "be", "to", "of", "and", "that", "have", "with"})
MIN_STOP_WORDS, STOP_RULE_MIN_WORDS = 2, 20
MAX_DUP_LINE_FRACTION = 0.3
MAX_DUP_LINE_CHAR_FRACTION = 0.2
# Gopher: the most frequent n-gram may cover at most this share of the characters...
TOP_NGRAM_LIMITS = {2: 0.20, 3: 0.18, 4: 0.16}
# ...and characters inside repeated n-grams at most this share.
DUP_NGRAM_LIMITS = {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10}
BULLETS = ("-", "*", "•", "‣", "◦", "·")
ELLIPSES = ("...", "…")


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def too_few_words(words, text) -> bool:
    return len(words) < MIN_WORDS


def too_many_words(words, text) -> bool:
    return len(words) > MAX_WORDS


def mean_word_length(words, text) -> bool:
    if not words:
        return True
    mean = sum(len(w) for w in words) / len(words)
    return not MIN_MEAN_WORD_LEN <= mean <= MAX_MEAN_WORD_LEN


def symbol_ratio(words, text) -> bool:
    symbols = text.count("#") + text.count("...") + text.count("…")
    return bool(words) and symbols / len(words) > MAX_SYMBOL_RATIO


def bullet_lines(words, text) -> bool:
    lines = _lines(text)
    return (
        bool(lines) and sum(ln.startswith(BULLETS) for ln in lines) / len(lines) > MAX_BULLET_LINES
    )


def ellipsis_lines(words, text) -> bool:
    lines = _lines(text)
    return (
        bool(lines) and sum(ln.endswith(ELLIPSES) for ln in lines) / len(lines) > MAX_ELLIPSIS_LINES
    )


def non_alpha_words(words, text) -> bool:
    alpha = sum(any(c.isalpha() for c in w) for w in words)
    return bool(words) and alpha / len(words) < MIN_ALPHA_WORDS


def few_stop_words(words, text) -> bool:
    if len(words) < STOP_RULE_MIN_WORDS:
        return False
    return len(STOP_WORDS & {w.lower().strip(".,;:!?\"'") for w in words}) < MIN_STOP_WORDS


def duplicate_lines(words, text) -> bool:
    lines = _lines(text)
    if len(lines) < 2:
        return False
    counts = Counter(lines)
    dup_lines = sum(c - 1 for c in counts.values() if c > 1)
    dup_chars = sum(len(ln) * (c - 1) for ln, c in counts.items() if c > 1)
    total_chars = sum(len(ln) for ln in lines)
    return (dup_lines / len(lines) > MAX_DUP_LINE_FRACTION
            or dup_chars / max(total_chars, 1) > MAX_DUP_LINE_CHAR_FRACTION)  # fmt: skip


def top_ngram(words, text) -> bool:
    total = sum(len(w) for w in words)
    for n, limit in TOP_NGRAM_LIMITS.items():
        grams = Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
        if not grams:
            continue
        gram, count = grams.most_common(1)[0]
        if count > 1 and count * sum(len(w) for w in gram) / total > limit:
            return True
    return False


def duplicate_ngrams(words, text) -> bool:
    total = sum(len(w) for w in words)
    for n, limit in DUP_NGRAM_LIMITS.items():
        if len(words) < 2 * n:
            continue
        grams = Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
        covered = [False] * len(words)
        for i in range(len(words) - n + 1):
            if grams[tuple(words[i : i + n])] > 1:
                covered[i : i + n] = [True] * n
        if sum(len(w) for w, c in zip(words, covered) if c) / total > limit:
            return True
    return False


def c4_lorem_ipsum(words, text) -> bool:
    return "lorem ipsum" in text.lower()


def c4_javascript(words, text) -> bool:
    return "javascript" in text.lower() and "enable" in text.lower()  # "please enable JavaScript"


def c4_policy_boilerplate(words, text) -> bool:
    lower = text.lower()
    return "cookie policy" in lower or "terms of use" in lower or "privacy policy" in lower


RULES = {
    f.__name__: f
    for f in (too_few_words, too_many_words, mean_word_length, symbol_ratio, bullet_lines,
              ellipsis_lines, non_alpha_words, few_stop_words, duplicate_lines, top_ngram,
              duplicate_ngrams, c4_lorem_ipsum, c4_javascript, c4_policy_boilerplate)
}  # fmt: skip


def failed_rules(text: str) -> list[str]:
    words = WORD.findall(text)
    return [name for name, rule in RULES.items() if rule(words, text)]


def quality_summary(texts: list[str]) -> dict:
    """Per-rule failure counts and rates, and the share of documents failing any rule."""
    failures = dict.fromkeys(RULES, 0)
    any_fail = 0
    for text in texts:
        names = failed_rules(text)
        for name in names:
            failures[name] += 1
        any_fail += bool(names)
    n = max(len(texts), 1)
    return {
        "failures": failures,
        "rates": {k: v / n for k, v in failures.items()},
        "failed_any": any_fail,
        "fail_rate": any_fail / n,
    }
