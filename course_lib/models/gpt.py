"""A small GPT (decoder-only, pre-LN) language model in the spirit of nanoGPT."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attention import FeedForward, MultiHeadSelfAttention
from .common import BackboneConfig, init_weights
from .decoding import greedy_extend
from .outputs import ModelOutput


def token_vectors(tok_embed: nn.Embedding, input_ids: Optional[Tensor], inputs_embeds: Optional[Tensor]) -> Tensor:
    """[B, T, d_model] token vectors: ``tok_embed(input_ids)``, or ``inputs_embeds`` as given (exactly one of them)."""
    if (input_ids is None) == (inputs_embeds is None):
        raise ValueError("Give exactly one of input_ids [B, T] (token ids) or inputs_embeds [B, T, d_model] "
                         f"(token vectors), got {'both' if input_ids is not None else 'neither'}.")
    if input_ids is not None:
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must have shape [B, T], got {tuple(input_ids.shape)}")
        return tok_embed(input_ids)
    if inputs_embeds.dim() != 3 or inputs_embeds.size(-1) != tok_embed.embedding_dim:
        raise ValueError(f"inputs_embeds must have shape [B, T, d_model={tok_embed.embedding_dim}], "
                         f"got {tuple(inputs_embeds.shape)}")
    return inputs_embeds


@dataclass
class GPTConfig(BackboneConfig):
    """Hyper-parameters of :class:`GPT`."""

    eos_token_id: Optional[int] = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.eos_token_id is not None and not 0 <= self.eos_token_id < self.vocab_size:
            raise ValueError(f"GPTConfig.eos_token_id must be None or in [0, {self.vocab_size}), got {self.eos_token_id!r}")


class GPTBlock(nn.Module):
    """Pre-LN transformer block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.attn_norm = nn.LayerNorm(config.d_model)
        self.attn = MultiHeadSelfAttention(config.d_model, config.n_heads, config.dropout, causal=True)
        self.mlp_norm = nn.LayerNorm(config.d_model)
        self.mlp = FeedForward(config.d_model, config.d_ff, config.dropout)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: Tensor, attention_mask: Optional[Tensor] = None) -> Tensor:
        """Run attention then MLP, each as a residual branch."""
        x = x + self.drop(self.attn(self.attn_norm(x), attention_mask))
        x = x + self.drop(self.mlp(self.mlp_norm(x)))
        return x


class GPT(nn.Module):
    """Decoder-only causal language model with learned positions and a tied LM head."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.tok_embed = nn.Embedding(config.vocab_size, config.d_model)
        self.pos_embed = nn.Embedding(config.max_len, config.d_model)
        self.drop = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList([GPTBlock(config) for _ in range(config.n_layers)])
        self.final_norm = nn.LayerNorm(config.d_model)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.apply(init_weights)
        self.lm_head.weight = self.tok_embed.weight  # weight tying: one matrix reads and writes tokens

    def forward(self, input_ids: Optional[Tensor] = None, attention_mask: Optional[Tensor] = None,
                labels: Optional[Tensor] = None, inputs_embeds: Optional[Tensor] = None) -> ModelOutput:
        """Logits [B, T, V]; with ``labels`` also the next-token loss (labels are shifted here).

        Give token ids ``input_ids`` [B, T] or, instead, ready token vectors ``inputs_embeds``
        [B, T, d_model] (what prompt tuning uses); positions 0..T-1 are added either way.
        """
        tokens = token_vectors(self.tok_embed, input_ids, inputs_embeds)
        B, T, _ = tokens.shape
        if T > self.config.max_len:
            raise ValueError(f"Sequence length {T} exceeds max_len={self.config.max_len}; allowed lengths: 1..{self.config.max_len}")
        pos = torch.arange(T, device=tokens.device)
        x = self.drop(tokens + self.pos_embed(pos))
        for layer in self.layers:
            x = layer(x, attention_mask)
        hidden = self.final_norm(x)
        logits = self.lm_head(hidden)

        loss = None
        if labels is not None:
            # Position t predicts token t+1, so drop the last logit and the first label.
            loss = F.cross_entropy(
                logits[:, :-1].reshape(-1, logits.size(-1)), labels[:, 1:].reshape(-1), ignore_index=-100
            )
        return ModelOutput(loss=loss, logits=logits, hidden_states=hidden)

    @torch.no_grad()
    def generate(self, input_ids: Tensor, max_new_tokens: int, temperature: float = 0.0,
                 top_k: Optional[int] = None, eos_token_id: Optional[int] = None,
                 generator: Optional[torch.Generator] = None) -> Tensor:
        """Append up to ``max_new_tokens`` tokens; temperature 0 means greedy decoding."""
        eos = eos_token_id if eos_token_id is not None else self.config.eos_token_id
        return greedy_extend(lambda context: self(context).logits[:, -1, :], input_ids, max_new_tokens,
                             eos_token_id=eos, pad_token_id=self.config.pad_token_id,
                             context_limit=self.config.max_len,  # the model only knows max_len positions
                             temperature=temperature, top_k=top_k, generator=generator)
