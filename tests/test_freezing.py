"""Selective fine-tuning: exactly the chosen tensors move; bad patterns fail loudly."""

import copy

import pytest
import torch

from course_lib.peft.freezing import (bitfit, freeze_all, head_only, layer_indices, top_k_layers, trainable_names,
                                      unfreeze, unfreeze_where)
from course_lib.train import TrainConfig, train

from tiny_models import tiny_classifier


def changed_after_training(model, data):
    rows, collate = data
    before = copy.deepcopy(model.state_dict())
    train(model, rows, collate, TrainConfig(steps=4, batch_size=8, lr=1e-2, eval_every=4),
          device=torch.device("cpu"), show_progress=False)
    return {n for n, t in model.state_dict().items() if not torch.equal(t, before[n])}


@pytest.mark.parametrize("method, expected", [
    (head_only, lambda n: n.startswith("classifier.")),
    (lambda m: top_k_layers(m, 2), lambda n: n.startswith(("classifier.", "encoder.layers.1.", "encoder.layers.2."))),
    (bitfit, lambda n: n.startswith("classifier.") or n.endswith(".bias")),
])
def test_only_selected_parameters_change(method, expected, data):
    model = tiny_classifier()
    names = method(model)
    all_names = [n for n, _ in model.named_parameters()]
    assert set(names) == {n for n in all_names if expected(n)}
    assert set(trainable_names(model)) == set(names)
    changed = changed_after_training(model, data)
    assert changed == set(names), f"unexpected: {changed ^ set(names)}"


def test_top_k_edge_cases():
    model = tiny_classifier()
    assert layer_indices(model) == [0, 1, 2]
    assert set(top_k_layers(model, 0)) == {n for n, _ in model.named_parameters() if n.startswith("classifier.")}
    assert len(top_k_layers(model, 3)) == len([n for n, _ in model.named_parameters()
                                               if n.startswith(("classifier.", "encoder.layers."))])
    with pytest.raises(ValueError, match="between 0 and the number of layers \\(3\\)"):
        top_k_layers(model, 4)


def test_patterns_that_match_nothing_fail_with_the_names():
    model = freeze_all(tiny_classifier())
    with pytest.raises(ValueError, match=r"'lora_A' matched no parameter.*encoder\.embeddings\.tok_embed\.weight"):
        unfreeze(model, "lora_A")
    with pytest.raises(ValueError, match="matched no parameter"):
        unfreeze(model, ["classifier", "nonexistent"])  # every pattern must match
    with pytest.raises(ValueError, match="matched no parameter"):
        unfreeze_where(model, lambda n, p: p.ndim == 5)
    with pytest.raises(ValueError, match="at least one"):
        unfreeze(model, [])
    assert trainable_names(model) == []  # failed calls changed nothing


def test_works_on_hugging_face_bert_names():
    from transformers import BertConfig, BertForSequenceClassification

    model = BertForSequenceClassification(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=3,
                                                     num_attention_heads=2, intermediate_size=32))
    assert layer_indices(model) == [0, 1, 2]
    names = top_k_layers(model, 1)
    assert any(".layer.2." in n for n in names) and not any(".layer.1." in n for n in names)
    assert all(n.endswith(".bias") or n.startswith("classifier.") for n in bitfit(model))
