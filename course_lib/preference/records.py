"""Preference records ``{"prompt", "chosen", "rejected"}``: checking them and loading them from a file or the Hub.

A preference record says: for this prompt, the ``chosen`` response is better than the
``rejected`` one. Extra keys (``type``, ``group``, ...) ride along untouched. The public
set ``Intel/orca_dpo_pairs`` stores the prompt in two columns, ``system`` and ``question``;
the loaders turn those into one ``prompt`` (the system text, a blank line, the question).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..data.corpus import check_count
from ..data.json_records import read_json_records

PREFERENCE_FIELDS: tuple[str, ...] = ("prompt", "chosen", "rejected")
PREFERENCE_HUB_NAME = "Intel/orca_dpo_pairs"
ORCA_FIELDS: tuple[str, ...] = ("system", "question", "chosen", "rejected")


def validate_preference_record(record: Any, index: int = 0) -> dict:
    """Check one preference record and return a copy of it (extra keys kept).

    All three fields must be strings; ``chosen`` and ``rejected`` must hold text and differ.
    Errors name the record's index and the field, e.g. ``record 2: field 'rejected' is missing``.
    """
    if not isinstance(record, Mapping):
        raise ValueError(f"record {index}: expected a dict with fields {list(PREFERENCE_FIELDS)}, "
                         f"got {type(record).__name__}.")
    for field in PREFERENCE_FIELDS:
        if field not in record:
            raise ValueError(f"record {index}: field {field!r} is missing (a preference record needs "
                             f"{list(PREFERENCE_FIELDS)}).")
        if not isinstance(record[field], str):
            raise ValueError(f"record {index}: field {field!r} must be a string, got {type(record[field]).__name__}.")
    for field in ("chosen", "rejected"):
        if not record[field].strip():
            raise ValueError(f"record {index}: field {field!r} is empty; a response must contain text.")
    if record["chosen"].strip() == record["rejected"].strip():
        raise ValueError(f"record {index}: fields 'chosen' and 'rejected' are the same text ({record['chosen']!r}); "
                         "a preference needs two different responses.")
    return dict(record)


def validate_preference_records(records: Iterable[Any]) -> list[dict]:
    """Validate every record (see :func:`validate_preference_record`); at least one is required."""
    checked = [validate_preference_record(r, i) for i, r in enumerate(records)]
    if not checked:
        raise ValueError("No records: give at least one {prompt, chosen, rejected} dict.")
    return checked


def orca_prompt(system: Any, question: Any, index: int = 0) -> str:
    """The prompt of an orca_dpo_pairs row: ``question``, after ``system`` and a blank line when system has text."""
    if not isinstance(question, str):
        raise ValueError(f"record {index}: field 'question' must be a string, got {type(question).__name__}.")
    if system is None:
        system = ""
    if not isinstance(system, str):
        raise ValueError(f"record {index}: field 'system' must be a string (or missing), got {type(system).__name__}.")
    return f"{system}\n\n{question}" if system.strip() else question


def from_any_schema(record: Any, index: int = 0) -> dict:
    """A record in the course schema (kept as is) or the orca schema (system + question -> prompt), validated."""
    if isinstance(record, Mapping) and "prompt" not in record and "question" in record:
        extra = {k: v for k, v in record.items() if k not in ORCA_FIELDS}
        record = {**extra, "prompt": orca_prompt(record.get("system"), record["question"], index),
                  "chosen": record.get("chosen"), "rejected": record.get("rejected")}
        for field in ("chosen", "rejected"):
            if record[field] is None:
                raise ValueError(f"record {index}: field {field!r} is missing (an orca_dpo_pairs row needs "
                                 f"{list(ORCA_FIELDS)}; 'system' may be empty).")
    return validate_preference_record(record, index)


def load_preference_json(path: str | os.PathLike) -> list[dict]:
    """Validated preference records from a local JSON list or JSON Lines file (course or orca_dpo_pairs schema)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No preference file at {path}; give a .json list of records or a .jsonl file.")
    records = [from_any_schema(r, i) for i, r in enumerate(read_json_records(path))]
    if not records:
        raise ValueError(f"{path} holds no records; give at least one {{prompt, chosen, rejected}} record.")
    return records


def load_preference_hub(name: str = PREFERENCE_HUB_NAME, split: str = "train", limit: int | None = None) -> list[dict]:
    """Validated preference records from a Hugging Face Hub data set (online users; orca schema understood)."""
    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1":
        raise RuntimeError(f"{name!r} needs a download, but HF_HUB_OFFLINE / HF_DATASETS_OFFLINE is set. Unset it to "
                           "fetch from the Hub, or use load_preference_json on a local file of the same schema.")
    from datasets import load_dataset

    data = load_dataset(name, split=split)
    columns = set(data.column_names)
    if not (set(PREFERENCE_FIELDS) <= columns or {"question", "chosen", "rejected"} <= columns):
        raise ValueError(f"{name!r} has columns {data.column_names}; a preference set needs "
                         f"{list(PREFERENCE_FIELDS)} or the orca schema {list(ORCA_FIELDS)}.")
    if limit is not None:
        data = data.select(range(min(check_count("limit", limit), len(data))))
    records = [from_any_schema(r, i) for i, r in enumerate(data)]
    if not records:
        raise ValueError(f"{name!r} split {split!r} holds no records.")
    return records
