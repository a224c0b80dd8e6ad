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



@torch.no_grad()
def text_nll(model: torch.nn.Module, tokenizer, texts: list[str], max_len: int = 64,
             batch_size: int = 16) -> torch.Tensor:
    """Per text, [summed next-token loss in nats, tokens predicted] under a Hugging Face causal LM: ``[n, 2]``.

    Each text is scored on its own (padding never counts), truncated to ``max_len`` tokens; every token but
    the first is predicted from the ones before it.
    """
    if not texts:
        raise ValueError("text_nll needs at least one text.")
    if max_len < 2:
        raise ValueError(f"max_len must be >= 2 (a token to predict from), got {max_len}.")
    device = next(model.parameters()).device
    rows = []
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(list(texts[start:start + batch_size]), return_tensors="pt", padding=True,
                              truncation=True, max_length=max_len).to(device)
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
            targets = batch["input_ids"][:, 1:].masked_fill(batch["attention_mask"][:, 1:] == 0, -100)
            losses = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), targets, ignore_index=-100,
                                                       reduction="none")
            rows.append(torch.stack([losses.sum(1), (targets != -100).sum(1).float()], dim=1).double().cpu())
    finally:
        model.train(was_training)
    return torch.cat(rows)


def text_perplexity(nll: torch.Tensor) -> float:
    """Perplexity from :func:`text_nll`'s rows: exp(total loss / total tokens)."""
    tokens = float(nll[:, 1].sum())
    if tokens == 0:
        raise ValueError("The texts have no token to predict (each needs at least two tokens).")
    return perplexity(float(nll[:, 0].sum()) / tokens)


def bootstrap_ratio(nll_a: torch.Tensor, nll_b: torch.Tensor, samples: int = 1000, seed: int = 0) -> tuple[float, float]:
    """A 90% interval for perplexity(a) / perplexity(b), resampling the same texts for both (paired bootstrap)."""
    if nll_a.shape != nll_b.shape:
        raise ValueError(f"paired texts needed: shapes {tuple(nll_a.shape)} and {tuple(nll_b.shape)} differ.")
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, nll_a.shape[0], (samples, nll_a.shape[0]), generator=g)
    a, b = nll_a[idx].sum(1), nll_b[idx].sum(1)          # [samples, 2]
    log_ratio = a[:, 0] / a[:, 1] - b[:, 0] / b[:, 1]
    low, high = torch.quantile(log_ratio, torch.tensor([0.05, 0.95], dtype=log_ratio.dtype))
    return math.exp(float(low)), math.exp(float(high))
