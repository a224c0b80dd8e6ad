"""Small evaluation metrics shared by the notebooks."""

from __future__ import annotations

import math

import torch


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of rows whose arg-max logit equals the label."""
    if logits.shape[0] != labels.shape[0]:
        raise ValueError(f"logits has {logits.shape[0]} rows but labels has {labels.shape[0]}.")
    if labels.numel() == 0:
        raise ValueError("accuracy of zero examples is undefined.")
    return float((logits.argmax(-1) == labels).float().mean())


def perplexity(mean_loss: float) -> float:
    """exp(mean cross-entropy in nats): the effective number of equally likely next tokens."""
    if mean_loss < 0:
        raise ValueError(f"a cross-entropy loss cannot be negative, got {mean_loss}.")
    return math.exp(min(mean_loss, 50.0))


def subset_accuracy(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> float:
    """Accuracy on the rows where ``mask`` is True (e.g. sentences with held-out words)."""
    mask = torch.as_tensor(mask, dtype=torch.bool)
    if mask.shape[0] != labels.shape[0]:
        raise ValueError(f"mask has {mask.shape[0]} rows but labels has {labels.shape[0]}.")
    if not mask.any():
        raise ValueError("The mask selects no rows, so the subset accuracy is undefined.")
    return accuracy(logits[mask], labels[mask])
