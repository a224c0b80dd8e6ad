"""(IA)³: ones at init, peft's logits for the same vectors, only the vectors train, merge/unmerge, peft files."""

import copy
import json

import pytest
import torch
from torch import nn

from course_lib.params import count_parameters
from course_lib.peft.ia3 import (IA3Linear, active_ia3, add_ia3, delete_ia3, disable_ia3, ia3_layers, ia3_param_count,
                                 list_ia3, load_ia3, mark_ia3_trainable, merge_ia3, save_ia3, set_active_ia3,
                                 unload_ia3, unmerge_ia3)

import tiny_models
from tiny_models import logits, tiny_classifier

FFN_ONLY = r".*layer\.\d+\.output\.dense"  # BERT's FFN down projection, not attention.output.dense
BERT_PAPER = (r".*\.(key|value)|" + FFN_ONLY, FFN_ONLY)  # (targets, feedforward) as in the paper: l_k, l_v, l_ff
BERT_DEFAULT = (["key", "value", "output.dense"], ["output.dense"])  # peft's default for bert


@torch.no_grad()
def tiny_bert(seed=0):
    """The shared tiny BERT classifier with a head of N(0, 1) weights: logits of order 1, not 0.01."""
    model = tiny_models.tiny_bert(seed)
    model.classifier.weight.normal_()
    return model


def tiny_gpt2(seed=0):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    return GPT2LMHeadModel(GPT2Config(vocab_size=50, n_positions=32, n_embd=16, n_layer=2, n_head=2,
                                      bos_token_id=0, eos_token_id=0)).eval()


@torch.no_grad()
def randomize(model, name=None, seed=0):
    """Give (IA)³ vectors (adapter ``name``, or all) values around 1; works on peft models too."""
    g = torch.Generator().manual_seed(seed)
    for n, p in model.named_parameters():
        if ".ia3_l." in n and (name is None or n.endswith(f".ia3_l.{name}")):
            p.copy_(1 + 0.5 * torch.randn(p.shape, generator=g))


@torch.no_grad()
def copy_vectors_to_peft(model, peft_model):
    """Put the course model's adapter vectors into the peft model (same module paths, peft's key prefix)."""
    params = dict(peft_model.named_parameters())
    vectors = {n: p for n, p in model.named_parameters() if ".ia3_l." in n}
    assert vectors and {f"base_model.model.{n}" for n in vectors} == {n for n in params if ".ia3_l." in n}
    for n, p in vectors.items():
        params[f"base_model.model.{n}"].copy_(p)


def peft_ia3(model, targets, feedforward, **kw):
    from peft import IA3Config, get_peft_model

    return get_peft_model(model, IA3Config(target_modules=targets, feedforward_modules=feedforward, **kw)).eval()


@pytest.mark.parametrize("feedforward", [False, True])
@pytest.mark.parametrize("conv1d", [False, True])
def test_layer_scales_output_or_input_and_merges(feedforward, conv1d):
    from transformers.pytorch_utils import Conv1D

    torch.manual_seed(0)
    base = Conv1D(nf=10, nx=12) if conv1d else nn.Linear(12, 10)
    nn.init.normal_(base.bias)
    w0, b0 = base.weight.detach().clone(), base.bias.detach().clone()
    layer = IA3Linear(base, is_feedforward=feedforward)
    vector = layer.ia3_l["default"]
    assert vector.shape == ((1, 12) if feedforward else (10, 1)) and torch.equal(vector, torch.ones_like(vector))
    x = torch.randn(2, 5, 12)
    assert torch.equal(layer(x), base(x))  # ones: exactly the base layer
    with torch.no_grad():
        vector.copy_(1 + torch.randn(vector.shape))
        out = layer(x)
        expected = base(x * vector.flatten()) if feedforward else base(x) * vector.flatten()
        torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)
        layer.merge()
        layer.merge()  # merging twice is a no-op
        assert list(layer.merged) == ["default"]
        torch.testing.assert_close(layer(x), out, atol=1e-5, rtol=1e-5)
        if feedforward:  # W diag(l): the bias is untouched
            assert torch.equal(base.bias, b0)
        else:            # diag(l) (W x + b): the bias is scaled too
            torch.testing.assert_close(base.bias, b0 * vector.flatten(), atol=1e-6, rtol=0)
        layer.unmerge()
        assert layer.merged == {}
        torch.testing.assert_close(base.weight, w0, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(base.bias, b0, atol=1e-6, rtol=1e-6)


def test_fresh_ia3_is_the_base_and_follows_peft_defaults():
    model = tiny_bert()
    base = logits(model, vocab=50)
    paths = add_ia3(model)  # peft's bert default: key, value, output.dense (feedforward)
    assert paths == [f"bert.encoder.layer.{i}.{p}" for i in range(2) for p in
                     ("attention.self.key", "attention.self.value", "attention.output.dense", "output.dense")]
    layers = ia3_layers(model)
    # peft's rule: "output.dense" is also the *attention* output projection, and it scales its input there too
    assert {p: layer.is_feedforward for p, layer in layers.items()} == {p: p.endswith("output.dense") for p in paths}
    assert active_ia3(model) == [] and torch.equal(logits(model, vocab=50), base)
    set_active_ia3(model, "default")
    assert torch.equal(logits(model, vocab=50), base)  # all-ones vectors: bit-identical to the base
    # (16 + 16 + 16 + 32) per layer; peft's model without a head counts the same
    assert ia3_param_count(model, "default") == 2 * (16 + 16 + 16 + 32)
    assert peft_ia3(tiny_bert(), *BERT_DEFAULT).get_nb_trainable_parameters()[0] == ia3_param_count(model, "default")
    course = tiny_classifier(n_layers=2)
    assert add_ia3(course) == [f"encoder.layers.{i}.{p}" for i in range(2) for p in
                               ("attn.k_proj", "attn.v_proj", "mlp.fc2")]
    assert [layer.is_feedforward for layer in ia3_layers(course).values()] == [False, False, True] * 2
    # a default feedforward list keeps only what the given targets contain: the saved config stays a subset
    plain = tiny_bert()
    add_ia3(plain, target_modules=["key", "value"])
    assert not any(layer.is_feedforward for layer in ia3_layers(plain).values())


@pytest.mark.parametrize("make, targets, feedforward", [
    (tiny_bert, *BERT_DEFAULT), (tiny_bert, *BERT_PAPER), (tiny_gpt2, ["c_attn", "mlp.c_proj"], ["mlp.c_proj"])])
def test_logits_equal_peft_for_the_same_vectors(make, targets, feedforward):
    model = make()
    base = logits(model, vocab=50)
    peft_model = peft_ia3(copy.deepcopy(model), targets, feedforward, fan_in_fan_out=make is tiny_gpt2)
    add_ia3(model, target_modules=targets, feedforward_modules=feedforward)
    set_active_ia3(model, "default")
    randomize(model)
    copy_vectors_to_peft(model, peft_model)  # also checks: same adapted layers, same vector shapes
    expected = logits(peft_model, vocab=50)
    assert not torch.allclose(expected, base, atol=1e-3)
    torch.testing.assert_close(logits(model, vocab=50), expected, atol=1e-5, rtol=1e-5)
    if make is tiny_bert and isinstance(targets, str):  # the paper's placement: only the FFN scales its input
        assert [p for p, layer in ia3_layers(model).items() if layer.is_feedforward] == [
            "bert.encoder.layer.0.output.dense", "bert.encoder.layer.1.output.dense"]


def _train(model, steps=3):
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-2)
    g = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(steps):
        batch = torch.randint(1, 50, (8, 12), generator=g)
        loss = model(batch, labels=batch[:, 1] % 2).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def test_only_the_vectors_and_head_train():
    model = tiny_bert()
    add_ia3(model, "task", *BERT_PAPER)
    add_ia3(model, "other", target_modules=["query"], feedforward_modules=[])  # must stay untouched
    trainable = mark_ia3_trainable(model, "task")
    assert active_ia3(model) == ["task"]
    vectors = {n for n, _ in model.named_parameters() if n.endswith(".ia3_l.task")}
    assert len(vectors) == 6 and set(trainable) == vectors | {"classifier.weight", "classifier.bias"}
    head = sum(p.numel() for p in model.classifier.parameters())
    assert ia3_param_count(model, "task") == 2 * (16 + 16 + 32)
    assert count_parameters(model).trainable - head == ia3_param_count(model, "task")
    peft_model = peft_ia3(tiny_bert(), *BERT_PAPER, task_type="SEQ_CLS")  # peft adds the classifier itself
    assert peft_model.get_nb_trainable_parameters()[0] - head == ia3_param_count(model, "task")
    assert mark_ia3_trainable(copy.deepcopy(model), "task", head_patterns=()) == sorted(vectors, key=trainable.index)
    before = copy.deepcopy(model.state_dict())
    _train(model)
    changed = {n for n, t in model.state_dict().items() if not torch.equal(t, before[n])}
    assert changed == set(trainable), f"unexpected: {changed ^ set(trainable)}"


def test_merge_unmerge_unload_and_disable():
    model = tiny_bert()
    base = logits(model, vocab=50)
    base_state = {k: v.clone() for k, v in model.state_dict().items()}
    add_ia3(model, "default", *BERT_DEFAULT)
    set_active_ia3(model, "default")
    randomize(model)
    out = logits(model, vocab=50)
    merge_ia3(model)
    assert all(layer.merged for layer in ia3_layers(model).values())
    torch.testing.assert_close(logits(model, vocab=50), out, atol=1e-5, rtol=1e-5)
    with disable_ia3(model):
        torch.testing.assert_close(logits(model, vocab=50), base, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits(model, vocab=50), out, atol=1e-5, rtol=1e-5)
    mark_ia3_trainable(model, "default")
    with pytest.raises(RuntimeError, match="unmerge_ia3"):
        model.train()(torch.ones(1, 4, dtype=torch.long))
    model.eval()
    unmerge_ia3(model)
    restored = {k.replace(".base_layer.", "."): v for k, v in model.state_dict().items() if ".ia3_l." not in k}
    assert set(restored) == set(base_state)
    for k, v in base_state.items():
        torch.testing.assert_close(restored[k], v, atol=1e-6, rtol=1e-6)  # base weights (and biases) restored
    torch.testing.assert_close(logits(model, vocab=50), out, atol=1e-5, rtol=1e-5)

    # a zero in a vector: the merge could not be undone, so it is refused and nothing changes (all layers)
    layer = model.bert.encoder.layer[1].attention.self.value
    with torch.no_grad():
        layer.ia3_l["default"][3] = 0.0
    out = logits(model, vocab=50)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="reversibly.*unload_ia3"):
        merge_ia3(model)
    assert not any(layer.merged for layer in ia3_layers(model).values())
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())
    plain = unload_ia3(copy.deepcopy(model))  # merges without needing an unmerge: a zero is fine
    assert not ia3_layers(plain) and list_ia3(plain) == [] and set(plain.state_dict()) == set(base_state)
    torch.testing.assert_close(logits(plain, vocab=50), out, atol=1e-5, rtol=1e-5)
    dropped = unload_ia3(model, merge=False)  # the vectors are dropped: the base model (merged once, unmerged)
    assert set(dropped.state_dict()) == set(base_state)
    for k, v in dropped.state_dict().items():
        torch.testing.assert_close(v, base_state[k], atol=1e-6, rtol=1e-6)


def test_named_adapters_multiply_and_delete():
    model = tiny_bert()
    base = logits(model, vocab=50)
    add_ia3(model, "a", *BERT_PAPER)
    add_ia3(model, "b", target_modules=["value", "query"], feedforward_modules=[])
    randomize(model, "a", seed=1)
    randomize(model, "b", seed=2)
    assert list_ia3(model) == ["a", "b"] and torch.equal(logits(model, vocab=50), base)
    set_active_ia3(model, ["a", "b"])
    both = logits(model, vocab=50)
    value = model.bert.encoder.layer[0].attention.self.value
    x = torch.randn(3, 16)
    with torch.no_grad():  # the vectors of one layer multiply
        expected = value.base_layer(x) * value.ia3_l["a"].flatten() * value.ia3_l["b"].flatten()
        torch.testing.assert_close(value(x), expected, atol=1e-6, rtol=1e-6)
    merge_ia3(model)
    torch.testing.assert_close(logits(model, vocab=50), both, atol=1e-5, rtol=1e-5)
    with pytest.raises(RuntimeError, match="unmerge"):
        set_active_ia3(model, "a")
    unmerge_ia3(model)
    set_active_ia3(model, "a")
    only_a = logits(model, vocab=50)
    assert not torch.allclose(only_a, both, atol=1e-4)
    delete_ia3(model, "b")
    assert list_ia3(model) == ["a"] and isinstance(model.bert.encoder.layer[0].attention.self.query, nn.Linear)
    torch.testing.assert_close(logits(model, vocab=50), only_a, atol=1e-5, rtol=1e-5)
    delete_ia3(model, "a")
    assert not ia3_layers(model) and not hasattr(model, "_course_ia3")
    torch.testing.assert_close(logits(model, vocab=50), base, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("make, targets, feedforward, head", [
    (tiny_bert, *BERT_DEFAULT, [r"^classifier\."]), (tiny_bert, *BERT_PAPER, []),
    (tiny_gpt2, ["c_attn", "mlp.c_proj"], ["mlp.c_proj"], [])])
def test_course_ia3_loads_in_peft_and_back(tmp_path, make, targets, feedforward, head):
    from peft import PeftModel
    from safetensors.torch import load_file

    model = make()
    fresh = copy.deepcopy(model)
    add_ia3(model, target_modules=targets, feedforward_modules=feedforward)
    mark_ia3_trainable(model, "default", head_patterns=head)
    if head:
        _train(model)
    else:
        randomize(model)
    expected = logits(model, vocab=50)
    out = save_ia3(model, "default", tmp_path / "ia3", head_patterns=head)
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["peft_type"] == "IA3" and config["feedforward_modules"] == feedforward
    assert config["fan_in_fan_out"] is (make is tiny_gpt2) and config["modules_to_save"] == (["classifier"] if head
                                                                                              else None)
    keys = set(load_file(str(out / "adapter_model.safetensors")))
    assert {k for k in keys if k.endswith(".ia3_l")} == {f"base_model.model.{p}.ia3_l" for p in ia3_layers(model)}
    assert len(keys) == len(ia3_layers(model)) + (2 if head else 0)

    peft_model = PeftModel.from_pretrained(copy.deepcopy(fresh), out).eval()
    torch.testing.assert_close(logits(peft_model, vocab=50), expected, atol=1e-5, rtol=1e-5)
    assert load_ia3(fresh, out, name="again") == "again"  # and back into a fresh base, head included
    set_active_ia3(fresh, "again")
    torch.testing.assert_close(logits(fresh, vocab=50), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("make, targets, feedforward", [
    (tiny_bert, *BERT_DEFAULT), (tiny_bert, *BERT_PAPER), (tiny_gpt2, ["c_attn", "mlp.c_proj"], ["mlp.c_proj"])])
def test_peft_ia3_loads_in_course_lib(tmp_path, make, targets, feedforward):
    base = make()
    fresh = copy.deepcopy(base)
    head = ["classifier"] if make is tiny_bert else None
    peft_model = peft_ia3(base, targets, feedforward, modules_to_save=head, fan_in_fan_out=make is tiny_gpt2)
    randomize(peft_model)
    if head:
        with torch.no_grad():
            peft_model.base_model.model.classifier.modules_to_save["default"].weight.normal_()
    expected = logits(peft_model, vocab=50)
    peft_model.save_pretrained(tmp_path / "peft")
    load_ia3(fresh, tmp_path / "peft", name="from_peft")
    assert len(ia3_layers(fresh)) == sum(isinstance(m, __import__("peft").tuners.ia3.IA3Layer)
                                         for m in peft_model.modules())
    set_active_ia3(fresh, "from_peft")
    torch.testing.assert_close(logits(fresh, vocab=50), expected, atol=1e-5, rtol=1e-5)


def test_bad_inputs_give_clear_errors(tmp_path):
    model = tiny_bert()
    with pytest.raises(ValueError, match=r"subset of target_modules.*\['intermediate.dense'\] is not in"):
        add_ia3(model, target_modules=["key", "value"], feedforward_modules=["intermediate.dense"])
    with pytest.raises(ValueError, match=r"'keys' matched no nn.Linear/Conv1D module.*'key'.*'value'"):
        add_ia3(model, target_modules=["keys", "value"], feedforward_modules=[])
    with pytest.raises(ValueError, match=r"feedforward_modules.*selected none of the targeted layers"):
        add_ia3(model, target_modules=r".*\.(key|value)", feedforward_modules=r".*intermediate\.dense")
    with pytest.raises(ValueError, match=r"feedforward_modules \['dense'\] selected none of the targeted layers"):
        add_ia3(model, target_modules=r".*\.(key|value)", feedforward_modules=["dense"])
    with pytest.raises(ValueError, match="No \\(IA\\)³ defaults for a Sequential.*feedforward_modules=\\[\\]"):
        add_ia3(nn.Sequential(nn.Linear(4, 4)))
    assert not ia3_layers(model) and list_ia3(model) == []  # failed calls changed nothing
    add_ia3(model, "a", target_modules=["value"], feedforward_modules=[])
    with pytest.raises(ValueError, match="already exists"):
        add_ia3(model, "a", target_modules=["key"], feedforward_modules=[])
    with pytest.raises(ValueError, match="already scales its output.*would scale its input"):
        add_ia3(model, "b", target_modules=["value"], feedforward_modules=["value"])
    assert list(model.bert.encoder.layer[0].attention.self.value.ia3_l) == ["a"]
    with pytest.raises(ValueError, match="without '.'"):
        add_ia3(model, "a.b", target_modules=["key"], feedforward_modules=[])
    with pytest.raises(KeyError, match="nope"):
        set_active_ia3(model, "nope")
    with pytest.raises(KeyError, match="nope"):
        mark_ia3_trainable(model, "nope")

    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        load_ia3(model, tmp_path / "missing")
    save_ia3(model, "a", tmp_path / "a")
    with pytest.raises(ValueError, match="lacks"):
        load_ia3(tiny_classifier(), tmp_path / "a")
    from course_lib.peft.lora import add_lora, save_lora

    lora = tiny_bert()
    add_lora(lora, target_modules=["query"], r=2)
    save_lora(lora, "default", tmp_path / "lora")
    with pytest.raises(ValueError, match="holds a peft LORA adapter"):
        load_ia3(tiny_bert(), tmp_path / "lora")
    with pytest.raises(ValueError, match="already holds something other"):
        save_ia3(model, "a", tmp_path / "lora")
    bent = json.loads((tmp_path / "a" / "adapter_config.json").read_text())
    bent["feedforward_modules"] = ["value"]  # now the saved (out, 1) vectors would be (1, in) ones
    (tmp_path / "a" / "adapter_config.json").write_text(json.dumps(bent))
    other = tiny_bert()
    with pytest.raises(ValueError, match=r"do not fit.*\(1, in\)"):
        load_ia3(other, tmp_path / "a")
    assert not ia3_layers(other) and list_ia3(other) == []
