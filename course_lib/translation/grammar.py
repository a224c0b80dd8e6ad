"""Sentence structures and how each language says them: English (the source) and Tarvi (the target).

Tarvi is invented, and deliberately unlike English:

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
  used at random, so even a perfect model cannot reach BLEU 1.0.

Example (gloss: l-o = the-m.sg, -n = accusative, vid-il = see-past.3sg.m)::

    the old farmer saw a red car in the garden .
    lo farmer maljun-o  la garden ine  un-on car ruz-o  vid-il .   (invented words differ)
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import Any, Optional, Sequence

from .lexicon import (ADVERBS, AGREEMENT, AND_WORDS, DETERMINERS, NAMES, PREPOSITIONS, PRONOUNS, TARGET_PRONOUNS,
                      TARVI, VERB_ENDINGS, VERB_INFO, accusative, english_plural, is_animate)


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


def _subject_features(subject: Any) -> tuple[int, bool, Optional[str]]:
    """(person, plural, gender) of a subject."""
    if isinstance(subject, NounPhrase):
        return 3, subject.plural, TARVI.nouns[subject.noun][1]
    if subject in PRONOUNS:
        return PRONOUNS[subject]
    return 3, False, NAMES[subject]


# ----------------------------------------------------------------------------- English


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
    base, third, past, _ = VERB_INFO[clause.verb]
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


# ----------------------------------------------------------------------------- Tarvi


def _tarvi_np(np: NounPhrase, case: str, rng: random.Random) -> list[str]:
    stems, gender = TARVI.nouns[np.noun]
    agr = AGREEMENT[(gender, np.plural)]
    stem = stems[0] if len(stems) == 1 else rng.choice(stems)
    words = [DETERMINERS[np.det] + (accusative(agr) if case == "acc" else agr),
             stem + ("i" if gender == "m" else "e") if np.plural else stem]
    if np.adj:
        animate_stem, other_stem = TARVI.adjectives[np.adj]
        words.append((animate_stem if is_animate(np.noun) else other_stem) + agr)
    if np.rel is not None:
        words += ["ki" + agr] + _tarvi_clause(replace(np.rel, subject=np), rng, with_subject=False)
    return words


def _tarvi_verb(clause: Clause) -> str:
    person, plural, gender = _subject_features(clause.subject)
    animate_stem, other_stem = TARVI.verbs[clause.verb]
    stem = animate_stem if clause.obj is not None and is_animate(clause.obj.noun) else other_stem
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

    def choice(self, seq: Sequence[str]) -> str:
        """The first option."""
        return seq[0]

    def random(self) -> float:
        """1.0: above every noise threshold, so the default word is used."""
        return 1.0
