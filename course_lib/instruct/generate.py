"""Greedy generation for the course GPT and Hugging Face causal LMs: max new tokens, stop at EOS (notebook 10).

Both kinds of model run through the course's one decoding loop,
:func:`course_lib.models.decoding.greedy_extend`; only the step differs. The course
GPT recomputes its (short) context each step and keeps only its last ``max_len``
tokens; a Hugging Face model feeds the prompt once and then one token per step,
reusing its key/value cache. Prompts of equal length are batched together, so no
prompt is ever padded: learned and rotary positions both see exactly the positions
the prompt had alone.
"""

from __future__ import annotations

import inspect
from collections import defaultdict
from typing import Sequence

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..models.decoding import NextLogits, greedy_extend


def is_hf_model(model: nn.Module) -> bool:
    """True for a transformers PreTrainedModel (or a wrapper around one, e.g. a PeftModel)."""
    try:
        from transformers import PreTrainedModel
    except ImportError:  # pragma: no cover - transformers is a course dependency
        return False
    return isinstance(model, PreTrainedModel) or isinstance(getattr(model, "base_model", None), PreTrainedModel)


def cache_argument(model: nn.Module) -> str:
    """The name of a Hugging Face model's key/value-cache argument (and output field): "cache" from transformers
    5.24 on, "past_key_values" before (the old name still works there, with a deprecation warning)."""
    base = model.get_base_model() if callable(getattr(model, "get_base_model", None)) else model  # a PeftModel
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def next_token_logits(model: nn.Module, use_cache: bool = False) -> NextLogits:
    """The decoding step for ``model``: ids [B, T] -> next-token logits [B, V] (with a KV cache when asked)."""
    if not use_cache:
        return lambda context: model(input_ids=context).logits[:, -1, :]
    name, past = cache_argument(model), None

    def step(context: Tensor) -> Tensor:
        nonlocal past  # the cache holds every position but the newest, so feed only that one
        out = model(input_ids=context if past is None else context[:, -1:], use_cache=True, **{name: past})
        past = getattr(out, name)
        return out.logits[:, -1, :]

    return step


def _same_length_chunks(prompts: Sequence[Sequence[int]], batch_size: int) -> list[list[int]]:
    """Indices of the prompts, grouped by prompt length, in chunks of at most ``batch_size``."""
    by_length: dict[int, list[int]] = defaultdict(list)
    for i, p in enumerate(prompts):
        by_length[len(p)].append(i)
    return [idx[s:s + batch_size] for idx in by_length.values() for s in range(0, len(idx), batch_size)]


@torch.no_grad()
def generate_ids(model: nn.Module, prompts: Sequence[Sequence[int]], max_new_tokens: int = 16,
                 eos_token_id: int | None = None, batch_size: int = 32, device: torch.device | None = None,
                 show_progress: bool = False) -> list[list[int]]:
    """Greedy continuation ids for each prompt (a list of token ids), in the prompts' order.

    A continuation stops right after the EOS token (which it includes) or after
    ``max_new_tokens`` tokens. ``eos_token_id=None`` means: never stop early.
    """
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    prompts = [list(p) for p in prompts]
    for i, p in enumerate(prompts):
        if not p:
            raise ValueError(f"prompt {i} is empty; give at least one token (e.g. a BOS or the template's first token).")
    device = device or next(model.parameters()).device
    hf = is_hf_model(model)
    limit = None if hf else getattr(getattr(model, "config", None), "max_len", None)  # the course GPT's positions
    was_training = model.training
    model.eval()
    results: list[list[int]] = [[] for _ in prompts]
    chunks = _same_length_chunks(prompts, batch_size)
    for chunk in tqdm(chunks, desc="generate", disable=not show_progress, leave=False):
        ids = torch.tensor([prompts[i] for i in chunk], dtype=torch.long, device=device)
        out = greedy_extend(next_token_logits(model, use_cache=hf), ids, max_new_tokens,
                            eos_token_id=eos_token_id, context_limit=limit)
        for row, i in enumerate(chunk):
            tokens = out[row, ids.size(1):].tolist()
            if eos_token_id is not None and eos_token_id in tokens:
                tokens = tokens[:tokens.index(eos_token_id) + 1]
            results[i] = tokens
    model.train(was_training)
    return results


def greedy_generate(model: nn.Module, tokenizer, prompts: Sequence[str], max_new_tokens: int = 16,
                    batch_size: int = 32, device: torch.device | None = None, show_progress: bool = False,
                    stop_at_eos: bool = True) -> list[str]:
    """Greedy continuations of text prompts, decoded without special tokens (the EOS is dropped)."""
    encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    eos = tokenizer.eos_token_id if stop_at_eos else None
    outputs = generate_ids(model, encoded, max_new_tokens, eos, batch_size, device, show_progress)
    return [tokenizer.decode(o, skip_special_tokens=True).strip() for o in outputs]
