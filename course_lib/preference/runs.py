"""One DPO run as the preference notebook and its solutions make it: a LoRA policy on the SFT model, trained with
:class:`~course_lib.preference.dpo.DPOModel` through the one training loop, then measured."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import torch
from torch import nn

from ..peft.lora import add_lora, mark_lora_trainable
from ..train import History, TrainConfig, train
from .dpo import DPOModel, preference_metrics

GPT_PROJECTIONS: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "fc1", "fc2")


def lora_policy(model: nn.Module, r: int, seed: int = 0, target_modules: Iterable[str] = GPT_PROJECTIONS,
                name: str = "dpo") -> nn.Module:
    """A copy of ``model`` with a fresh LoRA adapter (alpha = 2r) on ``target_modules``; only A and B train."""
    torch.manual_seed(seed)
    policy = copy.deepcopy(model)
    add_lora(policy, name, target_modules=list(target_modules), r=r, alpha=2 * r)
    mark_lora_trainable(policy, name, head_patterns=())
    return policy


@dataclass
class DPORun:
    """A trained DPO model with its history, held-out preference metrics, answer scores and KL to the reference."""

    model: DPOModel
    history: History
    heldout: dict[str, float]
    scores: Any
    kl: float


def run_dpo(policy: nn.Module, beta: float, train_examples: Sequence, heldout_examples: Sequence,
            collate_fn: Callable, config: TrainConfig, score: Callable[[nn.Module], Any],
            kl: Callable[[nn.Module, nn.Module | None], float], reference: nn.Module | None = None,
            device: torch.device | None = None, desc: str = "DPO", show_progress: bool = True) -> DPORun:
    """Train ``policy`` with DPO (held-out metrics every eval), then ``score(policy)`` and ``kl(policy, reference)``."""
    model = DPOModel(policy, beta=beta, reference=reference)
    history = train(model, train_examples, collate_fn, config, eval_data=heldout_examples, device=device, desc=desc,
                    show_progress=show_progress)
    return DPORun(model, history, preference_metrics(model, heldout_examples, collate_fn, device=device),
                  score(model.policy), kl(model.policy, reference))
