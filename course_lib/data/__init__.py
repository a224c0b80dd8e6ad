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
