"""Exact and near-duplicate detection.

Exact: records whose normalised text (NFKC, case-folded, whitespace collapsed) hashes equal. Near:
MinHash signatures of word 5-gram shingles, bucketed by datasketch's LSH at a Jaccard threshold;
candidate pairs are confirmed with the signatures' Jaccard estimate so LSH's false positives do not
count. Both fractions count a record as a duplicate when an *earlier* record already covers it, so
a set of k copies contributes k-1 (the records a deduplication would drop).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

SHINGLE = 5  # word 5-grams: long enough that shared boilerplate phrases do not match everything
NUM_PERM = 128  # MinHash permutations: Jaccard estimate standard error ~ 1/sqrt(128) ~ 0.09
SEED = 1  # fixed so the audit is reproducible


def normalise(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold()
    return re.sub(r"\s+", " ", text).strip()


def exact_duplicates(texts: list[str]) -> list[int]:
    """Indexes of records whose normalised text appeared earlier."""
    seen: set[bytes] = set()
    dups = []
    for i, text in enumerate(texts):
        digest = hashlib.sha1(normalise(text).encode()).digest()
        if digest in seen:
            dups.append(i)
        seen.add(digest)
    return dups


def shingles(text: str, n: int = SHINGLE) -> set[str]:
    words = re.findall(r"\w+", normalise(text))
    if len(words) < n:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i : i + n]) for i in range(len(words) - n + 1)}


def near_duplicates(texts: list[str], threshold: float) -> list[int]:
    """Indexes of records with an earlier record at estimated Jaccard >= ``threshold``.

    Exact duplicates are near-duplicates too (Jaccard 1).
    """
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
    signatures: dict[str, MinHash] = {}
    dups = []
    for i, text in enumerate(texts):
        grams = shingles(text)
        if not grams:
            continue
        sig = MinHash(num_perm=NUM_PERM, seed=SEED)
        sig.update_batch([g.encode() for g in grams])
        if any(signatures[key].jaccard(sig) >= threshold for key in lsh.query(sig)):
            dups.append(i)
        key = str(i)
        lsh.insert(key, sig)
        signatures[key] = sig
    return dups
