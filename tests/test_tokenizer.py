import pytest

from course_lib.data.tokenizer import SPECIAL_TOKENS, load_tokenizer, save_tokenizer, train_tokenizer

from conftest import SAMPLE_TEXTS as TEXTS


@pytest.fixture()
def tok(small_tokenizer):
    return small_tokenizer


def test_special_tokens_have_fixed_ids(tok):
    assert tok.convert_tokens_to_ids(SPECIAL_TOKENS) == list(range(len(SPECIAL_TOKENS)))
    assert tok.pad_token_id == 0
    assert None not in (tok.eos_token_id, tok.mask_token_id, tok.cls_token_id, tok.sep_token_id)


def test_encode_adds_cls_sep_and_round_trips(tok):
    ids = tok("Tom said the curry was superb.")["input_ids"]
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
    assert tok.decode(ids, skip_special_tokens=True) == "tom said the curry was superb ."
    plain = tok("tom said", add_special_tokens=False)["input_ids"]
    assert tok.cls_token_id not in plain


def test_padding_batch(tok):
    batch = tok(["tom", "the laptop felt dull to anna ."], padding=True, return_tensors="pt")
    assert batch["input_ids"].shape[0] == 2
    assert batch["attention_mask"][0].sum() < batch["attention_mask"][1].sum()
    assert (batch["input_ids"][0][batch["attention_mask"][0] == 0] == tok.pad_token_id).all()


def test_save_and_load(tok, tmp_path):
    save_tokenizer(tok, tmp_path / "tok")
    again = load_tokenizer(tmp_path / "tok")
    text = "anna said the curry was dull ."
    assert again(text)["input_ids"] == tok(text)["input_ids"]
    assert again.eos_token == tok.eos_token and again.mask_token == tok.mask_token


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match="empty corpus"):
        train_tokenizer([])
    with pytest.raises(ValueError, match="empty corpus"):
        train_tokenizer(["", "  "])
    with pytest.raises(ValueError, match="vocab_size"):
        train_tokenizer(TEXTS, vocab_size=10)
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        load_tokenizer(tmp_path)


def test_learn_bpe_merges_the_most_frequent_pair_and_breaks_ties_by_text():
    from course_lib.data.tokenizer import learn_bpe

    counts = {"low": 5, "lower": 2, "newest": 6, "widest": 3}  # Sennrich et al.'s example
    alphabet, merges = learn_bpe(counts, vocab_size=0)
    assert merges == [] and alphabet == sorted(alphabet) and {"w", "w</w>", "t</w>"} <= set(alphabet)
    alphabet, merges = learn_bpe(counts, vocab_size=len(alphabet) + 3)
    # (e, s) and (s, t</w>) both occur 9 times: the pair that sorts first wins; then es+t</w> (9), then l+o (7)
    assert merges == [("e", "s"), ("es", "t</w>"), ("l", "o")]
    assert learn_bpe(dict(reversed(list(counts.items()))), len(alphabet) + 3)[1] == merges  # order-free
    assert learn_bpe(counts, 10**6, min_frequency=7)[1] == [("e", "s"), ("es", "t</w>"), ("l", "o")]


def test_training_twice_gives_the_same_tokenizer():
    texts = TEXTS + ["the ferry was superb", "maria said it was awful"]
    first, second = train_tokenizer(texts, vocab_size=100), train_tokenizer(list(reversed(texts)), vocab_size=100)
    assert first.backend_tokenizer.to_str() == second.backend_tokenizer.to_str()
    assert len(first) == 100
