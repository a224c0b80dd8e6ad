"""Tokenization with prompt masking, and few-shot prompts (notebook 10, sections 3 and 4).

:func:`tokenize_record` tokenizes prompt and response separately, so the boundary is
exact, and sets the labels of the prompt tokens to -100 (``mask_prompt=True``): the
loss then only teaches the response.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

from ..data.collate import IGNORE_INDEX, check_max_len
from .records import ALPACA_TEMPLATE, PromptTemplate, validate_records


def tokenize_record(record: Mapping, tokenizer, template: PromptTemplate = ALPACA_TEMPLATE,
                    mask_prompt: bool = True, max_len: int | None = None, add_eos: bool = True) -> dict:
    """Token ids and labels of ``prompt + output + EOS``; prompt labels are -100 when ``mask_prompt``.

    Prompt and response are tokenized separately, so ``prompt_len`` is exact. Sequences
    longer than ``max_len`` are cut at the end (the EOS may be lost); use
    :func:`tokenize_records` to drop them instead. ``add_eos=False`` leaves the EOS out
    (to see what a model trained that way does at generation time).
    """
    if max_len is not None:
        check_max_len(max_len, "tokenize_record")  # a prompt token and an answer token at least
    if not isinstance(record, Mapping) or not isinstance(record.get("output"), str):
        raise ValueError(f"tokenize_record needs a record with 'instruction' and 'output' strings; got {record!r}")
    eos = tokenizer.eos_token_id
    if eos is None and add_eos:
        raise ValueError("The tokenizer has no EOS token; set tokenizer.eos_token before tokenizing responses.")
    prompt_ids = tokenizer(template.prompt(record), add_special_tokens=False)["input_ids"]
    response_ids = tokenizer(record["output"], add_special_tokens=False)["input_ids"] + ([eos] if add_eos else [])
    input_ids = prompt_ids + response_ids
    labels = ([IGNORE_INDEX] * len(prompt_ids) if mask_prompt else list(prompt_ids)) + response_ids
    if max_len is not None:
        input_ids, labels = input_ids[:max_len], labels[:max_len]
    return {"input_ids": input_ids, "labels": labels, "prompt_len": min(len(prompt_ids), len(input_ids))}


def tokenize_records(records: Iterable[Mapping], tokenizer, template: PromptTemplate = ALPACA_TEMPLATE,
                     mask_prompt: bool = True, max_len: int | None = None, too_long: str = "drop",
                     add_eos: bool = True) -> list[dict]:
    """Tokenize many records; ``too_long`` = 'drop', 'truncate' or 'error' for those over ``max_len``."""
    if too_long not in ("drop", "truncate", "error"):
        raise ValueError(f"too_long must be 'drop', 'truncate' or 'error', got {too_long!r}.")
    out = []
    for i, record in enumerate(validate_records(records)):
        example = tokenize_record(record, tokenizer, template, mask_prompt, add_eos=add_eos)
        if max_len is not None and len(example["input_ids"]) > max_len:
            if too_long == "error":
                raise ValueError(f"record {i}: {len(example['input_ids'])} tokens exceed max_len={max_len}.")
            if too_long == "drop":
                continue
            example = tokenize_record(record, tokenizer, template, mask_prompt, max_len, add_eos)
        out.append(example)
    return out


def fits(records: Sequence[Mapping], tokenizer, template: PromptTemplate, max_len: int) -> list[bool]:
    """For each record: does ``prompt + output + EOS`` fit in ``max_len`` tokens?"""
    return [len(tokenize_record(r, tokenizer, template)["input_ids"]) <= max_len for r in records]


def response_lengths(records: Sequence[Mapping], tokenizer) -> list[int]:
    """Tokens of each record's output plus one for the EOS."""
    return [len(tokenizer(r["output"], add_special_tokens=False)["input_ids"]) + 1 for r in records]


def few_shot_prompt(record: Mapping, demos: Sequence[Mapping], tokenizer, template: PromptTemplate = ALPACA_TEMPLATE,
                    max_tokens: int | None = None) -> tuple[str, int]:
    """In-context learning: ``(prompt, k)``, the record's prompt after the first k demonstrations that fit.

    Each demonstration is rendered in full (prompt, answer, EOS), so the model sees the
    format k times before the query. Demonstrations are added in order while the whole
    prompt stays within ``max_tokens`` (no limit: all of them).
    """
    query = template.prompt(record)
    eos = tokenizer.eos_token or ""
    count = lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])  # noqa: E731
    shots: list[str] = []
    for demo in demos:
        candidate = "".join(shots) + template.render(demo, eos) + template.eos_separator + query
        if max_tokens is not None and count(candidate) > max_tokens:
            break
        shots.append(template.render(demo, eos) + template.eos_separator)
    return "".join(shots) + query, len(shots)
