"""Prompt tuning and prefix tuning: train a few vectors that the frozen model reads as context.

**Prompt tuning** (Lester et al. 2021) learns ``n`` "virtual tokens": a matrix ``P`` (``n x d``)
placed in front of the embedded input ``E(x)`` (``T x d``)::

    h = model([P; E(x)])        P in R^{n x d}, the only trained parameters (n * d of them)

The model's own embedding table, layers and head stay frozen. Positions are added after
the concatenation, so the real tokens sit at positions n..n+T-1 and the virtual tokens use
``n`` of the model's ``max_len`` positions. ``P`` can start random, as copies of ``n``
randomly sampled vocabulary embeddings (Lester et al.'s sampled-vocab init), or as the
embeddings of a text such as "classify the sentiment:" (peft's ``PromptTuningInit.TEXT``).

**Prefix tuning** (Li & Liang 2021) goes deeper: every attention layer ``l`` gets its own
trainable key and value prefixes ``P_k, P_v`` (``n x d``, split over the heads like ``K`` and
``V``) that every query can attend to::

    head = softmax(q [P_k; K]^T / sqrt(d_head)) [P_v; V]

The prefixes are not tokens: nothing is added to the input sequence, no position is used,
and the causal and padding masks do not apply to them. Training ``P`` directly is unstable,
so Li & Liang reparametrise it while training::

    [P_k, P_v for all layers] = MLP(P'),   P' in R^{n x d},   MLP: Linear(d, hidden) -> tanh -> Linear(hidden, 2 L d)

After training, the MLP output is computed once and stored (:meth:`PrefixEncoder.fold_reparametrization`):
the MLP is dropped and ``2 * L * n * d`` numbers remain per task.

Two kinds of objects:

* :func:`add_prompt_tuning` returns a :class:`PromptTuningModel` that *wraps* the model
  (course GPT / encoders, and Hugging Face models that accept ``inputs_embeds``) and is
  called like it. LM logits include the ``n`` virtual positions
  (``wrapper.strip_virtual(logits)`` drops them); token-level labels get ``-100`` there, so
  a causal LM's last virtual position learns to predict the first real token (as in peft).
  The prompt is *prepended*: an encoder classifier, which reads position 0, now reads the
  first virtual token, a learned "[CLS]" trained together with the head (peft does the same);
  the real [CLS] sits at position ``n``. Without ``attention_mask`` the mask is built from
  ``pad_token_id`` (all ones when the model has none).
* :func:`add_prefix_tuning` edits a course model in place: it stores one
  :class:`PrefixEncoder` as ``model.prefix_encoder`` and hooks each
  :class:`~course_lib.models.attention.MultiHeadSelfAttention` to its slice of it.

:func:`save_prompt` / :func:`load_prompt` use peft's file names and tensor layout
(``adapter_config.json``; ``prompt_embeddings`` in ``adapter_model.safetensors``), so a
prompt trained here on a Hugging Face causal LM loads with ``peft.PeftModel.from_pretrained``.
"""

from __future__ import annotations

import inspect
import json
import math
import re
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterable, Optional

import torch
from torch import Tensor, nn

from ..checkpoints import load_head_if_saved, read_saved_config
from ..models.attention import MultiHeadSelfAttention
from ..models.encoder import Encoder, EncoderForMaskedLM, EncoderForSequenceClassification
from ..models.gpt import GPT
from ..models.outputs import ModelOutput
from .adapters import HEAD_FILE
from .freezing import DEFAULT_HEAD_PATTERNS, freeze_all, unfreeze, unfreeze_where

INIT_MODES = ("random", "vocab", "text")
IGNORE_INDEX = -100             # label of the virtual positions: the loss skips them
PREFIX_INIT_STD = 0.02          # direct prefixes and the MLP's weights start N(0, 0.02), like the course models
CONFIG_FILE, WEIGHTS_FILE = "adapter_config.json", "adapter_model.safetensors"  # peft's file names
_PEFT_INIT = {"random": "RANDOM", "vocab": "SAMPLE_VOCAB", "text": "RANDOM"}  # TEXT would make peft want a tokenizer
_CLASSIFIER_SUFFIXES = ("ForSequenceClassification", "ForTokenClassification", "ForMultipleChoice")


def prompt_param_count(n_virtual_tokens: int, d_model: int) -> int:
    """Trainable parameters of prompt tuning: one d-vector per virtual token, ``n * d``."""
    return n_virtual_tokens * d_model


def prefix_param_count(n_layers: int, n_prefix: int, d_model: int, hidden: Optional[int] = None) -> int:
    """Prefix tuning: ``2 * L * n * d`` (a key and a value prefix per layer, folded);
    with ``hidden``, the training-time count of the reparametrisation ``n*d + (d*h + h) + (h*2Ld + 2Ld)``."""
    if hidden is None:
        return 2 * n_layers * n_prefix * d_model
    out = 2 * n_layers * d_model
    return n_prefix * d_model + (d_model * hidden + hidden) + (hidden * out + out)


def _check_count(value: Any, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what} must be an integer >= 0 (0 = the base model unchanged), got {value!r}")


# ----------------------------------------------------------------------------------------------------------
# Prompt tuning
# ----------------------------------------------------------------------------------------------------------

def _kind(model: nn.Module) -> str:
    """'gpt', 'encoder' (course MLM / classifier), 'backbone' (course Encoder) or 'hf'."""
    if isinstance(model, GPT):
        return "gpt"
    if isinstance(model, (EncoderForSequenceClassification, EncoderForMaskedLM)):
        return "encoder"
    if isinstance(model, Encoder):
        return "backbone"
    if callable(getattr(model, "get_input_embeddings", None)) and hasattr(model, "config"):
        if "inputs_embeds" in inspect.signature(model.forward).parameters:
            return "hf"
    raise TypeError(f"Prompt tuning supports the course's GPT, Encoder, EncoderForMaskedLM and "
                    f"EncoderForSequenceClassification, and Hugging Face models whose forward accepts "
                    f"inputs_embeds; got {type(model).__name__}.")


def _is_classifier(model: nn.Module) -> bool:
    return isinstance(model, EncoderForSequenceClassification) or type(model).__name__.endswith(_CLASSIFIER_SUFFIXES)


def _unfreeze_head(model: nn.Module, head_patterns: Iterable[str]) -> list[str]:
    """Unfreeze the head (names of ``model`` itself); classifiers need it, LMs without one are fine."""
    patterns = list(head_patterns)
    if not patterns:
        return []
    if _is_classifier(model):  # a fresh classification head must train: every pattern must match
        return unfreeze(model, patterns)
    if not any(re.search(p, n) for n, _ in model.named_parameters() for p in patterns):
        return []  # a language model has no separate head
    return unfreeze_where(model, lambda n, _: any(re.search(p, n) for p in patterns), what=str(patterns))


class PromptTuningModel(nn.Module):
    """``model([P; E(x)])``: n trainable virtual-token vectors ``prompt`` in front of the embedded input."""

    def __init__(self, model: nn.Module, n_virtual_tokens: int, seed: int = 0) -> None:
        super().__init__()
        if isinstance(model, PromptTuningModel):
            raise ValueError("This model already has prompt tuning; use it as is or wrap its .model instead.")
        _check_count(n_virtual_tokens, "n_virtual_tokens")
        self.kind = _kind(model)
        self.model = model
        self.n_virtual_tokens = n_virtual_tokens
        self.init, self.init_token_ids = "random", None  # how the prompt started (see add_prompt_tuning)
        table = self.input_embeddings().weight
        # Uniform with the embedding table's standard deviation: U(-a, a) has std a / sqrt(3).
        bound = math.sqrt(3.0) * float(table.detach().float().std())
        g = torch.Generator().manual_seed(seed)
        prompt = (torch.rand(n_virtual_tokens, table.size(1), generator=g) * 2 - 1) * bound
        dtype = torch.promote_types(table.dtype, torch.float32)  # train the prompt in (at least) fp32
        self.prompt = nn.Parameter(prompt.to(device=table.device, dtype=dtype))

    @property
    def config(self) -> Any:
        """The wrapped model's config (``wrapper.config.max_len`` etc. keep working)."""
        return self.model.config

    @property
    def max_len(self) -> Optional[int]:
        """How many positions the wrapped model has (None: no fixed limit known)."""
        if self.kind != "hf":
            return self.model.config.max_len
        config = self.model.config
        if getattr(config, "n_positions", None):  # GPT-2
            return config.n_positions
        if getattr(config, "position_embedding_type", None) == "absolute":  # BERT and friends
            return getattr(config, "max_position_embeddings", None)
        return None  # e.g. rotary positions (Llama): no hard limit to check

    @property
    def max_input_len(self) -> Optional[int]:
        """The longest real input: ``max_len - n_virtual_tokens`` (use it as the collator's max_len)."""
        return None if self.max_len is None else self.max_len - self.n_virtual_tokens

    def input_embeddings(self) -> nn.Embedding:
        """The wrapped model's (frozen) token-embedding table."""
        if self.kind == "gpt":
            return self.model.tok_embed
        if self.kind == "encoder":
            return self.model.encoder.embeddings.tok_embed
        if self.kind == "backbone":
            return self.model.embeddings.tok_embed
        return self.model.get_input_embeddings()

    def _pad_token_id(self) -> Optional[int]:
        return getattr(self.model.config, "pad_token_id", None)

    def strip_virtual(self, x: Tensor) -> Tensor:
        """Drop the n virtual positions from [B, n + T, ...] logits or hidden states."""
        if x.dim() < 2 or x.size(1) < self.n_virtual_tokens:
            raise ValueError(f"Expected [B, n_virtual_tokens + T, ...] with n_virtual_tokens="
                             f"{self.n_virtual_tokens}, got shape {tuple(x.shape)}")
        return x[:, self.n_virtual_tokens:]

    def forward(self, input_ids: Tensor, attention_mask: Optional[Tensor] = None, labels: Optional[Tensor] = None,
                **kwargs: Any) -> Any:
        """Run the model on ``[prompt; embed(input_ids)]``; mask gets n ones, token labels n times -100 in front."""
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must have shape [B, T], got {tuple(input_ids.shape)}")
        B, T = input_ids.shape
        n = self.n_virtual_tokens
        if self.max_len is not None and n + T > self.max_len:
            raise ValueError(f"Sequence length {T} + {n} virtual tokens = {n + T} exceeds max_len={self.max_len}: "
                             f"prompt tuning uses {n} of the {self.max_len} positions, so inputs may have at most "
                             f"{self.max_len - n} tokens (truncate them, e.g. collator max_len=wrapper.max_input_len).")
        embeds = self.input_embeddings()(input_ids)
        prompt = self.prompt.to(embeds.dtype).unsqueeze(0).expand(B, -1, -1)
        inputs_embeds = torch.cat([prompt, embeds], dim=1)

        if attention_mask is None:  # padding from pad_token_id, as the course encoder does
            pad = self._pad_token_id()
            attention_mask = torch.ones_like(input_ids) if pad is None else (input_ids != pad).long()
        if attention_mask.shape != (B, T):
            raise ValueError(f"attention_mask must have shape [B, T] = {(B, T)}, got {tuple(attention_mask.shape)}")
        attention_mask = torch.cat([attention_mask.new_ones(B, n), attention_mask], dim=1)  # virtual tokens are real

        if labels is not None and labels.dim() == 2 and not labels.is_floating_point():  # token-level (LM) labels
            if labels.shape != (B, T):
                raise ValueError(f"Token labels must have the shape of input_ids {(B, T)}, got {tuple(labels.shape)}")
            labels = torch.cat([labels.new_full((B, n), IGNORE_INDEX), labels], dim=1)
        if kwargs.get("token_type_ids") is not None:  # BERT: virtual tokens belong to segment 0
            types = kwargs["token_type_ids"]
            kwargs["token_type_ids"] = torch.cat([types.new_zeros(B, n), types], dim=1)
        if kwargs.get("position_ids") is not None:
            raise ValueError("position_ids cannot be combined with prompt tuning: the model numbers the "
                             "n virtual + T real positions itself.")

        if self.kind == "backbone":  # the bare course Encoder returns hidden states and has no loss
            if labels is not None or kwargs:
                raise ValueError("The course Encoder takes no labels or extra arguments; wrap a model with a head.")
            return self.model(attention_mask=attention_mask, inputs_embeds=inputs_embeds)
        return self.model(inputs_embeds=inputs_embeds, attention_mask=attention_mask, labels=labels, **kwargs)

    @torch.no_grad()
    def generate(self, input_ids: Tensor, max_new_tokens: int, temperature: float = 0.0, top_k: Optional[int] = None,
                 eos_token_id: Optional[int] = None, generator: Optional[torch.Generator] = None) -> Tensor:
        """GPT.generate with the soft prompt in front (course GPT only); returns input_ids + new tokens."""
        if self.kind != "gpt":
            raise TypeError("generate() here supports the course GPT; for Hugging Face models use peft's "
                            "PromptTuningConfig and the PeftModel's generate().")
        if self.max_input_len < 1:
            raise ValueError(f"No room left for tokens: {self.n_virtual_tokens} virtual tokens fill "
                             f"max_len={self.max_len}")
        return GPT.generate(_PromptedGPT(self), input_ids, max_new_tokens, temperature, top_k, eos_token_id, generator)

    def extra_repr(self) -> str:
        return f"n_virtual_tokens={self.n_virtual_tokens}, d={self.prompt.size(1)}, init={self.init!r}"


class _PromptedGPT:
    """What GPT.generate needs (``config`` and a call returning logits), with the context shortened by n."""

    def __init__(self, wrapper: PromptTuningModel) -> None:
        self.wrapper = wrapper
        self.config = replace(wrapper.config, max_len=wrapper.max_input_len)  # GPT.generate crops to max_len

    def __call__(self, input_ids: Tensor) -> ModelOutput:
        return ModelOutput(loss=None, logits=self.wrapper.strip_virtual(self.wrapper(input_ids).logits))


def _text_token_ids(tokenizer: Any, text: str) -> list[int]:
    try:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    except (TypeError, KeyError) as err:
        raise TypeError(f"tokenizer must be a Hugging Face tokenizer (tokenizer(text)['input_ids']), "
                        f"got {type(tokenizer).__name__}") from err
    return [int(i) for i in ids]


def add_prompt_tuning(model: nn.Module, n_virtual_tokens: int, init: str = "random", tokenizer: Any = None,
                      init_text: Optional[str] = None, seed: int = 0) -> PromptTuningModel:
    """Wrap ``model`` with ``n_virtual_tokens`` trainable prompt vectors; ``init`` is "random", "vocab" or "text".

    * ``"random"``: uniform, with the standard deviation of the model's embedding table;
    * ``"vocab"``: copies of the embeddings of n randomly sampled vocabulary tokens (Lester et al.);
    * ``"text"``: the embeddings of ``init_text`` tokenized by ``tokenizer``, repeated or cut to n tokens.
    """
    if init not in INIT_MODES:
        raise ValueError(f"init must be one of {list(INIT_MODES)}, got {init!r}")
    if init == "text" and (tokenizer is None or not init_text):
        raise ValueError("init='text' needs both tokenizer=... and init_text=... (e.g. init_text='classify the "
                         "sentiment of this review:'); the prompt starts as that text's token embeddings.")
    if init != "text" and (tokenizer is not None or init_text is not None):
        raise ValueError(f"tokenizer and init_text are only used with init='text', not init={init!r}")
    wrapper = PromptTuningModel(model, n_virtual_tokens, seed=seed)
    table = wrapper.input_embeddings().weight
    vocab, n = table.size(0), n_virtual_tokens
    token_ids = None
    if init == "vocab":
        pad = wrapper._pad_token_id()
        candidates = torch.tensor([i for i in range(vocab) if i != pad or vocab == 1])
        g = torch.Generator().manual_seed(seed)
        pick = (torch.randperm(len(candidates), generator=g)[:n] if n <= len(candidates)
                else torch.randint(len(candidates), (n,), generator=g))
        token_ids = candidates[pick].tolist()
    elif init == "text":
        text_ids = _text_token_ids(tokenizer, init_text)
        if not text_ids:
            raise ValueError(f"init_text {init_text!r} gives no tokens with this tokenizer.")
        if max(text_ids) >= vocab or min(text_ids) < 0:
            raise ValueError(f"The tokenizer gives ids up to {max(text_ids)} but the model's vocabulary has {vocab} "
                             f"tokens: use the model's own tokenizer.")
        token_ids = (text_ids * math.ceil(n / len(text_ids)))[:n]  # repeat, then cut to n (as peft does)
    if token_ids is not None:
        with torch.no_grad():
            index = torch.tensor(token_ids, dtype=torch.long, device=table.device)
            wrapper.prompt.copy_(table[index].to(wrapper.prompt.dtype))
    wrapper.init, wrapper.init_token_ids = init, token_ids
    return wrapper


def train_prompt(wrapper: PromptTuningModel, head_patterns: Iterable[str] = DEFAULT_HEAD_PATTERNS) -> list[str]:
    """Freeze everything, unfreeze the prompt (+ the head of a classifier; () for none); return trainable names."""
    if not isinstance(wrapper, PromptTuningModel):
        raise TypeError(f"train_prompt expects the PromptTuningModel returned by add_prompt_tuning(model, n), "
                        f"got {type(wrapper).__name__}")
    freeze_all(wrapper)
    wrapper.prompt.requires_grad_(True)
    return ["prompt"] + [f"model.{n}" for n in _unfreeze_head(wrapper.model, head_patterns)]


# ----------------------------------------------------------------------------------------------------------
# Prefix tuning
# ----------------------------------------------------------------------------------------------------------

class PrefixEncoder(nn.Module):
    """Key/value prefixes for L layers, ``[L, 2, n_prefix, d]``: direct (``prefix``) or ``MLP(embedding)``."""

    def __init__(self, n_layers: int, n_prefix: int, d_model: int, reparametrize: bool = True,
                 hidden: Optional[int] = None, seed: int = 0) -> None:
        super().__init__()
        _check_count(n_prefix, "n_prefix")
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


def _attention_layers(model: nn.Module) -> list[MultiHeadSelfAttention]:
    layers = [m for m in model.modules() if isinstance(m, MultiHeadSelfAttention)]
    if not layers:
        raise TypeError(f"Prefix tuning here supports the course's models (GPT, Encoder, EncoderForMaskedLM, "
                        f"EncoderForSequenceClassification), whose attention is MultiHeadSelfAttention; "
                        f"{type(model).__name__} has none. For Hugging Face models use peft's PrefixTuningConfig "
                        f"with get_peft_model.")
    return layers


def _prefix_encoder(model: nn.Module) -> PrefixEncoder:
    encoder = getattr(model, "prefix_encoder", None)
    if not isinstance(encoder, PrefixEncoder):
        raise ValueError(f"This {type(model).__name__} has no prefix tuning: call add_prefix_tuning(model, n_prefix) "
                         f"first.")
    return encoder


def add_prefix_tuning(model: nn.Module, n_prefix: int, reparametrize: bool = True, hidden: Optional[int] = None,
                      seed: int = 0) -> PrefixEncoder:
    """Give every attention layer ``n_prefix`` trainable key/value prefixes; the encoder is ``model.prefix_encoder``."""
    layers = _attention_layers(model)
    if isinstance(getattr(model, "prefix_encoder", None), PrefixEncoder) or any(a.prefix is not None for a in layers):
        raise ValueError("This model already has prefix tuning: remove_prefix_tuning(model) first.")
    widths = {a.d_model for a in layers}
    if len(widths) != 1:
        raise ValueError(f"All attention layers must have the same width for one PrefixEncoder, found {sorted(widths)}")
    weight = layers[0].q_proj.weight
    encoder = PrefixEncoder(len(layers), n_prefix, widths.pop(), reparametrize, hidden, seed)
    encoder.to(device=weight.device, dtype=torch.promote_types(weight.dtype, torch.float32))
    model.prefix_encoder = encoder
    for i, attn in enumerate(layers):
        attn.prefix = PrefixKV(encoder, i, attn.n_heads)
    return encoder


def remove_prefix_tuning(model: nn.Module) -> PrefixEncoder:
    """Unhook the prefixes and delete ``model.prefix_encoder`` (the model is the base model again); return it."""
    encoder = _prefix_encoder(model)
    for attn in list(model.modules()):  # a list: the loop edits the module tree
        hook = attn.prefix if isinstance(attn, MultiHeadSelfAttention) else None
        if isinstance(hook, PrefixKV) and hook.encoder is encoder:
            del attn.prefix     # drop the submodule...
            attn.prefix = None  # ...and restore the plain None attribute the layer was built with
    del model.prefix_encoder
    return encoder


def train_prefix(model: nn.Module, head_patterns: Iterable[str] = DEFAULT_HEAD_PATTERNS) -> list[str]:
    """Freeze everything, unfreeze ``prefix_encoder`` (+ the head of a classifier; () for none); return the names."""
    _prefix_encoder(model)
    freeze_all(model)
    names = unfreeze_where(model, lambda n, _: n.startswith("prefix_encoder."), what="the prefix encoder")
    return names + [n for n in _unfreeze_head(model, head_patterns) if n not in names]


# ----------------------------------------------------------------------------------------------------------
# Save / load
# ----------------------------------------------------------------------------------------------------------

def _task_type(model: nn.Module) -> Optional[str]:
    if _is_classifier(model):
        return "SEQ_CLS"
    if isinstance(model, GPT) or type(model).__name__.endswith(("ForCausalLM", "LMHeadModel")):
        return "CAUSAL_LM"
    return None


def _shape_info(model: nn.Module) -> tuple[Optional[int], Optional[int]]:
    """(n_layers, n_heads) of a course model; (None, None) otherwise (peft reads them from the model)."""
    if isinstance(model, (GPT, Encoder, EncoderForMaskedLM, EncoderForSequenceClassification)):
        return model.config.n_layers, model.config.n_heads
    return None, None


def _head_tensors(model: nn.Module, head_patterns: list[str]) -> dict[str, Tensor]:
    head = {n: p.detach().cpu().contiguous() for n, p in model.named_parameters()
            if any(re.search(pattern, n) for pattern in head_patterns)}
    if not head:
        raise ValueError(f"head_patterns {head_patterns} matched no parameter of the model.")
    return head


def save_prompt(obj: nn.Module, directory: str | Path, head_patterns: Iterable[str] = ()) -> Path:
    """Save a PromptTuningModel's prompt, or a prefix-tuned model's / PrefixEncoder's folded prefixes (+ head)."""
    from safetensors.torch import save_file

    head_patterns = list(head_patterns)
    if isinstance(obj, PromptTuningModel):
        model, n, d = obj.model, obj.n_virtual_tokens, obj.prompt.size(1)
        n_layers, n_heads = _shape_info(model)
        tensor = obj.prompt.detach()
        meta = {"peft_type": "PROMPT_TUNING", "task_type": _task_type(model), "num_virtual_tokens": n,
                "token_dim": d, "num_transformer_submodules": 1, "num_layers": n_layers,
                "num_attention_heads": n_heads, "prompt_tuning_init": _PEFT_INIT[obj.init]}
        extra = {"course_init": obj.init}
    else:
        model = None if isinstance(obj, PrefixEncoder) else obj
        encoder = obj if isinstance(obj, PrefixEncoder) else _prefix_encoder(obj)
        if model is None and head_patterns:
            raise ValueError("A PrefixEncoder alone has no head: pass the model to save its head too.")
        with torch.no_grad():  # folded values, peft's layout [n, L * 2 * d]
            tensor = encoder().permute(2, 0, 1, 3).reshape(encoder.n_prefix, -1)
        n_heads = _shape_info(model)[1] if model is not None else None
        meta = {"peft_type": "PREFIX_TUNING", "task_type": _task_type(model) if model is not None else None,
                "num_virtual_tokens": encoder.n_prefix, "token_dim": encoder.d_model, "num_transformer_submodules": 1,
                "num_layers": encoder.n_layers, "num_attention_heads": n_heads, "prefix_projection": False}
        extra = {}
    meta.update({"base_model_name_or_path": None, "revision": None, "inference_mode": True})
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / CONFIG_FILE).write_text(json.dumps(meta, indent=2))
    save_file({"prompt_embeddings": tensor.cpu().contiguous()}, str(directory / WEIGHTS_FILE),
              metadata={"format": "pt", **extra})
    if head_patterns:
        save_file(_head_tensors(model, head_patterns), str(directory / HEAD_FILE))
    return directory


def load_prompt(obj: nn.Module, directory: str | Path) -> nn.Module:
    """Load :func:`save_prompt`'s files into a PromptTuningModel / prefix-tuned model / PrefixEncoder of that shape.

    A reparametrised PrefixEncoder is folded first: the saved prefixes are the MLP's output.
    The head is loaded too when it was saved (into the wrapped / prefix-tuned model).
    """
    from safetensors.torch import load_file

    directory = Path(directory)
    meta = read_saved_config(directory, CONFIG_FILE, WEIGHTS_FILE)
    saved = load_file(str(directory / WEIGHTS_FILE))["prompt_embeddings"]
    kind = meta.get("peft_type")
    if isinstance(obj, PromptTuningModel):
        if kind != "PROMPT_TUNING":
            raise ValueError(f"{directory} holds {kind}, not PROMPT_TUNING: load it into a prefix-tuned model.")
        if saved.shape != obj.prompt.shape:
            raise ValueError(f"The saved prompt has {saved.size(0)} virtual tokens of size {saved.size(1)}; this "
                             f"model's prompt is {tuple(obj.prompt.shape)}. Build it with add_prompt_tuning(model, "
                             f"n_virtual_tokens={saved.size(0)}) on a model with d_model={saved.size(1)}.")
        with torch.no_grad():
            obj.prompt.copy_(saved.to(obj.prompt.device, obj.prompt.dtype))
        model = obj.model
    elif isinstance(obj, PrefixEncoder) or isinstance(getattr(obj, "prefix_encoder", None), PrefixEncoder):
        encoder = obj if isinstance(obj, PrefixEncoder) else obj.prefix_encoder
        model = None if isinstance(obj, PrefixEncoder) else obj
        if kind != "PREFIX_TUNING":
            raise ValueError(f"{directory} holds {kind}, not PREFIX_TUNING: load it into a PromptTuningModel.")
        want = (meta.get("num_layers"), meta.get("num_virtual_tokens"), meta.get("token_dim"))
        have = (encoder.n_layers, encoder.n_prefix, encoder.d_model)
        if want != have or saved.shape != (encoder.n_prefix, 2 * encoder.n_layers * encoder.d_model):
            raise ValueError(f"The saved prefixes are for (n_layers, n_prefix, d_model) = {want}; this model's are "
                             f"{have}. Build them with add_prefix_tuning(model, n_prefix={want[1]}) on a model with "
                             f"{want[0]} layers of width {want[2]}.")
        encoder.fold_reparametrization()
        kv = saved.view(encoder.n_prefix, encoder.n_layers, 2, encoder.d_model).permute(1, 2, 0, 3)
        with torch.no_grad():
            encoder.prefix.copy_(kv.to(encoder.prefix.device, encoder.prefix.dtype))
    else:
        raise TypeError(f"load_prompt loads into a PromptTuningModel (add_prompt_tuning) or a prefix-tuned model / "
                        f"PrefixEncoder (add_prefix_tuning); got {type(obj).__name__} without either.")
    if (directory / HEAD_FILE).is_file():
        if model is None:
            raise ValueError(f"{directory} also holds a task head: load into the model, not its PrefixEncoder.")
        load_head_if_saved(model, directory / HEAD_FILE)
    return obj
