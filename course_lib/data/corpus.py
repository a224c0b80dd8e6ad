"""The pretraining corpus: sentences from the synthetic world, with topic and reaction cues."""

from __future__ import annotations

import operator
import random

from .world import CELLS, DOMAINS, LEXICON, Deck, corpus_sentence


def check_count(name: str, value: int) -> int:
    """Return value as an int if it is a whole number >= 1, else raise ValueError naming the argument."""
    try:
        n = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be a whole number >= 1, got {value!r}.") from None
    if n < 1:
        raise ValueError(f"{name} must be >= 1, got {n}.")
    return n


def make_corpus(n_sentences: int, seed: int = 0) -> list[str]:
    """Return n_sentences lowercase corpus sentences using every noun and adjective (seen and held-out)."""
    n_sentences = check_count("n_sentences", n_sentences)
    rng = random.Random(f"course-corpus:{seed}")
    nouns = Deck(tuple(w for d in DOMAINS for w in LEXICON.nouns[d]), rng)
    adjectives = Deck(tuple(w for c in CELLS for w in LEXICON.adjectives[c]), rng)
    return [corpus_sentence(rng, nouns.draw(), adjectives.draw()) for _ in range(n_sentences)]
