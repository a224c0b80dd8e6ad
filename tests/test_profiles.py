import random

import pytest
import torch

from course_lib.profiles import PROFILES, default_profile_name, get_device, get_profile, seed_everything


def test_env_selects_profile(monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "cpu")
    assert get_profile().name == "cpu"
    monkeypatch.setenv("COURSE_PROFILE", " CI ")  # exact names only: no silent guess
    with pytest.raises(ValueError, match=r"Unknown course profile ' CI '.*Allowed profiles: ci, cpu, gpu"):
        get_profile()


def test_default_profile_follows_hardware(monkeypatch):
    monkeypatch.delenv("COURSE_PROFILE", raising=False)
    expected = "gpu" if torch.cuda.is_available() else "cpu"
    assert default_profile_name() == expected
    assert get_profile().name == expected


def test_unknown_profile_lists_allowed(monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "laptop")
    with pytest.raises(ValueError, match=r"'laptop'.*ci, cpu, gpu"):
        get_profile()


def test_overrides_and_bad_override():
    p = get_profile("ci", finetune_steps=7)
    assert p.finetune_steps == 7 and PROFILES["ci"].finetune_steps != 7
    with pytest.raises(ValueError, match="allowed fields"):
        get_profile("ci", not_a_field=1)


def test_profiles_grow_from_ci_to_gpu():
    ci, cpu, gpu = PROFILES["ci"], PROFILES["cpu"], PROFILES["gpu"]
    for field in ("corpus_sentences", "d_model", "pretrain_steps"):
        assert getattr(ci, field) < getattr(cpu, field) < getattr(gpu, field)
    for p in PROFILES.values():
        assert p.d_model % p.n_heads == 0


def test_device_choice():
    assert get_device("cpu").type == "cpu"
    assert get_device().type in {"cuda", "mps", "cpu"}
    with pytest.raises(ValueError, match="allowed: cuda, mps, cpu"):
        get_device("tpu")


def test_seed_everything_is_reproducible():
    g1 = seed_everything(3)
    a = (random.random(), torch.rand(3), torch.rand(2, generator=g1))
    g2 = seed_everything(3)
    b = (random.random(), torch.rand(3), torch.rand(2, generator=g2))
    assert a[0] == b[0] and torch.equal(a[1], b[1]) and torch.equal(a[2], b[2])
    with pytest.raises(ValueError):
        seed_everything(-1)


def test_lesson_sizes_live_in_the_profile_and_take_overrides():
    ci = get_profile("ci")
    assert ci.translation.steps < PROFILES["cpu"].translation.steps < PROFILES["gpu"].translation.steps
    assert ci.sft.steps < PROFILES["cpu"].sft.steps < PROFILES["gpu"].sft.steps
    assert 0 < ci.peft_lr < ci.prompt_lr
    short = get_profile("cpu", translation={"steps": 10}, sft={"steps": 5}, peft_lr=1e-3)
    assert (short.translation.steps, short.sft.steps, short.peft_lr) == (10, 5, 1e-3)
    assert short.translation.d_model == PROFILES["cpu"].translation.d_model  # the other fields are kept
    with pytest.raises(ValueError, match=r"Unknown profile.translation field\(s\) \['stpes'\]"):
        get_profile("cpu", translation={"stpes": 10})
