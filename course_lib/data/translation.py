"""An offline synthetic translation pair, its tokenizers and collator, and a Multi30k loader.

The source language is a small, regular slice of English. The target language
("Tarvi") is invented, and deliberately unlike English:

* **word order** - verb-final (SOV) in every clause; a prepositional phrase becomes a
  *postpositional* phrase placed between the subject and the object; adjectives follow
  the noun; a relative clause follows its noun and is verb-final too; a time adverb
  always opens its clause (in English it may start or end it); "A because B" becomes
  "porke B , A"; subject pronouns "i", "you", "we" are dropped (the verb says who).
* **agreement and case** - every noun has a hidden gender (m/f). Articles, adjectives
  and relative pronouns take the suffix -o / -a / -os / -as (m.sg / f.sg / m.pl / f.pl);
  articles of direct objects add the accusative -n (lo -> lon, las -> lans); plural
  nouns end in -i (m) or -e (f); verbs agree in person and number, and in the past
  tense 3rd-person singular verbs also agree in gender (-il m / -ila f).
* **context-dependent words** - "take" and "know" have two translations depending on
  whether the object is animate; "old", "big", "short" and "strong" have two depending
  on whether the noun is animate.
* **noise** - "and" is "kaj" or (25%) "e" at random, and 12 nouns have two synonyms
  used at random, so even a perfect model cannot reach BLEU 1.0. Content words are
  drawn with Zipf-like frequencies, so some are rare.

Example (gloss: l-o = the-m.sg, -n = accusative, vid-il = see-past.3sg.m)::

    the old farmer saw a red car in the garden .
    lo farmer maljun-o  la garden ine  un-on car ruz-o  vid-il .   (invented words differ)

Everything is deterministic given a seed; no download is needed. ``load_multi30k``
loads the real Multi30k (English-German) from the Hugging Face Hub for online users.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import Any, Iterable, Optional, Sequence

import torch
from datasets import Dataset, DatasetDict, Features, Value
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from .collate import IGNORE_INDEX
from .corpus import check_count
from .tokenizer import EOS, PAD, UNK
from .world import ADJECTIVES as WORLD_ADJECTIVES
from .world import NOUNS as WORLD_NOUNS
from .world import PEOPLE

# ----------------------------------------------------------------------------- English lexicon

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
CONTEXT_VERBS = ("take", "know")  # two translations: animate vs inanimate object

PRONOUNS = {"i": (1, False, None), "you": (2, False, None), "he": (3, False, "m"), "she": (3, False, "f"),
            "we": (1, True, None), "they": (3, True, None)}  # -> (person, plural, gender)
NAMES = {name: ("f" if pron == "she" else "m") for name, pron in PEOPLE.items()}
PREPOSITIONS = {"in": "ine", "on": "supe", "under": "sube", "near": "apude", "with": "kune", "behind": "malante",
                "for": "pore", "from": "dele", "without": "sene", "after": "poste"}
ADVERBS = {"yesterday": ("past", "jeri"), "today": ("present", "hodi"), "now": ("present", "nun"),
           "every day": ("present", "chiutage")}

# ----------------------------------------------------------------------------- Tarvi lexicon

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
            words |= {d + _acc(agr) for d in DETERMINERS.values()}
            words |= {stem + agr for stems in self.adjectives.values() for stem in stems}
        for stems, gender in self.nouns.values():
            words |= {s for s in stems} | {s + ("i" if gender == "m" else "e") for s in stems}
        for stems in self.verbs.values():
            words |= {s + e for s in stems for t in VERB_ENDINGS.values() for e in t.values()}
            words |= {s + "ila" for s in stems}
        return words


def _acc(agr: str) -> str:
    """Accusative of an agreement suffix: o -> on, a -> an, os -> ons, as -> ans."""
    return agr[0] + "n" + agr[1:]


def build_tarvi_lexicon(seed: str = LEXICON_SEED) -> TarviLexicon:
    """Invent the Tarvi stems (CVCVC syllables) deterministically; no two forms collide."""
    rng = random.Random(seed)
    used: set[str] = set()

    def stem() -> str:
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
_VERB_INFO = {v[0]: v for v in VERBS}

# ----------------------------------------------------------------------------- sentence structure


@dataclass(frozen=True)
class NounPhrase:
    """det [adj] noun [that-clause]; ``det`` is one of the, a, this, my (plural: the, some, these, my)."""

    noun: str
    plural: bool = False
    det: str = "the"
    adj: Optional[str] = None
    rel: Optional["Clause"] = None  # a relative clause whose subject is this noun (subject=None)


@dataclass(frozen=True)
class Clause:
    """subject verb [object] [preposition + noun phrase], with tense, negation and a time adverb."""

    subject: Any  # NounPhrase, a pronoun ("i", "he", ...), a name, or None in a relative clause
    verb: str
    obj: Optional[NounPhrase] = None
    pp: Optional[tuple[str, NounPhrase]] = None
    tense: str = "present"
    negated: bool = False
    adverb: Optional[str] = None
    adverb_first: bool = False


@dataclass(frozen=True)
class Sentence:
    """One clause, or two joined by "and" / "because"."""

    first: Clause
    conj: Optional[str] = None
    second: Optional[Clause] = None


def _animate(noun: str) -> bool:
    return noun in ANIMATE_NOUNS


def _subject_features(subject: Any) -> tuple[int, bool, Optional[str]]:
    """(person, plural, gender) of a subject."""
    if isinstance(subject, NounPhrase):
        return 3, subject.plural, TARVI.nouns[subject.noun][1]
    if subject in PRONOUNS:
        return PRONOUNS[subject]
    return 3, False, NAMES[subject]


# ---- English


def _english_np(np: NounPhrase) -> list[str]:
    words = [np.adj] if np.adj else []
    words.append(english_plural(np.noun) if np.plural else np.noun)
    if np.det == "a":
        det = "some" if np.plural else ("an" if words[0][0] in "aeiou" else "a")
    elif np.det == "this":
        det = "these" if np.plural else "this"
    else:
        det = np.det
    out = [det] + words
    if np.rel is not None:
        out += ["that"] + _english_clause(replace(np.rel, subject=np), with_subject=False)
    return out


def _english_verb(clause: Clause) -> list[str]:
    base, third, past, _ = _VERB_INFO[clause.verb]
    person, plural, _ = _subject_features(clause.subject)
    third_singular = person == 3 and not plural
    if clause.negated:
        aux = "did" if clause.tense == "past" else ("does" if third_singular else "do")
        return [aux, "not", base]
    return [past if clause.tense == "past" else (third if third_singular else base)]


def _english_clause(clause: Clause, with_subject: bool = True) -> list[str]:
    words = []
    if with_subject:
        words = _english_np(clause.subject) if isinstance(clause.subject, NounPhrase) else [clause.subject]
    words += _english_verb(clause)
    if clause.obj is not None:
        words += _english_np(clause.obj)
    if clause.pp is not None:
        words += [clause.pp[0]] + _english_np(clause.pp[1])
    if clause.adverb:
        words = (clause.adverb.split() + words) if clause.adverb_first else (words + clause.adverb.split())
    return words


def render_source(sentence: Sentence) -> str:
    """The English side of a sentence."""
    words = _english_clause(sentence.first)
    if sentence.conj:
        words += [sentence.conj] + _english_clause(sentence.second)
    return " ".join(words + ["."])


# ---- Tarvi


def _tarvi_np(np: NounPhrase, case: str, rng: random.Random) -> list[str]:
    stems, gender = TARVI.nouns[np.noun]
    agr = AGREEMENT[(gender, np.plural)]
    stem = stems[0] if len(stems) == 1 else rng.choice(stems)
    words = [DETERMINERS[np.det] + (_acc(agr) if case == "acc" else agr),
             stem + ("i" if gender == "m" else "e") if np.plural else stem]
    if np.adj:
        animate_stem, other_stem = TARVI.adjectives[np.adj]
        words.append((animate_stem if _animate(np.noun) else other_stem) + agr)
    if np.rel is not None:
        words += ["ki" + agr] + _tarvi_clause(replace(np.rel, subject=np), rng, with_subject=False)
    return words


def _tarvi_verb(clause: Clause) -> str:
    person, plural, gender = _subject_features(clause.subject)
    animate_stem, other_stem = TARVI.verbs[clause.verb]
    stem = animate_stem if clause.obj is not None and _animate(clause.obj.noun) else other_stem
    ending = VERB_ENDINGS[clause.tense][(person, plural)]
    if clause.tense == "past" and person == 3 and not plural and gender == "f":
        ending += "a"
    return stem + ending


def _tarvi_clause(clause: Clause, rng: random.Random, with_subject: bool = True) -> list[str]:
    words = [ADVERBS[clause.adverb][1]] if clause.adverb else []
    if with_subject:
        if isinstance(clause.subject, NounPhrase):
            words += _tarvi_np(clause.subject, "nom", rng)
        elif clause.subject in PRONOUNS:
            words += [TARGET_PRONOUNS[clause.subject]] if clause.subject in TARGET_PRONOUNS else []
        else:
            words.append(clause.subject)  # names are copied
    if clause.pp is not None:
        words += _tarvi_np(clause.pp[1], "nom", rng) + [PREPOSITIONS[clause.pp[0]]]
    if clause.obj is not None:
        words += _tarvi_np(clause.obj, "acc", rng)
    return words + (["ne"] if clause.negated else []) + [_tarvi_verb(clause)]


def render_target(sentence: Sentence, rng: Optional[random.Random] = None) -> str:
    """The Tarvi side of a sentence (``rng`` picks the free synonyms; default: always the first)."""
    rng = rng or _FirstChoice()
    first = _tarvi_clause(sentence.first, rng)
    if sentence.conj == "because":
        words = ["porke"] + _tarvi_clause(sentence.second, rng) + [","] + first
    elif sentence.conj == "and":
        words = first + [AND_WORDS[1] if rng.random() < 0.25 else AND_WORDS[0]] + _tarvi_clause(sentence.second, rng)
    else:
        words = first
    return " ".join(words + ["."])


class _FirstChoice:
    """A stand-in rng that always picks the first option (no noise)."""

    def choice(self, seq):
        return seq[0]

    def random(self) -> float:
        return 1.0


# ---- sampling


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
    if allow_rel and _animate(noun) and rng.random() < 0.12:
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


SPLITS = ("train", "validation", "test")


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
            for attempt in range(1000):
                sentence = sample_sentence(rng)
                src = render_source(sentence)
                if src not in taken and (src not in mine or attempt >= 50):
                    break
            else:
                raise RuntimeError("Could not find a new source sentence; ask for fewer examples.")
            mine.add(src)
            rows["src"].append(src)
            rows["tgt"].append(render_target(sentence, rng))
        taken |= mine
        splits[split] = Dataset.from_dict(rows, features=features)
    return DatasetDict({s: splits[s] for s in SPLITS})


# ----------------------------------------------------------------------------- tokenizers and collator

BOS = "[BOS]"
TRANSLATION_SPECIAL_TOKENS = [PAD, UNK, BOS, EOS]  # ids 0, 1, 2, 3 = Seq2SeqConfig's defaults


def train_word_tokenizer(texts: Iterable[str], min_frequency: int = 1, lowercase: bool = True,
                         kind: str = "word", vocab_size: int = 8000) -> PreTrainedTokenizerFast:
    """A whole-word (``kind="word"``) or BPE (``kind="bpe"``) tokenizer with [PAD] [UNK] [BOS] [EOS].

    Splits on whitespace and punctuation; words seen fewer than ``min_frequency`` times
    become [UNK] (word level). No special tokens are added automatically: the collator adds BOS/EOS.
    """
    texts = list(texts)
    if not any(t.strip() for t in texts):
        raise ValueError("Cannot train a tokenizer on an empty corpus: pass at least one non-empty text.")
    if kind == "word":
        tok = Tokenizer(models.WordLevel(unk_token=UNK))
        trainer = trainers.WordLevelTrainer(special_tokens=TRANSLATION_SPECIAL_TOKENS, min_frequency=min_frequency,
                                            show_progress=False)
    elif kind == "bpe":
        tok = Tokenizer(models.BPE(unk_token=UNK, end_of_word_suffix="</w>"))
        tok.decoder = decoders.BPEDecoder(suffix="</w>")
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=TRANSLATION_SPECIAL_TOKENS,
                                      end_of_word_suffix="</w>", min_frequency=min_frequency, show_progress=False)
    else:
        raise ValueError(f"kind must be 'word' or 'bpe', got {kind!r}")
    norms = [normalizers.NFKC()] + ([normalizers.Lowercase()] if lowercase else [])
    tok.normalizer = normalizers.Sequence(norms)
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, unk_token=UNK, bos_token=BOS, eos_token=EOS,
                                   model_max_length=512)


def _pairs(data: Any, src_key: str = "src", tgt_key: str = "tgt") -> tuple[list[str], list[str]]:
    """(sources, targets) from a Dataset / list of dicts with src/tgt, or a list of (src, tgt) tuples."""
    if isinstance(data, Dataset):
        return list(data[src_key]), list(data[tgt_key])
    data = list(data)
    if data and isinstance(data[0], dict):
        return [ex[src_key] for ex in data], [ex[tgt_key] for ex in data]
    return [s for s, _ in data], [t for _, t in data]


def train_translation_tokenizers(data: Any, min_frequency: int = 1, lowercase: bool = True, kind: str = "word",
                                 vocab_size: int = 8000) -> tuple[PreTrainedTokenizerFast, PreTrainedTokenizerFast]:
    """One tokenizer per language, trained on the (training) pairs: returns (src_tokenizer, tgt_tokenizer)."""
    src, tgt = _pairs(data)
    return tuple(train_word_tokenizer(texts, min_frequency, lowercase, kind, vocab_size)  # type: ignore
                 for texts in (src, tgt))


@dataclass
class TranslationCollator:
    """Batch translation pairs for :class:`~course_lib.models.Seq2SeqTransformer`.

    src_ids = x [EOS]; tgt_input_ids = [BOS] y; labels = y [EOS] (the target shifted left);
    padding is the pad id in the inputs (mask 0) and -100 in the labels. Examples are
    dicts with ``src``/``tgt`` keys or (src, tgt) tuples; without targets only the source is built.
    """

    src_tokenizer: Any
    tgt_tokenizer: Any
    max_len: int = 64

    def _ids(self, tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
        return [ids[: self.max_len - 1] for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]

    @staticmethod
    def _pad(rows: list[list[int]], value: int) -> torch.Tensor:
        width = max(len(r) for r in rows)
        return torch.tensor([r + [value] * (width - len(r)) for r in rows], dtype=torch.long)

    def encode_source(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """src_ids and src_mask for a list of source sentences."""
        if not texts:
            raise ValueError("Cannot build a batch from zero examples.")
        rows = [ids + [self.src_tokenizer.eos_token_id] for ids in self._ids(self.src_tokenizer, texts)]
        src_ids = self._pad(rows, self.src_tokenizer.pad_token_id)
        return {"src_ids": src_ids, "src_mask": (src_ids != self.src_tokenizer.pad_token_id).long()}

    def __call__(self, examples: Sequence[Any]) -> dict[str, torch.Tensor]:
        if not examples:
            raise ValueError("Cannot build a batch from zero examples.")
        if isinstance(examples[0], dict):
            src = [ex["src"] for ex in examples]
            tgt = [ex["tgt"] for ex in examples] if "tgt" in examples[0] else None
        else:
            src, tgt = [ex[0] for ex in examples], [ex[1] for ex in examples]
        batch = self.encode_source(src)
        if tgt is None:
            return batch
        tok = self.tgt_tokenizer
        ys = self._ids(tok, tgt)
        tgt_input = self._pad([[tok.bos_token_id] + y for y in ys], tok.pad_token_id)
        batch["tgt_input_ids"] = tgt_input
        batch["tgt_mask"] = self._pad([[1] * (len(y) + 1) for y in ys], 0)
        batch["labels"] = self._pad([y + [tok.eos_token_id] for y in ys], IGNORE_INDEX)
        return batch


# ----------------------------------------------------------------------------- Multi30k (online)


def load_multi30k(name: str = "bentrevett/multi30k", src: str = "en", tgt: str = "de",
                  data_files: Any = None) -> DatasetDict:
    """Multi30k (train/validation/test) from the Hub, or from local JSON(L) files with the same schema.

    The result has columns ``src`` and ``tgt`` (renamed from ``src``/``tgt`` language
    columns, e.g. ``en``/``de``), so :class:`TranslationCollator` works unchanged.
    ``data_files``: a path or a {split: path} dict of JSON lines files (then ``name`` is ignored).
    """
    from datasets import load_dataset

    ds = load_dataset("json", data_files=data_files) if data_files is not None else load_dataset(name)
    missing = [s for s in SPLITS if s not in ds]
    if missing:
        raise ValueError(f"Expected splits {list(SPLITS)}, missing {missing}; found {list(ds)}")
    out = {}
    for split in SPLITS:
        columns = ds[split].column_names
        if src not in columns or tgt not in columns:
            raise ValueError(f"Split {split!r} needs columns {src!r} and {tgt!r}; found {columns}")
        part = ds[split].select_columns([src, tgt])
        out[split] = part.rename_columns({src: "src", tgt: "tgt"})
    return DatasetDict(out)


# ----------------------------------------------------------------------------- per-profile sizes


@dataclass(frozen=True)
class TranslationSizes:
    """Data sizes, model shape and training budget of the P-Transformer exercise for one profile."""

    name: str
    n_train: int
    n_val: int
    n_test: int
    max_len: int
    d_model: int
    n_layers: int
    n_heads: int
    d_ff: int
    dropout: float
    steps: int
    batch_size: int
    lr: float
    warmup_ratio: float
    eval_every: int
    decode_max_len: int
    label_smoothing: float = 0.0
    layer_teacher_forcing: float = 0.5  # the ratio used for the "P + layer-wise teacher forcing" variant

    def model_kwargs(self) -> dict[str, Any]:
        """The Seq2SeqConfig shape fields (max_len, d_model, n_layers, n_heads, d_ff, dropout, label_smoothing)."""
        return {k: getattr(self, k) for k in ("max_len", "d_model", "n_layers", "n_heads", "d_ff", "dropout",
                                              "label_smoothing")}

    def train_kwargs(self) -> dict[str, Any]:
        """TrainConfig fields (steps, batch_size, lr, warmup_ratio, eval_every)."""
        return {k: getattr(self, k) for k in ("steps", "batch_size", "lr", "warmup_ratio", "eval_every")}


TRANSLATION_SIZES: dict[str, TranslationSizes] = {
    "ci": TranslationSizes(name="ci", n_train=512, n_val=64, n_test=128, max_len=32, d_model=32, n_layers=2,
                           n_heads=2, d_ff=64, dropout=0.0, steps=40, batch_size=32, lr=3e-3, warmup_ratio=0.1,
                           eval_every=20, decode_max_len=30),
    "cpu": TranslationSizes(name="cpu", n_train=20000, n_val=200, n_test=500, max_len=40, d_model=128, n_layers=3,
                            n_heads=4, d_ff=256, dropout=0.1, steps=800, batch_size=16, lr=1.5e-3,
                            warmup_ratio=0.05, eval_every=100, decode_max_len=38),
    "gpu": TranslationSizes(name="gpu", n_train=100000, n_val=500, n_test=1000, max_len=40, d_model=256,
                            n_layers=4, n_heads=8, d_ff=1024, dropout=0.1, steps=8000, batch_size=128, lr=7e-4,
                            warmup_ratio=0.05, eval_every=500, decode_max_len=38),
}


def translation_profile_sizes(profile: Any = None) -> TranslationSizes:
    """The sizes for a profile name, a :class:`~course_lib.profiles.Profile`, or (None) the active profile."""
    from ..profiles import get_profile

    name = getattr(profile, "name", profile) or get_profile().name
    if name not in TRANSLATION_SIZES:
        raise ValueError(f"Unknown profile {name!r}; allowed: {', '.join(TRANSLATION_SIZES)}")
    return TRANSLATION_SIZES[name]


def translation_model_config(sizes: TranslationSizes, src_tokenizer: Any, tgt_tokenizer: Any, **overrides: Any):
    """A Seq2SeqConfig from the sizes and the two tokenizers' vocabularies and special ids (plus overrides)."""
    from ..models.seq2seq import Seq2SeqConfig

    kwargs = dict(src_vocab_size=len(src_tokenizer), tgt_vocab_size=len(tgt_tokenizer),
                  pad_token_id=tgt_tokenizer.pad_token_id, bos_token_id=tgt_tokenizer.bos_token_id,
                  eos_token_id=tgt_tokenizer.eos_token_id, **sizes.model_kwargs())
    kwargs.update(overrides)
    return Seq2SeqConfig(**kwargs)
