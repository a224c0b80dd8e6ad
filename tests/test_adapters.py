"""Bottleneck adapters: exact sizes, identity at init, the right insertion points, only adapters train."""

import copy

import pytest
import torch

from course_lib.params import count_parameters
from course_lib.peft.adapters import (AdapterConfig, AdapterSite, BottleneckAdapter, active_adapters,
                                      adapter_param_count, adapter_state_dict, add_adapter, deactivate_adapters,
                                      delete_adapter, list_adapters, load_adapter, save_adapter, set_active_adapters,
                                      mark_adapter_trainable)

from tiny_models import logits, tiny_bert, tiny_classifier, tiny_gpt, train_steps


PLACEMENTS = ["houlsby", "pfeiffer", "parallel"]


@torch.no_grad()
def randomize(model, name):
    """Give adapter ``name`` non-zero weights everywhere (a fresh one is the identity)."""
    g = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, AdapterSite) and name in module.adapters:
            for p in module.adapters[name].parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)


def test_parameter_formula_and_bert_base_counts():
    assert adapter_param_count(768, 48) == 74_544
    adapter = BottleneckAdapter(768, 48)
    assert sum(p.numel() for p in adapter.parameters()) == 74_544
    h = torch.randn(2, 5, 768)
    assert torch.equal(adapter.delta(h), torch.zeros_like(h)) and torch.equal(adapter(h), h)  # exactly the identity
    assert adapter.down.weight.abs().sum() > 0  # only "up" starts at zero, so "up" gets gradients at once
    from transformers import BertConfig, BertModel

    with torch.device("meta"):  # bert-base shape without allocating (or downloading) anything
        bert = BertModel(BertConfig())
    for placement, expected, sites in [("pfeiffer", 894_528, 12), ("houlsby", 1_789_056, 24),
                                       ("parallel", 894_528, 12)]:
        add_adapter(bert, placement, AdapterConfig(placement=placement, reduction_factor=16))
        names = mark_adapter_trainable(bert, placement, head_patterns=())
        assert count_parameters(bert).trainable == expected
        assert sum(p.numel() for n, p in bert.named_parameters() if f".adapters.{placement}." in n) == expected
        assert len(names) == 4 * sites  # down/up weight and bias per site
        delete_adapter(bert, placement)
    assert count_parameters(bert).trainable == 0 and list_adapters(bert) == []


def gpt_config(placement, **sizes):
    """The course GPT is pre-LN: a Pfeiffer adapter there reads h (ln_before=False), like Houlsby's."""
    return AdapterConfig(placement=placement, **sizes, **({"ln_before": False} if placement == "pfeiffer" else {}))


@pytest.mark.parametrize("placement", PLACEMENTS)
@pytest.mark.parametrize("make", [tiny_classifier, tiny_gpt, tiny_bert])
def test_fresh_adapter_is_the_identity(make, placement):
    model = make()
    vocab = 50 if make is tiny_bert else 120
    base = logits(model, vocab)
    add_adapter(model, "a", gpt_config(placement, reduction_factor=4) if make is tiny_gpt
                else AdapterConfig(placement=placement, reduction_factor=4))
    assert active_adapters(model) == []  # added, but not active yet
    set_active_adapters(model, "a")
    assert active_adapters(model) == ["a"]
    torch.testing.assert_close(logits(model, vocab), base, atol=1e-6, rtol=0)
    randomize(model, "a")
    assert not torch.allclose(logits(model, vocab), base, atol=1e-4)  # the sites really are in the forward pass


@pytest.mark.parametrize("placement, per_layer, suffixes", [
    ("houlsby", 2, ("attn.o_proj", "mlp.fc2")), ("pfeiffer", 1, ("mlp.fc2",)), ("parallel", 1, ("mlp.fc2",))])
def test_insertion_sites(placement, per_layer, suffixes):
    paths = add_adapter(tiny_classifier(), "a", AdapterConfig(placement=placement, reduction_factor=4))
    assert len(paths) == 3 * per_layer
    assert paths[:per_layer] == [f"encoder.layers.0.{s}" for s in suffixes]
    gpt_paths = add_adapter(tiny_gpt(), "a", gpt_config(placement, bottleneck=3, reduction_factor=None))
    assert gpt_paths == [f"layers.{i}.{s}" for i in range(2) for s in suffixes]


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_training_moves_only_adapter_and_head(placement, data):
    model = tiny_classifier()
    base = logits(model)
    add_adapter(model, "task", AdapterConfig(placement=placement, reduction_factor=4))
    add_adapter(model, "other", AdapterConfig(placement="houlsby", reduction_factor=4))  # must stay untouched
    trainable = mark_adapter_trainable(model, "task")
    assert active_adapters(model) == ["task"]
    assert {n for n in trainable if not n.startswith("classifier.")} == {
        n for n, _ in model.named_parameters() if ".adapters.task." in n}
    m = 32 // 4
    adapter_params = count_parameters(model).trainable - sum(p.numel() for p in model.classifier.parameters())
    assert adapter_params == (6 if placement == "houlsby" else 3) * adapter_param_count(32, m)
    before = copy.deepcopy(model.state_dict())
    train_steps(model, data)
    changed = {n for n, t in model.state_dict().items() if not torch.equal(t, before[n])}
    assert changed == set(trainable), f"unexpected: {changed ^ set(trainable)}"
    model.classifier.load_state_dict({k[len("classifier."):]: v for k, v in before.items()
                                      if k.startswith("classifier.")})  # compare the backbones only
    assert not torch.allclose(logits(model), base, atol=1e-5)
    deactivate_adapters(model)
    assert torch.equal(logits(model), base)  # frozen base weights are bit-identical


def test_parallel_adapter_reads_the_ffn_input():
    model = tiny_classifier()
    add_adapter(model, "p", AdapterConfig(placement="parallel", reduction_factor=4))
    set_active_adapters(model, "p")
    randomize(model, "p")
    layer = model.encoder.layers[1]
    site = layer.mlp.fc2
    seen = {}
    layer.mlp.register_forward_pre_hook(lambda mod, args: seen.__setitem__("mlp_in", args[0]))
    site.base.register_forward_hook(lambda mod, args, out: seen.__setitem__("fc2_out", out))
    site.register_forward_hook(lambda mod, args, out: seen.__setitem__("site_out", out))
    logits(model)
    with torch.no_grad():
        expected = site.adapters["p"].delta(seen["mlp_in"])
        torch.testing.assert_close(seen["site_out"] - seen["fc2_out"], expected, atol=1e-6, rtol=1e-5)
        assert not torch.allclose(expected, site.adapters["p"].delta(seen["fc2_out"]), atol=1e-4)
    assert site._ffn_input is None  # the stashed input is not kept alive after the forward pass


def test_houlsby_attention_adapter_sits_on_the_o_proj_output():
    model = tiny_gpt()
    add_adapter(model, "h", AdapterConfig(placement="houlsby", reduction_factor=4))
    set_active_adapters(model, "h")
    randomize(model, "h")
    site = model.layers[0].attn.o_proj
    seen = {}
    site.base.register_forward_hook(lambda mod, args, out: seen.__setitem__("o_proj_out", out))
    site.register_forward_hook(lambda mod, args, out: seen.__setitem__("site_out", out))
    logits(model)
    with torch.no_grad():
        expected = seen["o_proj_out"] + site.adapters["h"].delta(seen["o_proj_out"])
    assert torch.equal(seen["site_out"], expected)
    assert not torch.equal(seen["site_out"], seen["o_proj_out"])


def test_named_adapters_switch_stack_and_delete():
    model = tiny_classifier()
    original_names = [n for n, _ in model.named_parameters()]
    base = logits(model)
    add_adapter(model, "a", AdapterConfig(placement="houlsby", reduction_factor=4))
    add_adapter(model, "b", AdapterConfig(placement="parallel", reduction_factor=8))
    randomize(model, "a")
    randomize(model, "b")
    assert list_adapters(model) == ["a", "b"]
    set_active_adapters(model, "a")
    out_a = logits(model)
    set_active_adapters(model, "b")
    out_b = logits(model)
    set_active_adapters(model, ["a", "b"])
    assert active_adapters(model) == ["a", "b"]
    assert model.encoder.layers[0].attn.o_proj.active == ["a"]  # "b" has no adapter at this site
    out_ab = logits(model)
    for x, y in [(out_a, out_b), (out_a, out_ab), (out_b, out_ab), (out_a, base), (out_b, base)]:
        assert not torch.allclose(x, y, atol=1e-5)
    twin = copy.deepcopy(model)  # deepcopy keeps the parallel adapter's input hook pointing at its own site
    assert torch.equal(logits(twin), out_ab)
    deactivate_adapters(model)
    assert torch.equal(logits(model), base)
    set_active_adapters(model, ["b", "a"])
    delete_adapter(model, "a")
    assert list_adapters(model) == ["b"] and active_adapters(model) == ["b"]
    delete_adapter(model, "b")
    assert [n for n, _ in model.named_parameters()] == original_names
    assert not any(isinstance(m, AdapterSite) for m in model.modules())
    assert all(not layer.mlp._forward_pre_hooks for layer in model.encoder.layers)
    assert list_adapters(model) == [] and active_adapters(model) == []
    assert torch.equal(logits(model), base)


def test_save_and_load_roundtrip(tmp_path, data):
    model = tiny_classifier()
    add_adapter(model, "task", AdapterConfig(placement="houlsby", reduction_factor=4, activation="gelu"))
    mark_adapter_trainable(model, "task", head_patterns=())  # the head is not part of the adapter file
    train_steps(model, data)
    model.eval()
    out = save_adapter(model, "task", tmp_path / "task")
    assert sorted(p.name for p in out.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]

    fresh = tiny_classifier()
    assert load_adapter(fresh, out) == "task"
    assert load_adapter(fresh, out, name="again") == "again"
    assert fresh.encoder.layers[0].mlp.fc2.adapters["task"].act.__class__.__name__ == "GELU"
    set_active_adapters(fresh, "again")
    assert torch.equal(logits(fresh), logits(model))
    for key, t in adapter_state_dict(model, "task").items():
        assert torch.equal(t, adapter_state_dict(fresh, "again")[key])
    assert AdapterConfig.from_dict(AdapterConfig(bottleneck=5, reduction_factor=None).to_dict()).bottleneck == 5


def test_save_and_load_with_the_task_head(tmp_path, data):
    model = tiny_classifier()
    add_adapter(model, "task", AdapterConfig(placement="pfeiffer", reduction_factor=4))
    mark_adapter_trainable(model, "task")  # adapter + classifier head
    train_steps(model, data)
    model.eval()
    out = save_adapter(model, "task", tmp_path / "task", head_patterns=[r"^classifier\."])
    assert (out / "head_model.safetensors").is_file()
    fresh = tiny_classifier()  # the same base; its untrained head must be replaced by the saved one
    assert not torch.equal(fresh.classifier.out_proj.weight, model.classifier.out_proj.weight)
    load_adapter(fresh, out)
    set_active_adapters(fresh, "task")
    assert torch.equal(logits(fresh), logits(model))
    with pytest.raises(ValueError, match="matched no parameter"):
        save_adapter(model, "task", tmp_path / "bad", head_patterns=["no_such_head"])


def test_hugging_face_bert():
    model = tiny_bert()
    base = logits(model, vocab=50)
    paths = add_adapter(model, "h", AdapterConfig(placement="houlsby", reduction_factor=4))
    assert paths == ["bert.encoder.layer.0.attention.output.dense", "bert.encoder.layer.0.output.dense",
                     "bert.encoder.layer.1.attention.output.dense", "bert.encoder.layer.1.output.dense"]
    trainable = mark_adapter_trainable(model, "h")
    assert {n for n in trainable if ".adapters.h." not in n} == {"classifier.weight", "classifier.bias"}
    torch.testing.assert_close(logits(model, vocab=50), base, atol=1e-6, rtol=0)

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
    assert not torch.allclose(logits(model, vocab=50), base, atol=1e-5)

    other = tiny_bert()  # parallel adapters hook BERT's "intermediate" module
    add_adapter(other, "p", AdapterConfig(placement="parallel", bottleneck=4, reduction_factor=None))
    set_active_adapters(other, "p")
    torch.testing.assert_close(logits(other, vocab=50), base, atol=1e-6, rtol=0)
    randomize(other, "p")
    assert not torch.allclose(logits(other, vocab=50), base, atol=1e-4)


def test_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match="houlsby.*parallel.*pfeiffer"):
        AdapterConfig(placement="serial")
    with pytest.raises(ValueError, match="exactly one of reduction_factor and bottleneck"):
        AdapterConfig(bottleneck=8)  # reduction_factor still has its default
    with pytest.raises(ValueError, match="exactly one"):
        AdapterConfig(reduction_factor=None)
    with pytest.raises(ValueError, match="relu"):
        BottleneckAdapter(8, 2, activation="tanh")
    with pytest.raises(ValueError, match="unknown_key"):
        AdapterConfig.from_dict({"unknown_key": 1})

    model = tiny_classifier()
    with pytest.raises(ValueError, match=r"reduction_factor \(64\) must be <= d_model \(32\)"):
        add_adapter(model, "big", AdapterConfig(reduction_factor=64))
    assert list_adapters(model) == [] and not any(isinstance(m, AdapterSite) for m in model.modules())

    add_adapter(model, "a", AdapterConfig())
    with pytest.raises(ValueError, match="already exists"):
        add_adapter(model, "a", AdapterConfig(placement="houlsby"))
    with pytest.raises(KeyError, match=r"'nope'.*\['a'\]"):
        set_active_adapters(model, ["a", "nope"])
    with pytest.raises(KeyError, match="nope"):
        mark_adapter_trainable(model, "nope")
    assert active_adapters(model) == []  # the failed call changed nothing

    save_adapter(model, "a", tmp_path / "a32")
    with pytest.raises(ValueError, match="hidden size 32, this model has 64"):
        load_adapter(tiny_classifier(d_model=64), tmp_path / "a32")
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        load_adapter(model, tmp_path / "missing")
    with pytest.raises(ValueError, match="course.*bert|bert.*course"):
        add_adapter(torch.nn.Sequential(torch.nn.Linear(4, 4)), "a", AdapterConfig())
