import pytest
import torch

from course_lib.data.collate import IGNORE_INDEX, CausalLMCollator, ClassificationCollator, MLMCollator

from conftest import SAMPLE_TEXTS as TEXTS


@pytest.fixture()
def tok(small_tokenizer):
    return small_tokenizer


def test_classification_batch(tok):
    batch = ClassificationCollator(tok, max_len=8)([{"text": TEXTS[0], "label": 1}, {"text": TEXTS[1], "label": 0}])
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    assert batch["input_ids"].shape[1] == 8  # truncated to max_len
    assert batch["labels"].tolist() == [1, 0]


def test_causal_lm_appends_eos_and_masks_padding(tok):
    batch = CausalLMCollator(tok, max_len=32)([TEXTS[1], TEXTS[0]])
    short = batch["input_ids"][0][batch["attention_mask"][0].bool()]
    assert short[-1] == tok.eos_token_id and short[0] != tok.cls_token_id
    assert (batch["labels"][batch["attention_mask"] == 0] == IGNORE_INDEX).all()
    real = batch["attention_mask"].bool()
    assert torch.equal(batch["labels"][real], batch["input_ids"][real])


def test_mlm_masking_rates_and_labels(tok):
    collate = MLMCollator(tok, max_len=32, seed=0)
    batch = collate([TEXTS[0]] * 400)
    original = tok([TEXTS[0]] * 400, padding=True, return_tensors="pt")["input_ids"]
    picked = batch["labels"] != IGNORE_INDEX
    n_real = (original != tok.cls_token_id) & (original != tok.sep_token_id)
    rate = picked.sum().item() / n_real.sum().item()
    assert 0.12 < rate < 0.18
    assert torch.equal(batch["labels"][picked], original[picked])
    masked = (batch["input_ids"] == tok.mask_token_id) & picked
    assert 0.7 < masked.sum().item() / picked.sum().item() < 0.9
    assert (batch["input_ids"][:, 0] == tok.cls_token_id).all()  # specials never masked


def test_mlm_is_reproducible_and_validates(tok):
    a = MLMCollator(tok, seed=1)([TEXTS[0]] * 4)
    b = MLMCollator(tok, seed=1)([TEXTS[0]] * 4)
    assert torch.equal(a["input_ids"], b["input_ids"])
    with pytest.raises(ValueError, match="mlm_probability"):
        MLMCollator(tok, mlm_probability=0)


def test_bad_examples(tok):
    with pytest.raises(ValueError, match="zero examples"):
        ClassificationCollator(tok)([])
    with pytest.raises(TypeError, match="'text'"):
        CausalLMCollator(tok)([{"sentence": "x"}])
