"""The one run helper (run_finetune), each recipe's trainable set, and measured peak memory."""

import dataclasses
from pathlib import Path

import pytest
import torch
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

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
