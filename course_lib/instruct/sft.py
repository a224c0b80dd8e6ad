"""Supervised instruction tuning (SFT): the recipe, a run, and its exact-match scores (notebook 10, sections 5 to 9).

Training reuses :func:`course_lib.train.train` (AdamW, warmup + cosine, clipping, bf16
autocast where the profile asks for it); the batches come from the padding or
packing collators, whose labels already carry the prompt masking. Scoring generates
greedy answers and compares them with the references by exact match.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from ..params import count_parameters
from ..profiles import Profile
from ..train import History, TrainConfig, train
from .collators import PaddingCollator
from .generate import greedy_generate
from .records import COMPACT_TEMPLATE, PromptTemplate, validate_records
from .scoring import exact_match, exact_match_by


def sft_config(profile: Profile, lr: float, seed: int = 0, **overrides: Any) -> TrainConfig:
    """The course's SFT recipe for a profile: its SFT steps, batch size and precision, 5% warmup, 10 evals.

    Keyword overrides replace TrainConfig fields, e.g. ``steps=100`` (``eval_every`` follows
    the steps unless given) or ``batch_size=4``.
    """
    steps = overrides.pop("steps", profile.sft.steps)
    recipe = dict(steps=steps, batch_size=profile.sft.batch_size, lr=lr, eval_every=max(1, steps // 10),
                  warmup_ratio=0.05, seed=seed, precision=profile.precision)
    return TrainConfig(**{**recipe, **overrides})


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
            collate_fn: Callable | None = None, eval_examples: Sequence[Mapping] | None = None,
            max_new_tokens: int = 12, device: torch.device | None = None, show_progress: bool = True) -> SFTResult:
    """Train on tokenized examples (padding collator unless given), then score the test records."""
    collate_fn = collate_fn or PaddingCollator(tokenizer.pad_token_id)
    counts = count_parameters(model)
    start = time.perf_counter()
    history = train(model, train_examples, collate_fn, config, eval_data=eval_examples, device=device,
                    desc=f"SFT {name}", show_progress=show_progress)
    seconds = time.perf_counter() - start
    scores = score_instructions(model, tokenizer, test_records, template, max_new_tokens, device=device)
    return SFTResult(name, counts.trainable, counts.total, seconds, history, scores)
