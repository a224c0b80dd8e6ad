"""Prefix tuning (Li & Liang 2021): trainable key/value prefixes in every attention layer of a frozen model.

Every attention layer ``l`` gets its own trainable key and value prefixes ``P_k, P_v`` (``n x d``,
split over the heads like ``K`` and ``V``) that every query can attend to::

    head = softmax(q [P_k; K]^T / sqrt(d_head)) [P_v; V]

The prefixes are not tokens: nothing is added to the input sequence, no position is used,
and the causal and padding masks do not apply to them. Training ``P`` directly is unstable,
so Li & Liang reparametrise it while training::

    [P_k, P_v for all layers] = MLP(P'),   P' in R^{n x d},   MLP: Linear(d, hidden) -> tanh -> Linear(hidden, 2 L d)

After training, the MLP output is computed once and stored (:meth:`PrefixEncoder.fold_reparametrization`):
the MLP is dropped and ``2 * L * n * d`` numbers remain per task.

:func:`add_prefix_tuning` edits a course model in place: it stores one :class:`PrefixEncoder` as
``model.prefix_encoder`` and hooks each :class:`~course_lib.models.attention.MultiHeadSelfAttention`
to its slice of it; in a Hugging Face BERT-style encoder it replaces each ``attention.self`` by
:class:`HFPrefixSelfAttention`, which runs the same projections with the prefixes in front (peft does this
through ``past_key_values``, which BERT no longer accepts in transformers 5). Saving and loading in peft's format: :mod:`course_lib.peft.prompt_files`.
"""

from __future__ import annotations

import math
from typing import Iterable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..models.attention import MultiHeadSelfAttention
from .freezing import DEFAULT_HEAD_PATTERNS, freeze_all, unfreeze_where
from .spine import check_count, set_submodule, unfreeze_head

PREFIX_INIT_STD = 0.02          # direct prefixes and the MLP's weights start N(0, 0.02), like the course models


def prefix_param_count(n_layers: int, n_prefix: int, d_model: int, hidden: Optional[int] = None) -> int:
    """Prefix tuning: ``2 * L * n * d`` (a key and a value prefix per layer, folded);
    with ``hidden``, the training-time count of the reparametrisation ``n*d + (d*h + h) + (h*2Ld + 2Ld)``."""
    if hidden is None:
        return 2 * n_layers * n_prefix * d_model
    out = 2 * n_layers * d_model
    return n_prefix * d_model + (d_model * hidden + hidden) + (hidden * out + out)


class PrefixEncoder(nn.Module):
    """Key/value prefixes for L layers, ``[L, 2, n_prefix, d]``: direct (``prefix``) or ``MLP(embedding)``."""

    def __init__(self, n_layers: int, n_prefix: int, d_model: int, reparametrize: bool = True,
                 hidden: Optional[int] = None, seed: int = 0) -> None:
        super().__init__()
        check_count(n_prefix, "n_prefix")
        for value, what in ((n_layers, "n_layers"), (d_model, "d_model")):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{what} must be a positive integer, got {value!r}")
        if hidden is not None and (not isinstance(hidden, int) or hidden < 1):
            raise ValueError(f"hidden must be None (= d_model) or a positive integer, got {hidden!r}")
        if hidden is not None and not reparametrize:
            raise ValueError("hidden is the width of the reparametrisation MLP: it needs reparametrize=True")
        self.n_layers, self.n_prefix, self.d_model = n_layers, n_prefix, d_model
        self.hidden = (hidden or d_model) if reparametrize else None
        g = torch.Generator().manual_seed(seed)
        if reparametrize:
            self.embedding = nn.Parameter(torch.randn(n_prefix, d_model, generator=g))  # P', like peft's nn.Embedding
            self.transform = nn.Sequential(nn.Linear(d_model, self.hidden), nn.Tanh(),
                                           nn.Linear(self.hidden, n_layers * 2 * d_model))
            with torch.no_grad():
                for linear in (self.transform[0], self.transform[2]):
                    linear.weight.copy_(torch.randn(linear.weight.shape, generator=g) * PREFIX_INIT_STD)
                    linear.bias.zero_()
        else:
            self.prefix = nn.Parameter(torch.randn(n_layers, 2, n_prefix, d_model, generator=g) * PREFIX_INIT_STD)

    @property
    def reparametrized(self) -> bool:
        """True while the prefixes come out of the MLP (before :meth:`fold_reparametrization`)."""
        return "transform" in self._modules

    def forward(self) -> Tensor:
        """All prefixes ``[L, 2, n_prefix, d]`` (index 0 = keys, 1 = values)."""
        if self.reparametrized:
            out = self.transform(self.embedding)  # [n, L * 2 * d], ordered (layer, key/value, d) as in peft
            return out.view(self.n_prefix, self.n_layers, 2, self.d_model).permute(1, 2, 0, 3)
        return self.prefix

    def layer_kv(self, layer: int, batch_size: int, n_heads: int) -> tuple[Tensor, Tensor]:
        """Layer ``layer``'s key and value prefixes, each ``[B, n_heads, n_prefix, d_head]``."""
        if not 0 <= layer < self.n_layers:
            raise IndexError(f"layer must be in [0, {self.n_layers}), got {layer}")
        if self.d_model % n_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_heads={n_heads}")
        kv = self()[layer].reshape(2, self.n_prefix, n_heads, self.d_model // n_heads).transpose(1, 2)
        kv = kv.unsqueeze(1).expand(-1, batch_size, -1, -1, -1)  # [2, B, H, n, d_head], no copy
        return kv[0], kv[1]

    @torch.no_grad()
    def fold_reparametrization(self) -> None:
        """Store MLP(embedding) as the direct parameter ``prefix`` and delete the MLP (outputs unchanged)."""
        if not self.reparametrized:
            return
        trainable = any(p.requires_grad for p in self.parameters())
        folded = self().detach().clone().contiguous()
        del self.transform, self.embedding
        self.prefix = nn.Parameter(folded, requires_grad=trainable)
        self.hidden = None

    def extra_repr(self) -> str:
        how = f"MLP hidden={self.hidden}" if self.reparametrized else "direct"
        return f"n_layers={self.n_layers}, n_prefix={self.n_prefix}, d_model={self.d_model}, {how}"


class PrefixKV(nn.Module):
    """Hooked into one attention layer: returns that layer's slice of the shared PrefixEncoder."""

    def __init__(self, encoder: PrefixEncoder, layer: int, n_heads: int) -> None:
        super().__init__()
        self.layer, self.n_heads = layer, n_heads
        # A plain reference, not a submodule: the encoder is registered once, as model.prefix_encoder,
        # so its parameters appear once in parameters() and state_dict().
        self.__dict__["encoder"] = encoder

    def forward(self, batch_size: int) -> tuple[Tensor, Tensor]:
        """(keys, values), each ``[batch_size, n_heads, n_prefix, d_head]``."""
        return self.encoder.layer_kv(self.layer, batch_size, self.n_heads)

    def extra_repr(self) -> str:
        return f"layer={self.layer}, n_heads={self.n_heads}"


class HFPrefixSelfAttention(nn.Module):
    """Stands in for a Hugging Face BERT self-attention (``attention.self``): the same projections, the prefix in front.

    Computes ``softmax(q [P_k; K]^T / sqrt(d_head) + mask) [P_v; V]`` in plain PyTorch (the padding mask is
    widened by ``n`` visible positions), with the wrapped module's own ``query``, ``key``, ``value`` and attention
    dropout. It returns ``(context, None)``, which the calling ``BertAttention`` of transformers 4.x and 5.x
    both accept.
    """

    def __init__(self, base: nn.Module, prefix: PrefixKV) -> None:
        super().__init__()
        self.base, self.prefix = base, prefix

    def forward(self, hidden_states: Tensor, attention_mask: Optional[Tensor] = None, *args, **kwargs):
        """Self-attention over ``[P_k; K]``, ``[P_v; V]``; cross-attention and caches are not supported."""
        base = self.base
        if kwargs.get("encoder_hidden_states") is not None or (len(args) > 1 and args[1] is not None):
            raise ValueError("Prefix tuning here supports encoder self-attention only (no cross-attention).")
        B, T, _ = hidden_states.shape
        H, dh = base.num_attention_heads, base.attention_head_size

        def split(t: Tensor) -> Tensor:
            return t.view(B, -1, H, dh).transpose(1, 2)                            # [B, H, T, d_head]

        pk, pv = self.prefix(B)                                                     # [B, H, n, d_head]
        q = split(base.query(hidden_states))
        k = torch.cat([pk.to(q.dtype), split(base.key(hidden_states))], dim=2)
        v = torch.cat([pv.to(q.dtype), split(base.value(hidden_states))], dim=2)
        scores = q @ k.transpose(-2, -1) / math.sqrt(dh)                            # [B, H, T, n + T]
        if attention_mask is not None:
            mask = attention_mask
            if mask.dtype == torch.bool:                                            # True = may attend
                mask = torch.zeros(mask.shape, dtype=scores.dtype, device=mask.device).masked_fill(
                    ~mask, torch.finfo(scores.dtype).min)
            scores = scores + F.pad(mask.to(scores.dtype), (pk.size(2), 0), value=0.0)  # the prefix is visible
        probs = base.dropout(torch.softmax(scores, dim=-1))
        context = (probs @ v).transpose(1, 2).reshape(B, T, H * dh)
        return context, None


def _hf_self_attentions(model: nn.Module) -> dict[str, nn.Module]:
    """Hugging Face BERT-style self-attention modules (query/key/value Linears) by path."""
    found = {}
    for path, module in model.named_modules():
        if all(isinstance(getattr(module, n, None), nn.Linear) for n in ("query", "key", "value")) \
                and hasattr(module, "num_attention_heads") and hasattr(module, "attention_head_size"):
            if getattr(getattr(module, "config", None), "is_decoder", False):
                raise TypeError(f"{path}: prefix tuning here supports encoder (non-decoder) Hugging Face models.")
            found[path] = module
    return found


def _attention_layers(model: nn.Module) -> list[MultiHeadSelfAttention]:
    return [m for m in model.modules() if isinstance(m, MultiHeadSelfAttention)]


def _no_attention_error(model: nn.Module) -> TypeError:
    return TypeError(f"Prefix tuning here supports the course's models (attention = MultiHeadSelfAttention) and "
                     f"Hugging Face BERT-style encoders (attention.self with query/key/value); "
                     f"{type(model).__name__} has neither.")


def prefix_encoder_of(model: nn.Module) -> PrefixEncoder:
    encoder = getattr(model, "prefix_encoder", None)
    if not isinstance(encoder, PrefixEncoder):
        raise ValueError(f"This {type(model).__name__} has no prefix tuning: call add_prefix_tuning(model, n_prefix) "
                         f"first.")
    return encoder


def add_prefix_tuning(model: nn.Module, n_prefix: int, reparametrize: bool = True, hidden: Optional[int] = None,
                      seed: int = 0, shift_positions: bool = True) -> PrefixEncoder:
    """Give every attention layer ``n_prefix`` trainable key/value prefixes; the encoder is ``model.prefix_encoder``.

    In a Hugging Face encoder the real tokens then take positions ``n .. n+T-1`` (``shift_positions=True``),
    as with peft, whose prefixes enter as ``past_key_values`` that BERT's embeddings count as earlier tokens;
    ``shift_positions=False`` keeps positions ``0 .. T-1``. The course's own models never shift.
    """
    if isinstance(getattr(model, "prefix_encoder", None), PrefixEncoder) \
            or any(a.prefix is not None for a in _attention_layers(model)):
        raise ValueError("This model already has prefix tuning: remove_prefix_tuning(model) first.")
    layers = _attention_layers(model)
    hf_layers = {} if layers else _hf_self_attentions(model)
    if not layers and not hf_layers:
        raise _no_attention_error(model)
    if layers:
        widths, heads = {a.d_model for a in layers}, [a.n_heads for a in layers]
        weight = layers[0].q_proj.weight
    else:
        widths = {m.num_attention_heads * m.attention_head_size for m in hf_layers.values()}
        heads = [m.num_attention_heads for m in hf_layers.values()]
        weight = next(iter(hf_layers.values())).query.weight
    if len(widths) != 1:
        raise ValueError(f"All attention layers must have the same width for one PrefixEncoder, found {sorted(widths)}")
    n_layers = len(layers) or len(hf_layers)
    encoder = PrefixEncoder(n_layers, n_prefix, widths.pop(), reparametrize, hidden, seed)
    encoder.to(device=weight.device, dtype=torch.promote_types(weight.dtype, torch.float32))
    model.prefix_encoder = encoder
    for i, attn in enumerate(layers):
        attn.prefix = PrefixKV(encoder, i, heads[i])
    for i, (path, module) in enumerate(hf_layers.items()):
        set_submodule(model, path, HFPrefixSelfAttention(module, PrefixKV(encoder, i, heads[i])))
    if hf_layers and shift_positions:
        embeddings = _hf_position_embeddings(model)
        encoder.__dict__["_position_hook"] = embeddings.register_forward_pre_hook(
            lambda module, args, kwargs: _shifted_positions(module, args, kwargs, n_prefix), with_kwargs=True)
    return encoder


def _hf_position_embeddings(model: nn.Module) -> nn.Module:
    """The embeddings module of a Hugging Face BERT-style encoder (it owns ``position_embeddings``)."""
    found = [m for m in model.modules() if isinstance(getattr(m, "position_embeddings", None), nn.Embedding)]
    if len(found) != 1:
        raise TypeError(f"Expected one embeddings module with position_embeddings, found {len(found)}: pass "
                        f"shift_positions=False.")
    return found[0]


def _shifted_positions(module: nn.Module, args: tuple, kwargs: dict, n_prefix: int):
    """Forward pre-hook: give the real tokens positions n .. n+T-1 unless the caller passed position_ids."""
    if kwargs.get("position_ids") is not None or args[2:3] and args[2] is not None:
        return None
    tokens = kwargs.get("input_ids") if kwargs.get("input_ids") is not None else (args[0] if args else None)
    if tokens is None:
        tokens = kwargs["inputs_embeds"][..., 0]
    T = tokens.shape[1]
    kwargs["position_ids"] = torch.arange(n_prefix, n_prefix + T, device=tokens.device).expand(tokens.shape[0], -1)
    return args, kwargs


def remove_prefix_tuning(model: nn.Module) -> PrefixEncoder:
    """Unhook the prefixes and delete ``model.prefix_encoder`` (the model is the base model again); return it."""
    encoder = prefix_encoder_of(model)
    for path, module in list(model.named_modules()):  # a list: the loop edits the module tree
        hook = module.prefix if isinstance(module, (MultiHeadSelfAttention, HFPrefixSelfAttention)) else None
        if not (isinstance(hook, PrefixKV) and hook.encoder is encoder):
            continue
        if isinstance(module, HFPrefixSelfAttention):
            set_submodule(model, path, module.base)
        else:
            del module.prefix     # drop the submodule...
            module.prefix = None  # ...and restore the plain None attribute the layer was built with
    hook = encoder.__dict__.pop("_position_hook", None)
    if hook is not None:
        hook.remove()
    del model.prefix_encoder
    return encoder


def mark_prefix_trainable(model: nn.Module, head_patterns: Iterable[str] = DEFAULT_HEAD_PATTERNS) -> list[str]:
    """Make ``prefix_encoder`` (+ the head of a classifier; () for none) the only trainable tensors; return names."""
    prefix_encoder_of(model)
    freeze_all(model)
    names = unfreeze_where(model, lambda n, _: n.startswith("prefix_encoder."), what="the prefix encoder")
    return names + [n for n in unfreeze_head(model, head_patterns) if n not in names]
