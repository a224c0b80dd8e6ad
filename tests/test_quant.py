"""NF4 / QLoRA: code books, block-wise quantization bounds, packing, bytes per parameter, Linear4bit, whole models."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_lib.params import count_parameters
from course_lib.peft.lora import LoRALinear, add_lora, lora_layers, merge_and_unload, set_active_lora
from course_lib.peft.quant import (Linear4bit, cast_error, cast_model_bytes, dequantize, dequantize_model,
                                   fp4_code_book, int4_code_book, max_half_gap, model_weight_bytes, nf4_code_book, pack_4bit,
                                   quantize, quantize_model, reconstruction_error, unpack_4bit)
from course_lib.peft.qlora import prepare_qlora

from tiny_models import ids, logits, tiny_classifier, tiny_gpt

BNB_NF4 = [-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
           -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
           0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0]


def gaussian(*shape, std=0.02, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * std


def block_absmax(weight, block_size):
    flat = weight.float().reshape(-1)
    return F.pad(flat, (0, (-flat.numel()) % block_size)).view(-1, block_size).abs().amax(1)


def test_code_books():
    nf4 = nf4_code_book()
    assert nf4.dtype == torch.float32 and nf4.shape == (16,)
    assert torch.all(nf4[1:] > nf4[:-1]) and nf4.min() == -1 and nf4.max() == 1 and (nf4 == 0).sum() == 1
    assert (nf4 > 0).sum() == 8 and (nf4 < 0).sum() == 7  # asymmetric so that 0 is exact
    torch.testing.assert_close(nf4, torch.tensor(BNB_NF4), atol=1e-6, rtol=0)  # the published bitsandbytes table
    int4 = int4_code_book()
    assert int4.shape == (15,) and int4.min() == -1 and int4.max() == 1 and (int4 == 0).sum() == 1
    fp4 = fp4_code_book()  # bitsandbytes' FP4 tree (dDequantizeFP4Tree): E2M1, bias 3, one subnormal, max 12
    bnb_fp4 = [0.0, 0.005208333333, 0.16666667, 0.25, 0.33333333, 0.5, 0.66666667, 1.0]
    torch.testing.assert_close(fp4[8:], torch.tensor(bnb_fp4), atol=1e-7, rtol=0)
    torch.testing.assert_close(fp4[:8], -torch.tensor(bnb_fp4).flip(0), atol=1e-7, rtol=0)
    w = gaussian(4, 64)
    q = quantize(w, "fp4", block_size=64)
    levels = dequantize(q) / block_absmax(w, 64).repeat_interleave(64).view(4, 64)
    assert all(any(abs(v - level) < 1e-6 for level in bnb_fp4 + [-x for x in bnb_fp4]) for v in levels.flatten().tolist())
    torch.testing.assert_close(int4[1:] - int4[:-1], torch.full((14,), 1 / 7))
    assert max_half_gap("int4") == pytest.approx(1 / 14)
    assert max_half_gap("nf4") == pytest.approx((1 + BNB_NF4[1]) / 2, abs=1e-6)  # -1 .. -0.696: the widest gap


@pytest.mark.parametrize("code_book", ["nf4", "int4"])
@pytest.mark.parametrize("double_quant", [False, True])
def test_error_bound_per_block(code_book, double_quant):
    # 37 x 29 = 1073 values: odd and not a multiple of 64; blocks of very different scales; dq groups of 4 blocks
    weight = gaussian(37, 29) * torch.logspace(-3, 1, 37)[:, None]
    q = quantize(weight, code_book, block_size=64, double_quant=double_quant, dq_block_size=4)
    out = dequantize(q)
    assert out.shape == weight.shape and out.dtype == weight.dtype and q.packed.numel() == math.ceil(1073 / 2)
    absmax = block_absmax(weight, 64)
    stored = q.block_absmax()
    assert stored.shape == (17,)
    if double_quant:  # 8-bit absmax: at most half a step (group absmax / 127 / 2) away
        group_scale = q.absmax_scale.repeat_interleave(4)[:17]
        assert torch.all((stored - absmax).abs() <= group_scale / 254 + 1e-6 * absmax)
        assert q.absmax is None and q.absmax_q.dtype == torch.uint8 and q.absmax_scale.shape == (5,)
    else:
        assert torch.equal(stored, absmax)
    bound = max_half_gap(code_book) * absmax + (stored - absmax).abs() + 1e-6 * absmax
    err = F.pad((out - weight).abs().reshape(-1), (0, 17 * 64 - 1073)).view(17, 64)
    assert torch.all(err <= bound[:, None])


@pytest.mark.parametrize("code_book", ["nf4", "int4"])
def test_levels_times_absmax_are_exact(code_book):
    levels = nf4_code_book() if code_book == "nf4" else int4_code_book()
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, len(levels), (5, 64), generator=g)
    codes[:, 3] = len(levels) - 1  # every block holds level 1.0, so its absmax is exactly its scale
    scales = torch.rand(5, 1, generator=g) * 3 + 0.01
    weight = (levels[codes] * scales).reshape(-1)[:300]  # last block is partial (300 = 4*64 + 44)
    q = quantize(weight, code_book, block_size=64)
    assert torch.equal(unpack_4bit(q.packed, 300), codes.reshape(-1)[:300].to(torch.uint8))
    assert torch.equal(dequantize(q), weight)
    half = weight[:256].view(16, 16).to(torch.bfloat16)  # other dtypes and shapes come back as they were
    back = dequantize(quantize(half, code_book, block_size=16))
    assert back.dtype == torch.bfloat16 and back.shape == (16, 16)


@pytest.mark.parametrize("double_quant", [False, True])
def test_zero_tensor_and_zero_blocks(double_quant):
    zeros = torch.zeros(7, 9)
    assert torch.equal(dequantize(quantize(zeros, double_quant=double_quant)), zeros)
    weight = gaussian(4, 64)
    weight[1:3] = 0  # two all-zero blocks between non-zero ones stay exactly zero (0 is a code-book level)
    out = dequantize(quantize(weight, block_size=64, double_quant=double_quant, dq_block_size=2))
    assert torch.equal(out[1:3], weight[1:3]) and out[0].abs().sum() > 0


def test_pack_unpack_round_trip():
    g = torch.Generator().manual_seed(0)
    for n in (1, 2, 7, 64, 101):
        codes = torch.randint(0, 16, (n,), generator=g)
        packed = pack_4bit(codes)
        assert packed.dtype == torch.uint8 and packed.numel() == math.ceil(n / 2)
        assert torch.equal(unpack_4bit(packed, n), codes.to(torch.uint8))
    assert pack_4bit(torch.tensor([0xA, 0x3])).item() == 0xA3  # first code in the high nibble
    with pytest.raises(ValueError, match="0..15"):
        pack_4bit(torch.tensor([3, 16]))
    with pytest.raises(TypeError, match="integer"):
        pack_4bit(torch.tensor([0.5]))
    with pytest.raises(ValueError, match="n must be"):
        unpack_4bit(pack_4bit(torch.tensor([1, 2])), 3)


def test_bytes_per_parameter():
    weight = gaussian(1024, 1024)
    plain = quantize(weight, block_size=64)
    double = quantize(weight, block_size=64, double_quant=True)
    assert plain.nbytes() / weight.numel() == pytest.approx(0.5 + 4 / 64, rel=0.01)
    assert double.nbytes() / weight.numel() == pytest.approx(0.5 + 1 / 64 + 4 / (64 * 256), rel=0.01)
    # exactly: codes + 8-bit absmax + one fp32 scale per 256 blocks + one fp32 mean
    assert double.nbytes() == 2**19 + 2**14 + 4 * 2**14 // 256 + 4 and plain.nbytes() == 2**19 + 4 * 2**14
    assert plain.bits_per_param() == 4.5 and double.bits_per_param() == pytest.approx(4.127, abs=1e-3)


def test_bad_arguments():
    weight = gaussian(8, 8)
    for bad in (0, -64, 63, 64.0, True):
        with pytest.raises(ValueError, match="block_size must be a positive even integer"):
            quantize(weight, block_size=bad)
    with pytest.raises(ValueError, match="dq_block_size"):
        quantize(weight, double_quant=True, dq_block_size=0)
    with pytest.raises(ValueError, match=r"allowed: \['nf4', 'int4', 'fp4'\]"):
        quantize(weight, code_book="fp8")
    with pytest.raises(TypeError, match="floating-point"):
        quantize(torch.ones(4, dtype=torch.int64))


def test_linear4bit_forward_buffers_and_grad():
    torch.manual_seed(0)
    linear = nn.Linear(96, 40)
    q = Linear4bit.from_linear(linear)  # double_quant=True by default
    x = torch.randn(3, 5, 96, requires_grad=True)
    w = q.dequantized_weight()
    torch.testing.assert_close(q(x), F.linear(x, w, linear.bias), atol=1e-6, rtol=0)
    assert (w - linear.weight).abs().max() < 0.2 * linear.weight.abs().max()
    assert (q.in_features, q.out_features) == (96, 40)
    assert [n for n, p in q.named_parameters()] == ["bias"] and not q.bias.requires_grad
    assert set(q.state_dict()) == {"packed", "absmax_q", "absmax_scale", "absmax_mean", "bias"}  # no code book
    assert q.weight_nbytes() == 96 * 40 // 2 + 60 + 4 + 4
    q(x).sum().backward()  # gradients flow through the frozen 4-bit weight to the input
    assert x.grad is not None and x.grad.abs().sum() > 0
    out = q(torch.randn(2, 96).to(torch.bfloat16))  # computed in compute_dtype, returned in the input's dtype
    assert out.dtype == torch.bfloat16
    assert all(t.device.type == "meta" for t in q.to("meta").buffers())  # .to() moves codes, scales, code book
    plain = Linear4bit.from_linear(nn.Linear(64, 8, bias=False), code_book="int4", double_quant=False)
    assert set(plain.state_dict()) == {"packed", "absmax"} and plain.bias is None
    with pytest.raises(TypeError, match="needs an nn.Linear"):
        Linear4bit.from_linear(nn.Conv1d(3, 3, 1))


def test_qlora_layer_matches_lora_on_dequantized_weight():
    torch.manual_seed(0)
    q = Linear4bit.from_linear(nn.Linear(96, 40))
    ref = nn.Linear(96, 40)
    with torch.no_grad():
        ref.weight.copy_(q.dequantized_weight())
        ref.bias.copy_(q.bias)
    qlora, lora = LoRALinear(q, r=4, alpha=8), LoRALinear(ref, r=4, alpha=8)
    with torch.no_grad():
        qlora.lora_B["default"].weight.normal_(0, 0.5)
        lora.lora_A["default"].weight.copy_(qlora.lora_A["default"].weight)
        lora.lora_B["default"].weight.copy_(qlora.lora_B["default"].weight)
    x = torch.randn(6, 96)
    out = qlora(x)
    torch.testing.assert_close(out, lora(x), atol=1e-5, rtol=0)
    assert (qlora.in_features, qlora.out_features) == (96, 40)
    assert qlora.lora_A["default"].weight.dtype == torch.float32
    out.pow(2).sum().backward()
    assert {n for n, p in qlora.named_parameters() if p.grad is not None} == {
        "lora_A.default.weight", "lora_B.default.weight"}
    with pytest.raises(RuntimeError, match="re-quantized.*dequantize_model"):
        qlora.merge()
    assert qlora.merged == []
    with pytest.raises(ValueError, match="merge_on_eval"):
        LoRALinear(q, r=4, alpha=8, merge_on_eval=True)


def test_quantize_classifier_and_state_dict_round_trip():
    model = tiny_classifier()
    names = quantize_model(model, block_size=32)
    linears = [n for n, m in tiny_classifier().named_modules() if isinstance(m, nn.Linear)]
    assert names == [n for n in linears if not n.startswith("classifier.")] and len(names) == 18
    assert all(isinstance(model.get_submodule(n), Linear4bit) for n in names)
    assert isinstance(model.classifier.dense, nn.Linear) and isinstance(model.classifier.out_proj, nn.Linear)
    assert count_parameters(model).trainable == sum(p.numel() for p in model.classifier.parameters()) + sum(
        p.numel() for n, p in model.named_parameters() if "norm" in n or "embed" in n)  # biases are frozen
    fresh = tiny_classifier(seed=1)  # other weights, same architecture
    quantize_model(fresh, block_size=32)
    assert not torch.equal(logits(fresh), logits(model))
    fresh.load_state_dict(model.state_dict())
    assert torch.equal(logits(fresh), logits(model))
    with pytest.raises(RuntimeError, match="size mismatch"):  # other block size, other buffer shapes
        other = tiny_classifier()
        quantize_model(other, block_size=64)
        other.load_state_dict(model.state_dict())


def test_quantize_gpt_keeps_tied_head():
    model = tiny_gpt()
    reference = logits(model)
    names = quantize_model(model, skip=())  # even without skip patterns, the tied lm_head stays
    assert len(names) == 12 and "lm_head" not in names
    assert model.lm_head.weight is model.tok_embed.weight and isinstance(model.lm_head, nn.Linear)
    out = logits(model)
    assert out.shape == reference.shape and (out - reference).abs().max() < 0.1 * reference.abs().max()
    with pytest.raises(ValueError, match="tied"):
        quantize_model(tiny_gpt(), target_modules=["lm_head"], skip=())


def test_quantize_model_errors_leave_model_unchanged():
    model = tiny_gpt()
    with pytest.raises(ValueError, match=r"Target 'query' matched no nn.Linear.*'q_proj'"):
        quantize_model(model, target_modules=["query"])
    with pytest.raises(ValueError, match="regex"):
        quantize_model(model, target_modules=r".*\.query")
    with pytest.raises(ValueError, match="block_size must be a positive even integer"):
        quantize_model(model, block_size=63)
    with pytest.raises(ValueError, match="block_size"):
        quantize_model(model, block_size=-2)
    assert not any(isinstance(m, Linear4bit) for m in model.modules())
    assert quantize_model(model, target_modules=["q_proj", "fc1"]) == [
        "layers.0.attn.q_proj", "layers.0.mlp.fc1", "layers.1.attn.q_proj", "layers.1.mlp.fc1"]
    assert quantize_model(model, target_modules=r"layers\.1\.attn\.[kv]_proj") == [
        "layers.1.attn.k_proj", "layers.1.attn.v_proj"]


def test_dequantize_model_gives_plain_linears_with_same_outputs():
    model = tiny_classifier()
    names = quantize_model(model, code_book="int4", double_quant=False)
    quantized_logits = logits(model)
    assert dequantize_model(model) == names
    assert not any(isinstance(m, Linear4bit) for m in model.modules())
    assert all(type(model.get_submodule(n)) is nn.Linear for n in names)
    assert not model.get_submodule(names[0]).weight.requires_grad  # still frozen, as in the 4-bit model
    torch.testing.assert_close(logits(model), quantized_logits, atol=1e-6, rtol=0)


def test_prepare_qlora_trains_only_lora_and_merges_after_dequantize():
    model = tiny_classifier()
    result = prepare_qlora(model, ["q_proj", "v_proj"], r=2, alpha=4)
    assert len(result["quantized"]) == 18 and len(result["lora"]) == 6
    assert all(isinstance(layer.base_layer, Linear4bit) for layer in lora_layers(model).values())
    assert set(result["trainable"]) == {n for n, p in model.named_parameters() if p.requires_grad}
    assert all(".lora_" in n or n.startswith("classifier.") for n in result["trainable"])
    model(ids()).logits.sum().backward()
    assert all((p.grad is not None) == p.requires_grad for p in model.parameters())
    with torch.no_grad():
        for n, p in model.named_parameters():
            if ".lora_B." in n:
                p.normal_(0, 0.3)
    unmerged = logits(model)
    with pytest.raises(RuntimeError, match="dequantize_model"):
        merge_and_unload(model)
    dequantize_model(model)
    merge_and_unload(model)
    assert not lora_layers(model)
    torch.testing.assert_close(logits(model), unmerged, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="rank"):  # LoRA arguments are checked before quantizing
        prepare_qlora(tiny_gpt(), ["q_proj"], r=64, head_patterns=())
    gpt = tiny_gpt()
    prepare_qlora(gpt, ["q_proj"], r=2, head_patterns=())
    assert isinstance(gpt.layers[0].attn.q_proj.base_layer, Linear4bit)
    add_lora(gpt, "second", ["fc1"], r=2)  # more adapters find Linear4bit layers too
    set_active_lora(gpt, ["default", "second"])
    assert isinstance(gpt.layers[0].mlp.fc1.base_layer, Linear4bit)


def test_memory_and_error_helpers():
    model = tiny_gpt()
    fp32 = model_weight_bytes(model)
    n = count_parameters(model).total
    assert fp32 == {"params": 4 * n, "4-bit weights": 0, "quant scales": 0, "total": 4 * n}
    assert cast_model_bytes(model, torch.bfloat16) == cast_model_bytes(model, torch.float16) == 2 * n
    linear_numel = sum(m.weight.numel() for n_, m in model.named_modules()
                       if isinstance(m, nn.Linear) and n_ != "lm_head")
    quantize_model(model, double_quant=False)
    nf4 = model_weight_bytes(model)
    assert nf4["4-bit weights"] == linear_numel // 2 and nf4["quant scales"] == 4 * linear_numel // 64
    assert nf4["params"] == 4 * (n - linear_numel) and nf4["total"] < 0.7 * fp32["total"]
    weight = gaussian(256, 256)
    nf4_err, int4_err = reconstruction_error(weight, "nf4"), reconstruction_error(weight, "int4")
    assert nf4_err["rmse"] < 0.9 * int4_err["rmse"]  # normal weights: NF4 spends its levels where the values are
    assert nf4_err["bits_per_param"] == 4.5 and nf4_err["max_abs_error"] >= nf4_err["rmse"] >= nf4_err["mean_abs_error"]
    fp16, bf16 = cast_error(weight, torch.float16), cast_error(weight, torch.bfloat16)
    assert 0 < fp16["rmse"] < bf16["rmse"] < 0.1 * nf4_err["rmse"]
    with pytest.raises(ValueError, match="floating dtype"):
        cast_error(weight, torch.int8)



def test_count_parameters_counts_quantized_weights_as_frozen():
    model = tiny_classifier()
    before = count_parameters(model).total
    quantize_model(model)
    assert count_parameters(model).total == before
    model.requires_grad_(False)
    assert count_parameters(model).trainable == 0
