"""The small record every course model returns from ``forward``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from torch import Tensor


@dataclass
class ModelOutput:
    """Loss (when labels were given), logits and the last layer's hidden states."""

    loss: Optional[Tensor]
    logits: Tensor
    hidden_states: Optional[Tensor] = None  # final layer hidden states, [B, T, d_model]
