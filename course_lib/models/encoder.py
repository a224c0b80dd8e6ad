"""A small BERT-style (post-LN) encoder with masked-LM and classification heads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attention import FeedForward, MultiHeadSelfAttention
from .common import BackboneConfig, init_weights
from .gpt import token_vectors
from .outputs import ModelOutput


@dataclass
class EncoderConfig(BackboneConfig):
    """Hyper-parameters of :class:`Encoder` and its task heads."""

    layer_norm_eps: float = 1e-12

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.layer_norm_eps > 0:
            raise ValueError(f"EncoderConfig.layer_norm_eps must be > 0, got {self.layer_norm_eps!r}")


class EncoderEmbeddings(nn.Module):
    """Token + learned position embeddings, then LayerNorm and dropout (as in BERT)."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.tok_embed = nn.Embedding(config.vocab_size, config.d_model)
        self.pos_embed = nn.Embedding(config.max_len, config.d_model)
        self.norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, input_ids: Optional[Tensor] = None, inputs_embeds: Optional[Tensor] = None) -> Tensor:
        """[B, T] token ids (or token vectors ``inputs_embeds`` [B, T, d_model]) -> [B, T, d_model] vectors."""
        tokens = token_vectors(self.tok_embed, input_ids, inputs_embeds)
        pos = torch.arange(tokens.size(1), device=tokens.device)
        return self.drop(self.norm(tokens + self.pos_embed(pos)))


class EncoderLayer(nn.Module):
    """Post-LN block: normalise *after* each residual addition, like the original BERT."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.attn = MultiHeadSelfAttention(config.d_model, config.n_heads, config.dropout, causal=False)
        self.attn_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.mlp = FeedForward(config.d_model, config.d_ff, config.dropout)
        self.mlp_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: Tensor, attention_mask: Optional[Tensor] = None) -> Tensor:
        """Bidirectional attention then MLP, each followed by add & norm."""
        h = self.attn_norm(x + self.drop(self.attn(x, attention_mask)))
        return self.mlp_norm(h + self.drop(self.mlp(h)))


class Encoder(nn.Module):
    """Embeddings followed by a stack of post-LN encoder layers."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = EncoderEmbeddings(config)
        self.layers = nn.ModuleList([EncoderLayer(config) for _ in range(config.n_layers)])
        self.apply(init_weights)

    def forward(self, input_ids: Optional[Tensor] = None, attention_mask: Optional[Tensor] = None,
                inputs_embeds: Optional[Tensor] = None) -> Tensor:
        """Hidden states [B, T, d_model]; without a mask, padding is found from ``pad_token_id``.

        Instead of ``input_ids`` [B, T] one can give token vectors ``inputs_embeds`` [B, T, d_model]
        (positions are still added here); without a mask every position then counts as real.
        """
        given = input_ids if input_ids is not None else inputs_embeds
        if given is not None and given.dim() > 1 and given.size(1) > self.config.max_len:
            raise ValueError(f"Sequence length {given.size(1)} exceeds max_len={self.config.max_len}; "
                             f"allowed lengths: 1..{self.config.max_len}")
        x = self.embeddings(input_ids, inputs_embeds)
        B, T, _ = x.shape
        if attention_mask is None:
            attention_mask = (input_ids != self.config.pad_token_id).long() if input_ids is not None else \
                torch.ones(B, T, dtype=torch.long, device=x.device)
        for layer in self.layers:
            x = layer(x, attention_mask)
        return x


class MLMHead(nn.Module):
    """dense -> gelu -> LayerNorm -> decoder to vocabulary (decoder weight tied to the embeddings)."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.d_model, config.d_model)
        self.act = nn.GELU()
        self.norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(config.d_model, config.vocab_size, bias=True)

    def forward(self, hidden: Tensor) -> Tensor:
        """[B, T, d_model] -> vocabulary logits [B, T, V]."""
        return self.decoder(self.norm(self.act(self.dense(hidden))))


class EncoderForMaskedLM(nn.Module):
    """Encoder + MLM head: predict the original token wherever ``labels != -100``."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.mlm_head = MLMHead(config)
        self.mlm_head.apply(init_weights)
        self.mlm_head.decoder.weight = self.encoder.embeddings.tok_embed.weight  # tie input and output embeddings

    def forward(self, input_ids: Optional[Tensor] = None, attention_mask: Optional[Tensor] = None,
                labels: Optional[Tensor] = None, inputs_embeds: Optional[Tensor] = None) -> ModelOutput:
        """Logits [B, T, V]; loss averaged over positions whose label is not -100 (``inputs_embeds``: see Encoder)."""
        hidden = self.encoder(input_ids, attention_mask, inputs_embeds=inputs_embeds)
        logits = self.mlm_head(hidden)
        loss = None
        if labels is not None:  # no shift here: position t predicts its own (masked) token
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=-100)
        return ModelOutput(loss=loss, logits=logits, hidden_states=hidden)


class ClassificationHead(nn.Module):
    """dropout -> dense -> tanh -> dropout -> out_proj, applied to the [CLS] vector."""

    def __init__(self, d_model: int, num_labels: int, dropout: float) -> None:
        super().__init__()
        self.dense = nn.Linear(d_model, d_model)
        self.act = nn.Tanh()
        self.drop = nn.Dropout(dropout)
        self.out_proj = nn.Linear(d_model, num_labels)

    def forward(self, cls_hidden: Tensor) -> Tensor:
        """[B, d_model] -> class logits [B, num_labels]."""
        x = self.act(self.dense(self.drop(cls_hidden)))
        return self.out_proj(self.drop(x))


class EncoderForSequenceClassification(nn.Module):
    """Encoder (fresh or pretrained) + a classification head on the first token."""

    def __init__(self, config: EncoderConfig, num_labels: int, encoder: Optional[Encoder] = None) -> None:
        super().__init__()
        if not isinstance(num_labels, int) or num_labels < 2:
            raise ValueError(f"num_labels must be an integer >= 2 (use 2 for binary classification), got {num_labels!r}")
        if encoder is not None and encoder.config.d_model != config.d_model:
            raise ValueError(f"encoder.config.d_model ({encoder.config.d_model}) must equal config.d_model ({config.d_model})")
        self.config = config
        self.num_labels = num_labels
        self.encoder = encoder if encoder is not None else Encoder(config)  # a given encoder is reused, not copied
        self.classifier = ClassificationHead(config.d_model, num_labels, config.dropout)
        self.classifier.apply(init_weights)  # only the new head is initialised

    def forward(self, input_ids: Optional[Tensor] = None, attention_mask: Optional[Tensor] = None,
                labels: Optional[Tensor] = None, inputs_embeds: Optional[Tensor] = None) -> ModelOutput:
        """Logits [B, num_labels]; with ``labels`` [B] also the cross-entropy loss (``inputs_embeds``: see Encoder)."""
        hidden = self.encoder(input_ids, attention_mask, inputs_embeds=inputs_embeds)
        logits = self.classifier(hidden[:, 0])  # the [CLS] token sits at position 0
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        return ModelOutput(loss=loss, logits=logits, hidden_states=hidden)
