"""One word-level (or BPE) tokenizer per language, and the collator that batches translation pairs.

The collator builds the three tensors every encoder-decoder trains on: the source
(``x [EOS]``), the decoder input (``[BOS] y``) and the labels (``y [EOS]``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import torch
from datasets import Dataset
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from ..data.collate import IGNORE_INDEX, check_max_len
from ..data.tokenizer import EOS, PAD, UNK, bpe_tokenizer

BOS = "[BOS]"
TRANSLATION_SPECIAL_TOKENS = [PAD, UNK, BOS, EOS]  # ids 0, 1, 2, 3 = Seq2SeqConfig's defaults


def train_word_tokenizer(texts: Iterable[str], min_frequency: int = 1, lowercase: bool = True,
                         kind: str = "word", vocab_size: int = 8000) -> PreTrainedTokenizerFast:
    """A whole-word (``kind="word"``) or BPE (``kind="bpe"``) tokenizer with [PAD] [UNK] [BOS] [EOS].

    Splits on whitespace and punctuation; words seen fewer than ``min_frequency`` times
    become [UNK] (word level). No special tokens are added automatically: the collator adds BOS/EOS.
    """
    texts = list(texts)
    if not any(t.strip() for t in texts):
        raise ValueError("Cannot train a tokenizer on an empty corpus: pass at least one non-empty text.")
    if kind == "bpe":  # the course's deterministic BPE (the tokenizers trainer breaks ties by hash order)
        tok = bpe_tokenizer(texts, vocab_size, TRANSLATION_SPECIAL_TOKENS, lowercase, min_frequency)
    elif kind == "word":  # ordered by frequency, then by the word: deterministic
        tok = Tokenizer(models.WordLevel(unk_token=UNK))
        trainer = trainers.WordLevelTrainer(special_tokens=TRANSLATION_SPECIAL_TOKENS, min_frequency=min_frequency,
                                            show_progress=False)
        norms = [normalizers.NFKC()] + ([normalizers.Lowercase()] if lowercase else [])
        tok.normalizer = normalizers.Sequence(norms)
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
        tok.train_from_iterator(texts, trainer=trainer)
    else:
        raise ValueError(f"kind must be 'word' or 'bpe', got {kind!r}")
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, unk_token=UNK, bos_token=BOS, eos_token=EOS,
                                   model_max_length=512, clean_up_tokenization_spaces=False)


def _pairs(data: Any, src_key: str = "src", tgt_key: str = "tgt") -> tuple[list[str], list[str]]:
    """(sources, targets) from a Dataset / list of dicts with src/tgt, or a list of (src, tgt) tuples."""
    if isinstance(data, Dataset):
        return list(data[src_key]), list(data[tgt_key])
    data = list(data)
    if data and isinstance(data[0], dict):
        return [ex[src_key] for ex in data], [ex[tgt_key] for ex in data]
    return [s for s, _ in data], [t for _, t in data]


def train_translation_tokenizers(data: Any, min_frequency: int = 1, lowercase: bool = True, kind: str = "word",
                                 vocab_size: int = 8000) -> tuple[PreTrainedTokenizerFast, PreTrainedTokenizerFast]:
    """One tokenizer per language, trained on the (training) pairs: returns (src_tokenizer, tgt_tokenizer)."""
    src, tgt = _pairs(data)
    return tuple(train_word_tokenizer(texts, min_frequency, lowercase, kind, vocab_size)  # type: ignore
                 for texts in (src, tgt))


@dataclass
class TranslationCollator:
    """Batch translation pairs for :class:`~course_lib.translation.Seq2SeqTransformer`.

    src_ids = x [EOS]; tgt_input_ids = [BOS] y; labels = y [EOS] (the target shifted left);
    padding is the pad id in the inputs (mask 0) and -100 in the labels. Examples are
    dicts with ``src``/``tgt`` keys or (src, tgt) tuples; without targets only the source is built.
    """

    src_tokenizer: Any
    tgt_tokenizer: Any
    max_len: int = 64

    def __post_init__(self) -> None:
        check_max_len(self.max_len, "TranslationCollator")  # one word and [EOS]

    def _ids(self, tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
        return [ids[: self.max_len - 1] for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]

    @staticmethod
    def _pad(rows: list[list[int]], value: int) -> torch.Tensor:
        width = max(len(r) for r in rows)
        return torch.tensor([r + [value] * (width - len(r)) for r in rows], dtype=torch.long)

    def encode_source(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """src_ids and src_mask for a list of source sentences."""
        if not texts:
            raise ValueError("Cannot build a batch from zero examples.")
        rows = [ids + [self.src_tokenizer.eos_token_id] for ids in self._ids(self.src_tokenizer, texts)]
        src_ids = self._pad(rows, self.src_tokenizer.pad_token_id)
        return {"src_ids": src_ids, "src_mask": (src_ids != self.src_tokenizer.pad_token_id).long()}

    def __call__(self, examples: Sequence[Any]) -> dict[str, torch.Tensor]:
        if not examples:
            raise ValueError("Cannot build a batch from zero examples.")
        if isinstance(examples[0], dict):
            src = [ex["src"] for ex in examples]
            tgt = [ex["tgt"] for ex in examples] if "tgt" in examples[0] else None
        else:
            src, tgt = [ex[0] for ex in examples], [ex[1] for ex in examples]
        for i, (s, t) in enumerate(zip(src, tgt or src)):
            if not (isinstance(s, str) and s.strip()) or not (isinstance(t, str) and t.strip()):
                raise ValueError(f"Example {i} has an empty or non-text source or target: ({s!r}, {t!r}).")
        batch = self.encode_source(src)
        if tgt is None:
            return batch
        tok = self.tgt_tokenizer
        ys = self._ids(tok, tgt)
        batch["tgt_input_ids"] = self._pad([[tok.bos_token_id] + y for y in ys], tok.pad_token_id)
        batch["tgt_mask"] = self._pad([[1] * (len(y) + 1) for y in ys], 0)
        batch["labels"] = self._pad([y + [tok.eos_token_id] for y in ys], IGNORE_INDEX)
        return batch
