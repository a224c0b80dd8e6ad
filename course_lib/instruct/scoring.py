"""Exact-match scoring of generated answers, overall and per group (notebook 10, sections 4 to 7)."""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Sequence


def normalize_answer(text: str) -> str:
    """Lowercase, trim, collapse whitespace and drop spaces before punctuation ("a , b ." -> "a, b.")."""
    text = " ".join(str(text).lower().split())
    return re.sub(r"\s+([,.!?;:])", r"\1", text)


def exact_match(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Share of predictions equal to their reference after :func:`normalize_answer`."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references; they must pair up.")
    if not references:
        raise ValueError("exact_match needs at least one (prediction, reference) pair.")
    hits = sum(normalize_answer(p) == normalize_answer(r) for p, r in zip(predictions, references))
    return hits / len(references)


def exact_match_by(predictions: Sequence[str], references: Sequence[str], groups: Sequence[str]) -> dict[str, float]:
    """Exact match per group (e.g. per instruction type), in first-seen group order."""
    if not len(predictions) == len(references) == len(groups):
        raise ValueError("predictions, references and groups must have the same length, got "
                         f"{len(predictions)}, {len(references)} and {len(groups)}.")
    buckets: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        buckets[g].append(i)
    return {g: exact_match([predictions[i] for i in idx], [references[i] for i in idx]) for g, idx in buckets.items()}
