"""course_lib: the helper library of the "PEFT from scratch" course.

Everything a notebook needs is importable from here; each method lives in one
obvious module (see the README's layout section).
"""

from .data import LEXICON, describe_tasks, load_task, make_corpus, task_names
from .data.collate import CausalLMCollator, ClassificationCollator, MLMCollator
from .data.tokenizer import load_tokenizer, save_tokenizer, train_tokenizer
from .finetune import FinetuneResult, finetune_classifier, finetune_config
from .models import GPT, EncoderConfig, EncoderForMaskedLM, EncoderForSequenceClassification, GPTConfig
from .params import (count_parameters, human_bytes, parameter_breakdown, parameter_table,
                     print_trainable_parameters, trainable_bytes)
from .pretrain import PretrainedBase, cache_dir, course_tokenizer, encoder_classifier, load_pretrained
from .profiles import get_device, get_profile, seed_everything
from .train import History, TrainConfig, evaluate, train

__version__ = "0.1.0"


def environment_report() -> dict[str, str]:
    """Versions of the key packages plus the device and the active profile (for a notebook's first cell)."""
    import platform

    import datasets
    import torch
    import transformers

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "datasets": datasets.__version__,
        "course_lib": __version__,
        "device": str(get_device()),
        "profile": get_profile().name,
    }

# Instruction tuning (notebook 09)
from .data.instructions import (ALPACA_TEMPLATE, COMPACT_TEMPLATE, PackingCollator, PaddingCollator,  # noqa: E402
                                PromptTemplate, load_alpaca, make_instruction_set, tokenize_record)
from .generate import generate_ids, greedy_generate  # noqa: E402
from .sft import run_sft, score_instructions  # noqa: E402
