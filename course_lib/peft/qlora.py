"""QLoRA (Dettmers et al. 2023) = a 4-bit NF4 base (:mod:`.quant`) + trainable LoRA adapters (:mod:`.lora`).

The two halves are independent methods; this module only puts them together in the right order:
check LoRA's arguments, quantize the frozen base, then add and train LoRA on top of the 4-bit
layers (the LoRA weights stay in the compute dtype, the base stays 4-bit).
"""

from __future__ import annotations

from typing import Iterable

from torch import nn

from .freezing import DEFAULT_HEAD_PATTERNS
from .lora import add_lora, check_rank, find_targets, mark_lora_trainable
from .quant import quantize_model


def prepare_qlora(model: nn.Module, lora_targets: str | Iterable[str] = ("q_proj", "v_proj"), r: int = 8,
                  alpha: float = 16, name: str = "default", dropout: float = 0.0,
                  head_patterns: Iterable[str] = DEFAULT_HEAD_PATTERNS, **quant_kwargs) -> dict[str, list[str]]:
    """QLoRA: quantize_model(**quant_kwargs), add LoRA ``name`` on lora_targets, mark it trainable; say what changed.

    The result has the quantized paths ("quantized"), the LoRA paths ("lora") and the trainable
    parameter names ("trainable"). Pass ``head_patterns=()`` for models without a new task head.
    """
    lora_targets = lora_targets if isinstance(lora_targets, str) else list(lora_targets)
    check_rank(model, find_targets(model, lora_targets), r)  # before quantizing anything
    quantized = quantize_model(model, **quant_kwargs)
    lora = add_lora(model, name, lora_targets, r=r, alpha=alpha, dropout=dropout)
    trainable = mark_lora_trainable(model, name, head_patterns)
    return {"quantized": quantized, "lora": lora, "trainable": trainable}
