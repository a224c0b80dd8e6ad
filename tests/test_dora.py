"""DoRA: a fresh DoRA is the base model, the same numbers as peft's use_dora, detached norm, merge, peft files."""

import copy
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_lib.params import count_parameters
from course_lib.peft.dora import (DoRAConfig, DoRALinear, add_dora, dora_layers, dora_param_count, load_dora,
                                  mark_dora_trainable, save_dora)
from course_lib.peft.lora import (LoRALinear, add_lora, delete_lora, disable_lora, list_lora, load_lora,
                                  merge_and_unload, merge_lora, save_lora, set_active_lora, unmerge_lora)
from course_lib.peft.quant import Linear4bit

from tiny_models import ids, requires_reference_peft, tiny_bert

BERT_TARGETS = ["query", "value"]


def tiny_gpt2(seed=0):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    return GPT2LMHeadModel(GPT2Config(vocab_size=50, n_positions=32, n_embd=16, n_layer=2, n_head=2,
                                      bos_token_id=0, eos_token_id=0)).eval()


def outputs(model):
    """(last hidden state, logits) on a fixed batch: the tiny BERT's logits are ~1e-2, so compare both."""
    with torch.no_grad():
        out = model(ids(50), output_hidden_states=True)
    return out.hidden_states[-1], out.logits


def assert_same(model, expected, atol=1e-5):
    for got, want in zip(outputs(model), expected):
        torch.testing.assert_close(got, want, atol=atol, rtol=1e-5)


@torch.no_grad()
def randomize(model, seed=0):
    """Non-zero B and magnitudes away from ||W0|| (on course and peft models alike, by parameter name)."""
    g = torch.Generator().manual_seed(seed)
    for n, p in model.named_parameters():
        if ".lora_B." in n:
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
        elif ".lora_magnitude_vector." in n:
            p.mul_(1 + 0.3 * torch.randn(p.shape, generator=g))


@torch.no_grad()
def copy_into_peft(course, peft_model):
    """Copy every adapter tensor (A, B, magnitude) of a course model into the peft model of the same base."""
    theirs = dict(peft_model.named_parameters())
    copied = 0
    for n, p in course.named_parameters():
        if ".lora_" in n:
            theirs[f"base_model.model.{n}"].copy_(p)
            copied += 1
    assert copied == sum(".lora_" in n for n in theirs)


def dora_layer(r=3, alpha=6, seed=0, **kw):
    torch.manual_seed(seed)
    layer = DoRALinear(nn.Linear(12, 10), r=r, alpha=alpha, **kw)
    with torch.no_grad():
        layer.lora_B["default"].weight.normal_(0, 0.5)
        layer.lora_magnitude_vector["default"].weight.mul_(1 + 0.3 * torch.randn(10))
    return layer


def test_fresh_dora_is_the_base_model():
    base = nn.Linear(20, 8)
    layer = DoRALinear(base, r=4, alpha=8)
    m = layer.lora_magnitude_vector["default"].weight
    assert m.shape == (8,) and m.requires_grad
    torch.testing.assert_close(m, base.weight.norm(dim=1))  # m starts at ||W0||_c
    x = torch.randn(5, 20)
    torch.testing.assert_close(layer(x), base(x), atol=1e-6, rtol=0)

    model = tiny_bert()
    expected = outputs(model)
    paths = add_dora(model, target_modules=BERT_TARGETS, r=4, alpha=8)
    assert paths == [f"bert.encoder.layer.{i}.attention.self.{t}" for i in range(2) for t in BERT_TARGETS]
    assert set(dora_layers(model)) == set(paths) and list_lora(model) == ["default"]
    assert isinstance(model._course_lora.configs["default"], DoRAConfig)
    set_active_lora(model, "default")
    assert_same(model, expected, atol=1e-6)
    key = "bert.encoder.layer.0.attention.self.query.lora_magnitude_vector.default.weight"  # peft's in-memory key
    assert key in model.state_dict()


def test_layer_is_the_papers_formula():
    layer = dora_layer()
    w0, b0 = layer.base_layer.weight.detach(), layer.base_layer.bias.detach()
    a, b = layer.lora_A["default"].weight.detach(), layer.lora_B["default"].weight.detach()
    m = layer.lora_magnitude_vector["default"].weight.detach()
    v = w0 + 2.0 * b @ a  # scaling = alpha / r = 2
    expected_w = m[:, None] * v / v.norm(dim=1, keepdim=True)
    with torch.no_grad():
        torch.testing.assert_close(layer.adapted_weight("default"), expected_w)
        torch.testing.assert_close(layer.adapted_weight("default").norm(dim=1), m)  # each row's length is m
        x = torch.randn(2, 7, 12)
        torch.testing.assert_close(layer(x), F.linear(x, expected_w, b0), atol=1e-5, rtol=0)
        assert not torch.allclose(layer(x), layer.base_layer(x), atol=1e-2)


@pytest.mark.parametrize("make, targets", [(tiny_bert, BERT_TARGETS), (tiny_gpt2, ["c_attn"])])
def test_same_numbers_as_peft_use_dora(make, targets):
    from peft import LoraConfig, get_peft_model

    ours, base = make(), make()
    fresh = outputs(base)
    add_dora(ours, target_modules=targets, r=4, alpha=8, dropout=0.2)
    set_active_lora(ours, "default")
    randomize(ours)
    conv1d = make is tiny_gpt2  # GPT-2's Conv1D: peft needs fan_in_fan_out=True
    theirs = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.2, target_modules=targets,
                                             use_dora=True, fan_in_fan_out=conv1d))
    copy_into_peft(ours, theirs)
    ours.eval(), theirs.eval()
    expected = outputs(theirs)
    assert not torch.allclose(expected[0], fresh[0], atol=1e-2)  # the adapter does change the model
    assert_same(ours, expected)
    # training mode with LoRA dropout: peft feeds dropout(x) to the DoRA terms only; the same seed, the same masks
    ours.train(), theirs.train()
    batch = ids(50)
    torch.manual_seed(7)
    got = ours(batch).logits
    torch.manual_seed(7)
    want = theirs(batch).logits
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    ours.eval()
    torch.manual_seed(7)
    assert not torch.allclose(ours(batch).logits, got, atol=1e-6)  # dropout was really on


@requires_reference_peft
def test_two_adapters_and_a_plain_lora_match_peft():
    from peft import LoraConfig, get_peft_model

    ours, base = tiny_bert(), tiny_bert()
    add_lora(ours, "plain", target_modules=["query"], r=2, alpha=4)  # a LoRALinear that becomes a DoRALinear
    add_dora(ours, "d1", target_modules=BERT_TARGETS, r=4, alpha=8)
    add_dora(ours, "d2", target_modules=["value"], r=2, alpha=2, use_rslora=True)
    assert all(type(layer) is DoRALinear for layer in dora_layers(ours).values()) and len(dora_layers(ours)) == 4
    query = ours.bert.encoder.layer[0].attention.self.query
    assert set(query.lora_A) == {"plain", "d1"} and not query.is_dora("plain") and query.is_dora("d1")
    randomize(ours)
    theirs = get_peft_model(base, LoraConfig(r=2, lora_alpha=4, target_modules=["query"]), adapter_name="plain")
    theirs.add_adapter("d1", LoraConfig(r=4, lora_alpha=8, target_modules=BERT_TARGETS, use_dora=True))
    theirs.add_adapter("d2", LoraConfig(r=2, lora_alpha=2, target_modules=["value"], use_dora=True, use_rslora=True))
    copy_into_peft(ours, theirs)
    active = ["plain", "d1", "d2"]
    set_active_lora(ours, active)
    theirs.base_model.set_adapter(active)
    expected = outputs(theirs.eval())
    assert_same(ours, expected)
    merge_lora(ours)  # in turn, each DoRA norm taken on W0, like peft's merge
    assert_same(ours, expected)
    theirs.base_model.merge_adapter()
    assert_same(theirs, expected)
    unmerge_lora(ours)
    assert_same(ours, expected)
    set_active_lora(ours, "d1")
    theirs.base_model.unmerge_adapter()
    theirs.base_model.set_adapter("d1")
    assert_same(ours, outputs(theirs))


def test_gradients_reach_a_b_and_magnitude_but_not_the_norm():
    layer = dora_layer()
    layer.base_layer.requires_grad_(False)
    assert not layer.weight_norm("default").requires_grad
    a, b = layer.lora_A["default"].weight, layer.lora_B["default"].weight
    m = layer.lora_magnitude_vector["default"].weight
    x, g = torch.randn(6, 12), torch.randn(6, 10)
    (layer(x) * g).sum().backward()
    ours = [t.grad.clone() for t in (a, b, m)]
    assert layer.base_layer.weight.grad is None and all(t.abs().sum() > 0 for t in ours)

    def manual(detach):
        a_, b_, m_ = (t.detach().clone().requires_grad_() for t in (a, b, m))
        v = layer.base_layer.weight + 2.0 * b_ @ a_
        norm = v.norm(dim=1)
        w = (m_ / (norm.detach() if detach else norm))[:, None] * v
        (F.linear(x, w, layer.base_layer.bias) * g).sum().backward()
        return [t.grad for t in (a_, b_, m_)]

    for got, want in zip(ours, manual(detach=True)):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(ours[0], manual(detach=False)[0], atol=1e-4)  # a differentiated norm would differ


def test_training_moves_only_the_dora_tensors_and_the_head():
    model = tiny_bert()
    before = outputs(model)
    add_dora(model, "task", target_modules=BERT_TARGETS, r=4, alpha=8)
    add_dora(model, "other", target_modules=["key"], r=2)  # must stay untouched
    trainable = mark_dora_trainable(model, "task")
    adapter = {n for n in trainable if not n.startswith("classifier.")}
    assert adapter == {n for n, _ in model.named_parameters() if ".task." in n}
    assert sum(".lora_magnitude_vector.task." in n for n in adapter) == 4
    head = sum(p.numel() for p in model.classifier.parameters())
    assert count_parameters(model).trainable - head == 4 * dora_param_count(16, 16, 4) == 4 * (4 * 32 + 16)
    state = copy.deepcopy(model.state_dict())
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    batch, labels = ids(50), torch.tensor([0, 1, 1])
    for _ in range(3):
        loss = F.cross_entropy(model(batch).logits, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    changed = {n for n, t in model.state_dict().items() if not torch.equal(t, state[n])}
    assert changed == set(trainable), f"unexpected: {changed ^ set(trainable)}"
    with disable_lora(model):
        hidden = outputs(model)[0]
    assert torch.equal(hidden, before[0])  # frozen base weights are bit-identical


def test_merge_unmerge_and_unload():
    model = tiny_bert()
    add_dora(model, target_modules=BERT_TARGETS, r=4, alpha=8)
    set_active_lora(model, "default")
    randomize(model)
    expected = outputs(model)
    query = model.bert.encoder.layer[0].attention.self.query
    w0 = query.base_layer.weight.detach().clone()
    merge_lora(model)
    merge_lora(model)  # merging twice is a no-op
    assert query.merged == ["default"]
    merged = query.base_layer.weight.detach()
    torch.testing.assert_close(merged.norm(dim=1), query.lora_magnitude_vector["default"].weight.detach())
    assert_same(model, expected)
    unmerge_lora(model)
    torch.testing.assert_close(query.base_layer.weight, w0, atol=1e-6, rtol=0)
    assert_same(model, expected)
    with pytest.raises(RuntimeError, match="merged into the base weight"):
        merge_lora(model)
        model.train()
        model(ids(50))
    model.eval()
    merge_and_unload(model)
    assert type(model.bert.encoder.layer[0].attention.self.query) is nn.Linear and not dora_layers(model)
    assert_same(model, expected)


def test_conv1d_merge_and_merge_on_eval():
    from transformers.pytorch_utils import Conv1D

    torch.manual_seed(0)
    conv = Conv1D(nf=18, nx=6)  # weight stored in x out = 6 x 18
    nn.init.normal_(conv.weight)
    layer = DoRALinear(conv, r=3, alpha=6, merge_on_eval=True)
    torch.testing.assert_close(layer.lora_magnitude_vector["default"].weight, conv.weight.norm(dim=0))
    w0 = conv.weight.detach().clone()
    with torch.no_grad():
        layer.lora_B["default"].weight.normal_()
        x = torch.randn(2, 4, 6)
        out = layer(x)
        layer.eval()
        assert layer.merged == ["default"]
        torch.testing.assert_close(conv(x), out, atol=1e-5, rtol=1e-5)
        layer.train()
        assert layer.merged == [] and torch.allclose(conv.weight, w0, atol=1e-6)


def test_qdora_on_a_4bit_base():
    torch.manual_seed(0)
    q = Linear4bit.from_linear(nn.Linear(64, 32))
    ref = nn.Linear(64, 32)
    with torch.no_grad():
        ref.weight.copy_(q.dequantized_weight())
        ref.bias.copy_(q.bias)
    qdora, dora = DoRALinear(q, r=4, alpha=8), DoRALinear(ref, r=4, alpha=8)
    dora.load_state_dict({k: v for k, v in qdora.state_dict().items() if ".lora_" in k or k.startswith("lora_")},
                         strict=False)
    with torch.no_grad():
        for layer in (qdora, dora):
            layer.lora_B["default"].weight.fill_(0.1)
            layer.lora_magnitude_vector["default"].weight.mul_(1.5)
        x = torch.randn(3, 64)
        torch.testing.assert_close(qdora(x), dora(x), atol=1e-5, rtol=1e-5)
    with pytest.raises(RuntimeError, match="4-bit .*dequantize_model"):
        qdora.merge()


def test_save_dora_loads_in_peft_and_back(tmp_path):
    from peft import PeftModel
    from safetensors.torch import load_file

    model = tiny_bert()
    fresh = copy.deepcopy(model)
    add_dora(model, target_modules=BERT_TARGETS, r=4, alpha=8)
    set_active_lora(model, "default")
    randomize(model)
    with torch.no_grad():
        model.classifier.weight.normal_()  # the head is saved too
    expected = outputs(model)
    out = save_dora(model, "default", tmp_path / "dora", head_patterns=[r"^classifier\."])
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["use_dora"] is True and config["peft_type"] == "LORA" and config["modules_to_save"] == ["classifier"]
    keys = set(load_file(str(out / "adapter_model.safetensors")))
    assert "base_model.model.bert.encoder.layer.0.attention.self.query.lora_magnitude_vector" in keys
    assert len(keys) == 3 * 4 + 2
    peft_model = PeftModel.from_pretrained(copy.deepcopy(fresh), out).eval()
    assert_same(peft_model, expected)
    again = copy.deepcopy(fresh)
    assert load_dora(again, out) == "default"
    set_active_lora(again, "default")
    assert_same(again, expected)
    with pytest.raises(ValueError, match="use_dora.*load_dora|options course_lib does not implement.*use_dora"):
        load_lora(copy.deepcopy(fresh), out)


@pytest.mark.parametrize("make, targets", [(tiny_bert, BERT_TARGETS), (tiny_gpt2, ["c_attn"])])
def test_peft_dora_loads_in_course_lib(tmp_path, make, targets):
    from peft import LoraConfig, get_peft_model

    base = make()
    fresh = copy.deepcopy(base)
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=targets, use_dora=True,
                                                 fan_in_fan_out=make is tiny_gpt2)).eval()
    randomize(peft_model)
    expected = outputs(peft_model)
    peft_model.save_pretrained(tmp_path / "peft")
    assert load_dora(fresh, tmp_path / "peft", name="from_peft") == "from_peft"
    assert len(dora_layers(fresh)) == (4 if make is tiny_bert else 2)
    set_active_lora(fresh, "from_peft")
    assert_same(fresh, expected)


def test_bad_inputs(tmp_path):
    model = tiny_bert()
    with pytest.raises(ValueError, match=r"1 <= r <= .* = 16 .*got r=0"):
        add_dora(model, target_modules=BERT_TARGETS, r=0)
    with pytest.raises(ValueError, match=r"= 16 .*got r=17"):
        add_dora(model, target_modules=BERT_TARGETS, r=17)
    with pytest.raises(ValueError, match=r"got r=2\.5"):
        add_dora(model, target_modules=BERT_TARGETS, r=2.5)
    with pytest.raises(ValueError, match=r"= 10 .*got r=11"):
        DoRALinear(nn.Linear(10, 20), r=11, alpha=1)
    with pytest.raises(ValueError, match="alpha must be a finite number > 0"):
        add_dora(model, target_modules=BERT_TARGETS, alpha=0)
    with pytest.raises(ValueError, match=r"dropout must be .*\[0, 1\).*1\.0"):
        add_dora(model, target_modules=BERT_TARGETS, dropout=1.0)
    with pytest.raises(ValueError, match=r"'nope' matched no .*query"):
        add_dora(model, target_modules=["nope"])
    assert not dora_layers(model) and list_lora(model) == []  # failed calls changed nothing
    add_dora(model, "d", target_modules=BERT_TARGETS, r=2)
    with pytest.raises(ValueError, match="already exists"):
        add_dora(model, "d", target_modules=["key"])
    with pytest.raises(ValueError, match="names must be non-empty strings without '.'"):
        add_dora(model, "a.b", target_modules=["key"])
    add_lora(model, "plain", target_modules=["key"], r=2)
    with pytest.raises(ValueError, match="'plain' is a plain LoRA adapter.*save_lora"):
        save_dora(model, "plain", tmp_path / "x")
    with pytest.raises(KeyError, match="nope"):
        save_dora(model, "nope", tmp_path / "x")
    save_lora(model, "plain", tmp_path / "plain")
    with pytest.raises(ValueError, match="plain LoRA adapter .*use_dora is False.*load_lora"):
        load_dora(tiny_bert(), tmp_path / "plain")
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        load_dora(tiny_bert(), tmp_path / "missing")
    save_dora(model, "d", tmp_path / "d")
    other = tiny_gpt2()
    with pytest.raises(ValueError, match="adapts layers this model lacks"):
        load_dora(other, tmp_path / "d")
    from transformers import BertConfig, BertForSequenceClassification

    wider = BertForSequenceClassification(BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2,
                                                     num_attention_heads=2, intermediate_size=32))
    with pytest.raises(ValueError, match="do not fit this model.*saved \\(2, 16\\), model \\(2, 32\\)"):
        load_dora(wider, tmp_path / "d")
    assert list_lora(wider) == []  # the half-made adapter was removed
    delete_lora(model, "d")
    assert list_lora(model) == ["plain"] and not dora_layers(model)
    assert type(model.bert.encoder.layer[0].attention.self.key) is LoRALinear


def test_lora_helpers_know_dora_adapters(tmp_path):
    """mark_lora_trainable trains the magnitude too; save_lora refuses DoRA and load_lora points to load_dora."""
    from course_lib.peft.lora import load_lora, mark_lora_trainable, save_lora

    model = tiny_bert()
    add_dora(model, "d", target_modules=["query", "value"], r=2, alpha=4)
    trainable = mark_lora_trainable(model, "d", head_patterns=())
    assert any("lora_magnitude_vector.d" in n for n in trainable)
    with pytest.raises(ValueError, match="save_dora"):
        save_lora(model, "d", tmp_path / "as_lora")
    save_dora(model, "d", tmp_path / "dora")
    with pytest.raises(ValueError, match="load_dora"):
        load_lora(tiny_bert(), tmp_path / "dora")
