"""The real Multi30k (English-German) for online users: the same ``src``/``tgt`` columns as the synthetic data."""

from __future__ import annotations

from typing import Any

from datasets import DatasetDict

from .pairs import SPLITS


def load_multi30k(name: str = "bentrevett/multi30k", src: str = "en", tgt: str = "de",
                  data_files: Any = None) -> DatasetDict:
    """Multi30k (train/validation/test) from the Hub, or from local JSON(L) files with the same schema.

    The result has columns ``src`` and ``tgt`` (renamed from the language columns, e.g.
    ``en``/``de``), so :class:`~course_lib.translation.TranslationCollator` works unchanged.
    ``data_files``: a path or a {split: path} dict of JSON lines files (then ``name`` is ignored).
    """
    from datasets import load_dataset

    ds = load_dataset("json", data_files=data_files) if data_files is not None else load_dataset(name)
    missing = [s for s in SPLITS if s not in ds]
    if missing:
        raise ValueError(f"Expected splits {list(SPLITS)}, missing {missing}; found {list(ds)}")
    out = {}
    for split in SPLITS:
        columns = ds[split].column_names
        if src not in columns or tgt not in columns:
            raise ValueError(f"Split {split!r} needs columns {src!r} and {tgt!r}; found {columns}")
        part = ds[split].select_columns([src, tgt])
        out[split] = part.rename_columns({src: "src", tgt: "tgt"})
    return DatasetDict(out)
