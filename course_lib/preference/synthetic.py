"""Preference pairs made offline from the course's instruction set (notebook 10's ``make_instruction_set``).

Each instruction record becomes one pair: the prompt from a template, its own output as
the ``chosen`` response and, as the ``rejected`` one, a plausible wrong answer: the
output of another record of the same instruction type (a "bad" where "good" is right,
another list reversed, another count). Such a wrong answer has the right form, so the
model can only prefer the chosen one by reading the prompt.
"""

from __future__ import annotations

import random
from typing import Any, Iterable, Mapping

KEPT_KEYS: tuple[str, ...] = ("type", "group")


def _check_instruction_record(record: Any, index: int) -> Mapping:
    """A clear error unless ``record`` is a dict with string ``instruction``, ``output`` and ``type``."""
    if not isinstance(record, Mapping):
        raise ValueError(f"record {index}: expected an instruction dict (instruction, input, output, type), "
                         f"got {type(record).__name__}.")
    for field in ("instruction", "output", "type"):
        if not isinstance(record.get(field), str):
            problem = "is missing" if field not in record else f"must be a string, got {type(record[field]).__name__}"
            raise ValueError(f"record {index}: field {field!r} {problem} (make_preference_pairs needs instruction, "
                             "output and type, as make_instruction_set produces).")
    if not record["output"].strip():
        raise ValueError(f"record {index}: field 'output' is empty; it becomes the chosen response.")
    return record


def make_preference_pairs(records: Iterable[Mapping], template: Any, seed: int = 0) -> list[dict]:
    """One ``{prompt, chosen, rejected, type, group}`` pair per instruction record, reproducible for a seed.

    ``prompt`` is ``template.prompt(record)`` (e.g. the course's ``COMPACT_TEMPLATE``),
    ``chosen`` the record's output and ``rejected`` the output of a randomly picked record
    of the same type whose output differs. Records whose type has no differing output
    (every answer the same) are skipped.
    """
    if not callable(getattr(template, "prompt", None)):
        raise ValueError(f"template must have a prompt(record) method (a PromptTemplate), got {template!r}.")
    rows = [_check_instruction_record(r, i) for i, r in enumerate(records)]
    if not rows:
        raise ValueError("No records: give at least one instruction record (e.g. make_instruction_set()['train']).")
    outputs: dict[str, list[str]] = {}
    for r in rows:  # distinct outputs per type, in first-seen order (the order is part of determinism)
        seen = outputs.setdefault(r["type"], [])
        if r["output"] not in seen:
            seen.append(r["output"])
    rng = random.Random(f"course-preference:{seed}")
    pairs = []
    for r in rows:
        wrong = [o for o in outputs[r["type"]] if o.strip() != r["output"].strip()]
        if not wrong:
            continue
        pair = {"prompt": template.prompt(r), "chosen": r["output"], "rejected": rng.choice(wrong)}
        pair.update({k: r[k] for k in KEPT_KEYS if k in r})
        pairs.append(pair)
    if not pairs:
        raise ValueError(f"No pair could be made from {len(rows)} records: within each type "
                         f"({sorted(outputs)}) every output is the same, so there is no wrong answer to reject.")
    return pairs
