"""The capstone comparison: every method prepares, trains only its own parameters, and lands in one table."""

import dataclasses
from pathlib import Path

import pytest
import torch
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

from course_lib.compare import (Method, comparison_table, compare_methods, default_methods, run_method,
                                train_source_adapters)
from course_lib.memory import PeakMemory, rss_peak_supported
from course_lib.models import EncoderConfig, EncoderForMaskedLM
from course_lib.pretrain import PretrainedBase
from course_lib.profiles import get_profile
from course_lib.train import History

TEXTS = ["tom said the soup was superb .", "anna found the laptop awful .", "the ferry felt dull to maria ."]


@pytest.fixture(scope="module")
def tiny_profile():
    return dataclasses.replace(get_profile("ci"), finetune_steps=3, finetune_batch=8, eval_every=3, max_len=24,
                               task_train=24, task_val=8, task_test=8)


@pytest.fixture(scope="module")
def tiny_base(small_tokenizer):
    torch.manual_seed(0)
    config = EncoderConfig(vocab_size=len(small_tokenizer), max_len=24, d_model=32, n_layers=2, n_heads=2, d_ff=64,
                           pad_token_id=small_tokenizer.pad_token_id)
    return PretrainedBase(name="encoder", model=EncoderForMaskedLM(config), tokenizer=small_tokenizer,
                          history=History(), path=Path("."), from_cache=False)


@pytest.fixture(scope="module")
def tiny_splits():
    features = Features({"text": Value("string"), "label": ClassLabel(num_classes=3)})

    def split(n):
        return Dataset.from_dict({"text": [TEXTS[i % 3] for i in range(n)], "label": [i % 3 for i in range(n)]},
                                 features=features)
    return DatasetDict(train=split(24), validation=split(8), test=split(8))


def test_every_default_method_trains_only_its_own_parameters(tiny_base, tiny_splits, tiny_profile):
    methods = default_methods(tiny_profile, with_fusion=False)
    assert len({m.name for m in methods}) == len(methods)
    for method in methods:
        run = run_method(method, tiny_base, tiny_splits, tiny_profile, torch.device("cpu"))
        assert 0 < run.result.trainable_params < run.result.total_params or method.family == "full", method.name
        assert run.checkpoint_bytes > 0 and run.ms_per_step > 0
    # every method trains a copy: the pretrained base keeps its own (untouched) parameters
    assert all(p.requires_grad for p in tiny_base.model.parameters())


def test_merged_lora_and_folded_prefix_are_what_gets_deployed(tiny_base, tiny_splits, tiny_profile):
    by_name = {m.name: m for m in default_methods(tiny_profile, with_fusion=False)}
    lora = run_method(by_name["LoRA r=8 (q, v)"], tiny_base, tiny_splits, tiny_profile, torch.device("cpu"))
    assert not any("lora" in n for n, _ in lora.inference_model.named_parameters())
    assert lora.checkpoint_bytes < 4 * lora.result.total_params  # adapter + head, not the whole model
    prefix = run_method(by_name["prefix tuning (n=8)"], tiny_base, tiny_splits, tiny_profile, torch.device("cpu"))
    assert prefix.inference_model.prefix_encoder.reparametrized is False
    n_layers, d = 2, 32
    head = sum(p.numel() for n, p in prefix.inference_model.named_parameters() if n.startswith("classifier."))
    assert prefix.checkpoint_bytes >= 4 * (2 * n_layers * 8 * d + head)


def test_fusion_uses_trained_source_adapters_and_table_has_one_row_per_method(tiny_base, tiny_splits, tiny_profile,
                                                                                tmp_path, monkeypatch):
    import course_lib.data.tasks as tasks

    monkeypatch.setattr(tasks, "load_task", lambda name, *sizes: tiny_splits)
    sources = train_source_adapters(tiny_base, ["a", "b"], tmp_path, tiny_profile, torch.device("cpu"))
    assert sorted(p.name for p in sources.iterdir()) == ["a", "b"]
    by_name = {m.name: m for m in default_methods(tiny_profile)}
    chosen = [by_name["AdapterFusion (3 sources)"], by_name["head only"]]
    runs = compare_methods(chosen, tiny_base, tiny_splits, tiny_profile, torch.device("cpu"), seeds=(0, 1),
                           sources=sources, latency_batch=4)
    table = comparison_table(runs)
    assert list(table.index) == [m.name for m in chosen]
    assert "test acc ±" in table.columns and (table["latency ms"] > 0).all()
    assert table.loc["head only", "trainable params"] < table.loc["AdapterFusion (3 sources)", "trainable params"]


def test_bad_methods_and_missing_sources_raise(tiny_base, tiny_splits, tiny_profile):
    with pytest.raises(ValueError, match="family must be one of"):
        Method("x", "magic", lambda m, s: m)
    fusion = next(m for m in default_methods(tiny_profile) if m.needs_sources)
    with pytest.raises(ValueError, match="needs trained source adapters"):
        run_method(fusion, tiny_base, tiny_splits, tiny_profile, torch.device("cpu"))
    frozen = Method("nothing trains", "selective", lambda m, s: m.requires_grad_(False))
    with pytest.raises(ValueError, match="left no trainable parameter"):
        run_method(frozen, tiny_base, tiny_splits, tiny_profile, torch.device("cpu"))
    with pytest.raises(ValueError, match="at least one method"):
        compare_methods([], tiny_base, tiny_splits, tiny_profile)


@pytest.mark.skipif(not rss_peak_supported(), reason="needs Linux /proc/self/clear_refs")
def test_peak_memory_sees_a_temporary_allocation():
    with PeakMemory("cpu") as small:
        torch.zeros(1000).sum()
    with PeakMemory("cpu") as big:
        x = torch.ones(20_000_000)  # 80 MB, touched so the pages are resident
        del x
    assert big.method == "RSS high-water mark"
    assert big.peak_bytes > 60e6 and big.peak_bytes > small.peak_bytes + 50e6
    assert big.peak_mb == pytest.approx(big.peak_bytes / 2**20)


def test_markdown_table_has_a_row_per_method_and_rejects_unknown_columns():
    import pandas as pd

    from course_lib.compare import markdown_table

    table = pd.DataFrame({"family": ["full", "reparametrization"], "trainable params": [1000, 20],
                          "test acc": [0.9, 0.85], "test acc ±": [0.01, 0.02]}, index=["full FT", "LoRA"])
    text = markdown_table(table, columns=("family", "trainable params", "test acc"))
    lines = text.splitlines()
    assert lines[0] == "| method | family | trainable params | test acc |" and len(lines) == 4
    assert lines[2] == "| full FT | full | 1,000 | 0.900 ± 0.010 |"
    with pytest.raises(ValueError, match="not in the table"):
        markdown_table(table, columns=("latency ms",))


def test_run_finetune_is_the_one_run_helper(tiny_base, tiny_splits, tiny_profile, monkeypatch):
    import sys

    from course_lib import recipes
    from course_lib.finetune import run_finetune
    from course_lib.peft import PromptTuningModel

    configs = []
    module = sys.modules["course_lib.finetune"]
    real = module.train
    monkeypatch.setattr(module, "train", lambda model, data, collate, config, **kw: configs.append(config)
                        or real(model, data, collate, config, **kw))
    full = run_finetune(tiny_base, tiny_splits, tiny_profile, name="full", show_progress=False)
    assert full.trainable_params == full.total_params and configs[-1].lr == tiny_profile.finetune_lr
    lora = run_finetune(tiny_base, tiny_splits, tiny_profile, recipes.lora(["q_proj"], r=2), name="lora",
                        lr=tiny_profile.peft_lr, steps=2, seed=3, show_progress=False)
    assert (configs[-1].lr, configs[-1].steps, configs[-1].seed) == (tiny_profile.peft_lr, 2, 3)
    assert configs[-1].precision == tiny_profile.precision and lora.trainable_params < lora.total_params
    prompt = run_finetune(tiny_base, tiny_splits, tiny_profile, recipes.prompt_tuning(2), name="prompt",
                          show_progress=False)
    assert isinstance(prompt.model, PromptTuningModel)  # the wrapper a recipe returns is what trains
    with pytest.raises(ValueError, match="left no trainable parameter"):
        run_finetune(tiny_base, tiny_splits, tiny_profile, lambda m: m.requires_grad_(False), name="frozen")


@pytest.mark.parametrize("recipe, marker", [("adapter", ".adapters.task."), ("lora", ".lora_"),
                                            ("prefix_tuning", "prefix_encoder."), ("qlora", ".lora_")])
def test_each_recipe_trains_its_method_and_the_head(recipe, marker):
    from course_lib import recipes
    from tiny_models import tiny_classifier

    model = getattr(recipes, recipe)(**({"n_prefix": 2} if recipe == "prefix_tuning" else {}))(tiny_classifier())
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(marker in n or n.startswith("classifier.") for n in trainable)
    assert any(marker in n for n in trainable) and any(n.startswith("classifier.") for n in trainable)
