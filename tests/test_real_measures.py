"""Real-track measurements beyond accuracy: neighbour agreement, embedding drift, the measure cache, peak memory."""

from __future__ import annotations

import json

import pytest
import torch

from course_lib import benchmark, real_measures
from course_lib.benchmark import real_methods
from course_lib.memory import rss_peak_supported
from course_lib.profiles import get_profile
from course_lib.real_measures import (embedding_drift, neighbour_agreement, probe_texts, sentence_embeddings,
                                      training_peak)


def unit_rows(*rows: list[float]) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.tensor(rows, dtype=torch.float32), dim=-1)


def test_neighbour_agreement_by_hand():
    # two pairs: {0, 1} near (1, 0) and {2, 3} near (0, 1); each point's nearest neighbour is its partner
    before = unit_rows([1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9])
    assert neighbour_agreement(before, before, k=1) == 1.0
    # move point 3 next to point 1: only 3 loses its neighbour (2 -> 1); 0, 1 and 2 keep theirs
    after = unit_rows([1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.8, 0.2])
    assert neighbour_agreement(before, after, k=1) == pytest.approx(0.75)
    drift = embedding_drift(before, before, k=2)
    assert drift == {"neighbour agreement@2": 1.0, "cosine to base": pytest.approx(1.0)}


def test_neighbour_agreement_rejects_bad_input():
    a = unit_rows([1.0, 0.0], [0.0, 1.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="one shape"):
        neighbour_agreement(a, a[:2])
    with pytest.raises(ValueError, match="k must be an int from 1 to 2, got 3"):
        neighbour_agreement(a, a, k=3)


def test_probe_texts_are_seeded_and_checked(real_env):
    assert probe_texts(20) == probe_texts(20)
    assert probe_texts(20) != probe_texts(20, seed=1)
    with pytest.raises(ValueError, match="n must be an int from 1 to"):
        probe_texts(10_000)


def test_an_untouched_encoder_does_not_drift_and_a_trained_one_does(real_env):
    texts = probe_texts(30)
    before = real_measures.base_embeddings(texts, max_len=32)
    assert before.shape == (30, 384)
    assert torch.allclose(before.norm(dim=-1), torch.ones(30), atol=1e-5)
    model, tokenizer = benchmark.load_real_model(2, ["negative", "positive"], seed=3)  # another head: same encoder
    assert embedding_drift(before, sentence_embeddings(model, tokenizer, texts, 32), k=5)["cosine to base"] == \
        pytest.approx(1.0, abs=1e-6)
    with torch.no_grad():
        model.base_model.encoder.layer[0].attention.self.query.weight.mul_(-3.0)
    moved = embedding_drift(before, sentence_embeddings(model, tokenizer, texts, 32), k=5)
    assert moved["cosine to base"] < 0.999 and 0.0 <= moved["neighbour agreement@5"] < 1.0


def test_a_measure_is_computed_once_then_read_from_the_cache(real_env, monkeypatch):
    profile = get_profile("ci")
    spec = real_methods()["head only"]
    calls = []

    def measure(model, tokenizer):
        calls.append(1)
        return {"answer": 42.0}

    assert real_measures.cached_measure(spec, 1e-3, 0, profile, "probe", measure, show_progress=False) == \
        {"answer": 42.0}
    monkeypatch.setattr(real_measures, "train_real", lambda *a, **k: pytest.fail("a cached measure must not retrain"))
    assert real_measures.cached_measure(spec, 1e-3, 0, profile, "probe", measure) == {"answer": 42.0}
    assert len(calls) == 1
    stored = list(benchmark.runs_dir().glob("*.probe.json"))
    assert len(stored) == 1 and json.loads(stored[0].read_text()) == {"answer": 42.0}
    with pytest.raises(ValueError, match="measure name must be letters"):
        real_measures.cached_measure(spec, 1e-3, 0, profile, "../escape", measure)


def test_training_peak_measures_something_and_full_ft_needs_more_than_head_only(real_env):
    if not rss_peak_supported():
        pytest.skip("no resettable RSS high-water mark on this system")
    profile = get_profile("ci")
    splits = benchmark.real_splits(profile)
    methods = real_methods(["full fine-tuning", "head only"])
    full, how = training_peak(methods["full fine-tuning"], profile, splits=splits, steps=2)
    head, _ = training_peak(methods["head only"], profile, splits=splits, steps=2)
    assert how == "RSS high-water mark"
    # full FT adds gradients and two AdamW moments for 22.7M float32 weights (~270 MB); head-only adds almost none
    assert full > 200 * 2**20 and head < full / 2
