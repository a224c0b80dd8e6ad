"""Hugging Face models by Hub name (online, opt-in) or from a local directory: classifiers and causal LMs."""

from __future__ import annotations

import os

from .loading import quiet_loading, resolve_source


def load_hf_classifier(name_or_path: str | os.PathLike, num_labels: int, label_names: list[str] | None = None):
    """(model, tokenizer) for sequence classification from a Hub name or a local directory."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if num_labels < 2:
        raise ValueError(f"num_labels must be >= 2, got {num_labels}.")
    if label_names is not None and len(label_names) != num_labels:
        raise ValueError(f"label_names has {len(label_names)} names but num_labels={num_labels}.")
    source = resolve_source(name_or_path)
    kwargs = {"num_labels": num_labels}
    if label_names is not None:
        kwargs["id2label"] = dict(enumerate(label_names))
        kwargs["label2id"] = {n: i for i, n in enumerate(label_names)}
    with quiet_loading():
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForSequenceClassification.from_pretrained(source, **kwargs)
    return model, tokenizer


def load_hf_causal_lm(name_or_path: str | os.PathLike):
    """(model, tokenizer) for a causal LM (e.g. gpt2, SmolLM2) from a Hub name or a local directory."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = resolve_source(name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(source)
    if tokenizer.pad_token is None:  # GPT-2 style tokenizers ship without one
        tokenizer.pad_token = tokenizer.eos_token
    with quiet_loading():
        model = AutoModelForCausalLM.from_pretrained(source)
    return model, tokenizer
