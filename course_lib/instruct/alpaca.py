"""Real Alpaca data: a local JSON / JSON Lines file, or the Hub by name (notebook 10, section 2).

Every loader validates the records (:func:`~course_lib.instruct.records.validate_records`)
and returns a ``datasets.Dataset`` with the three Alpaca columns.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..data.corpus import check_count
from ..data.json_records import read_json_records
from .records import FIELDS, validate_records

ALPACA_HUB_NAME = "tatsu-lab/alpaca"


def records_to_dataset(records: list[dict]):
    """A ``datasets.Dataset`` with the Alpaca columns (instruction, input, output) of validated records."""
    from datasets import Dataset

    return Dataset.from_dict({f: [r[f] for r in records] for f in FIELDS})


def load_alpaca_json(path: str | os.PathLike):
    """A ``datasets.Dataset`` (instruction, input, output) from a local Alpaca JSON file (a list) or JSON Lines."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No Alpaca file at {path}; give a .json list of records or a .jsonl file.")
    return records_to_dataset(validate_records(read_json_records(path)))


def load_alpaca_hub(name: str = ALPACA_HUB_NAME, split: str = "train", limit: int | None = None):
    """The Alpaca data set from the Hugging Face Hub by name (online users), validated, as a Dataset."""
    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1":
        raise RuntimeError(f"{name!r} needs a download, but HF_HUB_OFFLINE / HF_DATASETS_OFFLINE is set. Unset it "
                           "to fetch from the Hub, or use load_alpaca_json on a local file of the same schema.")
    from datasets import load_dataset

    data = load_dataset(name, split=split)
    missing = [f for f in FIELDS if f not in data.column_names]
    if missing:
        raise ValueError(f"{name!r} has columns {data.column_names}; an Alpaca set needs {list(FIELDS)} "
                         f"(missing {missing}).")
    if limit is not None:
        data = data.select(range(min(check_count("limit", limit), len(data))))
    return records_to_dataset(validate_records(data.select_columns(list(FIELDS))))


def load_alpaca(name_or_path: str | os.PathLike = ALPACA_HUB_NAME, **kwargs):
    """A local Alpaca JSON/JSONL file when the path exists, otherwise a Hub data set by name."""
    path = Path(name_or_path)
    if path.exists():
        return load_alpaca_json(path)
    if path.suffix in (".json", ".jsonl") or len(path.parts) > 2 or str(name_or_path).startswith((".", "/", "~")):
        raise FileNotFoundError(f"No Alpaca file at {path} (a Hub name looks like 'owner/name'); check the path.")
    return load_alpaca_hub(str(name_or_path), **kwargs)
