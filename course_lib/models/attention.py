"""Multi-head self-attention and the position-wise feed-forward network.

Both are written out by hand so every projection is a plain ``nn.Linear`` with a
predictable name (``q_proj``, ``k_proj``, ``v_proj``, ``o_proj``, ``fc1``, ``fc2``):
these are the modules that LoRA and friends will later wrap or replace.

Prefix tuning hooks in through :attr:`MultiHeadSelfAttention.prefix` (``None`` by default):
a module called as ``prefix(batch_size)`` that returns extra keys and values
``[B, n_heads, P, d_head]``, placed in front of the layer's own keys and values and
visible to every query (see :mod:`course_lib.peft.prefix_tuning`).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU}


class MultiHeadSelfAttention(nn.Module):
    """softmax(Q K^T / sqrt(d_head) + mask) V, split over ``n_heads`` heads."""

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0, causal: bool = False) -> None:
        super().__init__()
        if d_model % n_heads != 0:
            raise ValueError(
                f"d_model ({d_model}) must be divisible by n_heads ({n_heads}); "
                f"allowed n_heads for this d_model: "
                f"{[h for h in range(1, d_model + 1) if d_model % h == 0]}"
            )
        self.d_model, self.n_heads, self.d_head = d_model, n_heads, d_model // n_heads
        self.causal = causal
        self.q_proj = nn.Linear(d_model, d_model, bias=True)
        self.k_proj = nn.Linear(d_model, d_model, bias=True)
        self.v_proj = nn.Linear(d_model, d_model, bias=True)
        self.o_proj = nn.Linear(d_model, d_model, bias=True)
        self.attn_drop = nn.Dropout(dropout)
        # Prefix tuning: prefix(B) -> (keys, values) [B, n_heads, P, d_head]. A None attribute is not a
        # submodule, so it adds no state-dict keys.
        self.prefix: Optional[nn.Module] = None

    def _split_heads(self, x: Tensor) -> Tensor:
        """[B, T, d_model] -> [B, n_heads, T, d_head]."""
        B, T, _ = x.shape
        return x.view(B, T, self.n_heads, self.d_head).transpose(1, 2)

    def forward(self, x: Tensor, attention_mask: Optional[Tensor] = None) -> Tensor:
        """Attend over ``x`` [B, T, d]; ``attention_mask`` [B, T] has 1 = real token, 0 = padding."""
        B, T, _ = x.shape
        q, k, v = self._split_heads(self.q_proj(x)), self._split_heads(self.k_proj(x)), self._split_heads(self.v_proj(x))
        prefix = getattr(self, "prefix", None)  # getattr: modules pickled before prefixes existed lack it
        n_prefix = 0
        if prefix is not None:  # prefix tuning: P extra keys/values in front of the real ones
            pk, pv = prefix(B)
            if pk.shape != pv.shape or pk.dim() != 4 or pk.shape[:2] != (B, self.n_heads) or pk.size(3) != self.d_head:
                raise ValueError(f"prefix(B) must return keys and values shaped [B, n_heads, P, d_head] = "
                                 f"[{B}, {self.n_heads}, P, {self.d_head}], "
                                 f"got {tuple(pk.shape)} and {tuple(pv.shape)}")
            n_prefix = pk.size(2)
            if n_prefix:  # P = 0 leaves k and v untouched, so the output is exactly the base output
                k, v = torch.cat([pk.to(k.dtype), k], dim=2), torch.cat([pv.to(v.dtype), v], dim=2)

        scores = q @ k.transpose(-2, -1) / math.sqrt(self.d_head)  # [B, H, T, P+T]: query i vs key j

        # Build one boolean "forbidden" mask, broadcastable to [B, H, T, T] (then [B, H, T, P+T]).
        blocked = torch.zeros(1, 1, T, T, dtype=torch.bool, device=x.device)
        if self.causal:  # query i may not look at keys j > i
            blocked = blocked | torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
        if attention_mask is not None:
            if attention_mask.shape != (B, T):
                raise ValueError(f"attention_mask must have shape [B, T] = {(B, T)}, got {tuple(attention_mask.shape)}")
            blocked = blocked | (attention_mask == 0)[:, None, None, :]  # padded keys are invisible
        if n_prefix:  # prefix keys are visible to every query: neither causal nor padding masking applies
            blocked = torch.cat([blocked.new_zeros(*blocked.shape[:-1], n_prefix), blocked], dim=-1)
        # The most negative finite float (not -inf): exp() gives exactly 0, and a row
        # whose keys are all blocked becomes uniform instead of NaN.
        scores = scores.masked_fill(blocked, torch.finfo(scores.dtype).min)

        weights = self.attn_drop(F.softmax(scores, dim=-1))
        out = weights @ v  # [B, H, T, d_head]
        out = out.transpose(1, 2).contiguous().view(B, T, self.d_model)  # merge the heads back
        return self.o_proj(out)


class FeedForward(nn.Module):
    """Position-wise MLP: fc2(dropout(act(fc1(x))))."""

    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.0, activation: str = "gelu") -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        self.fc1 = nn.Linear(d_model, d_ff)
        self.act = _ACTIVATIONS[activation]()
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(d_ff, d_model)

    def forward(self, x: Tensor) -> Tensor:
        """Apply the MLP to every position independently."""
        return self.fc2(self.drop(self.act(self.fc1(x))))
