"""Prompt tuning and prefix tuning: exact no-ops at size 0, masks, training scope, folding, HF models, save/load."""

import copy

import pytest
import torch
import torch.nn.functional as F

from course_lib.models import EncoderConfig, EncoderForMaskedLM
from course_lib.params import count_parameters
from course_lib.peft import (PrefixEncoder, PromptTuningModel, add_prefix_tuning, add_prompt_tuning,
                                     load_prompt, prefix_param_count, prompt_param_count, remove_prefix_tuning,
                                     save_prompt, mark_prefix_trainable, mark_prompt_trainable)

from tiny_models import ids, tiny_bert, tiny_classifier, tiny_gpt, train_steps


def tiny_mlm(seed=0):
    torch.manual_seed(seed)
    return EncoderForMaskedLM(EncoderConfig(vocab_size=120, max_len=32, d_model=32, n_layers=2, n_heads=2,
                                            d_ff=64)).eval()


def tiny_gpt2(seed=0):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    return GPT2LMHeadModel(GPT2Config(vocab_size=50, n_positions=32, n_embd=16, n_layer=2, n_head=2,
                                      bos_token_id=0, eos_token_id=0)).eval()


def padded_pair(long_len=10, short_len=5):
    """A padded batch (long row, short row + padding), its mask, and the short row alone."""
    x = ids()[:2, :long_len].clone()
    x[1, short_len:] = 0  # pad_token_id of the course models
    mask = (x != 0).long()
    return x, mask, x[1:, :short_len]


@torch.no_grad()
def test_param_counts():
    assert prompt_param_count(20, 768) == 15_360
    assert prefix_param_count(12, 10, 768) == 2 * 12 * 10 * 768
    assert prefix_param_count(2, 3, 32, hidden=16) == 3 * 32 + (32 * 16 + 16) + (16 * 128 + 128)
    assert count_parameters(PrefixEncoder(2, 3, 32, hidden=16)).total == prefix_param_count(2, 3, 32, hidden=16)
    assert count_parameters(PrefixEncoder(2, 3, 32, reparametrize=False)).total == prefix_param_count(2, 3, 32)


def test_a_size_of_zero_is_an_error_not_a_silent_no_op():
    for bad in (0, -1, True, 2.0, "4"):
        with pytest.raises(ValueError, match="n_virtual_tokens must be an integer >= 1"):
            add_prompt_tuning(tiny_gpt(), bad)
        with pytest.raises(ValueError, match="n_prefix must be an integer >= 1"):
            add_prefix_tuning(tiny_classifier(), bad)


@torch.no_grad()
def test_inputs_embeds_equals_input_ids():
    x = ids()
    gpt = tiny_gpt()
    a, b = gpt(x, labels=x), gpt(inputs_embeds=gpt.tok_embed(x), labels=x)
    assert torch.equal(a.logits, b.logits) and torch.equal(a.loss, b.loss)
    clf = tiny_classifier()
    embeds = clf.encoder.embeddings.tok_embed(x)
    assert torch.equal(clf(x).logits, clf(inputs_embeds=embeds).logits)  # no padding in x: mask of ones
    x_pad, mask, _ = padded_pair()
    embeds = clf.encoder.embeddings.tok_embed(x_pad)
    assert torch.equal(clf(x_pad).logits, clf(inputs_embeds=embeds, attention_mask=mask).logits)
    with pytest.raises(ValueError, match="exactly one of input_ids"):
        gpt(x, inputs_embeds=gpt.tok_embed(x))
    with pytest.raises(ValueError, match="exactly one of input_ids"):
        clf()
    with pytest.raises(ValueError, match=r"d_model=32"):
        clf(inputs_embeds=torch.zeros(2, 5, 7))


@torch.no_grad()
def test_init_modes(small_tokenizer):
    model = tiny_classifier()
    table = model.encoder.embeddings.tok_embed.weight
    rand = add_prompt_tuning(model, 200).prompt
    assert rand.shape == (200, 32) and abs(float(rand.std()) / float(table.std()) - 1) < 0.15
    vocab = add_prompt_tuning(model, 6, init="vocab", seed=1)
    assert len(set(vocab.init_token_ids)) == 6 and 0 not in vocab.init_token_ids  # pad is never sampled
    assert torch.equal(vocab.prompt, table[vocab.init_token_ids])
    text = "the soup was superb"
    text_ids = small_tokenizer(text, add_special_tokens=False)["input_ids"]
    for n in (2, len(text_ids) + 3):  # cut, or repeated
        wrapper = add_prompt_tuning(model, n, init="text", tokenizer=small_tokenizer, init_text=text)
        expected = (text_ids * 3)[:n]
        assert wrapper.init_token_ids == expected and torch.equal(wrapper.prompt, table[expected])


def test_prompt_training_moves_only_prompt_and_head(data):
    wrapper = add_prompt_tuning(tiny_classifier(n_layers=2), 4)
    names = mark_prompt_trainable(wrapper)
    assert names[0] == "prompt" and all(n.startswith("model.classifier.") for n in names[1:]) and len(names) > 1
    head = sum(p.numel() for p in wrapper.model.classifier.parameters())
    assert count_parameters(wrapper).trainable == prompt_param_count(4, 32) + head
    before = copy.deepcopy(wrapper.state_dict())
    train_steps(wrapper, data)
    changed = {n for n, t in wrapper.state_dict().items() if not torch.equal(t, before[n])}
    assert changed == set(names)


def test_prefix_training_moves_only_prefix_and_head(data):
    model = tiny_classifier(n_layers=2)
    add_prefix_tuning(model, 3, hidden=16)
    names = mark_prefix_trainable(model)
    assert {n for n in names if not n.startswith("classifier.")} == {
        "prefix_encoder.embedding", "prefix_encoder.transform.0.weight", "prefix_encoder.transform.0.bias",
        "prefix_encoder.transform.2.weight", "prefix_encoder.transform.2.bias"}
    before = copy.deepcopy(model.state_dict())
    train_steps(model, data)
    changed = {n for n, t in model.state_dict().items() if not torch.equal(t, before[n])}
    assert changed == set(names)


def test_lm_training_prompt_and_prefix_gpt():
    x = ids()
    for method in ("prompt", "prefix"):
        model = tiny_gpt()
        if method == "prompt":
            model = add_prompt_tuning(model, 4)
            names = mark_prompt_trainable(model)  # no classifier head: only the prompt
            assert names == ["prompt"]
        else:
            add_prefix_tuning(model, 2, reparametrize=False)
            names = mark_prefix_trainable(model)
            assert names == ["prefix_encoder.prefix"]
        before = copy.deepcopy(model.state_dict())
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
        model.train()
        for _ in range(3):
            opt.zero_grad()
            model(x, labels=x).loss.backward()
            opt.step()
        changed = {n for n, t in model.state_dict().items() if not torch.equal(t, before[n])}
        assert changed == set(names)


@torch.no_grad()
def test_encoder_padding_is_masked_with_prompt_and_prefix():
    x, mask, short = padded_pair()
    n = 3
    wrapper = add_prompt_tuning(tiny_classifier(), n)
    batch, alone = wrapper(x, attention_mask=mask), wrapper(short)
    torch.testing.assert_close(batch.hidden_states[1, :n + 5], alone.hidden_states[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(batch.logits[1], alone.logits[0], atol=1e-5, rtol=0)  # read at virtual token 0
    model = tiny_classifier()
    add_prefix_tuning(model, n)
    batch, alone = model(x, attention_mask=mask), model(short)
    torch.testing.assert_close(batch.hidden_states[1, :5], alone.hidden_states[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(batch.logits[1], alone.logits[0], atol=1e-5, rtol=0)


@torch.no_grad()
def test_gpt_prefix_is_causal_and_visible_everywhere():
    model = tiny_gpt()
    encoder = add_prefix_tuning(model, 2, reparametrize=False)
    x = ids()
    later = x.clone()
    later[:, 6] = (later[:, 6] + 1) % 120
    a, b = model(x).logits, model(later).logits
    assert torch.equal(a[:, :6], b[:, :6]) and not torch.allclose(a[:, 6:], b[:, 6:])
    encoder.prefix.add_(torch.randn(encoder.prefix.shape, generator=torch.Generator().manual_seed(0)))
    assert not torch.allclose(model(x).logits[:, 0], a[:, 0], atol=1e-4)  # even position 0 sees the prefix


@torch.no_grad()
def test_prefix_fold_state_dict_copy_and_remove():
    model = tiny_gpt()
    base_keys, base = list(model.state_dict()), model(ids()).logits
    encoder = add_prefix_tuning(model, 3, hidden=24)
    params = [p for _, p in model.named_parameters(remove_duplicate=False) if _.startswith("prefix_encoder.")]
    assert sum(p.numel() for p in params) == prefix_param_count(2, 3, 32, hidden=24)
    assert all(k.startswith("prefix_encoder.") for k in set(model.state_dict()) - set(base_keys))
    out = model(ids()).logits
    assert not torch.allclose(out, base, atol=1e-5)
    twin = copy.deepcopy(model)
    assert twin.layers[1].attn.prefix.encoder is twin.prefix_encoder  # the copy points at its own encoder
    mark_prefix_trainable(model)
    encoder.fold_reparametrization()
    assert torch.equal(model(ids()).logits, out)
    assert count_parameters(model).trainable == prefix_param_count(2, 3, 32) == encoder.prefix.numel()
    fresh = tiny_gpt()
    add_prefix_tuning(fresh, 3, reparametrize=False, seed=5)
    fresh.load_state_dict(model.state_dict())
    assert torch.equal(fresh(ids()).logits, out)
    remove_prefix_tuning(model)
    assert list(model.state_dict()) == base_keys and torch.equal(model(ids()).logits, base)
    assert all(layer.attn.prefix is None and "prefix" not in layer.attn._modules for layer in model.layers)


@torch.no_grad()
def test_lm_labels_get_minus_100_for_virtual_tokens():
    n = 3
    for make, vocab in ((tiny_gpt, 120), (tiny_gpt2, 50)):
        wrapper = add_prompt_tuning(make(), n)
        x = ids(vocab)
        out = wrapper(x, labels=x)
        assert out.logits.shape == (3, n + 10, vocab) and wrapper.strip_virtual(out.logits).shape == (3, 10, vocab)
        # Causal LMs shift inside: the last virtual position predicts the first real token (as peft).
        hand = F.cross_entropy(out.logits[:, n - 1:-1].reshape(-1, vocab), x.reshape(-1))
        torch.testing.assert_close(out.loss, hand)
        labels = x.clone()
        labels[:, 0] = -100
        stripped = wrapper.strip_virtual(wrapper(x, labels=labels).logits)
        hand = F.cross_entropy(stripped[:, :-1].reshape(-1, vocab), labels[:, 1:].reshape(-1), ignore_index=-100)
        torch.testing.assert_close(wrapper(x, labels=labels).loss, hand)
    wrapper = add_prompt_tuning(tiny_mlm(), n)  # masked LM: no shift
    x, labels = ids(), torch.full((3, 10), -100)
    labels[:, 2] = x[:, 2]
    out = wrapper(x, labels=labels)
    torch.testing.assert_close(out.loss, F.cross_entropy(wrapper.strip_virtual(out.logits).reshape(-1, 120),
                                                         labels.reshape(-1), ignore_index=-100))
    gpt = add_prompt_tuning(tiny_gpt(), n)  # generation keeps the soft prompt in front
    new = gpt.generate(x[:, :4], 2)
    assert new.shape == (3, 6) and torch.equal(new[:, 4], gpt.strip_virtual(gpt(x[:, :4]).logits)[:, -1].argmax(-1))


@torch.no_grad()
def test_hf_bert_classifier_and_gpt2_peft_interop(tmp_path):
    bert = add_prompt_tuning(tiny_bert(), 4)
    x, y = ids(vocab=50), torch.tensor([0, 1, 1])
    out = bert(x, labels=y, token_type_ids=torch.zeros_like(x))
    assert out.logits.shape == (3, 2) and torch.allclose(out.loss, F.cross_entropy(out.logits, y))
    assert mark_prompt_trainable(bert) == ["prompt", "model.classifier.weight", "model.classifier.bias"]
    gpt2 = add_prompt_tuning(tiny_gpt2(), 5, init="vocab")
    save_prompt(gpt2, tmp_path)
    from peft import PeftModel

    peft_model = PeftModel.from_pretrained(tiny_gpt2(), tmp_path).eval()
    mask = torch.ones_like(x)
    torch.testing.assert_close(peft_model(input_ids=x, attention_mask=mask).logits, gpt2(x, mask).logits,
                               atol=1e-6, rtol=0)


@torch.no_grad()
def test_save_load_round_trip(tmp_path):
    wrapper = add_prompt_tuning(tiny_classifier(), 4)
    torch.nn.init.normal_(wrapper.model.classifier.out_proj.weight)  # a "trained" head
    save_prompt(wrapper, tmp_path / "prompt", head_patterns=[r"^classifier\."])
    other = add_prompt_tuning(tiny_classifier(), 4, seed=9)
    assert load_prompt(other, tmp_path / "prompt") is other
    assert torch.equal(other(ids()).logits, wrapper(ids()).logits)
    with pytest.raises(ValueError, match="n_virtual_tokens=4"):
        load_prompt(add_prompt_tuning(tiny_classifier(), 5), tmp_path / "prompt")

    model = tiny_gpt()
    add_prefix_tuning(model, 3)  # reparametrised: the saved prefixes are the MLP's output
    save_prompt(model, tmp_path / "prefix")
    fresh = tiny_gpt()
    add_prefix_tuning(fresh, 3, seed=4)
    load_prompt(fresh, tmp_path / "prefix")
    assert not fresh.prefix_encoder.reparametrized
    assert torch.allclose(fresh(ids()).logits, model(ids()).logits, atol=1e-6, rtol=0)
    short = tiny_gpt()
    add_prefix_tuning(short, 2)
    with pytest.raises(ValueError, match=r"add_prefix_tuning\(model, n_prefix=3\)"):
        load_prompt(short, tmp_path / "prefix")
    with pytest.raises(ValueError, match="not PREFIX_TUNING"):
        load_prompt(short, tmp_path / "prompt")
    with pytest.raises(TypeError, match="add_prompt_tuning"):
        load_prompt(tiny_gpt(), tmp_path / "prefix")


def test_helpful_errors():
    model = tiny_classifier()
    with pytest.raises(ValueError, match=">= 1"):
        add_prompt_tuning(model, -1)
    with pytest.raises(ValueError, match=r"\['random', 'vocab', 'text'\]"):
        add_prompt_tuning(model, 2, init="zeros")
    with pytest.raises(ValueError, match="needs both tokenizer"):
        add_prompt_tuning(model, 2, init="text", init_text="hello")
    with pytest.raises(ValueError, match=">= 1"):
        add_prefix_tuning(model, -2)
    with pytest.raises(TypeError, match="GPT2LMHeadModel has neither"):
        add_prefix_tuning(tiny_gpt2(), 2)
    with pytest.raises(ValueError, match="prompt tuning uses 4 of the 32 positions"):
        add_prompt_tuning(model, 4)(torch.ones(1, 30, dtype=torch.long))
    with pytest.raises(TypeError, match="add_prompt_tuning"):
        mark_prompt_trainable(model)
    with pytest.raises(ValueError, match="add_prefix_tuning"):
        mark_prefix_trainable(model)
    add_prefix_tuning(model, 2)
    with pytest.raises(ValueError, match="already has prefix tuning"):
        add_prefix_tuning(model, 2)
    with pytest.raises(ValueError, match="already has prompt tuning"):
        PromptTuningModel(add_prompt_tuning(tiny_gpt(), 2), 2)


@torch.no_grad()
def test_prompted_generate_equals_a_naive_loop_past_the_context_limit():
    gpt = add_prompt_tuning(tiny_gpt(), 4).eval()  # 32 positions, 4 of them hold the prompt
    x = torch.randint(1, 120, (2, 26), generator=torch.Generator().manual_seed(5))
    expected = x
    for _ in range(6):  # crosses max_input_len = 28: only the last 28 real tokens fit beside the prompt
        context = expected[:, -gpt.max_input_len:]
        next_token = gpt.strip_virtual(gpt(context).logits)[:, -1].argmax(-1)
        expected = torch.cat([expected, next_token[:, None]], dim=1)
    assert torch.equal(gpt.generate(x, 6), expected)


def tiny_bert_encoder(seed=0):
    """A headless Hugging Face BertModel (no labels argument in its forward)."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    return BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                intermediate_size=32)).eval()


@torch.no_grad()
def test_headless_hf_encoder_prompt_runs_and_round_trips_with_peft(tmp_path):
    import json

    from peft import PeftModel

    wrapper = add_prompt_tuning(tiny_bert_encoder(), 4, init="vocab")
    x = ids(vocab=50)
    mask = torch.ones_like(x)
    hidden = wrapper(x, mask).last_hidden_state  # no labels argument reaches BertModel
    assert hidden.shape == (3, 4 + 10, 16)
    save_prompt(wrapper, tmp_path)
    assert json.loads((tmp_path / "adapter_config.json").read_text())["task_type"] == "FEATURE_EXTRACTION"
    peft_model = PeftModel.from_pretrained(tiny_bert_encoder(), tmp_path).eval()
    assert type(peft_model).__name__ == "PeftModelForFeatureExtraction"  # a plain PeftModel would skip the prompt
    torch.testing.assert_close(peft_model(input_ids=x, attention_mask=mask).last_hidden_state, hidden,
                               atol=1e-6, rtol=0)


@torch.no_grad()
def test_seq_cls_prompt_and_its_head_move_both_ways_with_peft(tmp_path):
    from peft import PeftModel, PromptTuningConfig, get_peft_model
    from safetensors.torch import load_file

    x, mask = ids(vocab=50), torch.ones(3, 10, dtype=torch.long)
    ours = add_prompt_tuning(tiny_bert(), 4, init="vocab")
    torch.nn.init.normal_(ours.model.classifier.weight)  # a "trained" head, unlike the fresh one of tiny_bert()
    save_prompt(ours, tmp_path / "ours")
    saved = load_file(str(tmp_path / "ours" / "adapter_model.safetensors"))
    assert sorted(saved) == ["base_model.classifier.bias", "base_model.classifier.weight", "prompt_embeddings"]
    theirs = PeftModel.from_pretrained(tiny_bert(), tmp_path / "ours").eval()
    torch.testing.assert_close(theirs(input_ids=x, attention_mask=mask).logits, ours(x, mask).logits,
                               atol=1e-6, rtol=0)

    peft_model = get_peft_model(tiny_bert(), PromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=4))
    for name, param in peft_model.named_parameters():
        if param.requires_grad:  # the prompt and peft's trainable copy of the head
            param.normal_(0, 0.5)
    peft_model.eval().save_pretrained(tmp_path / "theirs")
    loaded = load_prompt(add_prompt_tuning(tiny_bert(), 4, seed=3), tmp_path / "theirs")
    torch.testing.assert_close(loaded(x, mask).logits, peft_model(input_ids=x, attention_mask=mask).logits,
                               atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="does not fit this model"):
        load_prompt(add_prompt_tuning(tiny_bert_encoder(), 4), tmp_path / "theirs")



@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
def test_prefix_on_hf_bert_equals_attending_to_real_tokens(attn_implementation):
    """A prefix set to the keys/values of real tokens gives what BERT computes when those tokens are in the input.

    In a one-layer BERT the real tokens' outputs depend on the extra tokens only through their keys and values, so
    prepending the tokens (the real tokens keep their position ids) is a reference computed by HF's own attention.
    """
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=60, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=32, attn_implementation=attn_implementation)
    bert = BertModel(config, add_pooling_layer=False).eval()
    x = torch.randint(1, 60, (2, 7))
    extra = torch.randint(1, 60, (1, 3)).expand(2, -1)          # the same three extra tokens in both rows
    mask = torch.ones(2, 7, dtype=torch.long)
    mask[1, 5:] = 0
    positions, extra_positions = torch.arange(7).expand(2, -1), torch.arange(20, 23).expand(2, -1)
    with torch.no_grad():
        reference = bert(input_ids=torch.cat([extra, x], 1), position_ids=torch.cat([extra_positions, positions], 1),
                         attention_mask=torch.cat([torch.ones(2, 3, dtype=torch.long), mask], 1))
        reference = reference.last_hidden_state[:, 3:]
        h = bert.embeddings(input_ids=extra[:1], position_ids=extra_positions[:1])[0]
        attn = bert.encoder.layer[0].attention.self
        kv = torch.stack([attn.key(h), attn.value(h)])           # [2, n, d]: keys and values of the extra tokens
        encoder = add_prefix_tuning(bert, 3, reparametrize=False, shift_positions=False)
        encoder.prefix.copy_(kv[None])
        prefixed = bert(input_ids=x, position_ids=positions, attention_mask=mask).last_hidden_state
    real = mask.bool()
    assert torch.allclose(prefixed[real], reference[real], atol=1e-5)
    assert type(bert.encoder.layer[0].attention.self).__name__ == "HFPrefixSelfAttention"
    remove_prefix_tuning(bert)
    assert bert.encoder.layer[0].attention.self is attn



def test_prefix_on_hf_bert_shifts_positions_like_peft():
    """By default the real tokens take positions n..n+T-1 (peft's prefixes are BERT's past tokens); and where the
    installed peft can put prefixes into BERT (transformers 4.x), its logits equal ours for the same prefixes."""
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, num_labels=2)
    base = BertForSequenceClassification(config).eval()
    shifted, plain = copy.deepcopy(base), copy.deepcopy(base)
    prefixes = torch.randn(2, 2, 3, 32) * 0.5
    for model, shift in ((shifted, True), (plain, False)):
        add_prefix_tuning(model, 3, reparametrize=False, shift_positions=shift).prefix.data.copy_(prefixes)
    x = torch.randint(1, 60, (2, 7))
    mask = torch.ones(2, 7, dtype=torch.long)
    mask[1, 5:] = 0
    with torch.no_grad():
        ours = shifted(input_ids=x, attention_mask=mask).logits
        torch.testing.assert_close(ours, plain(input_ids=x, attention_mask=mask,
                                               position_ids=torch.arange(3, 10).expand(2, -1)).logits)
        assert not torch.allclose(ours, plain(input_ids=x, attention_mask=mask).logits)
    remove_prefix_tuning(shifted)
    with torch.no_grad():
        torch.testing.assert_close(shifted(input_ids=x, attention_mask=mask).logits,
                                   base(input_ids=x, attention_mask=mask).logits)
    peft = pytest.importorskip("peft")
    reference = peft.get_peft_model(copy.deepcopy(base), peft.PrefixTuningConfig(task_type="SEQ_CLS",
                                                                                 num_virtual_tokens=3)).eval()
    with torch.no_grad():  # peft's layout: [n, L * 2 * d], ordered (layer, key/value, d)
        reference.prompt_encoder["default"].embedding.weight.copy_(prefixes.permute(2, 0, 1, 3).reshape(3, -1))
        try:
            theirs = reference(input_ids=x, attention_mask=mask).logits
        except Exception as error:  # peft cannot give BERT past_key_values under transformers 5
            pytest.skip(f"this peft/transformers pair cannot prefix-tune BERT: {error}")
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_hf_bert_prefix_files_move_both_ways_with_peft(tmp_path):
    """save_prompt of a prefix-tuned HF classifier loads in peft with the same logits, and peft's save loads back."""
    peft = pytest.importorskip("peft")
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    base = BertForSequenceClassification(BertConfig(vocab_size=60, hidden_size=32, num_hidden_layers=2,
                                                    num_attention_heads=4, intermediate_size=64, num_labels=2)).eval()
    ours = copy.deepcopy(base)
    encoder = add_prefix_tuning(ours, 3, reparametrize=False)
    with torch.no_grad():
        encoder.prefix.normal_(0, 0.5)
        ours.classifier.weight.normal_(0, 0.5)
    x, mask = torch.randint(1, 60, (2, 7)), torch.ones(2, 7, dtype=torch.long)
    save_prompt(ours, tmp_path / "ours", head_patterns=[r"^classifier\."])
    theirs = peft.PeftModel.from_pretrained(copy.deepcopy(base), tmp_path / "ours").eval()
    with torch.no_grad():
        expected = ours(input_ids=x, attention_mask=mask).logits
        try:
            got = theirs(input_ids=x, attention_mask=mask).logits
        except Exception as error:  # peft cannot give BERT past_key_values under transformers 5
            pytest.skip(f"this peft/transformers pair cannot prefix-tune BERT: {error}")
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    theirs.save_pretrained(tmp_path / "theirs")
    back = copy.deepcopy(base)
    add_prefix_tuning(back, 3, reparametrize=False)
    load_prompt(back, tmp_path / "theirs")
    with torch.no_grad():
        torch.testing.assert_close(back(input_ids=x, attention_mask=mask).logits, expected, atol=1e-5, rtol=1e-5)
