"""Parameter accounting: trainable vs total, per-module tables, bytes on disk."""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ParamCount:
    """Trainable and total parameter counts of a model."""

    trainable: int
    total: int

    @property
    def percent(self) -> float:
        """Trainable share of all parameters, in percent."""
        return 100.0 * self.trainable / self.total if self.total else 0.0

    def __str__(self) -> str:
        return (
            f"trainable params: {self.trainable:,d} || all params: {self.total:,d} "
            f"|| trainable%: {self.percent:.4f}"
        )


def _unique_parameters(model: nn.Module):
    """Yield (name, parameter) once per tensor, so tied weights count once."""
    seen: set[int] = set()
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in seen:
            continue
        seen.add(id(p))
        yield name, p


def quantized_weight_count(model: nn.Module) -> int:
    """Weights held in packed low-bit buffers (modules flagged ``stores_quantized_weight``, e.g. Linear4bit)."""
    return sum(m.in_features * m.out_features for m in model.modules() if getattr(m, "stores_quantized_weight", False))


def count_parameters(model: nn.Module) -> ParamCount:
    """Count trainable and total parameters (tied weights once; quantized weights count as frozen parameters)."""
    trainable, total = 0, quantized_weight_count(model)
    for _, p in _unique_parameters(model):
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    return ParamCount(trainable=trainable, total=total)


def print_trainable_parameters(model: nn.Module) -> ParamCount:
    """Print counts in peft's format and return them."""
    count = count_parameters(model)
    print(count)
    return count


def parameter_table(model: nn.Module, depth: int = 2) -> list[dict]:
    """Per-module rows (module, params, trainable, share %) grouped at a name depth.

    ``depth=2`` groups ``layers.0.attn.q_proj.weight`` under ``layers.0``.
    """
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}.")
    rows: dict[str, dict] = {}
    total = count_parameters(model).total
    for name, p in _unique_parameters(model):
        key = ".".join(name.split(".")[:depth]) if "." in name else name
        row = rows.setdefault(key, {"module": key, "params": 0, "trainable": 0})
        row["params"] += p.numel()
        if p.requires_grad:
            row["trainable"] += p.numel()
    for row in rows.values():
        row["share %"] = round(100.0 * row["params"] / total, 2) if total else 0.0
    return list(rows.values())


# Component groups by parameter name, in the order a reader meets them.
COMPONENT_PATTERNS: dict[str, str] = {
    "embeddings": r"embed",
    "attention": r"(^|\.)attn\.",
    "feed-forward (MLP)": r"(^|\.)mlp\.",
    "layer norms": r"norm",
    "task / LM head": r".*",
}


def parameter_breakdown(model: nn.Module) -> dict[str, int]:
    """Parameter counts per component (embeddings, attention, MLP, norms, head)."""
    counts = {group: 0 for group in COMPONENT_PATTERNS}
    for name, p in _unique_parameters(model):
        for group, pattern in COMPONENT_PATTERNS.items():
            if re.search(pattern, name):
                counts[group] += p.numel()
                break
    return counts


def trainable_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The trainable tensors only: what a fine-tuning run has to store per task."""
    return {n: p.detach().cpu().contiguous() for n, p in _unique_parameters(model) if p.requires_grad}


def state_dict_bytes(tensors: dict[str, torch.Tensor]) -> int:
    """Size in bytes of these tensors serialized as a safetensors file."""
    from safetensors.torch import save

    if not tensors:
        return 0
    return len(save({n: t.detach().cpu().contiguous() for n, t in tensors.items()}))


def trainable_bytes(model: nn.Module) -> int:
    """Bytes on disk (safetensors) of the model's trainable parameters."""
    return state_dict_bytes(trainable_state_dict(model))


def training_memory_bytes(model: nn.Module, bytes_per_value: int = 4) -> dict[str, int]:
    """Memory of weights (as stored: parameters + buffers, so 4-bit weights count as 4 bits), gradients and
    AdamW's two moment buffers (which exist only for trainable params, at ``bytes_per_value`` each)."""
    count = count_parameters(model)
    stored = sum(p.numel() * p.element_size() for _, p in _unique_parameters(model))
    stored += sum(b.numel() * b.element_size() for b in model.buffers())
    return {
        "weights": stored,
        "gradients": count.trainable * bytes_per_value,
        "adamw states": 2 * count.trainable * bytes_per_value,
    }


def human_bytes(n: float) -> str:
    """Format a byte count as B / KB / MB / GB (powers of 1024)."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")
