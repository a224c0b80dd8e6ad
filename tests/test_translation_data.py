"""The synthetic English -> Tarvi translation pair, its tokenizers, collator, model config and the Multi30k loader."""

import json
import random

import pytest
import torch

import course_lib.translation
from course_lib.profiles import get_profile
from course_lib.translation import (TARVI, Clause, NounPhrase, Sentence, TranslationCollator, load_multi30k,
                                    load_translation, make_translation_pairs, render_source, render_target,
                                    sample_sentence, train_translation_tokenizers, translation_model_config)
from course_lib.translation.lexicon import AGREEMENT, ANIMATE_NOUNS, DETERMINERS


@pytest.fixture(scope="module")
def data():
    return load_translation(n_train=300, n_val=40, n_test=80, seed=0)


@pytest.fixture(scope="module")
def tokenizers(data):
    return train_translation_tokenizers(data["train"])


def test_pairs_are_deterministic_and_seeded():
    assert make_translation_pairs(30, seed=0) == make_translation_pairs(30, seed=0)
    assert make_translation_pairs(30, seed=0) != make_translation_pairs(30, seed=1)
    lengths = [len(s.split()) - 1 for s, _ in make_translation_pairs(300, seed=2)]
    assert min(lengths) >= 4 and max(lengths) <= 20 and len(set(lengths)) > 8  # variable length, 4-20 words
    with pytest.raises(ValueError):
        make_translation_pairs(0)


def test_splits_are_disjoint_and_test_does_not_depend_on_n_train(data):
    assert {k: len(v) for k, v in data.items()} == {"train": 300, "validation": 40, "test": 80}
    assert data.column_names == {"train": ["src", "tgt"], "validation": ["src", "tgt"], "test": ["src", "tgt"]}
    src = {k: set(v["src"]) for k, v in data.items()}
    assert not src["train"] & src["test"] and not src["train"] & src["validation"]
    assert not src["validation"] & src["test"]
    other = load_translation(n_train=50, n_val=40, n_test=80, seed=0)
    assert other["test"]["src"] == data["test"]["src"] and other["test"]["tgt"] == data["test"]["tgt"]


def np_(noun, **kw):
    return NounPhrase(noun, **kw)


def test_word_order_is_reordered():
    # "the farmer sees the red dog in the garden ." : SVO + PP  ->  S [NP postposition] O-adj V
    s = Sentence(Clause(np_("farmer"), "see", obj=np_("dog", adj="red"), pp=("in", np_("garden"))))
    src, tgt = render_source(s).split(), render_target(s).split()
    assert src == "the farmer sees the red dog in the garden .".split()
    dog, red, see, garden = TARVI.nouns["dog"][0][0], TARVI.adjectives["red"][0], TARVI.verbs["see"][1], \
        TARVI.nouns["garden"][0][0]
    verb = next(w for w in tgt if w.startswith(see))
    assert tgt[-2] == verb  # verb-final, while English has the verb second
    assert tgt.index(dog) < tgt.index(verb) and src.index("sees") < src.index("dog")
    assert tgt.index(red + AGREEMENT[(TARVI.nouns["dog"][1], False)]) == tgt.index(dog) + 1  # adjective after noun
    assert tgt.index("ine") == tgt.index(garden) + 1 < tgt.index(dog)  # postposition, before the object
    # a word-by-word translation (English order) differs from the real one
    assert [w for w in tgt if w in (dog, verb, garden)] != [dog, verb, garden]


def test_because_clauses_swap_and_pronouns_drop():
    s = Sentence(Clause("i", "sleep", tense="past"), "because", Clause("she", "laugh", tense="past"))
    assert render_source(s) == "i slept because she laughed ."
    tgt = render_target(s).split()
    assert tgt[:2] == ["porke", "ela"] and tgt[3] == "," and len(tgt) == 6  # "i" is dropped
    assert tgt[2].endswith("ila") and tgt[4].endswith("im")  # 3sg feminine past, 1sg past


def test_agreement_on_generated_examples():
    rng = random.Random(0)
    checked = 0
    for _ in range(400):
        s = sample_sentence(rng)
        c = s.first
        if s.conj or not isinstance(c.subject, NounPhrase) or c.adverb or c.subject.adj is None:
            continue
        np, words = c.subject, render_target(s).split()
        gender = TARVI.nouns[np.noun][1]
        agr = AGREEMENT[(gender, np.plural)]
        assert words[0] == DETERMINERS[np.det] + agr  # article agrees (nominative)
        assert words[2].endswith(agr)  # adjective agrees
        plural_suffix = "i" if gender == "m" else "e"
        assert words[1].endswith(plural_suffix) == np.plural or not np.plural
        if c.obj is not None:
            obj_agr = AGREEMENT[(TARVI.nouns[c.obj.noun][1], c.obj.plural)]
            assert DETERMINERS[c.obj.det] + obj_agr[0] + "n" + obj_agr[1:] in words  # accusative article
        if c.tense == "past" and not np.plural:
            assert words[-2].endswith("ila" if gender == "f" else "il")  # past verbs agree in gender
        checked += 1
    assert checked > 30


def test_context_dependent_translations():
    person, thing = "farmer", "book"
    s1 = Sentence(Clause("he", "take", obj=np_(person)))
    s2 = Sentence(Clause("he", "take", obj=np_(thing)))
    assert render_target(s1).split()[-2][:5] != render_target(s2).split()[-2][:5]
    assert person in ANIMATE_NOUNS and thing not in ANIMATE_NOUNS


def test_tokenizers_and_collator_shift(data, tokenizers):
    src_tok, tgt_tok = tokenizers
    for tok in tokenizers:
        assert [tok.pad_token_id, tok.unk_token_id, tok.bos_token_id, tok.eos_token_id] == [0, 1, 2, 3]
    ref = data["train"][0]["tgt"]
    assert tgt_tok.decode(tgt_tok(ref, add_special_tokens=False)["input_ids"]) == ref
    collate = TranslationCollator(src_tok, tgt_tok, max_len=32)
    rows = [data["train"][i] for i in range(4)]
    batch = collate(rows)
    assert set(batch) == {"src_ids", "src_mask", "tgt_input_ids", "tgt_mask", "labels"}
    B, T = batch["tgt_input_ids"].shape
    assert batch["labels"].shape == (B, T) and batch["tgt_mask"].shape == (B, T)
    assert batch["src_ids"].shape == batch["src_mask"].shape
    for i, row in enumerate(rows):
        y = tgt_tok(row["tgt"], add_special_tokens=False)["input_ids"]
        n = len(y)
        assert batch["tgt_input_ids"][i, : n + 1].tolist() == [2] + y  # [BOS] y
        assert batch["labels"][i, : n + 1].tolist() == y + [3]  # y [EOS]
        assert (batch["labels"][i, n + 1:] == -100).all() and (batch["tgt_input_ids"][i, n + 1:] == 0).all()
        assert batch["tgt_mask"][i].sum() == n + 1
        x = src_tok(row["src"], add_special_tokens=False)["input_ids"]
        assert batch["src_ids"][i, : len(x) + 1].tolist() == x + [3] and batch["src_mask"][i].sum() == len(x) + 1
    # tuples work too, and sources alone give only the source tensors
    assert torch.equal(collate([(r["src"], r["tgt"]) for r in rows])["labels"], batch["labels"])
    assert set(collate([{"src": r["src"]} for r in rows])) == {"src_ids", "src_mask"}


def test_collator_truncates_to_max_len(tokenizers):
    collate = TranslationCollator(*tokenizers, max_len=5)
    batch = collate(make_translation_pairs(8, seed=3))
    assert batch["src_ids"].shape[1] <= 5 and batch["tgt_input_ids"].shape[1] <= 5


def test_profile_sizes_and_model_config(tokenizers):
    sizes = get_profile("cpu").translation
    assert sizes.n_test >= 500 and sizes.train_kwargs()["steps"] == sizes.steps
    ci = get_profile("ci").translation
    config = translation_model_config(ci, *tokenizers, architecture="p")
    assert config.src_vocab_size == len(tokenizers[0]) and config.tgt_vocab_size == len(tokenizers[1])
    assert (config.pad_token_id, config.bos_token_id, config.eos_token_id, config.architecture) == (0, 2, 3, "p")
    assert (config.d_model, config.n_layers, config.max_len) == (ci.d_model, ci.n_layers, ci.max_len)
    small = get_profile("ci", translation={"d_model": 16, "n_heads": 2}).translation
    assert translation_model_config(small, *tokenizers).d_model == 16  # the sizes passed in, not the active profile
    assert translation_model_config(ci, *tokenizers, d_model=8).d_model == 8  # keyword overrides win


def test_package_exports_every_public_name():
    missing = [name for name in course_lib.translation.__all__ if not hasattr(course_lib.translation, name)]
    assert not missing and len(set(course_lib.translation.__all__)) == len(course_lib.translation.__all__)


def test_multi30k_loader_on_local_files(tmp_path):
    files = {}
    for split, n in (("train", 5), ("validation", 2), ("test", 3)):
        path = tmp_path / f"{split}.jsonl"
        path.write_text("\n".join(json.dumps({"en": f"A man number {i}.", "de": f"Ein Mann Nummer {i}."})
                                  for i in range(n)))
        files[split] = str(path)
    ds = load_multi30k(data_files=files)
    assert {k: len(v) for k, v in ds.items()} == {"train": 5, "validation": 2, "test": 3}
    assert ds["train"].column_names == ["src", "tgt"] and ds["test"][1] == {"src": "A man number 1.",
                                                                          "tgt": "Ein Mann Nummer 1."}
    reverse = load_multi30k(src="de", tgt="en", data_files=files)
    assert reverse["train"][0]["src"].startswith("Ein")
    with pytest.raises(ValueError, match="columns"):
        load_multi30k(src="fr", data_files=files)
    src_tok, tgt_tok = train_translation_tokenizers(ds["train"])
    assert src_tok.decode(src_tok("A man.", add_special_tokens=False)["input_ids"]) == "a man ."
