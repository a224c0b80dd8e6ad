"""Fine-tune a classifier on a task and report it the same way for every method.

:func:`run_finetune` is the one run helper the method notebooks use: a fresh classifier on the
pretrained base, a method's ``prepare`` step (see :mod:`course_lib.recipes`), the profile's
fine-tuning recipe at the method's learning rate, and one :class:`FinetuneResult`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch
from torch import nn

from .data.collate import ClassificationCollator
from .params import count_parameters, trainable_bytes, training_memory_bytes
from .pretrain import PretrainedBase, encoder_classifier
from .profiles import Profile, get_device
from .train import History, TrainConfig, evaluate, train


def finetune_config(profile: Profile, **overrides: Any) -> TrainConfig:
    """The fine-tuning recipe of a profile (its steps, batch, lr, precision); keyword overrides replace fields."""
    base = dict(steps=profile.finetune_steps, batch_size=profile.finetune_batch, lr=profile.finetune_lr,
                eval_every=profile.eval_every, warmup_ratio=0.1, seed=0, precision=profile.precision)
    base.update(overrides)
    return TrainConfig(**base)


@dataclass
class FinetuneResult:
    """One row of a comparison table plus the run's history (and the trained model, when kept)."""

    name: str
    trainable_params: int
    total_params: int
    trainable_bytes: int
    train_state_bytes: int
    train_seconds: float
    val_accuracy: float
    test_accuracy: float
    history: History
    model: Optional[nn.Module] = field(default=None, repr=False)

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


def finetune_classifier(model: nn.Module, tokenizer: Any, splits: Any, config: TrainConfig, max_len: int,
                        name: str = "model", device: Optional[torch.device] = None,
                        show_progress: bool = True) -> FinetuneResult:
    """Train ``model`` on ``splits['train']`` (inputs cut to ``max_len`` tokens), evaluate on validation and test."""
    missing = {"train", "validation", "test"} - set(splits)
    if missing:
        raise ValueError(f"splits is missing {sorted(missing)}; it needs train, validation and test.")
    device = device or get_device()
    collate = ClassificationCollator(tokenizer, max_len=max_len)
    counts = count_parameters(model)
    start = time.perf_counter()
    history = train(model, splits["train"], collate, config, eval_data=splits["validation"], device=device,
                    desc=f"fine-tune {name}", show_progress=show_progress)
    seconds = time.perf_counter() - start
    test = evaluate(model, splits["test"], collate, device)
    return FinetuneResult(
        name=name, trainable_params=counts.trainable, total_params=counts.total,
        trainable_bytes=trainable_bytes(model), train_state_bytes=sum(training_memory_bytes(model).values()),
        train_seconds=seconds, val_accuracy=history.last("val_accuracy"), test_accuracy=test["accuracy"],
        history=history, model=model,
    )


def run_finetune(base: PretrainedBase, splits: Any, profile: Profile,
                 prepare: Optional[Callable[[nn.Module], Optional[nn.Module]]] = None, name: str = "model",
                 lr: Optional[float] = None, steps: Optional[int] = None, seed: int = 0,
                 device: Optional[torch.device] = None, show_progress: bool = True) -> FinetuneResult:
    """Fresh classifier on ``base`` (seeded) -> ``prepare(model)`` (a method) -> fine-tune -> result (with ``.model``).

    ``prepare`` marks what trains (None: everything, full fine-tuning) and may return a wrapper to train instead
    (prompt tuning). ``lr`` defaults to the profile's full fine-tuning rate; PEFT methods pass ``profile.peft_lr``.
    """
    model = encoder_classifier(splits["train"].features["label"].num_classes, base, seed=seed)
    if prepare is not None:
        model = prepare(model) or model
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError(f"{name!r}: prepare() left no trainable parameter")
    config = finetune_config(profile, lr=lr or profile.finetune_lr, steps=steps or profile.finetune_steps, seed=seed)
    return finetune_classifier(model, base.tokenizer, splits, config, profile.max_len, name=name, device=device,
                               show_progress=show_progress)
