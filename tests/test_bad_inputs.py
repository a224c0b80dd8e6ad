"""Bad input gets a clear error naming the value and what is allowed, never a silent no-op or a NaN.

One case (or more) per public function that takes user values; grow this file with the API.
"""

import math

import pytest
import torch

from course_lib.data.collate import CausalLMCollator, ClassificationCollator, MLMCollator
from course_lib.peft import add_lora, add_prefix_tuning, add_prompt_tuning, mark_lora_trainable, merge_lora
from course_lib.peft.lora import unmerge_lora
from course_lib.profiles import get_profile
from course_lib.train import TrainConfig

from tiny_models import ids, tiny_classifier, tiny_gpt

CASES = [
    # (what, call, error type, message pattern)
    ("ClassificationCollator max_len=0", lambda tok: ClassificationCollator(tok, max_len=0), ValueError,
     r"ClassificationCollator: max_len must be an integer >= 2, got 0"),
    ("CausalLMCollator max_len=0", lambda tok: CausalLMCollator(tok, max_len=0), ValueError,
     r"CausalLMCollator: max_len must be an integer >= 2, got 0"),
    ("MLMCollator max_len=2", lambda tok: MLMCollator(tok, max_len=2), ValueError, r"MLMCollator: max_len .* >= 3"),
    ("CausalLMCollator max_len=1.5", lambda tok: CausalLMCollator(tok, max_len=1.5), ValueError, r"got 1.5"),
    ("add_lora alpha=inf", lambda tok: add_lora(tiny_classifier(), "x", ["q_proj"], alpha=math.inf), ValueError,
     r"alpha must be a finite number > 0 .*got inf"),
    ("add_lora alpha='16'", lambda tok: add_lora(tiny_classifier(), "x", ["q_proj"], alpha="16"), ValueError,
     r"alpha must be a finite number > 0 .*got '16'"),
    ("add_lora r=True", lambda tok: add_lora(tiny_classifier(), "x", ["q_proj"], r=True), ValueError,
     r"r must be an integer .*got r=True"),
    ("add_lora dropout=1", lambda tok: add_lora(tiny_classifier(), "x", ["q_proj"], dropout=1.0), ValueError,
     r"dropout must be a number in \[0, 1\)"),
    ("add_prompt_tuning n=0", lambda tok: add_prompt_tuning(tiny_gpt(), 0), ValueError,
     r"n_virtual_tokens must be an integer >= 1 .*got 0"),
    ("add_prefix_tuning n=0", lambda tok: add_prefix_tuning(tiny_gpt(), 0), ValueError,
     r"n_prefix must be an integer >= 1 .*got 0"),
]


@pytest.mark.parametrize("what, call, error, pattern", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_a_clear_error(small_tokenizer, what, call, error, pattern):
    with pytest.raises(error, match=pattern):
        call(small_tokenizer)


def test_training_a_merged_lora_raises_instead_of_silently_training_only_the_head(data):
    from tiny_models import train_steps

    model = tiny_classifier()
    add_lora(model, "task", ["q_proj", "v_proj"], r=2)
    mark_lora_trainable(model, "task")
    merge_lora(model)
    with pytest.raises(RuntimeError, match=r"merged into the base weight.*unmerge_lora\(model\) before training"):
        train_steps(model.train(), data)
    with torch.no_grad():  # inference on the merged model is fine, in train or eval mode
        model.train()(ids())
    unmerge_lora(model)
    train_steps(model, data)  # and after unmerging it trains


def test_translation_collator_rejects_empty_pairs_and_a_zero_max_len():
    from course_lib.translation import TranslationCollator, load_translation, train_translation_tokenizers

    src_tok, tgt_tok = train_translation_tokenizers(load_translation(64, 8, 8)["train"])
    with pytest.raises(ValueError, match="TranslationCollator: max_len must be an integer >= 2, got 0"):
        TranslationCollator(src_tok, tgt_tok, max_len=0)
    with pytest.raises(ValueError, match=r"Example 1 has an empty or non-text source or target: \('', ''\)"):
        TranslationCollator(src_tok, tgt_tok)([("the cat", "kat"), ("", "")])


def test_tokenize_record_rejects_a_zero_max_len(small_tokenizer):
    from course_lib.instruct import tokenize_record

    record = {"instruction": "say hi", "input": "", "output": "hi"}
    with pytest.raises(ValueError, match="tokenize_record: max_len must be an integer >= 2, got 0"):
        tokenize_record(record, small_tokenizer, max_len=0)


@pytest.mark.parametrize("kwargs, pattern", [({"steps": 2.5}, "steps"), ({"lr": float("nan")}, "lr"),
                                             ({"batch_size": 0}, "batch_size"), ({"precision": "fp8"}, "precision")])
def test_train_config_names_the_bad_field(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        TrainConfig(**kwargs)


@pytest.mark.parametrize("name", [5, " GPU ", "Ci"])
def test_a_profile_name_must_be_exact(name):
    with pytest.raises(ValueError, match=r"Allowed profiles: ci, cpu, gpu"):
        get_profile(name)


def _saved_adapter(tmp_path, head=True):
    from course_lib.peft import AdapterConfig, add_adapter, save_adapter

    model = tiny_classifier()
    add_adapter(model, "a", AdapterConfig())
    return model, save_adapter(model, "a", tmp_path / "a", head_patterns=[r"^classifier\."] if head else ())


def test_a_save_replaces_the_folder_so_no_stale_head_survives(tmp_path):
    from course_lib.peft import save_adapter

    model, folder = _saved_adapter(tmp_path)
    assert (folder / "head_model.safetensors").is_file()
    save_adapter(model, "a", folder)  # saved again without a head: the old head must not come back on load
    assert sorted(p.name for p in folder.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    assert not any(p.name.startswith("a.tmp") for p in tmp_path.iterdir())


def test_a_failed_save_leaves_the_previous_folder_untouched(tmp_path):
    from course_lib.peft import save_adapter

    model, folder = _saved_adapter(tmp_path)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    with pytest.raises(ValueError, match="matched no parameter"):
        save_adapter(model, "a", folder, head_patterns=[r"^no_such_head\."])
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]  # no temporary folder left behind


def test_saving_into_another_methods_folder_is_refused(tmp_path):
    from course_lib.peft import save_lora

    model, folder = _saved_adapter(tmp_path)
    add_lora(model, "l", ["q_proj"])
    with pytest.raises(ValueError, match=r"already holds something other than a saved peft LoRA"):
        save_lora(model, "l", folder)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"notes already holds .*todo.txt"):
        save_lora(model, "l", tmp_path / "notes")


def test_loading_the_wrong_kind_or_a_damaged_file_names_the_file(tmp_path):
    from course_lib.peft import load_adapter, load_lora, save_lora

    model, folder = _saved_adapter(tmp_path)
    lora_model = tiny_classifier()
    add_lora(lora_model, "l", ["q_proj"])
    lora_dir = save_lora(lora_model, "l", tmp_path / "lora")
    with pytest.raises(ValueError, match=r"does not hold a saved bottleneck adapter .*holds a peft LORA adapter"):
        load_adapter(tiny_classifier(), lora_dir)
    with pytest.raises(ValueError, match=r"does not hold a saved peft LoRA"):
        load_lora(tiny_classifier(), folder)
    weights = folder / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:40])  # truncated
    with pytest.raises(ValueError, match=r"adapter_model.safetensors is not a readable safetensors file"):
        load_adapter(tiny_classifier(), folder)
    (folder / "adapter_config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"adapter_config.json is not valid JSON"):
        load_adapter(tiny_classifier(), folder)


def test_alpaca_inputs_name_the_missing_field_or_the_bad_path(small_tokenizer):
    from course_lib.instruct import ALPACA_TEMPLATE, load_alpaca, tokenize_record

    with pytest.raises(ValueError, match="needs an 'instruction' string"):
        ALPACA_TEMPLATE.prompt({"input": "x", "output": "y"})
    with pytest.raises(ValueError, match="needs an 'output' string"):
        ALPACA_TEMPLATE.render({"instruction": "say hi"})
    with pytest.raises(ValueError, match="tokenize_record needs a record with 'instruction' and 'output'"):
        tokenize_record({"instruction": "say hi"}, small_tokenizer)
    with pytest.raises(FileNotFoundError, match=r"No Alpaca file at /typo/alpaca.json"):
        load_alpaca("/typo/alpaca.json")
