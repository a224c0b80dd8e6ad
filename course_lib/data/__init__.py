"""Data for the course: the synthetic world, its pretraining corpus and its classification tasks."""

from .corpus import make_corpus
from .tasks import TASKS, TaskSpec, describe_tasks, get_task, load_task, task_names
from .translation import (TranslationCollator, TranslationSizes, load_multi30k, load_translation,
                          make_translation_pairs, train_translation_tokenizers, translation_profile_sizes)
from .world import LEXICON, Lexicon, held_out_words

__all__ = [
    "LEXICON", "Lexicon", "TASKS", "TaskSpec", "describe_tasks", "get_task", "held_out_words", "load_task",
    "make_corpus", "task_names",
    "TranslationCollator", "TranslationSizes", "load_multi30k", "load_translation", "make_translation_pairs",
    "train_translation_tokenizers", "translation_profile_sizes",
]

from .instructions import (ALPACA_TEMPLATE, COMPACT_TEMPLATE, INSTRUCTION_TYPES, InstructionType,  # noqa: E402
                           PackingCollator, PaddingCollator, PromptTemplate, describe_instruction_types,
                           exact_match, few_shot_prompt, load_alpaca, load_alpaca_hub, load_alpaca_json,
                           make_instruction_set, pack_examples, tokenize_record, tokenize_records, validate_records)

__all__ += [
    "ALPACA_TEMPLATE", "COMPACT_TEMPLATE", "INSTRUCTION_TYPES", "InstructionType", "PackingCollator",
    "PaddingCollator", "PromptTemplate", "describe_instruction_types", "exact_match", "few_shot_prompt",
    "load_alpaca", "load_alpaca_hub", "load_alpaca_json", "make_instruction_set", "pack_examples",
    "tokenize_record", "tokenize_records", "validate_records",
]
