"""Test setup: the ci profile, no network, and a headless matplotlib."""

import os

# Set before anything imports course_lib; nbval's kernels inherit this environment too.
os.environ.setdefault("COURSE_PROFILE", "ci")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


import pytest  # noqa: E402

SAMPLE_TEXTS = ["maria ate the curry for dinner . it was superb , so she came back .",
                "the laptop felt dull to anna .", "tom said the ferry was awful ."] * 30


@pytest.fixture(scope="session")
def small_tokenizer():
    """A BPE tokenizer trained on a few sentences (shared by the tokenizer and collator tests)."""
    from course_lib.data.tokenizer import train_tokenizer

    return train_tokenizer(SAMPLE_TEXTS, vocab_size=120)


@pytest.fixture()
def data(small_tokenizer):
    """32 labelled sentences and a classification collator for a few training steps."""
    from course_lib.data.collate import ClassificationCollator

    texts = ["tom said the soup was superb .", "anna found the laptop awful ."] * 16
    rows = [{"text": t, "label": i % 2} for i, t in enumerate(texts)]
    return rows, ClassificationCollator(small_tokenizer, max_len=32)


@pytest.fixture
def real_env(tmp_path, monkeypatch):
    """Synthetic rated sentences as the real track's data and an empty cache (the benchmark and fusion tests)."""
    from test_sentiment_data import write_data

    write_data(tmp_path / "data", n=400)
    monkeypatch.setenv("COURSE_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path / "cache"))
    return tmp_path
