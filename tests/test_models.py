"""Fast behavioural tests for the from-scratch GPT and encoder models."""

import pytest
import torch
import torch.nn.functional as F

from course_lib.models import (
    GPT,
    Encoder,
    EncoderConfig,
    EncoderForMaskedLM,
    EncoderForSequenceClassification,
    GPTConfig,
    ModelOutput,
    MultiHeadSelfAttention,
)

V, T = 50, 12


def tiny_gpt(**kw) -> GPT:
    torch.manual_seed(0)
    cfg = dict(vocab_size=V, max_len=16, d_model=32, n_layers=2, n_heads=4, d_ff=64, dropout=0.0)
    cfg.update(kw)
    return GPT(GPTConfig(**cfg)).eval()


def tiny_encoder_cfg(**kw) -> EncoderConfig:
    cfg = dict(vocab_size=V, max_len=16, d_model=32, n_layers=2, n_heads=4, d_ff=64, dropout=0.0)
    cfg.update(kw)
    return EncoderConfig(**cfg)


def rand_ids(b: int = 2, t: int = T, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, V, (b, t), generator=g)  # never the pad id 0


# ---------------------------------------------------------------- shapes

def test_output_shapes():
    ids = rand_ids()
    out = tiny_gpt()(ids)
    assert isinstance(out, ModelOutput) and out.loss is None
    assert out.logits.shape == (2, T, V) and out.hidden_states.shape == (2, T, 32)

    cfg = tiny_encoder_cfg()
    torch.manual_seed(0)
    assert Encoder(cfg)(ids).shape == (2, T, 32)
    mlm = EncoderForMaskedLM(cfg)(ids)
    assert mlm.logits.shape == (2, T, V)
    clf = EncoderForSequenceClassification(cfg, num_labels=3)(ids, labels=torch.tensor([0, 2]))
    assert clf.logits.shape == (2, 3) and clf.loss.ndim == 0


# ---------------------------------------------------------------- masking

def test_gpt_is_causal_encoder_is_not():
    ids = rand_ids()
    changed = ids.clone()
    changed[:, 8] = (changed[:, 8] % (V - 1)) + 1  # a different non-pad token at position 8
    assert not torch.equal(ids, changed)

    gpt = tiny_gpt()
    a, b = gpt(ids).logits, gpt(changed).logits
    torch.testing.assert_close(a[:, :8], b[:, :8])  # the past never sees the future
    assert not torch.allclose(a[:, 8:], b[:, 8:])

    torch.manual_seed(0)
    enc = Encoder(tiny_encoder_cfg()).eval()
    ha, hb = enc(ids), enc(changed)
    assert not torch.allclose(ha[:, :8], hb[:, :8])  # bidirectional: earlier positions do change


def test_encoder_padding_is_invisible():
    torch.manual_seed(0)
    enc = Encoder(tiny_encoder_cfg()).eval()
    ids = rand_ids(t=8)
    padded = torch.cat([ids, torch.zeros(2, 4, dtype=torch.long)], dim=1)
    mask = torch.cat([torch.ones(2, 8), torch.zeros(2, 4)], dim=1).long()
    torch.testing.assert_close(enc(padded, mask)[:, :8], enc(ids)[:, :8], atol=1e-5, rtol=1e-5)
    # Without an explicit mask, padding is derived from pad_token_id = 0.
    torch.testing.assert_close(enc(padded)[:, :8], enc(ids)[:, :8], atol=1e-5, rtol=1e-5)
    # Sanity: if the pads were visible the outputs would differ.
    assert not torch.allclose(enc(padded, torch.ones_like(mask))[:, :8], enc(ids), atol=1e-5)


# ---------------------------------------------------------------- losses

def test_gpt_loss_matches_manual_shifted_cross_entropy():
    gpt = tiny_gpt()
    ids = rand_ids()
    labels = ids.clone()
    labels[0, 5:] = -100
    out = gpt(ids, labels=labels)
    manual = F.cross_entropy(out.logits[:, :-1].reshape(-1, V), labels[:, 1:].reshape(-1), ignore_index=-100)
    torch.testing.assert_close(out.loss, manual)
    # And an explicit, loop-based version of the same thing.
    terms = [F.cross_entropy(out.logits[b, t][None], labels[b, t + 1][None])
             for b in range(2) for t in range(T - 1) if labels[b, t + 1] != -100]
    torch.testing.assert_close(out.loss, torch.stack(terms).mean())


def test_mlm_loss_ignores_minus_100():
    torch.manual_seed(0)
    model = EncoderForMaskedLM(tiny_encoder_cfg()).eval()
    ids = rand_ids()
    labels = torch.full_like(ids, -100)
    labels[0, 3], labels[1, 7], labels[1, 0] = 11, 22, 33
    out = model(ids, labels=labels)
    picks = [(0, 3), (1, 7), (1, 0)]
    manual = torch.stack([F.cross_entropy(out.logits[b, t][None], labels[b, t][None]) for b, t in picks]).mean()
    torch.testing.assert_close(out.loss, manual)
    # Changing an ignored label does not change the loss.
    labels2 = labels.clone()
    labels2[0, 0] = -100
    torch.testing.assert_close(model(ids, labels=labels2).loss, out.loss)


# ---------------------------------------------------------------- generation

def test_gpt_overfits_one_sequence_and_generates_it():
    gpt = tiny_gpt().train()
    seq = torch.tensor([[1, 7, 3, 9, 4, 12, 5, 30, 2]])
    opt = torch.optim.Adam(gpt.parameters(), lr=3e-3)
    for _ in range(100):
        loss = gpt(seq, labels=seq).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1
    gpt.eval()
    out = gpt.generate(seq[:, :1], max_new_tokens=seq.size(1) - 1)
    assert torch.equal(out, seq)


def test_generate_greedy_deterministic_and_top_k_1():
    gpt = tiny_gpt()
    prompt = rand_ids(t=4)
    a = gpt.generate(prompt, max_new_tokens=6)
    b = gpt.generate(prompt, max_new_tokens=6, temperature=0.0)
    assert a.shape == (2, 10) and torch.equal(a, b) and torch.equal(a[:, :4], prompt)
    g = torch.Generator().manual_seed(123)
    sampled = gpt.generate(prompt, max_new_tokens=6, temperature=1.5, top_k=1, generator=g)
    assert torch.equal(sampled, a)


def test_generate_crops_context_to_max_len():
    gpt = tiny_gpt()
    out = gpt.generate(rand_ids(t=14), max_new_tokens=5)  # 19 > max_len=16 total tokens
    assert out.shape == (2, 19)


def test_generate_stops_at_eos():
    gpt = tiny_gpt()
    prompt = rand_ids(b=1, t=3)
    greedy = gpt.generate(prompt, max_new_tokens=8)
    eos = int(greedy[0, 5])  # pretend the 3rd generated token is EOS
    first = int((greedy[0, 3:] == eos).nonzero()[0])  # its first appearance among new tokens
    out = gpt.generate(prompt, max_new_tokens=8, eos_token_id=eos)
    assert out.size(1) == 3 + first + 1 and int(out[0, -1]) == eos
    assert torch.equal(out, greedy[:, : out.size(1)])


# ---------------------------------------------------------------- structure

def test_weight_tying():
    gpt = tiny_gpt()
    assert gpt.lm_head.weight is gpt.tok_embed.weight
    mlm = EncoderForMaskedLM(tiny_encoder_cfg())
    assert mlm.mlm_head.decoder.weight is mlm.encoder.embeddings.tok_embed.weight
    assert mlm.mlm_head.decoder.bias is not None


def test_named_modules_for_peft_targets():
    gpt_names = dict(tiny_gpt().named_modules())
    enc_names = dict(EncoderForSequenceClassification(tiny_encoder_cfg(), 2).named_modules())
    for name in ["q_proj", "k_proj", "v_proj", "o_proj"]:
        assert isinstance(gpt_names[f"layers.0.attn.{name}"], torch.nn.Linear)
        assert isinstance(enc_names[f"encoder.layers.0.attn.{name}"], torch.nn.Linear)
    for name in ["attn_norm", "mlp_norm", "mlp.fc1", "mlp.fc2"]:
        assert f"layers.1.{name}" in gpt_names and f"encoder.layers.1.{name}" in enc_names
    assert "classifier.dense" in enc_names and "classifier.out_proj" in enc_names


def test_classifier_reuses_given_encoder():
    cfg = tiny_encoder_cfg()
    enc = Encoder(cfg)
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    clf = EncoderForSequenceClassification(cfg, num_labels=2, encoder=enc)
    assert clf.encoder is enc and clf.num_labels == 2
    enc_params = {id(p) for p in enc.parameters()}
    assert enc_params <= {id(p) for p in clf.parameters()}
    for k, v in enc.state_dict().items():  # not re-initialised
        assert torch.equal(v, before[k])


# ---------------------------------------------------------------- validation

def test_bad_configs_raise_clear_errors():
    with pytest.raises(ValueError, match=r"divisible by n_heads.*allowed n_heads.*\[1, 2, 3, 5, 6, 10, 15, 30\]"):
        GPTConfig(vocab_size=V, d_model=30, n_heads=4)
    with pytest.raises(ValueError, match="divisible by n_heads"):
        EncoderConfig(vocab_size=V, d_model=30, n_heads=4)
    with pytest.raises(ValueError, match="divisible by n_heads"):
        MultiHeadSelfAttention(30, 4)
    with pytest.raises(ValueError, match="positive integer"):
        GPTConfig(vocab_size=0)
    with pytest.raises(ValueError, match=r"exceeds max_len=16.*1\.\.16"):
        tiny_gpt()(rand_ids(t=17))
    with pytest.raises(ValueError, match=r"exceeds max_len=16.*1\.\.16"):
        Encoder(tiny_encoder_cfg())(rand_ids(t=17))
    with pytest.raises(ValueError, match=r"num_labels must be an integer >= 2"):
        EncoderForSequenceClassification(tiny_encoder_cfg(), num_labels=1)
    with pytest.raises(ValueError, match=r"temperature must be >= 0"):
        tiny_gpt().generate(rand_ids(t=2), 3, temperature=-1.0)
    with pytest.raises(ValueError, match=r"top_k must be None or an integer >= 1"):
        tiny_gpt().generate(rand_ids(t=2), 3, temperature=1.0, top_k=0)
    with pytest.raises(ValueError, match="allowed keys"):
        GPTConfig.from_dict({"vocab_size": V, "d_modle": 32})


def test_config_round_trip():
    g = GPTConfig(vocab_size=V, d_model=64, n_heads=8, eos_token_id=3)
    assert GPTConfig.from_dict(g.to_dict()) == g
    e = tiny_encoder_cfg(layer_norm_eps=1e-5)
    assert EncoderConfig.from_dict(e.to_dict()) == e
    assert e.to_dict()["layer_norm_eps"] == 1e-5
