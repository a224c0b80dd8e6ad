"""Batch builders: classification, causal LM (shifted labels) and masked LM.

Each collator turns a list of examples (strings, or dicts with a ``text`` and
optionally a ``label`` field) into a dict of tensors that the course models and
Hugging Face models both accept: ``input_ids``, ``attention_mask``, ``labels``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

IGNORE_INDEX = -100  # label value the loss skips (same convention as Hugging Face)


def check_max_len(max_len: Any, what: str, minimum: int = 2) -> None:
    """A clear error unless ``max_len`` is an int >= ``minimum`` (a shorter sequence has nothing to learn from)."""
    if isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < minimum:
        raise ValueError(f"{what}: max_len must be an integer >= {minimum}, got {max_len!r}.")


def _texts(examples: Sequence[Any]) -> list[str]:
    """Extract the text of each example (a str or a dict with 'text')."""
    if not examples:
        raise ValueError("Cannot build a batch from zero examples.")
    if isinstance(examples[0], str):
        return list(examples)
    if isinstance(examples[0], dict) and "text" in examples[0]:
        return [ex["text"] for ex in examples]
    raise TypeError(f"Examples must be strings or dicts with a 'text' key, got {type(examples[0]).__name__}.")


@dataclass
class ClassificationCollator:
    """Tokenize ``[CLS] text [SEP]`` with padding and attach integer labels."""

    tokenizer: Any
    max_len: int = 64

    def __post_init__(self) -> None:
        check_max_len(self.max_len, "ClassificationCollator")  # [CLS] and [SEP] at least

    def __call__(self, examples: Sequence[dict]) -> dict[str, torch.Tensor]:
        batch = self.tokenizer(
            _texts(examples), padding=True, truncation=True, max_length=self.max_len, return_tensors="pt"
        )
        if "label" in examples[0]:
            batch["labels"] = torch.tensor([ex["label"] for ex in examples], dtype=torch.long)
        return {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "labels")}


@dataclass
class CausalLMCollator:
    """Tokenize ``text [EOS]`` for next-token prediction; the model shifts labels by one inside.

    Labels are a copy of the inputs with padding set to -100: position t's
    target is token t+1 (teacher forcing: the true previous tokens are the input).
    """

    tokenizer: Any
    max_len: int = 64

    def __post_init__(self) -> None:
        check_max_len(self.max_len, "CausalLMCollator")  # one token and the one it predicts

    def __call__(self, examples: Sequence[Any]) -> dict[str, torch.Tensor]:
        eos = self.tokenizer.eos_token
        texts = [t + " " + eos for t in _texts(examples)]
        batch = self.tokenizer(
            texts, add_special_tokens=False, padding=True, truncation=True,
            max_length=self.max_len, return_tensors="pt",
        )
        labels = batch["input_ids"].clone()
        labels[batch["attention_mask"] == 0] = IGNORE_INDEX
        return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "labels": labels}


@dataclass
class MLMCollator:
    """BERT-style masking: pick 15% of real tokens; of those 80% -> [MASK], 10% random, 10% kept.

    Labels hold the original id at picked positions and -100 elsewhere. A seeded
    generator makes the masks reproducible.
    """

    tokenizer: Any
    max_len: int = 64
    mlm_probability: float = 0.15
    seed: int = 0
    generator: torch.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        check_max_len(self.max_len, "MLMCollator", minimum=3)  # [CLS], a token to mask, [SEP]
        if not 0.0 < self.mlm_probability < 1.0:
            raise ValueError(f"mlm_probability must be in (0, 1), got {self.mlm_probability}.")
        self.generator = torch.Generator().manual_seed(self.seed)

    def __call__(self, examples: Sequence[Any]) -> dict[str, torch.Tensor]:
        batch = self.tokenizer(
            _texts(examples), padding=True, truncation=True, max_length=self.max_len, return_tensors="pt"
        )
        input_ids, attention_mask = batch["input_ids"].clone(), batch["attention_mask"]
        special = torch.tensor(
            [self.tokenizer.get_special_tokens_mask(ids, already_has_special_tokens=True) for ids in input_ids.tolist()],
            dtype=torch.bool,
        )
        candidates = attention_mask.bool() & ~special
        g = self.generator
        picked = (torch.rand(input_ids.shape, generator=g) < self.mlm_probability) & candidates
        labels = torch.where(picked, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
        roll = torch.rand(input_ids.shape, generator=g)
        to_mask = picked & (roll < 0.8)
        to_random = picked & (roll >= 0.8) & (roll < 0.9)
        input_ids[to_mask] = self.tokenizer.mask_token_id
        random_ids = torch.randint(len(self.tokenizer), input_ids.shape, generator=g)
        input_ids[to_random] = random_ids[to_random]
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
