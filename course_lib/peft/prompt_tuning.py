"""Prompt tuning (Lester et al. 2021): train ``n`` virtual-token vectors that the frozen model reads first.

The method learns a matrix ``P`` (``n x d``) placed in front of the embedded input ``E(x)`` (``T x d``)::

    h = model([P; E(x)])        P in R^{n x d}, the only trained parameters (n * d of them)

The model's own embedding table, layers and head stay frozen. Positions are added after
the concatenation, so the real tokens sit at positions n..n+T-1 and the virtual tokens use
``n`` of the model's ``max_len`` positions. ``P`` can start random, as copies of ``n``
randomly sampled vocabulary embeddings (Lester et al.'s sampled-vocab init), or as the
embeddings of a text such as "classify the sentiment:" (peft's ``PromptTuningInit.TEXT``).

:func:`add_prompt_tuning` returns a :class:`PromptTuningModel` that *wraps* the model (course
GPT / encoders, and Hugging Face models that accept ``inputs_embeds``) and is called like it.
LM logits include the ``n`` virtual positions (``wrapper.strip_virtual(logits)`` drops them);
token-level labels get ``-100`` there, so a causal LM's last virtual position learns to predict
the first real token (as in peft). The prompt is *prepended*: an encoder classifier, which reads
position 0, now reads the first virtual token, a learned "[CLS]" trained together with the head
(peft does the same); the real [CLS] sits at position ``n``. Without ``attention_mask`` the mask
is built from ``pad_token_id`` (all ones when the model has none).

Saving and loading in peft's format: :mod:`course_lib.peft.prompt_files`.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Iterable, Optional

import torch
from torch import Tensor, nn

from ..models.encoder import Encoder, EncoderForMaskedLM, EncoderForSequenceClassification
from ..models.decoding import greedy_extend
from ..models.gpt import GPT
from .freezing import DEFAULT_HEAD_PATTERNS, freeze_all
from .spine import check_count, unfreeze_head

INIT_MODES = ("random", "vocab", "text")
IGNORE_INDEX = -100             # label of the virtual positions: the loss skips them


def prompt_param_count(n_virtual_tokens: int, d_model: int) -> int:
    """Trainable parameters of prompt tuning: one d-vector per virtual token, ``n * d``."""
    return n_virtual_tokens * d_model


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


class PromptTuningModel(nn.Module):
    """``model([P; E(x)])``: n trainable virtual-token vectors ``prompt`` in front of the embedded input."""

    def __init__(self, model: nn.Module, n_virtual_tokens: int, seed: int = 0) -> None:
        super().__init__()
        if isinstance(model, PromptTuningModel):
            raise ValueError("This model already has prompt tuning; use it as is or wrap its .model instead.")
        check_count(n_virtual_tokens, "n_virtual_tokens")
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
        if labels is not None:  # a headless model (e.g. BertModel) takes no labels argument at all
            kwargs["labels"] = labels
        return self.model(inputs_embeds=inputs_embeds, attention_mask=attention_mask, **kwargs)

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
        config = self.model.config
        eos = eos_token_id if eos_token_id is not None else config.eos_token_id
        return greedy_extend(lambda context: self.strip_virtual(self(context).logits)[:, -1, :], input_ids,
                             max_new_tokens, eos_token_id=eos, pad_token_id=config.pad_token_id,
                             context_limit=self.max_input_len,  # n of the model's positions hold the prompt
                             temperature=temperature, top_k=top_k, generator=generator)

    def extra_repr(self) -> str:
        return f"n_virtual_tokens={self.n_virtual_tokens}, d={self.prompt.size(1)}, init={self.init!r}"


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


def mark_prompt_trainable(wrapper: PromptTuningModel,
                          head_patterns: Iterable[str] = DEFAULT_HEAD_PATTERNS) -> list[str]:
    """Make the prompt (+ the head of a classifier; () for none) the only trainable tensors; return their names."""
    if not isinstance(wrapper, PromptTuningModel):
        raise TypeError(f"mark_prompt_trainable expects the PromptTuningModel returned by "
                        f"add_prompt_tuning(model, n), got {type(wrapper).__name__}")
    freeze_all(wrapper)
    wrapper.prompt.requires_grad_(True)
    return ["prompt"] + [f"model.{n}" for n in unfreeze_head(wrapper.model, head_patterns)]
