"""Merging on the real track: domain LoRAs trained once and cached with their heads, merges scored per domain."""

from __future__ import annotations

import pytest
import torch

from course_lib import benchmark, real_merging
from course_lib.benchmark import dora_spec, ia3_spec
from course_lib.params import count_parameters
from course_lib.peft.lora import list_lora
from course_lib.profiles import get_profile


def test_dora_and_ia3_specs_build_their_methods_on_minilm(real_env):
    model, _ = benchmark.load_real_model(2, ["negative", "positive"], 0)
    model = dora_spec().prepare()(model) or model
    method = count_parameters(model).trainable - benchmark.head_parameter_count(model)
    assert method == 6 * 2 * (8 * (384 + 384) + 384)  # q and v in 6 layers: A, B and a magnitude per output
    model, _ = benchmark.load_real_model(2, ["negative", "positive"], 0)
    model = ia3_spec().prepare()(model) or model
    names = [n for n, p in model.named_parameters() if p.requires_grad and "classifier" not in n]
    assert len(names) == 6 * 3 and not any("attention.output" in n for n in names)  # k, v and the FFN only
    assert count_parameters(model).trainable - benchmark.head_parameter_count(model) == 6 * (384 + 384 + 1536)
    with pytest.raises(ValueError, match="unknown recipe"):
        benchmark.MethodSpec("x", "dora_typo")


def test_domain_loras_train_once_and_every_merge_is_scored_on_both_domains(real_env, monkeypatch):
    profile = get_profile("ci")
    calls = []
    train_real = real_merging.train_real
    monkeypatch.setattr(real_merging, "train_real", lambda *a, **k: calls.append(a[0].name) or train_real(*a, **k))
    scores = real_merging.merge_scores(1e-3, 0, profile, show_progress=False)
    again = real_merging.merge_scores(1e-3, 0, profile, show_progress=False)
    assert calls == ["LoRA (movie)", "LoRA (amazon)"] and again == scores
    assert list(scores) == ["movie LoRA alone", "amazon LoRA alone", *real_merging.MERGES]
    assert all(set(s) == {"movie", "amazon"} and all(0 <= v <= 1 for v in s.values()) for s in scores.values())
    folder, record = real_merging.domain_lora("movie", 1e-3, 0, profile, show_progress=False)
    assert (folder / "adapter_model.safetensors").is_file() and record.method_params > 0
    model, _ = benchmark.load_real_model(2, ["negative", "positive"], 1)
    head_before = model.classifier.weight.clone()
    real_merging.load_lora(model, folder, name="movie")
    assert list_lora(model) == ["movie"] and not torch.equal(model.classifier.weight, head_before)  # head saved
    joint = real_merging.joint_lora(1e-3, 0, profile, show_progress=False)
    assert set(joint) == {"movie", "amazon"} and len(calls) == 2  # the joint run is not a domain run
    assert real_merging.joint_lora(1e-3, 0, profile, show_progress=False) == joint  # cached
    loras = real_merging.domain_loras(1e-3, 0, profile, show_progress=False)  # the cached LoRAs, in one model
    assert loras.scores("movie", head_of="movie") == scores["movie LoRA alone"] and len(calls) == 2
    assert set(loras.merge("halves", "cat", [0.5, 0.5])) == {"movie", "amazon"}
    with pytest.raises(ValueError, match="combination_type"):
        loras.merge("bad", "median", [0.5, 0.5])

