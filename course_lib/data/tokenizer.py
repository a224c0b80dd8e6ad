"""A small BPE tokenizer trained offline on the course corpus.

Trained with the `tokenizers` library and wrapped as a `transformers`
``PreTrainedTokenizerFast``, so it has pad/eos/mask tokens, ``__call__`` with
padding, ``decode`` and ``save_pretrained`` / ``from_pretrained`` like any Hub tokenizer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

PAD, UNK, CLS, SEP, MASK, EOS = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[EOS]"
SPECIAL_TOKENS = [PAD, UNK, CLS, SEP, MASK, EOS]  # PAD gets id 0


def train_tokenizer(texts: Iterable[str], vocab_size: int = 320) -> PreTrainedTokenizerFast:
    """Train a byte-level-free BPE tokenizer on texts; [CLS] x [SEP] is added by default."""
    texts = list(texts)
    if not texts or not any(t.strip() for t in texts):
        raise ValueError("Cannot train a tokenizer on an empty corpus: pass at least one non-empty text.")
    if vocab_size < len(SPECIAL_TOKENS) + 30:
        raise ValueError(f"vocab_size must be at least {len(SPECIAL_TOKENS) + 30}, got {vocab_size}.")
    tok = Tokenizer(models.BPE(unk_token=UNK, end_of_word_suffix="</w>"))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tok.decoder = decoders.BPEDecoder(suffix="</w>")
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, end_of_word_suffix="</w>", show_progress=False
    )
    tok.train_from_iterator(texts, trainer=trainer)
    cls_id, sep_id = tok.token_to_id(CLS), tok.token_to_id(SEP)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{CLS} $A {SEP}", pair=f"{CLS} $A {SEP} $B:1 {SEP}:1", special_tokens=[(CLS, cls_id), (SEP, sep_id)]
    )
    return wrap_tokenizer(tok)


def wrap_tokenizer(tok: Tokenizer) -> PreTrainedTokenizerFast:
    """Wrap a raw `tokenizers.Tokenizer` with the course's special tokens as a transformers tokenizer."""
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD, unk_token=UNK, cls_token=CLS, sep_token=SEP, mask_token=MASK,
        eos_token=EOS, bos_token=None,
        model_max_length=512,
    )


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, directory: str | Path) -> Path:
    """Save a tokenizer to a directory (transformers format) and return the path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(directory)
    return directory


def load_tokenizer(directory: str | Path) -> PreTrainedTokenizerFast:
    """Load a tokenizer saved by `save_tokenizer`."""
    directory = Path(directory)
    if not (directory / "tokenizer.json").is_file():
        raise FileNotFoundError(f"No tokenizer.json in {directory}; save one with save_tokenizer() first.")
    return PreTrainedTokenizerFast.from_pretrained(directory)
