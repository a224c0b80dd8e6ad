"""The shared PEFT spine: target matching, the named-adapter ledger, mark-trainable and head files."""

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from course_lib.peft import add_adapter, add_lora, AdapterConfig, list_adapters, list_lora
from course_lib.peft.spine import (HEAD_FILE, Ledger, find_targets, get_ledger, head_tensors, mark_trainable,
                                   match_targets, save_head, set_submodule, suffix_names, unfreeze_head)

from tiny_models import tiny_classifier, tiny_gpt

PATHS = ["encoder.layers.0.attn.q_proj", "encoder.layers.0.attn.v_proj", "encoder.layers.1.attn.q_proj",
         "encoder.layers.1.mlp.fc1", "classifier.dense"]


def test_targets_match_by_name_suffix_or_regex():
    assert find_targets(PATHS, ["q_proj"], "Linear") == [PATHS[0], PATHS[2]]
    assert find_targets(PATHS, ["attn.v_proj", "fc1"], "Linear") == [PATHS[1], PATHS[3]]
    assert find_targets(PATHS, r".*\.1\..*", "Linear") == [PATHS[2], PATHS[3]]
    assert match_targets(PATHS, ["q_proj", "fc1"], "Linear") == {"q_proj": [PATHS[0], PATHS[2]], "fc1": [PATHS[3]]}
    with pytest.raises(ValueError, match=r"'q' matched no Linear.*\['q_proj', 'v_proj', 'fc1', 'classifier.dense'\]"):
        find_targets(PATHS, ["q"], "Linear")
    with pytest.raises(ValueError, match="regex 'nothing' matched no module path"):
        find_targets(PATHS, "nothing", "Linear")
    with pytest.raises(ValueError, match="at least one target"):
        find_targets(PATHS, [], "Linear")
    assert suffix_names(PATHS) == ["q_proj", "v_proj", "fc1", "classifier.dense"]


def test_lora_and_quantization_share_the_target_errors():
    from course_lib.peft.quant import quantize_model

    for call in (lambda m: add_lora(m, "x", ["nope"]), lambda m: quantize_model(m, ["nope"])):
        with pytest.raises(ValueError, match=r"Target 'nope' matched no .*by suffix\): \['q_proj'"):
            call(tiny_classifier())


def test_ledger_names_errors_and_lifecycle():
    ledger = Ledger("widget")
    ledger.add("a", {"r": 1}, ["x"])
    assert ledger.names() == ["a"] and ledger.require("a") is ledger
    with pytest.raises(KeyError, match=r"No widget named 'b'; this model has: \['a'\]"):
        ledger.require("b")
    with pytest.raises(ValueError, match="widget named 'a' already exists"):
        ledger.require_new("a")
    with pytest.raises(ValueError, match="without '.'"):
        ledger.require_new("a.b")
    with pytest.raises(ValueError, match="'half' is taken by an nn.Module attribute"):
        ledger.require_new("half")  # would become ModuleDict keys that clash with Module.half()
    with pytest.raises(ValueError, match="active once"):
        ledger.check_known(["a", "a"])
    ledger.active = ["a"]
    assert ledger.remove("a") == ["x"] and ledger.active == [] and ledger.names() == []


def test_each_method_keeps_its_own_ledger_on_the_model():
    model = tiny_classifier()
    add_lora(model, "l", ["q_proj"])
    add_adapter(model, "a", AdapterConfig())
    assert list_lora(model) == ["l"] and list_adapters(model) == ["a"]
    assert get_ledger(model, "_course_lora", "LoRA adapter").names() == ["l"]
    assert get_ledger(model, "_course_adapters", "adapter").extra == {"family": "course", "d_model": 32}


def test_mark_trainable_freezes_all_but_the_choice_and_the_head():
    model = tiny_classifier()
    names = mark_trainable(model, lambda n, _: n.endswith("q_proj.weight"), "q weights")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == set(names) and all(n.endswith("q_proj.weight") or n.startswith("classifier.") for n in names)
    assert any(n.startswith("classifier.") for n in names)
    assert not any(n.startswith("classifier.") for n in mark_trainable(model, lambda n, _: "q_proj" in n, "q", ()))
    with pytest.raises(ValueError, match="'nothing' matched no parameter"):
        mark_trainable(model, lambda n, _: False, "'nothing'")


def test_unfreeze_head_is_strict_for_classifiers_and_optional_for_lms():
    with pytest.raises(ValueError, match="matched no parameter"):
        unfreeze_head(tiny_classifier(), [r"^no_head\."])
    assert unfreeze_head(tiny_gpt(), [r"^classifier\."]) == []
    assert unfreeze_head(tiny_classifier(), ()) == []


def test_head_file_round_trip_and_set_submodule(tmp_path):
    model = tiny_classifier()
    assert save_head(model, tmp_path, ()) is None and not (tmp_path / HEAD_FILE).exists()
    path = save_head(model, tmp_path, [r"^classifier\."])
    saved = load_file(str(path))
    assert saved.keys() == head_tensors(model, [r"^classifier\."]).keys() and saved
    with pytest.raises(ValueError, match="matched no parameter"):
        head_tensors(model, [r"^nothing"])
    marker = nn.Identity()
    set_submodule(model, "encoder.layers.0.attn.q_proj", marker)
    assert model.encoder.layers[0].attn.q_proj is marker
    set_submodule(model, "classifier", marker)
    assert model.classifier is marker
    assert torch.is_tensor(saved[next(iter(saved))])
