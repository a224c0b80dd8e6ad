"""AdapterFusion on the real track: small targets, source adapters trained once and cached, the fusion method."""

from __future__ import annotations

import pytest

from course_lib import benchmark, real_fusion
from course_lib.benchmark import MethodSpec, RealTask, run_key
from course_lib.peft.fusion import fusion_param_count
from course_lib.profiles import get_profile


def test_a_small_target_changes_the_split_and_the_key_only_when_set(real_env):
    profile, spec = get_profile("ci"), benchmark.real_methods()["head only"]
    assert RealTask().key_parts() == {"domain": "movie", "task": "polarity", "model": "minilm"}  # old keys stay valid
    small = RealTask("nyt", n_train=10)
    assert len(benchmark.real_splits(profile, small)["train"]) == 10
    assert run_key(spec, 1e-3, 0, profile, small) != run_key(spec, 1e-3, 0, profile, RealTask("nyt"))
    for bad in (1, 2.5, True):
        with pytest.raises(ValueError, match="n_train must be None"):
            RealTask("nyt", n_train=bad)
    assert real_fusion.source_task("amazon", profile).n_train is None  # the profile's size fits
    greedy = get_profile("ci", real={"n_train": 10_000})  # more than the domain has: every sentence left is used
    capped = real_fusion.source_task("amazon", greedy)
    assert capped.n_train is not None and len(benchmark.real_splits(greedy, capped)["train"]) == capped.n_train
    with pytest.raises(ValueError, match="AdapterFusion needs sources="):
        MethodSpec("fusion", "adapter_fusion", {"sources": "movie"})


def test_sources_train_once_and_the_fusion_trains_only_its_layers(real_env, monkeypatch):
    profile = get_profile("ci")
    calls = []
    train_real = real_fusion.train_real
    monkeypatch.setattr(real_fusion, "train_real", lambda *a, **k: calls.append(a[0].name) or train_real(*a, **k))
    spec = real_fusion.fusion_spec(["movie", "amazon"], 1e-3, profile, show_progress=False)
    again = real_fusion.fusion_spec(["movie", "amazon"], 1e-3, profile, show_progress=False)
    assert calls == ["source adapter (movie)", "source adapter (amazon)"] and again == spec
    folder, record = real_fusion.source_adapter("movie", 1e-3, profile, show_progress=False)
    assert folder.name == spec.options["sources"][0] and record.method_params > 0
    result = benchmark.run_at(spec, 1e-3, profile, task=RealTask("nyt", n_train=16), show_progress=False)
    assert result.runs[0].method_params == 6 * fusion_param_count(384)  # Q, K, V per layer; the sources are frozen
    flat = real_fusion.fusion_spec(["movie", "amazon"], 1e-3, profile, show_progress=False, uniform=True)
    assert flat.options["sources"] == spec.options["sources"] and len(calls) == 2  # the same cached sources
    result = benchmark.run_at(flat, 1e-3, profile, task=RealTask("nyt", n_train=16), show_progress=False)
    assert result.runs[0].method_params == 6 * 384 * 384  # the ablation trains V only
    _, model = benchmark.train_real(spec, 1e-3, 0, profile, RealTask("nyt", n_train=16), show_progress=False)
    _, tokenizer = benchmark.load_real_model(2, ["negative", "positive"], 0)
    weights = real_fusion.fusion_weights(model, tokenizer, ["a fine film .", "dull"], max_len=16)
    assert weights["sources"] == ["movie", "amazon"] and len(weights["sites"]) == 6
    assert all(abs(sum(row) - 1) < 1e-5 for row in weights["weights"])
    with pytest.raises(ValueError, match="at least one source domain"):
        real_fusion.fusion_spec([], 1e-3, profile)
