"""LoRA: zero update at init, exact merge/unmerge, only A and B train, named adapters, peft interop."""

import copy
import json
import math

import pytest
import torch
from torch import nn

from course_lib.params import count_parameters
from course_lib.peft.lora import (LoRALinear, active_lora, add_lora, delete_lora, disable_lora, list_lora, load_lora,
                                  lora_layers, lora_param_count, merge_and_unload, merge_lora, save_lora,
                                  set_active_lora, mark_lora_trainable, unmerge_lora)
from course_lib.train import TrainConfig, train

import tiny_models
from tiny_models import logits, tiny_bert


def tiny_classifier(seed=0):
    return tiny_models.tiny_classifier(seed, n_layers=2)


def tiny_gpt2(seed=0):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    return GPT2LMHeadModel(GPT2Config(vocab_size=50, n_positions=32, n_embd=16, n_layer=2, n_head=2,
                                      bos_token_id=0, eos_token_id=0)).eval()


@torch.no_grad()
def randomize(model, name=None, seed=0):
    """Give LoRA B matrices (adapter ``name``, or every adapter) non-zero weights; works on peft models too."""
    g = torch.Generator().manual_seed(seed)
    for n, p in model.named_parameters():
        if ".lora_B." in n and (name is None or f".lora_B.{name}." in n):
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)


def linear_with_lora(r=4, alpha=8, **kw):
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(12, 10), r=r, alpha=alpha, **kw)
    with torch.no_grad():
        layer.lora_B["default"].weight.normal_(0, 0.5)
    return layer


def test_init_scaling_and_zero_update():
    base = nn.Linear(64, 48)
    layer = LoRALinear(base, r=8, alpha=16)
    a, b = layer.lora_A["default"].weight, layer.lora_B["default"].weight
    assert a.shape == (8, 64) and b.shape == (48, 8)
    assert torch.count_nonzero(b) == 0 and torch.count_nonzero(a) == a.numel()
    bound = 1 / math.sqrt(64)  # kaiming_uniform_(a=sqrt(5)) on fan_in=64 gives U(-1/sqrt(64), 1/sqrt(64))
    assert a.abs().max() <= bound and a.abs().max() > 0.8 * bound and a.std() > 0.4 * bound
    x = torch.randn(5, 64)
    assert torch.equal(layer(x), base(x))  # B = 0: exactly the base layer
    assert layer.scaling["default"] == 2.0
    assert LoRALinear(nn.Linear(64, 48), r=16, alpha=16, use_rslora=True).scaling["default"] == 4.0
    assert LoRALinear(nn.Linear(64, 48), r=16, alpha=16).scaling["default"] == 1.0


def test_forward_merge_unmerge_and_rank():
    layer = linear_with_lora()
    w0 = layer.base_layer.weight.detach().clone()
    x = torch.randn(7, 12)
    with torch.no_grad():
        expected = layer.base_layer(x) + 2.0 * x @ layer.lora_A["default"].weight.T @ layer.lora_B["default"].weight.T
        out = layer(x)
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
        assert not torch.allclose(out, layer.base_layer(x), atol=1e-3)
        delta = layer.delta_weight("default")
        assert delta.shape == w0.shape and torch.linalg.matrix_rank(delta) <= 4
        layer.merge()
        layer.merge()  # merging twice is a no-op
        assert layer.merged == ["default"]
        torch.testing.assert_close(layer.base_layer.weight, w0 + delta, atol=1e-6, rtol=0)
        torch.testing.assert_close(layer(x), out, atol=1e-5, rtol=0)
        layer.unmerge()
        torch.testing.assert_close(layer.base_layer.weight, w0, atol=1e-6, rtol=0)
        torch.testing.assert_close(layer(x), out, atol=1e-5, rtol=0)


def test_conv1d_merge():
    from transformers.pytorch_utils import Conv1D

    torch.manual_seed(0)
    conv = Conv1D(nf=18, nx=6)  # weight is stored in x out = 6 x 18
    nn.init.normal_(conv.weight)
    layer = LoRALinear(conv, r=3, alpha=6)
    assert (layer.in_features, layer.out_features) == (6, 18)
    with torch.no_grad():
        layer.lora_B["default"].weight.normal_()
        x = torch.randn(2, 4, 6)
        out = layer(x)
        assert layer.delta_weight("default").shape == (6, 18)
        assert not torch.allclose(out, conv(x), atol=1e-3)
        layer.merge()
        torch.testing.assert_close(conv(x), out, atol=1e-5, rtol=1e-5)


def test_merge_on_eval():
    layer = linear_with_lora(merge_on_eval=True)
    w0 = layer.base_layer.weight.detach().clone()
    x = torch.randn(3, 12)
    with torch.no_grad():
        out = layer(x)
        layer.eval()
        assert layer.merged == ["default"] and not torch.allclose(layer.base_layer.weight, w0)
        torch.testing.assert_close(layer(x), out, atol=1e-5, rtol=0)
        nn.Sequential(layer).train()  # reaches the layer through nn.Module.train's recursion
        assert layer.merged == [] and torch.allclose(layer.base_layer.weight, w0, atol=1e-6)


def test_training_moves_only_lora_and_head(data):
    model = tiny_classifier()
    base = logits(model)
    paths = add_lora(model, "task", target_modules=["q_proj", "v_proj"], r=4, alpha=8)
    add_lora(model, "other", target_modules=["fc1"], r=2)  # must stay untouched
    assert paths == [f"encoder.layers.{i}.attn.{p}" for i in range(2) for p in ("q_proj", "v_proj")]
    trainable = mark_lora_trainable(model, "task")
    assert active_lora(model) == ["task"]
    assert {n for n in trainable if not n.startswith("classifier.")} == {
        n for n, _ in model.named_parameters() if ".lora_A.task." in n or ".lora_B.task." in n}
    head = sum(p.numel() for p in model.classifier.parameters())
    assert count_parameters(model).trainable - head == 4 * lora_param_count(32, 32, 4)
    before = copy.deepcopy(model.state_dict())
    rows, collate = data
    train(model, rows, collate, TrainConfig(steps=4, batch_size=8, lr=1e-2, eval_every=4),
          device=torch.device("cpu"), show_progress=False)
    model.eval()
    changed = {n for n, t in model.state_dict().items() if not torch.equal(t, before[n])}
    assert changed == set(trainable), f"unexpected: {changed ^ set(trainable)}"
    assert any(".lora_A.task." in n for n in changed) and any(".lora_B.task." in n for n in changed)
    model.classifier.load_state_dict({k[len("classifier."):]: v for k, v in before.items()
                                      if k.startswith("classifier.")})
    assert not torch.allclose(logits(model), base, atol=1e-5)
    with disable_lora(model):
        assert torch.equal(logits(model), base)  # frozen base weights are bit-identical


def test_target_matching_and_errors():
    model = tiny_classifier()
    regex_paths = add_lora(model, "re", target_modules=r".*layers\.1\.mlp\.fc\d")
    assert regex_paths == ["encoder.layers.1.mlp.fc1", "encoder.layers.1.mlp.fc2"]
    assert add_lora(model, "head", target_modules=["classifier.out_proj"], r=2) == ["classifier.out_proj"]
    assert add_lora(model, "k", target_modules=["attn.k_proj"], r=2) == [
        "encoder.layers.0.attn.k_proj", "encoder.layers.1.attn.k_proj"]
    assert add_lora(model, "more", target_modules=["fc2"], r=2) == [
        "encoder.layers.0.mlp.fc2", "encoder.layers.1.mlp.fc2"]
    assert set(model.encoder.layers[1].mlp.fc2.lora_A) == {"re", "more"}  # one LoRALinear, two adapters
    assert list_lora(model) == ["re", "head", "k", "more"]
    with pytest.raises(ValueError, match=r"'query'.*q_proj.*fc2.*classifier\.out_proj"):
        add_lora(model, "bad", target_modules=["q_proj", "query"])
    with pytest.raises(ValueError, match="matched no module path.*q_proj"):
        add_lora(model, "bad", target_modules=r"nothing\.here")
    with pytest.raises(ValueError, match="already exists"):
        add_lora(model, "re", target_modules=["q_proj"])
    with pytest.raises(ValueError, match=r"1 <= r <= .* = 32"):
        add_lora(model, "bad", target_modules=["q_proj"], r=0)
    with pytest.raises(ValueError, match=r"1 <= r <= .* = 2 .*classifier\.out_proj"):
        add_lora(model, "bad", target_modules=["out_proj"], r=3)  # classifier.out_proj is 32 -> 2
    with pytest.raises(ValueError, match=r"= 10 .*got r=11"):
        LoRALinear(nn.Linear(10, 20), r=11, alpha=1)
    with pytest.raises(ValueError, match="alpha must be a finite number > 0"):
        LoRALinear(nn.Linear(10, 20), r=2, alpha=0)
    assert "bad" not in list_lora(model) and "bad" not in model.encoder.layers[0].attn.q_proj.__dict__
    assert not isinstance(model.encoder.layers[0].attn.q_proj, LoRALinear)  # failed calls changed nothing
    with pytest.raises(KeyError, match="nope"):
        set_active_lora(model, "nope")


def test_named_adapters_disable_merge_and_unload():
    model = tiny_classifier()
    base = logits(model)
    add_lora(model, "a", target_modules=["q_proj", "v_proj"], r=4)
    add_lora(model, "b", target_modules=["k_proj", "fc1"], r=2, alpha=4, use_rslora=True)
    randomize(model)
    assert active_lora(model) == []
    assert torch.equal(logits(model), base)  # new adapters are inactive
    set_active_lora(model, "a")
    out_a = logits(model)
    set_active_lora(model, "b")
    out_b = logits(model)
    assert not torch.allclose(out_a, out_b, atol=1e-4) and not torch.allclose(out_a, base, atol=1e-4)
    with disable_lora(model):
        assert torch.equal(logits(model), base)
    assert torch.equal(logits(model), out_b)  # restored after the block
    set_active_lora(model, "a")
    merge_lora(model)
    torch.testing.assert_close(logits(model), out_a, atol=1e-5, rtol=0)
    with disable_lora(model):
        torch.testing.assert_close(logits(model), base, atol=1e-5, rtol=0)
    torch.testing.assert_close(logits(model), out_a, atol=1e-5, rtol=0)
    unmerge_lora(model)
    expected = sum(lora_param_count(32, 32, 4) for _ in range(4)) + 2 * (lora_param_count(32, 32, 2)
                                                                         + lora_param_count(32, 64, 2))
    assert sum(p.numel() for n, p in model.named_parameters() if ".lora_" in n) == expected
    twin = copy.deepcopy(model)
    delete_lora(twin, "b")
    assert list_lora(twin) == ["a"] and isinstance(twin.encoder.layers[0].mlp.fc1, nn.Linear)
    torch.testing.assert_close(logits(twin), out_a, atol=1e-5, rtol=0)  # merge+unmerge: float rounding

    plain = merge_and_unload(model)
    assert not lora_layers(plain) and not any(".lora_" in n for n, _ in plain.named_parameters())
    assert list_lora(plain) == [] and set(plain.state_dict()) == set(tiny_classifier().state_dict())
    torch.testing.assert_close(logits(plain), out_a, atol=1e-5, rtol=0)


def _train_bert_lora(model, steps=3):
    mark_lora_trainable(model, "default")
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


def test_course_lora_loads_in_peft_with_head(tmp_path):
    from peft import PeftModel

    model = tiny_bert()
    fresh = copy.deepcopy(model)
    add_lora(model, target_modules=["query", "value"], r=4, alpha=8)
    _train_bert_lora(model)
    expected = logits(model, vocab=50)
    assert not torch.allclose(model.classifier.weight, fresh.classifier.weight)  # the head trained too
    out = save_lora(model, "default", tmp_path / "lora", head_patterns=[r"^classifier\."])
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["modules_to_save"] == ["classifier"]
    assert config["target_modules"] == ["query", "value"] and config["fan_in_fan_out"] is False
    from safetensors.torch import load_file

    keys = set(load_file(str(out / "adapter_model.safetensors")))
    assert "base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.weight" in keys
    assert "base_model.model.classifier.weight" in keys and len(keys) == 2 * 4 + 2

    peft_model = PeftModel.from_pretrained(fresh, out).eval()
    torch.testing.assert_close(logits(peft_model, vocab=50), expected, atol=1e-5, rtol=1e-5)
    # and back into course_lib, through a fresh base whose head is still the untrained one
    again = tiny_bert()
    load_lora(again, out)
    set_active_lora(again, "default")
    torch.testing.assert_close(logits(again, vocab=50), expected, atol=1e-5, rtol=1e-5)


def test_course_lora_on_gpt2_conv1d_loads_in_peft(tmp_path):
    from peft import PeftModel

    model = tiny_gpt2()
    fresh = copy.deepcopy(model)
    assert add_lora(model, target_modules=["c_attn"], r=4, alpha=8, use_rslora=True) == [
        "transformer.h.0.attn.c_attn", "transformer.h.1.attn.c_attn"]
    set_active_lora(model, "default")
    randomize(model)
    expected = logits(model, vocab=50)
    assert not torch.allclose(expected, logits(fresh, vocab=50), atol=1e-4)
    out = save_lora(model, "default", tmp_path / "gpt2")
    assert json.loads((out / "adapter_config.json").read_text())["fan_in_fan_out"] is True
    peft_model = PeftModel.from_pretrained(fresh, out).eval()
    torch.testing.assert_close(logits(peft_model, vocab=50), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("make, targets, head", [(tiny_bert, ["query", "value"], ["classifier"]),
                                                 (tiny_gpt2, ["c_attn"], None)])
def test_peft_lora_loads_in_course_lib(tmp_path, make, targets, head):
    from peft import LoraConfig, get_peft_model

    base = make()
    fresh = copy.deepcopy(base)
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=targets, modules_to_save=head,
                                                 fan_in_fan_out=make is tiny_gpt2)).eval()
    randomize(peft_model)
    if head:
        with torch.no_grad():
            peft_model.base_model.model.classifier.modules_to_save["default"].weight.normal_()
    expected = logits(peft_model, vocab=50)
    assert not torch.allclose(expected, logits(fresh, vocab=50), atol=1e-4)
    peft_model.save_pretrained(tmp_path / "peft")
    assert load_lora(fresh, tmp_path / "peft", name="from_peft") == "from_peft"
    assert len(lora_layers(fresh)) == (4 if make is tiny_bert else 2)
    set_active_lora(fresh, "from_peft")
    torch.testing.assert_close(logits(fresh, vocab=50), expected, atol=1e-5, rtol=1e-5)


def test_save_load_errors(tmp_path):
    model = tiny_classifier()
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        load_lora(model, tmp_path / "missing")
    add_lora(model, "a", target_modules=["q_proj"], r=2)
    with pytest.raises(ValueError, match="matched no parameter"):
        save_lora(model, "a", tmp_path / "bad", head_patterns=["no_such_head"])
    save_lora(model, "a", tmp_path / "a")
    with pytest.raises(ValueError, match="lacks"):
        load_lora(tiny_bert(), tmp_path / "a")
