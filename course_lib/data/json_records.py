"""Records from a local JSON file holding a list, or from a JSON Lines file (the Alpaca and preference loaders)."""

from __future__ import annotations

import json
from pathlib import Path


def read_json_records(path: Path) -> list:
    """The records of a JSON file holding a list, or of a JSON Lines file (one object per line)."""
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        records = json.loads(text)
    else:
        try:
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is neither a JSON list nor JSON Lines: {err}") from None
    if not isinstance(records, list):
        raise ValueError(f"{path} must hold a JSON list of records, got {type(records).__name__}.")
    return records
