"""BLEU for the translation exercise: sacrebleu's corpus BLEU-4, plus greedy translate-and-score.

The seed lecture reports BLEU-4 on a 0-1 scale; sacrebleu reports 0-100. ``corpus_bleu``
returns 0-1, ``corpus_bleu_100`` 0-100, ``bleu_report`` both with the n-gram precisions.

Tokenisation: sacrebleu's standard ``"13a"`` (the WMT default), so scores on real data
(Multi30k) are comparable with published numbers: the hypothesis is a detokenised string
and punctuation attached to a word ("man.") is split the same way on both sides. On the
synthetic language, whose words are already separated by spaces, "13a" and ``"none"``
(plain whitespace split) give identical scores.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import torch

from .tokenizers import TranslationCollator

DEFAULT_TOKENIZE = "13a"


def _bleu(hypotheses: Sequence[str], references: Sequence[str], tokenize: str, lowercase: bool) -> Any:
    """sacrebleu's BLEUScore object, after checking that the inputs pair up."""
    import sacrebleu

    if isinstance(hypotheses, str) or isinstance(references, str):
        raise TypeError("hypotheses and references must be lists of strings, not single strings.")
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references: they must pair up.")
    if not hypotheses:
        raise ValueError("BLEU of zero sentences is undefined.")
    # force=True: the synthetic data is space-tokenised on purpose; skip sacrebleu's "forgot to detokenize" warning.
    return sacrebleu.corpus_bleu(list(hypotheses), [list(references)], tokenize=tokenize, lowercase=lowercase,
                                 force=True)


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[str], tokenize: str = DEFAULT_TOKENIZE,
                lowercase: bool = False) -> float:
    """Corpus BLEU-4 on a 0-1 scale (one reference per sentence)."""
    return _bleu(hypotheses, references, tokenize, lowercase).score / 100.0


def corpus_bleu_100(hypotheses: Sequence[str], references: Sequence[str], tokenize: str = DEFAULT_TOKENIZE,
                    lowercase: bool = False) -> float:
    """Corpus BLEU-4 on sacrebleu's 0-100 scale."""
    return _bleu(hypotheses, references, tokenize, lowercase).score


def bleu_report(hypotheses: Sequence[str], references: Sequence[str], tokenize: str = DEFAULT_TOKENIZE,
                lowercase: bool = False) -> dict[str, Any]:
    """bleu (0-1), bleu_100, the four n-gram precisions (0-1), brevity penalty and lengths."""
    b = _bleu(hypotheses, references, tokenize, lowercase)
    return {"bleu": b.score / 100.0, "bleu_100": b.score, "precisions": [p / 100.0 for p in b.precisions],
            "brevity_penalty": b.bp, "hyp_len": b.sys_len, "ref_len": b.ref_len}


@torch.no_grad()
def translate(model: Any, sources: Sequence[str], src_tokenizer: Any, tgt_tokenizer: Any, batch_size: int = 64,
              max_len: Optional[int] = None, device: Any = None) -> list[str]:
    """Greedy-decode each source sentence with ``model.greedy_decode`` and detokenise it (results in input order)."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    collator = TranslationCollator(src_tokenizer, tgt_tokenizer, max_len=model.config.max_len)
    sources = list(sources)
    # Batch sentences of similar length together: a batch decodes until its longest row ends.
    order = sorted(range(len(sources)), key=lambda i: len(sources[i].split()))
    out: list[str] = [""] * len(sources)
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        batch = collator.encode_source([sources[i] for i in rows])
        ids = model.greedy_decode(batch["src_ids"].to(device), max_len=max_len, src_mask=batch["src_mask"].to(device))
        for i, row in zip(rows, ids):
            out[i] = tgt_tokenizer.decode(row, skip_special_tokens=True)
    return out


def translate_and_score(model: Any, dataset: Any, src_tokenizer: Any, tgt_tokenizer: Any, batch_size: int = 64,
                        max_len: Optional[int] = None, device: Any = None, n_examples: int = 3,
                        tokenize: str = DEFAULT_TOKENIZE, lowercase: bool = False) -> dict[str, Any]:
    """Translate ``dataset`` (columns src, tgt) greedily and score it against the references.

    Returns bleu (0-1), bleu_100, precisions, brevity_penalty, hyp_len, ref_len, n,
    hypotheses, and ``examples``: the first ``n_examples`` (src, reference, hypothesis) triples.
    Use ``lowercase=True`` when the tokenizer lowercases but the references do not (Multi30k).
    """
    sources, references = list(dataset["src"]), list(dataset["tgt"])
    hypotheses = translate(model, sources, src_tokenizer, tgt_tokenizer, batch_size, max_len, device)
    report = bleu_report(hypotheses, references, tokenize, lowercase)
    report.update(n=len(sources), hypotheses=hypotheses,
                  examples=list(zip(sources, references, hypotheses))[:n_examples])
    return report
