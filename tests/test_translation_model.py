"""The encoder-decoder Transformer and the P-Transformer (interleaved layers, layer-wise teacher forcing)."""

import pytest
import torch
import torch.nn.functional as F

from course_lib.models import ModelOutput
from course_lib.translation import MultiHeadCrossAttention, Seq2SeqConfig, Seq2SeqTransformer

SV, TV, PAD, BOS, EOS = 30, 40, 0, 2, 3


def cfg(**kw) -> Seq2SeqConfig:
    base = dict(src_vocab_size=SV, tgt_vocab_size=TV, max_len=16, d_model=32, n_layers=3, n_heads=4, d_ff=64,
                dropout=0.0, pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS)
    base.update(kw)
    return Seq2SeqConfig(**base)


def model(**kw) -> Seq2SeqTransformer:
    torch.manual_seed(0)
    m = Seq2SeqTransformer(cfg(**kw)).eval()
    with torch.no_grad():  # larger random weights than the N(0, 0.02) init, so that every path visibly matters
        for name, p in m.named_parameters():
            if p.ndim == 2 and "embed" not in name:
                p.normal_(0.0, 0.2)
    return m


def ids(vocab: int, b: int = 2, t: int = 7, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(4, vocab, (b, t), generator=g)  # never a special id


VARIANTS = [dict(architecture="base"), dict(architecture="p"), dict(architecture="p", layer_teacher_forcing=0.5)]


@pytest.mark.parametrize("bad, match", [
    (dict(architecture="q"), "architecture"),
    (dict(layer_teacher_forcing=0.5), "needs architecture='p'"),
    (dict(architecture="p", layer_teacher_forcing=1.5), r"\[0, 1\]"),
    (dict(n_heads=5), "divisible"),
    (dict(eos_token_id=TV), "eos_token_id"),
    (dict(n_layers=0), "n_layers"),
])
def test_config_validation(bad, match):
    with pytest.raises(ValueError, match=match):
        cfg(**bad)


def test_config_round_trip():
    c = cfg(architecture="p", layer_teacher_forcing=0.25)
    assert Seq2SeqConfig.from_dict(c.to_dict()) == c


def test_shapes_and_loss_ignores_padding():
    m = model()
    src, tgt = ids(SV), ids(TV, t=5, seed=2)
    labels = torch.cat([tgt[:, 1:], torch.full((2, 1), EOS)], dim=1)
    labels[1, 3:] = -100
    out = m(src, tgt, labels=labels)
    assert isinstance(out, ModelOutput) and out.logits.shape == (2, 5, TV) and out.hidden_states.shape == (2, 5, 32)
    keep = labels != -100
    assert torch.allclose(out.loss, F.cross_entropy(out.logits[keep], labels[keep]))


def test_the_three_variants_have_equal_parameter_counts():
    counts = {str(v): sum(p.numel() for p in model(**v).parameters()) for v in VARIANTS}
    assert len(set(counts.values())) == 1, counts
    names = [sorted(n for n, _ in model(**v).named_parameters()) for v in VARIANTS]
    assert names[0] == names[1] == names[2]


@pytest.mark.parametrize("variant", VARIANTS[:2] + [dict(architecture="p", layer_teacher_forcing=1.0)], ids=str)
def test_no_future_leakage(variant):
    m = model(**variant)
    if variant.get("layer_teacher_forcing"):
        m.train()  # ratio 1 is deterministic in training mode (dropout is 0): every layer reads the embeddings
    src, tgt = ids(SV), ids(TV, t=8, seed=2)
    changed = tgt.clone()
    changed[:, 5] = (changed[:, 5] + 1 - 4) % (TV - 4) + 4
    a, b = m(src, tgt).logits, m(src, changed).logits
    assert torch.allclose(a[:, :5], b[:, :5], atol=1e-6)  # positions before 5 cannot see token 5
    assert not torch.allclose(a[:, 5:], b[:, 5:], atol=1e-4)


@pytest.mark.parametrize("arch", ["base", "p"])
def test_source_padding_does_not_change_outputs(arch):
    m = model(architecture=arch)
    src, tgt = ids(SV, t=6), ids(TV, t=5, seed=2)
    padded = torch.cat([src, torch.full((2, 4), PAD)], dim=1)
    mask = (padded != PAD).long()
    assert torch.allclose(m(src, tgt).logits, m(padded, tgt, src_mask=mask).logits, atol=1e-5)
    # without an explicit mask the pad id is found automatically
    assert torch.allclose(m(src, tgt).logits, m(padded, tgt).logits, atol=1e-5)
    # and the source does matter
    assert not torch.allclose(m(src, tgt).logits, m(src.flip(1), tgt).logits, atol=1e-4)


def test_target_padding_does_not_change_real_positions():
    m = model(architecture="p")
    src, tgt = ids(SV), ids(TV, t=5, seed=2)
    padded = torch.cat([tgt, torch.full((2, 3), PAD)], dim=1)
    mask = (padded != PAD).long()
    assert torch.allclose(m(src, tgt).logits, m(src, padded, tgt_mask=mask).logits[:, :5], atol=1e-5)


def test_p_differs_from_base_with_the_same_weights():
    base, p = model(architecture="base"), model(architecture="p")
    p.load_state_dict(base.state_dict())
    src, tgt = ids(SV), ids(TV, t=5, seed=2)
    assert not torch.allclose(base(src, tgt).logits, p(src, tgt).logits, atol=1e-4)


def test_cross_attention_reads_encoder_layer_i_in_p():
    m = model(architecture="p")
    states = m.encode(ids(SV))
    assert len(states) == 3
    assert all(m.memory_for_layer(states, i) is states[i] for i in range(3))
    b = model(architecture="base")
    assert all(b.memory_for_layer(states, i) is states[-1] for i in range(3))


def test_layer_teacher_forcing_ratio_0_and_1():
    p = model(architecture="p")
    tf0, tf1 = model(architecture="p", layer_teacher_forcing=0.0), model(architecture="p", layer_teacher_forcing=1.0)
    for m in (tf0, tf1):
        m.load_state_dict(p.state_dict())
    src, tgt = ids(SV), ids(TV, t=5, seed=2)
    for m in (p, tf0, tf1):
        m.train()  # dropout is 0, so train mode is deterministic
    assert torch.equal(p(src, tgt).logits, tf0(src, tgt).logits)
    assert not torch.allclose(p(src, tgt).logits, tf1(src, tgt).logits, atol=1e-4)
    p.eval(), tf1.eval()  # never in eval mode
    assert torch.equal(p(src, tgt).logits, tf1(src, tgt).logits)


def test_layer_teacher_forcing_ratio_1_feeds_the_embeddings_to_every_layer():
    m = model(architecture="p", layer_teacher_forcing=1.0).train()
    src, tgt = ids(SV), ids(TV, t=5, seed=2)
    seen = []
    hooks = [layer.register_forward_pre_hook(lambda mod, args: seen.append(args[0])) for layer in m.decoder_layers]
    m(src, tgt)
    for h in hooks:
        h.remove()
    embedded = m.tgt_embed(tgt)
    assert all(torch.equal(x, embedded) for x in seen)


@pytest.mark.parametrize("variant", VARIANTS, ids=str)
def test_every_variant_builds_with_equal_layer_counts_and_learns_a_copy_task(variant):
    torch.manual_seed(0)
    m = Seq2SeqTransformer(cfg(n_layers=2, **variant)).train()
    assert len(m.encoder_layers) == len(m.decoder_layers) == 2
    opt = torch.optim.AdamW(m.parameters(), lr=5e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(60):
        y = torch.randint(4, 12, (16, 6), generator=g)  # copy: target = source
        tgt_in = torch.cat([torch.full((16, 1), BOS), y], dim=1)
        labels = torch.cat([y, torch.full((16, 1), EOS)], dim=1)
        loss = m(y, tgt_in, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5


class CountingHead(torch.nn.Module):
    """Generator stand-in: row r emits token 5 until call ``stops[r]``, then EOS."""

    def __init__(self, stops):
        super().__init__()
        self.stops, self.calls = stops, 0

    def forward(self, h):
        logits = torch.zeros(*h.shape[:-1], TV)
        for r, stop in enumerate(self.stops):
            logits[r, ..., EOS if self.calls == stop else 5] = 1.0
        self.calls += 1
        return logits


def test_greedy_decode_stops_at_eos_per_row():
    m = model()
    m.generator = CountingHead([2, 4])
    out = m.greedy_decode(ids(SV), max_len=10)
    assert out == [[5, 5], [5, 5, 5, 5]]  # EOS itself is dropped
    assert m.generator.calls == 5  # stopped as soon as every row had finished


def test_greedy_decode_respects_max_len_and_train_mode():
    m = model()
    m.generator = CountingHead([100, 100])
    m.train()
    out = m.greedy_decode(ids(SV), max_len=6)
    assert [len(r) for r in out] == [6, 6] and m.training
    with pytest.raises(ValueError, match="max_len"):
        m.greedy_decode(ids(SV), max_len=0)


def test_cross_attention_masks_memory_padding():
    torch.manual_seed(0)
    attn = MultiHeadCrossAttention(16, 2)
    x, mem = torch.randn(1, 3, 16), torch.randn(1, 4, 16)
    noisy = torch.cat([mem, 100 * torch.randn(1, 2, 16)], dim=1)
    mask = torch.tensor([[1, 1, 1, 1, 0, 0]])
    assert torch.allclose(attn(x, mem), attn(x, noisy, mask), atol=1e-6)


def test_too_long_inputs_are_refused():
    m = model()
    with pytest.raises(ValueError, match="max_len"):
        m(ids(SV, t=17), ids(TV))


@pytest.mark.parametrize("variant", VARIANTS, ids=str)
def test_greedy_decode_agrees_with_a_teacher_forced_forward_pass(variant):
    m = model(**variant).train()  # greedy decoding switches to eval mode itself (no dropout, no layer forcing)
    src = ids(SV, b=3)
    out = m.greedy_decode(src, max_len=6)
    m.eval()
    for row, tokens in enumerate(out):
        prefix = torch.tensor([[BOS] + tokens])
        logits = m(src[row:row + 1], prefix).logits[0]
        expected = tokens + [EOS] if len(tokens) < 6 else tokens
        assert logits.argmax(-1)[: len(expected)].tolist() == expected
