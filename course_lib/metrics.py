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


def subspace_similarity(A1: torch.Tensor, A2: torch.Tensor) -> torch.Tensor:
    """LoRA paper, Sec. 7: phi(i, j) = ||V1[:, :i]^T V2[:, :j]||_F^2 / min(i, j) for the right singular vectors.

    ``A1`` [r1, d] and ``A2`` [r2, d] are LoRA down-projections; the result is an [r1, r2] matrix in [0, 1]:
    1 means the top-i directions of one lie inside the span of the top-j directions of the other.
    """
    if A1.dim() != 2 or A2.dim() != 2 or A1.shape[1] != A2.shape[1]:
        raise ValueError(f"Need two matrices [r1, d] and [r2, d] with the same d, got {tuple(A1.shape)} and "
                         f"{tuple(A2.shape)}.")
    V1 = torch.linalg.svd(A1.double(), full_matrices=False).Vh.T   # [d, r1], columns by singular value
    V2 = torch.linalg.svd(A2.double(), full_matrices=False).Vh.T   # [d, r2]
    overlap = (V1.T @ V2) ** 2                                       # [r1, r2]
    cumulative = overlap.cumsum(0).cumsum(1)                         # ||V1[:, :i]^T V2[:, :j]||_F^2
    i = torch.arange(1, A1.shape[0] + 1, dtype=torch.float64)[:, None]
    j = torch.arange(1, A2.shape[0] + 1, dtype=torch.float64)[None, :]
    return (cumulative / torch.minimum(i, j)).float()
