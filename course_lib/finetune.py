"""Fine-tune a classifier on a task and report it the same way for every method."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn

from .data.collate import ClassificationCollator
from .params import count_parameters, trainable_bytes, training_memory_bytes
from .profiles import Profile, get_device, get_profile
from .train import History, TrainConfig, evaluate, train


def finetune_config(profile: Profile | None = None, **overrides) -> TrainConfig:
    """The fine-tuning recipe of a profile; keyword overrides replace single fields."""
    profile = profile or get_profile()
    base = dict(steps=profile.finetune_steps, batch_size=profile.finetune_batch, lr=profile.finetune_lr,
                eval_every=profile.eval_every, warmup_ratio=0.1, seed=0)
    base.update(overrides)
    return TrainConfig(**base)


@dataclass
class FinetuneResult:
    """One row of a comparison table plus the run's history."""

    name: str
    trainable_params: int
    total_params: int
    trainable_bytes: int
    train_state_bytes: int
    train_seconds: float
    val_accuracy: float
    test_accuracy: float
    history: History

    @property
    def val_loss(self) -> float:
        """Validation loss at the end of training (more sensitive than accuracy near the ceiling)."""
        return self.history.last("val_loss")

    @property
    def trainable_percent(self) -> float:
        """Trainable share of all parameters, in percent."""
        return 100.0 * self.trainable_params / self.total_params

    def row(self) -> dict:
        """The result as a flat dict for a results table."""
        return {
            "method": self.name,
            "trainable params": self.trainable_params,
            "trainable %": round(self.trainable_percent, 3),
            "checkpoint bytes": self.trainable_bytes,
            "train state MB": round(self.train_state_bytes / 2**20, 2),
            "train s": round(self.train_seconds, 1),
            "val acc": round(self.val_accuracy, 4),
            "test acc": round(self.test_accuracy, 4),
        }


def finetune_classifier(model: nn.Module, tokenizer, splits, name: str = "model",
                        config: TrainConfig | None = None, profile: Profile | None = None,
                        device: torch.device | None = None, show_progress: bool = True) -> FinetuneResult:
    """Train ``model`` on ``splits['train']``, evaluate on validation and test, and report."""
    missing = {"train", "validation", "test"} - set(splits)
    if missing:
        raise ValueError(f"splits is missing {sorted(missing)}; it needs train, validation and test.")
    profile = profile or get_profile()
    config = config or finetune_config(profile)
    device = device or get_device()
    collate = ClassificationCollator(tokenizer, max_len=profile.max_len)
    counts = count_parameters(model)
    start = time.perf_counter()
    history = train(model, splits["train"], collate, config, eval_data=splits["validation"], device=device,
                    desc=f"fine-tune {name}", show_progress=show_progress, precision=profile.precision)
    seconds = time.perf_counter() - start
    test = evaluate(model, splits["test"], collate, device)
    return FinetuneResult(
        name=name, trainable_params=counts.trainable, total_params=counts.total,
        trainable_bytes=trainable_bytes(model), train_state_bytes=sum(training_memory_bytes(model).values()),
        train_seconds=seconds,
        val_accuracy=history.last("val_accuracy"), test_accuracy=test["accuracy"], history=history,
    )
