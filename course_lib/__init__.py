"""course_lib: the helper library of the "PEFT from scratch" course.

The names a notebook uses most are importable from here (``course_lib.load_pretrained``, ...); each
method lives in one obvious module (see the README's layout section). Imports are lazy: ``import
course_lib`` is cheap, and a name's module (and torch) loads on first use, so tools such as the slide
builder can read ``course_lib.syllabus`` without PyTorch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# name -> the submodule that defines it
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(("LEXICON", "describe_tasks", "load_task", "make_corpus", "task_names"), "data"),
    **dict.fromkeys(("CausalLMCollator", "ClassificationCollator", "MLMCollator"), "data.collate"),
    **dict.fromkeys(("load_tokenizer", "save_tokenizer", "train_tokenizer"), "data.tokenizer"),
    **dict.fromkeys(("FinetuneResult", "finetune_classifier", "finetune_config", "run_finetune"), "finetune"),
    **dict.fromkeys(("GPT", "EncoderConfig", "EncoderForMaskedLM", "EncoderForSequenceClassification", "GPTConfig"),
                    "models"),
    **dict.fromkeys(("count_parameters", "human_bytes", "parameter_breakdown", "parameter_table",
                     "print_trainable_parameters", "trainable_bytes"), "params"),
    **dict.fromkeys(("PretrainedBase", "cache_dir", "course_tokenizer", "encoder_classifier", "load_pretrained"),
                    "pretrain"),
    **dict.fromkeys(("Profile", "get_device", "get_profile", "seed_everything"), "profiles"),
    **dict.fromkeys(("History", "TrainConfig", "evaluate"), "train"),
    **dict.fromkeys(("ALPACA_TEMPLATE", "COMPACT_TEMPLATE", "PackingCollator", "PaddingCollator", "PromptTemplate",
                     "load_alpaca", "make_instruction_set", "tokenize_record", "generate_ids", "greedy_generate",
                     "run_sft", "score_instructions", "sft_config"), "instruct"),
    **dict.fromkeys(("load_translation", "run_translation", "summarize_runs", "translation_model_config",
                     "translation_train_config"), "translation"),
    **dict.fromkeys(("load_minilm", "load_smollm2"), "hub"),
}
__all__ = sorted(_EXPORTS) + ["environment_report"]


def __getattr__(name: str) -> Any:
    """Load an exported name from its submodule on first use (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'course_lib' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


def environment_report() -> dict[str, str]:
    """Versions of the key packages plus the device and the active profile (for a notebook's first cell)."""
    import platform

    import datasets
    import torch
    import transformers

    from .profiles import get_device, get_profile

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "datasets": datasets.__version__,
        "course_lib": __version__,
        "device": str(get_device()),
        "profile": get_profile().name,
    }
