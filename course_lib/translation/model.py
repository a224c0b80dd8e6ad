"""The encoder-decoder Transformer for translation, the interleaved "P-Transformer", and greedy decoding.

Three variants share exactly the same modules (so the same parameter count):

* ``architecture="base"``: the classic Transformer (Vaswani et al., 2017; PyTorch's
  ``nn.Transformer`` translation tutorial). Every decoder layer cross-attends to the
  output of the *last* encoder layer.
* ``architecture="p"``: encoder and decoder run interleaved, layer by layer: decoder
  layer i cross-attends to the output of encoder layer i (so the first decoder layer
  sees shallow source features and the last one the deepest).
* ``architecture="p"`` with ``layer_teacher_forcing=r > 0``: in training mode, for each
  decoder layer i >= 1 and each sentence, with probability r the layer's input is the
  target embeddings (the decoder input layer) instead of the previous decoder layer's
  output. In eval mode (and so in ``greedy_decode``) this never happens.

Layers are **pre-LN** (as in the course's GPT; ``nn.Transformer(norm_first=True)``):
``x = x + sublayer(norm(x))``, with a final LayerNorm after the decoder. Pre-LN trains
stably at the high learning rates a few-minute CPU budget needs (post-LN, the
tutorial's default, stalled at the unigram loss in our runs at lr 2e-3). Because the
residual stream of an intermediate encoder layer is not normalised, every decoder
layer owns a ``memory_norm`` LayerNorm that it applies to whatever memory it attends
to (the last encoder layer's output for base, encoder layer i's for P), so the
three variants still have identical modules. Token embeddings use the course's
N(0, 0.02) init and are multiplied by sqrt(d) like the tutorial's, plus sinusoidal
positions (in our runs this learned faster than unit-scale N(0, 1/d) * sqrt(d) embeddings).

``greedy_decode`` encodes the source once, then runs the course's shared decoding loop
(:func:`course_lib.models.decoding.greedy_extend`) with a next-token function that re-runs
the decoder over the target prefix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..models.attention import FeedForward, MultiHeadSelfAttention
from ..models.common import ConfigMixin, init_weights
from ..models.decoding import greedy_extend
from ..models.outputs import ModelOutput

ARCHITECTURES = ("base", "p")


@dataclass
class Seq2SeqConfig(ConfigMixin):
    """Hyper-parameters of :class:`Seq2SeqTransformer` (validated on creation)."""

    src_vocab_size: int
    tgt_vocab_size: int
    max_len: int = 64
    d_model: int = 128
    n_layers: int = 3          # the same count for the encoder and the decoder
    n_heads: int = 4
    d_ff: int = 512
    dropout: float = 0.1
    pad_token_id: int = 0
    bos_token_id: int = 2
    eos_token_id: int = 3
    architecture: str = "base"  # "base" or "p"
    layer_teacher_forcing: float = 0.0  # only for architecture="p"
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        name = type(self).__name__
        for field in ("src_vocab_size", "tgt_vocab_size", "max_len", "d_model", "n_layers", "n_heads", "d_ff"):
            value = getattr(self, field)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}.{field} must be a positive integer (>= 1), got {value!r}")
        if self.d_model % self.n_heads != 0:
            divisors = [h for h in range(1, self.d_model + 1) if self.d_model % h == 0]
            raise ValueError(f"{name}: d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads}); "
                             f"allowed n_heads for d_model={self.d_model}: {divisors}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"{name}.dropout must be in [0, 1), got {self.dropout!r}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"{name}.label_smoothing must be in [0, 1), got {self.label_smoothing!r}")
        if not 0 <= self.pad_token_id < min(self.src_vocab_size, self.tgt_vocab_size):
            raise ValueError(f"{name}.pad_token_id must be a valid id in both vocabularies, got {self.pad_token_id!r}")
        for field in ("bos_token_id", "eos_token_id"):
            if not 0 <= getattr(self, field) < self.tgt_vocab_size:
                raise ValueError(f"{name}.{field} must be in [0, {self.tgt_vocab_size}), got {getattr(self, field)!r}")
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"{name}.architecture must be one of {ARCHITECTURES}, got {self.architecture!r}")
        if not 0.0 <= self.layer_teacher_forcing <= 1.0:
            raise ValueError(f"{name}.layer_teacher_forcing is a probability in [0, 1], "
                             f"got {self.layer_teacher_forcing!r}")
        if self.layer_teacher_forcing > 0 and self.architecture != "p":
            raise ValueError(f"{name}.layer_teacher_forcing > 0 needs architecture='p' (the P-Transformer), "
                             f"got architecture={self.architecture!r}")


def sinusoidal_positions(max_len: int, d_model: int) -> Tensor:
    """PE[pos, 2i] = sin(pos / 10000^(2i/d)), PE[pos, 2i+1] = cos(...): [max_len, d_model]."""
    pos = torch.arange(max_len, dtype=torch.float32)[:, None]
    inv_freq = torch.exp(-math.log(10000.0) * torch.arange(0, d_model, 2, dtype=torch.float32) / d_model)
    pe = torch.zeros(max_len, d_model)
    pe[:, 0::2] = torch.sin(pos * inv_freq)
    pe[:, 1::2] = torch.cos(pos * inv_freq)[:, : d_model // 2]
    return pe


class TokenEmbedding(nn.Module):
    """Token embedding * sqrt(d_model) + sinusoidal positions, then dropout."""

    def __init__(self, vocab_size: int, config: Seq2SeqConfig) -> None:
        super().__init__()
        self.scale = math.sqrt(config.d_model)
        self.tok_embed = nn.Embedding(vocab_size, config.d_model)
        self.register_buffer("positions", sinusoidal_positions(config.max_len, config.d_model), persistent=False)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, ids: Tensor) -> Tensor:
        """[B, T] ids -> [B, T, d_model]."""
        return self.drop(self.tok_embed(ids) * self.scale + self.positions[: ids.size(1)])


class MultiHeadCrossAttention(nn.Module):
    """Queries from the decoder, keys and values from the encoder memory: softmax(Q K^T / sqrt(d_head)) V."""

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if d_model % n_heads != 0:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        self.d_model, self.n_heads, self.d_head = d_model, n_heads, d_model // n_heads
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.o_proj = nn.Linear(d_model, d_model)
        self.attn_drop = nn.Dropout(dropout)

    def _split_heads(self, x: Tensor) -> Tensor:
        """[B, T, d_model] -> [B, n_heads, T, d_head]."""
        B, T, _ = x.shape
        return x.view(B, T, self.n_heads, self.d_head).transpose(1, 2)

    def forward(self, x: Tensor, memory: Tensor, memory_mask: Optional[Tensor] = None) -> Tensor:
        """``x`` [B, Tq, d] attends over ``memory`` [B, Tk, d]; ``memory_mask`` [B, Tk]: 1 = real, 0 = padding."""
        B, Tq, _ = x.shape
        q = self._split_heads(self.q_proj(x))
        k, v = self._split_heads(self.k_proj(memory)), self._split_heads(self.v_proj(memory))
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.d_head)  # [B, H, Tq, Tk]
        if memory_mask is not None:  # padded source tokens are invisible
            scores = scores.masked_fill((memory_mask == 0)[:, None, None, :], torch.finfo(scores.dtype).min)
        weights = self.attn_drop(F.softmax(scores, dim=-1))
        out = (weights @ v).transpose(1, 2).contiguous().view(B, Tq, self.d_model)
        return self.o_proj(out)


class Seq2SeqEncoderLayer(nn.Module):
    """Pre-LN: x = x + self_attn(norm(x)); x = x + ffn(norm(x))."""

    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        self.self_attn_norm = nn.LayerNorm(config.d_model)
        self.self_attn = MultiHeadSelfAttention(config.d_model, config.n_heads, config.dropout, causal=False)
        self.mlp_norm = nn.LayerNorm(config.d_model)
        self.mlp = FeedForward(config.d_model, config.d_ff, config.dropout, activation="relu")
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: Tensor, src_mask: Optional[Tensor] = None) -> Tensor:
        """[B, S, d] -> [B, S, d]; ``src_mask`` [B, S]: 1 = real token, 0 = padding."""
        x = x + self.drop(self.self_attn(self.self_attn_norm(x), src_mask))
        return x + self.drop(self.mlp(self.mlp_norm(x)))


class Seq2SeqDecoderLayer(nn.Module):
    """Pre-LN: causal self-attention, cross-attention to a (normalised) memory, feed-forward."""

    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        self.self_attn_norm = nn.LayerNorm(config.d_model)
        self.self_attn = MultiHeadSelfAttention(config.d_model, config.n_heads, config.dropout, causal=True)
        self.cross_attn_norm = nn.LayerNorm(config.d_model)
        self.memory_norm = nn.LayerNorm(config.d_model)  # normalises the encoder state this layer reads
        self.cross_attn = MultiHeadCrossAttention(config.d_model, config.n_heads, config.dropout)
        self.mlp_norm = nn.LayerNorm(config.d_model)
        self.mlp = FeedForward(config.d_model, config.d_ff, config.dropout, activation="relu")
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: Tensor, memory: Tensor, src_mask: Optional[Tensor] = None,
                tgt_mask: Optional[Tensor] = None) -> Tensor:
        """[B, T, d] -> [B, T, d], reading ``memory`` [B, S, d] (one encoder layer's output)."""
        x = x + self.drop(self.self_attn(self.self_attn_norm(x), tgt_mask))
        x = x + self.drop(self.cross_attn(self.cross_attn_norm(x), self.memory_norm(memory), src_mask))
        return x + self.drop(self.mlp(self.mlp_norm(x)))


class Seq2SeqTransformer(nn.Module):
    """Encoder-decoder Transformer; ``config.architecture`` picks base or P (interleaved) cross-attention."""

    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        self.config = config
        self.src_embed = TokenEmbedding(config.src_vocab_size, config)
        self.tgt_embed = TokenEmbedding(config.tgt_vocab_size, config)
        self.encoder_layers = nn.ModuleList([Seq2SeqEncoderLayer(config) for _ in range(config.n_layers)])
        self.decoder_layers = nn.ModuleList([Seq2SeqDecoderLayer(config) for _ in range(config.n_layers)])
        self.final_norm = nn.LayerNorm(config.d_model)  # pre-LN: normalise the last decoder state
        self.generator = nn.Linear(config.d_model, config.tgt_vocab_size)  # the output head
        self.apply(init_weights)  # N(0, 0.02) for every Linear and Embedding weight, zero biases

    def _check_len(self, T: int, what: str) -> None:
        if T > self.config.max_len:
            raise ValueError(f"{what} length {T} exceeds max_len={self.config.max_len}; "
                             f"allowed: 1..{self.config.max_len}")

    def encode(self, src_ids: Tensor, src_mask: Optional[Tensor] = None) -> list[Tensor]:
        """Run the encoder; return the output of *every* encoder layer (the P-Transformer needs them all).

        These are raw (un-normalised) residual-stream states; each decoder layer's ``memory_norm`` normalises them.
        """
        self._check_len(src_ids.size(1), "Source")
        if src_mask is None:
            src_mask = (src_ids != self.config.pad_token_id).long()
        x, states = self.src_embed(src_ids), []
        for layer in self.encoder_layers:
            x = layer(x, src_mask)
            states.append(x)
        return states

    def memory_for_layer(self, encoder_states: list[Tensor], i: int) -> Tensor:
        """What decoder layer i cross-attends to: the last encoder layer (base) or encoder layer i (P)."""
        return encoder_states[i] if self.config.architecture == "p" else encoder_states[-1]

    def decode(self, tgt_input_ids: Tensor, encoder_states: list[Tensor], src_mask: Optional[Tensor] = None,
               tgt_mask: Optional[Tensor] = None) -> Tensor:
        """Run the decoder over ``tgt_input_ids`` [B, T]; return the normalised last decoder states [B, T, d]."""
        self._check_len(tgt_input_ids.size(1), "Target")
        embedded = self.tgt_embed(tgt_input_ids)
        ratio = self.config.layer_teacher_forcing if self.training else 0.0
        x = embedded
        for i, layer in enumerate(self.decoder_layers):
            if i > 0 and ratio > 0:
                # Layer-wise teacher forcing: per sentence, feed the target embeddings instead of layer i-1's output.
                use_embeddings = torch.rand(x.size(0), 1, 1, device=x.device) < ratio
                x = torch.where(use_embeddings, embedded, x)
            x = layer(x, self.memory_for_layer(encoder_states, i), src_mask, tgt_mask)
        return self.final_norm(x)

    def forward(self, src_ids: Tensor, tgt_input_ids: Tensor, src_mask: Optional[Tensor] = None,
                tgt_mask: Optional[Tensor] = None, labels: Optional[Tensor] = None) -> ModelOutput:
        """Logits [B, T, V_tgt]; with ``labels`` (already shifted by the collator, pad = -100) also the loss."""
        if src_mask is None:
            src_mask = (src_ids != self.config.pad_token_id).long()
        hidden = self.decode(tgt_input_ids, self.encode(src_ids, src_mask), src_mask, tgt_mask)
        logits = self.generator(hidden)
        loss = None
        if labels is not None:  # position t predicts labels[t] = the target token after tgt_input_ids[t]
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=-100,
                                   label_smoothing=self.config.label_smoothing)
        return ModelOutput(loss=loss, logits=logits, hidden_states=hidden)

    @torch.no_grad()
    def greedy_decode(self, src_ids: Tensor, max_len: Optional[int] = None,
                      src_mask: Optional[Tensor] = None) -> list[list[int]]:
        """Translate a batch greedily: start from BOS, append the arg-max token, stop each row at EOS.

        Returns one list of target ids per row, without BOS and EOS. ``max_len`` caps the
        number of generated tokens (default and upper bound: ``config.max_len - 1``).
        """
        cfg = self.config
        limit = cfg.max_len - 1 if max_len is None else min(max_len, cfg.max_len - 1)
        if limit < 1:
            raise ValueError(f"max_len must be >= 1, got {max_len}")
        was_training = self.training
        self.eval()
        if src_mask is None:
            src_mask = (src_ids != cfg.pad_token_id).long()
        states = self.encode(src_ids, src_mask)  # the source is encoded once

        def next_logits(ys: Tensor) -> Tensor:
            """Logits [B, V] of the token after the prefix ``ys`` [B, T]."""
            # No KV cache: the whole prefix is re-run each step (fine for short sentences).
            return self.generator(self.decode(ys, states, src_mask)[:, -1])

        bos = torch.full((src_ids.size(0), 1), cfg.bos_token_id, dtype=torch.long, device=src_ids.device)
        # Finished rows emit padding; the loop stops once every row has emitted EOS.
        ys = greedy_extend(next_logits, bos, limit, eos_token_id=cfg.eos_token_id, pad_token_id=cfg.pad_token_id)
        self.train(was_training)
        rows = ys[:, 1:].tolist()
        return [row[: row.index(cfg.eos_token_id)] if cfg.eos_token_id in row else row for row in rows]
