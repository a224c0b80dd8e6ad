"""The adapter presets equal AdapterHub's configs of the same name: each formula computed by hand on a BERT block.

AdapterHub (``adapters`` 1.3.0) in eval mode, with ``h`` the block's output projection, ``r`` its residual input
and ``LN`` its LayerNorm: SeqBnConfig (pfeiffer) LN(h + f(LN(h + r)) + r) with relu; DoubleSeqBnConfig (houlsby)
LN(h + f(h) + r) at the attention and FFN outputs with swish; ParBnConfig (parallel) LN(h + 4 f(r) + r) with relu;
dynamic Fuse: LN(h + sum_i softmax_i((Q q + b_Q) . (K f_i + b_K)) V f_i + r) with q the adapters' input.
``tools/check_adapterhub.py`` compares against the library itself where it is installed.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from course_lib.peft.adapters import AdapterConfig, AdapterSite, BottleneckAdapter, add_adapter, set_active_adapters
from course_lib.peft.fusion import FusionLayer, add_fusion, mark_fusion_trainable, set_active_fusion
from course_lib.peft.spine import regularization_loss
from tiny_models import tiny_bert, tiny_classifier, tiny_gpt

IDS = torch.randint(1, 50, (2, 7), generator=torch.Generator().manual_seed(0))


@torch.no_grad()
def randomize(model, seed=0):
    """Non-zero adapter weights everywhere (a fresh adapter adds exactly zero)."""
    g = torch.Generator().manual_seed(seed)
    for site in (m for m in model.modules() if isinstance(m, AdapterSite)):
        for adapter in site.adapters.values():
            for p in adapter.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)


def f(adapter: BottleneckAdapter, x, act, scaling: float = 1.0):
    """The bottleneck by hand from its raw weights: s * (W_up act(W_down x + b_down) + b_up)."""
    hidden = act(x @ adapter.down.weight.T + adapter.down.bias)
    return scaling * (hidden @ adapter.up.weight.T + adapter.up.bias)


def capture(block):
    """Record (h = the block's dense output, r = its residual input, its output) on the next forward pass."""
    seen = {}

    def pre(module, args, kwargs):
        values = list(args) + list(kwargs.values())
        seen["x"], seen["r"] = values[0], values[1]

    handles = [block.register_forward_pre_hook(pre, with_kwargs=True),
               block.register_forward_hook(lambda m, a, out: seen.__setitem__("out", out))]
    return seen, handles


def bert_with(placement: str, names=("a",)):
    model = tiny_bert()
    for name in names:
        add_adapter(model, name, AdapterConfig(placement=placement, reduction_factor=4))
    randomize(model)
    return model


@torch.no_grad()
def run_block(model, path):
    block = model.get_submodule(path)
    seen, handles = capture(block)
    model(IDS)
    for handle in handles:
        handle.remove()
    return block, seen


@torch.no_grad()
def test_pfeiffer_is_seqbn_the_adapter_reads_the_normalised_sum():
    model = bert_with("pfeiffer")
    set_active_adapters(model, "a")
    block, seen = run_block(model, "bert.encoder.layer.1.output")
    h, r, ln = block.dense.base(seen["x"]), seen["r"], block.LayerNorm
    adapter = block.dense.adapters["a"]
    expected = ln(h + f(adapter, ln(h + r), F.relu) + r)
    torch.testing.assert_close(seen["out"], expected, atol=1e-6, rtol=1e-5)
    houlsby_formula = ln(h + f(adapter, h, F.relu) + r)  # what course_lib computed before it matched AdapterHub
    assert not torch.allclose(seen["out"], houlsby_formula, atol=1e-3)


@torch.no_grad()
@pytest.mark.parametrize("path", ["bert.encoder.layer.0.attention.output", "bert.encoder.layer.1.output"])
def test_houlsby_is_doubleseqbn_with_swish_at_both_sites(path):
    model = bert_with("houlsby")
    set_active_adapters(model, "a")
    block, seen = run_block(model, path)
    h, r = block.dense.base(seen["x"]), seen["r"]
    expected = block.LayerNorm(h + f(block.dense.adapters["a"], h, F.silu) + r)
    torch.testing.assert_close(seen["out"], expected, atol=1e-6, rtol=1e-5)
    relu = block.LayerNorm(h + f(block.dense.adapters["a"], h, F.relu) + r)
    assert not torch.allclose(seen["out"], relu, atol=1e-3)


@torch.no_grad()
def test_parallel_is_parbn_scaled_by_four_reading_the_ffn_input():
    model = bert_with("parallel")
    set_active_adapters(model, "a")
    block, seen = run_block(model, "bert.encoder.layer.0.output")
    adapter = block.dense.adapters["a"]
    assert adapter.scaling == 4.0
    h, r = block.dense.base(seen["x"]), seen["r"]
    expected = block.LayerNorm(h + f(adapter, r, F.relu, scaling=4.0) + r)
    torch.testing.assert_close(seen["out"], expected, atol=1e-6, rtol=1e-5)
    unscaled = block.LayerNorm(h + f(adapter, r, F.relu) + r)
    assert not torch.allclose(seen["out"], unscaled, atol=1e-3)


@torch.no_grad()
def test_fusion_is_dynamic_fuse_query_from_the_normalised_sum_no_sqrt_d():
    model = bert_with("pfeiffer", names=("a", "b"))
    add_fusion(model, ["a", "b"], "f")
    set_active_fusion(model, "f")
    g = torch.Generator().manual_seed(1)
    for site in (m for m in model.modules() if isinstance(m, AdapterSite)):
        for p in site.fusions["f"].parameters():  # a "trained" fusion: far from uniform weights
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    block, seen = run_block(model, "bert.encoder.layer.1.output")
    site, ln = block.dense, block.LayerNorm
    fusion = site.fusions["f"]
    h, r = site.base(seen["x"]), seen["r"]
    query = ln(h + r)
    ups = torch.stack([f(site.adapters[n], query, F.relu) for n in ("a", "b")], dim=-2)   # [B, T, 2, d]
    q = query @ fusion.query.weight.T + fusion.query.bias
    k = ups @ fusion.key.weight.T + fusion.key.bias
    v = ups @ fusion.value.weight.T                                                       # no value bias
    weights = torch.einsum("btd,btnd->btn", q, k).softmax(-1)                             # no 1/sqrt(d)
    expected = ln(h + torch.einsum("btn,btnd->btd", weights, v) + r)
    torch.testing.assert_close(seen["out"], expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fusion.last_weights, weights, atol=1e-6, rtol=1e-5)


def test_fusion_regularizer_and_temperature():
    model = tiny_classifier()
    for name in ("a", "b"):
        add_adapter(model, name, AdapterConfig(reduction_factor=4))
    add_fusion(model, ["a", "b"], "f")
    assert regularization_loss(model) is not None  # a fresh fusion trains by default... (requires_grad is True)
    mark_fusion_trainable(model, "f")
    fused = [m.fusions["f"] for m in model.modules() if isinstance(m, AdapterSite)]
    with torch.no_grad():
        for layer in fused:
            layer.value.weight.add_(0.1)
    eye = torch.eye(32)
    expected = sum(0.01 * (eye - layer.value.weight).pow(2).sum() for layer in fused)
    torch.testing.assert_close(regularization_loss(model), expected)
    for layer in fused:
        layer.value.weight.requires_grad_(False)
    assert regularization_loss(model) is None  # AdapterHub adds it only while V trains

    hot = FusionLayer(8, ["a", "b"], temperature=True)
    assert hot.T == 50.0
    h, deltas = torch.randn(1, 3, 8), torch.randn(1, 3, 2, 8)
    hot(h, deltas)
    assert hot.T == pytest.approx(49.95)
    for _ in range(2000):
        hot(h, deltas)
    assert hot.T == 1.0  # the schedule stops at T = 1
    with pytest.raises(ValueError, match=r"dropout must be a number in \[0, 1\), got 1.5"):
        FusionLayer(8, dropout=1.5)


def test_presets_resolve_to_adapterhub_defaults_and_options_stay_explicit():
    assert AdapterConfig().to_dict() == {"placement": "pfeiffer", "reduction_factor": 16, "bottleneck": None,
                                         "activation": "relu", "ln_before": True, "scaling": 1.0,
                                         "init": "identity"}
    assert AdapterConfig(placement="houlsby").activation == "silu"
    assert AdapterConfig(placement="houlsby", activation="relu").activation == "relu"  # the seed slide's choice
    assert AdapterConfig(placement="parallel").scaling == 4.0
    assert AdapterConfig(placement="pfeiffer", ln_before=False).ln_before is False
    with pytest.raises(ValueError, match="only the 'pfeiffer' placement"):
        AdapterConfig(placement="houlsby", ln_before=True)
    with pytest.raises(ValueError, match="scaling must be a finite number > 0, got 0"):
        AdapterConfig(scaling=0)
    with pytest.raises(ValueError, match=r"init must be one of \('identity', 'bert', 'mam'\), got 'xavier'"):
        AdapterConfig(init="xavier")
    with pytest.raises(ValueError, match="pre-LN.*ln_before=False"):
        add_adapter(tiny_gpt(), "a", AdapterConfig(placement="pfeiffer"))


def test_initialisations():
    torch.manual_seed(0)
    identity, bert, mam = (BottleneckAdapter(64, 8, init=i) for i in ("identity", "bert", "mam"))
    x = torch.randn(3, 64)
    assert torch.equal(identity.delta(x), torch.zeros(3, 64)) and torch.equal(mam.delta(x), torch.zeros(3, 64))
    assert 0.01 < bert.up.weight.std() < 0.03  # AdapterHub's "bert": a fresh adapter is not the identity
    assert bert.delta(x).abs().max() > 0
    bound = 1 / 64 ** 0.5  # kaiming_uniform(a=sqrt(5)) on a 64-input layer draws from U(-1/8, 1/8)
    assert mam.down.weight.abs().max() <= bound and mam.down.weight.std() > 0.05
