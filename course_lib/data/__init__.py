"""Data for the course: the synthetic world, its pretraining corpus and its classification tasks."""

from .corpus import make_corpus
from .tasks import TASKS, TaskSpec, describe_tasks, get_task, load_task, task_names
from .world import LEXICON, Lexicon, held_out_words

__all__ = [
    "LEXICON", "Lexicon", "TASKS", "TaskSpec", "describe_tasks", "get_task", "held_out_words", "load_task",
    "make_corpus", "task_names",
]
