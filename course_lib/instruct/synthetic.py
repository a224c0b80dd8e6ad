"""The course's own Alpaca-format instruction set, generated offline from the synthetic world (notebook 10, section 2).

Instruction types cover classification phrased as an instruction, list and string
transformations, format conversions, arithmetic word problems (AddSub, MultiArith) and
word knowledge. Some types are held out of training entirely, and every training type
keeps one phrasing back (``new wording``); :func:`make_instruction_set` builds the
train / test split that tests both.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, Sequence

from ..data.corpus import check_count
from ..data.world import CELLS, DOMAINS, LEXICON, PEOPLE, REACTIONS, TASK_TEMPLATES
from .records import FIELDS

NUMBER_WORDS: tuple[str, ...] = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
ARITH_NOUNS: tuple[str, ...] = ("pie", "pizza", "phone", "camera")  # short plurals keep problems within the context
RATINGS: dict = {("negative", "strong"): "one", ("negative", "mild"): "two",
                 ("positive", "mild"): "three", ("positive", "strong"): "four"}
ALL_NOUNS: tuple[str, ...] = tuple(w for d in DOMAINS for w in LEXICON.nouns[d])
GROUPS: tuple[str, ...] = ("seen", "new wording", "held-out type")


@dataclass(frozen=True)
class InstructionType:
    """One kind of instruction: its phrasings, its family and a generator of (input, output) pairs.

    Training uses all phrasings but the last; the last one (``new wording``) is kept for
    testing. A ``heldout`` type never appears in training at all.
    """

    name: str
    family: str
    phrasings: tuple[str, ...]
    make: Callable[[random.Random], tuple[str, str]]
    heldout: bool = False


def _review(rng: random.Random) -> tuple[str, str, str, str, tuple[str, str], str]:
    """A review sentence from the world: (sentence, name, noun, adjective, cell, domain)."""
    domain, cell = rng.choice(DOMAINS), rng.choice(CELLS)
    name, noun, adj = rng.choice(LEXICON.names), rng.choice(LEXICON.nouns[domain]), rng.choice(LEXICON.adjectives[cell])
    return rng.choice(TASK_TEMPLATES).format(name=name, noun=noun, adj=adj), name, noun, adj, cell, domain


def _items(rng: random.Random) -> list[str]:
    return rng.sample(ALL_NOUNS, rng.randint(2, 4))


def _count(n: int, noun: str) -> str:
    return f"{NUMBER_WORDS[n]} {noun}" + ("" if n == 1 else "s")


def _make_sentiment(rng: random.Random) -> tuple[str, str]:
    sentence, *_, cell, _ = _review(rng)
    return sentence, "good" if cell[0] == "positive" else "bad"


def _make_topic(rng: random.Random) -> tuple[str, str]:
    sentence, *_, domain = _review(rng)
    return sentence, domain


def _make_strength(rng: random.Random) -> tuple[str, str]:
    sentence, *_, cell, _ = _review(rng)
    return sentence, cell[1]


def _make_rating(rng: random.Random) -> tuple[str, str]:
    sentence, *_, cell, _ = _review(rng)
    return sentence, RATINGS[cell]


def _make_who(rng: random.Random) -> tuple[str, str]:
    sentence, name, *_ = _review(rng)
    return sentence, name


def _make_object(rng: random.Random) -> tuple[str, str]:
    sentence, _, noun, *_ = _review(rng)
    return sentence, noun


def _make_first(rng: random.Random) -> tuple[str, str]:
    items = _items(rng)
    return " , ".join(items), items[0]


def _make_last(rng: random.Random) -> tuple[str, str]:
    items = _items(rng)
    return " , ".join(items), items[-1]


def _make_reverse(rng: random.Random) -> tuple[str, str]:
    items = _items(rng)
    return " , ".join(items), " , ".join(reversed(items))


def _make_count(rng: random.Random) -> tuple[str, str]:
    items = _items(rng)
    return " , ".join(items), NUMBER_WORDS[len(items)]


def _make_and_list(rng: random.Random) -> tuple[str, str]:
    items = _items(rng)
    return " , ".join(items), " and ".join(items)


def _make_addsub(rng: random.Random) -> tuple[str, str]:
    name, noun = rng.choice(LEXICON.names), rng.choice(ARITH_NOUNS)
    a = rng.randint(1, 9)
    if rng.random() < 0.5:
        b = rng.randint(1, 10 - a)
        return f"{name} had {_count(a, noun)} and found {NUMBER_WORDS[b]}", NUMBER_WORDS[a + b]
    b = rng.randint(1, a)
    return f"{name} had {_count(a, noun)} and {rng.choice(('sold', 'lost', 'lent'))} {NUMBER_WORDS[b]}", NUMBER_WORDS[a - b]


def _make_two_step(rng: random.Random) -> tuple[str, str]:
    name, noun = rng.choice(LEXICON.names), rng.choice(ARITH_NOUNS)
    a = rng.randint(1, 4)
    b = rng.randint(1, 5 - a)
    c = rng.randint(1, a + b)
    return f"{name} had {_count(a, noun)} , found {NUMBER_WORDS[b]} , lent {NUMBER_WORDS[c]}", NUMBER_WORDS[a + b - c]


def _make_to_sentence(rng: random.Random) -> tuple[str, str]:
    _, name, noun, adj, *_ = _review(rng)
    return f"{name} , {noun} , {adj}", f"{name} said the {noun} was {adj} ."


def _make_extract(rng: random.Random) -> tuple[str, str]:
    sentence, name, noun, adj, *_ = _review(rng)
    return sentence, f"{name} , {noun} , {adj}"


def _make_pronoun(rng: random.Random) -> tuple[str, str]:
    name = rng.choice(LEXICON.names)
    return f"{name} {rng.choice(rng.choice(list(REACTIONS.values())))}", PEOPLE[name]


def _make_copy(rng: random.Random) -> tuple[str, str]:
    sentence, *_ = _review(rng)
    return sentence, sentence


def _make_domain(rng: random.Random) -> tuple[str, str]:
    domain = rng.choice(DOMAINS)
    return rng.choice(LEXICON.nouns[domain]), domain


INSTRUCTION_TYPES: tuple[InstructionType, ...] = (
    # classification phrased as an instruction (the input is a review sentence)
    InstructionType("sentiment", "classify", ("good or bad", "was it liked", "is the review good or bad"),
                    _make_sentiment),
    InstructionType("topic", "classify", ("topic", "name the topic", "which topic is it"), _make_topic),
    InstructionType("strength", "classify", ("mild or strong", "how strong", "is it mild or strong"),
                    _make_strength),
    InstructionType("who", "extract", ("who said it", "name the person", "who is it from"), _make_who),
    InstructionType("object", "extract", ("what was it about", "name the thing", "which thing was rated"),
                    _make_object),
    InstructionType("rating", "classify", ("rate it one to four", "how many stars", "give it one to four stars"),
                    _make_rating, heldout=True),
    # list and string transformations (the input is a list of two to four nouns)
    InstructionType("first", "list", ("first item", "the first one", "which comes first"), _make_first),
    InstructionType("last", "list", ("last item", "the last one", "which comes last"), _make_last, heldout=True),
    InstructionType("reverse", "list", ("reverse the list", "reverse the order", "write it backwards"),
                    _make_reverse),
    InstructionType("count", "list", ("how many items", "count the items", "how long is the list"), _make_count),
    InstructionType("copy", "string", ("repeat it", "copy the text", "say it again"), _make_copy),
    # format conversions
    InstructionType("and_list", "format", ("join with and", "use and", "link them with and"), _make_and_list),
    InstructionType("to_sentence", "format", ("make a sentence", "write a sentence", "as a sentence"),
                    _make_to_sentence),
    InstructionType("extract", "format", ("extract the fields", "list the fields", "pull out the fields"),
                    _make_extract),
    # arithmetic word problems (AddSub: one step; MultiArith: two steps)
    InstructionType("addsub", "arithmetic", ("how many", "how many now", "what is the count"),
                    _make_addsub),
    InstructionType("two_step", "arithmetic", ("how many", "how many now", "what is the count"),
                    _make_two_step, heldout=True),
    # word knowledge from the pretraining corpus
    InstructionType("pronoun", "word", ("he or she", "pick he or she", "which pronoun fits"), _make_pronoun),
    InstructionType("domain", "word", ("which topic is this word", "topic for the word", "what area is it from"),
                    _make_domain, heldout=True),
)


def instruction_types(heldout: bool | None = None) -> list[InstructionType]:
    """All instruction types, or only the held-out (True) or training (False) ones."""
    return [t for t in INSTRUCTION_TYPES if heldout is None or t.heldout == heldout]


def describe_instruction_types() -> str:
    """One line per instruction type: name, family, held out or not, and its first phrasing."""
    return "\n".join(f"{t.name:<12} {t.family:<11} {'held out' if t.heldout else 'train':<9} "
                     f"e.g. {t.phrasings[0]!r}" for t in INSTRUCTION_TYPES)


def _rows(rng: random.Random, itype: InstructionType, phrasings: Sequence[str], n: int, taken: set,
          group: str, max_tries: int = 50) -> list[dict]:
    """Up to n records of one type with new (instruction, input) pairs; adds their keys to ``taken``."""
    rows: list[dict] = []
    tries = 0
    while len(rows) < n and tries < n * max_tries:
        tries += 1
        given, output = itype.make(rng)
        instruction = rng.choice(tuple(phrasings))
        if (instruction, given) in taken:
            continue
        taken.add((instruction, given))
        rows.append({"instruction": instruction, "input": given, "output": output, "type": itype.name,
                     "family": itype.family, "group": group})
    return rows


def make_instruction_set(n_train: int = 2000, n_test_per_type: int = 20, seed: int = 0):
    """The course's Alpaca-format instruction set as a DatasetDict with 'train' and 'test'.

    Columns: ``instruction``, ``input``, ``output`` (the Alpaca fields), ``type``, ``family``
    and ``group``. Training rows cover the non-held-out types with all but the last
    phrasing. Test rows never repeat a training (instruction, input) pair and come in three
    groups: ``seen`` (training types and phrasings, new inputs), ``new wording`` (training
    types, the held-out phrasing) and ``held-out type`` (types never trained on). Types with
    few possible inputs (e.g. ``pronoun``) may contribute fewer rows than asked for.
    """
    from datasets import Dataset, DatasetDict

    n_train, n_test = check_count("n_train", n_train), check_count("n_test_per_type", n_test_per_type)
    rng = random.Random(f"course-instructions:{seed}")
    taken: set = set()
    test: list[dict] = []
    for itype in INSTRUCTION_TYPES:  # test rows first, so training never sees their keys
        if itype.heldout:
            test += _rows(rng, itype, itype.phrasings, n_test, taken, "held-out type")
        else:
            test += _rows(rng, itype, itype.phrasings[:-1], n_test, taken, "seen")
            test += _rows(rng, itype, itype.phrasings[-1:], max(1, n_test // 2), taken, "new wording")
    train_types = instruction_types(heldout=False)
    per_type = -(-n_train // len(train_types))
    train: list[dict] = []
    for itype in train_types:
        train += _rows(rng, itype, itype.phrasings[:-1], per_type, taken, "seen")
    rng.shuffle(train)
    train = train[:n_train]
    columns = (*FIELDS, "type", "family", "group")
    as_ds = lambda rows: Dataset.from_dict({c: [r[c] for r in rows] for c in columns})  # noqa: E731
    return DatasetDict({"train": as_ds(train), "test": as_ds(test)})
