import copy

import pytest
import torch

from course_lib.instruct import (COMPACT_TEMPLATE, PaddingCollator, fits, mean_pairwise_cosine, prepare_for_template,
                                 resize_token_embeddings, response_lengths, run_sft, score_instructions, sft_config,
                                 token_counts, tokenize_records)
from course_lib.models import GPT, GPTConfig
from course_lib.profiles import PROFILES, get_profile
from course_lib.train import TrainConfig

from tiny_models import tiny_gpt

RECORDS = [{"instruction": "first item", "input": "soup , cake", "output": "soup", "type": "first", "group": "seen"},
           {"instruction": "copy it", "input": "tom said", "output": "tom said", "type": "copy", "group": "seen"},
           {"instruction": "last item", "input": "pie , stew", "output": "stew", "type": "last",
            "group": "held-out type"}]


def gpt_for(tokenizer, max_len=64, seed=0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=len(tokenizer), max_len=max_len, d_model=32, n_layers=2, n_heads=2, d_ff=64,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)).eval()


def test_resize_keeps_old_rows_and_ties_the_head():
    model = tiny_gpt()
    old = model.tok_embed.weight.detach().clone()
    ids = torch.tensor([[1, 5, 7]])
    before = model(ids).logits
    resize_token_embeddings(model, 123, init_from={120: [1, 2], 121: [3]})
    w = model.tok_embed.weight
    assert w.shape == (123, old.shape[1]) and model.lm_head.weight is w and model.config.vocab_size == 123
    assert torch.equal(w[:120], old)
    assert torch.allclose(w[120], old[[1, 2]].mean(0)) and torch.allclose(w[121], old[3])
    assert torch.allclose(w[122], old.mean(0))
    assert torch.allclose(model(ids).logits[..., :120], before)  # old tokens: same outputs
    with pytest.raises(ValueError, match=">="):
        resize_token_embeddings(model, 50)
    with pytest.raises(ValueError, match="init_from"):
        resize_token_embeddings(model, 130, init_from={5: [1]})


def test_prepare_for_template_adds_distinct_header_rows(small_tokenizer):
    model = gpt_for(small_tokenizer)
    new_model, tok = prepare_for_template(model, small_tokenizer, COMPACT_TEMPLATE)
    assert len(tok) == len(small_tokenizer) + 3 and len(small_tokenizer) + 3 == new_model.config.vocab_size
    assert model.config.vocab_size == len(small_tokenizer)  # the originals are untouched (copies)
    rows = new_model.tok_embed.weight[-3:]
    assert not torch.allclose(rows[0], rows[1]) and not torch.allclose(rows[1], rows[2])
    batch = PaddingCollator(tok.pad_token_id)(tokenize_records(RECORDS, tok, COMPACT_TEMPLATE))
    assert new_model(**batch).loss.isfinite()


def test_fits_and_response_lengths(small_tokenizer):
    tok = copy.deepcopy(small_tokenizer)
    _, tok = prepare_for_template(gpt_for(tok), tok)
    lengths = [len(e["input_ids"]) for e in tokenize_records(RECORDS, tok, COMPACT_TEMPLATE)]
    assert fits(RECORDS, tok, COMPACT_TEMPLATE, max(lengths)) == [True] * 3
    assert fits(RECORDS, tok, COMPACT_TEMPLATE, min(lengths)) == [n == min(lengths) for n in lengths]
    assert response_lengths(RECORDS[:1], tok) == [len(tok("soup", add_special_tokens=False)["input_ids"]) + 1]


def test_token_counts_and_cosine():
    class Whitespace:
        def __call__(self, texts, add_special_tokens=False):
            return {"input_ids": [[len(w) for w in t.split()] for t in texts]}

    assert token_counts(Whitespace(), ["a bb", "cc"]) == {1: 1, 2: 2}
    assert mean_pairwise_cosine(torch.tensor([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0]])) == pytest.approx(1.0)
    assert mean_pairwise_cosine(torch.tensor([[1.0, 0.0], [0.0, 1.0]])) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="n >= 2"):
        mean_pairwise_cosine(torch.ones(1, 3))


def test_run_sft_learns_and_scores(small_tokenizer):
    model, tok = prepare_for_template(gpt_for(small_tokenizer), small_tokenizer)
    examples = tokenize_records(RECORDS, tok, COMPACT_TEMPLATE)
    before = score_instructions(model, tok, RECORDS, COMPACT_TEMPLATE, max_new_tokens=8)
    config = TrainConfig(steps=150, batch_size=3, lr=1e-2, eval_every=50, warmup_ratio=0.0)
    result = run_sft(model, tok, examples, RECORDS, config, eval_examples=examples, max_new_tokens=8,
                     device=torch.device("cpu"), show_progress=False)
    assert result.history.last("val_loss") < result.history.records[0]["val_loss"]
    assert result.scores.by_type["first"] == 1.0 and result.scores.overall > before.overall  # answers and stops
    assert set(result.scores.by_group) == {"seen", "held-out type"} and set(result.scores.by_type) == {"first", "copy", "last"}
    row = result.row()
    assert row["trainable %"] == 100.0 and row["EM all"] == round(result.scores.overall, 3)


def test_score_instructions_checks_prompt_count(small_tokenizer):
    with pytest.raises(ValueError, match="one prompt per record"):
        score_instructions(tiny_gpt(), small_tokenizer, RECORDS, prompts=["a"])


def test_profile_sizes_grow_and_override():
    sizes = [PROFILES[name].sft for name in ("ci", "cpu", "gpu")]
    assert sizes[0].steps < sizes[1].steps < sizes[2].steps
    assert get_profile("cpu", sft={"steps": 10}).sft.steps == 10


def test_sft_config_carries_the_profile_recipe_and_precision():
    gpu = get_profile("gpu", sft={"steps": 50, "batch_size": 8})
    config = sft_config(gpu, lr=2e-3)
    assert (config.steps, config.batch_size, config.lr, config.eval_every) == (50, 8, 2e-3, 5)
    assert config.precision == "bf16" == gpu.precision  # bf16 reaches instruction tuning in the gpu profile
    assert sft_config(get_profile("ci"), lr=1e-3).precision == "fp32"
    short = sft_config(gpu, lr=1e-3, seed=3, steps=7, warmup_ratio=0.1, batch_size=2)
    assert (short.steps, short.eval_every, short.warmup_ratio, short.batch_size, short.seed) == (7, 1, 0.1, 2, 3)
    assert sft_config(gpu, lr=1e-3, steps=30, eval_every=3).eval_every == 3


def test_run_sft_trains_under_the_gpu_profiles_bf16_config(small_tokenizer):
    model, tok = prepare_for_template(gpt_for(small_tokenizer), small_tokenizer)
    config = sft_config(get_profile("gpu", sft={"steps": 2, "batch_size": 3}), lr=1e-3)
    result = run_sft(model, tok, tokenize_records(RECORDS, tok, COMPACT_TEMPLATE), RECORDS, config,
                     max_new_tokens=2, device=torch.device("cpu"), show_progress=False)
    assert config.precision == "bf16" and len(result.scores.predictions) == 3
    assert torch.isfinite(torch.tensor(result.history.last("train_loss")))
