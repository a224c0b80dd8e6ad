"""Four sentence-classification tasks over the synthetic world, as Hugging Face DatasetDicts.

Training rows use only seen nouns and adjectives; validation and test rows draw
from all of them, and the ``heldout`` column marks rows that contain a held-out word.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

from .corpus import check_count
from .world import CELLS, DOMAINS, LEXICON, POLARITIES, STRENGTHS, TASK_TEMPLATES, Cell, task_sentence


@dataclass(frozen=True)
class TaskSpec:
    """Name, one-line description and label names of a classification task."""

    name: str
    description: str
    label_names: tuple[str, ...]


RATING_CELLS: tuple[Cell, ...] = (
    ("negative", "strong"), ("negative", "mild"), ("positive", "mild"), ("positive", "strong"))

TASKS: dict[str, TaskSpec] = {
    "sentiment": TaskSpec("sentiment", "Is the opinion positive or negative?", POLARITIES),
    "topic": TaskSpec("topic", "Which domain is the sentence about (food, travel, tech or sport)?", DOMAINS),
    "strength": TaskSpec("strength", "Is the opinion mild or strong?", STRENGTHS),
    "rating": TaskSpec("rating", "Star rating 1-4 = polarity x strength (composes sentiment and strength).",
                       ("1 star (strong negative)", "2 stars (mild negative)", "3 stars (mild positive)",
                        "4 stars (strong positive)")),
}

# For each task: label index -> (allowed domains, allowed opinion cells).
_CONSTRAINTS: dict[str, Callable[[int], tuple[tuple[str, ...], tuple[Cell, ...]]]] = {
    "sentiment": lambda y: (DOMAINS, tuple(c for c in CELLS if c[0] == POLARITIES[y])),
    "topic": lambda y: ((DOMAINS[y],), CELLS),
    "strength": lambda y: (DOMAINS, tuple(c for c in CELLS if c[1] == STRENGTHS[y])),
    "rating": lambda y: (DOMAINS, (RATING_CELLS[y],)),
}

SPLITS: tuple[str, ...] = ("train", "validation", "test")


def task_names() -> list[str]:
    """Names of the available tasks."""
    return list(TASKS)


def describe_tasks() -> str:
    """One line per task: name, number of labels and description."""
    return "\n".join(f"{t.name:<10} {len(t.label_names)} labels  {t.description}" for t in TASKS.values())


def get_task(name: str) -> TaskSpec:
    """Look up a task by name; unknown names raise KeyError listing the valid ones."""
    if name not in TASKS:
        raise KeyError(f"Unknown task {name!r}; valid tasks are: {', '.join(TASKS)}.")
    return TASKS[name]


def _example(rng: random.Random, task: str, label: int, seen_only: bool) -> tuple[str, bool]:
    """Sample one sentence with the given label; return (text, contains a held-out word)."""
    domains, cells = _CONSTRAINTS[task](label)
    domain, cell = rng.choice(domains), rng.choice(cells)
    nouns = LEXICON.seen_nouns[domain] if seen_only else LEXICON.nouns[domain]
    adjs = LEXICON.seen_adjectives[cell] if seen_only else LEXICON.adjectives[cell]
    noun, adj = rng.choice(nouns), rng.choice(adjs)
    text = task_sentence(rng.choice(LEXICON.names), noun, adj, rng.choice(TASK_TEMPLATES))
    return text, bool({noun, adj} & LEXICON.held_out_words())


def _split_rows(rng: random.Random, task: str, n: int, seen_only: bool, taken: set[str]) -> dict[str, list]:
    """n balanced rows avoiding sentences in `taken` (other splits) and, where possible, repeats."""
    n_labels = len(TASKS[task].label_names)
    labels = [i % n_labels for i in range(n)]
    rng.shuffle(labels)
    rows: dict[str, list] = {"text": [], "label": [], "heldout": []}
    mine: set[str] = set()
    for y in labels:
        for attempt in range(2000):
            text, heldout = _example(rng, task, y, seen_only)
            if text not in taken and (text not in mine or attempt >= 100):
                break  # first try for a new sentence; accept a repeat within this split only if it is scarce
        mine.add(text)
        rows["text"].append(text)
        rows["label"].append(y)
        rows["heldout"].append(heldout)
    return rows


def load_task(name: str, n_train: int, n_val: int, n_test: int, seed: int = 0) -> DatasetDict:
    """Build train/validation/test splits (columns text, label, heldout) for a task, deterministically."""
    spec = get_task(name)
    sizes = {"train": check_count("n_train", n_train), "validation": check_count("n_val", n_val),
             "test": check_count("n_test", n_test)}
    features = Features({"text": Value("string"), "label": ClassLabel(names=list(spec.label_names)),
                         "heldout": Value("bool")})
    taken: set[str] = set()
    splits = {}
    # Test first, then validation, then train: the test set depends only on (name, seed, n_test).
    for split in reversed(SPLITS):
        rng = random.Random(f"course-task:{name}:{seed}:{split}")
        rows = _split_rows(rng, name, sizes[split], seen_only=split == "train", taken=taken)
        taken.update(rows["text"])
        splits[split] = Dataset.from_dict(rows, features=features)
    return DatasetDict({s: splits[s] for s in SPLITS})
