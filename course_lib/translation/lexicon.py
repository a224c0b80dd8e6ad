"""The words of the two languages: English word lists and the invented Tarvi stems and endings.

English nouns fall in three kinds (animate, food, object); adjectives and verbs are
plain lists (verbs with the kind of object they take). Tarvi stems are invented once,
deterministically, by :func:`build_tarvi_lexicon`; ``TARVI`` is that lexicon.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ..data.world import ADJECTIVES as WORLD_ADJECTIVES
from ..data.world import NOUNS as WORLD_NOUNS
from ..data.world import PEOPLE

# ----------------------------------------------------------------------------- English

ANIMATE_NOUNS = ("dog cat horse bird fox wolf mouse cow goat rabbit duck bear lion farmer teacher doctor child "
                 "girl boy woman man king queen student baker soldier singer driver nurse pilot sailor painter "
                 "neighbour friend coach").split()
FOOD_NOUNS = ("apple soup cake salad pie bread pizza curry pasta stew").split()
OBJECT_NOUNS = ("table house garden river book letter door window car boat chair bottle cup key box bag hat coat "
                "shoe ball road bridge tree flower stone field village city forest mountain lake song story "
                "picture clock lamp bed ring map ticket gift basket candle knife spoon plate shirt wall ship "
                "train hotel ferry museum taxi beach bus phone laptop camera tablet printer speaker router monitor "
                "keyboard match race game").split()
assert set(FOOD_NOUNS) <= set(WORLD_NOUNS["food"]) | {"apple"}  # the world's food words are reused
IRREGULAR_PLURALS = {"wolf": "wolves", "mouse": "mice", "child": "children", "woman": "women", "man": "men",
                     "knife": "knives"}

_OWN_ADJECTIVES = ("big small old new young red blue green black white happy sad tired quiet loud clean dirty warm "
                   "cold heavy strong weak fast slow rich poor beautiful ugly strange famous hungry brave clever lazy "
                   "tall short long broken empty full cheap expensive").split()
# plus the course world's opinion adjectives (duplicates removed, order kept)
ADJECTIVES = list(dict.fromkeys(_OWN_ADJECTIVES + [a for cell in WORLD_ADJECTIVES.values() for a in cell]))
CONTEXT_ADJECTIVES = ("old", "big", "short", "strong")  # two translations: animate vs inanimate noun

# (base, 3rd-person singular, past, object kind): "" intransitive, "any", "animate", "thing" or "food".
VERBS: tuple[tuple[str, str, str, str], ...] = tuple(tuple(v.split()) + (k,) for k, vs in {  # type: ignore
    "any": ["see sees saw", "find finds found", "take takes took", "know knows knew", "paint paints painted",
            "wash washes washed", "love loves loved", "follow follows followed", "like likes liked",
            "visit visits visited", "watch watches watched", "bring brings brought", "hold holds held",
            "need needs needed", "draw draws drew", "push pushes pushed", "pull pulls pulled",
            "choose chooses chose", "forget forgets forgot", "remember remembers remembered"],
    "animate": ["help helps helped", "call calls called", "meet meets met"],
    "thing": ["carry carries carried", "open opens opened", "close closes closed", "buy buys bought",
              "sell sells sold", "build builds built", "clean cleans cleaned", "break breaks broke",
              "want wants wanted", "read reads read", "write writes wrote"],
    "food": ["cook cooks cooked", "eat eats ate"],
    "": ["walk walks walked", "run runs ran", "sleep sleeps slept", "sing sings sang", "wait waits waited",
         "laugh laughs laughed", "cry cries cried", "dance dances danced", "swim swims swam",
         "arrive arrives arrived", "fall falls fell", "smile smiles smiled", "work works worked",
         "travel travels travelled"],
}.items() for v in vs)
VERB_INFO = {v[0]: v for v in VERBS}  # base form -> (base, 3rd-person singular, past, object kind)
CONTEXT_VERBS = ("take", "know")  # two translations: animate vs inanimate object

PRONOUNS = {"i": (1, False, None), "you": (2, False, None), "he": (3, False, "m"), "she": (3, False, "f"),
            "we": (1, True, None), "they": (3, True, None)}  # -> (person, plural, gender)
NAMES = {name: ("f" if pron == "she" else "m") for name, pron in PEOPLE.items()}
PREPOSITIONS = {"in": "ine", "on": "supe", "under": "sube", "near": "apude", "with": "kune", "behind": "malante",
                "for": "pore", "from": "dele", "without": "sene", "after": "poste"}
ADVERBS = {"yesterday": ("past", "jeri"), "today": ("present", "hodi"), "now": ("present", "nun"),
           "every day": ("present", "chiutage")}

# ----------------------------------------------------------------------------- Tarvi

AGREEMENT = {("m", False): "o", ("f", False): "a", ("m", True): "os", ("f", True): "as"}
DETERMINERS = {"the": "l", "a": "un", "this": "est", "my": "mi"}  # stem + agreement (+ accusative n)
TARGET_PRONOUNS = {"he": "el", "she": "ela", "they": "eli"}  # i / you / we are dropped
VERB_ENDINGS = {"present": {(1, False): "am", (2, False): "as", (3, False): "at", (1, True): "amo", (3, True): "an"},
                "past": {(1, False): "im", (2, False): "is", (3, False): "il", (1, True): "imo", (3, True): "ili"}}
N_SYNONYM_NOUNS = 12
AND_WORDS = ("kaj", "e")  # "and": free variation, 3 : 1
LEXICON_SEED = "course-translation-lexicon"


def english_plural(noun: str) -> str:
    """dog -> dogs, box -> boxes, city -> cities, wolf -> wolves (small irregular table)."""
    if noun in IRREGULAR_PLURALS:
        return IRREGULAR_PLURALS[noun]
    if noun.endswith(("s", "x", "ch", "sh")):
        return noun + "es"
    if noun.endswith("y") and noun[-2] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


def is_animate(noun: str) -> bool:
    """True for people and animals (they pick the animate translation of context-dependent words)."""
    return noun in ANIMATE_NOUNS


def accusative(agreement: str) -> str:
    """Accusative of an agreement suffix: o -> on, a -> an, os -> ons, as -> ans."""
    return agreement[0] + "n" + agreement[1:]


@dataclass(frozen=True)
class TarviLexicon:
    """Tarvi stems: noun -> (stems, gender) (2 stems: free synonyms); adjective/verb -> (animate, other) stems."""

    nouns: dict[str, tuple[tuple[str, ...], str]]
    adjectives: dict[str, tuple[str, str]]
    verbs: dict[str, tuple[str, str]]

    def vocabulary(self) -> set[str]:
        """Every Tarvi word form the grammar can produce."""
        words = {",", ".", "ne", "porke", *AND_WORDS, *TARGET_PRONOUNS.values(), *PREPOSITIONS.values(), *NAMES,
                 *(t for _, t in ADVERBS.values())}
        for agr in AGREEMENT.values():
            words |= {f"ki{agr}"} | {d + agr for d in DETERMINERS.values()}
            words |= {d + accusative(agr) for d in DETERMINERS.values()}
            words |= {stem + agr for stems in self.adjectives.values() for stem in stems}
        for stems, gender in self.nouns.values():
            words |= {s for s in stems} | {s + ("i" if gender == "m" else "e") for s in stems}
        for stems in self.verbs.values():
            words |= {s + e for s in stems for t in VERB_ENDINGS.values() for e in t.values()}
            words |= {s + "ila" for s in stems}
        return words


def build_tarvi_lexicon(seed: str = LEXICON_SEED) -> TarviLexicon:
    """Invent the Tarvi stems (CVCVC syllables) deterministically; no two forms collide."""
    rng = random.Random(seed)
    used: set[str] = set()

    def stem() -> str:
        """A new CVCVC stem, never used before."""
        while True:
            s = "".join(rng.choice("bdfgklmnprstvz") + rng.choice("aeiou") for _ in range(2)) + rng.choice("dklmnrst")
            if s not in used:
                used.add(s)
                return s

    nouns_en = ANIMATE_NOUNS + FOOD_NOUNS + OBJECT_NOUNS
    synonym_nouns = set(rng.sample(FOOD_NOUNS + OBJECT_NOUNS, N_SYNONYM_NOUNS))
    nouns = {n: ((stem(), stem()) if n in synonym_nouns else (stem(),), rng.choice("mf")) for n in nouns_en}
    adjectives = {a: (stem(), stem()) if a in CONTEXT_ADJECTIVES else (stem(),) * 2 for a in ADJECTIVES}
    verbs = {v[0]: (stem(), stem()) if v[0] in CONTEXT_VERBS else (stem(),) * 2 for v in VERBS}
    return TarviLexicon(nouns, adjectives, verbs)


TARVI = build_tarvi_lexicon()
