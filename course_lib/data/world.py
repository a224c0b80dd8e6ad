"""A tiny synthetic "language world": a lexicon, a seen/held-out word split and sentence generators.

Four topic domains (nouns) and four opinion cells (adjectives: polarity x
strength). Corpus sentences pair each noun with phrases typical of its domain
and each adjective with a reaction typical of its cell, so a language model can
learn word classes from context alone. Task sentences drop those cues: only the
noun and the adjective carry the label. Task training sets use only the *seen*
words; the *held-out* words appear in the corpus but never in task training data.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

DOMAINS: tuple[str, ...] = ("food", "travel", "tech", "sport")
POLARITIES: tuple[str, ...] = ("negative", "positive")
STRENGTHS: tuple[str, ...] = ("mild", "strong")
Cell = tuple[str, str]  # (polarity, strength)
CELLS: tuple[Cell, ...] = tuple((p, s) for p in POLARITIES for s in STRENGTHS)

NOUNS: dict[str, tuple[str, ...]] = {
    "food": ("soup", "pasta", "bread", "cake", "salad", "curry", "pizza", "noodles", "pie", "stew"),
    "travel": ("train", "hotel", "flight", "ferry", "cabin", "museum", "tour", "taxi", "beach", "bus"),
    "tech": ("phone", "laptop", "camera", "tablet", "printer", "speaker", "router", "monitor", "keyboard", "charger"),
    "sport": ("match", "race", "game", "league", "tournament", "stadium", "coach", "team", "marathon", "derby"),
}

ADJECTIVES: dict[Cell, tuple[str, ...]] = {
    ("positive", "strong"): ("superb", "amazing", "brilliant", "wonderful", "fantastic", "excellent", "outstanding",
                             "marvelous"),
    ("positive", "mild"): ("nice", "decent", "pleasant", "fine", "good", "tidy", "solid", "cozy"),
    ("negative", "mild"): ("dull", "bland", "mediocre", "poor", "weak", "boring", "plain", "slow"),
    ("negative", "strong"): ("awful", "terrible", "horrible", "dreadful", "disgusting", "appalling", "abysmal",
                             "atrocious"),
}

PEOPLE: dict[str, str] = {  # name -> pronoun
    **{n: "she" for n in ("anna", "maria", "lena", "sara", "emma", "nina", "julia", "olga")},
    **{n: "he" for n in ("tom", "paul", "ivan", "omar", "leo", "max", "ben", "hugo")},
}

# Corpus-only cues: (verb phrase before the noun, phrase after it) per domain ...
DOMAIN_CONTEXTS: dict[str, tuple[tuple[str, str], ...]] = {
    "food": (("cooked", "in the kitchen"), ("ate", "for dinner"), ("ordered", "at the restaurant"),
             ("tasted", "at lunch"), ("served", "to the guests")),
    "travel": (("booked", "for the trip"), ("used", "on holiday"), ("picked", "for the journey"),
               ("paid for", "during the vacation")),
    "tech": (("charged", "overnight"), ("plugged in", "at the desk"), ("set up", "with a cable"),
             ("rebooted", "after the update"), ("installed", "at the office")),
    "sport": (("played", "at the field"), ("watched", "on saturday"), ("followed", "all season"),
              ("talked about", "after practice"), ("went to", "with the fans")),
}
# ... and reactions per opinion cell.
REACTIONS: dict[Cell, tuple[str, ...]] = {
    ("positive", "strong"): ("cheered loudly", "came back every week", "told all friends"),
    ("positive", "mild"): ("smiled", "nodded", "felt content"),
    ("negative", "mild"): ("sighed", "shrugged", "yawned"),
    ("negative", "strong"): ("shouted at the owner", "never came back", "demanded a refund"),
}

# Task frames: no cue except the noun and the adjective.
TASK_TEMPLATES: tuple[str, ...] = (
    "{name} said the {noun} was {adj} .",
    "the {noun} felt {adj} to {name} .",
    "{name} thought the {noun} was {adj} .",
    "according to {name} , the {noun} was {adj} .",
    "{name} found the {noun} {adj} .",
    "{name} called the {noun} {adj} .",
    "{name} described the {noun} as {adj} .",
)

# Corpus templates with a relative weight. {frame} is a task frame without its final " .".
CORPUS_TEMPLATES: tuple[tuple[str, float], ...] = (
    ("{name} {dpre} the {noun} {dpost} . it was {adj} , so {pron} {react} .", 0.25),
    ("the {noun} that {name} {dpre} {dpost} was {adj} , and {pron} {react} .", 0.15),
    ("{name} {react} because the {noun} was {adj} .", 0.15),
    ("{frame} , so {pron} {react} .", 0.25),
    ("{name} {dpre} the {noun} {dpost} .", 0.20),
)

SPLIT_SEED = 1234
SEEN_FRACTION = 0.6


@dataclass(frozen=True)
class Lexicon:
    """The world's words, with each domain's nouns and each cell's adjectives split into seen/held-out."""

    nouns: dict[str, tuple[str, ...]]
    adjectives: dict[Cell, tuple[str, ...]]
    names: tuple[str, ...]
    seen_nouns: dict[str, tuple[str, ...]]
    heldout_nouns: dict[str, tuple[str, ...]]
    seen_adjectives: dict[Cell, tuple[str, ...]]
    heldout_adjectives: dict[Cell, tuple[str, ...]]

    def held_out_words(self) -> set[str]:
        """Nouns and adjectives that task training sets never use."""
        return {w for ws in (*self.heldout_nouns.values(), *self.heldout_adjectives.values()) for w in ws}

    def seen_words(self) -> set[str]:
        """Nouns and adjectives that task training sets may use."""
        return {w for ws in (*self.seen_nouns.values(), *self.seen_adjectives.values()) for w in ws}

    def content_words(self) -> set[str]:
        """All nouns and adjectives (seen and held-out)."""
        return self.seen_words() | self.held_out_words()

    def all_words(self) -> set[str]:
        """Every lexicon word: nouns, adjectives and names."""
        return self.content_words() | set(self.names)

    def domain_of(self, word: str) -> str | None:
        """The domain of a noun, or None for any other word."""
        return next((d for d, ws in self.nouns.items() if word in ws), None)

    def cell_of(self, word: str) -> Cell | None:
        """The (polarity, strength) of an adjective, or None for any other word."""
        return next((c for c, ws in self.adjectives.items() if word in ws), None)


def _split(words: tuple[str, ...], rng: random.Random) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Split words into (seen, held-out) keeping the original order within each part."""
    seen = set(rng.sample(words, round(SEEN_FRACTION * len(words))))
    return tuple(w for w in words if w in seen), tuple(w for w in words if w not in seen)


def build_lexicon(seed: int = SPLIT_SEED) -> Lexicon:
    """Build the lexicon with a deterministic seen/held-out split per domain and per opinion cell."""
    rng = random.Random(seed)
    noun_split = {d: _split(NOUNS[d], rng) for d in DOMAINS}
    adj_split = {c: _split(ADJECTIVES[c], rng) for c in CELLS}
    return Lexicon(
        nouns=dict(NOUNS), adjectives=dict(ADJECTIVES), names=tuple(PEOPLE),
        seen_nouns={d: s for d, (s, _) in noun_split.items()}, heldout_nouns={d: h for d, (_, h) in noun_split.items()},
        seen_adjectives={c: s for c, (s, _) in adj_split.items()},
        heldout_adjectives={c: h for c, (_, h) in adj_split.items()},
    )


LEXICON: Lexicon = build_lexicon()


def held_out_words() -> set[str]:
    """Held-out nouns and adjectives of the course lexicon."""
    return LEXICON.held_out_words()


class Deck:
    """Draw items in reshuffled rounds, so every item appears once per len(items) draws."""

    def __init__(self, items: tuple, rng: random.Random) -> None:
        self.items, self.rng, self.pile = list(items), rng, []

    def draw(self):
        """Return the next item, reshuffling a fresh round when the pile is empty."""
        if not self.pile:
            self.pile = self.items[:]
            self.rng.shuffle(self.pile)
        return self.pile.pop()


def task_sentence(name: str, noun: str, adj: str, template: str) -> str:
    """Fill a task frame with a person, a noun and an adjective."""
    return template.format(name=name, noun=noun, adj=adj)


def corpus_sentence(rng: random.Random, noun: str, adj: str, lexicon: Lexicon = LEXICON) -> str:
    """One pretraining sentence about noun (and adjective, if the template uses one), with context cues."""
    template = rng.choices([t for t, _ in CORPUS_TEMPLATES], weights=[w for _, w in CORPUS_TEMPLATES])[0]
    name = rng.choice(lexicon.names)
    dpre, dpost = rng.choice(DOMAIN_CONTEXTS[lexicon.domain_of(noun)])
    frame = rng.choice(TASK_TEMPLATES).format(name=name, noun=noun, adj=adj)[: -len(" .")]
    return template.format(name=name, pron=PEOPLE[name], noun=noun, adj=adj, dpre=dpre, dpost=dpost,
                           react=rng.choice(REACTIONS[lexicon.cell_of(adj)]), frame=frame)
