"""AdapterFusion: attention weights, a fresh fusion averages its adapters, only the fusion trains, save/load."""

import copy
import json

import pytest
import torch

from course_lib.params import count_parameters
from course_lib.peft.adapters import (AdapterConfig, AdapterSite, active_adapters, add_adapter, delete_adapter,
                                      list_adapters, load_adapter, save_adapter, set_active_adapters)
from course_lib.peft.fusion import (FusionLayer, active_fusion, add_fusion, delete_fusion, fusion_adapters,
                                    fusion_attention, fusion_param_count, list_fusions, load_fusion, save_fusion,
                                    set_active_fusion, mark_fusion_trainable)

from tiny_models import logits, tiny_bert, tiny_classifier, train_steps


NAMES = ["a", "b", "c"]


@torch.no_grad()
def randomize(model, name, seed=0):
    """Give adapter ``name`` non-zero weights everywhere, as if it had been trained on a task."""
    g = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, AdapterSite) and name in module.adapters:
            for p in module.adapters[name].parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)


def with_adapters(model=None, placement="pfeiffer", names=NAMES, reduction_factor=4):
    """A model with "trained" (random, distinct) adapters ``names``, none active."""
    model = model if model is not None else tiny_classifier()
    for i, name in enumerate(names):
        add_adapter(model, name, AdapterConfig(placement=placement, reduction_factor=reduction_factor))
        randomize(model, name, seed=i)
    return model


@torch.no_grad()
def exact_mean_init(model, name):
    """Set fusion ``name`` to V = I, Q = K = 0 exactly: uniform weights, output h + mean_i delta_i."""
    for module in model.modules():
        if isinstance(module, AdapterSite) and name in module.fusions:
            layer = module.fusions[name]
            for p in (*layer.query.parameters(), *layer.key.parameters()):
                p.zero_()
            layer.value.weight.copy_(torch.eye(layer.d_model))


def site_io(model, site, ffn=None):
    """Record the base layer's output h, the site's output and (with ``ffn``) the FFN input r of the next pass."""
    seen = {}
    handles = [site.base.register_forward_hook(lambda mod, args, out: seen.__setitem__("h", out)),
               site.register_forward_hook(lambda mod, args, out: seen.__setitem__("out", out))]
    if ffn is not None:
        handles.append(ffn.register_forward_pre_hook(lambda mod, args: seen.__setitem__("r", args[0])))
    return seen, handles


def manual_deltas(site, names, seen):
    """The fused adapters' contributions at ``site`` computed by hand, stacked to [..., N, d]."""
    out = []
    for n in names:
        if site.modes[n] == "parallel":
            x = seen["r"]
        elif site.ln_before[n]:
            x = site._norm(seen["h"] + seen["r"])  # Pfeiffer reads LN(h + r)
        else:
            x = seen["h"]
        out.append(site.adapters[n].delta(x))
    return torch.stack(out, dim=-2)


def test_fusion_layer_weights_mean_and_size():
    torch.manual_seed(0)
    layer = FusionLayer(16)
    assert sum(p.numel() for p in layer.parameters()) == fusion_param_count(16) == 3 * 16 * 16 + 2 * 16
    assert fusion_param_count(768) == 1_771_008  # bert-base, per layer: Q and K with bias, V without (AdapterHub)
    h, deltas = torch.randn(2, 5, 16), torch.randn(2, 5, 3, 16)
    out = layer(h, deltas)
    assert out.shape == h.shape and layer.last_weights.shape == (2, 5, 3)
    w = layer.last_weights
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 5))
    assert (w >= 0).all() and (w <= 1).all() and not w.requires_grad
    # init (AdapterHub): V = identity with 1e-6 everywhere else, no value bias, Q/K ~ N(0, 0.02) with zero biases
    eye = torch.eye(16)
    expected_v = torch.full((16, 16), 1e-6)
    expected_v.fill_diagonal_(1.0)
    assert torch.equal(layer.value.weight, expected_v) and layer.value.bias is None
    assert layer.query.bias.abs().sum() == layer.key.bias.abs().sum() == 0
    assert 0.005 < layer.query.weight.std() < 0.04 and 0.005 < layer.key.weight.std() < 0.04
    assert (w - 1 / 3).abs().max() < 0.05  # q . k is small: nearly uniform, though the scores are not scaled
    assert (out - (h + deltas.mean(-2))).abs().mean() < 0.02

    with torch.no_grad():  # V = I exactly and Q = 0: the weights are uniform and the output is h + mean
        layer.query.weight.zero_()
        layer.value.weight.copy_(eye)
        big_k = torch.randn(16, 16) * 5  # K does not matter once q = 0
        layer.key.weight.copy_(big_k)
    out = layer(h, deltas)
    torch.testing.assert_close(layer.last_weights, torch.full((2, 5, 3), 1 / 3))
    torch.testing.assert_close(out, h + deltas.mean(-2), atol=1e-6, rtol=1e-5)

    with torch.no_grad():  # large Q/K: the weights are far from uniform but still a distribution
        layer.query.weight.copy_(torch.randn(16, 16) * 3)
    layer(h, deltas)
    w = layer.last_weights
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 5))
    assert (w >= 0).all() and (w <= 1).all() and (w - 1 / 3).abs().max() > 0.2
    with pytest.raises(ValueError, match=r"\[\.\.\., N, d\]"):
        layer(h, torch.randn(2, 5, 3, 8))


@pytest.mark.parametrize("fused", [["a", "b"], ["a", "b", "c"]])
def test_fresh_fusion_averages_the_adapters(fused):
    model = with_adapters()
    base = logits(model)
    paths = add_fusion(model, fused, "f")
    assert paths == [f"encoder.layers.{i}.mlp.fc2" for i in range(3)]
    assert list_fusions(model) == ["f"] and fusion_adapters(model, "f") == fused
    assert active_fusion(model) is None and torch.equal(logits(model), base)  # added, not active
    set_active_fusion(model, "f")
    assert active_fusion(model) == "f" and active_adapters(model) == fused

    site = model.encoder.layers[1].mlp.fc2
    seen, handles = site_io(model, site, model.encoder.layers[1].mlp)
    fused_logits = logits(model)
    with torch.no_grad():
        deltas = manual_deltas(site, fused, seen)
        mean = seen["h"] + deltas.mean(-2)
        scale = deltas.abs().mean()
        assert scale > 0.05  # the adapters really contribute
        assert (seen["out"] - mean).abs().mean() < 0.05 * scale  # a fresh fusion is close to the average...
        for i in range(len(fused)):  # ...and not just one of the adapters
            assert (seen["out"] - (seen["h"] + deltas[..., i, :])).abs().mean() > 0.2 * scale
    assert not torch.allclose(fused_logits, base, atol=1e-4)

    exact_mean_init(model, "f")  # exactly uniform weights and V = I: exactly h + mean_i delta_i
    logits(model)
    with torch.no_grad():
        torch.testing.assert_close(seen["out"], seen["h"] + manual_deltas(site, fused, seen).mean(-2),
                                   atol=1e-6, rtol=1e-5)
    for handle in handles:
        handle.remove()


@pytest.mark.parametrize("placement", ["houlsby", "pfeiffer", "parallel"])
def test_fusing_two_copies_of_one_adapter_is_that_adapter(placement):
    """Whatever the attention, sum_i w_i * delta = delta when V = I: the fused model equals adapter "a" alone."""
    model = with_adapters(placement=placement, names=["a"])
    add_adapter(model, "a_copy", AdapterConfig(placement=placement, reduction_factor=4))
    for module in model.modules():
        if isinstance(module, AdapterSite):
            module.adapters["a_copy"].load_state_dict(module.adapters["a"].state_dict())
    set_active_adapters(model, "a")
    expected = logits(model)
    paths = add_fusion(model, ["a", "a_copy"], "f")
    assert len(paths) == (6 if placement == "houlsby" else 3)
    exact_mean_init(model, "f")
    with torch.no_grad():  # non-uniform attention must not matter
        for module in model.modules():
            if isinstance(module, AdapterSite) and "f" in module.fusions:
                module.fusions["f"].query.weight.normal_(0, 1.0)
                module.fusions["f"].key.weight.normal_(0, 1.0)
    set_active_fusion(model, "f")
    torch.testing.assert_close(logits(model), expected, atol=1e-5, rtol=1e-5)
    twin = copy.deepcopy(model)  # the FFN-input hook of the copy points at the copy's own sites
    torch.testing.assert_close(logits(twin), expected, atol=1e-5, rtol=1e-5)
    assert all(s._ffn_input is None for s in model.modules() if isinstance(s, AdapterSite))
    set_active_fusion(model, None)
    assert torch.equal(logits(model), expected)  # the set-aside stack ("a") is back


def test_parallel_fusion_reads_the_ffn_input():
    model = with_adapters(placement="parallel")
    add_fusion(model, NAMES, "f")
    set_active_fusion(model, "f")
    exact_mean_init(model, "f")
    layer = model.encoder.layers[2]
    site = layer.mlp.fc2
    seen, handles = site_io(model, site, layer.mlp)
    logits(model)
    with torch.no_grad():
        expected = seen["h"] + manual_deltas(site, NAMES, seen).mean(-2)
        torch.testing.assert_close(seen["out"], expected, atol=1e-6, rtol=1e-5)
        wrong = seen["h"] + torch.stack([site.adapters[n].delta(seen["h"]) for n in NAMES], -2).mean(-2)
        assert not torch.allclose(seen["out"], wrong, atol=1e-4)
    for handle in handles:
        handle.remove()


def test_activation_interplay_with_the_adapter_stack():
    model = with_adapters(names=["a", "b"])
    add_adapter(model, "h", AdapterConfig(placement="houlsby", reduction_factor=4))
    randomize(model, "h", seed=7)
    base = logits(model)
    add_fusion(model, ["a", "b"], "f")
    set_active_fusion(model, "f")
    fused_alone = logits(model)
    set_active_adapters(model, ["h", "a"])  # ends the fusion: the last call wins
    assert active_fusion(model) is None and active_adapters(model) == ["h", "a"]
    stacked = logits(model)
    assert not torch.allclose(stacked, base, atol=1e-4)
    set_active_fusion(model, "f")  # sets the stack aside: "h" (at attn.o_proj) is not applied
    assert active_adapters(model) == ["a", "b"] and active_fusion(model) == "f"
    assert model.encoder.layers[0].attn.o_proj.active == ["h"]  # kept, but unused
    assert torch.equal(logits(model), fused_alone)
    set_active_fusion(model, None)  # the stack comes back
    assert active_adapters(model) == ["h", "a"] and torch.equal(logits(model), stacked)
    set_active_fusion(model, "f")
    delete_fusion(model, "f")  # deleting the active fusion switches it off
    assert list_fusions(model) == [] and active_fusion(model) is None
    assert torch.equal(logits(model), stacked)
    assert not any(n for n, _ in model.named_parameters() if ".fusions." in n)


def test_training_moves_only_fusion_and_head(data):
    model = with_adapters()
    add_fusion(model, ["a", "b", "c"], "f")
    add_fusion(model, ["a", "b"], "other")  # must stay untouched
    set_active_fusion(model, "f")
    fresh = logits(model)
    trainable = mark_fusion_trainable(model, "f")
    assert active_fusion(model) == "f"
    assert {n for n in trainable if not n.startswith("classifier.")} == {
        n for n, _ in model.named_parameters() if ".fusions.f." in n}
    head = sum(p.numel() for p in model.classifier.parameters())
    assert count_parameters(model).trainable - head == 3 * fusion_param_count(32)
    before = copy.deepcopy(model.state_dict())
    train_steps(model, data)
    changed = {n for n, t in model.state_dict().items() if not torch.equal(t, before[n])}
    assert changed == set(trainable), f"unexpected: {changed ^ set(trainable)}"  # adapters, base: bit-identical
    assert any(".fusions.f.query." in n for n in changed) and any(".fusions.f.value." in n for n in changed)
    model.classifier.load_state_dict({k[len("classifier."):]: v for k, v in before.items()
                                      if k.startswith("classifier.")})
    assert not torch.allclose(logits(model), fresh, atol=1e-5)  # the fusion itself changed the outputs

    weights = fusion_attention(model, "f")
    assert list(weights) == [f"encoder.layers.{i}.mlp.fc2" for i in range(3)]
    for w in weights.values():
        assert w.shape == (3, 10, 3)  # [B, T, N] of the last forward pass
        torch.testing.assert_close(w.sum(-1), torch.ones(3, 10))
        assert (w >= 0).all() and (w <= 1).all()
    with pytest.raises(RuntimeError, match="has not run yet"):
        fusion_attention(model, "other")

    names = mark_fusion_trainable(model, "other", head_patterns=())
    assert all(".fusions.other." in n for n in names) and len(names) == 3 * 5  # Q, K (weight, bias), V weight


def test_save_and_load_roundtrip(tmp_path, data):
    model = with_adapters()
    for name in NAMES:
        save_adapter(model, name, tmp_path / name)
    add_fusion(model, NAMES, "mix")
    mark_fusion_trainable(model, "mix")
    train_steps(model, data)
    out = save_fusion(model, "mix", tmp_path / "mix", head_patterns=[r"^classifier\."])
    assert sorted(p.name for p in out.iterdir()) == ["fusion_config.json", "fusion_model.safetensors",
                                                     "head_model.safetensors"]
    meta = json.loads((out / "fusion_config.json").read_text())
    assert meta["name"] == "mix" and meta["adapters"] == NAMES and meta["d_model"] == 32
    assert AdapterConfig.from_dict(meta["adapter_config"]) == AdapterConfig(reduction_factor=4)
    from safetensors.torch import load_file

    assert "encoder.layers.0.mlp.fc2.query.weight" in load_file(str(out / "fusion_model.safetensors"))

    fresh = tiny_classifier()
    for name in NAMES:
        load_adapter(fresh, tmp_path / name)
    assert not torch.equal(fresh.classifier.out_proj.weight, model.classifier.out_proj.weight)
    assert load_fusion(fresh, out) == "mix"
    assert active_fusion(fresh) is None and fusion_adapters(fresh, "mix") == NAMES
    set_active_fusion(fresh, "mix")
    assert torch.equal(logits(fresh), logits(model))
    assert load_fusion(fresh, out, name="again") == "again"
    set_active_fusion(fresh, "again")
    assert torch.equal(logits(fresh), logits(model))


def test_errors_are_clear(tmp_path):
    model = with_adapters(names=["a", "b"])
    add_adapter(model, "rf8", AdapterConfig(placement="pfeiffer", reduction_factor=8))
    add_adapter(model, "hou", AdapterConfig(placement="houlsby", reduction_factor=4))
    with pytest.raises(ValueError, match="at least 2 adapters"):
        add_fusion(model, ["a"])
    with pytest.raises(ValueError, match="once"):
        add_fusion(model, ["a", "a"])
    with pytest.raises(TypeError, match="list"):
        add_fusion(model, "a")
    with pytest.raises(KeyError, match=r"\['nope'\].*\['a', 'b', 'rf8', 'hou'\]"):
        add_fusion(model, ["a", "nope"])
    with pytest.raises(ValueError, match="same AdapterConfig.*reduction_factor=4.*reduction_factor=8"):
        add_fusion(model, ["a", "rf8"])
    with pytest.raises(ValueError, match="same AdapterConfig.*pfeiffer.*houlsby"):
        add_fusion(model, ["a", "hou"])
    assert list_fusions(model) == [] and not any(".fusions." in n for n, _ in model.named_parameters())
    add_fusion(model, ["a", "b"], "f")
    with pytest.raises(ValueError, match="already exists"):
        add_fusion(model, ["b", "a"], "f")
    with pytest.raises(KeyError, match="nope"):
        set_active_fusion(model, "nope")
    with pytest.raises(KeyError, match="nope"):
        mark_fusion_trainable(model, "nope")
    with pytest.raises(ValueError, match="'a'.*fusion.*'f'"):
        delete_adapter(model, "a")
    assert list_adapters(model) == ["a", "b", "rf8", "hou"]  # the refused delete changed nothing
    delete_adapter(model, "rf8")  # unused adapters can still go

    save_fusion(model, "f", tmp_path / "f")
    bare = tiny_classifier()
    with pytest.raises(KeyError, match=r"lacks \['a', 'b'\].*load_adapter first"):
        load_fusion(bare, tmp_path / "f")
    add_adapter(bare, "a", AdapterConfig(reduction_factor=4))
    with pytest.raises(KeyError, match=r"lacks \['b'\]"):
        load_fusion(bare, tmp_path / "f")
    add_adapter(bare, "b", AdapterConfig(reduction_factor=8))
    with pytest.raises(ValueError, match="reduction_factor=8"):
        load_fusion(bare, tmp_path / "f")
    assert list_fusions(bare) == []
    wide = with_adapters(tiny_classifier(d_model=64), names=["a", "b"])
    with pytest.raises(ValueError, match="hidden size 32, this model has 64"):
        load_fusion(wide, tmp_path / "f")
    with pytest.raises(FileNotFoundError, match="fusion_config.json"):
        load_fusion(model, tmp_path / "missing")

    delete_fusion(model, "f")
    delete_adapter(model, "a")  # no longer used by a fusion
    assert list_adapters(model) == ["b", "hou"]


def test_hugging_face_bert():
    model = with_adapters(tiny_bert(), names=["a", "b"])
    paths = add_fusion(model, ["a", "b"])
    assert paths == ["bert.encoder.layer.0.output.dense", "bert.encoder.layer.1.output.dense"]
    trainable = mark_fusion_trainable(model, "fusion")
    assert {n for n in trainable if ".fusions.fusion." not in n} == {"classifier.weight", "classifier.bias"}
    assert len(trainable) == 2 + 2 * 5
    fresh = logits(model, vocab=50)

    before = copy.deepcopy(model.state_dict())
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        batch = torch.randint(1, 50, (8, 12), generator=g)
        loss = model(batch, labels=(batch[:, 1] % 2)).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    changed = {n for n, t in model.state_dict().items() if not torch.equal(t, before[n])}
    assert changed == set(trainable)
    model.classifier.load_state_dict({"weight": before["classifier.weight"], "bias": before["classifier.bias"]})
    assert not torch.allclose(logits(model, vocab=50), fresh, atol=1e-5)
    weights = fusion_attention(model, "fusion")
    assert [w.shape for w in weights.values()] == [(3, 10, 2)] * 2


def test_uniform_ablation_mixes_equally_trains_only_v_and_round_trips(tmp_path, data):
    layer = FusionLayer(8, ["a", "b", "c"], uniform=True).eval()
    assert layer.query is None and layer.key is None
    assert count_parameters(layer).total == 8 * 8  # V only
    h, deltas = torch.randn(2, 5, 8), torch.randn(2, 5, 3, 8)
    with torch.no_grad():
        layer.value.weight.normal_()
        expected = h + layer.value(deltas).mean(dim=-2)
    torch.testing.assert_close(layer(h, deltas), expected)
    assert torch.all(layer.last_weights == 1 / 3)
    model = with_adapters()
    for name in NAMES:
        save_adapter(model, name, tmp_path / name)
    add_fusion(model, NAMES, "flat", uniform=True)
    names = mark_fusion_trainable(model, "flat")
    assert not any(".query." in n or ".key." in n for n in names) and any(".value." in n for n in names)
    train_steps(model, data)
    out = save_fusion(model, "flat", tmp_path / "flat")
    fresh = with_adapters()
    for name in NAMES:
        delete_adapter(fresh, name)
        load_adapter(fresh, tmp_path / name)
    load_fusion(fresh, out)
    set_active_fusion(fresh, "flat")
    fresh.classifier.load_state_dict(model.classifier.state_dict())
    assert torch.equal(logits(fresh), logits(model))
