"""Run profiles (ci / cpu / gpu), device choice and seeding.

Every notebook reads its sizes from the active profile, so the same cells run
in seconds on CI, in minutes on a laptop, and at a larger scale on a GPU.
"""

from __future__ import annotations

import os
import random
from dataclasses import asdict, dataclass, replace

import torch

PROFILE_ENV = "COURSE_PROFILE"


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
    ),
    "cpu": Profile(
        name="cpu", corpus_sentences=20000, task_train=256, task_val=256, task_test=1000,
        max_len=32, d_model=128, n_layers=3, n_heads=4, d_ff=384, vocab_size=640,
        pretrain_steps=800, pretrain_batch=64, pretrain_lr=1.5e-3,
        finetune_steps=150, finetune_batch=32, finetune_lr=5e-4, eval_every=25,
        real_models=True, real_finetune_steps=60, seeds=3,
    ),
    "gpu": Profile(
        name="gpu", corpus_sentences=100000, task_train=256, task_val=512, task_test=2000,
        max_len=48, d_model=256, n_layers=6, n_heads=8, d_ff=1024, vocab_size=640,
        pretrain_steps=6000, pretrain_batch=128, pretrain_lr=6e-4,
        finetune_steps=300, finetune_batch=32, finetune_lr=3e-4, eval_every=50,
        real_models=True, real_finetune_steps=300, seeds=3, precision="bf16",
    ),
}


def default_profile_name() -> str:
    """Return 'gpu' when CUDA is available, otherwise 'cpu'."""
    return "gpu" if torch.cuda.is_available() else "cpu"


def get_profile(name: str | None = None, **overrides) -> Profile:
    """Return the named profile (default: $COURSE_PROFILE, else gpu/cpu by hardware).

    Keyword overrides replace single fields, e.g. ``get_profile("cpu", finetune_steps=50)``.
    """
    name = name or os.environ.get(PROFILE_ENV) or default_profile_name()
    name = name.strip().lower()
    if name not in PROFILES:
        raise ValueError(
            f"Unknown course profile {name!r} (from the argument or ${PROFILE_ENV}). "
            f"Allowed profiles: {', '.join(PROFILES)}."
        )
    profile = PROFILES[name]
    unknown = set(overrides) - set(profile.to_dict())
    if unknown:
        raise ValueError(
            f"Unknown profile field(s) {sorted(unknown)}; allowed fields: {sorted(profile.to_dict())}."
        )
    return replace(profile, **overrides) if overrides else profile


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
