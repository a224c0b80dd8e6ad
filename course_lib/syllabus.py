"""The course map: each notebook, the seed documents it covers, and the course_lib modules it builds."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Lesson:
    """One notebook of the course."""

    number: int
    notebook: str
    title: str
    seeds: tuple[str, ...]
    builds: tuple[str, ...]


SYLLABUS: tuple[Lesson, ...] = (
    Lesson(0, "00_welcome.ipynb", "Welcome and setup; why PEFT (storage for N tasks)", ("000", "003", "004"),
           ("profiles", "params")),
    Lesson(1, "01_pretraining.ipynb", "Transformer refresher: BERT vs GPT, NTP with teacher forcing, MLM",
           ("004",), ("models", "data", "train", "pretrain", "plots")),
    Lesson(2, "02_full_finetuning.ipynb", "Full fine-tuning and selective baselines (head, top-k, BitFit)",
           ("000", "003"), ("peft.freezing", "finetune")),
    Lesson(3, "03_adapters.ipynb", "Bottleneck adapters: Houlsby vs Pfeiffer, series vs parallel",
           ("000", "002"), ("peft.adapters", "benchmark")),
    Lesson(4, "04_adapter_fusion.ipynb", "AdapterFusion: attention over frozen task adapters", ("000",),
           ("peft.fusion",)),
    Lesson(5, "05_lora.ipynb", "LoRA from scratch: merge/unmerge, which weights, task switching",
           ("000", "001", "003", "004"), ("peft.lora",)),
    Lesson(6, "06_lora_rank.ipynb", "LoRA rank sweep, alpha/r vs rsLoRA, subspace similarity", ("001", "003"),
           ("plots",)),
    Lesson(7, "07_beyond_lora.ipynb", "Beyond LoRA: DoRA, (IA)³, merging adapters, many LoRAs in one batch",
           ("001", "003"), ("peft.dora", "peft.ia3", "peft.lora_merging", "peft.lora_serving", "real_merging")),
    Lesson(8, "08_prompt_prefix.ipynb", "Prompt tuning and prefix tuning: hard vs soft prompts",
           ("001", "002", "004"), ("peft.prompt_tuning", "peft.prefix_tuning")),
    Lesson(9, "09_qlora.ipynb", "QLoRA: NF4 from scratch, LoRA on a 4-bit base", ("001", "003"),
           ("peft.quant", "peft.qlora", "metrics")),
    Lesson(10, "10_alpaca.ipynb", "Alpaca instruction tuning: template, EOS, padding vs packing, masked loss",
           ("004", "002"), ("instruct", "hub")),
    Lesson(11, "11_preference_dpo.ipynb", "Preference tuning: SFT, then DPO with LoRA (reference = adapter off)",
           ("004",), ("preference",)),
    Lesson(12, "12_p_transformer.ipynb", "P-Transformer exercise: base vs P vs P + teacher forcing, BLEU-4",
           ("001",), ("translation",)),
    Lesson(13, "13_capstone.ipynb", "Capstone: every method on one task; when to use which", ("all",),
           ("benchmark", "real_capstone", "recipes")),
)


def lesson(number: int) -> Lesson:
    """The lesson with this number."""
    for item in SYLLABUS:
        if item.number == number:
            return item
    raise KeyError(f"No lesson {number}; lessons are numbered 0..{len(SYLLABUS) - 1}.")


def available_lessons(notebook_dir: str | Path) -> list[Lesson]:
    """Lessons whose notebook exists in ``notebook_dir``."""
    root = Path(notebook_dir)
    return [item for item in SYLLABUS if (root / item.notebook).is_file()]
