"""Run profiles (ci / cpu / gpu), device choice and seeding.

Every notebook reads its sizes from the active profile, so the same cells run
in seconds on CI, in minutes on a laptop, and at a larger scale on a GPU.
"""

from __future__ import annotations

import os
import random
from dataclasses import asdict, dataclass, fields, is_dataclass, replace
from typing import Any

import torch

PROFILE_ENV = "COURSE_PROFILE"


@dataclass(frozen=True)
class TranslationSizes:
    """Data sizes, model shape and training budget of the P-Transformer exercise (notebook 12)."""

    n_train: int
    n_val: int
    n_test: int
    max_len: int
    d_model: int
    n_layers: int
    n_heads: int
    d_ff: int
    dropout: float
    steps: int
    batch_size: int
    lr: float
    warmup_ratio: float
    eval_every: int
    decode_max_len: int
    label_smoothing: float = 0.0
    layer_teacher_forcing: float = 0.5  # the ratio used for the "P + layer-wise teacher forcing" variant

    def model_kwargs(self) -> dict[str, Any]:
        """The Seq2SeqConfig shape fields (max_len, d_model, n_layers, n_heads, d_ff, dropout, label_smoothing)."""
        return {k: getattr(self, k) for k in ("max_len", "d_model", "n_layers", "n_heads", "d_ff", "dropout",
                                              "label_smoothing")}

    def train_kwargs(self) -> dict[str, Any]:
        """TrainConfig fields (steps, batch_size, lr, warmup_ratio, eval_every)."""
        return {k: getattr(self, k) for k in ("steps", "batch_size", "lr", "warmup_ratio", "eval_every")}


@dataclass(frozen=True)
class SFTSizes:
    """Data sizes and training budgets of Alpaca-style instruction tuning (notebook 10)."""

    n_train: int           # generated training records
    n_test_per_type: int   # test records per instruction type (half as many for the new wording)
    steps: int             # optimizer steps of each course-GPT run
    batch_size: int
    full_lr: float
    lora_lr: float
    lora_r: int
    throughput_steps: int  # steps of each padding/packing timing run
    real_steps: int        # SmolLM2 LoRA steps
    real_batch: int
    real_train: int        # training records for SmolLM2
    real_test: int         # test records for SmolLM2 (before and after)
    real_ppl_texts: int    # real sentences SmolLM2's perplexity is measured on (notebook 09's 4-bit data types)


@dataclass(frozen=True)
class RealSizes:
    """The real track (notebooks 02, 05, 06): MiniLM on rated movie-review sentences, one budget for every method."""

    n_train: int
    n_val: int
    n_test: int
    max_len: int           # tokens per sentence (MiniLM's WordPiece)
    batch_size: int
    steps: int             # the same optimizer steps for every method
    eval_every: int
    lr_grids: dict         # grid name -> learning rates tried on validation (see benchmark.MethodSpec.grid)
    warmup_ratio: float = 0.06


@dataclass(frozen=True)
class Profile:
    """Sizes and step counts for one run profile."""

    name: str
    # data
    corpus_sentences: int
    task_train: int
    task_val: int
    task_test: int
    # backbone shape (shared by the GPT and the encoder)
    max_len: int
    d_model: int
    n_layers: int
    n_heads: int
    d_ff: int
    vocab_size: int
    # training budgets
    pretrain_steps: int
    pretrain_batch: int
    pretrain_lr: float
    finetune_steps: int
    finetune_batch: int
    finetune_lr: float
    eval_every: int
    # real pretrained models (the packaged MiniLM): full runs, or a tiny smoke run where real_models is False
    real_models: bool
    real_finetune_steps: int
    # comparisons whose differences are small repeat over this many seeds (1 in ci)
    seeds: int
    # the lessons' own sizes (notebook 12's translation models, notebook 10's instruction tuning)
    translation: TranslationSizes
    sft: SFTSizes
    real: RealSizes
    # learning rates of the PEFT methods (adapters, LoRA, BitFit, prefix; prompt tuning needs a larger step)
    peft_lr: float = 5e-3
    prompt_lr: float = 3e-2
    # training arithmetic: "fp32", or "bf16" autocast (mixed precision, used on GPUs that support it)
    precision: str = "fp32"

    def to_dict(self) -> dict:
        """Return the profile as a plain dict (for tables and cache keys)."""
        return asdict(self)


PROFILES: dict[str, Profile] = {
    "ci": Profile(
        name="ci", corpus_sentences=3000, task_train=192, task_val=128, task_test=256,
        max_len=32, d_model=64, n_layers=2, n_heads=2, d_ff=128, vocab_size=640,
        pretrain_steps=400, pretrain_batch=64, pretrain_lr=3e-3,
        finetune_steps=120, finetune_batch=32, finetune_lr=1e-3, eval_every=20,
        real_models=False, real_finetune_steps=4, seeds=1,
        translation=TranslationSizes(n_train=512, n_val=64, n_test=128, max_len=32, d_model=32, n_layers=2,
                                     n_heads=2, d_ff=64, dropout=0.0, steps=40, batch_size=32, lr=3e-3,
                                     warmup_ratio=0.1, eval_every=20, decode_max_len=30),
        sft=SFTSizes(n_train=400, n_test_per_type=2, steps=40, batch_size=16, full_lr=3e-3, lora_lr=3e-3, lora_r=8,
                     throughput_steps=4, real_steps=2, real_batch=2, real_train=8, real_test=4, real_ppl_texts=8),
        real=RealSizes(n_train=64, n_val=32, n_test=64, max_len=32, batch_size=8, steps=4, eval_every=2,
                       lr_grids={"full": (1e-4,), "peft": (1e-3,), "head": (3e-3,), "prompt": (3e-2,)}),
    ),
    "cpu": Profile(
        name="cpu", corpus_sentences=20000, task_train=256, task_val=256, task_test=1000,
        max_len=32, d_model=128, n_layers=3, n_heads=4, d_ff=384, vocab_size=640,
        pretrain_steps=800, pretrain_batch=64, pretrain_lr=1.5e-3,
        finetune_steps=150, finetune_batch=32, finetune_lr=5e-4, eval_every=25,
        real_models=True, real_finetune_steps=60, seeds=3,
        translation=TranslationSizes(n_train=20000, n_val=200, n_test=500, max_len=40, d_model=128, n_layers=3,
                                     n_heads=4, d_ff=256, dropout=0.1, steps=800, batch_size=16, lr=1.5e-3,
                                     warmup_ratio=0.05, eval_every=100, decode_max_len=38),
        sft=SFTSizes(n_train=3000, n_test_per_type=12, steps=600, batch_size=32, full_lr=3e-3, lora_lr=3e-3,
                     lora_r=8, throughput_steps=40, real_steps=24, real_batch=4, real_train=96, real_test=36, real_ppl_texts=96),
        real=RealSizes(n_train=2000, n_val=400, n_test=1000, max_len=48, batch_size=16, steps=200, eval_every=50,
                       lr_grids={"full": (3e-5, 1e-4, 3e-4, 1e-3), "peft": (3e-4, 1e-3, 3e-3, 1e-2),
                                 "head": (1e-3, 3e-3, 1e-2, 3e-2), "prompt": (1e-2, 3e-2, 1e-1, 3e-1)}),
    ),
    "gpu": Profile(
        name="gpu", corpus_sentences=100000, task_train=256, task_val=512, task_test=2000,
        max_len=48, d_model=256, n_layers=6, n_heads=8, d_ff=1024, vocab_size=640,
        pretrain_steps=6000, pretrain_batch=128, pretrain_lr=6e-4,
        finetune_steps=300, finetune_batch=32, finetune_lr=3e-4, eval_every=50,
        real_models=True, real_finetune_steps=300, seeds=3, precision="bf16",
        translation=TranslationSizes(n_train=100000, n_val=500, n_test=1000, max_len=40, d_model=256, n_layers=4,
                                     n_heads=8, d_ff=1024, dropout=0.1, steps=8000, batch_size=128, lr=7e-4,
                                     warmup_ratio=0.05, eval_every=500, decode_max_len=38),
        sft=SFTSizes(n_train=8000, n_test_per_type=40, steps=3000, batch_size=64, full_lr=2e-3, lora_lr=2e-3,
                     lora_r=8, throughput_steps=100, real_steps=300, real_batch=16, real_train=4000, real_test=200, real_ppl_texts=1000),
        real=RealSizes(n_train=6000, n_val=1000, n_test=2000, max_len=64, batch_size=32, steps=600, eval_every=100,
                       lr_grids={"full": (3e-5, 1e-4, 3e-4, 1e-3), "peft": (3e-4, 1e-3, 3e-3, 1e-2),
                                 "head": (1e-3, 3e-3, 1e-2, 3e-2), "prompt": (1e-2, 3e-2, 1e-1, 3e-1)}),
    ),
}


def default_profile_name() -> str:
    """Return 'gpu' when CUDA is available, otherwise 'cpu'."""
    return "gpu" if torch.cuda.is_available() else "cpu"


def get_profile(name: str | None = None, **overrides) -> Profile:
    """Return the named profile (default: $COURSE_PROFILE, else gpu/cpu by hardware).

    The name must be exact (``"cpu"``, not ``" CPU "``). Keyword overrides replace single fields, e.g. ``get_profile("cpu", finetune_steps=50)``; a nested size
    group takes a dict of its own fields, e.g. ``get_profile("cpu", translation={"steps": 100})``.
    """
    name = name or os.environ.get(PROFILE_ENV) or default_profile_name()
    if not isinstance(name, str) or name not in PROFILES:  # exact: " GPU " must not quietly mean bf16 on a CPU
        raise ValueError(
            f"Unknown course profile {name!r} (from the argument or ${PROFILE_ENV}). "
            f"Allowed profiles: {', '.join(PROFILES)}."
        )
    profile = PROFILES[name]
    return _replace_fields(profile, overrides, "profile") if overrides else profile


def _replace_fields(obj: Any, overrides: dict, where: str) -> Any:
    """``dataclasses.replace`` that recurses into nested dataclass fields given as dicts; unknown keys are errors."""
    allowed = {f.name for f in fields(obj)}
    unknown = set(overrides) - allowed
    if unknown:
        raise ValueError(f"Unknown {where} field(s) {sorted(unknown)}; allowed fields: {sorted(allowed)}.")
    changes = {}
    for key, value in overrides.items():
        current = getattr(obj, key)
        if is_dataclass(current) and isinstance(value, dict):
            value = _replace_fields(current, value, f"{where}.{key}")
        changes[key] = value
    return replace(obj, **changes)


def get_device(prefer: str | None = None) -> torch.device:
    """Pick the best available device: cuda, then mps, then cpu (or the one asked for)."""
    if prefer is not None:
        allowed = ("cuda", "mps", "cpu")
        if prefer not in allowed:
            raise ValueError(f"Unknown device {prefer!r}; allowed: {', '.join(allowed)}.")
        return torch.device(prefer)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int = 0) -> torch.Generator:
    """Seed Python, NumPy (if present) and torch; return a torch.Generator seeded the same way."""
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}.")
    random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:  # numpy is optional for the library itself
        pass
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    return torch.Generator().manual_seed(seed)
