"""The template's headers as new tokens, and the vocabulary they land in (notebook 10, sections 3 and 5).

A vocabulary trained on another corpus may lack the headers' characters ("#", ":");
one special token per header also keeps the prompt short. The course GPT's embedding
matrix then grows by one row per header (:func:`prepare_for_template`). Section 5 uses
:func:`token_counts` and :func:`mean_pairwise_cosine` to show why plain LoRA struggles
with tokens the base model never saw.
"""

from __future__ import annotations

import copy
from collections import Counter
from typing import Iterable, Mapping, Sequence

import torch
from torch import nn

from ..models.gpt import GPT
from .records import COMPACT_TEMPLATE, PromptTemplate


def add_header_tokens(tokenizer, template: PromptTemplate) -> list[int]:
    """Register the template's headers as special tokens (one id each); return their ids.

    The model's embedding matrix must then grow to ``len(tokenizer)``
    (see :func:`resize_token_embeddings`).
    """
    from tokenizers import AddedToken

    if not template.headers:
        raise ValueError(f"Template {template.name!r} has no headers to add.")
    new = [h for h in template.headers if h not in tokenizer.get_vocab()]
    if new:
        tokenizer.add_tokens([AddedToken(h, special=True, normalized=False) for h in new], special_tokens=True)
    return tokenizer.convert_tokens_to_ids(list(template.headers))


def resize_token_embeddings(model: GPT, new_size: int, init_from: Mapping[int, Sequence[int]] | None = None) -> GPT:
    """Grow the course GPT's tied embedding / LM head to ``new_size`` rows (in place; returns the model).

    Old rows are kept. A new row ``i`` starts as the mean of the rows listed in
    ``init_from[i]`` (e.g. the pieces of the word "response"), otherwise as the mean of
    all old rows, the choice Stanford Alpaca's training script makes for added tokens.
    """
    if not isinstance(model, GPT):
        raise TypeError(f"resize_token_embeddings works on the course GPT; for a Hugging Face model call "
                        f"model.resize_token_embeddings(n). Got {type(model).__name__}.")
    old = model.tok_embed.weight.data
    n_old, d = old.shape
    if new_size < n_old:
        raise ValueError(f"new_size ({new_size}) must be >= the current vocabulary ({n_old}); shrinking drops tokens.")
    init_from = dict(init_from or {})
    bad = [i for i in init_from if not n_old <= i < new_size]
    if bad:
        raise ValueError(f"init_from keys must be new row ids in [{n_old}, {new_size}), got {bad}.")
    weight = torch.empty(new_size, d, dtype=old.dtype, device=old.device)
    weight[:n_old] = old
    for i in range(n_old, new_size):
        sources = [j for j in init_from.get(i, ()) if 0 <= j < n_old]
        weight[i] = old[sources].mean(0) if sources else old.mean(0)
    model.tok_embed = nn.Embedding(new_size, d).to(old.device)
    model.tok_embed.weight.data.copy_(weight)
    model.lm_head = nn.Linear(d, new_size, bias=False).to(old.device)
    model.lm_head.weight = model.tok_embed.weight  # keep the weights tied
    model.config.vocab_size = new_size
    return model


def prepare_for_template(model: GPT, tokenizer, template: PromptTemplate = COMPACT_TEMPLATE):
    """Copies of the course GPT and its tokenizer with the template's headers as new tokens.

    Each header's embedding starts as the mean of the pieces of its words
    ("### Response:" -> the pieces of "response"), so the three headers differ even
    for a method that keeps the embeddings frozen (LoRA).
    """
    model, tokenizer = copy.deepcopy(model), copy.deepcopy(tokenizer)
    n_old = len(tokenizer)
    header_ids = add_header_tokens(tokenizer, template)
    init = {}
    for header, i in zip(template.headers, header_ids):
        words = "".join(c if c.isalpha() or c.isspace() else " " for c in header).strip()
        pieces = tokenizer(words, add_special_tokens=False)["input_ids"]
        init[i] = [p for p in pieces if p != tokenizer.unk_token_id and p < n_old]
    resize_token_embeddings(model, len(tokenizer), {i: v for i, v in init.items() if i >= n_old})
    return model, tokenizer


def unknown_token_share(tokenizer, texts: Iterable[str]) -> float:
    """Share of tokens that are the unknown token (0.0 when the tokenizer has none)."""
    unk = tokenizer.unk_token_id
    total = hits = 0
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        total += len(ids)
        hits += sum(i == unk for i in ids) if unk is not None else 0
    return hits / max(1, total)


def token_counts(tokenizer, texts: Sequence[str]) -> Counter:
    """How often each token id occurs when the texts are tokenized (no special tokens added)."""
    counts: Counter = Counter()
    for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]:
        counts.update(ids)
    return counts


def mean_pairwise_cosine(vectors: torch.Tensor) -> float:
    """Mean cosine similarity over all pairs of distinct rows (1.0: all rows point the same way)."""
    if vectors.dim() != 2 or vectors.size(0) < 2:
        raise ValueError(f"Need a [n >= 2, d] matrix, got shape {tuple(vectors.shape)}.")
    unit = torch.nn.functional.normalize(vectors.float(), dim=1)
    sims = unit @ unit.T
    n = sims.size(0)
    return float((sims.sum() - sims.diagonal().sum()) / (n * n - n))
