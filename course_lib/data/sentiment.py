"""Classification tasks on real text: the Hutto & Gilbert rated sentences as polarity or 5-class sentiment.

``load_sentiment("movie", "polarity")`` returns a ``datasets.DatasetDict`` (train / validation / test) with
``text`` and ``label`` columns. The split is fixed by ``split_seed`` (test first, then validation, then train), so a
larger training set never moves a sentence out of the test set. Two tasks:

- ``polarity``: negative (rating < -band) vs positive (rating > +band); the near-neutral band is dropped.
- ``fine``: five classes binned like SST-5 at -2, -0.5, +0.5, +2 on the [-4, 4] scale (the neutral class
  includes its edges).

:func:`sentiment_report` says what was dropped and how balanced the classes are. GLUE SST-2 is the online opt-in
(:func:`load_sst2`), which also reads local files of its schema.
"""

from __future__ import annotations

import random
from bisect import bisect_left, bisect_right
from collections import Counter
from pathlib import Path
from typing import Any, Optional

from .vader import FILES, Ratings, read_ratings

SENTIMENT_TASKS = ("polarity", "fine")
POLARITY_BAND = 0.5
POLARITY_NAMES = ["negative", "positive"]
FINE_EDGES = (-2.0, -0.5, 0.5, 2.0)
FINE_NAMES = ["very negative", "negative", "neutral", "positive", "very positive"]
SPLIT_SEED = 0


def _check(domain: str, task: str, band: float) -> None:
    if domain not in FILES:
        raise ValueError(f"Unknown sentiment domain {domain!r}; allowed: {', '.join(FILES)}.")
    if task not in SENTIMENT_TASKS:
        raise ValueError(f"Unknown sentiment task {task!r}; allowed: {', '.join(SENTIMENT_TASKS)}.")
    if not 0.0 <= band < 4.0:
        raise ValueError(f"band must be in [0, 4) (the neutral half-width on the -4..4 scale), got {band!r}.")


def label_of(rating: float, task: str, band: float = POLARITY_BAND) -> Optional[int]:
    """The class of a mean rating for ``task`` (None: inside the polarity task's neutral band)."""
    if task == "polarity":
        return None if abs(rating) <= band else int(rating > 0)
    # symmetric bins: r < -2 | -2 <= r < -0.5 | -0.5 <= r <= 0.5 | 0.5 < r <= 2 | r > 2
    if rating <= 0:
        return bisect_right(FINE_EDGES, rating)
    return bisect_left(FINE_EDGES, rating)


def labelled(ratings: Ratings, task: str, band: float) -> tuple[list[str], list[int], int]:
    """(texts, labels, dropped) for a task; dropped counts the sentences inside the neutral band."""
    texts, labels = [], []
    for text, rating in zip(ratings.texts, ratings.ratings):
        label = label_of(rating, task, band)
        if label is not None:
            texts.append(text)
            labels.append(label)
    return texts, labels, len(ratings.texts) - len(texts)


def load_sentiment(domain: str = "movie", task: str = "polarity", n_train: Optional[int] = None,
                   n_val: int = 500, n_test: int = 1000, band: float = POLARITY_BAND, split_seed: int = SPLIT_SEED,
                   root: str | Path | None = None):
    """Seeded train / validation / test splits of one domain (``n_train=None``: every remaining sentence)."""
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    _check(domain, task, band)
    for name, value in (("n_val", n_val), ("n_test", n_test)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}.")
    texts, labels, _ = labelled(read_ratings(domain, root), task, band)
    order = list(range(len(texts)))
    random.Random(split_seed).shuffle(order)
    available = len(order) - n_val - n_test
    if n_train is None:
        n_train = available
    if not isinstance(n_train, int) or not 1 <= n_train <= available:
        raise ValueError(f"n_train must be an int from 1 to {available} for {domain}/{task} with n_val={n_val}, "
                         f"n_test={n_test} ({len(order)} labelled sentences), got {n_train!r}.")
    parts = {"test": order[:n_test], "validation": order[n_test:n_test + n_val],
             "train": order[n_test + n_val:n_test + n_val + n_train]}
    names = POLARITY_NAMES if task == "polarity" else FINE_NAMES
    features = Features({"text": Value("string"), "label": ClassLabel(names=names)})
    return DatasetDict({split: Dataset.from_dict({"text": [texts[i] for i in idx], "label": [labels[i] for i in idx]},
                                                 features=features)
                        for split, idx in (("train", parts["train"]), ("validation", parts["validation"]),
                                           ("test", parts["test"]))})


def sentiment_report(domain: str = "movie", task: str = "polarity", band: float = POLARITY_BAND,
                     root: str | Path | None = None) -> dict[str, Any]:
    """What the task keeps: sentences read, malformed lines, dropped as neutral, and the count of each class."""
    _check(domain, task, band)
    ratings = read_ratings(domain, root)
    _, labels, dropped = labelled(ratings, task, band)
    names = POLARITY_NAMES if task == "polarity" else FINE_NAMES
    counts = Counter(labels)
    return {"domain": domain, "task": task, "sentences": len(ratings.texts), "malformed lines": ratings.malformed,
            "dropped as neutral": dropped if task == "polarity" else 0, "kept": len(labels),
            **{f"class {name}": counts.get(i, 0) for i, name in enumerate(names)},
            "majority share": round(max(counts.values()) / len(labels), 3)}


def load_sst2(data_files: Optional[dict[str, str]] = None, n_val: int = 872, split_seed: int = SPLIT_SEED):
    """GLUE SST-2 (online, by name) or local files of its schema (``sentence``, ``label``) as text/label splits.

    GLUE's test labels are hidden, so its validation split becomes the test split and ``n_val`` training sentences
    (seeded) become the validation split.
    """
    from datasets import ClassLabel, DatasetDict, load_dataset

    if data_files is None:
        raw = load_dataset("glue", "sst2")
    else:
        missing = {"train", "validation"} - set(data_files)
        if missing:
            raise ValueError(f"data_files needs 'train' and 'validation' files, missing {sorted(missing)}.")
        kind = Path(data_files["train"]).suffix.lstrip(".").replace("jsonl", "json")
        raw = load_dataset(kind, data_files=data_files)
    for split in ("train", "validation"):
        absent = {"sentence", "label"} - set(raw[split].column_names)
        if absent:
            raise ValueError(f"SST-2 {split} split lacks the column(s) {sorted(absent)}.")
    train = raw["train"].rename_column("sentence", "text").select_columns(["text", "label"])
    test = raw["validation"].rename_column("sentence", "text").select_columns(["text", "label"])
    label = ClassLabel(names=POLARITY_NAMES)
    train, test = train.cast_column("label", label), test.cast_column("label", label)
    if not 1 <= n_val < len(train):
        raise ValueError(f"n_val must be between 1 and {len(train) - 1}, got {n_val}.")
    held = train.train_test_split(test_size=n_val, seed=split_seed)
    return DatasetDict({"train": held["train"], "validation": held["test"], "test": test})
