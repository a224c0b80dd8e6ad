"""BLEU helpers: sacrebleu's corpus BLEU-4 on the 0-1 scale, and greedy translate-and-score."""

import pytest
import sacrebleu
import torch

from course_lib.translation import (Seq2SeqConfig, Seq2SeqTransformer, TranslationCollator, bleu_report, corpus_bleu,
                                    corpus_bleu_100, load_translation, train_translation_tokenizers, translate,
                                    translate_and_score)


def test_hand_checked_value():
    # unigram 5/6, bigram 3/5, trigram 2/4, 4-gram 1/3, same length (BP = 1): BLEU = (1/12) ** (1/4)
    hyp, ref = ["the cat sat on the mat"], ["the cat sat on a mat"]
    assert corpus_bleu(hyp, ref) == pytest.approx(12 ** -0.25)
    assert corpus_bleu_100(hyp, ref) == pytest.approx(100 * 12 ** -0.25)
    report = bleu_report(hyp, ref)
    assert report["precisions"] == pytest.approx([5 / 6, 3 / 5, 2 / 4, 1 / 3])
    assert report["brevity_penalty"] == pytest.approx(1.0) and report["bleu_100"] == pytest.approx(53.728, abs=1e-3)


def test_equals_sacrebleu_and_perfect_is_one():
    hyps = ["lo kato vidat .", "la hundo ne dormat kaj el kuras .", "porke ela ridila , dormim ."]
    refs = ["lo kato vidat .", "la hundo ne dormat e el kuras .", "porke ela ridila , mi dormim ."]
    expected = sacrebleu.corpus_bleu(hyps, [refs]).score
    assert corpus_bleu_100(hyps, refs) == pytest.approx(expected)
    assert corpus_bleu(hyps, refs) == pytest.approx(expected / 100)
    assert 0 < corpus_bleu(hyps, refs) < 1
    assert corpus_bleu(refs, refs) == pytest.approx(1.0)
    assert corpus_bleu(hyps, refs, tokenize="none") == pytest.approx(corpus_bleu(hyps, refs))  # space-tokenised
    # "13a" splits the attached period of a real (detokenised) reference, as in Multi30k
    assert corpus_bleu(["A man rides a brown horse ."], ["a man rides a brown horse."], lowercase=True) == \
        pytest.approx(1.0)


def test_input_checks():
    with pytest.raises(ValueError, match="pair up"):
        corpus_bleu(["a"], ["a", "b"])
    with pytest.raises(TypeError):
        corpus_bleu("a b", "a b")
    with pytest.raises(ValueError, match="zero"):
        corpus_bleu([], [])


class Oracle(torch.nn.Module):
    """A fake model whose greedy_decode returns the tokenized reference of each source (looked up)."""

    def __init__(self, pairs, src_tok, tgt_tok):
        super().__init__()
        self.config = Seq2SeqConfig(src_vocab_size=len(src_tok), tgt_vocab_size=len(tgt_tok), max_len=32)
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.src_tok = src_tok
        self.answer = {tuple(src_tok(s, add_special_tokens=False)["input_ids"]): tgt_tok(t, add_special_tokens=False)
                       ["input_ids"] for s, t in pairs}

    def greedy_decode(self, src_ids, max_len=None, src_mask=None):
        rows = []
        for row, mask in zip(src_ids.tolist(), src_mask.tolist()):
            rows.append(self.answer[tuple(row[: sum(mask) - 1])])  # drop padding and the source EOS
        return rows


def test_translate_and_score():
    data = load_translation(60, 5, 12, seed=4)
    test = data["test"]
    src_tok, tgt_tok = train_translation_tokenizers(list(zip(test["src"], test["tgt"])))  # no unknown words
    oracle = Oracle(zip(test["src"], test["tgt"]), src_tok, tgt_tok)
    report = translate_and_score(oracle, test, src_tok, tgt_tok, batch_size=5, n_examples=2)
    assert report["bleu"] == pytest.approx(1.0) and report["n"] == 12 and len(report["hypotheses"]) == 12
    assert report["examples"][0] == (test[0]["src"], test[0]["tgt"], test[0]["tgt"]) and len(report["examples"]) == 2

    torch.manual_seed(0)
    model = Seq2SeqTransformer(Seq2SeqConfig(src_vocab_size=len(src_tok), tgt_vocab_size=len(tgt_tok), max_len=32,
                                             d_model=16, n_layers=2, n_heads=2, d_ff=32))
    hyps = translate(model, test["src"][:3], src_tok, tgt_tok, max_len=4)
    assert len(hyps) == 3 and all(len(h.split()) <= 4 for h in hyps)
    report = translate_and_score(model, test, src_tok, tgt_tok, max_len=4)
    assert 0.0 <= report["bleu"] <= 1.0 and report["bleu_100"] == pytest.approx(100 * report["bleu"])
    assert TranslationCollator(src_tok, tgt_tok).encode_source(["he walks ."])["src_ids"].shape == (1, 4)
