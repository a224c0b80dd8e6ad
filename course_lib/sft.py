"""Supervised instruction tuning (SFT): prepare a causal LM for a template, train it, score its answers.

Training reuses :func:`course_lib.train.train` (AdamW, warmup + cosine, clipping):
the batches come from the padding or packing collators of
:mod:`course_lib.data.instructions`, whose labels already carry the prompt masking.
Scoring generates greedy answers and compares them with the references by exact match.
"""

from __future__ import annotations

import copy
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import torch
from torch import nn

from .data.instructions import (COMPACT_TEMPLATE, PaddingCollator, PromptTemplate, add_header_tokens,
                                exact_match, exact_match_by, tokenize_record, validate_records)
from .generate import greedy_generate
from .models.gpt import GPT
from .params import count_parameters
from .train import History, TrainConfig, train


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


def fits(records: Sequence[Mapping], tokenizer, template: PromptTemplate, max_len: int) -> list[bool]:
    """For each record: does ``prompt + output + EOS`` fit in ``max_len`` tokens?"""
    return [len(tokenize_record(r, tokenizer, template)["input_ids"]) <= max_len for r in records]


def response_lengths(records: Sequence[Mapping], tokenizer) -> list[int]:
    """Tokens of each record's output plus one for the EOS."""
    return [len(tokenizer(r["output"], add_special_tokens=False)["input_ids"]) + 1 for r in records]


@dataclass
class InstructionScores:
    """Greedy answers and their exact match overall, per group and per instruction type."""

    predictions: list[str]
    overall: float
    by_group: dict[str, float] = field(default_factory=dict)
    by_type: dict[str, float] = field(default_factory=dict)


def score_instructions(model: nn.Module, tokenizer, records: Sequence[Mapping],
                       template: PromptTemplate = COMPACT_TEMPLATE, max_new_tokens: int = 12,
                       prompts: Sequence[str] | None = None, batch_size: int = 32,
                       device: torch.device | None = None, show_progress: bool = False) -> InstructionScores:
    """Answer every record greedily (prompt from the template, or the given ``prompts``) and score exact match."""
    records = validate_records(records)
    prompts = list(prompts) if prompts is not None else [template.prompt(r) for r in records]
    if len(prompts) != len(records):
        raise ValueError(f"{len(prompts)} prompts for {len(records)} records; give one prompt per record.")
    predictions = greedy_generate(model, tokenizer, prompts, max_new_tokens, batch_size, device, show_progress)
    references = [r["output"] for r in records]
    by_group = exact_match_by(predictions, references, [r.get("group", "all") for r in records])
    by_type = exact_match_by(predictions, references, [r.get("type", "all") for r in records])
    return InstructionScores(predictions, exact_match(predictions, references), by_group, by_type)


@dataclass
class SFTResult:
    """One instruction-tuning run: size, time, loss history and exact-match scores."""

    name: str
    trainable_params: int
    total_params: int
    train_seconds: float
    history: History
    scores: InstructionScores

    def row(self) -> dict:
        """A flat dict for a results table (exact match per test group)."""
        return {"method": self.name, "trainable params": self.trainable_params,
                "trainable %": round(100 * self.trainable_params / self.total_params, 2),
                "train s": round(self.train_seconds, 1),
                "tokens/s": round(self.history.last("tokens_per_s")),
                **{f"EM {g}": round(v, 3) for g, v in self.scores.by_group.items()},
                "EM all": round(self.scores.overall, 3)}


def run_sft(model: nn.Module, tokenizer, train_examples: Sequence[Mapping], test_records: Sequence[Mapping],
            config: TrainConfig, name: str = "sft", template: PromptTemplate = COMPACT_TEMPLATE,
            collate_fn=None, eval_examples: Sequence[Mapping] | None = None, max_new_tokens: int = 12,
            device: torch.device | None = None, show_progress: bool = True) -> SFTResult:
    """Train on tokenized examples (padding collator unless given), then score the test records."""
    collate_fn = collate_fn or PaddingCollator(tokenizer.pad_token_id)
    counts = count_parameters(model)
    start = time.perf_counter()
    history = train(model, train_examples, collate_fn, config, eval_data=eval_examples, device=device,
                    desc=f"SFT {name}", show_progress=show_progress)
    seconds = time.perf_counter() - start
    scores = score_instructions(model, tokenizer, test_records, template, max_new_tokens, device=device)
    return SFTResult(name, counts.trainable, counts.total, seconds, history, scores)


@dataclass(frozen=True)
class SFTSizes:
    """Data sizes and training budgets of notebook 09, per profile."""

    n_train: int           # generated training records
    n_test_per_type: int   # test records per instruction type (half as many for the new wording)
    steps: int             # optimizer steps of each course-GPT run
    batch_size: int
    full_lr: float
    lora_lr: float
    lora_r: int
    throughput_steps: int  # steps of each padding/packing timing run
    real_steps: int        # SmolLM2 LoRA steps
    real_batch: int
    real_train: int        # training records for SmolLM2
    real_test: int         # test records for SmolLM2 (before and after)


SFT_SIZES: dict[str, SFTSizes] = {
    "ci": SFTSizes(n_train=400, n_test_per_type=2, steps=40, batch_size=16, full_lr=3e-3, lora_lr=3e-3, lora_r=8,
                   throughput_steps=4, real_steps=2, real_batch=2, real_train=8, real_test=4),
    "cpu": SFTSizes(n_train=3000, n_test_per_type=12, steps=600, batch_size=32, full_lr=3e-3, lora_lr=3e-3,
                    lora_r=8, throughput_steps=40, real_steps=24, real_batch=4, real_train=96, real_test=36),
    "gpu": SFTSizes(n_train=8000, n_test_per_type=40, steps=3000, batch_size=64, full_lr=2e-3, lora_lr=2e-3,
                    lora_r=8, throughput_steps=100, real_steps=300, real_batch=16, real_train=4000, real_test=200),
}


def sft_profile_sizes(profile=None) -> SFTSizes:
    """The sizes for a profile name, a Profile, or (None) the active profile."""
    from .profiles import get_profile

    name = getattr(profile, "name", profile) or get_profile().name
    if name not in SFT_SIZES:
        raise ValueError(f"Unknown profile {name!r}; allowed: {', '.join(SFT_SIZES)}")
    return SFT_SIZES[name]
