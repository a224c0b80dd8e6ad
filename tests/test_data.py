"""Tests for the synthetic world: corpus, lexicon split and the four classification tasks."""

from collections import Counter

import pytest
from datasets import ClassLabel

from course_lib.data import LEXICON, TASKS, describe_tasks, held_out_words, load_task, make_corpus, task_names
from course_lib.data.tasks import RATING_CELLS
from course_lib.data.world import DOMAINS, POLARITIES, STRENGTHS

SIZES = dict(n_train=64, n_val=48, n_test=200)


@pytest.fixture(scope="module")
def tasks():
    return {name: load_task(name, **SIZES) for name in task_names()}


def content(text: str) -> tuple[list[str], list[str]]:
    """The nouns and the adjectives found in a sentence."""
    words = text.split()
    return [w for w in words if LEXICON.domain_of(w)], [w for w in words if LEXICON.cell_of(w)]


def test_lexicon_split_is_disjoint_and_partial():
    held, seen = held_out_words(), LEXICON.seen_words()
    assert held and seen and not held & seen
    assert held | seen == LEXICON.content_words()
    for d in DOMAINS:
        assert LEXICON.seen_nouns[d] and LEXICON.heldout_nouns[d]
    assert not set(LEXICON.names) & LEXICON.content_words()


def test_corpus_deterministic_and_seeded():
    assert make_corpus(50, seed=3) == make_corpus(50, seed=3)
    assert make_corpus(50, seed=3) != make_corpus(50, seed=4)
    assert len(make_corpus(1)) == 1


def test_corpus_covers_every_word_many_times():
    counts = Counter(w for s in make_corpus(2000) for w in s.split())
    rare = {w: counts[w] for w in LEXICON.all_words() if counts[w] < 10}
    assert not rare, f"words that appear fewer than 10 times: {rare}"
    assert all(s == s.lower() and s.endswith(" .") for s in make_corpus(200))


@pytest.mark.parametrize("bad", [0, -1])
def test_corpus_rejects_bad_sizes(bad):
    with pytest.raises(ValueError, match="n_sentences"):
        make_corpus(bad)


def test_tasks_deterministic_and_seeded():
    a, b = load_task("topic", **SIZES, seed=1), load_task("topic", **SIZES, seed=1)
    c = load_task("topic", **SIZES, seed=2)
    for split in ("train", "validation", "test"):
        assert a[split]["text"][:] == b[split]["text"][:]
    assert a["train"]["text"][:] != c["train"]["text"][:]


def test_splits_and_features(tasks):
    for name, ds in tasks.items():
        assert set(ds) == {"train", "validation", "test"}
        assert [len(ds[s]) for s in ("train", "validation", "test")] == list(SIZES.values())
        label = ds["train"].features["label"]
        assert isinstance(label, ClassLabel) and tuple(label.names) == TASKS[name].label_names
        assert set(ds["test"].column_names) == {"text", "label", "heldout"}


def test_heldout_words_only_outside_train(tasks):
    held = held_out_words()
    for ds in tasks.values():
        assert not any(held & set(t.split()) for t in ds["train"]["text"])
        assert not any(ds["train"]["heldout"])
        flags = [bool(held & set(t.split())) for t in ds["test"]["text"]]
        assert flags == list(ds["test"]["heldout"])
        assert 0.3 < sum(flags) / len(flags) < 0.9
        assert not set(ds["test"]["text"]) & set(ds["train"]["text"])


def test_labels_balanced(tasks):
    for name, ds in tasks.items():
        for split in ds.values():
            counts = Counter(split["label"])
            expected = len(split) / len(TASKS[name].label_names)
            assert len(counts) == len(TASKS[name].label_names)
            assert all(abs(n - expected) <= 0.1 * expected + 1 for n in counts.values())


def test_labels_match_words(tasks):
    for name, ds in tasks.items():
        for row in ds["test"]:
            nouns, adjs = content(row["text"])
            assert len(nouns) == 1 and len(adjs) == 1, row["text"]
            domain, (polarity, strength) = LEXICON.domain_of(nouns[0]), LEXICON.cell_of(adjs[0])
            expected = {"sentiment": POLARITIES.index(polarity), "topic": DOMAINS.index(domain),
                        "strength": STRENGTHS.index(strength),
                        "rating": RATING_CELLS.index((polarity, strength))}[name]
            assert row["label"] == expected, row


def test_task_errors():
    with pytest.raises(KeyError) as err:
        load_task("nope", 4, 4, 4)
    assert all(name in str(err.value) for name in task_names())
    with pytest.raises(ValueError, match="n_test"):
        load_task("sentiment", 4, 4, 0)


def test_descriptions():
    lines = describe_tasks().splitlines()
    assert len(lines) == len(TASKS) and task_names() == ["sentiment", "topic", "strength", "rating"]
