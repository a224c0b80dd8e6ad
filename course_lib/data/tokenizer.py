"""A small BPE tokenizer trained offline on the course corpus, deterministically.

The merges are learned here in plain Python (:func:`learn_bpe`): count adjacent symbol pairs
over the corpus' words, merge the most frequent pair, repeat. Ties are broken by the pair's
text, so the same corpus gives the same vocabulary on every machine and in every process
(the `tokenizers` library's trainer breaks ties by hash order and gives a different
vocabulary on each run). The result is loaded into a `tokenizers` BPE model and wrapped as a
`transformers` ``PreTrainedTokenizerFast``, so it has pad/eos/mask tokens, ``__call__`` with
padding, ``decode`` and ``save_pretrained`` / ``from_pretrained`` like any Hub tokenizer.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Iterable

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

PAD, UNK, CLS, SEP, MASK, EOS = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[EOS]"
SPECIAL_TOKENS = [PAD, UNK, CLS, SEP, MASK, EOS]  # PAD gets id 0
END_OF_WORD = "</w>"  # marks a word's last symbol, so "the" alone and "the" inside "there" are different tokens


def _word_symbols(word: str) -> tuple[str, ...]:
    """A word as BPE's starting symbols: its characters, the last one carrying the end-of-word mark."""
    return (*word[:-1], word[-1] + END_OF_WORD)


def learn_bpe(word_counts: dict[str, int], vocab_size: int,
              min_frequency: int = 0) -> tuple[list[str], list[tuple[str, str]]]:
    """The alphabet (sorted) and the merges that grow it to ``vocab_size`` symbols (fewer if the words run out).

    Each merge joins the most frequent adjacent pair (counted over the words, weighted by their counts);
    among equally frequent pairs the one that sorts first wins, which makes the result deterministic.
    Pairs seen fewer than ``min_frequency`` times are never merged.
    """
    words = {_word_symbols(w): c for w, c in sorted(word_counts.items()) if w}
    chars = {c for w in word_counts for c in w}  # each character inside a word and at its end: new words
    alphabet = sorted(chars | {c + END_OF_WORD for c in chars})  # made of known characters never hit [UNK]
    known, merges = set(alphabet), []
    while len(known) < vocab_size:
        pairs: Counter = Counter()
        for word, count in words.items():
            for pair in zip(word, word[1:]):
                pairs[pair] += count
        best = min(pairs, key=lambda pair: (-pairs[pair], pair), default=None)
        if best is None or pairs[best] < min_frequency:
            break  # every word is one symbol, or the remaining pairs are too rare
        merges.append(best)
        known.add(best[0] + best[1])
        words = {_merge(word, best): count for word, count in words.items()}
    return alphabet, merges


def _merge(word: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    """``word`` with every occurrence of ``pair`` (left to right) joined into one symbol."""
    out, i = [], 0
    while i < len(word):
        if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
            out.append(word[i] + word[i + 1])
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


def _bare_tokenizer(vocab: dict[str, int], merges: list[tuple[str, str]], lowercase: bool = True) -> Tokenizer:
    """A `tokenizers` BPE tokenizer with the course's normalizer, pre-tokenizer and decoder."""
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=UNK, end_of_word_suffix=END_OF_WORD))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC()] + ([normalizers.Lowercase()] if lowercase else []))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tok.decoder = decoders.BPEDecoder(suffix=END_OF_WORD)
    return tok


def bpe_tokenizer(texts: Iterable[str], vocab_size: int, special_tokens: list[str], lowercase: bool = True,
                  min_frequency: int = 0) -> Tokenizer:
    """A raw BPE `tokenizers.Tokenizer` learned from texts by :func:`learn_bpe`: special tokens get ids 0, 1, ..."""
    splitter = _bare_tokenizer({UNK: 0}, [], lowercase)
    word_counts: Counter = Counter()
    for text in texts:
        normal = splitter.normalizer.normalize_str(text)
        word_counts.update(word for word, _ in splitter.pre_tokenizer.pre_tokenize_str(normal))
    alphabet, merges = learn_bpe(word_counts, vocab_size - len(special_tokens), min_frequency)
    vocab = {token: i for i, token in enumerate(list(special_tokens) + alphabet)}
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    return _bare_tokenizer(vocab, merges, lowercase)


def train_tokenizer(texts: Iterable[str], vocab_size: int = 320) -> PreTrainedTokenizerFast:
    """Train a BPE tokenizer on texts, deterministically (see :func:`learn_bpe`); [CLS] x [SEP] is added by default."""
    texts = list(texts)
    if not texts or not any(isinstance(t, str) and t.strip() for t in texts):
        raise ValueError("Cannot train a tokenizer on an empty corpus: pass at least one non-empty text.")
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < len(SPECIAL_TOKENS) + 30:
        raise ValueError(f"vocab_size must be an integer of at least {len(SPECIAL_TOKENS) + 30}, got {vocab_size!r}.")
    tok = bpe_tokenizer(texts, vocab_size, SPECIAL_TOKENS)
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
        # decode() returns the tokens joined by spaces ("a man ."), as transformers 5 does by default; 4.x would
        # otherwise glue punctuation back on ("a man.").
        clean_up_tokenization_spaces=False,
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
    return PreTrainedTokenizerFast.from_pretrained(directory, clean_up_tokenization_spaces=False)
