"""Random English -> Tarvi sentence pairs and the train/validation/test splits built from them.

Content words are drawn with Zipf-like frequencies, so some are rare. Everything is
deterministic given a seed; no download is needed.
"""

from __future__ import annotations

import random
from typing import Any

from datasets import Dataset, DatasetDict, Features, Value

from ..data.corpus import check_count
from .grammar import Clause, NounPhrase, Sentence, render_source, render_target
from .lexicon import (ADJECTIVES, ANIMATE_NOUNS, FOOD_NOUNS, NAMES, OBJECT_NOUNS, PREPOSITIONS, PRONOUNS, VERBS,
                      is_animate)

SPLITS = ("train", "validation", "test")


def _zipf_weights(n: int, rng: random.Random, exponent: float = 0.8) -> list[float]:
    ranks = list(range(1, n + 1))
    rng.shuffle(ranks)
    return [1.0 / r ** exponent for r in ranks]


_FREQ_RNG = random.Random("course-translation-frequencies")
_WEIGHTS = {name: _zipf_weights(len(ws), _FREQ_RNG) for name, ws in (
    ("animate", ANIMATE_NOUNS), ("food", FOOD_NOUNS), ("thing", OBJECT_NOUNS), ("adj", ADJECTIVES),
    ("transitive", [v for v in VERBS if v[3]]), ("intransitive", [v for v in VERBS if not v[3]]))}


def _pick(rng: random.Random, kind: str) -> str:
    pools = {"animate": ANIMATE_NOUNS, "food": FOOD_NOUNS, "thing": OBJECT_NOUNS, "adj": ADJECTIVES}
    if kind == "any":
        kind = rng.choice(("animate", "thing", "thing", "food"))
    if kind == "inanimate":
        kind = rng.choice(("thing", "thing", "thing", "food"))
    return rng.choices(pools[kind], weights=_WEIGHTS[kind])[0]


def _sample_np(rng: random.Random, kind: str, allow_rel: bool) -> NounPhrase:
    noun = _pick(rng, kind)
    rel = None
    if allow_rel and is_animate(noun) and rng.random() < 0.12:
        rel = _sample_clause(rng, subject=None, nested=True)
    return NounPhrase(noun, plural=rng.random() < 0.3, det=rng.choice(("the", "the", "a", "this", "my")),
                      adj=_pick(rng, "adj") if rng.random() < 0.4 else None, rel=rel)


def _sample_clause(rng: random.Random, subject: Any = "sample", nested: bool = False) -> Clause:
    if subject == "sample":
        r = rng.random()
        subject = (rng.choice(list(PRONOUNS)) if r < 0.25 else rng.choice(list(NAMES)) if r < 0.4
                   else _sample_np(rng, "animate", allow_rel=True))
    transitive = rng.random() < 0.75
    verb = rng.choices([v for v in VERBS if bool(v[3]) == transitive], weights=_WEIGHTS[
        "transitive" if transitive else "intransitive"])[0]
    obj_kind = {"thing": "inanimate"}.get(verb[3], verb[3])
    obj = _sample_np(rng, obj_kind, allow_rel=not nested) if transitive else None
    pp = None
    if not nested and rng.random() < 0.3:
        pp = (rng.choice(list(PREPOSITIONS)), _sample_np(rng, "any", allow_rel=False))
    tense = rng.choice(("present", "past"))
    adverb = None
    if not nested and rng.random() < 0.25:
        adverb = "yesterday" if tense == "past" else rng.choice(("today", "now", "every day"))
    return Clause(subject, verb[0], obj, pp, tense, negated=not nested and rng.random() < 0.12,
                  adverb=adverb, adverb_first=rng.random() < 0.5)


def sample_sentence(rng: random.Random, min_words: int = 4, max_words: int = 20) -> Sentence:
    """A random sentence structure whose English side has min_words..max_words words (before the '.')."""
    while True:
        r = rng.random()
        conj = "and" if r < 0.12 else "because" if r < 0.2 else None
        sentence = Sentence(_sample_clause(rng), conj, _sample_clause(rng) if conj else None)
        if min_words <= len(render_source(sentence).split()) - 1 <= max_words:
            return sentence


def make_translation_pairs(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """n deterministic (English, Tarvi) pairs."""
    n = check_count("n", n)
    rng = random.Random(f"course-translation:{seed}")
    pairs = []
    for _ in range(n):
        sentence = sample_sentence(rng)
        pairs.append((render_source(sentence), render_target(sentence, rng)))
    return pairs


def _new_source(rng: random.Random, taken: set[str], mine: set[str]) -> tuple[Sentence, str]:
    """A sentence (and its English) in no earlier split and, within 50 tries, new to this split too."""
    for attempt in range(1000):
        sentence = sample_sentence(rng)
        src = render_source(sentence)
        if src not in taken and (src not in mine or attempt >= 50):
            return sentence, src
    raise RuntimeError("Could not find a new source sentence; ask for fewer examples.")


def load_translation(n_train: int, n_val: int, n_test: int, seed: int = 0) -> DatasetDict:
    """train/validation/test (columns src, tgt) with disjoint source sentences.

    Test is built first, then validation, then train, each from its own seeded stream,
    so the test set depends only on (seed, n_test).
    """
    sizes = {"train": check_count("n_train", n_train), "validation": check_count("n_val", n_val),
             "test": check_count("n_test", n_test)}
    features = Features({"src": Value("string"), "tgt": Value("string")})
    taken: set[str] = set()
    splits = {}
    for split in reversed(SPLITS):
        rng = random.Random(f"course-translation:{seed}:{split}")
        rows: dict[str, list[str]] = {"src": [], "tgt": []}
        mine: set[str] = set()
        while len(rows["src"]) < sizes[split]:
            sentence, src = _new_source(rng, taken, mine)
            mine.add(src)
            rows["src"].append(src)
            rows["tgt"].append(render_target(sentence, rng))
        taken |= mine
        splits[split] = Dataset.from_dict(rows, features=features)
    return DatasetDict({s: splits[s] for s in SPLITS})
