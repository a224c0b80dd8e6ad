"""What every Hub loader shares: a quiet load, and the offline rule for names vs local directories."""

from __future__ import annotations

import os
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def quiet_loading() -> Iterator[None]:
    """Silence transformers' load report, progress bar and FutureWarnings while a model (or adapter) loads.

    A fresh task head is expected to be missing, and loaders such as ``peft.PeftModel.from_pretrained`` call
    transformers APIs that a newer transformers has deprecated; neither is the learner's concern.
    """
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def resolve_source(name_or_path: str | os.PathLike) -> str:
    """A local model directory as is; a Hub name only when going online is allowed."""
    path = Path(name_or_path)
    if path.exists():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path} exists but has no config.json: it is not a model directory.")
        return str(path)
    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("TRANSFORMERS_OFFLINE") == "1":
        raise FileNotFoundError(
            f"{name_or_path!r} is not a local directory and HF_HUB_OFFLINE=1 forbids downloading it. "
            "Use a local model directory, load_minilm(), or unset HF_HUB_OFFLINE to fetch from the Hub."
        )
    return str(name_or_path)
