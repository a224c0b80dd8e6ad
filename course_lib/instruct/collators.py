"""Batches of tokenized examples: padding or packing (notebook 10, section 8).

:class:`PaddingCollator` puts one example per row and pads; :class:`PackingCollator`
puts several whole examples per row (see its docstring for what happens at the
boundaries). :func:`padding_share` measures how much of a batch is padding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import torch

from ..data.collate import IGNORE_INDEX
from ..data.corpus import check_count

PACKING_STRATEGIES: tuple[str, ...] = ("first_fit", "next_fit")


def _check_examples(examples: Sequence[Mapping]) -> None:
    """Raise ValueError unless there are examples, each with equally long input_ids and labels."""
    if not examples:
        raise ValueError("Cannot build a batch from zero examples.")
    for i, ex in enumerate(examples):
        if "input_ids" not in ex or "labels" not in ex:
            raise ValueError(f"example {i}: needs 'input_ids' and 'labels' (from tokenize_record), got {sorted(ex)}.")
        if len(ex["input_ids"]) != len(ex["labels"]):
            raise ValueError(f"example {i}: input_ids and labels differ in length "
                             f"({len(ex['input_ids'])} vs {len(ex['labels'])}).")


@dataclass
class PaddingCollator:
    """One example per row, padded on the right: to the longest row (``pad_to=None``) or to ``pad_to``.

    Padding gets ``attention_mask`` 0 and label -100, so it is neither attended to nor learned.
    """

    pad_token_id: int
    pad_to: int | None = None

    def __call__(self, examples: Sequence[Mapping]) -> dict[str, torch.Tensor]:
        _check_examples(examples)
        longest = max(len(ex["input_ids"]) for ex in examples)
        width = longest if self.pad_to is None else self.pad_to
        if longest > width:
            raise ValueError(f"An example has {longest} tokens, more than pad_to={self.pad_to}; "
                             "tokenize with max_len or raise pad_to.")
        ids = torch.full((len(examples), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(examples), width), dtype=torch.long)
        for row, ex in enumerate(examples):
            n = len(ex["input_ids"])
            ids[row, :n] = torch.tensor(ex["input_ids"])
            labels[row, :n] = torch.tensor(ex["labels"])
            mask[row, :n] = 1
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def pack_examples(examples: Sequence[Mapping], max_len: int, strategy: str = "first_fit") -> list[dict]:
    """Put whole examples into rows of at most ``max_len`` tokens; return the rows.

    ``next_fit`` fills one row in example order and starts a new row when the next
    example does not fit; ``first_fit`` puts each example into the first row with room
    (fewer, fuller rows). Either way no example is split, every token appears exactly
    once, and a row holds its examples in their original order. Each row has
    ``input_ids``, ``labels`` and ``example_ids`` (which example each token came from).
    An example longer than ``max_len`` is an error.
    """
    _check_examples(examples)
    max_len = check_count("max_len", max_len)
    if strategy not in PACKING_STRATEGIES:
        raise ValueError(f"strategy must be one of {PACKING_STRATEGIES}, got {strategy!r}.")
    rows: list[dict] = []
    for i, ex in enumerate(examples):
        n = len(ex["input_ids"])
        if n > max_len:
            raise ValueError(f"example {i} has {n} tokens, more than max_len={max_len}; it cannot be packed whole.")
        candidates = rows if strategy == "first_fit" else rows[-1:]
        row = next((r for r in candidates if len(r["input_ids"]) + n <= max_len), None)
        if row is None:
            row = {"input_ids": [], "labels": [], "example_ids": []}
            rows.append(row)
        row["input_ids"] += list(ex["input_ids"])
        row["labels"] += list(ex["labels"])
        row["example_ids"] += [i] * n
    return rows


@dataclass
class PackingCollator:
    """Several whole examples per row (:func:`pack_examples`), padded on the right.

    It packs the examples of one batch, so a batch of B examples becomes at most B rows,
    padded to the longest row (or to ``max_len`` with ``pad_to_max_len=True``).

    Boundaries: the course GPT's attention takes only a padding mask, so a token can
    attend to earlier examples in its row, and positions keep counting across the
    boundary (cross-contamination, as in simple packing implementations). No *label*
    crosses a boundary when prompts are masked: the first token of every example is a
    prompt token with label -100, so the previous example's EOS is never trained to
    predict it. ``return_example_ids`` adds ``example_ids`` (-1 on padding) for
    inspection; models do not accept that key, so leave it off for training.
    """

    pad_token_id: int
    max_len: int
    strategy: str = "first_fit"
    pad_to_max_len: bool = False
    return_example_ids: bool = False

    def __call__(self, examples: Sequence[Mapping]) -> dict[str, torch.Tensor]:
        rows = pack_examples(examples, self.max_len, self.strategy)
        width = self.max_len if self.pad_to_max_len else max(len(r["input_ids"]) for r in rows)
        shape = (len(rows), width)
        ids = torch.full(shape, self.pad_token_id, dtype=torch.long)
        labels = torch.full(shape, IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros(shape, dtype=torch.long)
        example_ids = torch.full(shape, -1, dtype=torch.long)
        for r, row in enumerate(rows):
            n = len(row["input_ids"])
            ids[r, :n] = torch.tensor(row["input_ids"])
            labels[r, :n] = torch.tensor(row["labels"])
            mask[r, :n] = 1
            example_ids[r, :n] = torch.tensor(row["example_ids"])
        batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
        if self.return_example_ids:
            batch["example_ids"] = example_ids
        return batch


def padding_share(batch: Mapping[str, torch.Tensor]) -> float:
    """Share of the batch's positions that are padding (attention_mask 0)."""
    mask = batch["attention_mask"]
    return 1.0 - float(mask.sum()) / mask.numel()
