"""Tokenized preference pairs and the batch that scores both responses in one forward pass.

:func:`tokenize_pair` tokenizes the prompt once and each response separately (no special
tokens, so the prompt/response boundary is exact, as in instruction tuning), appends the
EOS to each response and labels the prompt positions -100: only response tokens count
in a sequence's log-probability. :class:`PreferenceCollator` stacks the chosen rows on
top of the rejected rows, all padded to one length.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import torch

from ..data.collate import IGNORE_INDEX, check_max_len
from .records import validate_preference_record

PAIR_KEYS: tuple[str, ...] = ("chosen_input_ids", "chosen_labels", "rejected_input_ids", "rejected_labels")


def _tokenize(record: Mapping, tokenizer, add_eos: bool, index: int) -> dict:
    """:func:`tokenize_pair` with the record's index in every error message."""
    record = validate_preference_record(record, index)
    eos = tokenizer.eos_token_id
    if add_eos and eos is None:
        raise ValueError("The tokenizer has no EOS token; set tokenizer.eos_token before tokenizing responses.")
    prompt_ids = list(tokenizer(record["prompt"], add_special_tokens=False)["input_ids"])
    if not prompt_ids:
        raise ValueError(f"record {index}: the prompt {record['prompt']!r} has no tokens; the first response token "
                         "needs at least one prompt token before it to be predicted from.")
    out: dict = {"prompt_len": len(prompt_ids)}
    for side in ("chosen", "rejected"):
        response = list(tokenizer(record[side], add_special_tokens=False)["input_ids"]) + ([eos] if add_eos else [])
        out[f"{side}_input_ids"] = prompt_ids + response
        out[f"{side}_labels"] = [IGNORE_INDEX] * len(prompt_ids) + response
    return out


def tokenize_pair(record: Mapping, tokenizer, add_eos: bool = True) -> dict:
    """Ids and labels of ``prompt + chosen + EOS`` and ``prompt + rejected + EOS``; prompt labels are -100.

    Returns python lists under :data:`PAIR_KEYS`, plus ``prompt_len`` (the prompt's token count).
    """
    return _tokenize(record, tokenizer, add_eos, 0)


def tokenize_pairs(records: Iterable[Mapping], tokenizer, add_eos: bool = True, max_len: int | None = None,
                   too_long: str = "drop") -> list[dict]:
    """Tokenize many pairs; with ``max_len``, pairs whose longer side exceeds it are dropped (or an error)."""
    if too_long not in ("drop", "error"):
        raise ValueError(f"too_long must be 'drop' or 'error', got {too_long!r}.")
    if max_len is not None:
        check_max_len(max_len, "tokenize_pairs")
    out = []
    for i, record in enumerate(records):
        example = _tokenize(record, tokenizer, add_eos, i)
        longest = max(len(example["chosen_input_ids"]), len(example["rejected_input_ids"]))
        if max_len is not None and longest > max_len:
            if too_long == "error":
                raise ValueError(f"record {i}: {longest} tokens exceed max_len={max_len}.")
            continue
        out.append(example)
    if not out:
        raise ValueError("No tokenized pairs: there were no records" +
                         ("" if max_len is None else f", or none fits in max_len={max_len}") + ".")
    return out


def _check_pairs(examples: Sequence[Mapping]) -> None:
    """Raise ValueError unless there are pairs, each with the four keys, matching lengths and a response."""
    if not examples:
        raise ValueError("Cannot build a batch from zero pairs.")
    for i, ex in enumerate(examples):
        missing = [k for k in PAIR_KEYS if k not in ex]
        if missing:
            raise ValueError(f"pair {i}: missing {missing} (tokenize with tokenize_pair); it has {sorted(ex)}.")
        for side in ("chosen", "rejected"):
            ids, labels = ex[f"{side}_input_ids"], ex[f"{side}_labels"]
            if len(ids) != len(labels):
                raise ValueError(f"pair {i}: {side}_input_ids and {side}_labels differ in length "
                                 f"({len(ids)} vs {len(labels)}).")
            if all(label == IGNORE_INDEX for label in labels[1:]):
                raise ValueError(f"pair {i}: the {side} side has no response token to score (every label after "
                                 f"the first is {IGNORE_INDEX}).")


@dataclass
class PreferenceCollator:
    """A batch of B pairs as 2B rows (chosen rows 0..B-1, then rejected rows B..2B-1), right-padded to one length.

    Padding gets ``attention_mask`` 0 and label -100. Width: the longest row (``pad_to=None``) or ``pad_to``.
    """

    pad_token_id: int
    pad_to: int | None = None

    def __call__(self, examples: Sequence[Mapping]) -> dict[str, torch.Tensor]:
        _check_pairs(examples)
        rows = [(ex[f"{side}_input_ids"], ex[f"{side}_labels"]) for side in ("chosen", "rejected") for ex in examples]
        longest = max(len(ids) for ids, _ in rows)
        width = longest if self.pad_to is None else self.pad_to
        if longest > width:
            raise ValueError(f"A response row has {longest} tokens, more than pad_to={self.pad_to}; "
                             "tokenize with max_len or raise pad_to.")
        shape = (len(rows), width)
        input_ids = torch.full(shape, self.pad_token_id, dtype=torch.long)
        labels = torch.full(shape, IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros(shape, dtype=torch.long)
        for r, (ids, lab) in enumerate(rows):
            input_ids[r, :len(ids)] = torch.tensor(ids, dtype=torch.long)
            labels[r, :len(ids)] = torch.tensor(lab, dtype=torch.long)
            mask[r, :len(ids)] = 1
        return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}
